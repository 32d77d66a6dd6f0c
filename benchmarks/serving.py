"""Serving: fastserve against its floors (and, with --peers, its peers), gRPC and REST.

What it measures, all in one run on this machine:
- Floors: a bare grpcio server that decodes a PredictRequest and echoes its tensor
  (floors/grpc_echo.py); a bare Starlette app doing the same for REST, on each HTTP server
  fastserve's REST can run on (floors/starlette_echo.py; Hypercorn, and Uvicorn when installed);
  and the model called in-process with no server (fastserve's TensorFlow servable, the
  SavedModel's session callable), µs per call.
- fastserve: the real `fastserve` command on free loopback ports, serving half_plus_two (TF
  Serving's test model, y = 0.5 x + 2) and the MLP of benchmarks/batching.py, batching off and
  on (a batching parameters file per model).
- Peers (--peers): the Targets of benchmarks/peers.py, serving the same SavedModel.

Load: h2load for gRPC (a pre-built gRPC frame), wrk for REST (a Lua script), see
fastserve.tune.load (src/fastserve/tune/load.py), the generators `fastserve tune` uses too;
closed loop, concurrency 1 (latency p50/p99), 16 and 64 (throughput); payloads of 1, 1,000
and 100,000 float32 values. Every cell: a warm-up run, then a measured window. The targets of
issue 6 are reported as ratios of throughputs at 16 from this run. Nothing asserts on timing.

    .venv/bin/python benchmarks/serving.py --output benchmarks/results/serving.md  # ~12 min
    .venv/bin/python benchmarks/serving.py --quick --seconds 1                     # smoke test
    .venv/bin/python benchmarks/serving.py --profile ...   # py-spy on fastserve during a cell
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from common import machine_description, positive_ints, publish
from targets import (
    Target,
    check_tfs_grpc,
    check_tfs_rest,
    payload,
    predict_request,
    rest_body,
)

import fastserve.tune.load as loadgen
from fastserve.tune.load import PREDICT_PATH, Endpoint, LoadResult
from fastserve.tune.processes import FastserveProcess, ServerProcess, cpu_seconds, free_port

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
FASTSERVE = str(Path(sys.executable).with_name("fastserve"))
PAYLOADS = (1, 1_000, 100_000)
CONCURRENCIES = (1, 16, 64)
MLP = "mlp"
# half_plus_two as a python servable (numpy), for issue 11's Python-servable target.
PYTHON_MODEL = "python_half_plus_two"
PYTHON_HALF_PLUS_TWO = """
    import numpy as np

    from fastserve.servables.python import signature, tensor


    @signature(inputs={"x": tensor("float32", [-1])}, outputs={"y": tensor("float32", [-1])})
    def serving_default(x):
        return {"y": np.float32(0.5) * x + np.float32(2)}
"""
MLP_WIDTH = 512  # the MLP's input: one row of 512 floats
# Batching parameters per model: half_plus_two costs ~100 µs a call, so a short timeout;
# the MLP costs ms, so a longer one (benchmarks/batching.py's sweep).
BATCHING = {
    "half_plus_two": "max_batch_size { value: 64 }\nbatch_timeout_micros { value: 200 }\n"
    "max_enqueued_batches { value: 100 }\nnum_batch_threads { value: 2 }\n",
    MLP: "max_batch_size { value: 64 }\nbatch_timeout_micros { value: 2000 }\n"
    "max_enqueued_batches { value: 100 }\nnum_batch_threads { value: 2 }\n",
}
# With batching on, enough request threads that a batch can fill (the default, 4 per CPU,
# would cap it at 8 requests).
BATCHING_THREADS = 64


# --- targets --------------------------------------------------------------------------------


def _rest_path(model: str) -> str:
    return f"/v1/models/{model}:predict"


class ProcessTarget:
    """A target that is one server process (self._process, made by start())."""

    _process: ServerProcess | None = None

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()

    def pids(self) -> list[int]:
        return [self._process.pid] if self._process else []


class GrpcFloor(ProcessTarget):
    """floors/grpc_echo.py: decodes a PredictRequest, answers its tensor as output "y"."""

    kind = "floor"

    script = "grpc_echo.py"

    def __init__(self) -> None:
        self.name = "grpcio floor (echo)"
        self.port = 0

    def start(self) -> None:
        self.port = free_port()
        script = str(HERE / "floors" / self.script)
        self._process = ServerProcess(
            [sys.executable, script, f"--port={self.port}"], ready="ready "
        )
        self._process.wait_ready()

    def endpoints(self, floats: int) -> list[Endpoint]:
        body = predict_request(payload(floats))
        return [Endpoint("grpc", "127.0.0.1", self.port, PREDICT_PATH, body)]

    def check(self, floats: int) -> None:
        # An echo: the answer is x itself, not 0.5 x + 2.
        check_tfs_grpc(self.endpoints(floats)[0], payload(floats))


class GrpcAioFloor(GrpcFloor):
    """floors/grpc_aio_echo.py: the same echo on grpc.aio (the fastest Python gRPC server)."""

    script = "grpc_aio_echo.py"

    def __init__(self) -> None:
        super().__init__()
        self.name = "grpc.aio floor (echo)"


class GrpcppFloor(GrpcFloor):
    """floors/grpcpp_echo.py: fastserve's native grpc++ server echoing Predict in C++."""

    script = "grpcpp_echo.py"

    def __init__(self) -> None:
        super().__init__()
        self.name = "grpc++ floor (native echo)"


