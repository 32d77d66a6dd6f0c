"""`fastserve tune`: the batching parameters with the highest throughput within a p99 target.

Each candidate setting is measured on a fresh `fastserve` (the same command, on free loopback
ports, with `--enable_batching --batching_parameters_file=<candidate>`) under a closed-loop
gRPC Predict load: `--concurrency` requests in flight, each carrying `--rows_per_request` rows.
The load comes from h2load (Debian's nghttp2-client) sending one pre-built gRPC frame, or, when
h2load is not installed, from Python gRPC client processes (which cost the server CPU on a
small machine: the report says which generator ran).

The search is coordinate-wise: max_batch_size over powers of two, then batch_timeout_micros,
then num_batch_threads, each swept with the others fixed at the best point so far, in rounds
until nothing improves or `--budget_seconds` runs out. "Best" is the highest throughput among
points whose p99 is within `--p99_ms` (and that answered every request); while no point meets
the target, the lowest p99. The winner is written as a TF Serving BatchingParameters text
proto whose header comments give the measured numbers.

With `--server HOST:PORT` tune drives a server that is already running. It cannot change that
server's batching parameters (fastserve, like TF Serving, reads them once at start-up), so it
measures the server as it is under the load shape and reports whether it meets the target
(exit 0) or not (exit 1), writing no parameters file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import multiprocessing
import multiprocessing.connection
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

READY_LINE = "fastserve is ready"
PREDICT = "/tensorflow.serving.PredictionService/Predict"
DEFAULT_SIZES = (1, 2, 4, 8, 16, 32, 64, 128)
DEFAULT_TIMEOUTS = (0, 500, 1000, 2000, 5000, 10000)
# Flags tune sets on each server it starts; the user may not pass them through.
_OWN_FLAGS = (
    "--port",
    "--host",
    "--rest_api_port",
    "--enable_batching",
    "--batching_parameters_file",
)


class TuneError(Exception):
    """Something the user can act on; tune prints it and exits 2."""


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# --- candidates and measured points ------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """One batching setting to measure."""

    max_batch_size: int
    batch_timeout_micros: int
    num_batch_threads: int
    max_enqueued_batches: int

    @property
    def label(self) -> str:
        return (
            f"max_batch_size {self.max_batch_size}, timeout {self.batch_timeout_micros} µs, "
            f"{self.num_batch_threads} thread(s)"
        )

    def text_proto(self) -> str:
        return (
            f"max_batch_size {{ value: {self.max_batch_size} }}\n"
            f"batch_timeout_micros {{ value: {self.batch_timeout_micros} }}\n"
            f"max_enqueued_batches {{ value: {self.max_enqueued_batches} }}\n"
            f"num_batch_threads {{ value: {self.num_batch_threads} }}\n"
        )


@dataclass
class Measurement:
    """What a load generator saw in its window: latencies (seconds) of answered requests."""

    latencies: list[float]
    seconds: float
    failed: int = 0


@dataclass
class Point:
    """A candidate (None: a running server as it is) and what it achieved."""

    candidate: Candidate | None
    requests: int
    seconds: float
    p50: float
    p99: float
    failed: int
    took: float = 0.0  # wall seconds this point cost, start-up included

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def meets(self, p99_target: float) -> bool:
        return self.requests > 0 and self.failed == 0 and self.p99 <= p99_target


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.inf
    index = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[index]


def point_of(candidate: Candidate | None, measured: Measurement, took: float = 0.0) -> Point:
    return Point(
        candidate,
        len(measured.latencies),
        measured.seconds,
        percentile(measured.latencies, 50),
        percentile(measured.latencies, 99),
        measured.failed,
        took,
    )


def better(a: Point, b: Point | None, p99_target: float) -> bool:
    """Whether `a` beats `b`: a point within the target beats one outside it; within it the
    higher throughput wins (the lower p99 on a tie); outside it, the lower p99."""
    if b is None:
        return True
    if a.meets(p99_target) != b.meets(p99_target):
        return a.meets(p99_target)
    if a.meets(p99_target):
        return (a.throughput, -a.p99) > (b.throughput, -b.p99)
    return (a.failed, a.p99) < (b.failed, b.p99)


# --- the search --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Space:
    sizes: tuple[int, ...]
    timeouts: tuple[int, ...]
    threads: tuple[int, ...]
    max_enqueued_batches: int

    def start(self, in_flight_rows: int) -> Candidate:
        """The first point: a batch of about half the rows in flight, 1 ms, every core."""
        fitting = [s for s in self.sizes if s <= max(1, in_flight_rows // 2)]
        size = fitting[-1] if fitting else self.sizes[0]
        timeout = 1000 if 1000 in self.timeouts else self.timeouts[len(self.timeouts) // 2]
        threads = cores() if cores() in self.threads else self.threads[-1]
        return Candidate(size, timeout, threads, self.max_enqueued_batches)


def search(
    measure: Callable[[Candidate], Point],
    space: Space,
    in_flight_rows: int,
    p99_target: float,
    budget_seconds: float,
    log: Callable[[str], None],
    began: float | None = None,
) -> list[Point]:
    """Coordinate-wise search; returns every point measured, in order. At least one point is
    measured whatever the budget; another starts only if it is expected to end within it
    (the budget counts from `began`, a time.monotonic(), by default now)."""
    began = time.monotonic() if began is None else began
    points: dict[Candidate, Point] = {}
    best: Point | None = None

    def affordable() -> bool:
        if not points:
            return True
        cost = max(p.took for p in points.values())
        return time.monotonic() - began + cost <= budget_seconds

    def visit(candidate: Candidate) -> bool:
        """Measures `candidate` unless already measured; False when the budget is spent."""
        nonlocal best
        if candidate in points:
            return True
        if not affordable():
            return False
        point = measure(candidate)
        points[candidate] = point
        log(describe(point, p99_target))
        if better(point, best, p99_target):
            best = point
        return True

    if not visit(space.start(in_flight_rows)):
        return list(points.values())
    coordinates: list[tuple[str, tuple[int, ...]]] = [
        ("max_batch_size", space.sizes),
        ("batch_timeout_micros", space.timeouts),
        ("num_batch_threads", space.threads),
    ]
    for _round in range(3):
        before = best
        for field, values in coordinates:
            assert best is not None and best.candidate is not None
            centre = best.candidate
            for value in values:
                if not visit(replace(centre, **{field: value})):
                    return list(points.values())
        if best is before:
            break
    return list(points.values())


def describe(point: Point, p99_target: float) -> str:
    what = point.candidate.label if point.candidate else "the running server"
    mark = "meets" if point.meets(p99_target) else "misses"
    failed = f", {point.failed} failed" if point.failed else ""
    return (
        f"{what}: {point.throughput:,.0f} requests/s, p50 {point.p50 * 1e3:.2f} ms, "
        f"p99 {point.p99 * 1e3:.2f} ms ({mark} the target){failed}"
    )


# --- the request -------------------------------------------------------------------------------


def _signature_from_proto(name: str, proto: Any) -> Any:
    from fastserve.dtypes import DType
    from fastserve.servables.base import Signature, TensorInfo

    def info(tensor: Any) -> TensorInfo:
        shape = tensor.tensor_shape
        dims = None if shape.unknown_rank else tuple(int(d.size) for d in shape.dim)
        return TensorInfo(tensor.name, DType(tensor.dtype), dims)

    return Signature(
        name,
        {alias: info(t) for alias, t in proto.inputs.items()},
        {alias: info(t) for alias, t in proto.outputs.items()},
        proto.method_name,
    )


def fetch_signature(target: str, model: str, signature_name: str) -> Any:
    """The signature the load will call, from the server's GetModelMetadata."""
    import grpc
    from tensorflow_serving.apis import get_model_metadata_pb2, prediction_service_pb2_grpc

    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = model
    request.metadata_field.append("signature_def")
    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            response = stub.GetModelMetadata(request, timeout=30)
        except grpc.RpcError as error:
            raise TuneError(f"GetModelMetadata of {model} failed: {error.details()}") from None
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    name = signature_name or "serving_default"
    if name not in signatures.signature_def:
        known = ", ".join(sorted(signatures.signature_def)) or "none"
        raise TuneError(f"model {model} has no signature {name!r} (it has: {known})")
    return _signature_from_proto(name, signatures.signature_def[name])


