"""Server processes for tune, the benchmarks and the tests: started on free loopback ports, their
output collected line by line, ready once a line says so, stopped with SIGTERM."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

READY_LINE = "fastserve is ready"
LOOPBACK = "127.0.0.1"
# How fastserve is started unless the caller says otherwise: this interpreter's.
FASTSERVE_COMMAND = (sys.executable, "-m", "fastserve")

_handed_out: set[int] = set()
_handed_out_lock = threading.Lock()


def free_port(host: str = LOOPBACK) -> int:
    """A port nobody listens on now on `host`, and that this process has not handed out before
    (servers started one after another must not be given the same port)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        with _handed_out_lock:
            if port not in _handed_out:
                _handed_out.add(port)
                return port


def cores() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads) so far; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class ServerNotReady(RuntimeError):
    """A server exited, or did not print its ready line in time; the message has its output."""


class ServerProcess:
    """A server subprocess whose output (stdout and stderr) is collected line by line; ready once
    a line contains `ready`. `on_line` sees every line as it comes (for example to read the port
    a server chose). Thread-safe: any thread may wait for lines."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        ready: str = READY_LINE,
        name: str = "",
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        on_line: Callable[[str], None] | None = None,
    ) -> None:
        self.args = list(args)
        self.name = name or shlex.join(self.args[:3])
        self.ready_text = ready
        environment = dict(os.environ, PYTHONUNBUFFERED="1")
        # fastserve sets TensorFlow's log level itself: the server runs as users run it.
        environment.pop("TF_CPP_MIN_LOG_LEVEL", None)
        environment.update(env or {})
        self._on_line = on_line
        self._lines: list[str] = []
        self._ended = False
        self._changed = threading.Condition()
        self.process = subprocess.Popen(
            self.args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=environment,
            cwd=cwd,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            line = line.rstrip("\n")
            if self._on_line is not None:
                self._on_line(line)
            with self._changed:
                self._lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def lines(self) -> list[str]:
        with self._changed:
            return list(self._lines)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, text: str, timeout: float = 120.0) -> bool:
        """Whether a line containing `text` came (or comes within `timeout` seconds)."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._changed:
            while True:
                if any(text in line for line in self._lines[seen:]):
                    return True
                seen = len(self._lines)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._ended:
                    return False
                self._changed.wait(remaining)

    def wait_ready(self, timeout: float = 180.0) -> None:
        """Returns once the ready line came; else kills the process and raises ServerNotReady
        with its last lines."""
        if self.wait_for_line(self.ready_text, timeout) and self.process.poll() is None:
            return
        code = self.process.poll()
        if code is None and self._ended:  # its output ended: it is exiting
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = self.process.wait(10)
        why = f"not in {timeout:g} s" if code is None else f"exited with {code}"
        self.kill()
        tail = "\n".join(self.lines[-100:])
        raise ServerNotReady(
            f"{self.name} did not become ready ({why}):\n$ {shlex.join(self.args)}\n{tail}"
        )

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.process.pid)

    def wait(self, timeout: float = 60.0) -> int:
        """The exit code, once the process has exited and its output is all read."""
        code = self.process.wait(timeout)
        self._reader.join(10)
        return code

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, then SIGKILL if it has not exited within `timeout`; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.wait(30)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.wait(30)


class FastserveProcess(ServerProcess):
    """`fastserve` listening on 127.0.0.1: gRPC on a free port, REST on another when `rest`,
    else REST off. `flags` are its other flags; `command` how it is started."""

    def __init__(
        self,
        flags: Sequence[str],
        *,
        rest: bool = False,
        command: Sequence[str] = FASTSERVE_COMMAND,
        name: str = "fastserve",
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
    ) -> None:
        self.grpc_port = free_port()
        self.rest_port = free_port() if rest else 0
        super().__init__(
            [
                *command,
                f"--host={LOOPBACK}",
                f"--port={self.grpc_port}",
                f"--rest_api_port={self.rest_port}",
                *flags,
            ],
            name=name,
            env=env,
            cwd=cwd,
        )

    @property
    def target(self) -> str:
        """The gRPC address, host:port."""
        return f"{LOOPBACK}:{self.grpc_port}"

    @property
    def rest_url(self) -> str:
        return f"http://{LOOPBACK}:{self.rest_port}"
