"""Load generators for tune, the benchmarks and the tests: h2load and Python gRPC client
processes for gRPC, wrk for REST; closed loop, a fixed number of requests in flight.

Each measurement returns a LoadResult: the requests answered OK in its window, their latency
percentiles, the errors it saw by kind, and the CPU the generator itself used (so that a report
can show whether the generator, not the server, was the limit). Every measurement first makes
one call with a real client, which must succeed (else LoadError), and h2load one more after it.

How errors show:
- Python clients: each call's gRPC status.
- wrk: HTTP statuses >= 400, socket errors and timeouts, printed by the Lua script's done() hook.
- h2load: a gRPC error is an HTTP 200 whose status is in the grpc-status trailer, which h2load
  does not read. An error answer carries no message (a trailers-only response), so the DATA
  bytes h2load received are compared with (HTTP 200 answers x the size of an OK answer, from
  the call before the load): the shortfall is counted as gRPC errors. Their latencies stay in
  the percentiles (h2load cannot tell which answers they were). The call after the load shows
  one error's status, if it fails too. h2load's own warm-up (--warm-up-time) counts the warm-up's
  DATA but not its requests, so a warm-up here is a separate, unmeasured run.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import multiprocessing.connection
import os
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from fastserve.tune.processes import cores

PREDICT_PATH = "/tensorflow.serving.PredictionService/Predict"
PACKAGES = {"h2load": "nghttp2-client", "wrk": "wrk"}
GRPC_ERRORS = "gRPC errors (HTTP 200 without a message)"
CALL_TIMEOUT = 60.0


class LoadError(RuntimeError):
    """A load could not be measured: the call before it failed, or the generator did."""


class MissingTool(LoadError):
    """A load generator is not installed; the message names its Debian package."""


def require(tool: str) -> str:
    """The path of `tool`, or MissingTool naming the Debian package that has it."""
    found = shutil.which(tool)
    if found is None:
        raise MissingTool(f"{tool} is not installed: apt-get install -y {PACKAGES[tool]}")
    return found


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank q-th percentile (0 < q <= 100); NaN when there are no values."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


# --- what is called, and one call ----------------------------------------------------------------


@dataclass
class Endpoint:
    """One way to call a server: what a load generator sends."""

    protocol: str  # "grpc" or "rest"
    host: str
    port: int
    path: str  # gRPC: the method's path, e.g. PREDICT_PATH; REST: the URL's path
    body: bytes  # gRPC: the serialized request message (not framed); REST: the body
    content_type: str = ""  # REST: e.g. "application/json"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def grpc_frame(message: bytes) -> bytes:
    """A gRPC length-prefixed message: not compressed (0), 4-byte big-endian length, bytes."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def grpc_call(endpoint: Endpoint, timeout: float = CALL_TIMEOUT) -> bytes:
    """One unary call of endpoint.path carrying endpoint.body, with grpcio; the raw answer.
    Raises grpc.RpcError unless the call's status is OK."""
    import grpc

    options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
    with grpc.insecure_channel(endpoint.address, options=options) as channel:
        return bytes(channel.unary_unary(endpoint.path)(endpoint.body, timeout=timeout))


def grpc_status(error: Exception) -> str:
    """`CODE: details` of a failed gRPC call."""
    code = getattr(error, "code", None)
    details = getattr(error, "details", None)
    if code is None or details is None:
        return f"{type(error).__name__}: {error}"
    return f"{code().name}: {details()}"


def checked_grpc_call(endpoint: Endpoint) -> bytes:
    """grpc_call, raising LoadError with the call's status unless it is OK."""
    import grpc

    try:
        return grpc_call(endpoint)
    except grpc.RpcError as error:
        raise LoadError(f"a call before the load failed: {grpc_status(error)}") from None


