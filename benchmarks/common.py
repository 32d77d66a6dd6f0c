"""What every benchmark shares: the machine it ran on, and how it publishes its report."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
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
