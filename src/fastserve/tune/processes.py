"""`fastserve` processes started by tune on free loopback ports."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from fastserve.tune.request import TuneError

READY_LINE = "fastserve is ready"


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# --- servers -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalServer:
    """A `fastserve` process started by tune with one candidate's parameters file."""

    def __init__(self, flags: Sequence[str], parameters: Path | None) -> None:
        self.port = free_port()
        self.target = f"127.0.0.1:{self.port}"
        self.args = [
            sys.executable,
            "-m",
            "fastserve",
            "--host=127.0.0.1",
            f"--port={self.port}",
            "--rest_api_port=0",
            *flags,
        ]
        if parameters is not None:
            self.args += ["--enable_batching", f"--batching_parameters_file={parameters}"]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        self.process = subprocess.Popen(
            self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        self.lines: list[str] = []
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            del self.lines[:-200]
            if READY_LINE in line:
                self._ready.set()
        self._ready.set()

    def wait_ready(self, timeout: float) -> None:
        if not self._ready.wait(timeout) or self.process.poll() is not None:
            self.stop()
            output = "\n".join(self.lines[-30:])
            raise TuneError(f"fastserve did not become ready:\n$ {shlex.join(self.args)}\n{output}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)
        self._reader.join(10)
