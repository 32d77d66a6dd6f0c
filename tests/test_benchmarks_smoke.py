"""Each benchmark runs for about a second, so the scripts cannot rot. No timing is asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


def test_http_servers_benchmark_runs(tmp_path: Path) -> None:
    """A second per measurement, 16 connections, both HTTP servers. Needs wrk (Debian's
    `wrk` package): without it the benchmark fails saying so."""
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