def rest_call(endpoint: Endpoint, timeout: float = CALL_TIMEOUT) -> tuple[int, bytes]:
    """One POST of endpoint.body to endpoint.path; the HTTP status and the body."""
    import http.client

    connection = http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=timeout)
    try:
        headers = {"Content-Type": endpoint.content_type or "application/json"}
        connection.request("POST", endpoint.path, endpoint.body, headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


# --- results -------------------------------------------------------------------------------------


@dataclass
class LoadResult:
    generator: str
    concurrency: int
    connections: int
    seconds: float  # the measured window
    requests: int  # answered OK in the window
    p50: float  # seconds; NaN without answers
    p99: float
    mean: float
    generator_cpu: float  # CPU seconds the generator used in the window
    errors: dict[str, int] = field(default_factory=dict)  # kind -> count, in the window
    # The status of a failed call: h2load's call after the load, the Python clients' first
    # error in the window; "" when none was seen.
    error_sample: str = ""
    command: list[str] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    @property
    def throughput(self) -> float:
        """Requests answered OK per second."""
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def generator_cores(self) -> float:
        return self.generator_cpu / self.seconds if self.seconds else 0.0

    @property
    def generator_ceiling(self) -> float:
        """Requests/s the generator could send on one core of its own (its CPU per request)."""
        return self.requests / self.generator_cpu if self.generator_cpu > 0 else math.inf

    def describe_errors(self) -> str:
        """`kind count, ...` and the sampled status, or "0"."""
        kinds = ", ".join(f"{kind} {count:,}" for kind, count in sorted(self.errors.items()))
        if self.error_sample:
            kinds += f" (e.g. {self.error_sample})"
        return kinds or "0"


def latency_figures(latencies: Sequence[float]) -> tuple[float, float, float]:
    """p50, p99 and mean of latencies; NaN for none."""
    return (
        percentile(latencies, 50),
        percentile(latencies, 99),
        statistics.fmean(latencies) if latencies else math.nan,
    )


class LoadGenerator(Protocol):
    description: str

    def measure(self, endpoint: Endpoint, seconds: float, warmup: float = 0.0) -> LoadResult:
        """An unmeasured warm-up of `warmup` seconds (if > 0), then the measured window."""
        ...

    def close(self) -> None: ...


# --- child processes -----------------------------------------------------------------------------


@dataclass
class ChildRun:
    code: int
    stdout: str
    stderr: str
    cpu: float  # user + system seconds


def run_child(command: list[str], timeout: float, env: Mapping[str, str] | None = None) -> ChildRun:
    """Runs `command` to its end (SIGKILL after `timeout`); its output and the CPU it used."""
    environment = dict(os.environ, **(env or {}))
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, env=environment)
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                os.kill(process.pid, signal.SIGKILL)
                pid, status, usage = os.wait4(process.pid, 0)
                break
            time.sleep(0.02)
        process.returncode = code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return ChildRun(
            code,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
            usage.ru_utime + usage.ru_stime,
        )


# --- h2load --------------------------------------------------------------------------------------