class StarletteFloor(ProcessTarget):
    """floors/starlette_echo.py on `server`: decodes the JSON, answers its instances."""

    kind = "floor"

    def __init__(self, server: str) -> None:
        self.server = server
        self.name = f"Starlette floor (echo) on {server}"
        self.port = 0

    def start(self) -> None:
        self.port = free_port()
        script = str(HERE / "floors" / "starlette_echo.py")
        args = [sys.executable, script, f"--server={self.server}", f"--port={self.port}"]
        self._process = ServerProcess(args, ready="ready ")
        self._process.wait_ready()

    def endpoints(self, floats: int) -> list[Endpoint]:
        body = rest_body(payload(floats))
        path = _rest_path("half_plus_two")
        return [Endpoint("rest", "127.0.0.1", self.port, path, body, "application/json")]

    def check(self, floats: int) -> None:
        check_tfs_rest(self.endpoints(floats)[0], payload(floats))


class Fastserve(ProcessTarget):
    """The `fastserve` command serving one model, batching off or on, gRPC and/or REST."""

    kind = "fastserve"

    def __init__(
        self,
        model: str,
        base_path: Path,
        workdir: Path,
        *,
        batching: bool,
        rest_server: str | None,
        protocols: tuple[str, ...] = ("grpc", "rest"),
        reference: Callable[[np.ndarray], np.ndarray] | None = None,
        platform: str = "tensorflow",
    ) -> None:
        self.platform = platform
        self.model = model
        self.base_path = base_path
        self.workdir = workdir
        self.batching = batching
        self.rest_server = rest_server
        self.protocols = protocols
        self._reference = reference
        label = "batching on" if batching else "batching off"
        on = f", REST on {rest_server}" if rest_server else ""
        self.name = f"fastserve {model}, {label}{on}"
        self.payloads: tuple[int, ...] = (MLP_WIDTH,) if model == MLP else PAYLOADS
        self.grpc_port = self.rest_port = 0
        self.args: list[str] = []

    def start(self) -> None:
        flags = [f"--model_name={self.model}", f"--model_base_path={self.base_path}"]
        if self.platform != "tensorflow":
            config = self.workdir / f"{self.model}.yaml"
            config.write_text(
                f"models:\n  - name: {self.model}\n    base_path: {self.base_path}\n"
                f"    model_platform: {self.platform}\n"
            )
            flags = [f"--config={config}"]
        if self.rest_server:
            flags.append(f"--rest_server={self.rest_server}")
        if self.batching:
            parameters = self.workdir / f"batching_{self.model}.txt"
            parameters.write_text(BATCHING[self.model])
            flags += [
                "--enable_batching",
                f"--batching_parameters_file={parameters}",
                f"--grpc_max_threads={BATCHING_THREADS}",
                f"--rest_api_num_threads={BATCHING_THREADS}",
            ]
        rest = "rest" in self.protocols
        self._process = FastserveProcess(flags, rest=rest, command=[FASTSERVE], name=self.name)
        self.grpc_port, self.rest_port = self._process.grpc_port, self._process.rest_port
        self.args = self._process.args
        self._process.wait_ready()

    def _x(self, floats: int) -> np.ndarray:
        if self.model == MLP:
            return np.random.default_rng(1).standard_normal((1, floats), dtype=np.float32)
        x = payload(floats)
        # Batched, a request is one row of `floats` values: the batcher counts rows, and a
        # [n] tensor would be n rows (more than max_batch_size for the larger payloads).
        return x.reshape(1, floats) if self.batching else x

    def endpoints(self, floats: int) -> list[Endpoint]:
        x = self._x(floats)
        out = []
        if "grpc" in self.protocols:
            body = predict_request(x, self.model)
            out.append(Endpoint("grpc", "127.0.0.1", self.grpc_port, PREDICT_PATH, body))
        if "rest" in self.protocols:
            path = _rest_path(self.model)
            body = rest_body(x)
            json = "application/json"
            out.append(Endpoint("rest", "127.0.0.1", self.rest_port, path, body, json))
        return out

    def want(self, floats: int) -> np.ndarray:
        x = self._x(floats)
        if self.model == MLP:
            assert self._reference is not None
            return self._reference(x)
        return np.float32(0.5) * x + np.float32(2)

    def check(self, floats: int) -> None:
        want = self.want(floats)
        for endpoint in self.endpoints(floats):
            if endpoint.protocol == "grpc":
                check_tfs_grpc(endpoint, want)
            else:
                check_tfs_rest(endpoint, want)


