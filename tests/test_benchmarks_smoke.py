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


def test_memory_benchmark_runs(tmp_path: Path) -> None:
    """Two load/unload cycles of a version under load, against the real server."""
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
    assert "| growth over 2 cycles |" in text and "growth / target (30 MB)" in text
    assert "| 2 |" in text


def test_core_path_benchmark_runs(tmp_path: Path) -> None:
    text = run_benchmark(tmp_path, "core_path", "--seconds", "0.05", "--threads", "1,2")
    assert "| no batching | 2 |" in text and "| batching | 1 |" in text
    assert "| table lookup + release" in text and "per core / 100,000" in text
