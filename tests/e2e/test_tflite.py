"""TF Lite models (model_platform "tflite", and --prefer_tflite_model) served by the real server,
over gRPC and REST, batched."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

from support import tflite_models
from support.lifecycle import statuses, wait_until
from support.prometheus import parse, select
from support.requests import predict_request
from support.server import ServerProcess
from support.store import ModelStore
from support.tflite_models import TfLiteStore

MONITORING = 'prometheus_config {\n  enable: true\n  path: "/monitoring/prometheus/metrics"\n}\n'


def models_config(models: dict[str, tuple[Path, str]]) -> str:
    blocks = "".join(
        f'  config {{ name: "{name}" base_path: "{path}" model_platform: "{platform}" }}\n'
        for name, (path, platform) in models.items()
    )
    return f"model_config_list {{\n{blocks}}}\n"


@pytest.fixture(scope="module")
def tflite(tmp_path_factory: pytest.TempPathFactory) -> TfLiteStore:
    return TfLiteStore(tmp_path_factory.mktemp("tflite_models"))


def both_folder(store: ModelStore, tflite: TfLiteStore, target: Path) -> Path:
    """A SavedModel (y = 0.5x + 2) whose folder also holds a model.tflite (y = 0.5x + 3)."""
    folder = store.install(store.half_plus_two(2.0), target)
    return tflite.add_to("graph_add3", lambda p: tflite_models.half_plus_two_graph(p, 3.0), folder)


@pytest.fixture(scope="module")
def repository(
    store: ModelStore, tflite: TfLiteStore, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    root = tmp_path_factory.mktemp("tflite")
    tflite.install("dynamic", tflite_models.half_plus_two_signature, root / "half_plus" / "1")
    tflite.install("graph", tflite_models.half_plus_two_graph, root / "graph" / "1")
    tflite.install("several", tflite_models.several, root / "several" / "1")
    (root / "several" / "1" / "servable.yaml").write_text("num_interpreters: 2\nnum_threads: 1\n")
    both_folder(store, tflite, root / "both" / "1")
    store.install(store.half_plus_two(2.0), root / "saved" / "1")
    models = {
        "half_plus": (root / "half_plus", "tflite"),
        "graph": (root / "graph", "tflite"),
        "several": (root / "several", "tflite"),
        "both": (root / "both", "tensorflow"),
        "saved": (root / "saved", "tensorflow"),
    }
    (root / "models.config").write_text(models_config(models))
    (root / "batching.txt").write_text(
        "max_batch_size { value: 4 }\nbatch_timeout_micros { value: 1000 }\n"
        "max_enqueued_batches { value: 1000 }\nnum_batch_threads { value: 2 }\n"
    )
    (root / "monitoring.txt").write_text(MONITORING)
    return root


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[ServerProcess]:
    """Every model of `repository`, batched (max_batch_size 4), with --prefer_tflite_model."""
    process = ServerProcess(
        [
            f"--model_config_file={repository / 'models.config'}",
            "--enable_batching",
            f"--batching_parameters_file={repository / 'batching.txt'}",
            f"--monitoring_config_file={repository / 'monitoring.txt'}",
            "--prefer_tflite_model",
        ]
    ).ready()
    yield process
    assert process.terminate() == 0, process.output


def grpc_error(
    server: ServerProcess, name: str, inputs: dict[str, np.ndarray], signature: str = ""
) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        server.prediction.Predict(predict_request(name, inputs, signature=signature), timeout=30)
    return caught.value


def x_of(value: float) -> dict[str, np.ndarray]:
    return {"x": np.array([value], dtype=np.float32)}


# --- Predict ---------------------------------------------------------------------------------


def test_grpc_predict(server: ServerProcess) -> None:
    x = np.array([1.0, 2.0, 5.0], dtype=np.float32)
    response = server.prediction.Predict(predict_request("half_plus", {"x": x}), timeout=30)
    assert tf.make_ndarray(response.outputs["y"]).tolist() == [2.5, 3.0, 4.5]
    assert (response.model_spec.name, response.model_spec.version.value) == ("half_plus", 1)
    assert response.model_spec.signature_name == "serving_default"


def test_grpc_several_signatures_dtypes_and_a_filter(server: ServerProcess) -> None:
    inputs = {
        "values": np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32),
        "counts": np.array([2, 5], dtype=np.int64),
    }
    response = server.prediction.Predict(predict_request("several", inputs), timeout=30)
    total = tf.make_ndarray(response.outputs["total"])
    doubled = tf.make_ndarray(response.outputs["doubled"])
    assert (total.dtype, total.tolist()) == (np.float32, [42.0, 215.0])
    assert (doubled.dtype, doubled.tolist()) == (np.int64, [4, 10])
    only = server.prediction.Predict(
        predict_request("several", inputs, output_filter=("doubled",)), timeout=30
    )
    assert set(only.outputs) == {"doubled"}
    words = np.array([b"hi", "h\u00e9".encode()], dtype=object)
    reversed_ = server.prediction.Predict(
        predict_request("several", {"words": words}, signature="reverse"), timeout=30
    )
    assert reversed_.model_spec.signature_name == "reverse"
    assert tf.make_ndarray(reversed_.outputs["reversed"]).tolist() == ["h\u00e9".encode(), b"hi"]


def test_rest_predict(server: ServerProcess) -> None:
    rows = server.http.post("/v1/models/half_plus:predict", json={"instances": [1.0, 2.0]})
    assert (rows.status_code, rows.json()) == (200, {"predictions": [2.5, 3.0]})
    column = server.http.post("/v1/models/graph:predict", json={"inputs": [[1.0], [4.0]]})
    assert (column.status_code, column.json()) == (200, {"outputs": [[2.5], [4.0]]})
    instances = [{"values": [1.0, 2.0], "counts": 2}, {"values": [3.0, 4.0], "counts": 5}]
    named = server.http.post("/v1/models/several:predict", json={"instances": instances})
    assert named.json() == {
        "predictions": [{"doubled": 4, "total": 42.0}, {"doubled": 10, "total": 215.0}]
    }
    words = server.http.post(
        "/v1/models/several:predict",
        json={"signature_name": "reverse", "instances": ["a", "b", "c"]},
    )
    assert words.json() == {"predictions": ["c", "b", "a"]}


def test_batched_callers_each_get_their_own_rows(server: ServerProcess) -> None:
    # "graph" was converted with a fixed (1, 1) input: batches of any size resize it.
    def grpc_call(index: int) -> list[list[float]]:
        x = np.array([[index], [index + 0.5]], dtype=np.float32)
        response = server.prediction.Predict(predict_request("graph", {"x": x}), timeout=30)
        return tf.make_ndarray(response.outputs["y"]).tolist()

    def rest_call(index: int) -> list[float]:
        answer = server.http.post(
            "/v1/models/half_plus:predict", json={"instances": [float(index)]}
        )
        return answer.json()["predictions"]

    with ThreadPoolExecutor(8) as pool:
        by_grpc = pool.map(grpc_call, range(40))
        by_rest = pool.map(rest_call, range(40))
        assert list(by_grpc) == [[[0.5 * i + 2], [0.5 * (i + 0.5) + 2]] for i in range(40)]
        assert list(by_rest) == [[0.5 * i + 2] for i in range(40)]


def test_requests_go_through_the_batch_queue(server: ServerProcess) -> None:
    # Only a batch queue knows max_batch_size (4): a larger task is refused by it.
    error = grpc_error(server, "half_plus", {"x": np.zeros(5, dtype=np.float32)})
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "Task size 5 is larger than maximum input batch size 4"


# --- bad inputs ------------------------------------------------------------------------------


def test_wrong_dtype_is_invalid_argument(server: ServerProcess) -> None:
    error = grpc_error(server, "half_plus", {"x": np.array([1, 2], dtype=np.int64)})
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "Expects arg[0] to be float but int64 is provided"
    answer = server.http.post("/v1/models/half_plus:predict", json={"instances": ["a"]})
    assert answer.status_code == 400
    assert answer.json() == {
        "error": "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: "
        'JSON Value: "a" Type: String is not of expected type: float'
    }


def test_wrong_shape_is_invalid_argument(server: ServerProcess) -> None:
    bad = {"values": np.ones((2, 3), dtype=np.float32), "counts": np.array([1, 1], np.int64)}
    error = grpc_error(server, "several", bad)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    prefix = "TF Lite cannot run signature serving_default on inputs counts [2], values [2,3]: "
    assert error.details().startswith(prefix), error.details()
    answer = server.http.post(
        "/v1/models/several:predict",
        json={"inputs": {"values": [[1.0, 2.0, 3.0]], "counts": [1]}},
    )
    assert answer.status_code == 400
    assert answer.json()["error"].startswith(
        "TF Lite cannot run signature serving_default on inputs counts [1], values [1,3]: "
    )
    # The model goes on serving.
    good = server.http.post(
        "/v1/models/several:predict", json={"inputs": {"values": [[1.0, 1.0]], "counts": [1]}}
    )
    assert good.json() == {"outputs": {"doubled": [2], "total": [11.0]}}


# --- metadata and metrics --------------------------------------------------------------------


def test_grpc_metadata_lists_the_signature_defs(server: ServerProcess) -> None:
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "several"
    response = server.prediction.GetModelMetadata(request, timeout=30)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signatures)
    assert sorted(signatures.signature_def) == ["reverse", "serving_default"]
    default = signatures.signature_def["serving_default"]
    assert default.method_name == "tensorflow/serving/predict"
    found = {
        alias: (info.dtype, [d.size for d in info.tensor_shape.dim])
        for alias, info in [*default.inputs.items(), *default.outputs.items()]
    }
    assert found == {
        "values": (1, [-1, 2]),  # DT_FLOAT
        "counts": (9, [-1]),  # DT_INT64
        "total": (1, [-1]),
        "doubled": (9, [-1]),
    }
    reverse = signatures.signature_def["reverse"]
    assert reverse.inputs["words"].dtype == 7  # DT_STRING


def test_rest_metadata_of_a_model_without_signature_defs(server: ServerProcess) -> None:
    answer = server.http.get("/v1/models/graph/metadata")
    assert answer.status_code == 200
    default = answer.json()["metadata"]["signature_def"]["signature_def"]["serving_default"]
    dims = [{"size": "1", "name": ""}, {"size": "1", "name": ""}]
    shape = {"dim": dims, "unknown_rank": False}
    assert default["inputs"] == {"x": {"dtype": "DT_FLOAT", "tensor_shape": shape, "name": "x"}}
    assert default["outputs"] == {"y": {"dtype": "DT_FLOAT", "tensor_shape": shape, "name": "y"}}


def test_runtime_label_is_tflite(server: ServerProcess) -> None:
    for model in ("half_plus", "both"):
        answer = server.http.post(f"/v1/models/{model}:predict", json={"inputs": [[1.0]]})
        assert answer.status_code == 200, answer.text
    samples = parse(server.http.get("/monitoring/prometheus/metrics").text)
    runtime = ":tensorflow:serving:runtime_latency_count"
    for model in ("half_plus", "both"):
        assert select(samples, runtime, model_name=model, runtime="tflite") >= 1
        assert select(samples, runtime, model_name=model, runtime="TF1") == 0


# --- --prefer_tflite_model -------------------------------------------------------------------


def test_prefer_tflite_model_serves_model_tflite(server: ServerProcess) -> None:
    # "both" holds a SavedModel (0.5x + 2) and a model.tflite (0.5x + 3).
    response = server.prediction.Predict(predict_request("both", x_of(2.0)), timeout=30)
    assert tf.make_ndarray(response.outputs["y"]).tolist() == [4.0]
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "both"
    signatures = get_model_metadata_pb2.SignatureDefMap()
    server.prediction.GetModelMetadata(request, timeout=30).metadata["signature_def"].Unpack(
        signatures
    )
    # The TF Lite model's one signature, not the SavedModel's classify and regress ones.
    assert list(signatures.signature_def) == ["serving_default"]
    # A folder without model.tflite is served from its SavedModel.
    saved = server.prediction.Predict(predict_request("saved", x_of(2.0)), timeout=30)
    assert tf.make_ndarray(saved.outputs["y"]).tolist() == [3.0]


# --- versions on disk, and the SavedModel without --prefer_tflite_model ----------------------


def publish(folder_maker: Callable[[Path], Path], target: Path) -> None:
    """Writes a version folder beside `target` and renames it into place, as an export does."""
    staging = target.parent / f".{target.name}.partial"
    folder_maker(staging)
    staging.rename(target)


def test_reload_a_corrupt_version_and_the_saved_model_without_the_flag(
    store: ModelStore,
    tflite: TfLiteStore,
    tmp_path: Path,
    start_server: Callable[..., ServerProcess],
) -> None:
    hp = tmp_path / "hp"
    tflite.install("dynamic", tflite_models.half_plus_two_signature, hp / "1")
    both_folder(store, tflite, tmp_path / "both" / "1")
    config = tmp_path / "models.config"
    config.write_text(
        models_config({"hp": (hp, "tflite"), "both": (tmp_path / "both", "tensorflow")})
    )
    server = start_server(
        f"--model_config_file={config}",
        "--file_system_poll_wait_seconds=1",
        "--max_num_load_retries=1",
        "--load_retry_interval_micros=100000",
        "--enable_batching",
    )
    # Without --prefer_tflite_model, "both" serves its SavedModel (0.5x + 2).
    saved = server.prediction.Predict(predict_request("both", x_of(2.0)), timeout=30)
    assert tf.make_ndarray(saved.outputs["y"]).tolist() == [3.0]
    assert server.http.post("/v1/models/hp:predict", json={"instances": [2.0]}).json() == {
        "predictions": [3.0]
    }

    # A corrupt version fails to load with a clear error; version 1 keeps serving.
    publish(tflite_models.corrupt, hp / "2")
    wait_until(lambda: statuses(server, "hp").get("2", ("",))[0] == "END", what="version 2 END")
    state, code, message = statuses(server, "hp")["2"]
    assert (state, code) == ("END", "DATA_LOSS")
    assert message == (
        f"Cannot load TF Lite model {hp / '2' / 'model.tflite'}: "
        "The model is not a valid Flatbuffer buffer"
    )
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "hp"
    by_grpc = {
        s.version: (s.state, s.status.error_code)
        for s in server.model_service.GetModelStatus(request, timeout=30).model_version_status
    }
    assert by_grpc[1] == (get_model_status_pb2.ModelVersionStatus.AVAILABLE, 0)
    assert by_grpc[2] == (get_model_status_pb2.ModelVersionStatus.END, 15)  # DATA_LOSS
    assert server.http.post("/v1/models/hp:predict", json={"instances": [2.0]}).json() == {
        "predictions": [3.0]
    }

    # A good new version replaces version 1.
    publish(lambda p: tflite_models.half_plus_two_signature(p, 10.0), hp / "3")
    wait_until(lambda: statuses(server, "hp").get("1", ("",))[0] == "END", what="version 1 END")
    assert statuses(server, "hp")["3"] == ("AVAILABLE", "OK", "")
    response = server.prediction.Predict(predict_request("hp", x_of(4.0)), timeout=30)
    assert response.model_spec.version.value == 3
    assert tf.make_ndarray(response.outputs["y"]).tolist() == [12.0]