def fastserve_rest_servers() -> list[str]:
    """The HTTP servers `fastserve --rest_server` offers."""
    from fastserve.frontends.http_server import SERVERS

    return list(SERVERS)


def load_peers(base_path: Path) -> list[Target]:
    """The peers' Targets (benchmarks/peers.py), serving the same SavedModel (version 1)."""
    import peers

    return list(peers.make_targets(base_path / "1"))


# --- the model in-process -------------------------------------------------------------------


@dataclass
class InProcess:
    model: str
    floats: int
    micros: float  # median µs per call


def in_process(models: dict[str, Path], seconds: float) -> tuple[list[InProcess], Any]:
    """µs per call of each model with each payload, loaded by fastserve's TensorFlow loader
    and called as the server calls it (Servable.run); and the MLP, to check answers with."""
    from fastserve.servables.base import LoadOptions
    from fastserve.servables.tensorflow import TensorFlowLoader

    rows: list[InProcess] = []
    mlp = None
    for model, base in models.items():
        if model == PYTHON_MODEL:
            continue  # the in-process figure is TensorFlow's
        servable = TensorFlowLoader().load(str(base / "1"), LoadOptions())
        signature = servable.signatures["serving_default"]
        if model == MLP:
            mlp = servable
        sizes = (MLP_WIDTH,) if model == MLP else PAYLOADS
        for floats in sizes:
            if model == MLP:
                x = np.random.default_rng(1).standard_normal((1, floats), dtype=np.float32)
            else:
                x = payload(floats)
            for _ in range(3):
                servable.run(signature, {"x": x}, ["y"])
            samples: list[float] = []
            until = time.perf_counter() + seconds
            while time.perf_counter() < until or len(samples) < 5:
                t0 = time.perf_counter()
                servable.run(signature, {"x": x}, ["y"])
                samples.append(time.perf_counter() - t0)
            rows.append(InProcess(model, floats, statistics.median(samples) * 1e6))
        if model != MLP:
            servable.unload()
    return rows, mlp


# --- the matrix -----------------------------------------------------------------------------


@dataclass
class Cell:
    target: str
    kind: str
    protocol: str
    floats: int
    concurrency: int
    load: LoadResult
    server_cores: float  # the target's processes' CPU over the window / window


@dataclass
class Profile:
    cell: str
    samples: int
    top_self: list[tuple[str, int]]
    top_total: list[tuple[str, int]]
    note: str = ""


@dataclass
class Run:
    cells: list[Cell] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    profiles: list[Profile] = field(default_factory=list)
    commands: dict[str, str] = field(default_factory=dict)

    def find(self, target: str, protocol: str, floats: int, concurrency: int) -> Cell | None:
        for cell in self.cells:
            if (cell.target, cell.protocol, cell.floats, cell.concurrency) == (
                target,
                protocol,
                floats,
                concurrency,
            ):
                return cell
        return None


def _has_pids(target: Any) -> bool:
    """A Target may offer pids() (its server processes), for CPU accounting and profiling."""
    return bool(getattr(target, "pids", lambda: [])())


def _server_cpu(target: Any) -> float:
    pids = getattr(target, "pids", lambda: [])()
    return sum(cpu_seconds(pid) for pid in pids)


def measure_target(target: Any, args: argparse.Namespace, run: Run) -> None:
    """Every cell of one target: per payload, a check, then each endpoint at each concurrency."""
    began = time.monotonic()
    try:
        target.start()
    except Exception as error:
        run.failures.append(f"{target.name}: did not start: {error}".splitlines()[0])
        return
    try:
        if getattr(target, "args", None):
            run.commands[target.name] = shlex.join(target.args)
        startup = time.monotonic() - began
        print(f"{target.name}: ready in {startup:.1f} s", file=sys.stderr)
        mlp = getattr(target, "model", "") == MLP
        payloads = [f for f in getattr(target, "payloads", PAYLOADS) if mlp or f in args.payloads]
        for floats in payloads:
            try:
                target.check(floats)
            except Exception as error:
                run.failures.append(f"{target.name}, {floats} floats: check failed: {error}")
                continue
            for endpoint in target.endpoints(floats):
                for concurrency in args.concurrencies:
                    measure_cell(target, endpoint, floats, concurrency, args, run)
    finally:
        target.stop()


