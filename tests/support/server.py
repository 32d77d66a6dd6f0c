"""Starts the real `fastserve` command on free loopback ports and gives real clients to it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import grpc
import httpx
from tensorflow_serving.apis import (
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)

FASTSERVE = str(Path(sys.executable).with_name("fastserve"))
READY_LINE = "fastserve is ready"
_taken: set[int] = set()
_taken_lock = threading.Lock()


def free_port() -> int:
    """A loopback port nobody listens on now (and that this session has not handed out)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        with _taken_lock:
            if port not in _taken:
                _taken.add(port)
                return port


class ServerProcess:
    """A `fastserve` process. Its stderr is collected; `ready` waits for the ready line."""

    def __init__(self, args: Sequence[str], *, rest: bool = True, cwd: str | None = None) -> None:
        self.grpc_port = free_port()
        self.rest_port = free_port() if rest else 0
        self.args = [
            FASTSERVE,
            "--host=127.0.0.1",
            f"--port={self.grpc_port}",
            f"--rest_api_port={self.rest_port}",
            *args,
        ]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        # The server as users run it: it sets TensorFlow's log level itself.
        env.pop("TF_CPP_MIN_LOG_LEVEL", None)
        self.process = subprocess.Popen(
            self.args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=cwd,
        )
        self._lines: list[str] = []
        self._line_added = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._channel: grpc.Channel | None = None
        self._http: httpx.Client | None = None
        self._clients_lock = threading.Lock()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._line_added:
                self._lines.append(line.rstrip("\n"))
                self._line_added.notify_all()
        with self._line_added:
            self._line_added.notify_all()

    @property
    def output(self) -> str:
        with self._line_added:
            return "\n".join(self._lines)

    def wait_for_line(self, text: str, timeout: float = 120.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._line_added:
            while not any(text in line for line in self._lines):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (
                    self.process.poll() is not None and not self._reader.is_alive()
                ):
                    return False
                self._line_added.wait(min(remaining, 0.5))
            return True

    def ready(self, timeout: float = 120.0) -> ServerProcess:
        if not self.wait_for_line(READY_LINE, timeout):
            self.kill()
            raise AssertionError(f"fastserve did not become ready:\n{self.output}")
        return self

    def wait(self, timeout: float = 60.0) -> int:
        code = self.process.wait(timeout)
        self._reader.join(10)
        return code

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM, then the exit code."""
        self.close_clients()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        self.close_clients()
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)

    # --- clients -----------------------------------------------------------------------------

    # Clients are made on first use, under a lock: tests call from many threads at once.

    @property
    def channel(self) -> grpc.Channel:
        with self._clients_lock:
            if self._channel is None:
                self._channel = grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}")
            return self._channel

    @property
    def prediction(self) -> prediction_service_pb2_grpc.PredictionServiceStub:
        return prediction_service_pb2_grpc.PredictionServiceStub(self.channel)

    @property
    def model_service(self) -> model_service_pb2_grpc.ModelServiceStub:
        return model_service_pb2_grpc.ModelServiceStub(self.channel)

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def http(self) -> httpx.Client:
        with self._clients_lock:
            if self._http is None:
                self._http = httpx.Client(base_url=self.rest_url, timeout=60)
            return self._http

    def close_clients(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self._http is not None:
            self._http.close()
            self._http = None
