"""Predict on the native path answers exactly as the Python path does.

A SavedModel on TensorFlow's C API runner is served by the native gRPC Predict path without
Python; with FASTSERVE_TENSORFLOW_RUNNER=python the same model takes the Python step. Both
servers get the same requests; their answers (bytes, or status and message) must be equal.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from support.requests import predict_request
from support.server import ServerProcess


@pytest.fixture(scope="module")
def pair(repository: Path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """The repository on the native path and on the Python path, access log on for both."""
    flags = [f"--config={repository / 'models.yaml'}", "--access_log"]
    native = ServerProcess(flags, rest=False).ready()
    python = ServerProcess(flags, rest=False, env={"FASTSERVE_TENSORFLOW_RUNNER": "python"}).ready()
    yield native, python
    for process in (native, python):
        assert process.terminate() == 0, process.output


def _answer(server: ServerProcess, request: predict_pb2.PredictRequest) -> tuple[str, bytes]:
    try:
        response = server.prediction.Predict(request, timeout=30)
    except grpc.RpcError as error:
        return (f"{error.code().name}: {error.details()}", b"")
    return ("OK", response.SerializeToString(deterministic=True))


REQUESTS = {
    "latest": predict_request("half_plus_two", {"x": np.array([1.0, 2.0, 5.0], np.float32)}),
    "version": predict_request(
        "half_plus_two", {"x": np.array([[1.0], [3.0]], np.float32)}, version=1
    ),
    "label": predict_request("half_plus_two", {"x": np.array([7.0], np.float32)}, label="canary"),
    "signature": predict_request(
        "half_plus_two", {"x": np.array([1.0], np.float32)}, signature="serving_default"
    ),
    "filter": predict_request(
        "mixed",
        {
            "values": np.array([[1.0, 2.0], [3.0, 4.0]], np.float32),
            "counts": np.array([1, -2], np.int64),
            "words": np.array([b"a", b"bc"], object),
        },
        output_filter=("echo", "total"),
    ),
    "all outputs": predict_request(
        "mixed",
        {
            "values": np.array([[1.0, 2.0]], np.float32),
            "counts": np.array([3], np.int64),
            "words": np.array([b"\x00\xff"], object),
        },
    ),
    "tf2": predict_request("tf2", {"x": np.array([[1.0], [2.0]], np.float32)}),
    # 400 KB each way: a response this large leaves the native server without a copy.
    "100,000 floats": predict_request(
        "half_plus_two", {"x": np.arange(100_000, dtype=np.float32)}, version=1
    ),
    # The Python step words every error.
    "unknown signature": predict_request(
        "half_plus_two", {"x": np.array([1.0], np.float32)}, signature="nope"
    ),
    "wrong dtype": predict_request("half_plus_two", {"x": np.array([1.0], np.float64)}),
    "missing input": predict_request("mixed", {"values": np.zeros((1, 2), np.float32)}),
    "duplicate filter": predict_request(
        "half_plus_two", {"x": np.array([1.0], np.float32)}, output_filter=("y", "y")
    ),
    "unknown version": predict_request(
        "half_plus_two", {"x": np.array([1.0], np.float32)}, version=99
    ),
    "runner error": predict_request("half_plus_two", {"x": np.zeros((2, 2, 2), np.float32)}),
}


@pytest.mark.parametrize("case", sorted(REQUESTS))
def test_native_and_python_paths_answer_alike(
    pair: tuple[ServerProcess, ServerProcess], case: str
) -> None:
    native, python = pair
    request = REQUESTS[case]
    assert _answer(native, request) == _answer(python, request)


def test_tensor_content_inputs_answer_alike(pair: tuple[ServerProcess, ServerProcess]) -> None:
    native, python = pair
    request = predict_request("half_plus_two", {})
    request.inputs["x"].dtype = tf.float32.as_datatype_enum
    request.inputs["x"].tensor_shape.dim.add().size = 4
    request.inputs["x"].tensor_content = np.arange(4, dtype="<f4").tobytes()
    status, body = _answer(native, request)
    assert status == "OK"
    assert (status, body) == _answer(python, request)
    outputs = predict_pb2.PredictResponse.FromString(body).outputs["y"]
    assert list(outputs.float_val) == [3.0, 3.5, 4.0, 4.5]  # version 2: 0.5 x + 3


def test_native_requests_reach_the_access_log(pair: tuple[ServerProcess, ServerProcess]) -> None:
    native, _ = pair
    request = predict_request("half_plus_two", {"x": np.array([1.0], np.float32)}, version=2)
    for _ in range(3):
        native.prediction.Predict(request, timeout=30)
    # The records are drained by a thread; SIGTERM drains what is left before exit.
    native.terminate()
    lines = [
        line
        for line in native.output.splitlines()
        if "grpc Predict model=half_plus_two status=OK peer=" in line
    ]
    assert len(lines) >= 3, native.output
