"""Versions come and go on disk while clients keep calling: nothing fails, nothing is lost."""

from __future__ import annotations

import shutil
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tensorflow as tf

from support import models
from support.lifecycle import slow_model, started_calls, statuses, wait_until
from support.requests import X, predict_request
from support.server import ServerProcess
from support.store import ModelStore


def test_new_version_served_under_load_without_a_failed_request(
    store: ModelStore, tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    base = tmp_path / "half_plus_two"
    store.install(store.half_plus_two(2.0), base / "1")
    server = start_server(
        "--model_name=half_plus_two",
        f"--model_base_path={base}",
        "--file_system_poll_wait_seconds=1",
    )
    answers: Counter[float] = Counter()
    failures: list[BaseException] = []
    stop = threading.Event()
    lock = threading.Lock()

    def grpc_client() -> None:
        stub = server.prediction
        while not stop.is_set():
            try:
                response = stub.Predict(predict_request("half_plus_two", {"x": X}), timeout=30)
                first = float(tf.make_ndarray(response.outputs["y"])[0])
                with lock:
                    answers[first] += 1
            except BaseException as error:  # every failure is a test failure
                failures.append(error)
                return

    def rest_client() -> None:
        import httpx

        with httpx.Client(base_url=server.rest_url, timeout=30) as http:
            while not stop.is_set():
                try:
                    answer = http.post(
                        "/v1/models/half_plus_two:predict", json={"instances": [1.0]}
                    )
                    assert answer.status_code == 200, answer.text
                    with lock:
                        answers[answer.json()["predictions"][0]] += 1
                except BaseException as error:
                    failures.append(error)
                    return

    threads = [
        threading.Thread(target=f) for f in (grpc_client, grpc_client, rest_client, rest_client)
    ]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: answers[2.5] > 20 or bool(failures), what="version 1 answers")
        store.install(store.half_plus_two(3.0), base / "2")
        wait_until(
            lambda: answers[3.5] > 20 or bool(failures), timeout=60, what="version 2 answers"
        )
        wait_until(
            lambda: statuses(server, "half_plus_two").get("1", ("",))[0] == "END", what="v1 END"
        )
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert not failures, failures[:3]
    assert set(answers) == {2.5, 3.5}
    assert statuses(server, "half_plus_two") == {
        "2": ("AVAILABLE", "OK", ""),
        "1": ("END", "OK", ""),
    }
    assert server.terminate() == 0