def parse_input(text: str) -> tuple[str, tuple[int, ...], str]:
    """`name=shape:dtype`, shape as comma-separated dimensions (-1: the batch dimension
    first, 1 elsewhere), e.g. x=-1,512:float32."""
    try:
        name, rest = text.split("=", 1)
        shape_text, dtype = rest.rsplit(":", 1)
        shape = tuple(int(d) for d in shape_text.split(",") if d.strip())
    except ValueError:
        raise TuneError(
            f"--input {text!r}: expected name=shape:dtype, e.g. x=-1,512:float32"
        ) from None
    return name.strip(), shape, dtype.strip()


def _random(shape: Sequence[int], dtype: Any, rng: np.random.Generator) -> np.ndarray:
    from fastserve.dtypes import DType

    if dtype is DType.DT_STRING:
        return np.full(tuple(shape), b"", dtype=object)
    try:
        numpy_type = dtype.numpy
    except TypeError:
        raise TuneError(f"cannot make values of {dtype.name}: give --input_file") from None
    if numpy_type.kind == "f":
        return rng.standard_normal(tuple(shape)).astype(numpy_type)
    return np.zeros(tuple(shape), dtype=numpy_type)


def _concrete(shape: Sequence[int] | None, rows: int) -> tuple[int, ...]:
    if shape is None:
        return (rows,)
    return tuple(rows if i == 0 and d < 0 else (1 if d < 0 else d) for i, d in enumerate(shape))


