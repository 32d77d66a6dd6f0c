"""ONNX models (model_platform "onnx") served by the real server, over gRPC and REST, batched."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

from support import onnx_models
from support.lifecycle import statuses, wait_until
from support.prometheus import parse, select
from support.requests import predict_request
from support.server import ServerProcess

MONITORING = 'prometheus_config {\n  enable: true\n  path: "/monitoring/prometheus/metrics"\n}\n'


def onnx_config(models: dict[str, Path]) -> str:
    blocks = "".join(
        f'  config {{ name: "{name}" base_path: "{path}" model_platform: "onnx" }}\n'
        for name, path in models.items()
    )
    return f"model_config_list {{\n{blocks}}}\n"


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("onnx")
    onnx_models.half_plus(root / "half_plus" / "1", 2.0, shape=("batch",))
    onnx_models.half_plus(root / "column" / "1", 2.0, shape=("batch", 1))
    onnx_models.two_in_two_out(root / "pair" / "1")
    onnx_models.strings(root / "words" / "1")
    (root / "column" / "1" / "servable.yaml").write_text(
        "intra_op_num_threads: 1\ngraph_optimization_level: basic\n"
    )
    names = {name: root / name for name in ("half_plus", "column", "pair", "words")}
    (root / "models.config").write_text(onnx_config(names))
    (root / "batching.txt").write_text(
        "max_batch_size { value: 4 }\nbatch_timeout_micros { value: 1000 }\n"
        "max_enqueued_batches { value: 1000 }\nnum_batch_threads { value: 2 }\n"
    )
    (root / "monitoring.txt").write_text(MONITORING)
    return root


@pytest.fixture(scope="module")
def onnx_server(repository: Path) -> Iterator[ServerProcess]:
    """Every ONNX model of `repository`, batched (max_batch_size 4)."""
    process = ServerProcess(
        [
            f"--model_config_file={repository / 'models.config'}",
            "--enable_batching",
            f"--batching_parameters_file={repository / 'batching.txt'}",
            f"--monitoring_config_file={repository / 'monitoring.txt'}",
        ]
    ).ready()
    yield process
    assert process.terminate() == 0, process.output


def grpc_error(server: ServerProcess, name: str, inputs: dict[str, np.ndarray]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        server.prediction.Predict(predict_request(name, inputs), timeout=30)
    return caught.value


# --- Predict ---------------------------------------------------------------------------------


def test_grpc_predict(onnx_server: ServerProcess) -> None:
    x = np.array([1.0, 2.0, 5.0], dtype=np.float32)
    response = onnx_server.prediction.Predict(predict_request("half_plus", {"x": x}), timeout=30)
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["y"]), [2.5, 3.0, 4.5])
    assert response.model_spec.name == "half_plus"
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "serving_default"


def test_grpc_two_inputs_two_outputs_and_a_filter(onnx_server: ServerProcess) -> None:
    inputs = {
        "values": np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32),
        "counts": np.array([2, 5], dtype=np.int64),
    }
    response = onnx_server.prediction.Predict(predict_request("pair", inputs), timeout=30)
    assert set(response.outputs) == {"total", "doubled"}
    total = tf.make_ndarray(response.outputs["total"])
    doubled = tf.make_ndarray(response.outputs["doubled"])
    assert (total.dtype, total.tolist()) == (np.float32, [6.0, 35.0])
    assert (doubled.dtype, doubled.tolist()) == (np.int64, [4, 10])
    only = onnx_server.prediction.Predict(
        predict_request("pair", inputs, output_filter=("doubled",)), timeout=30
    )
    assert set(only.outputs) == {"doubled"}


def test_grpc_strings(onnx_server: ServerProcess) -> None:
    words = np.array([b"hi", "h\u00e9".encode()], dtype=object)
    response = onnx_server.prediction.Predict(
        predict_request("words", {"words": words}), timeout=30
    )
    assert tf.make_ndarray(response.outputs["same"]).tolist() == [b"hi", "h\u00e9".encode()]


def test_rest_predict_row_and_columnar(onnx_server: ServerProcess) -> None:
    rows = onnx_server.http.post("/v1/models/half_plus:predict", json={"instances": [1.0, 2.0]})
    assert (rows.status_code, rows.json()) == (200, {"predictions": [2.5, 3.0]})
    column = onnx_server.http.post("/v1/models/column:predict", json={"inputs": [[1.0], [4.0]]})
    assert (column.status_code, column.json()) == (200, {"outputs": [[2.5], [4.0]]})
    instances = [{"values": [1.0, 2.0], "counts": 2}, {"values": [3.0, 4.0], "counts": 5}]
    named = onnx_server.http.post("/v1/models/pair:predict", json={"instances": instances})
    assert named.json() == {
        "predictions": [{"doubled": 4, "total": 6.0}, {"doubled": 10, "total": 35.0}]
    }
    inputs = {"values": [[1.0, 1.0]], "counts": [3]}
    columnar = onnx_server.http.post("/v1/models/pair:predict", json={"inputs": inputs})
    assert columnar.json() == {"outputs": {"doubled": [6], "total": [6.0]}}


def test_batched_callers_each_get_their_own_rows(onnx_server: ServerProcess) -> None:
    def grpc_call(index: int) -> list[float]:
        x = np.array([index, index + 0.5], dtype=np.float32)
        response = onnx_server.prediction.Predict(
            predict_request("half_plus", {"x": x}), timeout=30
        )
        return tf.make_ndarray(response.outputs["y"]).tolist()

    def rest_call(index: int) -> list[float]:
        answer = onnx_server.http.post(
            "/v1/models/half_plus:predict", json={"instances": [float(index)]}
        )
        return answer.json()["predictions"]

    with ThreadPoolExecutor(8) as pool:
        by_grpc = pool.map(grpc_call, range(40))
        by_rest = pool.map(rest_call, range(40))
        assert list(by_grpc) == [[0.5 * i + 2, 0.5 * (i + 0.5) + 2] for i in range(40)]
        assert list(by_rest) == [[0.5 * i + 2] for i in range(40)]


def test_requests_go_through_the_batch_queue(onnx_server: ServerProcess) -> None:
    # Only a batch queue knows max_batch_size (4): a larger task is refused by it.
    error = grpc_error(onnx_server, "half_plus", {"x": np.zeros(5, dtype=np.float32)})
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "Task size 5 is larger than maximum input batch size 4"


def test_runtime_label_is_onnxruntime(onnx_server: ServerProcess) -> None:
    answer = onnx_server.http.post(
        "/v1/models/pair:predict", json={"inputs": {"values": [[1.0, 2.0]], "counts": [1]}}
    )
    assert answer.status_code == 200, answer.text
    samples = parse(onnx_server.http.get("/monitoring/prometheus/metrics").text)
    runtime = ":tensorflow:serving:runtime_latency_count"
    assert select(samples, runtime, model_name="pair", runtime="onnxruntime") >= 1
    assert select(samples, runtime, model_name="pair", runtime="TF1") == 0


# --- bad inputs ------------------------------------------------------------------------------


def test_wrong_dtype_is_invalid_argument(onnx_server: ServerProcess) -> None:
    error = grpc_error(onnx_server, "half_plus", {"x": np.array([1, 2], dtype=np.int64)})
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "Expects arg[0] to be float but int64 is provided"
    answer = onnx_server.http.post("/v1/models/half_plus:predict", json={"instances": ["a"]})
    assert answer.status_code == 400
    # REST reads JSON by the signature's dtypes, with TF Serving's words for a mismatch.
    assert answer.json() == {
        "error": "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: "
        'JSON Value: "a" Type: String is not of expected type: float'
    }


def test_wrong_shape_is_invalid_argument(onnx_server: ServerProcess) -> None:
    message = "input tensor x has shape [2,3], which the signature's shape [-1,1] does not accept"
    error = grpc_error(onnx_server, "column", {"x": np.zeros((2, 3), dtype=np.float32)})
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)
    answer = onnx_server.http.post(
        "/v1/models/column:predict", json={"inputs": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]}
    )
    assert (answer.status_code, answer.json()) == (400, {"error": message})
    # The server goes on serving the model.
    good = onnx_server.http.post("/v1/models/column:predict", json={"inputs": [[2.0]]})
    assert good.json() == {"outputs": [[3.0]]}


# --- metadata and status ---------------------------------------------------------------------


def test_grpc_metadata_maps_the_graph(onnx_server: ServerProcess) -> None:
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "pair"
    response = onnx_server.prediction.GetModelMetadata(request, timeout=30)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signatures)
    assert list(signatures.signature_def) == ["serving_default"]
    default = signatures.signature_def["serving_default"]
    assert default.method_name == "tensorflow/serving/predict"
    found = {
        alias: (info.name, info.dtype, [d.size for d in info.tensor_shape.dim])
        for alias, info in [*default.inputs.items(), *default.outputs.items()]
    }
    assert found == {
        "values": ("values", 1, [-1, 2]),  # DT_FLOAT
        "counts": ("counts", 9, [-1]),  # DT_INT64
        "total": ("total", 1, [-1]),
        "doubled": ("doubled", 9, [-1]),
    }


def test_rest_metadata(onnx_server: ServerProcess) -> None:
    answer = onnx_server.http.get("/v1/models/column/metadata")
    assert answer.status_code == 200
    body = answer.json()
    assert body["model_spec"] == {"name": "column", "signature_name": "", "version": "1"}
    default = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    dims = [{"size": "-1", "name": ""}, {"size": "1", "name": ""}]
    shape = {"dim": dims, "unknown_rank": False}
    assert default["inputs"] == {"x": {"dtype": "DT_FLOAT", "tensor_shape": shape, "name": "x"}}
    assert default["outputs"] == {"y": {"dtype": "DT_FLOAT", "tensor_shape": shape, "name": "y"}}


def test_grpc_status(onnx_server: ServerProcess) -> None:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "half_plus"
    response = onnx_server.model_service.GetModelStatus(request, timeout=30)
    assert [(s.version, s.state, s.status.error_code) for s in response.model_version_status] == [
        (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE, 0)
    ]


# --- versions on disk ------------------------------------------------------------------------


def grpc_statuses(server: ServerProcess, model: str) -> dict[int, tuple[int, int, str]]:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = model
    response = server.model_service.GetModelStatus(request, timeout=30)
    return {
        s.version: (s.state, s.status.error_code, s.status.error_message)
        for s in response.model_version_status
    }


@pytest.fixture()
def polling_server(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> tuple[Path, ServerProcess]:
    """Model `hp` (an ONNX y = 0.5x + 2, version 1) under a server polling its folder every
    second, batched, retrying a failed load once."""
    base = tmp_path / "hp"
    onnx_models.half_plus(base / "1", 2.0)
    config = tmp_path / "models.config"
    config.write_text(onnx_config({"hp": base}))
    server = start_server(
        f"--model_config_file={config}",
        "--file_system_poll_wait_seconds=1",
        "--max_num_load_retries=1",
        "--load_retry_interval_micros=100000",
        "--enable_batching",
    )
    return base, server


def publish(folder_maker: Callable[[Path], Path], target: Path) -> None:
    """Writes a version folder beside `target` and renames it into place, as an export does."""
    staging = target.parent / f".{target.name}.partial"
    folder_maker(staging)
    staging.rename(target)


def test_a_new_version_is_served(polling_server: tuple[Path, ServerProcess]) -> None:
    base, server = polling_server
    assert server.http.post("/v1/models/hp:predict", json={"instances": [2.0]}).json() == {
        "predictions": [3.0]
    }
    publish(lambda path: onnx_models.half_plus(path, 10.0), base / "2")
    wait_until(
        lambda: statuses(server, "hp").get("1", ("",))[0] == "END", what="version 1 unloaded"
    )
    assert statuses(server, "hp") == {"2": ("AVAILABLE", "OK", ""), "1": ("END", "OK", "")}
    answer = server.http.post("/v1/models/hp:predict", json={"instances": [2.0]})
    assert answer.json() == {"predictions": [11.0]}
    x = np.array([4.0], dtype=np.float32)
    response = server.prediction.Predict(predict_request("hp", {"x": x}), timeout=30)
    assert response.model_spec.version.value == 2
    assert tf.make_ndarray(response.outputs["y"]).tolist() == [12.0]


def test_a_corrupt_version_fails_to_load_and_the_old_one_keeps_serving(
    polling_server: tuple[Path, ServerProcess],
) -> None:
    base, server = polling_server
    publish(onnx_models.corrupt, base / "2")
    wait_until(lambda: statuses(server, "hp").get("2", ("",))[0] == "END", what="version 2 END")
    state, code, message = statuses(server, "hp")["2"]
    assert (state, code) == ("END", "DATA_LOSS")
    assert message.startswith(f"Cannot load ONNX model {base / '2' / 'model.onnx'}: "), message
    assert "INVALID_PROTOBUF" in message
    by_grpc = grpc_statuses(server, "hp")
    assert by_grpc[2][:2] == (get_model_status_pb2.ModelVersionStatus.END, 15)  # DATA_LOSS
    assert by_grpc[2][2] == message
    assert by_grpc[1] == (get_model_status_pb2.ModelVersionStatus.AVAILABLE, 0, "")
    answer = server.http.post("/v1/models/hp:predict", json={"instances": [2.0]})
    assert answer.json() == {"predictions": [3.0]}
