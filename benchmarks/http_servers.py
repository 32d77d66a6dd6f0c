"""REST throughput and latency under Hypercorn and Uvicorn: fastserve against a bare Starlette
floor on the same HTTP server, driven by wrk.

What it measures, for each HTTP server fastserve offers (--rest_server hypercorn, uvicorn):
- the floor: a bare Starlette app that reads the request body and answers a fixed JSON
  (no model, no JSON parsing), served by fastserve's own HTTP server thread
  (`fastserve.frontends.http_server.HttpServerThread`, the same settings fastserve uses) in a
  process of its own;
- fastserve: the real `fastserve` command serving half_plus_two (the TF1 SavedModel built by
  tests/support/models.py `half_plus_two_v1`), or with --model echo a python model (y = x + 1).
Load: wrk (Debian package `wrk`: `apt-get install -y wrk`) with a Lua script posting
`{"instances": [1.0]}` to /v1/models/half_plus_two:predict over keep-alive connections, at 16
and 64 connections (--connections); the generator is fastserve.tune.load's Wrk, the one
`fastserve tune` and the serving benchmark use. Each measurement is a warm-up run, then a run
of --seconds whose requests/s (answered OK) and latency p50/p99 come from wrk's own summary
and latency histogram. Each configuration runs --repeats times (configurations in turn); the
median is reported.

The ratio fastserve / floor on the same HTTP server and connection count is the issue's REST
target (>= 0.8). The CPU used by wrk and by the server over each run is reported (cores =
CPU seconds / run seconds), and wrk's CPU per request gives the rate wrk could drive with a
whole core: the load generator must not be what limits the figures (compare it with the
floor's requests/s, the highest here).

Nothing asserts on timing. Servers and wrk share this machine's CPUs.

    apt-get install -y wrk
    .venv/bin/python benchmarks/http_servers.py                              # about 5 min
    .venv/bin/python benchmarks/http_servers.py --seconds 1 --warmup 0 --repeats 1 \\
        --connections 16 --model echo                                         # smoke test
    .venv/bin/python benchmarks/http_servers.py --output benchmarks/results/http_servers.md
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from common import machine_description, publish

from fastserve.tune.load import Endpoint, MissingTool, Wrk, require, rest_call
from fastserve.tune.processes import LOOPBACK, READY_LINE, ServerProcess, free_port

REPO = Path(__file__).resolve().parent.parent
FASTSERVE = str(Path(sys.executable).with_name("fastserve"))
SERVERS = ("hypercorn", "uvicorn")
MODEL = "half_plus_two"
PATH = f"/v1/models/{MODEL}:predict"
BODY = b'{"instances": [1.0]}'
FLOOR_ANSWER = b'{"predictions": [2.5]}'


# --- the floor: a bare Starlette app on fastserve's HTTP server thread --------------------------


def serve_floor(server: str) -> int:
    """Runs in its own process: the floor app on 127.0.0.1 (a free port, printed) until
    SIGTERM."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from fastserve.frontends.http_server import HttpServerOptions, HttpServerThread

    async def predict(request: Request) -> Response:
        await request.body()
        return Response(FLOOR_ANSWER, media_type="application/json")

    app = Starlette(routes=[Route(PATH, predict, methods=["POST"])])
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    thread = HttpServerThread(
        app, HttpServerOptions("127.0.0.1", 0, server, grace=1.0), on_failure=stopping.set
    )
    print(f"listening on {thread.start()}", flush=True)
    stopping.wait()
    thread.stop(1.0)
    return 0


# --- the servers --------------------------------------------------------------------------------


class Process(ServerProcess):
    """A server process (the floor, or fastserve) whose output is collected; the floor
    prints the port it listens on."""

    def __init__(self, name: str, server: str, args: list[str], ready: str) -> None:
        self.server = server
        self.port = 0
        super().__init__(args, ready=ready, name=f"{name} on {server}", on_line=self._port_from)
        self.name = name

    def endpoint(self) -> Endpoint:
        return Endpoint("rest", LOOPBACK, self.port, PATH, BODY, "application/json")

    def _port_from(self, line: str) -> None:
        found = re.search(r"listening on (\d+)", line)
        if found:
            self.port = int(found.group(1))


def start_floor(server: str) -> Process:
    return Process(
        "bare Starlette floor",
        server,
        [sys.executable, __file__, "--serve-floor", server],
        "listening on",
    )