def build_inputs(args: argparse.Namespace, signature: Any) -> dict[str, np.ndarray]:
    """The request's tensors: from --input_file, --input, or the signature's own shapes."""
    from fastserve import dtypes, json_tensors

    rows = args.rows_per_request
    rng = np.random.default_rng(0)
    if args.input_file:
        try:
            doc = json_tensors.parse_object(Path(args.input_file).read_bytes())
            inputs, _ = json_tensors.predict_inputs(doc, signature)
        except OSError as error:
            raise TuneError(f"--input_file: {error}") from None
        except Exception as error:
            raise TuneError(f"--input_file {args.input_file}: {error}") from None
        return inputs
    if args.input:
        inputs = {}
        for text in args.input:
            name, shape, dtype_name = parse_input(text)
            try:
                dtype = dtypes.from_name(dtype_name)
            except ValueError as error:
                raise TuneError(f"--input {text!r}: {error}") from None
            inputs[name] = _random(_concrete(shape, rows), dtype, rng)
        return inputs
    return {
        alias: _random(_concrete(info.shape, rows), info.dtype, rng)
        for alias, info in signature.inputs.items()
    }


def predict_body(model: str, signature_name: str, inputs: dict[str, np.ndarray]) -> bytes:
    """A serialized PredictRequest (not framed)."""
    from tensorflow_serving.apis import predict_pb2

    from fastserve import dtypes, tensors

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    if signature_name:
        request.model_spec.signature_name = signature_name
    for alias, array in inputs.items():
        dtype = dtypes.from_numpy(array.dtype) if array.dtype != object else dtypes.DType.DT_STRING
        tensors.fill_proto(request.inputs[alias], array, dtype, as_content=True)
    return bytes(request.SerializeToString())


def check_predict(target: str, body: bytes) -> None:
    """One real Predict; raises TuneError with the server's answer unless it is OK (h2load
    sees HTTP statuses only, not gRPC ones)."""
    import grpc

    with grpc.insecure_channel(target) as channel:
        predict = channel.unary_unary(PREDICT)
        try:
            predict(body, timeout=60)
        except grpc.RpcError as error:
            raise TuneError(
                f"a Predict with the tuning request failed: {error.code().name}: {error.details()}"
            ) from None


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


# --- output ------------------------------------------------------------------------------------


def table(
    points: Sequence[Point], chosen: Point | None, p99_target: float, unbatched: str = ""
) -> list[str]:
    """A Markdown table of the points; a point without a candidate is shown as `unbatched`
    (a reference row that is never chosen) or as the running server."""
    out = [
        "| # | max_batch_size | batch_timeout_micros | num_batch_threads | requests/s | "
        "p50 ms | p99 ms | failed | within p99? |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: |",
    ]
    for i, p in enumerate(points, 1):
        c = p.candidate
        if c is not None:
            cells = [str(c.max_batch_size), str(c.batch_timeout_micros), str(c.num_batch_threads)]
        else:
            cells = [unbatched or "(the running server as it is)", "", ""]
        mark = "**chosen**" if p is chosen else ("yes" if p.meets(p99_target) else "no")
        out.append(
            f"| {i if c is not None or not unbatched else '-'} | {' | '.join(cells)} | "
            f"{p.throughput:,.0f} | {p.p50 * 1e3:.2f} | "
            f"{p.p99 * 1e3:.2f} | {p.failed} | {mark} |"
        )
    return out


