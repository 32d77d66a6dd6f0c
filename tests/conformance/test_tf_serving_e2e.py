"""TF Serving's own end-to-end tests (model_servers/tensorflow_model_server_test.py), mirrored:
the same requests, the same expected answers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from support.server import ServerProcess

pytestmark = pytest.mark.timeout(300)
VERSION = 123  # TF Serving's test models live in 00000123 folders


def verify_predict(
    stub: prediction_service_pb2_grpc.PredictionServiceStub,
    expected_output: float,
    expected_version: int,
    *,
    model_name: str = "default",
    specify_output: bool = True,
    batch_input: bool = False,
    signature_name: str = "serving_default",
    input_name: str = "x",
    output_name: str = "y",
) -> None:
    """TF Serving's VerifyPredictRequest."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    request.inputs[input_name].dtype = types_pb2.DT_FLOAT
    request.inputs[input_name].float_val.append(2.0)
    request.inputs[input_name].tensor_shape.dim.add().size = 1
    if batch_input:
        request.inputs[input_name].tensor_shape.dim.add().size = 1
    if specify_output:
        request.output_filter.append(output_name)
    result = stub.Predict(request, timeout=20)
    assert output_name in result.outputs
    assert result.outputs[output_name].dtype == types_pb2.DT_FLOAT
    assert len(result.outputs[output_name].float_val) == 1
    assert result.outputs[output_name].float_val[0] == expected_output
    assert result.model_spec.name == model_name
    assert result.model_spec.signature_name == signature_name
    assert result.model_spec.version.value == expected_version


def x_example(input_proto: object, value: float = 2.0) -> None:
    example = input_proto.example_list.examples.add()  # type: ignore[attr-defined]
    example.features.feature["x"].float_list.value.extend([value])


def test_readiness_probe_sees_servable_not_found(tfs: ServerProcess) -> None:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "intentionally_missing_model"
    with pytest.raises(grpc.RpcError) as caught:
        tfs.prediction.Predict(request, timeout=20)
    assert "Servable" in caught.value.details()


def test_get_model_status(tfs: ServerProcess) -> None:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "default"
    result = tfs.model_service.GetModelStatus(request, timeout=20)
    assert len(result.model_version_status) == 1
    assert result.model_version_status[0].version == VERSION
    assert result.model_version_status[0].state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert result.model_version_status[0].status.error_code == 0


def test_get_model_metadata(tfs: ServerProcess) -> None:
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "default"
    request.metadata_field.append("signature_def")
    result = tfs.prediction.GetModelMetadata(request, timeout=20)
    assert result.model_spec.name == "default"
    assert result.model_spec.version.value == VERSION
    assert len(result.metadata) == 1
    assert "signature_def" in result.metadata


def test_classify(tfs_any: ServerProcess) -> None:
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "default"
    request.model_spec.signature_name = "classify_x_to_y"
    x_example(request.input)
    result = tfs_any.prediction.Classify(request, timeout=20)
    assert len(result.result.classifications) == 1
    assert len(result.result.classifications[0].classes) == 1
    assert result.result.classifications[0].classes[0].score == 3.0
    assert result.result.classifications[0].classes[0].label == ""
    assert (result.model_spec.name, result.model_spec.signature_name) == (
        "default",
        "classify_x_to_y",
    )
    assert result.model_spec.version.value == VERSION


def test_regress(tfs_any: ServerProcess) -> None:
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "default"
    request.model_spec.signature_name = "regress_x_to_y"
    x_example(request.input)
    result = tfs_any.prediction.Regress(request, timeout=20)
    assert len(result.result.regressions) == 1
    assert result.result.regressions[0].value == 3.0
    assert (result.model_spec.name, result.model_spec.signature_name) == (
        "default",
        "regress_x_to_y",
    )
    assert result.model_spec.version.value == VERSION


def test_multi_inference(tfs_any: ServerProcess) -> None:
    request = inference_pb2.MultiInferenceRequest()
    for signature, method in (
        ("regress_x_to_y", "tensorflow/serving/regress"),
        ("classify_x_to_y", "tensorflow/serving/classify"),
    ):
        task = request.tasks.add()
        task.model_spec.name = "default"
        task.model_spec.signature_name = signature
        task.method_name = method
    x_example(request.input)
    result = tfs_any.prediction.MultiInference(request, timeout=20)
    assert len(result.results) == 2
    assert result.results[0].regression_result.regressions[0].value == 3.0
    assert result.results[1].classification_result.classifications[0].classes[0].score == 3.0
    for entry, signature in zip(result.results, ("regress_x_to_y", "classify_x_to_y"), strict=True):
        assert (entry.model_spec.name, entry.model_spec.signature_name) == ("default", signature)
        assert entry.model_spec.version.value == VERSION


