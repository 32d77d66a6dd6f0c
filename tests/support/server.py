"""Starts the real `fastserve` command on free loopback ports and gives real clients to it.

The process itself is fastserve.tune.processes' (the one tune and the benchmarks use); this
adds the installed command, the tests' REST default, and clients made on first use."""

from __future__ import annotations

import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import grpc
import httpx
from tensorflow_serving.apis import (
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)

from fastserve.tune.processes import READY_LINE, FastserveProcess, ServerNotReady, free_port

FASTSERVE = str(Path(sys.executable).with_name("fastserve"))

__all__ = ["FASTSERVE", "READY_LINE", "ServerProcess", "free_port"]


class ServerProcess(FastserveProcess):
    """The installed `fastserve` command, REST on by default. Its output is collected; `ready`
    waits for the ready line."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        rest: bool = True,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(args, rest=rest, command=[FASTSERVE], cwd=cwd, env=env)
        self._channel: grpc.Channel | None = None
        self._http: httpx.Client | None = None
        self._clients_lock = threading.Lock()

    def ready(self, timeout: float = 120.0) -> ServerProcess:
        try:
            self.wait_ready(timeout)
        except ServerNotReady as error:
            raise AssertionError(f"{error}\n\nAll of its output:\n{self.output}") from None
        return self

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM, then the exit code (TimeoutExpired if it does not exit in `timeout`)."""
        self.close_clients()
        if self.process.poll() is None:
            self.process.terminate()
        return self.wait(timeout)

    def kill(self) -> None:
        self.close_clients()
        super().kill()

    # --- clients -----------------------------------------------------------------------------

    # Clients are made on first use, under a lock: tests call from many threads at once.

    @property
    def channel(self) -> grpc.Channel:
        with self._clients_lock:
            if self._channel is None:
                self._channel = grpc.insecure_channel(self.target)
            return self._channel

    @property
    def prediction(self) -> prediction_service_pb2_grpc.PredictionServiceStub:
        return prediction_service_pb2_grpc.PredictionServiceStub(self.channel)

    @property
    def model_service(self) -> model_service_pb2_grpc.ModelServiceStub:
        return model_service_pb2_grpc.ModelServiceStub(self.channel)

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
