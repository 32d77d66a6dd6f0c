"""What every benchmark shares: the machine it ran on, and how it publishes its report."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


def machine_description() -> list[str]:
    cpu = "unknown"
    logical = 0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("processor"):
                logical += 1
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    lines = [
        f"- run at {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- Python {platform.python_version()} ({platform.python_implementation()}, "
        f"GIL {'enabled' if gil else 'disabled'}, "
        f"switch interval {sys.getswitchinterval() * 1000:g} ms)",
        f"- CPU: {cpu}; {logical or os.cpu_count()} logical CPUs in /proc/cpuinfo, "
        f"{usable} usable by this process",
        f"- OS: {platform.system()} {platform.release()} ({platform.machine()})",
    ]
    try:
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        lines.append(f"- load average at start: {load}")
    except OSError:
        pass
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        lines.append(f"- fastserve at {head}" + (" with uncommitted changes" if dirty else ""))
    except (OSError, subprocess.CalledProcessError):
        pass
    return lines


def publish(text: str, output: Path | None) -> None:
    """Prints the Markdown report and, when asked, writes it to `output`."""
    print(text)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, for a report's last lines ("?" where unknown)."""
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


@dataclass(frozen=True)
class CallTiming:
    """How long a function took, called over and over in one thread (time_calls)."""

    calls: int
    wall_seconds: float
    cpu_seconds: float  # this process's CPU time over the loop (every thread of it)
    median_micros: float  # the median call's wall time

    @property
    def calls_per_second(self) -> float:
        return self.calls / self.wall_seconds if self.wall_seconds else float("nan")

    @property
    def cpu_micros_per_call(self) -> float:
        return self.cpu_seconds / self.calls * 1e6 if self.calls else float("nan")


def time_calls(
    call: Callable[[], object], seconds: float, warmup_calls: int = 3, min_calls: int = 5
) -> CallTiming:
    """Calls `call` in this thread for about `seconds` (at least `min_calls` times) after
    `warmup_calls` unmeasured calls: a library's own cost, with no server around it."""
    for _ in range(warmup_calls):
        call()
    samples: list[float] = []
    cpu0 = time.process_time()
    began = time.perf_counter()
    until = began + seconds
    while True:
        t0 = time.perf_counter()
        call()
        t1 = time.perf_counter()
        samples.append(t1 - t0)
        if t1 >= until and len(samples) >= min_calls:
            break
    wall = time.perf_counter() - began
    cpu = time.process_time() - cpu0
    return CallTiming(len(samples), wall, cpu, statistics.median(samples) * 1e6)


def positive_ints(text: str | None) -> tuple[int, ...]:
    """A command line's comma-separated list of whole numbers >= 1 ("1,16"); () when not
    given. ValueError for anything else (argparse reports it)."""
    if not text:
        return ()
    values = tuple(int(item) for item in text.split(","))
    if min(values) < 1:
        raise ValueError(text)
    return values