def start_fastserve(server: str, model_dir: Path, model: str, port: int) -> Process:
    args = [
        FASTSERVE,
        "--host=127.0.0.1",
        "--port=0",
        f"--rest_api_port={port}",
        f"--rest_server={server}",
    ]
    if model == "echo":
        config = model_dir.parent / "echo.config"
        config.write_text(
            "model_config_list {\n  config {\n"
            f'    name: "{MODEL}"\n    base_path: "{model_dir}"\n    model_platform: "python"\n'
            "  }\n}\n"
        )
        args.append(f"--model_config_file={config}")
    else:
        args += [f"--model_name={MODEL}", f"--model_base_path={model_dir}"]
    process = Process("fastserve", server, args, READY_LINE)
    process.port = port
    return process


def build_model(model: str, base: Path) -> Path:
    sys.path.insert(0, str(REPO / "tests"))
    from support import models

    if model == "echo":
        models.echo_model(base / "1", 1.5)  # y = x + 1.5: 2.5 for 1.0, as half_plus_two
    else:
        models.half_plus_two_v1(base / "1")
    return base


def check(process: Process) -> None:
    """One real request; raises unless the answer is half_plus_two's for 1.0."""
    status, body = rest_call(process.endpoint())
    if status != 200 or json.loads(body) != {"predictions": [2.5]}:
        raise RuntimeError(f"{process.name} on {process.server} answered {status}: {body!r}")


# --- wrk ----------------------------------------------------------------------------------------


@dataclass
class Run:
    requests_per_second: float  # answered OK
    p50: float  # seconds
    p99: float
    errors: int  # HTTP statuses >= 400, socket errors and timeouts
    wrk_cpu: float  # cores
    server_cpu: float  # cores
    wrk_cpu_per_request: float  # seconds


def measure(process: Process, connections: int, args: argparse.Namespace) -> Run:
    wrk = Wrk(connections, threads=args.wrk_threads)
    endpoint = process.endpoint()
    if args.warmup > 0:
        wrk.measure(endpoint, args.warmup)
    server0 = process.cpu_seconds()
    began = time.perf_counter()
    load = wrk.measure(endpoint, args.seconds)
    elapsed = time.perf_counter() - began
    server1 = process.cpu_seconds()
    answers = load.requests + load.failed
    return Run(
        requests_per_second=load.throughput,
        p50=load.p50,
        p99=load.p99,
        errors=load.failed,
        wrk_cpu=load.generator_cores,
        server_cpu=(server1 - server0) / elapsed,
        wrk_cpu_per_request=load.generator_cpu / answers if answers else float("nan"),
    )


def median_run(runs: list[Run]) -> Run:
    def mid(values: list[float]) -> float:
        return statistics.median(values)

    return Run(
        requests_per_second=mid([r.requests_per_second for r in runs]),
        p50=mid([r.p50 for r in runs]),
        p99=mid([r.p99 for r in runs]),
        errors=sum(r.errors for r in runs),
        wrk_cpu=mid([r.wrk_cpu for r in runs]),
        server_cpu=mid([r.server_cpu for r in runs]),
        wrk_cpu_per_request=mid([r.wrk_cpu_per_request for r in runs]),
    )


# --- reporting ----------------------------------------------------------------------------------

