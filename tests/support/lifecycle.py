"""What lifecycle tests share: a slow python model, a server's version statuses, waiting for a
condition with a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from support import models
from support.server import ServerProcess

# A python model that sleeps x[0] seconds (simulated slow work, so a request is in flight for
# as long as a test needs) and answers x + VERSION.
SLOW_MODEL = """
    import time

    from fastserve.servables.python import signature, tensor


    @signature(inputs={"x": tensor("float32", [-1])}, outputs={"y": tensor("float32", [-1])})
    def serving_default(x):
        time.sleep(float(x[0]))
        return {"y": x + VERSION}
"""


def slow_model(path: Path, version: int) -> None:
    models.python_model(path, SLOW_MODEL.replace("VERSION", str(version)))


def statuses(server: ServerProcess, model: str) -> dict[str, tuple[str, str, str]]:
    """Version -> (state, error code, error message), from the REST status API."""
    answer = server.http.get(f"/v1/models/{model}")
    assert answer.status_code == 200, answer.text
    return {
        s["version"]: (s["state"], s["status"]["error_code"], s["status"]["error_message"])
        for s in answer.json()["model_version_status"]
    }


def wait_until(condition: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    """Polls `condition` until it holds; fails the test naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
