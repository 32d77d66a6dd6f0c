"""`fastserve tune`: the search on its own, and the command against real servers (tiny budgets,
no timing asserted)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from fastserve.config.batching import read_text_proto
from fastserve.tune import Candidate, Point, Space, better, parse_input, search
from support import models
from support.requests import predict_request
from support.server import FASTSERVE, ServerProcess

DOUBLE_MODEL = """
    from fastserve.servables.python import signature, tensor


    @signature(inputs={"x": tensor("float32", [-1, 4])}, outputs={"y": tensor("float32", [-1, 4])})
    def serving_default(x):
        return {"y": x * 2}
"""


# Every third Predict raises: the one or two calls tune checks before a load pass, and about a
# third of the load fails with a gRPC error (which h2load sees as an HTTP 200).
FAILING_MODEL = """
    from fastserve.servables.python import signature, tensor

    CALLS = 0


    @signature(inputs={"x": tensor("float32", [-1, 4])}, outputs={"y": tensor("float32", [-1, 4])})
    def serving_default(x):
        global CALLS
        CALLS += 1
        if CALLS % 3 == 0:
            raise RuntimeError("every third call fails")
        return {"y": x * 2}
"""


def python_config(tmp_path: Path, source: str = DOUBLE_MODEL) -> Path:
    """A model config serving `source` as the python model "double"."""
    models.python_model(tmp_path / "double" / "1", source)
    config = tmp_path / "models.config"
    config.write_text(
        'model_config_list {\n  config {\n    name: "double"\n'
        f'    base_path: "{tmp_path / "double"}"\n    model_platform: "python"\n  }}\n}}\n'
    )
    return config


def tune(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FASTSERVE, "tune", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


def without_matplotlib(tmp_path: Path) -> dict[str, str]:
    """An environment in which `import matplotlib` fails, as where it is not installed: a
    package of that name that raises ImportError comes first on the path."""
    hiding = tmp_path / "hide_matplotlib" / "matplotlib"
    hiding.mkdir(parents=True)
    (hiding / "__init__.py").write_text(
        "raise ImportError(\"No module named 'matplotlib' (hidden by the test)\")\n"
    )
    return {**os.environ, "PYTHONPATH": str(hiding.parent)}


# A budget of 0 measures the batching-off reference and exactly one candidate.
ONE_POINT = (
    "--model_name=double",
    "--concurrency=4",
    "--seconds_per_point=0.5",
    "--warmup_seconds=0",
    "--budget_seconds=0",
    "--max_batch_sizes=4",
    "--batch_timeouts=500",
    "--batch_threads=1",
)


# --- the search, with a fake measurement ------------------------------------------------------


def fake_point(candidate: Candidate) -> Point:
    """Throughput grows with the batch size; p99 grows with the timeout and the batch."""
    p99 = (candidate.batch_timeout_micros / 1e6) + candidate.max_batch_size * 1e-4
    requests = 100 * candidate.max_batch_size * candidate.num_batch_threads
    return Point(candidate, requests, 1.0, p99 / 2, p99, 0, took=1.0)


def test_search_moves_one_coordinate_at_a_time_and_keeps_the_target() -> None:
    space = Space((1, 2, 4, 8), (0, 1000, 5000), (1, 2), 64)
    seen: list[Candidate] = []

    def measure(candidate: Candidate) -> Point:
        seen.append(candidate)
        return fake_point(candidate)

    points = search(measure, space, 8, 0.0015, 1e9, lambda _: None)
    assert len(seen) == len(set(seen)) == len(points)
    assert len(points) < 4 * 3 * 2  # not the full grid
    within = [p for p in points if p.meets(0.0015)]
    best = max(within, key=lambda p: p.throughput)
    assert best.candidate == Candidate(8, 0, 2, 64)  # 8 rows: 0.8 ms + 0 µs, 2 threads


def test_search_measures_one_point_whatever_the_budget_and_stops_on_it() -> None:
    space = Space((1, 2, 4), (0, 1000), (1,), 10)
    points = search(fake_point, space, 4, 1.0, 0.0, lambda _: None)
    assert len(points) == 1


def test_a_point_within_the_target_beats_any_outside_it() -> None:
    c = Candidate(1, 0, 1, 10)
    fast_but_slow_p99 = Point(c, 1000, 1.0, 0.01, 0.2, 0)
    slow_within = Point(c, 10, 1.0, 0.01, 0.05, 0)
    failing = Point(c, 2000, 1.0, 0.01, 0.01, failed=3)
    assert better(slow_within, fast_but_slow_p99, 0.1)
    assert not better(fast_but_slow_p99, slow_within, 0.1)
    assert better(slow_within, failing, 0.1)


def test_input_flag_parses_name_shape_and_type() -> None:
    assert parse_input("x=-1,512:float32") == ("x", (-1, 512), "float32")


# --- the command ------------------------------------------------------------------------------


def test_tune_writes_parameters_that_parse_and_serve(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    """Without matplotlib (hidden, whether installed or not), --plot says so and the rest of
    the work is done."""
    config = python_config(tmp_path)
    output = tmp_path / "batching_parameters.txt"
    plot = tmp_path / "tune.png"
    done = tune(
        f"--model_config_file={config}",
        *ONE_POINT,
        "--p99_ms=600000",
        f"--output={output}",
        f"--plot={plot}",
        env=without_matplotlib(tmp_path),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "batching off (reference)" in done.stdout and "**chosen**" in done.stdout
    text = output.read_text()
    assert text.startswith("# Written by `fastserve tune`")
    assert read_text_proto(str(output)) == {
        "max_batch_size": 4,
        "batch_timeout_micros": 500,
        "max_enqueued_batches": 10,
        "num_batch_threads": 1,
    }
    assert "matplotlib is not installed: no plot (pip install matplotlib)" in done.stdout
    assert not plot.exists()

    server = start_server(
        f"--model_config_file={config}",
        "--enable_batching",
        f"--batching_parameters_file={output}",
    )
    x = np.ones((2, 4), np.float32)
    response = server.prediction.Predict(predict_request("double", {"x": x}), timeout=30)
    assert tf.make_ndarray(response.outputs["y"]).tolist() == (x * 2).tolist()


def test_tune_plots_the_sweep_with_matplotlib(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib is not installed: pip install matplotlib")
    plot = tmp_path / "tune.png"
    done = tune(
        f"--model_config_file={python_config(tmp_path)}",
        *ONE_POINT,
        "--p99_ms=600000",
        f"--output={tmp_path / 'batching_parameters.txt'}",
        f"--plot={plot}",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"plot: {plot}" in done.stdout
    assert plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_tune_exits_1_when_no_setting_meets_the_target(tmp_path: Path) -> None:
    """With the Python client processes as load (the fallback when h2load is missing)."""
    config = python_config(tmp_path)
    output = tmp_path / "batching_parameters.txt"
    done = tune(
        f"--model_config_file={config}",
        *ONE_POINT,
        "--p99_ms=0.000001",
        "--load_generator=python",
        f"--output={output}",
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "no setting met p99 <= 1e-06 ms; the best p99 found was" in done.stderr
    assert "Python gRPC clients" in done.stderr
    assert not output.exists()


def test_tune_measures_a_running_server_as_it_is(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    config = python_config(tmp_path)
    server = start_server(f"--model_config_file={config}")
    output = tmp_path / "batching_parameters.txt"
    args = (
        f"--server=127.0.0.1:{server.grpc_port}",
        "--model_name=double",
        "--concurrency=2",
        "--seconds_per_point=0.5",
        "--warmup_seconds=0",
        f"--output={output}",
    )
    done = tune(*args, "--p99_ms=600000")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "(the running server as it is)" in done.stdout and "no file was written" in done.stdout
    assert not output.exists()
    missed = tune(*args, "--p99_ms=0.000001")
    assert missed.returncode == 1
    assert "the running server misses p99 <= 1e-06 ms" in missed.stderr


def table_row(stdout: str, label: str) -> list[str]:
    """The cells of the Markdown table row of tune's output that contains `label`."""
    (row,) = [line for line in stdout.splitlines() if line.startswith("|") and label in line]
    return [cell.strip() for cell in row.strip().strip("|").split("|")]


