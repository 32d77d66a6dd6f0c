"""Deadlines and cancellation without batching: a request whose deadline passed, or whose
client went away, while it waited for a worker thread is never run.

A slow `python` model writes down every call it starts, so the tests see exactly what ran.
With one worker thread per frontend, a request sent while another runs has to wait.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import pytest

from support import models
from support.lifecycle import wait_until
from support.requests import predict_request
from support.server import ServerProcess

RECORDING_MODEL = """
    import time
    from pathlib import Path

    from fastserve.servables.python import signature, tensor

    CALLS = Path(__file__).parent / "calls.txt"


    @signature(inputs={"x": tensor("float32", [-1])}, outputs={"y": tensor("float32", [-1])})
    def serving_default(x):
        with CALLS.open("a") as calls:
            calls.write(f"start {float(x[1])}\\n")
        time.sleep(float(x[0]))  # simulated slow work
        with CALLS.open("a") as calls:
            calls.write(f"end {float(x[1])}\\n")
        return {"y": x}
"""


def calls(folder: Path, event: str = "start") -> list[float]:
    """The tags of the calls that started (or ended), in order."""
    path = folder / "calls.txt"
    lines = path.read_text().splitlines() if path.exists() else []
    return [float(line.split()[1]) for line in lines if line.startswith(event)]


@pytest.fixture()
def recording(tmp_path: Path) -> Path:
    models.python_model(tmp_path / "slow" / "1", RECORDING_MODEL)
    return tmp_path / "slow" / "1"


@pytest.fixture()
def config(recording: Path, tmp_path: Path) -> Path:
    path = tmp_path / "models.yaml"
    path.write_text(
        f"models:\n  - {{name: slow, base_path: {recording.parent}, model_platform: python}}\n"
    )
    return path


def x(seconds: float, tag: float) -> dict[str, np.ndarray]:
    """Input that makes the model sleep `seconds` and record `tag`."""
    return {"x": np.array([seconds, tag], np.float32)}


def test_grpc_request_past_its_deadline_is_never_started(
    recording: Path, config: Path, start_server: Callable[..., ServerProcess]
) -> None:
    server = start_server(f"--config={config}", "--grpc_max_threads=1")
    busy = server.prediction.Predict.future(predict_request("slow", x(2.0, 1.0)), timeout=30)
    wait_until(lambda: calls(recording) == [1.0], what="the first call to start")
    with pytest.raises(grpc.RpcError) as expired:
        server.prediction.Predict(predict_request("slow", x(0.0, 2.0)), timeout=0.5)
    assert expired.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    # A client that gives up on its queued request (it disconnects) drops it too.
    abandoned = server.prediction.Predict.future(predict_request("slow", x(0.0, 3.0)), timeout=30)
    abandoned.cancel()
    busy.result()
    # The one thread takes requests in order: had 2 or 3 run, they would be before 4.
    server.prediction.Predict(predict_request("slow", x(0.0, 4.0)), timeout=30)
    assert calls(recording) == [1.0, 4.0]


def test_rest_request_past_the_rest_timeout_is_never_started(
    recording: Path, config: Path, start_server: Callable[..., ServerProcess]
) -> None:
    server = start_server(
        f"--config={config}", "--rest_api_num_threads=1", "--rest_api_timeout_in_ms=1000"
    )
    results: dict[str, object] = {}

    def post(key: str, seconds: float, tag: float) -> None:
        answer = server.http.post(
            "/v1/models/slow:predict", json={"instances": [seconds, tag]}, timeout=30
        )
        results[key] = (answer.status_code, answer.json())

    busy = threading.Thread(target=post, args=("busy", 2.5, 1.0))
    busy.start()
    wait_until(lambda: calls(recording) == [1.0], what="the first call to start")
    post("queued", 0.0, 2.0)  # waits for the only thread, past its 1 s timeout
    assert results["queued"] == (504, {"error": "Timed out waiting for notification"})
    busy.join(30)
    # Work already running finishes; its client had its answer at 1 s.
    assert results["busy"] == (504, {"error": "Timed out waiting for notification"})
    wait_until(lambda: calls(recording, "end") == [1.0], what="the first call to end")
    # The one thread takes requests in order: had 2 run, it would be before 3.
    post("after", 0.0, 3.0)
    assert results["after"] == (200, {"predictions": [0.0, 3.0]})
    assert calls(recording) == [1.0, 3.0]
