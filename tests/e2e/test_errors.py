"""Bad input gets TF Serving's status code and message over both protocols, and the server
keeps serving."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2

from support.requests import X, predict_request
from support.server import ServerProcess


def grpc_error(server: ServerProcess, request: predict_pb2.PredictRequest) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        server.prediction.Predict(request, timeout=30)
    return caught.value


def rest_error(
    server: ServerProcess, path: str, body: object = None, **kwargs: object
) -> tuple[int, str]:
    if body is None and "content" not in kwargs:
        answer = server.http.get(path)
    else:
        answer = (
            server.http.post(path, json=body, **kwargs)
            if body is not None
            else server.http.post(path, **kwargs)
        )
    assert answer.headers["content-type"] == "application/json", answer.text
    return answer.status_code, answer.json()["error"]


@pytest.fixture(autouse=True)
def still_serving(server: ServerProcess):
    """After every bad request the server still answers a good one."""
    yield
    response = server.prediction.Predict(predict_request("half_plus_two", {"x": X}), timeout=30)
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["y"]), [3.5, 4.0, 5.5])


# --- model spec ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "code", "message"),
    [
        ({}, grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(nope)"),
        (
            {"version": 7},
            grpc.StatusCode.NOT_FOUND,
            "Servable not found for request: Specific(nope, 7)",
        ),
        (
            {"label": "gold"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "Unrecognized servable version label: gold",
        ),
    ],
)
def test_unknown_model(
    server: ServerProcess, kwargs: dict, code: grpc.StatusCode, message: str
) -> None:
    error = grpc_error(server, predict_request("nope", {"x": X}, **kwargs))
    assert error.code() == code
    assert error.details() == message


def test_unknown_version_and_label_of_known_model(server: ServerProcess) -> None:
    error = grpc_error(server, predict_request("half_plus_two", {"x": X}, version=7))
    assert (error.code(), error.details()) == (
        grpc.StatusCode.NOT_FOUND,
        "Servable not found for request: Specific(half_plus_two, 7)",
    )
    error = grpc_error(server, predict_request("half_plus_two", {"x": X}, label="gold"))
    assert (error.code(), error.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Unrecognized servable version label: gold",
    )
    assert rest_error(
        server, "/v1/models/half_plus_two/versions/7:predict", {"instances": [1.0]}
    ) == (
        404,
        "Servable not found for request: Specific(half_plus_two, 7)",
    )
    assert rest_error(
        server, "/v1/models/half_plus_two/labels/gold:predict", {"instances": [1.0]}
    ) == (
        400,
        "Unrecognized servable version label: gold",
    )
    assert rest_error(server, "/v1/models/nope:predict", {"instances": [1.0]}) == (
        404,
        "Servable not found for request: Latest(nope)",
    )


def test_missing_model_spec_and_name(server: ServerProcess) -> None:
    request = predict_pb2.PredictRequest()
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(X))
    error = grpc_error(server, request)
    assert (error.code(), error.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Missing ModelSpec",
    )
    error = grpc_error(server, predict_request("", {"x": X}))
    assert (error.code(), error.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "ModelSpec has no name specified.",
    )


def test_unknown_signature(server: ServerProcess) -> None:
    error = grpc_error(server, predict_request("half_plus_two", {"x": X}, signature="nope"))
    assert (error.code(), error.details()) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        'Serving signature key "nope" not found.',
    )
    body = {"signature_name": "nope", "instances": [1.0]}
    assert rest_error(server, "/v1/models/half_plus_two:predict", body) == (
        400,
        'Serving signature name: "nope" not found in signature def',
    )


# --- inputs ----------------------------------------------------------------------------------


def test_wrong_dtype(server: ServerProcess) -> None:
    error = grpc_error(
        server, predict_request("half_plus_two", {"x": np.array([b"a"], dtype=object)})
    )
    assert (error.code(), error.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Expects arg[0] to be float but string is provided",
    )
    error = grpc_error(
        server, predict_request("half_plus_two", {"x": np.array([1, 2], dtype=np.int64)})
    )
    assert error.details() == "Expects arg[0] to be float but int64 is provided"
    status, message = rest_error(server, "/v1/models/half_plus_two:predict", {"instances": ["a"]})
    assert status == 400
    assert message == (
        "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: "
        'JSON Value: "a" Type: String is not of expected type: float'
    )
    status, message = rest_error(
        server,
        "/v1/models/mixed:predict",
        {"inputs": {"values": [[1.0, 2.0]], "counts": [1.5], "words": ["a"]}},
    )
    assert (status, message) == (400, "JSON Value: 1.5 Type: Number is not of expected type: int64")
    status, message = rest_error(server, "/v1/models/half_plus_two:predict", {"inputs": [True]})
    assert (status, message) == (400, "JSON Value: true Type: True is not of expected type: float")


def test_wrong_rank(server: ServerProcess) -> None:
    # A python servable checks the shapes it declares.
    error = grpc_error(server, predict_request("echo", {"x": np.ones((2, 2), np.float32)}))
    assert (error.code(), error.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "input tensor x has shape [2,2], which the signature's shape [-1] does not accept",
    )
    status, message = rest_error(server, "/v1/models/echo:predict", {"instances": [[1.0, 2.0]]})
    assert status == 400
    assert (
        message
        == "input tensor x has shape [1,2], which the signature's shape [-1] does not accept"
    )
    # A SavedModel's graph decides, as under TF Serving: a shape it cannot compute with is
    # TensorFlow's own INVALID_ARGUMENT.
    error = grpc_error(
        server,
        predict_request(
            "mixed",
            {
                "values": np.ones((2,), np.float32),
                "counts": np.array([1, 2]),
                "words": np.array([b"a", b"b"], dtype=object),
            },
        ),
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith(
        "Invalid reduction dimension (1 for input with 1 dimension(s)"
    )


def test_tensorflow_shapes_are_the_graphs_to_check(server: ServerProcess) -> None:
    # TF Serving's half_plus_two declares x as (-1, 1) and is fed [n]; the graph decides.
    response = server.prediction.Predict(
        predict_request("half_plus_two", {"x": np.ones((2, 2), np.float32)}), timeout=30
    )
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["y"]), np.full((2, 2), 3.5))


def test_ragged_rows(server: ServerProcess) -> None:
    body = {
        "instances": [
            {"values": [1.0, 2.0], "counts": 1, "words": "a"},
            {"values": [1.0], "counts": 1, "words": "b"},
        ]
    }
    status, message = rest_error(server, "/v1/models/mixed:predict", body)
    assert (status, message) == (
        400,
        "Failed to process element: 1 key: values of 'instances' list. Error: INVALID_ARGUMENT: "
        "Expecting tensor size: 2 but got: 1",
    )
    status, message = rest_error(
        server,
        "/v1/models/mixed:predict",
        {"inputs": {"values": [[1.0, 2.0], [3.0]], "counts": [1, 2], "words": ["a", "b"]}},
    )
    assert (status, message) == (
        400,
        "Encountered list at unexpected size: 1 at level: 1 expected size: 2",
    )


def test_bad_tensor_content(server: ServerProcess) -> None:
    request = predict_request("half_plus_two", {})
    proto = request.inputs["x"]
    proto.dtype = tf.float32.as_datatype_enum
    proto.tensor_shape.dim.add(size=3)
    proto.tensor_content = b"\x00" * 5
    error = grpc_error(server, request)
    assert (error.code(), error.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "tensor parsing error: x",
    )


def test_missing_and_extra_inputs(server: ServerProcess) -> None:
    error = grpc_error(server, predict_request("half_plus_two", {"x": X, "z": X}))
    assert (error.code(), error.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "input size does not match signature: 2!=1 len({x,z}) != len({x}). Sent extra: {z}. "
        "Missing but required: {}.",
    )
    error = grpc_error(server, predict_request("half_plus_two", {}))
    assert error.details() == (
        "input size does not match signature: 0!=1 len({}) != len({x}). Sent extra: {}. "
        "Missing but required: {x}."
    )
    error = grpc_error(server, predict_request("half_plus_two", {"z": X}))
    assert error.details() == (
        "Signature input alias: x(feed name: x:0) not found in request and no default value "
        "provided. Inputs expected to be in the request {z}, or default input alias set: "
    )
    body = {"instances": [{"values": [1.0, 2.0], "counts": 1}]}
    status, message = rest_error(server, "/v1/models/mixed:predict", body)
    assert status == 400
    assert message.startswith("Failed to process element: 0 of 'instances' list. JSON object: {")
    assert message.endswith("} keys must be equal to: counts,values,words")
    body = {"instances": [{"values": [1.0, 2.0], "counts": 1, "words": "a", "more": 1}]}
    assert rest_error(server, "/v1/models/mixed:predict", body) == (
        400,
        "Failed to process element: 0 key: more of 'instances' list. Error: INVALID_ARGUMENT: "
        "JSON object: does not have named input: more",
    )
    body = {"inputs": {"values": [[1.0, 2.0]], "counts": [1]}}
    assert rest_error(server, "/v1/models/mixed:predict", body) == (
        400,
        "Missing named input: words in 'inputs' object.",
    )
    assert rest_error(server, "/v1/models/mixed:predict", {"instances": [[1.0, 2.0]]}) == (
        400,
        "instances is a plain list, but expecting list of objects as multiple input tensors "
        "required as per tensorinfo_map",
    )


def test_instances_and_inputs_keys(server: ServerProcess) -> None:
    path = "/v1/models/half_plus_two:predict"
    status, message = rest_error(server, path, {"instances": []})
    assert status == 400 and message.endswith("No values in 'instances' array")
    status, message = rest_error(server, path, {"instances": [1.0], "inputs": [1.0]})
    assert status == 400
    assert message.endswith(
        "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist "
    )
    assert rest_error(server, path, {"signature_name": ""}) == (
        400,
        "Missing 'inputs' or 'instances' key",
    )
    status, message = rest_error(server, path, {"instances": 1.0})
    assert status == 400 and message.endswith("Excepting 'instances' to be an list/array")
    status, message = rest_error(server, path, {"signature_name": 5, "instances": [1.0]})
    assert status == 400 and message.endswith("'signature_name' key must be a string value.")


def test_malformed_bodies(server: ServerProcess) -> None:
    path = "/v1/models/half_plus_two:predict"
    status, message = rest_error(server, path, content=b"instances = [1, 2]")
    assert (
        status == 400
        and message.startswith("JSON Parse error: ")
        and message.endswith("at offset: 0")
    )
    assert rest_error(server, path, content=b"") == (400, "JSON Parse error: The document is empty")
    status, message = rest_error(server, path, content=b"[1, 2]")
    assert (
        status == 400 and message.startswith("JSON Value: [") and message.endswith("Is not object")
    )
    status, message = rest_error(server, path, content=b"\xff\xfe binary \x00")
    assert status == 400 and message.startswith("JSON Parse error: ")


def test_output_filter_errors(server: ServerProcess) -> None:
    request = predict_request("half_plus_two", {"x": X}, output_filter=("nope",))
    error = grpc_error(server, request)
    assert (error.code(), error.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "output tensor alias not found in signature: nope Outputs expected to be in the set {y}.",
    )
    error = grpc_error(server, predict_request("half_plus_two", {"x": X}, output_filter=("y", "y")))
    assert error.details() == "duplicate output tensor alias: y"


def test_model_that_raises(server: ServerProcess) -> None:
    error = grpc_error(server, predict_request("echo", {"x": X}, signature="explode"))
    assert (error.code(), error.details()) == (
        grpc.StatusCode.INTERNAL,
        "RuntimeError: the model failed on purpose",
    )
    body = {"signature_name": "explode", "instances": [1.0]}
    assert rest_error(server, "/v1/models/echo:predict", body) == (
        500,
        "RuntimeError: the model failed on purpose",
    )


# --- URLs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/models/half_plus_two/version/1:predict"),
        ("POST", "/v1/models/half_plus_two/versions/abc:predict"),
        ("POST", "/v1/models/half_plus_two/versions/1/labels/x:predict"),
        ("POST", "/v1/models/half_plus_two:Predict"),
        ("POST", "/v1/models/half_plus_two"),
        ("GET", "/v1/models/half_plus_two:predict"),
        ("GET", "/v1/foo"),
        ("DELETE", "/v1/models/half_plus_two"),
        ("POST", "/v1/models/half_plus_two:predict?x=1"),
    ],
)
def test_malformed_urls(server: ServerProcess, method: str, path: str) -> None:
    answer = server.http.request(method, path, content=b"{}")
    assert answer.status_code == 400
    assert answer.json() == {"error": f"Malformed request: {method} {path}"}


def test_a_query_string_is_part_of_the_path_as_in_tf_serving(server: ServerProcess) -> None:
    # TF Serving's GET route takes everything up to the next / or : as the model name.
    assert rest_error(server, "/v1/models/half_plus_two?verbose=1") == (
        404,
        "Could not find any versions of model half_plus_two?verbose=1",
    )


def test_missing_model_name_and_paths_outside_v1(server: ServerProcess) -> None:
    assert rest_error(server, "/v1/models") == (400, "Missing model name in request.")
    assert server.http.get("/v2/models/half_plus_two").status_code == 404
    assert server.http.get("/").status_code == 404
    assert rest_error(server, "/v1/models/half_plus_two/versions/99999999999999999999") == (
        400,
        "Failed to convert version: 99999999999999999999 to numeric.",
    )


def test_metadata_fields(server: ServerProcess) -> None:
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "half_plus_two"
    with pytest.raises(grpc.RpcError) as caught:
        server.prediction.GetModelMetadata(request, timeout=30)
    assert (
        caught.value.details() == "GetModelMetadataRequest must specify at least one metadata_field"
    )
    request.metadata_field.append("nope")
    with pytest.raises(grpc.RpcError) as caught:
        server.prediction.GetModelMetadata(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "Metadata field %s is not supportednope"


def test_a_model_raising_system_exit_fails_only_its_request(server: ServerProcess) -> None:
    error = grpc_error(server, predict_request("echo", {"x": X}, signature="leave"))
    assert (error.code(), error.details()) == (grpc.StatusCode.INTERNAL, "SystemExit: 3")
    body = {"signature_name": "leave", "instances": [1.0]}
    assert rest_error(server, "/v1/models/echo:predict", body) == (500, "SystemExit: 3")
    # REST is still up.
    answer = server.http.post("/v1/models/echo:predict", json={"instances": [1.0]})
    assert answer.json() == {"predictions": [2.0]}


def test_python_models_may_write_to_their_inputs(server: ServerProcess) -> None:
    request = predict_request("echo", {}, signature="double_in_place")
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(X))  # tensor_content: a read-only view
    assert request.inputs["x"].tensor_content
    response = server.prediction.Predict(request, timeout=30)
    assert tf.make_ndarray(response.outputs["y"]).tolist() == [2.0, 4.0, 10.0]


def test_narrow_integers_wrap_on_every_path(server: ServerProcess) -> None:
    for body in (
        {"signature_name": "widen", "instances": [300, -1]},
        {"signature_name": "widen", "instances": [300, -1], "note": "true"},  # the exact walk
    ):
        answer = server.http.post("/v1/models/echo:predict", json=body)
        assert answer.json() == {"predictions": [44, -1]}, body


def test_huge_declared_shape_is_refused_before_allocating(server: ServerProcess) -> None:
    request = predict_request("half_plus_two", {})
    proto = request.inputs["x"]
    proto.dtype = tf.float32.as_datatype_enum
    proto.tensor_shape.dim.add(size=1 << 40)
    proto.float_val.append(1.0)
    error = grpc_error(server, request)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.details() == (
        "tensor parsing error: x: shape [1099511627776] needs 4398046511104 bytes, more than a "
        "request may carry (2147483647)"
    )
    proto.tensor_shape.dim[0].size = 1 << 62
    proto.tensor_shape.dim.add(size=1 << 62)
    assert grpc_error(server, request).code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_deeply_nested_json_is_a_clear_error(server: ServerProcess) -> None:
    deep = "[" * 3000 + "1.0" + "]" * 3000
    status, message = rest_error(
        server, "/v1/models/half_plus_two:predict", content=('{"instances": ' + deep + "}").encode()
    )
    assert (status, message) == (400, "JSON Parse error: the document nests too deeply")
    nested = "[" * 70 + "1.0" + "]" * 70
    status, message = rest_error(
        server, "/v1/models/half_plus_two:predict", content=('{"inputs": ' + nested + "}").encode()
    )
    assert (status, message) == (
        400,
        "JSON value nests lists 70 deep; this server decodes tensors of at most 64 dimensions "
        "(numpy's limit)",
    )


@pytest.mark.parametrize(
    ("rank", "message"),
    [
        (
            65,
            "tensor parsing error: x: 65 dimensions; this server decodes tensors of at most 64 "
            "dimensions (numpy's limit)",
        ),
        (
            254,
            "tensor parsing error: x: 254 dimensions; this server decodes tensors of at most "
            "64 dimensions (numpy's limit)",
        ),
        (255, "tensor parsing error: x"),  # more than TensorFlow allows: TF Serving's answer
    ],
)
def test_a_tensor_of_too_many_dimensions_is_invalid_argument(
    server: ServerProcess, rank: int, message: str
) -> None:
    """Regression: ranks 65 to 254 answered INTERNAL with numpy's ValueError."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half_plus_two"
    proto = request.inputs["x"]
    proto.dtype = types_pb2.DT_FLOAT
    for _ in range(rank):
        proto.tensor_shape.dim.add(size=1)
    proto.float_val.append(1.0)
    error = grpc_error(server, request)
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)