Key = tuple[str, str, int]  # target, HTTP server, connections


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def report(
    runs: dict[Key, list[Run]], args: argparse.Namespace, machine: list[str], elapsed: float
) -> str:
    results = {key: median_run(value) for key, value in runs.items()}
    model = (
        "half_plus_two (TF1 SavedModel from tests/support/models.py)"
        if args.model == MODEL
        else "a python model answering x + 1.5 (served as half_plus_two)"
    )
    out = [
        "# REST under Hypercorn and Uvicorn: fastserve against a bare Starlette floor",
        "",
        f"Command: `{shlex.join([sys.executable, *sys.argv])}`",
        "",
        *machine,
        f"- wrk: {wrk_version()}, {args.wrk_threads} threads; servers and wrk share the CPUs",
        "",
        f"Load: wrk posting `{BODY.decode()}` to `{PATH}` over keep-alive connections "
        f"(a Lua script), {args.warmup:g} s warm-up then a {args.seconds:g} s run per "
        f"measurement, {args.repeats} run(s) per configuration in turn, median reported. "
        "Floor: a bare Starlette app that reads the body and answers a fixed JSON, on "
        "fastserve's own HTTP server thread (same settings). fastserve: the `fastserve` "
        f"command serving {model}, `--rest_server=SERVER`, other flags at their defaults. "
        "Requests/s: answered OK; latency from wrk's histogram. CPU in cores (CPU seconds / "
        "run seconds).",
        "",
        "| target | HTTP server | connections | requests/s | p50 ms | p99 ms | vs floor | "
        "errors | server CPU | wrk CPU | wrk CPU µs/request |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (target, server, connections), r in results.items():
        floor = results.get(("floor", server, connections))
        ratio = (
            f"{r.requests_per_second / floor.requests_per_second:.2f}x"
            if floor and floor.requests_per_second and target != "floor"
            else "-"
        )
        out.append(
            f"| {target_label(target)} | {server} | {connections} | "
            f"{r.requests_per_second:,.0f} | {ms(r.p50)} | {ms(r.p99)} | {ratio} | {r.errors} | "
            f"{r.server_cpu:.2f} | {r.wrk_cpu:.2f} | {r.wrk_cpu_per_request * 1e6:.1f} |"
        )
    out += ["", "## Ratios from this run", ""]
    out += [
        "| connections | fastserve / floor, Hypercorn | fastserve / floor, Uvicorn | "
        ">= 0.8? (Uvicorn) | Uvicorn / Hypercorn, floor | Uvicorn / Hypercorn, fastserve |",
        "| ---: | ---: | ---: | :---: | ---: | ---: |",
    ]
    for connections in args.connections:
        cells = []
        for server in SERVERS:
            cells.append(_ratio(results, ("fastserve", server, connections), ("floor", server)))
        uvicorn = _value(results, ("fastserve", "uvicorn", connections), ("floor", "uvicorn"))
        met = "-" if uvicorn is None else ("yes" if uvicorn >= 0.8 else "no")
        speedups = [
            _ratio(results, (target, "uvicorn", connections), (target, "hypercorn"))
            for target in ("floor", "fastserve")
        ]
        out.append(
            f"| {connections} | {cells[0]} | {cells[1]} | {met} | " + " | ".join(speedups) + " |"
        )
    out += wrk_headroom(results)
    if args.plot:
        out += ["", f"![requests/s and p99]({args.plot.name})"]
    out += ["", "## All runs (requests/s, p99 ms, in run order)", ""]
    for (target, server, connections), key_runs in runs.items():
        values = ", ".join(f"{r.requests_per_second:,.0f} / {ms(r.p99)}" for r in key_runs)
        out.append(f"- {target_label(target)}, {server}, {connections} connections: {values}")
    out += ["", f"Total time: {elapsed:.1f} s.", ""]
    return "\n".join(out)


def target_label(target: str) -> str:
    return "bare Starlette floor" if target == "floor" else "fastserve"


def _value(results: dict[Key, Run], key: Key, other: tuple[str, str]) -> float | None:
    a = results.get(key)
    b = results.get((other[0], other[1], key[2]))
    if a is None or b is None or not b.requests_per_second:
        return None
    return a.requests_per_second / b.requests_per_second


def _ratio(results: dict[Key, Run], key: Key, other: tuple[str, str]) -> str:
    value = _value(results, key, other)
    return "-" if value is None else f"{value:.2f}"


def wrk_headroom(results: dict[Key, Run]) -> list[str]:
    """Whether wrk limits any figure: its CPU per request, and the rate that allows."""
    lines = ["", "## Is wrk the bottleneck?", ""]
    best = max(results.items(), key=lambda item: item[1].requests_per_second, default=None)
    costs = [r.wrk_cpu_per_request for r in results.values() if r.wrk_cpu_per_request > 0]
    if best is None or not costs:
        return []
    cost = statistics.median(costs)
    (target, server, connections), run = best
    lines.append(
        f"- wrk used a median {cost * 1e6:.1f} µs of CPU per request: about "
        f"{1 / cost:,.0f} requests/s per core of wrk. The highest rate measured here, "
        f"{run.requests_per_second:,.0f} requests/s ({target_label(target)} on {server}, "
        f"{connections} connections), took {run.wrk_cpu:.2f} cores of wrk against "
        f"{run.server_cpu:.2f} of the server"
        + (
            ": the server, not wrk, is what saturates."
            if run.wrk_cpu < 0.5 * run.server_cpu
            else ": wrk's share is not small; these figures may be bounded by wrk too."
        )
    )
    fastest = max(
        (r.requests_per_second for (t, _, _), r in results.items() if t == "fastserve"),
        default=0.0,
    )
    if fastest:
        lines.append(
            f"- wrk drove the floor at {run.requests_per_second / fastest:.1f}x fastserve's "
            f"best rate ({fastest:,.0f} requests/s): the load generator has room above every "
            "fastserve figure."
        )
    return lines


def wrk_version() -> str:
    done = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    first = (done.stdout or done.stderr).strip().splitlines()
    return first[0].split(" [")[0] if first else "wrk"


def plot(runs: dict[Key, list[Run]], connections: list[int], path: Path) -> bool:
    results = {key: median_run(value) for key, value in runs.items()}
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    groups = [(t, s) for t in ("floor", "fastserve") for s in SERVERS]
    width = 0.8 / len(groups)
    for index, (target, server) in enumerate(groups):
        xs = [i + index * width for i in range(len(connections))]
        rates = [
            results[(target, server, c)].requests_per_second
            if (target, server, c) in results
            else 0
            for c in connections
        ]
        p99s = [
            results[(target, server, c)].p99 * 1000 if (target, server, c) in results else 0
            for c in connections
        ]
        label = f"{target_label(target)}, {server}"
        axes[0].bar(xs, rates, width, label=label)
        axes[1].bar(xs, p99s, width, label=label)
    for axis, title, unit in ((axes[0], "throughput", "requests/s"), (axes[1], "p99", "ms")):
        axis.set_xticks([i + 0.4 - width / 2 for i in range(len(connections))])
        axis.set_xticklabels([f"{c} connections" for c in connections])
        axis.set_title(title)
        axis.set_ylabel(unit)
    axes[0].legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


# --- main ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="run per measurement (10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up per measurement (2)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per configuration (3)")
    parser.add_argument(
        "--connections",
        type=lambda text: [int(x) for x in text.split(",")],
        default=[16, 64],
        help="comma-separated wrk connection counts (16,64)",
    )
    parser.add_argument(
        "--model",
        choices=(MODEL, "echo"),
        default=MODEL,
        help="fastserve's model: the half_plus_two SavedModel, or a python echo model",
    )
    parser.add_argument("--wrk-threads", type=int, default=2, help="wrk threads (2)")
    parser.add_argument("--output", type=Path, help="also write the Markdown report here")
    parser.add_argument("--serve-floor", choices=SERVERS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.seconds < 1 or args.repeats < 1 or min(args.connections) < 1:
        parser.error("--seconds must be at least 1 (wrk's unit), --repeats and connections >= 1")
    args.plot = args.output.with_suffix(".png") if args.output is not None else None
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_floor:
        return serve_floor(args.serve_floor)
    try:
        require("wrk")
    except MissingTool as error:
        print(f"http_servers.py needs wrk, the HTTP load generator: {error}", file=sys.stderr)
        return 2
    began = time.perf_counter()
    machine = machine_description()
    runs: dict[Key, list[Run]] = {}
    with tempfile.TemporaryDirectory(prefix="fastserve-http-servers-") as tmp:
        workdir = Path(tmp)
        model_dir = build_model(args.model, workdir / MODEL)
        processes: list[Process] = []
        try:
            for server in SERVERS:
                processes.append(start_floor(server))
                processes.append(start_fastserve(server, model_dir, args.model, free_port()))
            for process in processes:
                process.wait_ready()
                check(process)
            for repeat in range(args.repeats):
                for connections in args.connections:
                    for process in processes:
                        target = "floor" if process.name != "fastserve" else "fastserve"
                        run = measure(process, connections, args)
                        runs.setdefault((target, process.server, connections), []).append(run)
                        print(
                            f"run {repeat + 1}: {target} on {process.server}, {connections} "
                            f"connections: {run.requests_per_second:,.0f} req/s, "
                            f"p99 {ms(run.p99)} ms",
                            file=sys.stderr,
                        )
        finally:
            for process in processes:
                process.stop()
    if args.plot is not None and not plot(runs, args.connections, args.plot):
        args.plot = None
    publish(report(runs, args, machine, time.perf_counter() - began), args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
