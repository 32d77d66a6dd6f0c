"""Batching through the real server: TF Serving's flags and files, over gRPC and REST."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf

from support import models
from support.lifecycle import wait_until
from support.prometheus import parse, select
from support.requests import predict_request
from support.server import ServerProcess
from support.store import ModelStore

# Reports, per row, how many rows the batch it ran in had. A batch with a negative input is
# held until the file RELEASE exists, so a test decides how long it runs.
ROWS_MODEL = """
    import os
    import time

    import numpy as np

    from fastserve.servables.python import signature, tensor


    @signature(
        inputs={"x": tensor("float32", [-1])},
        outputs={"y": tensor("float32", [-1]), "batch": tensor("int64", [-1])},
    )
    def serving_default(x):
        while (x < 0).any() and not os.path.exists(RELEASE_PATH):
            time.sleep(0.01)
        return {"y": x * 2, "batch": np.full(len(x), len(x))}
"""


def rows_model(path: Path, release: Path) -> None:
    models.python_model(path, ROWS_MODEL.replace("RELEASE_PATH", repr(str(release))))


def rows_config(tmp_path: Path, batching: str = "") -> Path:
    """The rows model (version 1), whose batches with a negative input are held until
    tmp_path/release exists; and a config serving it, with `batching`."""
    rows_model(tmp_path / "rows" / "1", tmp_path / "release")
    config = tmp_path / "models.yaml"
    config.write_text(
        f"models:\n  - name: rows\n    base_path: {tmp_path / 'rows'}\n    model_platform: python\n"
        + batching
    )
    return config


METRICS = "/monitoring/prometheus/metrics"


def monitoring(tmp_path: Path) -> str:
    """The flag that turns the metrics on, at METRICS."""
    path = tmp_path / "monitoring.txt"
    path.write_text(f'prometheus_config {{\n  enable: true\n  path: "{METRICS}"\n}}\n')
    return f"--monitoring_config_file={path}"


def batching_metric(server: ServerProcess, name: str) -> float:
    """A batching_session metric: input_batch_size_count counts the tasks queued,
    wrapped_run_count the batches that began running."""
    samples = parse(server.http.get(METRICS).text)
    return select(samples, f":tensorflow:serving:batching_session:{name}")


def parameters_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "batching_parameters.txt"
    path.write_text(text)
    return path


def test_tf_model_batched_under_concurrent_grpc_and_rest(
    store: ModelStore, tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    store.install(store.half_plus_two(2.0), tmp_path / "hp" / "1")
    batching = parameters_file(
        tmp_path,
        "max_batch_size { value: 32 }\nbatch_timeout_micros { value: 5000 }\n"
        "max_enqueued_batches { value: 100 }\nnum_batch_threads { value: 2 }\n",
    )
    server = start_server(
        "--model_name=hp",
        f"--model_base_path={tmp_path / 'hp'}",
        "--enable_batching",
        f"--batching_parameters_file={batching}",
    )

    def grpc_call(index: int) -> list[float]:
        x = np.array([index, index + 0.5], np.float32)
        response = server.prediction.Predict(predict_request("hp", {"x": x}), timeout=30)
        return tf.make_ndarray(response.outputs["y"]).tolist()

    def rest_call(index: int) -> list[float]:
        answer = server.http.post("/v1/models/hp:predict", json={"instances": [float(index)]})
        return answer.json()["predictions"]

    with ThreadPoolExecutor(16) as pool:
        grpc_results = list(pool.map(grpc_call, range(64)))
        rest_results = list(pool.map(rest_call, range(64)))
    assert grpc_results == [[0.5 * i + 2, 0.5 * (i + 0.5) + 2] for i in range(64)]
    assert rest_results == [[0.5 * i + 2] for i in range(64)]


def batch_recording_saved_model(export_dir: Path) -> None:
    """A SavedModel (served by TensorFlow's C API runner, so batched natively) that reports,
    per row, how many rows the batch it ran in had: y = 2x, batch = rows."""

    class Rows(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def serve(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            rows = tf.shape(x, out_type=tf.int64)[0]
            return {"y": 2 * x, "batch": tf.fill(tf.shape(x), rows)}

    module = Rows()
    tf.saved_model.save(module, str(export_dir), signatures={"serving_default": module.serve})


def test_native_batching_of_concurrent_grpc_and_rest(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    """gRPC Predict (served in C++) and REST (through Python) share the SavedModel's native
    batch queue: every answer is right and batches of several requests form."""
    batch_recording_saved_model(tmp_path / "rows" / "1")
    batching = parameters_file(
        tmp_path,
        "max_batch_size { value: 64 }\nbatch_timeout_micros { value: 100000 }\n"
        "max_enqueued_batches { value: 100 }\nnum_batch_threads { value: 2 }\n",
    )
    server = start_server(
        "--model_name=rows",
        f"--model_base_path={tmp_path / 'rows'}",
        "--enable_batching",
        f"--batching_parameters_file={batching}",
    )
    barrier = threading.Barrier(16)

    def call(index: int) -> tuple[list[float], int]:
        barrier.wait()
        if index % 2:
            answer = server.http.post("/v1/models/rows:predict", json={"instances": [float(index)]})
            prediction = answer.json()["predictions"][0]
            return [prediction["y"]], prediction["batch"]
        response = server.prediction.Predict(
            predict_request("rows", {"x": np.array([index, index], np.float32)}), timeout=30
        )
        outputs = {k: tf.make_ndarray(v).tolist() for k, v in response.outputs.items()}
        return outputs["y"], outputs["batch"][0]

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(call, range(16)))
    for index, (y, _) in enumerate(results):
        assert y == ([2.0 * index] if index % 2 else [2.0 * index] * 2)
    # Several requests ran together (a gRPC request alone has 2 rows).
    assert max(batch for _, batch in results) > 2


def test_a_call_without_deadline_is_batched(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    """grpcio's default call carries no deadline (grpcio reports it as one ~2**63 ns away);
    it must wait in the batch queue as long as it takes, not expire at once."""
    config = rows_config(
        tmp_path, "    batching: {max_batch_size: 8, batch_timeout_micros: 1000}\n"
    )
    server = start_server(f"--config={config}")
    response = server.prediction.Predict(
        predict_request("rows", {"x": np.array([3.0], np.float32)})
    )
    assert tf.make_ndarray(response.outputs["y"]).tolist() == [6.0]


def test_concurrent_requests_run_in_shared_batches(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    config = rows_config(
        tmp_path,
        "    batching: {max_batch_size: 64, batch_timeout_micros: 200000}\n",
    )
    server = start_server(f"--config={config}")
    barrier = threading.Barrier(8)

    def call(index: int) -> dict:
        barrier.wait()
        response = server.prediction.Predict(
            predict_request("rows", {"x": np.array([index], np.float32)}), timeout=30
        )
        return {k: tf.make_ndarray(v).tolist() for k, v in response.outputs.items()}

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, range(8)))
    assert [r["y"] for r in results] == [[2.0 * i] for i in range(8)]
    assert max(r["batch"][0] for r in results) > 1


def test_queue_full_and_task_too_large(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    config = rows_config(
        tmp_path,
        "    batching: {max_batch_size: 2, max_enqueued_batches: 1}\n",
    )
    # The batch threads are the server's: one, from the server-wide parameters.
    threads = parameters_file(tmp_path, "num_batch_threads { value: 1 }\n")
    server = start_server(
        f"--config={config}",
        "--enable_batching",
        f"--batching_parameters_file={threads}",
        monitoring(tmp_path),
    )
    too_large = server.http.post("/v1/models/rows:predict", json={"instances": [1.0, 2.0, 3.0]})
    assert (too_large.status_code, too_large.json()) == (
        400,
        {"error": "Task size 3 is larger than maximum input batch size 2"},
    )

    # One slow batch runs, another waits (the one batch the queue may hold): the next request
    # is turned away at once.
    def post(values: list[float]) -> None:
        server.http.post("/v1/models/rows:predict", json={"instances": values})

    slow = threading.Thread(target=post, args=([-1.0, -1.0],))
    slow.start()
    wait_until(lambda: batching_metric(server, "wrapped_run_count") == 1, what="a running batch")
    queued = batching_metric(server, "input_batch_size_count")
    waiting = threading.Thread(target=post, args=([-1.0, -1.0],))
    waiting.start()
    wait_until(
        lambda: batching_metric(server, "input_batch_size_count") == queued + 1,
        what="a waiting batch",
    )
    refused: list[tuple[int, dict]] = []
    with pytest.raises(grpc.RpcError) as caught:
        server.prediction.Predict(
            predict_request("rows", {"x": np.array([1.0, 1.0], np.float32)}), timeout=30
        )
    refused.append((caught.value.code().value[0], {"error": caught.value.details()}))
    answer = server.http.post("/v1/models/rows:predict", json={"instances": [1.0, 1.0]})
    refused.append((answer.status_code, answer.json()))
    (tmp_path / "release").touch()
    slow.join()
    waiting.join()
    message = (
        "The batch scheduling queue to which this task was submitted is full; "
        "currently 1 batches enqueued and max_enqueued_batches is 1"
    )
    assert refused == [(14, {"error": message}), (503, {"error": message})]


def test_per_model_batching_parameters_files(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    config = rows_config(tmp_path)
    (tmp_path / "rows" / "1" / "batching_params.pbtxt").write_text("max_batch_size { value: 2 }\n")
    server = start_server(
        f"--config={config}", "--enable_batching", "--enable_per_model_batching_parameters"
    )
    answer = server.http.post("/v1/models/rows:predict", json={"instances": [1.0, 2.0, 3.0]})
    assert answer.json() == {"error": "Task size 3 is larger than maximum input batch size 2"}


def test_per_model_file_missing_means_unbatched(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    config = rows_config(tmp_path)
    server = start_server(
        f"--config={config}", "--enable_batching", "--enable_per_model_batching_parameters"
    )
    answer = server.http.post("/v1/models/rows:predict", json={"instances": [1.0] * 2000})
    assert answer.json()["predictions"][0] == {"y": 2.0, "batch": 2000}


def test_batching_start_up_errors(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    config = rows_config(tmp_path)
    batching = parameters_file(tmp_path, "max_batch_size { value: 8 }\n")
    server = start_server(
        f"--config={config}", f"--batching_parameters_file={batching}", ready=False
    )
    assert server.wait(120) == 1
    assert (
        "server_options.batching_parameters_file is set without setting "
        "server_options.enable_batching to true." in server.output
    )
    batching.write_text("max_batch_size: 8\n")
    server = start_server(
        f"--config={config}",
        "--enable_batching",
        f"--batching_parameters_file={batching}",
        ready=False,
    )
    assert server.wait(120) == 1
    assert f"Invalid protobuf file: '{batching}'" in server.output
    batching.write_text("num_batch_threads { value: 0 }\n")
    server = start_server(
        f"--config={config}",
        "--enable_batching",
        f"--batching_parameters_file={batching}",
        ready=False,
    )
    assert server.wait(120) == 1
    assert "num_batch_threads must be positive; was 0" in server.output


def test_invalid_model_parameters_fail_its_load(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    config = rows_config(
        tmp_path, "    batching: {max_batch_size: 128, allowed_batch_sizes: [32, 64]}\n"
    )
    server = start_server(f"--config={config}", "--max_num_load_retries=0", ready=False)
    assert server.wait(120) == 1
    assert (
        "model rows failed to load: Last entry in allowed_batch_sizes must match max_batch_size; "
        "last entry was 64; expected 128" in server.output
    )


def one_at_a_time(tmp_path: Path, start_server: Callable[..., ServerProcess]) -> ServerProcess:
    """A server batching the rows model one request per batch on one batch thread, metrics
    on: a held batch keeps every later request queued."""
    config = rows_config(tmp_path, "    batching: {max_batch_size: 1, max_enqueued_batches: 100}\n")
    threads = parameters_file(tmp_path, "num_batch_threads { value: 1 }\n")
    return start_server(
        f"--config={config}",
        "--enable_batching",
        f"--batching_parameters_file={threads}",
        monitoring(tmp_path),
    )


def test_unloading_a_version_drains_its_queue(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    server = one_at_a_time(tmp_path, start_server)
    results: list[object] = []

    def call(value: float) -> None:
        answer = server.http.post("/v1/models/rows/versions/1:predict", json={"instances": [value]})
        results.append((answer.status_code, answer.json()))

    # The held request occupies the one batch thread; the three others wait in the queue.
    callers = [threading.Thread(target=call, args=(v,)) for v in (-1.0, 1.0, 2.0, 3.0)]
    callers[0].start()
    wait_until(lambda: batching_metric(server, "wrapped_run_count") == 1, what="a running batch")
    for caller in callers[1:]:
        caller.start()
    wait_until(lambda: batching_metric(server, "input_batch_size_count") == 4, what="4 queued")
    # Version 2 replaces version 1 while version 1's queue still holds requests.
    rows_model(tmp_path / "staged", tmp_path / "release")
    (tmp_path / "staged").rename(tmp_path / "rows" / "2")
    # Version 1 is unloading but waits for what its queue holds.
    wait_until(lambda: "model=rows version=1 state=UNLOADING" in server.output, what="v1 UNLOADING")
    assert results == []
    (tmp_path / "release").touch()
    for caller in callers:
        caller.join(60)
    assert sorted(results, key=str) == sorted(
        [(200, {"predictions": [{"y": 2 * v, "batch": 1}]}) for v in (-1.0, 1.0, 2.0, 3.0)],
        key=str,
    )


def test_grpc_requests_queued_behind_a_held_batch(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    """A batched Python servable over gRPC: requests wait for their batch without a thread
    each. One whose deadline passes while queued, and one whose client cancels it, never run
    and are counted with their status; the rest are answered once the held batch ends."""
    server = one_at_a_time(tmp_path, start_server)

    def send(value: float, timeout: float = 30) -> grpc.Future:
        request = predict_request("rows", {"x": np.array([value], np.float32)})
        return server.prediction.Predict.future(request, timeout=timeout)

    held = send(-1.0)
    wait_until(lambda: batching_metric(server, "wrapped_run_count") == 1, what="a running batch")
    queued = [send(float(value)) for value in range(1, 9)]
    wait_until(lambda: batching_metric(server, "input_batch_size_count") == 9, what="9 queued")
    expiring = send(100.0, timeout=0.5)
    cancelled = send(200.0)
    wait_until(lambda: batching_metric(server, "input_batch_size_count") == 11, what="11 queued")
    cancelled.cancel()
    with pytest.raises(grpc.RpcError) as expired:
        expiring.result()
    assert expired.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED

    def counted() -> dict[str, float]:
        samples = parse(server.http.get(METRICS).text)
        return {
            status: select(
                samples, ":tensorflow:serving:request_count", model_name="rows", status=status
            )
            for status in ("OK", "DEADLINE_EXCEEDED", "CANCELLED")
        }

    # Both are answered (and counted) while the held batch still runs.
    wait_until(
        lambda: counted() == {"OK": 0, "DEADLINE_EXCEEDED": 1, "CANCELLED": 1},
        what="the expired and the cancelled request counted",
    )
    (tmp_path / "release").touch()
    assert list(held.result().outputs["y"].float_val) == [-2.0]
    for value, answer in enumerate(queued, start=1):
        assert list(answer.result().outputs["y"].float_val) == [2.0 * value]
    # The held batch and the eight queued ones ran; the other two never did.
    assert batching_metric(server, "wrapped_run_count") == 9
    samples = parse(server.http.get(METRICS).text)
    assert select(samples, ":tensorflow:serving:request_count", model_name="rows", status="OK") == 9
    assert (
        select(
            samples, ":tensorflow:serving:runtime_latency_count", model_name="rows", API="Predict"
        )
        == 11
    )


def test_sigterm_answers_grpc_requests_queued_for_their_batch(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    """SIGTERM while gRPC requests of a batched Python servable wait behind a held batch:
    the server answers every one before it exits 0."""
    server = one_at_a_time(tmp_path, start_server)
    held = server.prediction.Predict.future(
        predict_request("rows", {"x": np.array([-1.0], np.float32)}), timeout=60
    )
    wait_until(lambda: batching_metric(server, "wrapped_run_count") == 1, what="a running batch")
    queued = [
        server.prediction.Predict.future(
            predict_request("rows", {"x": np.array([float(value)], np.float32)}), timeout=60
        )
        for value in range(1, 5)
    ]
    wait_until(lambda: batching_metric(server, "input_batch_size_count") == 5, what="5 queued")
    server.process.send_signal(15)
    wait_until(lambda: "received SIGTERM; shutting down" in server.output, what="SIGTERM")
    assert not held.done() and not any(answer.done() for answer in queued)
    (tmp_path / "release").touch()
    assert list(held.result().outputs["y"].float_val) == [-2.0]
    assert [list(answer.result().outputs["y"].float_val) for answer in queued] == [
        [2.0 * value] for value in range(1, 5)
    ]
    assert server.wait(60) == 0