def grpc_connections(concurrency: int) -> int:
    """Connections for a gRPC concurrency (streams per connection = concurrency / this): one
    connection up to 4 in flight, then 4 streams per connection up to 8 connections."""
    if concurrency <= 4:
        return 1
    return min(8, max(1, concurrency // 4))


class _ChildGenerator:
    """A generator run as a child process per measurement (a C program): nothing to close."""

    def measure(self, endpoint: Endpoint, seconds: float, warmup: float = 0.0) -> LoadResult:
        if warmup > 0:
            self._run(endpoint, warmup)
        return self._run(endpoint, seconds)

    def close(self) -> None:
        pass

    def _run(self, endpoint: Endpoint, seconds: float) -> LoadResult:
        raise NotImplementedError


class H2Load(_ChildGenerator):
    """h2load sending a pre-built gRPC frame: `concurrency` requests in flight over
    `connections` HTTP/2 connections (by default grpc_connections(concurrency))."""

    def __init__(self, concurrency: int, connections: int | None = None) -> None:
        self.tool = require("h2load")
        self.concurrency = concurrency
        self.connections = connections or grpc_connections(concurrency)
        self.streams = max(1, concurrency // self.connections)
        self.description = (
            f"h2load ({self.tool}), {self.connections} connection(s) x {self.streams} stream(s)"
        )

    def _run(self, endpoint: Endpoint, seconds: float) -> LoadResult:
        answer_size = len(grpc_frame(checked_grpc_call(endpoint)))
        with tempfile.TemporaryDirectory(prefix="fastserve-h2load-") as tmp:
            frame = Path(tmp) / "request.grpc"
            frame.write_bytes(grpc_frame(endpoint.body))
            log = Path(tmp) / "requests.log"
            command = [
                self.tool,
                "--threads=1",
                f"--clients={self.connections}",
                f"--max-concurrent-streams={self.streams}",
                f"--duration={max(1, round(seconds * 1000))}ms",
                f"--data={frame}",
                "--header=content-type: application/grpc",
                "--header=te: trailers",
                f"--log-file={log}",
                f"http://{endpoint.address}{endpoint.path}",
            ]
            done = run_child(command, seconds + CALL_TIMEOUT + 60)
            if done.code != 0 or not log.exists():
                raise LoadError(
                    f"h2load failed ({done.code}): {done.stderr[-2000:]}{done.stdout[-2000:]}"
                )
            # One line per request that ended in the window: start, HTTP status, µs.
            rows = [line.split("\t") for line in log.read_text().splitlines() if line.strip()]
        latencies = [int(r[2]) / 1e6 for r in rows if len(r) >= 3 and r[1] == "200"]
        errors: dict[str, int] = {}
        # h2load's "failed" counts HTTP statuses >= 400 and streams that failed ("errored");
        # the log may hold those, and other statuses, too.
        failed = max(len(rows) - len(latencies), _h2load_count(done.stdout, "failed"))
        if failed:
            errors["HTTP not 200 or stream failed"] = failed
        data = _h2load_data_bytes(done.stdout)
        if data is None:
            raise LoadError(f"h2load did not say how much data it received:\n{done.stdout}")
        without_message = max(0, len(latencies) - data // answer_size)
        if without_message:
            errors[GRPC_ERRORS] = without_message
        p50, p99, mean = latency_figures(latencies if len(latencies) > without_message else [])
        sample = _sample_after(endpoint)
        return LoadResult(
            generator="h2load",
            concurrency=self.concurrency,
            connections=self.connections,
            seconds=_h2load_seconds(done.stdout, seconds),
            requests=len(latencies) - without_message,
            p50=p50,
            p99=p99,
            mean=mean,
            generator_cpu=done.cpu,
            errors=errors,
            error_sample=sample,
            command=command,
        )


def _sample_after(endpoint: Endpoint) -> str:
    """The status of a call right after a load: "" if OK."""
    import grpc

    try:
        grpc_call(endpoint)
    except grpc.RpcError as error:
        return grpc_status(error)
    return ""


def _h2load_data_bytes(output: str) -> int | None:
    # "traffic: 309.03KB (316449) total, 7.16KB (7332) headers (...), 170.67KB (174762) data"
    match = re.search(r"traffic:.*?([\d.]+\w*) \((\d+)\) data", output)
    return int(match.group(2)) if match else None


def _h2load_count(output: str, what: str) -> int:
    # "requests: 2394 total, 2396 started, 2394 done, 2394 succeeded, 0 failed, 0 errored, ..."
    match = re.search(rf"^requests:.*?\b(\d+) {what}\b", output, re.M)
    return int(match.group(1)) if match else 0


def _h2load_seconds(output: str, default: float) -> float:
    match = re.search(r"finished in ([\d.]+)(ms|s|us),", output)
    if not match:
        return default
    return float(match.group(1)) * {"s": 1.0, "ms": 1e-3, "us": 1e-6}[match.group(2)]


# --- wrk -----------------------------------------------------------------------------------------

WRK_SCRIPT = """\
-- POSTs the request body read from a file; done() prints one parseable line.
local file = assert(io.open(os.getenv("FASTSERVE_WRK_BODY"), "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = os.getenv("FASTSERVE_WRK_CONTENT_TYPE")

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "FASTSERVE-WRK requests=%d duration_us=%d p50_us=%d p99_us=%d mean_us=%.1f " ..
    "status_errors=%d connect=%d read=%d write=%d timeout=%d\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.mean, e.status, e.connect, e.read, e.write, e.timeout))
end
"""

_WRK_LINE = re.compile(r"FASTSERVE-WRK (.*)")
_WRK_ERRORS = (
    ("HTTP status >= 400", "status_errors"),
    ("connect errors", "connect"),
    ("read errors", "read"),
    ("write errors", "write"),
    ("timeouts", "timeout"),
)


class Wrk(_ChildGenerator):
    """wrk POSTing the endpoint's body: `concurrency` HTTP/1.1 keep-alive connections, one
    request in flight on each, in `threads` threads; windows in whole seconds (wrk's unit)."""

    def __init__(self, concurrency: int, threads: int = 1) -> None:
        self.tool = require("wrk")
        self.concurrency = concurrency
        self.threads = max(1, min(threads, concurrency))
        self.description = (
            f"wrk ({self.tool}), {concurrency} connection(s), {self.threads} thread(s)"
        )

    def _run(self, endpoint: Endpoint, seconds: float) -> LoadResult:
        status, answer = rest_call(endpoint)
        if status != 200:
            raise LoadError(f"a call before the load answered HTTP {status}: {answer[:300]!r}")
        whole = max(1, round(seconds))
        with tempfile.TemporaryDirectory(prefix="fastserve-wrk-") as tmp:
            script = Path(tmp) / "post.lua"
            script.write_text(WRK_SCRIPT)
            body = Path(tmp) / "body"
            body.write_bytes(endpoint.body)
            command = [
                self.tool,
                f"--threads={self.threads}",
                f"--connections={self.concurrency}",
                f"--duration={whole}s",
                f"--timeout={CALL_TIMEOUT:g}s",
                f"--script={script}",
                f"http://{endpoint.address}{endpoint.path}",
            ]
            env = {
                "FASTSERVE_WRK_BODY": str(body),
                "FASTSERVE_WRK_CONTENT_TYPE": endpoint.content_type or "application/json",
            }
            done = run_child(command, whole + CALL_TIMEOUT + 30, env)
        match = _WRK_LINE.search(done.stdout)
        if done.code != 0 or match is None:
            raise LoadError(f"wrk failed ({done.code}): {done.stderr[-2000:]}{done.stdout[-2000:]}")
        values = {k: float(v) for k, v in (item.split("=") for item in match.group(1).split())}
        errors = {name: int(values[key]) for name, key in _WRK_ERRORS if values[key]}
        return LoadResult(
            generator="wrk",
            concurrency=self.concurrency,
            connections=self.concurrency,
            seconds=values["duration_us"] / 1e6,
            requests=int(values["requests"]) - errors.get("HTTP status >= 400", 0),
            p50=values["p50_us"] / 1e6,
            p99=values["p99_us"] / 1e6,
            mean=values["mean_us"] / 1e6,
            generator_cpu=done.cpu,
            errors=errors,
            command=command,
        )


def drive(endpoint: Endpoint, concurrency: int, seconds: float, warmup: float = 0.0) -> LoadResult:
    """The endpoint's protocol's C generator: h2load for gRPC, wrk for REST."""
    generator: LoadGenerator
    if endpoint.protocol == "grpc":
        generator = H2Load(concurrency)
    elif endpoint.protocol == "rest":
        generator = Wrk(concurrency)
    else:
        raise ValueError(f"no load generator for protocol {endpoint.protocol!r}")
    return generator.measure(endpoint, seconds, warmup)


# --- Python gRPC clients -------------------------------------------------------------------------


@dataclass
class _Share:
    """What one client process saw in the window."""

    latencies: list[float]
    errors: dict[str, int]
    error_sample: str
    cpu: float


def _client_process(conn: multiprocessing.connection.Connection, concurrency: int) -> None:
    """A client process: for each (address, path, body, start, end) it gets, `concurrency`
    callers run until `end` (time.monotonic()); sends back a _Share of [start, end)."""
    conn.send("ready")
    while True:
        command = conn.recv()
        if command is None:
            return
        address, path, body, start, end = command
        conn.send(asyncio.run(_drive(address, path, body, start, end, concurrency)))


async def _drive(
    address: str, path: str, body: bytes, start: float, end: float, concurrency: int
) -> _Share:
    import grpc

    latencies: list[float] = []
    errors: Counter[str] = Counter()
    sample = ""
    cpu: list[float] = []
    monotonic = time.monotonic
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary(path)

        async def caller() -> None:
            nonlocal sample
            while True:
                t0 = monotonic()
                if t0 >= end:
                    return
                status = ""
                try:
                    await call(body, timeout=CALL_TIMEOUT)
                except grpc.aio.AioRpcError as error:
                    status = grpc_status(error)
                t1 = monotonic()
                if start <= t1 < end:
                    if not status:
                        latencies.append(t1 - t0)
                    else:
                        errors[status.split(":", 1)[0]] += 1
                        sample = sample or status

        async def meter() -> None:
            await asyncio.sleep(max(0.0, start - monotonic()))
            cpu.append(time.process_time())
            await asyncio.sleep(max(0.0, end - monotonic()))
            cpu.append(time.process_time())

        await asyncio.gather(meter(), *(caller() for _ in range(concurrency)))
    return _Share(latencies, dict(errors), sample, cpu[1] - cpu[0])


class PythonClients:
    """Client processes with grpc.aio, started once and reused for every measurement:
    `concurrency` callers in all, spread over `processes` processes (default: one per core),
    each calling its next request as soon as its previous one is answered. About 250 µs of CPU
    per request: on a small machine they take CPU the server does not get (generator_cpu)."""

    def __init__(self, concurrency: int, processes: int | None = None) -> None:
        count = max(1, min(processes or cores(), concurrency))
        context = multiprocessing.get_context("spawn")
        self.concurrency = concurrency
        self.conns: list[multiprocessing.connection.Connection] = []
        self.procs: list[Any] = []
        for i in range(count):
            share = concurrency // count + (i < concurrency % count)
            parent, child = context.Pipe()
            proc = context.Process(target=_client_process, args=(child, share), daemon=True)
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)
        for conn in self.conns:
            if conn.recv() != "ready":
                raise LoadError("a client process did not start")
        self.description = (
            f"Python gRPC clients (grpc.aio) in {count} process(es), {concurrency} in flight"
        )
        self._window: tuple[float, float] | None = None

    def start(self, endpoint: Endpoint, seconds: float, warmup: float = 0.0) -> tuple[float, float]:
        """Starts a measurement (the load begins now; its window after `warmup`) and returns
        the window (time.monotonic() values); result() waits for its end."""
        checked_grpc_call(endpoint)
        start = time.monotonic() + warmup
        self._window = (start, start + seconds)
        for conn in self.conns:
            conn.send((endpoint.address, endpoint.path, endpoint.body, *self._window))
        return self._window

    def result(self) -> LoadResult:
        assert self._window is not None, "start() first"
        start, end = self._window
        self._window = None
        shares: list[_Share] = [conn.recv() for conn in self.conns]
        latencies = [x for share in shares for x in share.latencies]
        p50, p99, mean = latency_figures(latencies)
        errors: Counter[str] = Counter()
        for share in shares:
            errors.update(share.errors)
        return LoadResult(
            generator="Python gRPC clients",
            concurrency=self.concurrency,
            connections=len(self.conns),
            seconds=end - start,
            requests=len(latencies),
            p50=p50,
            p99=p99,
            mean=mean,
            generator_cpu=sum(share.cpu for share in shares),
            errors=dict(errors),
            error_sample=next((s.error_sample for s in shares if s.error_sample), ""),
        )

    def measure(self, endpoint: Endpoint, seconds: float, warmup: float = 0.0) -> LoadResult:
        self.start(endpoint, seconds, warmup)
        return self.result()

    def close(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.send(None)
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
