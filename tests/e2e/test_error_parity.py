"""The same bad request over gRPC and over REST gets the same answer: the gRPC status code and
its HTTP status (TF Serving's ToHTTPStatusCode, fastserve.errors.HTTP_STATUS) pair, and the
messages are equal, except where TF Serving itself words the two protocols differently (each
such case says why and asserts both answers)."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, predict_pb2

from fastserve.errors import HTTP_STATUS, Code
from support.requests import X, predict_request
from support.server import ServerProcess


@dataclass(frozen=True)
class Case:
    grpc_request: predict_pb2.PredictRequest
    rest_path: str
    rest_body: dict
    # What gRPC answers: the code and the message.
    code: Code
    message: str
    # None: REST answers the same: HTTP_STATUS[code] and {"error": message}. Otherwise TF
    # Serving's REST answer (status and body), which differs, and `why`.
    rest_answer: tuple[int, dict] | None = None
    why: str = ""


MIXED = {
    "values": np.array([[1.0, 2.0]], np.float32),
    "counts": np.array([1], np.int64),
}

CASES = {
    "unknown model": Case(
        predict_request("nope", {"x": X}),
        "/v1/models/nope:predict",
        {"instances": [1.0]},
        Code.NOT_FOUND,
        "Servable not found for request: Latest(nope)",
    ),
    "unknown version": Case(
        predict_request("half_plus_two", {"x": X}, version=7),
        "/v1/models/half_plus_two/versions/7:predict",
        {"instances": [1.0]},
        Code.NOT_FOUND,
        "Servable not found for request: Specific(half_plus_two, 7)",
    ),
    "unknown label": Case(
        predict_request("half_plus_two", {"x": X}, label="gold"),
        "/v1/models/half_plus_two/labels/gold:predict",
        {"instances": [1.0]},
        Code.INVALID_ARGUMENT,
        "Unrecognized servable version label: gold",
    ),
    "unknown version of a python model": Case(
        predict_request("echo", {"x": X}, version=7),
        "/v1/models/echo/versions/7:predict",
        {"instances": [1.0]},
        Code.NOT_FOUND,
        "Servable not found for request: Specific(echo, 7)",
    ),
    "a model that raises": Case(
        predict_request("echo", {"x": X}, signature="explode"),
        "/v1/models/echo:predict",
        {"signature_name": "explode", "instances": [1.0]},
        Code.INTERNAL,
        "RuntimeError: the model failed on purpose",
    ),
    "unknown signature": Case(
        predict_request("half_plus_two", {"x": X}, signature="nope"),
        "/v1/models/half_plus_two:predict",
        {"signature_name": "nope", "instances": [1.0]},
        Code.FAILED_PRECONDITION,
        'Serving signature key "nope" not found.',
        (400, {"error": 'Serving signature name: "nope" not found in signature def'}),
        "TF Serving's REST handler looks the signature up itself, before converting the JSON "
        "(it needs the signature's dtypes), and answers INVALID_ARGUMENT; gRPC Predict finds "
        "it missing later, with FAILED_PRECONDITION. Both map to HTTP 400.",
    ),
    "wrong dtype": Case(
        predict_request("half_plus_two", {"x": np.array([b"a"], dtype=object)}),
        "/v1/models/half_plus_two:predict",
        {"instances": ["a"]},
        Code.INVALID_ARGUMENT,
        "Expects arg[0] to be float but string is provided",
        (
            400,
            {
                "error": "Failed to process element: 0 of 'instances' list. Error: "
                'INVALID_ARGUMENT: JSON Value: "a" Type: String is not of expected type: float'
            },
        ),
        "JSON carries no dtype: TF Serving's REST handler converts each value to the "
        "signature's dtype and words a value that does not convert as a JSON error.",
    ),
    "missing input": Case(
        predict_request("mixed", MIXED),
        "/v1/models/mixed:predict",
        {"inputs": {"values": [[1.0, 2.0]], "counts": [1]}},
        Code.INVALID_ARGUMENT,
        "input size does not match signature: 2!=3 len({counts,values}) != "
        "len({counts,values,words}). Sent extra: {}. Missing but required: {words}.",
        (400, {"error": "Missing named input: words in 'inputs' object."}),
        "TF Serving's REST handler fills the request from the signature's inputs, so it is "
        "the JSON conversion that finds one missing, in its own words.",
    ),
    "bad output filter": Case(
        predict_request("half_plus_two", {"x": X}, output_filter=("nope",)),
        "/v1/models/half_plus_two:predict",
        {"instances": [1.0], "output_filter": ["nope"]},
        Code.INVALID_ARGUMENT,
        "output tensor alias not found in signature: nope Outputs expected to be in the set {y}.",
        (200, {"predictions": [3.5]}),
        "TF Serving's REST Predict has no output filter: it reads only signature_name and "
        "instances or inputs, so the key is ignored and every output is returned.",
    ),
}


def grpc_answer(server: ServerProcess, request: predict_pb2.PredictRequest) -> tuple[Code, str]:
    with pytest.raises(grpc.RpcError) as caught:
        server.prediction.Predict(request, timeout=30)
    return Code[caught.value.code().name], caught.value.details()


def rest_answer(server: ServerProcess, path: str, body: dict) -> tuple[int, dict]:
    answer = server.http.post(path, json=body)
    assert answer.headers["content-type"] == "application/json", answer.text
    return answer.status_code, answer.json()


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_grpc_and_rest_answer_a_bad_request_alike(server: ServerProcess, case: Case) -> None:
    code, message = grpc_answer(server, case.grpc_request)
    assert (code, message) == (case.code, case.message)
    answer = rest_answer(server, case.rest_path, case.rest_body)
    if case.rest_answer is None:
        assert answer == (HTTP_STATUS[code], {"error": message})
    else:
        assert case.why
        assert answer == case.rest_answer


def status_request(
    name: str, version: int | None = None
) -> get_model_status_pb2.GetModelStatusRequest:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = name
    if version is not None:
        request.model_spec.version.value = version
    return request


def metadata_request(
    name: str, version: int | None = None, label: str | None = None
) -> get_model_metadata_pb2.GetModelMetadataRequest:
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = name
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    return request


@pytest.mark.parametrize(
    ("call", "path", "code", "message"),
    [
        (
            lambda s: s.model_service.GetModelStatus(status_request("nope"), timeout=30),
            "/v1/models/nope",
            Code.NOT_FOUND,
            "Could not find any versions of model nope",
        ),
        (
            lambda s: s.model_service.GetModelStatus(
                status_request("half_plus_two", 7), timeout=30
            ),
            "/v1/models/half_plus_two/versions/7",
            Code.NOT_FOUND,
            "Could not find version 7 of model half_plus_two",
        ),
        (
            lambda s: s.prediction.GetModelMetadata(metadata_request("nope"), timeout=30),
            "/v1/models/nope/metadata",
            Code.NOT_FOUND,
            "Servable not found for request: Latest(nope)",
        ),
        (
            lambda s: s.prediction.GetModelMetadata(
                metadata_request("half_plus_two", 7), timeout=30
            ),
            "/v1/models/half_plus_two/versions/7/metadata",
            Code.NOT_FOUND,
            "Servable not found for request: Specific(half_plus_two, 7)",
        ),
        (
            lambda s: s.prediction.GetModelMetadata(
                metadata_request("half_plus_two", label="gold"), timeout=30
            ),
            "/v1/models/half_plus_two/labels/gold/metadata",
            Code.INVALID_ARGUMENT,
            "Unrecognized servable version label: gold",
        ),
    ],
    ids=[
        "status of an unknown model",
        "status of an unknown version",
        "metadata of an unknown model",
        "metadata of an unknown version",
        "metadata of an unknown label",
    ],
)
def test_grpc_and_rest_answer_status_and_metadata_misses_alike(
    server: ServerProcess,
    call,
    path: str,
    code: Code,
    message: str,  # type: ignore[no-untyped-def]
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        call(server)
    assert (Code[caught.value.code().name], caught.value.details()) == (code, message)
    answer = server.http.get(path)
    assert (answer.status_code, answer.json()) == (HTTP_STATUS[code], {"error": message})
