"""Microseconds per SavedModel run: TensorFlow's C API runner against TensorFlow's Python session.

What it measures, in-process on examples/half_plus_two (version 1), each runner loaded through
fastserve's TensorFlowLoader (FASTSERVE_TENSORFLOW_RUNNER=python for the Python session):
`servable.run` (what fastserve.api calls) with 1 float and with 100,000 floats, one thread, best
of several timed loops; runs/s with 4 Python threads calling `servable.run` at once; and, for the
C API runner, `_core.TensorFlowSession.run` alone (the binding: numpy in, TF_SessionRun without
the GIL, numpy out). Nothing here asserts on timing: it prints numbers.

    .venv/bin/python benchmarks/tensorflow_runner.py            # about 20 s
    .venv/bin/python benchmarks/tensorflow_runner.py --runs 500 # smoke test
    .venv/bin/python benchmarks/tensorflow_runner.py \
        --output benchmarks/results/tensorflow_runner.md
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
from common import machine_description, publish

from fastserve.servables.base import LoadOptions
from fastserve.servables.tensorflow import RUNNER_VARIABLE, TensorFlowLoader

MODEL = Path(__file__).resolve().parents[1] / "examples" / "half_plus_two" / "1"


def best_us(call: object, runs: int, repeats: int = 3) -> float:
    for _ in range(min(runs, 200)):
        call()  # type: ignore[operator]
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(runs):
            call()  # type: ignore[operator]
        best = min(best, (time.perf_counter() - start) / runs * 1e6)
    return best


def threaded_rate(call: object, runs: int, threads: int = 4) -> float:
    def work() -> None:
        for _ in range(runs):
            call()  # type: ignore[operator]

    workers = [threading.Thread(target=work) for _ in range(threads)]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return threads * runs / (time.perf_counter() - start)


def measure(runner: str, runs: int) -> tuple[str, float | None]:
    """One runner's table row, and the bare session's µs per run (C API runner only)."""
    if runner == "python":
        os.environ[RUNNER_VARIABLE] = "python"
    else:
        os.environ.pop(RUNNER_VARIABLE, None)
    one = np.array([[1.0]], np.float32)
    many = np.ones((100_000, 1), np.float32)
    servable = TensorFlowLoader().load(str(MODEL), LoadOptions())
    assert servable.runner == runner, servable.runner  # type: ignore[attr-defined]
    signature = servable.signatures["serving_default"]
    try:
        small = best_us(lambda: servable.run(signature, {"x": one}, ["y"]), runs)
        large = best_us(lambda: servable.run(signature, {"x": many}, ["y"]), max(runs // 20, 10))
        rate = threaded_rate(lambda: servable.run(signature, {"x": one}, ["y"]), runs)
        session = servable.native_session  # type: ignore[attr-defined]
        raw = None
        if session is not None:
            feeds = {signature.inputs["x"].name: one}
            fetches = [signature.outputs["y"].name]
            raw = best_us(lambda: session.run(feeds, fetches), runs * 2)
    finally:
        servable.unload()
    return f"| {runner} | {small:.1f} | {large:.1f} | {rate:,.0f} |", raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5000, help="runs per timed loop (1 float)")
    parser.add_argument("--output", type=Path, help="also write the Markdown report here")
    args = parser.parse_args()
    native, raw = measure("c_api", args.runs)
    python = measure("python", args.runs)[0]
    lines = [
        "# TensorFlow runners: µs per run of half_plus_two, in-process",
        "",
        f"Command: `{shlex.join([sys.executable, *sys.argv])}`  ",
        *(f"{line}  " for line in machine_description()),
        "",
        "| runner | servable.run, 1 float (µs) | 100,000 floats (µs) | 4 threads (runs/s) |",
        "| --- | --: | --: | --: |",
        native,
        python,
    ]
    if raw is not None:
        lines += ["", f"`_core.TensorFlowSession.run` alone, 1 float: {raw:.1f} µs"]
    publish("\n".join(lines) + "\n", args.output)


if __name__ == "__main__":
    main()
