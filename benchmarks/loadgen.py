"""Load generators that are not the bottleneck: h2load for gRPC, wrk (with a Lua script) for REST.

Both are C programs run as child processes on this machine: h2load (Debian's nghttp2-client)
sends a pre-built gRPC frame over HTTP/2, wrk (Debian's wrk) POSTs a JSON body over HTTP/1.1.
Each run returns the requests answered OK in its window, their latency percentiles, the errors
it saw and the CPU the generator itself used (from the child's resource usage), so that a
report can show the generator had CPU to spare: requests/s per generator CPU-second is the
most it could send on one core with the server costing nothing.

How errors show:
- REST (wrk): any status >= 400 is counted by wrk (summary.errors.status) and printed by the
  script's done() hook, with socket errors and timeouts.
- gRPC (h2load): a gRPC error is still HTTP 200, its status in the grpc-status trailer, which
  h2load does not read. So h2load's 2xx count is not trusted alone: an error answer carries no
  DATA (a trailers-only response), and the DATA bytes h2load received are compared with
  (answers x the size of an OK answer, sampled with grpcio before the run). The shortfall is
  reported as "gRPC answers without a message". A sampled call with grpcio before and after
  each run must also return status OK (grpc_call raises otherwise).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from targets import Endpoint, grpc_call, rest_call

PACKAGES = {"h2load": "nghttp2-client", "wrk": "wrk"}


class MissingTool(RuntimeError):
    pass


def require(tool: str) -> str:
    """The path of `tool`, or an error naming the Debian package that has it."""
    found = shutil.which(tool)
    if found is None:
        raise MissingTool(
            f"{tool} is not installed: apt-get install -y {PACKAGES[tool]} "
            "(the serving benchmark needs h2load for gRPC and wrk for REST)"
        )
    return found


def grpc_frame(message: bytes) -> bytes:
    """A gRPC length-prefixed message: not compressed (0), 4-byte big-endian length, bytes."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


@dataclass
class LoadResult:
    generator: str
    concurrency: int
    connections: int
    seconds: float  # the measured window
    requests: int  # answered OK in the window
    p50: float  # seconds
    p99: float
    mean: float
    generator_cpu: float  # CPU seconds the generator used in the window
    errors: dict[str, int] = field(default_factory=dict)
    command: list[str] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def generator_cores(self) -> float:
        return self.generator_cpu / self.seconds if self.seconds else 0.0

    @property
    def generator_ceiling(self) -> float:
        """Requests/s the generator could send on one core of its own (its CPU per request)."""
        return self.requests / self.generator_cpu if self.generator_cpu > 0 else float("inf")