@pytest.mark.parametrize("generator", ["h2load", "python"])
def test_tune_counts_grpc_errors_as_failed_requests(
    tmp_path: Path, start_server: Callable[..., ServerProcess], generator: str
) -> None:
    """A gRPC error is an HTTP 200 with its status in the trailers: it is a failed request,
    not an answered one, whatever the load generator."""
    config = python_config(tmp_path, FAILING_MODEL)
    server = start_server(f"--model_config_file={config}")
    done = tune(
        f"--server=127.0.0.1:{server.grpc_port}",
        "--model_name=double",
        "--concurrency=2",
        "--seconds_per_point=0.5",
        "--warmup_seconds=0",
        "--p99_ms=600000",
        f"--load_generator={generator}",
    )
    assert done.returncode == 1, done.stdout + done.stderr
    cells = table_row(done.stdout, "(the running server as it is)")
    failed, within = int(cells[-2].replace(",", "")), cells[-1]
    assert failed > 0 and within == "no", done.stdout
    assert "requests to the running server failed" in done.stderr, done.stderr


def test_tune_chooses_no_setting_whose_requests_fail(tmp_path: Path) -> None:
    """h2load (the default generator) against servers whose model fails a third of its calls:
    no setting is chosen, tune says the requests failed, and writes nothing."""
    config = python_config(tmp_path, FAILING_MODEL)
    output = tmp_path / "batching_parameters.txt"
    done = tune(
        f"--model_config_file={config}", *ONE_POINT, "--p99_ms=600000", f"--output={output}"
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "h2load" in done.stderr
    for label in ("batching off (reference)", "| 4 | 500 | 1 |"):
        assert int(table_row(done.stdout, label)[-2].replace(",", "")) > 0, done.stdout
    assert "requests failed at every setting measured" in done.stderr, done.stderr
    assert not output.exists()


@pytest.mark.parametrize(
    "flags, message",
    [
        (("--model_name=m",), "give --model_base_path"),
        (("--model_base_path=/x", "--enable_batching"), "tune sets this flag itself"),
    ],
)
def test_tune_usage_errors(flags: tuple[str, ...], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fastserve", "tune", *flags], capture_output=True, text=True
    )
    assert done.returncode == 2 and message in done.stderr
