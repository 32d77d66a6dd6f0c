"""`pip install fastserve` without TensorFlow: a wheel of this tree installed into a fresh
virtual environment (no system site packages) with onnxruntime, where neither tensorflow nor
tensorflow-serving-api can be imported, serves an ONNX model over gRPC (TF Serving's own client
stubs, from the tests' environment) and REST, replays its warmup file, and fails a SavedModel's
load with a message naming `fastserve[tensorflow]`.

Slow by nature (a wheel build and a pip install, a few minutes); the wheel is built once per
session."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    prediction_log_pb2,
    prediction_service_pb2_grpc,
)

from fastserve.codecs.tfrecord import frame
from fastserve.tune.processes import FastserveProcess
from support import onnx_models
from support.requests import predict_request
from support.store import ModelStore

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 900  # a cold pip cache downloads onnxruntime and the dependencies


def run(*command: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        **kwargs,  # type: ignore[call-overload]
    )
    assert done.returncode == 0, f"$ {command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel of this tree (what `pip wheel .` makes for PyPI's users)."""
    out = tmp_path_factory.mktemp("wheel")
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        out,
        REPO,
        env=dict(os.environ, NPY_NUM_BUILD_JOBS="2"),
    )
    (built,) = out.glob("fastserve-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the wheel and onnxruntime from PyPI; its bin/."""
    root = tmp_path_factory.mktemp("venv")
    run(sys.executable, "-m", "venv", root)
    run(root / "bin" / "python", "-m", "pip", "install", "-q", wheel, "onnxruntime>=1.17")
    return root / "bin"


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """half_plus (ONNX, y = 0.5x + 2) with a warmup file of two Predict records."""
    root = tmp_path_factory.mktemp("no_tensorflow")
    version = onnx_models.half_plus(root / "half_plus" / "1", 2.0)
    log = prediction_log_pb2.PredictionLog()
    log.predict_log.request.CopyFrom(
        predict_request("half_plus", {"x": np.array([1.0], dtype=np.float32)})
    )
    (version / "assets.extra").mkdir()
    (version / "assets.extra" / "tf_serving_warmup_requests").write_bytes(
        frame(log.SerializeToString()) * 2
    )
    (root / "models.config").write_text(
        f'model_config_list {{ config {{ name: "half_plus" base_path: "{root / "half_plus"}" '
        'model_platform: "onnx" } }\n'
    )
    return root


@pytest.fixture(scope="module")
def server(venv: Path, repository: Path) -> Iterator[FastserveProcess]:
    process = FastserveProcess(
        [f"--model_config_file={repository / 'models.config'}"],
        rest=True,
        command=[str(venv / "fastserve")],
    )
    process.wait_ready(120)
    yield process
    assert process.stop() == 0, process.output


def test_the_environment_has_no_tensorflow(venv: Path) -> None:
    for module in ("tensorflow", "tensorflow_serving"):
        done = subprocess.run(
            [venv / "python", "-c", f"import {module}"], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 1
        assert f"No module named '{module}'" in done.stderr
    listed = run(venv / "python", "-m", "pip", "list", "--format=freeze").stdout.lower()
    assert "tensorflow" not in listed
    assert "fastserve==" in listed and "onnxruntime==" in listed


def test_help_works(venv: Path) -> None:
    assert "--model_config_file" in run(venv / "fastserve", "--help").stdout
    assert "--max_batch_size" in run(venv / "fastserve", "tune", "--help").stdout


def test_grpc_predict_with_tf_servings_client(server: FastserveProcess) -> None:
    with grpc.insecure_channel(server.target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        x = np.array([1.0, 2.0, 5.0], dtype=np.float32)
        response = stub.Predict(predict_request("half_plus", {"x": x}), timeout=30)
        np.testing.assert_allclose(tf.make_ndarray(response.outputs["y"]), [2.5, 3.0, 4.5])
        assert (response.model_spec.name, response.model_spec.version.value) == ("half_plus", 1)

        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.name = "half_plus"
        metadata = stub.GetModelMetadata(request, timeout=30)
    packed = metadata.metadata["signature_def"]
    assert packed.type_url == "type.googleapis.com/tensorflow.serving.SignatureDefMap"
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert packed.Unpack(signatures)
    default = signatures.signature_def["serving_default"]
    assert (default.inputs["x"].dtype, default.outputs["y"].dtype) == (1, 1)  # DT_FLOAT


def test_rest_predict(server: FastserveProcess) -> None:
    response = httpx.post(
        f"{server.rest_url}/v1/models/half_plus:predict",
        json={"instances": [1.0, 2.0, 5.0]},
        timeout=30,
    )
    assert (response.status_code, response.json()) == (200, {"predictions": [2.5, 3.0, 4.5]})
    status = httpx.get(f"{server.rest_url}/v1/models/half_plus", timeout=30).json()
    assert status["model_version_status"][0]["state"] == "AVAILABLE"


def test_the_warmup_file_was_read_and_replayed(server: FastserveProcess) -> None:
    assert "Number of warmup records read: 2." in server.output


def test_the_profiler_names_the_extra(server: FastserveProcess) -> None:
    with grpc.insecure_channel(server.target) as channel:
        profile = channel.unary_unary("/tensorflow.ProfilerService/Profile")
        with pytest.raises(grpc.RpcError) as caught:
            profile(b"", timeout=30)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "pip install 'fastserve[tensorflow]'" in (caught.value.details() or "")


def test_a_saved_model_fails_its_load_naming_the_extra(
    venv: Path, store: ModelStore, tmp_path: Path
) -> None:
    store.install(store.half_plus_two(2.0), tmp_path / "half_plus_two" / "1")
    process = FastserveProcess(
        [
            "--model_name=half_plus_two",
            f"--model_base_path={tmp_path / 'half_plus_two'}",
            "--max_num_load_retries=0",
        ],
        command=[str(venv / "fastserve")],
    )
    assert process.wait(120) == 1, process.output
    assert (
        "model half_plus_two failed to load: model_platform tensorflow needs TensorFlow, which "
        "cannot be imported (No module named 'tensorflow'): pip install 'fastserve[tensorflow]'"
    ) in process.output