def measure_cell(
    target: Any,
    endpoint: Endpoint,
    floats: int,
    concurrency: int,
    args: argparse.Namespace,
    run: Run,
) -> None:
    try:
        if args.warmup > 0:
            loadgen.drive(endpoint, concurrency, args.warmup)
        cpu0 = _server_cpu(target)
        load = loadgen.drive(endpoint, concurrency, args.seconds)
        cpu1 = _server_cpu(target)
    except loadgen.MissingTool:
        raise
    except Exception as error:
        run.failures.append(
            f"{target.name}, {endpoint.protocol}, {floats} floats, {concurrency} in flight: "
            f"{type(error).__name__}: {str(error)[:300]}"
        )
        return
    cell = Cell(
        target.name,
        getattr(target, "kind", "peer"),
        endpoint.protocol,
        floats,
        concurrency,
        load,
        (cpu1 - cpu0) / load.seconds if load.seconds and _has_pids(target) else float("nan"),
    )
    run.cells.append(cell)
    if load.error_sample:
        run.failures.append(
            f"{target.name}, {endpoint.protocol}, {floats} floats, {concurrency} in flight: "
            f"a call after the load failed: {load.error_sample}"
        )
    print(
        f"  {endpoint.protocol} {floats} floats x{concurrency}: {load.throughput:,.0f} req/s, "
        f"p50 {load.p50 * 1e3:.2f} ms, p99 {load.p99 * 1e3:.2f} ms, errors {load.errors or 0}",
        file=sys.stderr,
    )


# --- profiling ------------------------------------------------------------------------------


def py_spy() -> str | None:
    return shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")


def profile_cell(
    target: Fastserve, endpoint: Endpoint, floats: int, concurrency: int, seconds: float
) -> Profile:
    """py-spy record on the server during one load run; the functions most often on CPU."""
    label = f"{target.name}, {endpoint.protocol}, {floats} floats, {concurrency} in flight"
    tool = py_spy()
    if tool is None:
        return Profile(label, 0, [], [], "py-spy is not installed (pip install py-spy)")
    pid = target.pids()[0]
    with tempfile.TemporaryDirectory(prefix="fastserve-pyspy-") as tmp:
        out = Path(tmp) / "stacks.txt"
        command = [
            tool,
            "record",
            "--nonblocking",
            "--format",
            "raw",
            "--rate",
            "100",
            "--duration",
            str(max(1, round(seconds))),
            "--output",
            str(out),
            "--pid",
            str(pid),
        ]
        spy = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        time.sleep(0.3)
        loadgen.drive(endpoint, concurrency, seconds + 0.5)
        text, _ = spy.communicate(timeout=120)
        if not out.exists():
            note = text.decode(errors="replace")[-500:]
            return Profile(label, 0, [], [], f"py-spy wrote nothing: {note}")
        return summarize_stacks(label, out.read_text())


def _frame_name(frame: str) -> str:
    # py-spy's raw frames: "function (path/file.py:line)"; keep the function and the file.
    match = re.match(r"(.*) \((.*?)(?::\d+)?\)$", frame.strip())
    if not match:
        return frame.strip()
    function, path = match.groups()
    return f"{function} ({'/'.join(Path(path).parts[-2:])})"


# Frames on every stack of a thread pool or event loop: left out of the "total" column.
_PLUMBING = (
    "(threading.py)",
    "(futures/thread.py)",
    "(asyncio/base_events.py)",
    "(asyncio/events.py)",
    "(asyncio/runners.py)",
)


def summarize_stacks(label: str, text: str, top: int = 15) -> Profile:
    self_counts: collections.Counter[str] = collections.Counter()
    total_counts: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        frames = [_frame_name(f) for f in stack.split(";") if f]
        if frames:
            self_counts[frames[-1]] += count
        for name in set(frames):
            if not name.endswith(_PLUMBING):
                total_counts[name] += count
    return Profile(label, samples, self_counts.most_common(top), total_counts.most_common(top))


# --- reporting ------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}" if seconds == seconds else "-"


def rps(cell: Cell | None) -> str:
    return f"{cell.load.throughput:,.0f}" if cell else "-"


def _errors(cells: Sequence[Cell]) -> str:
    total: collections.Counter[str] = collections.Counter()
    for cell in cells:
        total.update(cell.load.errors)
    return ", ".join(f"{k}: {v}" for k, v in sorted(total.items())) or "0"


def rows_of(run: Run) -> list[tuple[str, str, int]]:
    seen: dict[tuple[str, str, int], None] = {}
    for cell in run.cells:
        seen[(cell.target, cell.protocol, cell.floats)] = None
    return list(seen)


def floor_for(run: Run, protocol: str, rest_server: str) -> str:
    if protocol == "grpc":
        return GrpcFloor().name
    return StarletteFloor(rest_server).name