def run_child(command: list[str], timeout: float) -> tuple[int, str, str, float]:
    """Runs `command`; its exit code, stdout, stderr and the CPU seconds it used."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(command, stdout=out, stderr=err)
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
        return (
            code,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
            usage.ru_utime + usage.ru_stime,
        )


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


# --- h2load ---------------------------------------------------------------------------------


def grpc_connections(concurrency: int) -> int:
    """Connections for a gRPC concurrency (streams per connection = concurrency / this): one
    connection up to 4 in flight, then 4 streams per connection up to 8 connections."""
    if concurrency <= 4:
        return 1
    return min(8, max(1, concurrency // 4))


def h2load(endpoint: Endpoint, concurrency: int, seconds: float) -> LoadResult:
    """`concurrency` requests in flight (connections x streams) for `seconds`."""
    tool = require("h2load")
    connections = grpc_connections(concurrency)
    streams = max(1, concurrency // connections)
    expected = len(grpc_frame(grpc_call(endpoint)))  # raises unless gRPC status OK
    with tempfile.TemporaryDirectory(prefix="fastserve-h2load-") as tmp:
        body = Path(tmp) / "request.grpc"
        body.write_bytes(grpc_frame(endpoint.body))
        log = Path(tmp) / "requests.log"
        command = [
            tool,
            "-t1",
            f"-c{connections}",
            f"-m{streams}",
            f"-D{max(1, round(seconds * 1000))}ms",
            "-d",
            str(body),
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
            "--log-file",
            str(log),
            f"http://{endpoint.host}:{endpoint.port}{endpoint.path}",
        ]
        code, out, err, cpu = run_child(command, seconds + 60)
        if code != 0:
            raise RuntimeError(f"h2load failed ({code}): {err[-2000:]}{out[-2000:]}")
        rows = [line.split("\t") for line in log.read_text().splitlines() if line.strip()]
    latencies = sorted(int(r[2]) / 1e6 for r in rows if r[1] == "200")
    failed = sum(1 for r in rows if r[1] != "200")
    errors: dict[str, int] = {}
    if failed:
        errors["HTTP not 200 or stream failed"] = failed
    data = _h2load_data_bytes(out)
    if data is not None and latencies:
        missing = len(latencies) - data // expected
        if missing > 0:
            errors["gRPC answers without a message"] = missing
    grpc_call(endpoint)  # still answering OK after the load
    return LoadResult(
        generator="h2load",
        concurrency=concurrency,
        connections=connections,
        seconds=_h2load_seconds(out, seconds),
        requests=len(latencies) - errors.get("gRPC answers without a message", 0),
        p50=percentile(latencies, 50),
        p99=percentile(latencies, 99),
        mean=statistics.fmean(latencies) if latencies else float("nan"),
        generator_cpu=cpu,
        errors=errors,
        command=command,
    )


def _h2load_data_bytes(output: str) -> int | None:
    match = re.search(r"traffic:.*?([\d.]+\w*) \((\d+)\) data", output)
    return int(match.group(2)) if match else None


def _h2load_seconds(output: str, default: float) -> float:
    match = re.search(r"finished in ([\d.]+)(ms|s|us),", output)
    if not match:
        return default
    scale = {"s": 1.0, "ms": 1e-3, "us": 1e-6}[match.group(2)]
    return float(match.group(1)) * scale


# --- wrk ------------------------------------------------------------------------------------

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


def wrk(endpoint: Endpoint, concurrency: int, seconds: float) -> LoadResult:
    """`concurrency` HTTP/1.1 connections, one request in flight on each, for `seconds`
    (whole seconds: wrk's unit)."""
    tool = require("wrk")
    status, answer = rest_call(endpoint)
    if status != 200:
        raise RuntimeError(f"REST sample answered {status}: {answer[:300]!r}")
    whole = max(1, round(seconds))
    with tempfile.TemporaryDirectory(prefix="fastserve-wrk-") as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(WRK_SCRIPT)
        body = Path(tmp) / "body.json"
        body.write_bytes(endpoint.body)
        os.environ["FASTSERVE_WRK_BODY"] = str(body)
        os.environ["FASTSERVE_WRK_CONTENT_TYPE"] = endpoint.content_type or "application/json"
        command = [
            tool,
            "-t1",
            f"-c{concurrency}",
            f"-d{whole}s",
            "--timeout",
            "60s",
            "-s",
            str(script),
            f"http://{endpoint.host}:{endpoint.port}{endpoint.path}",
        ]
        code, out, err, cpu = run_child(command, whole + 90)
    match = _WRK_LINE.search(out)
    if code != 0 or match is None:
        raise RuntimeError(f"wrk failed ({code}): {err[-2000:]}{out[-2000:]}")
    values = {k: float(v) for k, v in (item.split("=") for item in match.group(1).split())}
    errors = {
        name: int(values[key])
        for name, key in (
            ("HTTP status >= 400", "status_errors"),
            ("connect errors", "connect"),
            ("read errors", "read"),
            ("write errors", "write"),
            ("timeouts", "timeout"),
        )
        if values[key]
    }
    requests = int(values["requests"]) - errors.get("HTTP status >= 400", 0)
    return LoadResult(
        generator="wrk",
        concurrency=concurrency,
        connections=concurrency,
        seconds=values["duration_us"] / 1e6,
        requests=requests,
        p50=values["p50_us"] / 1e6,
        p99=values["p99_us"] / 1e6,
        mean=values["mean_us"] / 1e6,
        generator_cpu=cpu,
        errors=errors,
        command=command,
    )


def drive(endpoint: Endpoint, concurrency: int, seconds: float) -> LoadResult:
    """The endpoint's protocol's generator."""
    if endpoint.protocol == "grpc":
        return h2load(endpoint, concurrency, seconds)
    if endpoint.protocol == "rest":
        return wrk(endpoint, concurrency, seconds)
    raise ValueError(f"no load generator for protocol {endpoint.protocol!r}")
