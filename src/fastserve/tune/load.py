"""Load generators: h2load sending a pre-built gRPC frame, or Python gRPC client processes."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import multiprocessing.connection
import subprocess
import time
from pathlib import Path
from typing import Any, Protocol

from fastserve.tune.request import PREDICT, TuneError
from fastserve.tune.search import Measurement

# --- load generators ---------------------------------------------------------------------------


class LoadGenerator(Protocol):
    description: str

    def measure(self, target: str, warmup: float, seconds: float) -> Measurement: ...

    def close(self) -> None: ...


class H2Load:
    """h2load sending the pre-built gRPC frame over `concurrency` HTTP/2 connections, one
    request in flight on each."""

    def __init__(self, path: str, body: bytes, concurrency: int, workdir: Path) -> None:
        self.path = path
        self.concurrency = concurrency
        self.frame = workdir / "request.grpc"
        self.frame.write_bytes(b"\x00" + len(body).to_bytes(4, "big") + body)
        self.workdir = workdir
        self.description = f"h2load ({path}), {concurrency} connections, 1 stream each"

    def measure(self, target: str, warmup: float, seconds: float) -> Measurement:
        log = self.workdir / "h2load.log"
        log.unlink(missing_ok=True)
        command = [
            self.path,
            f"--clients={self.concurrency}",
            "--max-concurrent-streams=1",
            "--threads=1",
            f"--duration={round(seconds * 1000)}ms",
            f"--data={self.frame}",
            "--header=content-type: application/grpc",
            "--header=te: trailers",
            f"--log-file={log}",
            f"http://{target}{PREDICT}",
        ]
        if warmup > 0:
            command.insert(1, f"--warm-up-time={round(warmup * 1000)}ms")
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=warmup + seconds + 120
        )
        if done.returncode != 0 or not log.exists():
            raise TuneError(f"h2load failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        latencies: list[float] = []
        failed = 0
        for line in log.read_text().splitlines():
            fields = line.split("\t")
            if len(fields) < 3:
                continue
            if fields[1] == "200":
                latencies.append(int(fields[2]) / 1e6)
            else:
                failed += 1
        for line in done.stdout.splitlines():
            if line.startswith("requests:"):
                # "requests: N total, N started, N done, N succeeded, N failed, N errored, ..."
                counts = {
                    part.split()[1]: int(part.split()[0])
                    for part in line.split(":", 1)[1].split(",")
                    if len(part.split()) == 2
                }
                failed = max(failed, counts.get("failed", 0) + counts.get("errored", 0))
        return Measurement(latencies, seconds, failed)

    def close(self) -> None:
        pass


def _client_process(conn: multiprocessing.connection.Connection, body: bytes, share: int) -> None:
    conn.send("ready")
    while True:
        command = conn.recv()
        if command is None:
            return
        target, start, end = command
        conn.send(asyncio.run(_drive(target, body, share, start, end)))


async def _drive(
    target: str, body: bytes, concurrency: int, start: float, end: float
) -> tuple[list[float], int]:
    import grpc

    latencies: list[float] = []
    failed = 0
    monotonic = time.monotonic
    async with grpc.aio.insecure_channel(target) as channel:
        predict = channel.unary_unary(PREDICT)

        async def caller() -> None:
            nonlocal failed
            while True:
                t0 = monotonic()
                if t0 >= end:
                    return
                try:
                    await predict(body, timeout=60)
                    ok = True
                except grpc.aio.AioRpcError:
                    ok = False
                t1 = monotonic()
                if start <= t1 < end:
                    if ok:
                        latencies.append(t1 - t0)
                    else:
                        failed += 1

        await asyncio.gather(*(caller() for _ in range(concurrency)))
    return latencies, failed


class PythonClients:
    """Client processes with grpc.aio, started once and reused for every point. About 250 µs
    of CPU per request each: on a small machine they take CPU the server does not get."""

    def __init__(self, body: bytes, concurrency: int, processes: int) -> None:
        processes = max(1, min(processes, concurrency))
        context = multiprocessing.get_context("spawn")
        shares = [
            concurrency // processes + (i < concurrency % processes) for i in range(processes)
        ]
        self.conns: list[multiprocessing.connection.Connection] = []
        self.procs: list[Any] = []
        for share in shares:
            parent, child = context.Pipe()
            proc = context.Process(target=_client_process, args=(child, body, share), daemon=True)
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)
        for conn in self.conns:
            if conn.recv() != "ready":
                raise TuneError("a client process did not start")
        self.description = (
            f"Python gRPC clients (grpc.aio) in {processes} process(es), "
            f"{concurrency} in flight; h2load was not found (apt-get install nghttp2-client)"
        )

    def measure(self, target: str, warmup: float, seconds: float) -> Measurement:
        start = time.monotonic() + warmup
        for conn in self.conns:
            conn.send((target, start, start + seconds))
        latencies: list[float] = []
        failed = 0
        for conn in self.conns:
            seen, errors = conn.recv()
            latencies += seen
            failed += errors
        return Measurement(latencies, seconds, failed)

    def close(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.send(None)
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