@pytest.mark.parametrize("specify_output", [True, False])
def test_predict_saved_model(tfs: ServerProcess, specify_output: bool) -> None:
    verify_predict(tfs.prediction, 3.0, VERSION, specify_output=specify_output)


def test_predict_uds(tfs: ServerProcess, socket_path: Path) -> None:
    with grpc.insecure_channel(f"unix:{socket_path}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        verify_predict(stub, 3.0, VERSION, specify_output=False)


def test_predict_on_tflite(tfs_tflite: ServerProcess) -> None:
    verify_predict(tfs_tflite.prediction, 3.0, VERSION, specify_output=False)


def test_predict_with_signature_def_on_tflite(tfs_tflite_with_sigdef: ServerProcess) -> None:
    verify_predict(tfs_tflite_with_sigdef.prediction, 3.0, VERSION, specify_output=False)


def test_good_model_config(
    testdata: Path, tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    config = tmp_path / "good_model_config.txt"
    config.write_text(
        f"""model_config_list: {{
  config: {{
    name: "half_plus_two",
    base_path: "{testdata / "saved_model_half_plus_two_cpu"}",
    model_platform: "tensorflow"
  }}
  config: {{
    name: "half_plus_three",
    base_path: "{testdata / "saved_model_half_plus_three"}",
    model_platform: "tensorflow"
  }}
}}
"""
    )
    server = start_server(f"--model_config_file={config}")
    for specify_output in (True, False):
        verify_predict(
            server.prediction,
            3.0,
            VERSION,
            model_name="half_plus_two",
            specify_output=specify_output,
        )
        verify_predict(
            server.prediction,
            4.0,
            VERSION,
            model_name="half_plus_three",
            specify_output=specify_output,
        )


def test_bad_model_config(tmp_path: Path, start_server: Callable[..., ServerProcess]) -> None:
    config = tmp_path / "bad_model_config.txt"
    config.write_text("improperly formatted file")
    server = start_server(f"--model_config_file={config}", ready=False)
    assert server.wait(120) != 0
    assert "Error parsing text-format tensorflow.serving.ModelServerConfig" in server.output


def _write_config(path: Path, name: str, base_path: Path) -> None:
    staged = path.with_suffix(".staged")
    staged.write_text(
        f'model_config_list: {{ config: {{ name: "{name}", base_path: "{base_path}", '
        'model_platform: "tensorflow" } }'
    )
    staged.rename(path)


def test_model_config_reload(
    testdata: Path, tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    config = tmp_path / "model_config.txt"
    _write_config(config, "half_plus_two", testdata / "saved_model_half_plus_two_cpu")
    server = start_server(
        f"--model_config_file={config}", "--model_config_file_poll_wait_seconds=1"
    )
    verify_predict(
        server.prediction, 3.0, VERSION, model_name="half_plus_two", specify_output=False
    )
    _write_config(config, "half_plus_three", testdata / "saved_model_half_plus_three")
    time.sleep(2)  # TF Serving's test waits poll period + 1 second
    deadline = time.monotonic() + 30  # and then some slack for a loaded machine
    while True:
        try:
            verify_predict(
                server.prediction, 4.0, VERSION, model_name="half_plus_three", specify_output=False
            )
            break
        except grpc.RpcError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_model_config_reload_with_zero_poll_period(
    testdata: Path, tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    config = tmp_path / "model_config.txt"
    _write_config(config, "half_plus_two", testdata / "saved_model_half_plus_two_cpu")
    server = start_server(
        f"--model_config_file={config}", "--model_config_file_poll_wait_seconds=0"
    )
    verify_predict(
        server.prediction, 3.0, VERSION, model_name="half_plus_two", specify_output=False
    )
    _write_config(config, "half_plus_three", testdata / "saved_model_half_plus_three")
    time.sleep(2)
    verify_predict(
        server.prediction, 3.0, VERSION, model_name="half_plus_two", specify_output=False
    )


def test_good_grpc_channel_args(testdata: Path, start_server: Callable[..., ServerProcess]) -> None:
    server = start_server(
        "--model_name=default",
        f"--model_base_path={testdata / 'saved_model_half_plus_two_cpu'}",
        "--grpc_channel_arguments=grpc.max_connection_age_ms=2000,grpc.lb_policy_name=grpclb",
    )
    verify_predict(server.prediction, 3.0, VERSION, specify_output=False)


# --- REST ------------------------------------------------------------------------------------


def rest(server: ServerProcess, path: str, body: dict | None = None) -> object:
    """TF Serving's CallREST: urllib, POST with a JSON body (no JSON content type), else GET."""
    import urllib.request

    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(f"{server.rest_url}{path}", data=data, timeout=20) as answer:
        return json.loads(answer.read())


def test_classify_rest(tfs: ServerProcess) -> None:
    body = {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}
    assert rest(tfs, "/v1/models/default:classify", body) == {"results": [[["", 3.0]]]}


def test_regress_rest(tfs: ServerProcess) -> None:
    body = {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]}
    assert rest(tfs, "/v1/models/default:regress", body) == {"results": [3.0]}


def test_predict_rest(tfs: ServerProcess) -> None:
    body = {"instances": [2.0, 3.0, 4.0]}
    assert rest(tfs, "/v1/models/default:predict", body) == {"predictions": [3.0, 3.5, 4.0]}


def test_predict_columnar_rest(tfs: ServerProcess) -> None:
    body = {"inputs": [2.0, 3.0, 4.0]}
    assert rest(tfs, "/v1/models/default:predict", body) == {"outputs": [3.0, 3.5, 4.0]}


def test_get_status_rest(tfs: ServerProcess) -> None:
    assert rest(tfs, "/v1/models/default") == {
        "model_version_status": [
            {
                "version": "123",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }


def _float_tensor(name: str) -> dict:
    return {
        "dtype": "DT_FLOAT",
        "tensor_shape": {
            "dim": [{"size": "-1", "name": ""}, {"size": "1", "name": ""}],
            "unknown_rank": False,
        },
        "name": name,
    }


_EXAMPLES = {
    "dtype": "DT_STRING",
    "tensor_shape": {"dim": [], "unknown_rank": True},
    "name": "tf_example:0",
}


def _signature(inputs: dict, outputs: dict, method: str) -> dict:
    return {
        "inputs": inputs,
        "outputs": outputs,
        "method_name": f"tensorflow/serving/{method}",
        "defaults": {},
    }


# TF Serving's saved_model_half_plus_two_2_versions_metadata.json, for model "default" at 123.
HALF_PLUS_TWO_METADATA = {
    "model_spec": {"name": "default", "signature_name": "", "version": "123"},
    "metadata": {
        "signature_def": {
            "signature_def": {
                "regress_x2_to_y3": _signature(
                    {"inputs": _float_tensor("x2:0")}, {"outputs": _float_tensor("y3:0")}, "regress"
                ),
                "serving_default": _signature(
                    {"x": _float_tensor("x:0")}, {"y": _float_tensor("y:0")}, "predict"
                ),
                "classify_x_to_y": _signature(
                    {"inputs": _EXAMPLES}, {"scores": _float_tensor("y:0")}, "classify"
                ),
                "regress_x_to_y2": _signature(
                    {"inputs": _EXAMPLES}, {"outputs": _float_tensor("y2:0")}, "regress"
                ),
                "regress_x_to_y": _signature(
                    {"inputs": _EXAMPLES}, {"outputs": _float_tensor("y:0")}, "regress"
                ),
                "classify_x2_to_y3": _signature(
                    {"inputs": _float_tensor("x2:0")}, {"scores": _float_tensor("y3:0")}, "classify"
                ),
            }
        }
    },
}


def test_get_model_metadata_rest(tfs: ServerProcess) -> None:
    assert rest(tfs, "/v1/models/default/metadata") == HALF_PLUS_TWO_METADATA


# --- the profiler service (--enable_profiler, on by default) -------------------------------------


def test_profiler_service_with_valid_trace_request(tfs: ServerProcess, tmp_path: Path) -> None:
    """TF Serving's test traces with TensorFlow's profiler client while REST predictions run,
    and asserts that the trace succeeds; here also that the trace lands where TensorBoard looks,
    named after the address traced, and that it holds the model's session runs."""
    from tensorflow.python.profiler import profiler_client
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    traced = threading.Event()

    def predict_until_traced() -> list[object]:
        answers = []
        while not traced.is_set():
            answers.append(rest(tfs, "/v1/models/default:predict", {"instances": [2.0, 3.0, 4.0]}))
        return answers

    logdir = tmp_path / "logs"
    logdir.mkdir()
    with ThreadPoolExecutor(1) as pool:
        predicting = pool.submit(predict_until_traced)
        try:
            # TF Serving's arguments: 1000 ms, no worker list, 10 tracing attempts.
            profiler_client.trace(f"127.0.0.1:{tfs.grpc_port}", str(logdir), 1000, "", 10)
        finally:
            traced.set()
        answers = predicting.result()
    assert answers and all(answer == {"predictions": [3.0, 3.5, 4.0]} for answer in answers)
    [trace] = (logdir / "plugins" / "profile").glob("*/*.xplane.pb")
    assert trace.name == f"127.0.0.1_{tfs.grpc_port}.xplane.pb"
    xspace = xplane_pb2.XSpace.FromString(trace.read_bytes())
    events = {
        plane.event_metadata[event.metadata_id].name
        for plane in xspace.planes
        for line in plane.lines
        for event in line.events
    }
    assert "SessionRun" in events


# --- TF2 SavedModels ---------------------------------------------------------------------------


def _serve_tf2(
    tmp_path: Path, start_server: Callable[..., ServerProcess], build: Callable[[Path], None]
) -> ServerProcess:
    build(tmp_path / "model" / "00000123")
    return start_server("--model_name=default", f"--model_base_path={tmp_path / 'model'}")


def test_tf_saved_model_save(tmp_path: Path, start_server: Callable[..., ServerProcess]) -> None:
    def build(path: Path) -> None:
        import tensorflow as tf

        root = tf.Module()
        root.f = tf.function(
            lambda x: {"y": 3.0 * 2.0 * x}, input_signature=[tf.TensorSpec(None, tf.float32)]
        )
        tf.saved_model.save(root, str(path), root.f)

    server = _serve_tf2(tmp_path, start_server, build)
    verify_predict(server.prediction, 12.0, VERSION, specify_output=False)


def test_tf_saved_model_save_multiple_signatures(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    def build(path: Path) -> None:
        import tensorflow as tf

        root = tf.Module()
        spec = [tf.TensorSpec(None, tf.float32)]
        root.f = tf.function(lambda x: {"y": tf.constant(1.0)}, input_signature=spec)
        root.g = tf.function(lambda x: {"y": tf.constant(2.0)}, input_signature=spec)
        tf.saved_model.save(
            root, str(path), {"serving_default": root.f, "custom_signature_key": root.g}
        )

    server = _serve_tf2(tmp_path, start_server, build)
    verify_predict(
        server.prediction, 2.0, VERSION, specify_output=True, signature_name="custom_signature_key"
    )
    verify_predict(server.prediction, 1.0, VERSION, specify_output=False)


def test_sequential_keras_saved_model_save(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    def build(path: Path) -> None:
        import keras
        import tensorflow as tf

        model = keras.Sequential(
            [keras.Input(name="x", shape=(1,)), keras.layers.Lambda(lambda t: t, name="y")]
        )
        tf.saved_model.save(model, str(path))

    server = _serve_tf2(tmp_path, start_server, build)
    # Keras 3 names a saved Sequential model's tensors "inputs" and "output_0" (Keras 2: x, y).
    verify_predict(
        server.prediction,
        2.0,
        VERSION,
        specify_output=False,
        batch_input=True,
        input_name="inputs",
        output_name="output_0",
    )


# --- the counter model (predict_impl_test's PredictionWithCustomizedSignatures) ----------------


def test_stateful_counter_signatures(
    testdata: Path, start_server: Callable[..., ServerProcess]
) -> None:
    server = start_server(
        "--model_name=counter", f"--model_base_path={testdata / 'saved_model_counter'}"
    )

    def call(signature: str, delta: float | None = None, output_filter: bool = False) -> float:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "counter"
        request.model_spec.signature_name = signature
        if delta is not None:
            request.inputs["delta"].dtype = types_pb2.DT_FLOAT
            request.inputs["delta"].float_val.append(delta)
        if output_filter:
            request.output_filter.append("output")
        response = server.prediction.Predict(request, timeout=20)
        output = response.outputs["output"]
        assert output.dtype == types_pb2.DT_FLOAT and not output.tensor_shape.dim  # a scalar
        assert (response.model_spec.signature_name, response.model_spec.version.value) == (
            signature,
            VERSION,
        )
        return output.float_val[0]

    assert call("get_counter") == 0.0
    assert call("incr_counter") == 1.0
    assert call("reset_counter") == 0.0
    assert call("incr_counter", output_filter=True) == 1.0
    assert call("incr_counter_by", delta=3.0) == 4.0
    # No serving_default: TF Serving's messages over both protocols.
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "counter"
    with pytest.raises(grpc.RpcError) as caught:
        server.prediction.Predict(request, timeout=20)
    assert (caught.value.code(), caught.value.details()) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        'Serving signature key "serving_default" not found.',
    )
    answer = server.http.post("/v1/models/counter:predict", json={"instances": [1.0]})
    assert (answer.status_code, answer.json()) == (
        400,
        {"error": 'Serving signature name: "serving_default" not found in signature def'},
    )
