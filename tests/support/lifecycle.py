"""What lifecycle tests share: a slow python model, a server's version statuses, waiting for a
condition with a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from support import models
from support.server import ServerProcess

# A python model that sleeps x[0] seconds (simulated slow work, so a request is in flight for
# as long as a test needs) and answers x + VERSION. With a STARTED file, each call appends its
# x[0] to it as it starts, so a test can wait until its request is running; with a RELEASE
# file, each call then waits until that file exists, so a test decides when it ends.
SLOW_MODEL = """
    import os
    import time

    from fastserve.servables.python import signature, tensor

    STARTED = STARTED_PATH
    RELEASE = RELEASE_PATH


    @signature(inputs={"x": tensor("float32", [-1])}, outputs={"y": tensor("float32", [-1])})
    def serving_default(x):
        if STARTED:
            with open(STARTED, "a") as started:
                started.write(f"{float(x[0])}\\n")
        time.sleep(float(x[0]))
        while RELEASE and not os.path.exists(RELEASE):
            time.sleep(0.01)
        return {"y": x + VERSION}
"""


def slow_model(
    path: Path, version: int, started: Path | None = None, release: Path | None = None
) -> None:
    """SLOW_MODEL answering x + `version` in `path`; each call appends to `started` as it
    starts (see started_calls), and ends only once `release` exists."""
    source = SLOW_MODEL.replace("VERSION", str(version))
    for placeholder, file in (("STARTED_PATH", started), ("RELEASE_PATH", release)):
        source = source.replace(placeholder, repr(str(file)) if file else "None")
    models.python_model(path, source)


def started_calls(started: Path) -> list[float]:
    """The x[0] of every call a slow model has started, in order (see slow_model)."""
    if not started.exists():
        return []
    return [
        float(line) for line in started.read_text().splitlines(keepends=True) if line.endswith("\n")
    ]


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
