"""Request limits (--max_request_bytes) and clients that connect and send nothing."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf

from support.requests import X, predict_request
from support.server import ServerProcess
from support.store import ModelStore

LIMIT = 100_000


@pytest.fixture()
def limited(
    store: ModelStore, tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> ServerProcess:
    store.install(store.echo(1.0), tmp_path / "echo" / "1")
    config = tmp_path / "models.yaml"
    config.write_text(
        f"models:\n  - {{name: echo, base_path: {tmp_path / 'echo'}, model_platform: python}}\n"
    )
    return start_server(f"--config={config}", f"--max_request_bytes={LIMIT}")


def test_rest_body_over_the_limit_is_413_with_a_json_error(limited: ServerProcess) -> None:
    big = {"instances": [1.5] * 30_000}  # about 150 kB of JSON
    answer = limited.http.post("/v1/models/echo:predict", json=big)
    assert answer.status_code == 413
    message = answer.json()["error"]
    assert f"larger than the server's limit of {LIMIT} bytes (--max_request_bytes)" in message

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"instances": ['
        for _ in range(30_000):
            yield b"1.5,"
        yield b"1.5]}"

    streamed = limited.http.post("/v1/models/echo:predict", content=chunks())
    assert streamed.status_code == 413
    assert "--max_request_bytes" in streamed.json()["error"]
    small = limited.http.post("/v1/models/echo:predict", json={"instances": [1.0, 2.0]})
    assert small.json() == {"predictions": [2.0, 3.0]}


def test_grpc_message_over_the_limit_is_resource_exhausted(limited: ServerProcess) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        limited.prediction.Predict(
            predict_request("echo", {"x": np.zeros(50_000, np.float32)}), timeout=30
        )
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    small = limited.prediction.Predict(predict_request("echo", {"x": X}), timeout=30)
    assert tf.make_ndarray(small.outputs["y"]).tolist() == [2.0, 3.0, 6.0]


def test_declared_shape_past_the_limit_is_refused_before_allocating(
    limited: ServerProcess,
) -> None:
    """A few bytes may declare a tensor of megabytes (typed values repeat the last one to
    fill a shape): the decoded size is held to the same limit."""
    request = predict_request("echo", {})
    proto = request.inputs["x"]
    proto.dtype = tf.float32.as_datatype_enum
    proto.tensor_shape.dim.add(size=1_000_000)
    proto.float_val.append(1.0)
    assert request.ByteSize() < 100
    with pytest.raises(grpc.RpcError) as caught:
        limited.prediction.Predict(request, timeout=30)
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert caught.value.details() == (
        f"tensor parsing error: x: shape [1000000] needs 4000000 bytes, more than a request "
        f"may carry ({LIMIT})"
    )


def test_idle_connections_do_not_stop_others_being_served(limited: ServerProcess) -> None:
    """200 clients connect to each port and send nothing (or half a request); a real client
    is still answered on both."""
    idle: list[socket.socket] = []
    try:
        for port in (limited.grpc_port, limited.rest_port):
            for index in range(200):
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                if index % 2:
                    sock.sendall(b"POST /v1/models/echo:predict HTTP/1.1\r\nHost: x\r\n")
                idle.append(sock)
        answer = limited.http.post("/v1/models/echo:predict", json={"instances": [1.0]})
        assert answer.json() == {"predictions": [2.0]}
        response = limited.prediction.Predict(predict_request("echo", {"x": X}), timeout=30)
        assert tf.make_ndarray(response.outputs["y"]).tolist() == [2.0, 3.0, 6.0]
    finally:
        for sock in idle:
            sock.close()
    assert limited.process.poll() is None