def parameters_text(
    chosen: Point, reference: Point, points: Sequence[Point], args: argparse.Namespace
) -> str:
    assert chosen.candidate is not None
    header = [
        f"# Written by `fastserve tune` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        f"# Model {args.model_name}; load: {args.concurrency} concurrent gRPC Predict requests "
        f"of {args.rows_per_request_used} row(s), sent by {args.generator_description}.",
        f"# Highest throughput of {len(points)} settings measured with p99 <= "
        f"{args.p99_ms:g} ms: {chosen.throughput:,.0f} requests/s, p50 "
        f"{chosen.p50 * 1e3:.2f} ms, p99 {chosen.p99 * 1e3:.2f} ms over {chosen.seconds:g} s.",
        f"# The same load without batching: {reference.throughput:,.0f} requests/s, p50 "
        f"{reference.p50 * 1e3:.2f} ms, p99 {reference.p99 * 1e3:.2f} ms.",
        f"# Servers ran with: {shlex.join(args.server_flags)}",
        "# Serve with: fastserve --enable_batching --batching_parameters_file=<this file> ...",
    ]
    return "\n".join(header) + "\n" + chosen.candidate.text_proto()


def plot(
    points: Sequence[Point],
    chosen: Point | None,
    p99_target: float,
    path: Path,
    reference: Point | None = None,
) -> bool:
    """Throughput against p99 of every point measured, if matplotlib is installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, axis = plt.subplots(figsize=(9, 5.5))
    threads = sorted({p.candidate.num_batch_threads for p in points if p.candidate})
    markers = "osD^v"
    for i, count in enumerate(threads):
        mine = [p for p in points if p.candidate and p.candidate.num_batch_threads == count]
        axis.scatter(
            [p.p99 * 1e3 for p in mine],
            [p.throughput for p in mine],
            marker=markers[i % len(markers)],
            label=f"{count} batch thread(s)",
        )
        for p in mine:
            assert p.candidate is not None
            axis.annotate(
                f"{p.candidate.max_batch_size}/{p.candidate.batch_timeout_micros}",
                (p.p99 * 1e3, p.throughput),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
    if chosen is not None:
        axis.scatter(
            [chosen.p99 * 1e3], [chosen.throughput], s=200, facecolors="none",
            edgecolors="red", label="chosen",
        )  # fmt: skip
    if reference is not None and reference.requests:
        axis.scatter(
            [reference.p99 * 1e3], [reference.throughput], marker="x", color="black",
            label="batching off",
        )  # fmt: skip
    axis.axvline(p99_target * 1e3, color="grey", linestyle="--", label="p99 target")
    axis.set_xlabel("p99 latency (ms)")
    axis.set_ylabel("requests/s")
    axis.set_title("fastserve tune: each point labelled max_batch_size/batch_timeout_micros")
    axis.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


# --- main --------------------------------------------------------------------------------------


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(sorted({int(v) for v in text.split(",") if v.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one value")
    return values


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fastserve tune",
        description="Finds the batching parameters with the highest throughput whose p99 "
        "latency is within a target, by measuring the server under a closed-loop gRPC load. "
        "Flags it does not know are passed to every fastserve it starts.",
    )
    p.add_argument("--model_name", default="default", help="the model to load and call")
    p.add_argument("--model_base_path", default="", help="as fastserve's flag")
    p.add_argument("--signature_name", default="", help="signature to call (serving_default)")
    p.add_argument(
        "--server",
        metavar="HOST:PORT",
        help="measure this running server instead (its parameters cannot change: measures "
        "only, writes no file)",
    )
    p.add_argument("--p99_ms", type=float, default=50.0, help="p99 latency target in ms")
    p.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    p.add_argument("--rows_per_request", type=int, default=1, help="rows in each request")
    inputs = p.add_mutually_exclusive_group()
    inputs.add_argument("--input_file", help="a REST :predict body (JSON) to send")
    inputs.add_argument(
        "--input",
        action="append",
        metavar="NAME=SHAPE:DTYPE",
        help="an input of random values, e.g. x=-1,512:float32 (-1 first: rows_per_request); "
        "repeat per input. Default: the signature's inputs",
    )
    p.add_argument("--output", type=Path, default=Path("batching_parameters.txt"))
    p.add_argument("--plot", type=Path, help="a PNG of the sweep (needs matplotlib)")
    p.add_argument("--seconds_per_point", type=float, default=5.0, help="measured window")
    p.add_argument("--warmup_seconds", type=float, default=1.0, help="load before the window")
    p.add_argument(
        "--budget_seconds", type=float, default=600.0, help="bound on the whole search's time"
    )
    p.add_argument(
        "--max_batch_sizes",
        type=_ints,
        help="max_batch_size values (default: powers of two from 1 up to the rows in flight, "
        "at most 128)",
    )
    p.add_argument("--batch_timeouts", type=_ints, default=DEFAULT_TIMEOUTS)
    p.add_argument(
        "--batch_threads", type=_ints, help=f"num_batch_threads values (default: 1, 2, {cores()})"
    )
    p.add_argument(
        "--load_generator",
        choices=("auto", "h2load", "python"),
        default="auto",
        help="auto: h2load if installed, else Python gRPC client processes",
    )
    p.add_argument("--ready_timeout", type=float, default=300.0, help="seconds to start a server")
    return p


def _check_args(args: argparse.Namespace, extra: list[str], p: argparse.ArgumentParser) -> None:
    if min(args.concurrency, args.rows_per_request) < 1:
        p.error("--concurrency and --rows_per_request must be positive")
    if args.seconds_per_point <= 0 or args.warmup_seconds < 0 or args.p99_ms <= 0:
        p.error("--seconds_per_point and --p99_ms must be positive")
    for flag in extra:
        name = flag.split("=", 1)[0].replace("-", "_").replace("__", "--", 1)
        if name in _OWN_FLAGS:
            p.error(f"{flag}: tune sets this flag itself on each server it starts")
    if args.server is not None and extra:
        p.error(f"unknown arguments (with --server no server is started): {shlex.join(extra)}")
    if (
        args.server is None
        and not args.model_base_path
        and not any(f.startswith("--model_config_file") or f.startswith("--config") for f in extra)
    ):
        p.error("give --model_base_path (or --model_config_file), or --server HOST:PORT")


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args, extra = p.parse_known_args(list(sys.argv[2:] if argv is None else argv))
    _check_args(args, extra, p)
    try:
        return _run(args, extra)
    except TuneError as error:
        print(f"fastserve tune: {error}", file=sys.stderr)
        return 2


def _generator(args: argparse.Namespace, body: bytes, workdir: Path) -> LoadGenerator:
    h2load = shutil.which("h2load")
    if args.load_generator == "h2load" and h2load is None:
        raise TuneError("h2load is not installed: apt-get install -y nghttp2-client")
    if h2load is not None and args.load_generator != "python":
        return H2Load(h2load, body, args.concurrency, workdir)
    return PythonClients(body, args.concurrency, cores())


def _run(args: argparse.Namespace, extra: list[str]) -> int:
    began = time.monotonic()
    say = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    p99_target = args.p99_ms / 1e3
    flags = list(extra)
    if args.server is None:
        if args.model_base_path:
            flags += [
                f"--model_name={args.model_name}",
                f"--model_base_path={args.model_base_path}",
            ]
        if not any(f.startswith("--grpc_max_threads") for f in flags):
            # Every request in flight must be able to wait in a batch at once.
            flags.append(f"--grpc_max_threads={max(args.concurrency, 4 * cores())}")
    args.server_flags = flags
    with tempfile.TemporaryDirectory(prefix="fastserve-tune-") as tmp:
        workdir = Path(tmp)
        if args.server is not None:
            body = _request(args, args.server)
            generator = _generator(args, body, workdir)
            say(f"load: {generator.description}")
            try:
                return _measure_running(args, generator, args.server, p99_target)
            finally:
                generator.close()
        # The first server runs without batching: it tells the signature, and its
        # throughput is the reference the batching settings are shown against.
        say("starting fastserve without batching (the signature, and a reference point) ...")
        first = LocalServer(flags, None)
        try:
            first.wait_ready(args.ready_timeout)
            body = _request(args, first.target)
            generator = _generator(args, body, workdir)
            args.generator_description = generator.description
            say(f"load: {generator.description}")
            reference = point_of(
                None, generator.measure(first.target, args.warmup_seconds, args.seconds_per_point)
            )
            say(describe(reference, p99_target))
        finally:
            first.stop()
        try:
            in_flight = args.concurrency * args.rows_per_request_used
            sizes = args.max_batch_sizes or tuple(s for s in DEFAULT_SIZES if s < 2 * in_flight)
            space = Space(
                sizes,
                args.batch_timeouts,
                args.batch_threads or tuple(sorted({1, 2, cores()})),
                # A closed loop never has more tasks waiting than requests in flight.
                max(10, args.concurrency),
            )

            def measure(candidate: Candidate) -> Point:
                started = time.monotonic()
                parameters = workdir / "candidate.txt"
                parameters.write_text(candidate.text_proto())
                server = LocalServer(flags, parameters)
                try:
                    server.wait_ready(args.ready_timeout)
                    check_predict(server.target, body)
                    measured = generator.measure(
                        server.target, args.warmup_seconds, args.seconds_per_point
                    )
                finally:
                    server.stop()
                return point_of(candidate, measured, time.monotonic() - started)

            points = search(measure, space, in_flight, p99_target, args.budget_seconds, say, began)
        finally:
            generator.close()
    return _conclude(args, reference, points, p99_target)


def _request(args: argparse.Namespace, target: str) -> bytes:
    """The serialized Predict the load sends, checked against the server once."""
    signature = fetch_signature(target, args.model_name, args.signature_name)
    inputs = build_inputs(args, signature)
    body = predict_body(args.model_name, args.signature_name, inputs)
    check_predict(target, body)
    rows = {a.shape[0] for a in inputs.values() if a.ndim > 0}
    args.rows_per_request_used = rows.pop() if len(rows) == 1 else args.rows_per_request
    return body


def _measure_running(
    args: argparse.Namespace, generator: LoadGenerator, target: str, p99_target: float
) -> int:
    point = point_of(None, generator.measure(target, args.warmup_seconds, args.seconds_per_point))
    print("\n".join(table([point], None, p99_target)))
    print(
        f"\nMeasured the running server at {target} as it is: tune cannot change a running "
        "server's batching parameters, so no file was written. To tune them, run tune "
        "without --server (it starts its own servers)."
    )
    if not point.meets(p99_target):
        print(
            f"fastserve tune: the running server misses p99 <= {args.p99_ms:g} ms: p99 "
            f"{point.p99 * 1e3:.2f} ms, {point.failed} failed",
            file=sys.stderr,
        )
        return 1
    return 0


def _conclude(
    args: argparse.Namespace, reference: Point, points: list[Point], p99_target: float
) -> int:
    within = [p for p in points if p.meets(p99_target)]
    chosen = max(within, key=lambda p: p.throughput) if within else None
    print("\n".join(table([reference, *points], chosen, p99_target, "batching off (reference)")))
    if (
        chosen is not None
        and reference.meets(p99_target)
        and reference.throughput > chosen.throughput
    ):
        print(
            f"\nNote: without batching the server answered {reference.throughput:,.0f} "
            "requests/s within the target, more than the best batching setting: this "
            "load may be better served without --enable_batching."
        )
    if args.plot is not None:
        if plot(points, chosen, p99_target, args.plot, reference):
            print(f"\nplot: {args.plot}")
        else:
            print("\nmatplotlib is not installed: no plot (pip install matplotlib)")
    if chosen is None:
        lowest = min(points, key=lambda p: (p.failed > 0, p.p99))
        where = lowest.candidate.label if lowest.candidate else ""
        print(
            f"fastserve tune: no setting met p99 <= {args.p99_ms:g} ms; the best p99 found was "
            f"{lowest.p99 * 1e3:.2f} ms ({where}, {lowest.throughput:,.0f} requests/s, "
            f"{lowest.failed} failed) over {len(points)} setting(s). Lower --concurrency or "
            "raise --p99_ms.",
            file=sys.stderr,
        )
        return 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(parameters_text(chosen, reference, points, args))
    print(
        f"\nwrote {args.output}: {chosen.candidate.label if chosen.candidate else ''}, "
        f"{chosen.throughput:,.0f} requests/s, p99 {chosen.p99 * 1e3:.2f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