def ratio_rows(
    run: Run, targets: Sequence[Any], concurrency: int, args: argparse.Namespace
) -> list[str]:
    """The issues' targets: fastserve's throughput over its floors' and over each
    peer's (>= 2), same protocol, payload and concurrency."""
    out = [
        "| fastserve | protocol | floats | fastserve req/s | vs | their req/s | ratio | target "
        "| met? | missed by |",
        "| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | :---: | --- |",
    ]
    fastserve = [t for t in targets if getattr(t, "kind", "") == "fastserve"]
    peers = [t for t in targets if getattr(t, "kind", "peer") == "peer"]
    for target in fastserve:
        if target.model == MLP or target.batching:
            continue  # the targets are for batching off (benchmarks/batching.py for on)
        server = target.rest_server or "hypercorn"
        for protocol in target.protocols:
            for floats in target.payloads:
                ours = run.find(target.name, protocol, floats, concurrency)
                if ours is None:
                    continue
                # Issue 11's targets: gRPC >= 3x the Python floor and >= 0.35x the native
                # (grpc++) floor; REST >= 0.65x bare Starlette on the same HTTP server.
                if protocol == "grpc" and target.model == PYTHON_MODEL:
                    comparisons = [(GrpcAioFloor().name, 1.8)]
                elif protocol == "grpc":
                    # At 100,000 floats the issue asks 2x the grpc.aio floor.
                    goal = 2.0 if floats >= 100_000 else 3.0
                    comparisons = [(GrpcAioFloor().name, goal), (GrpcppFloor().name, 0.35)]
                else:
                    comparisons = [(floor_for(run, protocol, server), 0.65)]
                comparisons += [(peer.name, 2.0) for peer in peers]
                for other_name, goal in comparisons:
                    other = run.find(other_name, protocol, floats, concurrency)
                    if other is None or not other.load.throughput:
                        continue
                    ratio = ours.load.throughput / other.load.throughput
                    met = ratio >= goal
                    if met:
                        missed = ""
                    elif ratio > 0:
                        missed = f"{goal - ratio:.2f}: needs {goal / ratio - 1:+.1%} throughput"
                    else:
                        missed = "served nothing"
                    out.append(
                        f"| {target.name} | {protocol} | {floats:,} | {rps(ours)} | "
                        f"{other_name} | {rps(other)} | {ratio:.2f} | >= {goal:g} | "
                        f"{'yes' if met else 'no'} | {missed} |"
                    )
    return out


