"""Each benchmark runs for about a second, so the scripts cannot rot. No timing is asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from support import tools

REPO = Path(__file__).resolve().parents[1]


def run_benchmark(tmp_path: Path, name: str, *args: str, timeout: float = 300) -> str:
    """Runs benchmarks/<name>.py briefly and returns the Markdown report it wrote."""
    report = tmp_path / f"{name}.md"
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / f"{name}.py"), *args, "--output", str(report)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return report.read_text()


def test_table_lookup_benchmark_runs(tmp_path: Path) -> None:
    text = run_benchmark(tmp_path, "table_lookup", "--seconds", "1", "--repeats", "1")
    assert "| 1 thread |" in text and "| 8 threads |" in text


def test_batch_queue_benchmark_runs(tmp_path: Path) -> None:
    text = run_benchmark(tmp_path, "batch_queue", "--seconds", "1", "--repeats", "1")
    assert "| 1 producer, timeout 0" in text and "| 8 producers, full batches" in text


def test_batching_benchmark_runs(tmp_path: Path) -> None:
    """One setting off and one on, a second each, against the real server."""
    text = run_benchmark(
        tmp_path, "batching", "--quick", "--seconds", "1", "--repeats", "1", timeout=600
    )
    assert "| batching off |" in text and "| on: max_batch_size 64, timeout 1000 µs" in text
    assert "throughput on / off" in text


def test_memory_benchmark_runs(tmp_path: Path) -> None:
    """Two load/unload cycles of a version under load, unbatched and batched, against the real
    server."""
    text = run_benchmark(
        tmp_path,
        "memory",
        "--cycles",
        "2",
        "--warmup-cycles",
        "1",
        "--warmup-seconds",
        "0.5",
        timeout=600,
    )
    assert "| | unbatched | batched |" in text
    assert "| growth over 2 cycles |" in text and "| growth / target (30 MB) |" in text
    assert "| cycle | unbatched VmRSS | RssAnon | RssFile | batched VmRSS |" in text
    assert "| 2 |" in text


def test_core_path_benchmark_runs(tmp_path: Path) -> None:
    text = run_benchmark(tmp_path, "core_path", "--seconds", "0.05", "--threads", "1,2")
    assert "| no batching | 2 |" in text and "| batching | 1 |" in text
    assert "| table lookup + release" in text and "per core / 100,000" in text


def test_serving_benchmark_runs(tmp_path: Path) -> None:
    """Floors and fastserve (half_plus_two, batching off and on), 1 float, 1 and 16 in flight,
    gRPC through h2load and REST through wrk, a second a cell."""
    tools.require("h2load", "wrk")
    text = run_benchmark(tmp_path, "serving", "--quick", "--seconds", "1", timeout=600)
    for row in (
        "| grpcio floor (echo) | grpc | 1 |",
        "| Starlette floor (echo) on hypercorn | rest | 1 |",
        "| Starlette floor (echo) on uvicorn | rest | 1 |",
        # fastserve's REST on its default HTTP server, and on the other one against its floor
        "| fastserve half_plus_two, batching off, REST on uvicorn | grpc | 1 |",
        "| fastserve half_plus_two, batching off, REST on uvicorn | rest | 1 |",
        "| fastserve half_plus_two, batching off, REST on hypercorn | rest | 1 |",
        "| fastserve half_plus_two, batching on, REST on uvicorn | grpc | 1 |",
        "| fastserve half_plus_two, batching on, REST on uvicorn | rest | 1 |",
        "| half_plus_two | 1 |",  # in-process
        "| h2load | grpcio floor (echo) | grpc |",
        "| wrk | Starlette floor (echo) on hypercorn | rest |",
    ):
        assert row in text, row
    assert "## The issue's targets" in text and "| grpcio floor (echo) |" in text
    assert "## Failures" not in text, text


def test_http_servers_benchmark_runs(tmp_path: Path) -> None:
    """A second per measurement, 16 connections, both HTTP servers, driven by wrk."""
    tools.require("wrk")
    text = run_benchmark(
        tmp_path,
        "http_servers",
        "--seconds",
        "1",
        "--warmup",
        "0",
        "--repeats",
        "1",
        "--connections",
        "16",
        "--model",
        "echo",
        timeout=600,
    )
    assert "| bare Starlette floor | uvicorn | 16 |" in text
    assert "| fastserve | hypercorn | 16 |" in text
    assert "## Is wrk the bottleneck?" in text


def test_servables_benchmark_runs(tmp_path: Path) -> None:
    """The ONNX and XGBoost models in-process and in fastserve, 1 row, 1 and 16 in flight, a
    second a cell; MLServer's XGBoost runtime when benchmarks/setup_peers.sh installed it, else
    the report names the setup command."""
    tools.require("h2load", "wrk")
    sys.path.insert(0, str(REPO / "benchmarks"))
    import peers

    text = run_benchmark(tmp_path, "servables", "--quick", "--seconds", "1", timeout=600)
    for row in (
        "| ONNX | onnxruntime",  # in-process
        "| XGBoost | xgboost",
        "| fastserve (ONNX) | grpc | 1 |",
        "| fastserve (ONNX) | rest | 1 |",
        "| fastserve (XGBoost) | grpc | 1 |",
        "| fastserve (XGBoost) | rest | 1 |",
        "| ONNX | grpc | 1 |",  # fastserve / in-process
        "| XGBoost | rest | 1 |",
    ):
        assert row in text, row
    assert "MLServer has no official ONNX runtime" in text
    mlserver = peers.MLServerXGBoostTarget(tmp_path, "model")
    if mlserver.installed():
        for name in (mlserver.name, peers.MLServerXGBoostTarget(tmp_path, "m", omp_threads=1).name):
            assert f"| {name} | grpc | 1 |" in text and f"| {name} | rest | 1 |" in text, name
    else:
        assert "setup_peers.sh mlserver`" in text, text
    assert "## Failures" not in text, text
