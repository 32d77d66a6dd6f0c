"""Versions come and go on disk while clients keep calling: nothing fails, nothing is lost."""

from __future__ import annotations

import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from support import models
from support.lifecycle import slow_model, statuses, wait_until
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
    server = start_server(
        "--model_name=half_plus_two",
        f"--model_base_path={base}",
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
    # The failed version stays failed while it is on disk: no endless reloading.
    time.sleep(2.5)
    assert server.output.count("model=half_plus_two version=2 load attempt") == 3


def test_removed_version_unloads_after_in_flight_requests_finish(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    base = tmp_path / "slow"
    slow_model(base / "1", 100)
    slow_model(base / "2", 200)
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
                "/v1/models/slow/versions/2:predict", json={"instances": [3.0]}
            )
            results.append(answer.json())
        except BaseException as error:
            results.append(error)

    caller = threading.Thread(target=slow_call)
    caller.start()
    time.sleep(0.5)  # the request is now running on version 2
    shutil.rmtree(base / "2")
    wait_until(lambda: statuses(server, "slow")["2"][0] != "AVAILABLE", what="v2 leaves AVAILABLE")
    assert statuses(server, "slow")["2"][0] == "UNLOADING"  # held by the request in flight
    caller.join(30)
    assert results == [{"predictions": [203.0]}]
    wait_until(lambda: statuses(server, "slow")["2"][0] == "END", what="v2 END")
    answer = server.http.post("/v1/models/slow:predict", json={"instances": [0.0]})
    assert answer.json() == {"predictions": [100.0]}
    gone = server.http.post("/v1/models/slow/versions/2:predict", json={"instances": [0.0]})
    assert (gone.status_code, gone.json()) == (
        404,
        {"error": "Servable not found for request: Specific(slow, 2)"},
    )


@pytest.fixture()
def slow_server(tmp_path: Path, start_server: Callable[..., ServerProcess]) -> ServerProcess:
    slow_model(tmp_path / "slow" / "1", 10)
    config = tmp_path / "models.yaml"
    config.write_text(
        f"models:\n  - name: slow\n    base_path: {tmp_path / 'slow'}\n    model_platform: python\n"
    )
    return start_server(f"--config={config}")


def test_sigterm_drains_in_flight_requests(slow_server: ServerProcess) -> None:
    """SIGTERM with 32 requests in flight (16 gRPC, 16 REST, more than the worker threads):
    every one is answered, then the process exits 0."""
    results: list[object] = []

    def call_grpc() -> None:
        try:
            response = slow_server.prediction.Predict(
                predict_request("slow", {"x": np.array([1.5], np.float32)}), timeout=60
            )
            results.append(float(tf.make_ndarray(response.outputs["y"])[0]))
        except BaseException as error:
            results.append(error)

    def call_rest() -> None:
        try:
            answer = slow_server.http.post(
                "/v1/models/slow:predict", json={"instances": [1.5]}, timeout=60
            )
            results.append(answer.json()["predictions"][0])
        except BaseException as error:
            results.append(error)

    callers = [threading.Thread(target=call) for call in [call_grpc, call_rest] * 16]
    for caller in callers:
        caller.start()
    time.sleep(1.0)  # every request sent; the first ones running, the rest queued
    slow_server.process.send_signal(15)
    for caller in callers:
        caller.join(60)
    assert slow_server.wait(60) == 0
    assert results == [11.5] * 32


def test_shutdown_grace_bounds_a_stuck_request(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    slow_model(tmp_path / "slow" / "1", 1)
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
    time.sleep(0.5)
    server.process.send_signal(15)
    # Without the grace the process would wait two minutes for the request.
    assert server.wait(60) == 0
    assert "shutdown grace of 1.0s ran out; exiting anyway" in server.output
