"""BatchingServable over a SavedModel on TensorFlow's C API runner: its native form carries a
NativeBatcher (so gRPC Predict batches in C++), and Python's run() (REST, warmup) waits in the
same queues; deadlines, cancellation and metrics as for the Python batching."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from fastserve.config.batching import ParametersFor
from fastserve.errors import Code, ServingError
from fastserve.servables.base import LoadOptions
from fastserve.servables.batching import BatchingLoader, BatchScheduler
from fastserve.servables.batching_parameters import BatchingParameters
from fastserve.servables.tensorflow import TensorFlowLoader, native_runner_problem
from fastserve.types import RunContext
from support import models


class Recorder:
    def __init__(self) -> None:
        self.tasks: list[int] = []
        self.batches: list[tuple[int, int, int]] = []

    def task_queued(self, rows: int) -> None:
        self.tasks.append(rows)

    def batch_run(self, rows: int, padded: int, latencies: list[float]) -> None:
        self.batches.append((rows, padded, len(latencies)))


def test_python_runs_go_through_the_native_batcher(tmp_path: Path) -> None:
    if native_runner_problem():
        pytest.skip(f"TensorFlow's C API runner is unavailable: {native_runner_problem()}")
    models.half_plus_two_v1(tmp_path / "hp" / "1")
    scheduler = BatchScheduler(1)
    recorder = Recorder()
    scheduler.metrics = recorder
    parameters = BatchingParameters(
        max_batch_size=8,
        batch_timeout_micros=200_000,
        num_batch_threads=1,
        allowed_batch_sizes=(4, 8),
    )
    loader = BatchingLoader(TensorFlowLoader(), scheduler, ParametersFor(parameters))
    servable = loader.load(str(tmp_path / "hp" / "1"), LoadOptions())
    try:
        assert servable.native.batched  # type: ignore[attr-defined]
        signature = servable.signatures["serving_default"]
        barrier = threading.Barrier(3)

        def call(index: int) -> list[list[float]]:
            barrier.wait()
            x = np.array([[index]], np.float32)
            return servable.run(signature, {"x": x}, ["y"])["y"].tolist()

        with ThreadPoolExecutor(3) as pool:
            results = list(pool.map(call, range(3)))
        assert results == [[[0.5 * i + 2]] for i in range(3)]
        scheduler.drain_native()
        assert recorder.tasks == [1, 1, 1]
        assert sum(rows for rows, _, _ in recorder.batches) == 3
        assert all(padded in (4, 8) for _, padded, _ in recorder.batches)
        assert max(tasks for _, _, tasks in recorder.batches) > 1

        x = np.array([[1.0]], np.float32)
        with pytest.raises(ServingError) as expired:
            servable.run(signature, {"x": x}, ["y"], RunContext.within(0.02))
        assert expired.value.code == Code.DEADLINE_EXCEEDED
        assert expired.value.message == "Run() timeout exceeded while waiting in batching queue"

        context = RunContext()
        threading.Timer(0.05, context.cancel).start()
        with pytest.raises(ServingError) as cancelled:
            servable.run(signature, {"x": x}, ["y"], context)
        assert cancelled.value.code == Code.CANCELLED

        with pytest.raises(ServingError) as large:
            servable.run(signature, {"x": np.zeros((9, 1), np.float32)}, ["y"])
        assert large.value.code == Code.INVALID_ARGUMENT
        assert large.value.message == "Task size 9 is larger than maximum input batch size 8"
    finally:
        servable.unload()
        scheduler.stop()