def report(
    run: Run,
    targets: Sequence[Any],
    inproc: list[InProcess],
    args: argparse.Namespace,
    machine: list[str],
    elapsed: float,
) -> str:
    conc = args.concurrencies
    hi = [c for c in conc if c > 1]
    out = [
        "# Serving: fastserve against its floors"
        + (" and peers" if args.peers else "")
        + ", gRPC and REST",
        "",
        f"Command: `{shlex.join([sys.executable, *sys.argv])}`",
        "",
        *machine,
        "- load generators, servers and floors share this machine's CPUs (see the CPU columns)",
        "",
        "Model: half_plus_two (TF Serving's test SavedModel, y = 0.5 x + 2, rebuilt by "
        "tests/support/models.py) with x of 1, 1,000 and 100,000 float32 values, and the MLP "
        f"of benchmarks/batching.py ({MLP_WIDTH} -> 1024 -> 1024 -> 16, one row of "
        f"{MLP_WIDTH} floats). gRPC requests carry x as tensor_content (as TensorFlow's "
        "make_tensor_proto writes it); REST requests are TF Serving's row format "
        '`{"instances": [...]}`. With batching on, x is sent as one row [1, n] (the batcher '
        "counts rows); with it off as [n].",
        "",
        "Load: gRPC with h2load (one thread; "
        + ", ".join(f"{c} in flight = {_conn(c)}" for c in conc)
        + "), POSTing a pre-built gRPC frame with `content-type: application/grpc` and "
        "`te: trailers`; REST with wrk (one thread, one connection per request in flight, a Lua "
        "script POSTing the JSON body). Closed loop: each stream sends its next request when "
        f"the last is answered. Each cell: {args.warmup:g} s of warm-up, then a "
        f"{args.seconds:g} s window (wrk rounds to whole seconds); requests/s = requests "
        "answered OK in the window / window; p50/p99 from h2load's per-request log and wrk's "
        "latency histogram. Server CPU = the target's processes' CPU seconds in the window / "
        "window (2 = both cores). Before each payload, Target.check() sends one real request "
        "with a real client and checks the answer (0.5 x + 2; x itself for the echo floors); "
        "before each run a call of the same bytes with a real client (grpcio, or http.client for "
        "REST) must succeed, and after each gRPC run one more, whose failure is listed below.",
        "",
        "Errors: wrk counts HTTP statuses >= 400, socket errors and timeouts. A gRPC error is "
        "HTTP 200 with its code in the grpc-status trailer, which h2load does not read: such "
        "an answer carries no message, so the DATA bytes h2load received are compared with "
        "answers x the size of an OK answer; the shortfall is counted as "
        f'"{loadgen.GRPC_ERRORS}" and not counted as served.',
        "",
        "fastserve runs with its defaults (gRPC threads: 4 per CPU, as the grpcio floor), "
        f"and with batching on also `--grpc_max_threads={BATCHING_THREADS} "
        f"--rest_api_num_threads={BATCHING_THREADS}` so that a batch can fill. Batching "
        "parameters files:",
        "",
    ]
    for model, text in BATCHING.items():
        out.append(f"- {model}: `{' '.join(text.split())}`")
    if run.commands:
        out += ["", "Server commands (ports and temporary paths vary):", ""]
        out += [f"- {name}: `{command}`" for name, command in run.commands.items()]
    out += [
        "",
        "## The model in-process, no server",
        "",
        "The SavedModel loaded by fastserve's TensorFlow loader and called as the server calls "
        "it (`Servable.run`, the session callable), one thread; median over "
        f"{args.inproc_seconds:g} s per payload.",
        "",
        "| model | floats | µs per call | calls/s on one core |",
        "| --- | ---: | ---: | ---: |",
    ]
    for row in inproc:
        out.append(
            f"| {row.model} | {row.floats:,} | {row.micros:,.1f} | {1e6 / row.micros:,.0f} |"
        )
    out += [
        "",
        "## Latency and throughput",
        "",
        "| target | protocol | floats | p50 ms at 1 | p99 ms at 1 | req/s at 1 | "
        + " | ".join(f"req/s at {c} | p99 ms at {c} | server CPU at {c}" for c in hi)
        + " | errors |",
        "| --- | --- | ---: | ---: | ---: | ---: | "
        + " | ".join("---: | ---: | ---:" for _ in hi)
        + " | --- |",
    ]
    for target, protocol, floats in rows_of(run):
        cells = [run.find(target, protocol, floats, c) for c in conc]
        one = run.find(target, protocol, floats, 1)
        parts = [
            target,
            protocol,
            f"{floats:,}",
            ms(one.load.p50) if one else "-",
            ms(one.load.p99) if one else "-",
            rps(one),
        ]
        for c in hi:
            cell = run.find(target, protocol, floats, c)
            parts += [
                rps(cell),
                ms(cell.load.p99) if cell else "-",
                f"{cell.server_cores:.2f}"
                if cell and cell.server_cores == cell.server_cores
                else "-",
            ]
        parts.append(_errors([c for c in cells if c]))
        out.append("| " + " | ".join(parts) + " |")
    if 16 in conc:
        out += [
            "",
            "## The issue's targets, as ratios from this run (throughput at 16 in flight)",
            "",
            "Issue 11, batching off: gRPC Predict >= 3x the grpc.aio floor (2x at 100,000 "
            "floats) and >= 0.35x the grpc++ floor "
            "(fastserve's native server echoing in C++), >= 1.8x the grpc.aio floor for the "
            "same model as a Python servable; REST >= 0.65x the Starlette floor on "
            "the same HTTP server; both >= 2x each peer (with --peers). Missed by: how far the "
            "ratio is from its target, and how much more throughput fastserve would need.",
            "",
            *ratio_rows(run, targets, 16, args),
        ]
    out += generator_section(run)
    if run.profiles:
        out += profile_section(run.profiles)
    if args.plot is not None:
        out += ["", f"![throughput at 16 and latency at 1]({args.plot.name})"]
    if run.skipped:
        out += ["", "## Not measured", ""] + [f"- {s}" for s in run.skipped]
    if run.failures:
        out += ["", "## Failures", ""] + [f"- {f}" for f in run.failures]
    out += ["", f"Total time: {elapsed:.0f} s.", ""]
    return "\n".join(out)


