"""One test per error message TF Serving's facts list: the status code and the exact words,
over gRPC and REST, against TF Serving's own half_plus_two served as model "default"."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format, wrappers_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    predict_pb2,
    regression_pb2,
)

from support.server import ServerProcess

OK_X = np.array([2.0], np.float32)


def rpc_error(call: Callable[..., object], request: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=20)
    return caught.value.code(), caught.value.details()


def rest_error(server: ServerProcess, method: str, path: str, body: bytes = b"") -> tuple[int, str]:
    answer = server.http.request(method, path, content=body)
    assert answer.headers["content-type"] == "application/json"
    return answer.status_code, answer.json()["error"]


def predict(name: str = "default", **inputs: np.ndarray) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    return request


@pytest.fixture(autouse=True)
def still_serving(tfs: ServerProcess):
    yield
    response = tfs.prediction.Predict(predict(x=OK_X), timeout=20)
    assert response.outputs["y"].float_val[0] == 3.0


# --- model specs -------------------------------------------------------------------------------


def test_unknown_model(tfs: ServerProcess) -> None:
    assert rpc_error(tfs.prediction.Predict, predict("half", x=OK_X)) == (
        grpc.StatusCode.NOT_FOUND,
        "Servable not found for request: Latest(half)",
    )
    assert rest_error(tfs, "POST", "/v1/models/half:predict", b'{"instances": [1.0]}') == (
        404,
        "Servable not found for request: Latest(half)",
    )


def test_unknown_version(tfs: ServerProcess) -> None:
    request = predict(x=OK_X)
    request.model_spec.version.CopyFrom(wrappers_pb2.Int64Value(value=99))
    assert rpc_error(tfs.prediction.Predict, request) == (
        grpc.StatusCode.NOT_FOUND,
        "Servable not found for request: Specific(default, 99)",
    )
    assert rest_error(
        tfs, "POST", "/v1/models/default/versions/99:predict", b'{"instances": [1.0]}'
    ) == (
        404,
        "Servable not found for request: Specific(default, 99)",
    )


def test_unknown_label(tfs: ServerProcess) -> None:
    request = predict(x=OK_X)
    request.model_spec.version_label = "gold"
    assert rpc_error(tfs.prediction.Predict, request) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Unrecognized servable version label: gold",
    )
    assert rest_error(
        tfs, "POST", "/v1/models/default/labels/gold:predict", b'{"instances": [1.0]}'
    ) == (
        400,
        "Unrecognized servable version label: gold",
    )


def test_unknown_signature(tfs: ServerProcess) -> None:
    request = predict(x=OK_X)
    request.model_spec.signature_name = "x"
    assert rpc_error(tfs.prediction.Predict, request) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        'Serving signature key "x" not found.',
    )
    body = b'{"signature_name": "x", "instances": [1.0]}'
    assert rest_error(tfs, "POST", "/v1/models/default:predict", body) == (
        400,
        'Serving signature name: "x" not found in signature def',
    )


# --- predict inputs and outputs -------------------------------------------------------------


def test_input_size_does_not_match_signature(tfs: ServerProcess) -> None:
    request = predict(unknown_key1=OK_X, unknown_key2=OK_X)
    assert rpc_error(tfs.prediction.Predict, request) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "input size does not match signature: 2!=1 len({unknown_key1,unknown_key2}) != len({x}). "
        "Sent extra: {unknown_key1,unknown_key2}. Missing but required: {x}.",
    )


def test_output_tensor_alias_not_found(tfs: ServerProcess) -> None:
    request = predict(x=OK_X)
    request.output_filter.append("foo")
    assert rpc_error(tfs.prediction.Predict, request) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "output tensor alias not found in signature: foo Outputs expected to be in the set {y}.",
    )


def test_duplicate_output_tensor_alias(tfs: ServerProcess) -> None:
    request = predict(x=OK_X)
    request.output_filter.extend(["y", "y"])
    assert rpc_error(tfs.prediction.Predict, request) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "duplicate output tensor alias: y",
    )


def test_wrong_input_dtype(tfs: ServerProcess) -> None:
    request = predict(x=np.array([b"a"], dtype=object))
    assert rpc_error(tfs.prediction.Predict, request) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Expects arg[0] to be float but string is provided",
    )


def test_long_messages_are_truncated_over_grpc_only(tfs: ServerProcess) -> None:
    names = {f"input_{'k' * 40}_{i}": OK_X for i in range(40)}
    code, message = rpc_error(tfs.prediction.Predict, predict(**names))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert len(message) == 1024 + len("...TRUNCATED")
    assert message.endswith("...TRUNCATED")
    assert message.startswith("input size does not match signature: 40!=1 len({input_")


# --- REST bodies and URLs ---------------------------------------------------------------------


def test_missing_inputs_or_instances(tfs: ServerProcess) -> None:
    assert rest_error(tfs, "POST", "/v1/models/default:predict", b'{"signature_name": ""}') == (
        400,
        "Missing 'inputs' or 'instances' key",
    )


def test_both_inputs_and_instances(tfs: ServerProcess) -> None:
    status, message = rest_error(
        tfs, "POST", "/v1/models/default:predict", b'{"instances": [1.0], "inputs": [1.0]}'
    )
    assert status == 400
    assert message.startswith("JSON Value: {")
    assert message.endswith(
        "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist "
    )


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models/default/version/50:predict",
        "/v1/models/default/label/x:predict",
        "/v1/models/default/versions/HELLO:predict",
        "/v1/models/default/versions/50/labels/x:predict",
    ],
)
def test_malformed_request_paths(tfs: ServerProcess, path: str) -> None:
    assert rest_error(tfs, "POST", path, b'{"instances": [1.0]}') == (
        400,
        f"Malformed request: POST {path}",
    )


def test_missing_model_name(tfs: ServerProcess) -> None:
    assert rest_error(tfs, "GET", "/v1/models") == (400, "Missing model name in request.")


def test_paths_outside_v1_are_404(tfs: ServerProcess) -> None:
    assert tfs.http.get("/v2/models/default").status_code == 404
    assert tfs.http.get("/monitoring/x").status_code == 404


# --- status and metadata ----------------------------------------------------------------------


def test_status_of_unknown_model_and_version(tfs: ServerProcess) -> None:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "nope"
    assert rpc_error(tfs.model_service.GetModelStatus, request) == (
        grpc.StatusCode.NOT_FOUND,
        "Could not find any versions of model nope",
    )
    request.model_spec.name = "default"
    request.model_spec.version.value = 7
    assert rpc_error(tfs.model_service.GetModelStatus, request) == (
        grpc.StatusCode.NOT_FOUND,
        "Could not find version 7 of model default",
    )
    assert rest_error(tfs, "GET", "/v1/models/nope") == (
        404,
        "Could not find any versions of model nope",
    )
    assert rest_error(tfs, "GET", "/v1/models/default/versions/7") == (
        404,
        "Could not find version 7 of model default",
    )


def test_missing_model_spec(tfs: ServerProcess) -> None:
    for call, request in (
        (tfs.prediction.Predict, predict_pb2.PredictRequest()),
        (tfs.model_service.GetModelStatus, get_model_status_pb2.GetModelStatusRequest()),
        (tfs.prediction.Classify, classification_pb2.ClassificationRequest()),
        (tfs.prediction.Regress, regression_pb2.RegressionRequest()),
    ):
        assert rpc_error(call, request) == (grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")


def test_metadata_fields(tfs: ServerProcess) -> None:
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "default"
    assert rpc_error(tfs.prediction.GetModelMetadata, request) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "GetModelMetadataRequest must specify at least one metadata_field",
    )
    request.metadata_field.append("foo")
    assert rpc_error(tfs.prediction.GetModelMetadata, request) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Metadata field %s is not supportedfoo",
    )


# --- classify, regress, multi-inference ---------------------------------------------------------


def classify(signature: str, *values: float) -> classification_pb2.ClassificationRequest:
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "default"
    request.model_spec.signature_name = signature
    for value in values:
        request.input.example_list.examples.add().features.feature["x"].float_list.value.append(
            value
        )
    return request


def regress(signature: str, *values: float) -> regression_pb2.RegressionRequest:
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "default"
    request.model_spec.signature_name = signature
    request.input.CopyFrom(classify(signature, *values).input)
    return request


def test_no_signature_with_that_name(tfs: ServerProcess) -> None:
    assert rpc_error(tfs.prediction.Classify, classify("nope", 2.0)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "No signature was found with the name: nope",
    )
    assert rpc_error(tfs.prediction.Regress, regress("nope", 2.0)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "No signature was found with the name: nope",
    )


def test_input_is_empty(tfs: ServerProcess) -> None:
    assert rpc_error(tfs.prediction.Classify, classify("classify_x_to_y")) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Input is empty.",
    )
    request = regress("regress_x_to_y")
    request.input.example_list_with_context.context.features.feature["x"].float_list.value.append(
        1.0
    )
    assert rpc_error(tfs.prediction.Regress, request) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Input is empty.",
    )


def test_structural_signature_checks(tfs: ServerProcess) -> None:
    code, message = rpc_error(tfs.prediction.Classify, classify("", 2.0))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert message.startswith("No classification inputs found in SignatureDef: inputs {")
    code, message = rpc_error(tfs.prediction.Classify, classify("regress_x_to_y", 2.0))
    assert message.startswith(
        'Expected classification signature outputs to contain at least one of "classes" or '
        '"scores". Signature was: inputs {'
    )
    code, message = rpc_error(tfs.prediction.Regress, regress("classify_x_to_y", 2.0))
    assert message.startswith("No regression outputs found in SignatureDef: inputs {")
    code, message = rpc_error(tfs.prediction.Regress, regress("serving_default", 2.0))
    assert message.startswith("No regression inputs found in SignatureDef: inputs {")


def test_bad_example_kinds_are_parse_errors(tfs: ServerProcess) -> None:
    request = regress("regress_x_to_y")
    request.input.example_list.examples.add().features.feature["x"].int64_list.value.append(2)
    code, message = rpc_error(tfs.prediction.Regress, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert message.startswith(
        "Name: <unknown>, Key: x, Index: 0.  Data types don't match. Data type: int64 but expected type: float"
    )
    request = regress("regress_x_to_y")
    request.input.example_list.examples.add().features.feature["y"].float_list.value.append(2.0)
    code, message = rpc_error(tfs.prediction.Regress, request)
    assert message.startswith(
        "Name: <unknown>, Feature: x (data type: float) is required but could not be found."
    )


def test_bad_serialized_examples_fed_to_predict(tfs: ServerProcess) -> None:
    request = predict(inputs=np.array([b"\xff not an example"], dtype=object))
    request.model_spec.signature_name = "regress_x_to_y"
    code, message = rpc_error(tfs.prediction.Predict, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "Could not parse example input" in message


def multi(*tasks: tuple[str, str, str]) -> inference_pb2.MultiInferenceRequest:
    request = inference_pb2.MultiInferenceRequest()
    for name, signature, method in tasks:
        task = request.tasks.add()
        task.model_spec.name = name
        task.model_spec.signature_name = signature
        task.method_name = method
    request.input.CopyFrom(classify("", 2.0).input)
    return request


REGRESS = "tensorflow/serving/regress"
CLASSIFY = "tensorflow/serving/classify"


@pytest.mark.parametrize(
    ("tasks", "code", "message"),
    [
        ((), grpc.StatusCode.INVALID_ARGUMENT, "ModelSpec has no name specified."),
        (
            (("default", "regress_x_to_y", REGRESS), ("other", "classify_x_to_y", CLASSIFY)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "All ModelSpecs in a MultiInferenceRequest must access the same model name.",
        ),
        (
            (("default", "regress_x_to_y", REGRESS), ("default", "regress_x_to_y", REGRESS)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Duplicate evaluation of signature: regress_x_to_y",
        ),
        (
            (("default", "ThisSignatureDoesNotExist", REGRESS),),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Requested signature not found in model graph: ThisSignatureDoesNotExist",
        ),
        (
            (("default", "serving_default", "tensorflow/serving/predict"),),
            grpc.StatusCode.UNIMPLEMENTED,
            "Unsupported signature method_name: tensorflow/serving/predict",
        ),
        (
            (("default", "regress_x_to_y", REGRESS), ("default", "regress_x2_to_y3", REGRESS)),
            grpc.StatusCode.INVALID_ARGUMENT,
            # TF Serving feeds the examples to every task's input tensor (x2 is a float):
            # fastserve refuses that before the run, in Predict's words.
            "Expects arg[0] to be float but string is provided",
        ),
    ],
    ids=[
        "no-tasks",
        "two-models",
        "duplicate",
        "missing-signature",
        "predict-method",
        "two-inputs",
    ],
)
def test_multi_inference_errors(
    tfs: ServerProcess, tasks: tuple, code: grpc.StatusCode, message: str
) -> None:
    assert rpc_error(tfs.prediction.MultiInference, multi(*tasks)) == (code, message)


def test_multi_inference_with_an_empty_model_name_in_a_later_task(tfs: ServerProcess) -> None:
    request = multi(("default", "regress_x_to_y", REGRESS), ("", "classify_x_to_y", CLASSIFY))
    assert rpc_error(tfs.prediction.MultiInference, request) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Found ModelSpec with an empty model name.",
    )


def test_classify_rest_errors(tfs: ServerProcess) -> None:
    path = "/v1/models/default:classify"
    status, message = rest_error(tfs, "POST", path, b'{"signature_name": "classify_x_to_y"}')
    assert status == 400 and message.endswith(
        "When method is classify, key 'examples' is expected and was not found"
    )
    status, message = rest_error(tfs, "POST", path, b'{"examples": {"x": 1.0}}')
    assert status == 400 and message.endswith("Expecting 'examples' value to be an list/array")
    status, message = rest_error(tfs, "POST", path, b'{"examples": []}')
    assert status == 400 and message.endswith("'examples' value is an empty array")
    assert rest_error(tfs, "POST", path, b'{"examples": [[{"x": 1.0}]]}') == (
        400,
        "Example must be JSON object but got JSON Array",
    )
    assert rest_error(tfs, "POST", path, b'{"examples": [{"x": [10, null]}]}') == (
        400,
        "Feature: x has element with unexpected JSON type: Null",
    )
    assert rest_error(tfs, "POST", path, b'{"examples": [{"x": [10, 10.0]}]}') == (
        400,
        "Unexpected element type in feature: x expecting type: int64",
    )
    assert rest_error(tfs, "POST", path, b'{"examples": [{"x": [10, {"test": 10}]}]}') == (
        400,
        "Feature: x has element with unexpected JSON type: Object",
    )
    assert rest_error(tfs, "POST", path, b'{"examples": [{"x": [[10], 20]}]}') == (
        400,
        "Feature: x has element with unexpected JSON type: Array",
    )
    assert rest_error(tfs, "POST", path, b'{"examples": [{"x": 18446744073709551615}]}') == (
        400,
        "Feature: x has uint64 element. Only int64 is supported.",
    )


def test_method_name_check(testdata: Path, start_server: Callable[..., ServerProcess]) -> None:
    server = start_server(
        "--model_name=default",
        f"--model_base_path={testdata / 'saved_model_half_plus_two_cpu'}",
        "--enable_signature_method_name_check",
    )
    assert rpc_error(server.prediction.Classify, classify("regress_x_to_y", 2.0)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Expected classification signature method_name to be tensorflow/serving/classify. "
        "Was: tensorflow/serving/regress",
    )
    assert rpc_error(server.prediction.Regress, regress("serving_default", 2.0)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Expected regression signature method_name to be tensorflow/serving/regress. "
        "Was: tensorflow/serving/predict",
    )


# --- config -------------------------------------------------------------------------------------


def reload(server: ServerProcess, text: str) -> tuple[grpc.StatusCode, str]:
    request = model_management_pb2.ReloadConfigRequest()
    text_format.Parse(text, request.config)
    return rpc_error(server.model_service.HandleReloadConfigRequest, request)


def test_reload_config_errors(tfs: ServerProcess, testdata: Path) -> None:
    base = testdata / "saved_model_half_plus_two_cpu"
    assert reload(
        tfs,
        f'model_config_list {{ config {{ name: "default" base_path: "{base}" }} '
        f'config {{ name: "default" base_path: "{base}" }} }}',
    ) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Illegal to list model default multiple times in config list",
    )
    assert reload(
        tfs, 'model_config_list { config { name: "default" base_path: "relative" } }'
    ) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Expected model default to have an absolute path or URI; got base_path()=relative",
    )
    assert reload(
        tfs,
        f'model_config_list {{ config {{ name: "default" base_path: "{base}" '
        'version_labels { key: "stable" value: 7 } } }',
    ) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "Request to assign label to version 7 of model default, which is not currently available for inference",
    )
    assert reload(tfs, "") == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "ServerModelConfig type not supported by HandleReloadConfigRequest. Only ModelConfigList is currently supported",
    )