def test_corrupt_version_ends_with_error_and_old_version_keeps_serving(
    store: ModelStore, tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    base = tmp_path / "half_plus_two"
    store.install(store.half_plus_two(2.0), base / "1")
    # A second model, polled after half_plus_two in each pass: its new versions show passes.
    store.install(store.echo(1.0), tmp_path / "echo" / "1")
    config = tmp_path / "models.yaml"
    config.write_text(
        f"models:\n  - {{name: half_plus_two, base_path: {base}}}\n"
        f"  - {{name: echo, base_path: {tmp_path / 'echo'}, model_platform: python}}\n"
    )
    server = start_server(
        f"--config={config}",
        "--file_system_poll_wait_seconds=1",
        "--max_num_load_retries=2",
        "--load_retry_interval_micros=100000",
    )
    models.corrupt_saved_model(tmp_path / "staging")
    (tmp_path / "staging").rename(base / "2")
    wait_until(lambda: statuses(server, "half_plus_two").get("2", ("",))[0] == "END", what="v2 END")
    state, code, message = statuses(server, "half_plus_two")["2"]
    assert (state, code) == ("END", "DATA_LOSS")
    assert message.startswith(f"Cannot parse SavedModel at {base / '2'}: "), message
    assert statuses(server, "half_plus_two")["1"] == ("AVAILABLE", "OK", "")
    assert server.output.count("model=half_plus_two version=2 load attempt") == 3
    answer = server.http.post("/v1/models/half_plus_two:predict", json={"instances": [1.0]})
    assert answer.json() == {"predictions": [2.5]}
    # The failed version stays failed while it is on disk: no endless reloading. Each poll
    # aspires to it again; a new echo version served means a whole pass ran after it ended
    # (two, to be sure the pass began after it).
    for echo in (2, 3):
        store.install(store.echo(1.0), tmp_path / "echo" / str(echo))
        wait_until(
            lambda echo=echo: statuses(server, "echo").get(str(echo), ("",))[0] == "AVAILABLE",
            what=f"echo version {echo}",
        )
    assert server.output.count("model=half_plus_two version=2 load attempt") == 3
    assert statuses(server, "half_plus_two")["2"][:2] == ("END", "DATA_LOSS")


def test_removed_version_unloads_after_in_flight_requests_finish(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    base = tmp_path / "slow"
    started, release = tmp_path / "started.txt", tmp_path / "release"
    slow_model(base / "1", 100)
    slow_model(base / "2", 200, started, release)
    config = tmp_path / "models.yaml"
    config.write_text(
        f"models:\n  - name: slow\n    base_path: {base}\n    model_platform: python\n"
        "    model_version_policy: {all: {}}\n"
    )
    server = start_server(f"--config={config}", "--file_system_poll_wait_seconds=1")
    results: list[object] = []

    def slow_call() -> None:
        try:
            answer = server.http.post(
                "/v1/models/slow/versions/2:predict", json={"instances": [0.0]}
            )
            results.append(answer.json())
        except BaseException as error:
            results.append(error)

    caller = threading.Thread(target=slow_call)
    caller.start()
    wait_until(lambda: started_calls(started) == [0.0], what="the call to start on version 2")
    shutil.rmtree(base / "2")
    wait_until(lambda: statuses(server, "slow")["2"][0] != "AVAILABLE", what="v2 leaves AVAILABLE")
    assert statuses(server, "slow")["2"][0] == "UNLOADING"  # held by the request in flight
    assert results == []
    release.touch()
    caller.join(30)
    assert results == [{"predictions": [200.0]}]
    wait_until(lambda: statuses(server, "slow")["2"][0] == "END", what="v2 END")
    answer = server.http.post("/v1/models/slow:predict", json={"instances": [0.0]})
    assert answer.json() == {"predictions": [100.0]}
    gone = server.http.post("/v1/models/slow/versions/2:predict", json={"instances": [0.0]})
    assert (gone.status_code, gone.json()) == (
        404,
        {"error": "Servable not found for request: Specific(slow, 2)"},
    )


def test_sigterm_drains_in_flight_requests(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    """SIGTERM with 32 requests running (16 gRPC, 16 REST): every one is answered, then the
    process exits 0.

    Every request runs at once (16 threads for each protocol), so that the test can see, in
    the model, that all of them arrived before it sends the signal (a request queued behind
    busy threads could not be told from one still on the wire); the model holds them all
    until the server has begun shutting down."""
    started, release = tmp_path / "started.txt", tmp_path / "release"
    slow_model(tmp_path / "slow" / "1", 10, started, release)
    config = tmp_path / "models.yaml"
    config.write_text(
        f"models:\n  - name: slow\n    base_path: {tmp_path / 'slow'}\n    model_platform: python\n"
    )
    slow_server = start_server(
        f"--config={config}", "--grpc_max_threads=16", "--rest_api_num_threads=16"
    )
    results: list[object] = []

    def call_grpc() -> None:
        try:
            response = slow_server.prediction.Predict(
                predict_request("slow", {"x": np.array([0.0], np.float32)}), timeout=60
            )
            results.append(float(tf.make_ndarray(response.outputs["y"])[0]))
        except BaseException as error:
            results.append(error)

    def call_rest() -> None:
        try:
            answer = slow_server.http.post(
                "/v1/models/slow:predict", json={"instances": [0.0]}, timeout=60
            )
            results.append(answer.json()["predictions"][0])
        except BaseException as error:
            results.append(error)

    callers = [threading.Thread(target=call) for call in [call_grpc, call_rest] * 16]
    for caller in callers:
        caller.start()
    wait_until(lambda: len(started_calls(started)) == 32, what="all 32 calls to start")
    slow_server.process.send_signal(15)
    wait_until(lambda: "received SIGTERM; shutting down" in slow_server.output, what="SIGTERM")
    assert results == []
    release.touch()
    for caller in callers:
        caller.join(60)
    assert slow_server.wait(60) == 0
    assert results == [10.0] * 32


def test_shutdown_grace_bounds_a_stuck_request(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    started = tmp_path / "started.txt"
    slow_model(tmp_path / "slow" / "1", 1, started)
    config = tmp_path / "models.yaml"
    config.write_text(
        f"models:\n  - name: slow\n    base_path: {tmp_path / 'slow'}\n    model_platform: python\n"
    )
    server = start_server(
        f"--config={config}", "--shutdown_grace_seconds=1", "--rest_api_timeout_in_ms=0"
    )
    caller = threading.Thread(
        target=lambda: server.http.post("/v1/models/slow:predict", json={"instances": [120.0]}),
        daemon=True,
    )
    caller.start()
    wait_until(lambda: started_calls(started) == [120.0], what="the stuck call to start")
    server.process.send_signal(15)
    # Without the grace the process would wait two minutes for the request.
    assert server.wait(60) == 0
    assert "shutdown grace of 1.0s ran out; exiting anyway" in server.output