def _conn(concurrency: int) -> str:
    connections = loadgen.grpc_connections(concurrency)
    streams = max(1, concurrency // connections)
    return f"{connections} connection(s) x {streams} stream(s)"


def generator_section(run: Run, unit: str = "floats") -> list[str]:
    """Whether each generator had room: its own CPU, and what it could send per core."""
    out = [
        "",
        "## The load generators",
        "",
        "Generator CPU = the generator's own CPU seconds (its child-process resource usage) "
        "/ window. Its ceiling = requests / its CPU seconds: what it could send on one core "
        "of its own if the server cost nothing; headroom = ceiling / the throughput it "
        "measured. Shown for the floors (the fastest servers here) and the busiest cell of "
        "each generator.",
        "",
        f"| generator | target | protocol | {unit} | in flight | req/s | generator CPU | "
        "ceiling req/s per core | headroom |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    chosen: list[Cell] = [c for c in run.cells if c.kind == "floor" and c.concurrency > 1]
    for generator in ("h2load", "wrk"):
        mine = [c for c in run.cells if c.load.generator == generator]
        if mine:
            busiest = max(mine, key=lambda c: c.load.throughput)
            if busiest not in chosen:
                chosen.append(busiest)
    for cell in chosen:
        load = cell.load
        ceiling = load.generator_ceiling
        headroom = ceiling / load.throughput if load.throughput else float("nan")
        out.append(
            f"| {load.generator} | {cell.target} | {cell.protocol} | {cell.floats:,} | "
            f"{cell.concurrency} | {load.throughput:,.0f} | {load.generator_cores:.2f} | "
            f"{ceiling:,.0f} | {headroom:.1f}x |"
        )
    return out


def profile_section(profiles: list[Profile]) -> list[str]:
    out = [
        "",
        "## Where fastserve's time goes (py-spy)",
        "",
        "`py-spy record --nonblocking --rate 100 --format raw` on the fastserve process "
        "during an extra run of the cell (not one of the measured ones above). Python frames "
        "only: with --native py-spy cannot tell idle threads from busy ones, and threads "
        "waiting on a lock then fill the profile. Self = samples with "
        "the function on top of the stack; total = samples with it anywhere on the stack; "
        "share of all samples of all threads (idle threads are not sampled).",
    ]
    for profile in profiles:
        out += ["", f"### {profile.cell}", ""]
        if profile.note:
            out.append(profile.note)
            continue
        out += [f"{profile.samples} samples.", "", "| self | function | | total | function |"]
        out.append("| ---: | --- | --- | ---: | --- |")
        for i in range(max(len(profile.top_self), len(profile.top_total))):
            left = profile.top_self[i] if i < len(profile.top_self) else ("", 0)
            right = profile.top_total[i] if i < len(profile.top_total) else ("", 0)
            out.append(
                f"| {_share(left[1], profile.samples)} | `{left[0]}` | | "
                f"{_share(right[1], profile.samples)} | `{right[0]}` |"
            )
    return out


def _share(count: int, samples: int) -> str:
    return f"{count / samples:.0%}" if samples and count else ""


def plot(run: Run, path: Path, unit: str = "floats") -> bool:
    """Requests/s at 16 in flight and p50 at 1 per target, a column per payload (`unit`: what
    a Cell's `floats` counts, for the titles)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = rows_of(run)
    payloads = sorted({floats for _, _, floats in rows})
    figure, axes = plt.subplots(2, len(payloads), figsize=(5 * len(payloads), 9), squeeze=False)
    for column, floats in enumerate(payloads):
        mine = [(t, p) for t, p, f in rows if f == floats]
        labels = [f"{t} ({p})".replace(", ", "\n") for t, p in mine]
        through = [run.find(t, p, floats, 16) for t, p in mine]
        latency = [run.find(t, p, floats, 1) for t, p in mine]
        colors = ["tab:blue" if p == "grpc" else "tab:orange" for _, p in mine]
        top, bottom = axes[0][column], axes[1][column]
        top.barh(labels, [c.load.throughput if c else 0 for c in through], color=colors)
        top.set_title(f"{floats:,} {unit}: requests/s at 16 in flight")
        bottom.barh(labels, [c.load.p50 * 1e3 if c else 0 for c in latency], color=colors)
        bottom.set_title(f"{floats:,} {unit}: p50 ms at 1 in flight")
        for axis in (top, bottom):
            axis.tick_params(axis="y", labelsize=6)
            axis.invert_yaxis()
    figure.suptitle("blue: gRPC (h2load), orange: REST (wrk)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


# --- main -----------------------------------------------------------------------------------


def build_models(workdir: Path, quick: bool) -> dict[str, Path]:
    sys.path.insert(0, str(REPO / "tests"))
    from batching import build_model as build_mlp

    from support.models import half_plus_two_v1, python_model

    models = {"half_plus_two": workdir / "half_plus_two"}
    half_plus_two_v1(models["half_plus_two"] / "1", 2.0)
    models[PYTHON_MODEL] = workdir / PYTHON_MODEL
    python_model(models[PYTHON_MODEL] / "1", PYTHON_HALF_PLUS_TWO)
    if not quick:
        models[MLP] = workdir / MLP
        build_mlp(models[MLP] / "1")
    return models


def plan(
    models: dict[str, Path], workdir: Path, args: argparse.Namespace, run: Run, mlp: Any
) -> list[Any]:
    """The targets, in the order they run: floors first, then fastserve, then the peers."""
    offered = fastserve_rest_servers()
    installed = [s for s in ("hypercorn", "uvicorn") if importlib.util.find_spec(s)]
    floor_servers = [s for s in installed if not offered or s in offered] or ["hypercorn"]
    if not offered:
        run.skipped.append(
            "fastserve REST on another HTTP server: this fastserve has no --rest_server "
            "(its REST runs on Hypercorn)"
        )
    elif "uvicorn" in offered and "uvicorn" not in installed:
        run.skipped.append("Uvicorn: offered by --rest_server but not installed")
    primary = None
    if offered:
        primary = "uvicorn" if "uvicorn" in offered and "uvicorn" in installed else offered[0]

    def reference(x: np.ndarray) -> np.ndarray:
        signature = mlp.signatures["serving_default"]
        return np.asarray(mlp.run(signature, {"x": x}, ["y"])["y"])

    targets: list[Any] = [GrpcFloor(), GrpcAioFloor(), GrpcppFloor()]
    targets += [StarletteFloor(server) for server in floor_servers]
    for model, base in models.items():
        for batching in (False, True):
            if (args.quick or model == PYTHON_MODEL) and batching and model != "half_plus_two":
                continue
            targets.append(
                Fastserve(
                    model,
                    base,
                    workdir,
                    batching=batching,
                    rest_server=primary,
                    reference=reference if model == MLP else None,
                    platform="python" if model == PYTHON_MODEL else "tensorflow",
                    protocols=("grpc",) if model == PYTHON_MODEL else ("grpc", "rest"),
                )
            )
    for server in floor_servers:
        if offered and server != primary and server in offered:
            # fastserve's REST on each HTTP server, against that server's floor.
            targets.append(
                Fastserve(
                    "half_plus_two",
                    models["half_plus_two"],
                    workdir,
                    batching=False,
                    rest_server=server,
                    protocols=("rest",),
                )
            )
    if args.peers:
        targets += load_peers(models["half_plus_two"])
    run.skipped += [
        "the MLP with payloads other than one row of 512 floats: its input is [-1, 512]",
        "the floors with batching on: they run no model",
    ]
    if args.quick:
        run.skipped.append("--quick: the MLP, 1,000 and 100,000 floats, 64 in flight")
    return targets


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seconds", type=float, default=5.0, help="measured window per cell (default: 5)"
    )
    parser.add_argument(
        "--warmup", type=float, help="warm-up load before each cell (default: 1; --quick: 0)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a reduced matrix for smoke tests: half_plus_two, 1 float, 1 and 16 in flight",
    )
    parser.add_argument(
        "--peers",
        action="store_true",
        help="also measure the peers of benchmarks/peers.py (MLServer, Triton)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy on fastserve during an extra gRPC and REST run at 16 in flight, 1 float",
    )
    parser.add_argument(
        "--payloads", help="comma-separated floats per request (default: 1,1000,100000)"
    )
    parser.add_argument(
        "--concurrencies", help="comma-separated requests in flight (default: 1,16,64)"
    )
    parser.add_argument("--output", type=Path, help="also write the Markdown report here")
    args = parser.parse_args(argv)
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    if args.warmup is None:
        args.warmup = 0.0 if args.quick else 1.0
    try:
        args.payloads = positive_ints(args.payloads) or ((1,) if args.quick else PAYLOADS)
        args.concurrencies = positive_ints(args.concurrencies) or (
            (1, 16) if args.quick else CONCURRENCIES
        )
    except ValueError as error:
        parser.error(f"--payloads and --concurrencies take positive integers: {error}")
    args.inproc_seconds = 0.2 if args.quick else 1.0
    args.plot = args.output.with_suffix(".png") if args.output is not None else None
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.perf_counter()
    machine = machine_description()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for tool in ("h2load", "wrk"):
        try:
            loadgen.require(tool)
        except loadgen.MissingTool as error:
            print(f"serving.py: {error}", file=sys.stderr)
            return 2
    run = Run()
    with tempfile.TemporaryDirectory(prefix="fastserve-serving-") as tmp:
        workdir = Path(tmp)
        models = build_models(workdir, args.quick)
        inproc, mlp = in_process(models, args.inproc_seconds)
        targets = plan(models, workdir, args, run, mlp)
        for target in targets:
            measure_target(target, args, run)
        if args.profile:
            for target in targets:
                if isinstance(target, Fastserve) and target.model != MLP and not target.batching:
                    try:
                        target.start()
                        try:
                            for endpoint in target.endpoints(1):
                                run.profiles.append(
                                    profile_cell(target, endpoint, 1, 16, args.seconds)
                                )
                        finally:
                            target.stop()
                    except Exception as error:
                        run.failures.append(f"--profile: {type(error).__name__}: {error}")
                    break
        if mlp is not None:
            mlp.unload()
    if args.plot is not None and not plot(run, args.plot):
        args.plot = None
    text = report(run, targets, inproc, args, machine, time.perf_counter() - began)
    publish(text, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
