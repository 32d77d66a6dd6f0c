"""What every benchmark shares: the machine it ran on, and how it publishes its report."""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable
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


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads) so far; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class ServerProcess:
    """A server subprocess whose output is collected; ready once a line contains `ready`.
    `on_line` sees every line (for example to read the port a server chose)."""

    def __init__(
        self,
        args: list[str],
        ready: str,
        name: str = "",
        on_line: Callable[[str], None] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        import shlex
        import threading

        self.args = args
        self.name = name or shlex.join(args[:3])
        self._on_line = on_line
        environment = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2")
        environment.update(env or {})
        self.process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment
        )
        self.lines: list[str] = []
        self._ready_text = ready
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if self._on_line is not None:
                self._on_line(line)
            if self._ready_text in line:
                self._ready.set()
        self._ready.set()

    def wait_ready(self, timeout: float = 180.0) -> None:
        if not self._ready.wait(timeout) or self.process.poll() is not None:
            self.stop()
            output = "\n".join(self.lines[-40:])
            raise RuntimeError(f"{self.name} did not become ready:\n{output}")

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)
        self._reader.join(10)
