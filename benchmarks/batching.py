"""Throughput and latency of the real `fastserve` server with batching off and on.

What it measures: an MLP SavedModel (x [-1, 512] -> 1024 -> 1024 -> 16, ReLU, float32), built
with TensorFlow in a temporary folder, served by the `fastserve` command started as a
subprocess on free loopback ports (`--model_name=mlp --model_base_path=...`), once without
batching and once per batching setting (`--enable_batching --batching_parameters_file=FILE`,
a TF Serving BatchingParameters text proto). For each server, 64 concurrent gRPC clients
(grpc.aio calls of PredictionService/Predict carrying a pre-serialized PredictRequest, one
row per request, each client sending its next request as soon as the previous one is
answered) run in a few client processes: fastserve.tune.load's PythonClients, the generator
`fastserve tune` falls back on. After a warm-up, requests answered inside a fixed window count:
throughput is those / the window, p50 and p99 their latencies as the clients saw them.
The server runs with --grpc_max_threads=64 (--grpc-threads) so that every client's request can
be inside it at once (its default, 4 per CPU, would cap a batch at 8 rows here); one reference
row runs batching off with the default. Two more reference rows serve, under the same name
and signature, a python model that returns zeros: the server's own cost per request, off and
on, without the model's. Each setting runs --repeats times (settings in turn, a fresh server
each time) and the median of each figure is reported.

Clients and server share this machine, so the CPU each used over the window is reported
(cores = CPU seconds / window seconds): the clients' CPU is CPU the server did not get.

The model's own execution time is measured in this process before any server starts: the
SavedModel loaded by fastserve's TensorFlow loader (as the server loads it) and run with
batches of 1 row up to max_batch_size rows, median of many calls. The issue's targets are
reported as ratios from the same run: throughput on / off (target >= 3, issue 11), and
p99 / (batch timeout + 2 x the execution time of a full batch) (target <= 1).

Nothing here asserts on timing: it prints numbers (and counts failed requests).

    .venv/bin/python benchmarks/batching.py                                # about 6 min
    .venv/bin/python benchmarks/batching.py --quick --seconds 1 --repeats 1  # smoke test
    .venv/bin/python benchmarks/batching.py --output benchmarks/results/batching.md
"""

from __future__ import annotations

import argparse
import itertools
import os
import shlex
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from common import machine_description, publish

from fastserve.tune.load import PREDICT_PATH, Endpoint, H2Load, PythonClients
from fastserve.tune.processes import LOOPBACK, FastserveProcess
from fastserve.tune.request import predict_body
from fastserve.tune.search import Candidate

FASTSERVE = str(Path(sys.executable).with_name("fastserve"))
MODEL = "mlp"
LAYERS = (512, 1024, 1024, 16)


@dataclass(frozen=True)
class Setting:
    """One server configuration: batching off (max_batch_size 0) or on with these values."""

    max_batch_size: int = 0
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 100
    num_batch_threads: int = 2
    # A reference: a python servable with the same signature that returns zeros, so that the
    # server's own cost per request (the frontend, and batching's hand-overs) shows alone.
    noop: bool = False
    # The server's --grpc_max_threads for this setting: None = --grpc-threads, 0 = its default.
    grpc_threads: int | None = None

    @property
    def batching(self) -> bool:
        return self.max_batch_size > 0

    @property
    def label(self) -> str:
        if not self.batching:
            label = "batching off"
        else:
            label = (
                f"on: max_batch_size {self.max_batch_size}, timeout "
                f"{self.batch_timeout_micros} µs, {self.num_batch_threads} batch threads"
            )
        if self.grpc_threads == 0:
            label += ", server's default gRPC threads"
        elif self.grpc_threads is not None:
            label += f", {self.grpc_threads} gRPC threads"
        return f"reference, no-op model: {label}" if self.noop else label

    def text_proto(self) -> str:
        """The BatchingParameters file, as `fastserve tune` writes its candidates'."""
        return Candidate(
            self.max_batch_size,
            self.batch_timeout_micros,
            self.num_batch_threads,
            self.max_enqueued_batches,
        ).text_proto()


SETTINGS = [
    Setting(),
    Setting(64, 0),
    Setting(64, 1000),
    Setting(64, 5000),
    Setting(32, 1000),
    Setting(noop=True),
    Setting(64, 1000, noop=True),
    Setting(grpc_threads=0),
]
QUICK_SETTINGS = [Setting(), Setting(64, 1000)]

NOOP_MODEL = f"""\
import numpy as np

from fastserve.servables.python import signature, tensor


@signature(
    inputs={{"x": tensor("float32", [-1, {LAYERS[0]}])}},
    outputs={{"y": tensor("float32", [-1, {LAYERS[-1]}])}},
)
def serving_default(x):
    return {{"y": np.zeros((len(x), {LAYERS[-1]}), np.float32)}}
"""


# --- the model --------------------------------------------------------------------------------


def build_model(export_dir: Path) -> None:
    """The MLP as a TF1 SavedModel tagged "serve": serving_default, x [-1, 512] -> y [-1, 16]."""
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, LAYERS[0]], name="x")
        h = x
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(LAYERS)):
            w = v1.Variable(
                v1.random_normal([fan_in, fan_out], stddev=fan_in**-0.5, seed=i + 1),
                name=f"w{i}",
            )
            b = v1.Variable(tf.zeros([fan_out]), name=f"b{i}")
            h = tf.matmul(h, w) + b
            if i < len(LAYERS) - 2:
                h = tf.nn.relu(h)
        y = tf.identity(h, name="y")
        info = v1.saved_model.utils.build_tensor_info
        signature = v1.saved_model.signature_def_utils.build_signature_def(
            {"x": info(x)},
            {"y": info(y)},
            v1.saved_model.signature_constants.PREDICT_METHOD_NAME,
        )
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(str(export_dir))
            builder.add_meta_graph_and_variables(
                session,
                [v1.saved_model.tag_constants.SERVING],
                signature_def_map={"serving_default": signature},
                strip_default_attrs=True,
            )
            builder.save()


def execution_times(version_dir: Path, rows: list[int], seconds: float) -> dict[int, float]:
    """Median seconds of one call of the model with each batch size, loaded and run as the
    server runs it (fastserve's TensorFlow servable, default session options)."""
    import numpy as np

    from fastserve.servables.base import LoadOptions
    from fastserve.servables.tensorflow import TensorFlowLoader

    servable = TensorFlowLoader().load(str(version_dir), LoadOptions())
    try:
        signature = servable.signatures["serving_default"]
        rng = np.random.default_rng(0)
        times: dict[int, float] = {}
        for n in rows:
            x = rng.standard_normal((n, LAYERS[0]), dtype=np.float32)
            for _ in range(3):
                servable.run(signature, {"x": x}, ["y"])
            samples: list[float] = []
            until = time.perf_counter() + seconds
            while time.perf_counter() < until or len(samples) < 5:
                t0 = time.perf_counter()
                servable.run(signature, {"x": x}, ["y"])
                samples.append(time.perf_counter() - t0)
            times[n] = statistics.median(samples)
        return times
    finally:
        servable.unload()


# --- the server -------------------------------------------------------------------------------


def noop_model(base_path: Path) -> Path:
    """The no-op python model in base_path/1, and a model config file serving it as MLP."""
    version = base_path / "1"
    version.mkdir(parents=True, exist_ok=True)
    (version / "model.py").write_text(NOOP_MODEL)
    config = base_path.parent / "noop_models.config"
    config.write_text(
        "model_config_list {\n  config {\n"
        f'    name: "{MODEL}"\n    base_path: "{base_path}"\n    model_platform: "python"\n'
        "  }\n}\n"
    )
    return config


def start_server(
    base_path: Path, setting: Setting, workdir: Path, grpc_threads: int
) -> FastserveProcess:
    """A `fastserve` process serving the MLP (or the no-op model) with `setting`."""
    if setting.noop:
        flags = [f"--model_config_file={noop_model(workdir / 'noop')}"]
    else:
        flags = [f"--model_name={MODEL}", f"--model_base_path={base_path}"]
    if grpc_threads > 0:
        flags.append(f"--grpc_max_threads={grpc_threads}")
    if setting.batching:
        parameters = workdir / "batching_parameters.txt"
        parameters.write_text(setting.text_proto())
        flags += ["--enable_batching", f"--batching_parameters_file={parameters}"]
    return FastserveProcess(flags, command=[FASTSERVE])


def predict_endpoint(port: int) -> Endpoint:
    """One row of the MLP's input, as a serialized PredictRequest."""
    import numpy as np

    x = np.random.default_rng(1).standard_normal((1, LAYERS[0]), dtype=np.float32)
    body = predict_body(MODEL, "", {"x": x})
    return Endpoint("grpc", LOOPBACK, port, PREDICT_PATH, body)


# --- measuring --------------------------------------------------------------------------------


@dataclass
class Result:
    setting: Setting
    requests: int
    seconds: float
    p50: float
    p99: float
    mean: float
    errors: dict[str, int]
    client_cpu: float  # cores
    server_cpu: float  # cores
    startup: float  # seconds until ready

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds


def combine(runs: list[Result]) -> Result:
    """One row for several runs of a setting: the median of each figure, errors summed."""

    def mid(values: list[float]) -> float:
        return statistics.median(values)

    errors: Counter[str] = Counter()
    for run in runs:
        errors.update(run.errors)
    return Result(
        setting=runs[0].setting,
        requests=round(mid([r.requests / r.seconds for r in runs]) * runs[0].seconds),
        seconds=runs[0].seconds,
        p50=mid([r.p50 for r in runs]),
        p99=mid([r.p99 for r in runs]),
        mean=mid([r.mean for r in runs]),
        errors=dict(errors),
        client_cpu=mid([r.client_cpu for r in runs]),
        server_cpu=mid([r.server_cpu for r in runs]),
        startup=mid([r.startup for r in runs]),
    )


def measure(
    setting: Setting,
    base_path: Path,
    workdir: Path,
    clients: PythonClients | H2Load,
    args: argparse.Namespace,
) -> Result:
    """A fresh server with `setting`, under the clients' load for a warm-up and a window."""
    began = time.monotonic()
    threads = args.grpc_threads if setting.grpc_threads is None else setting.grpc_threads
    server = start_server(base_path, setting, workdir, threads)
    try:
        server.wait_ready()
        startup = time.monotonic() - began
        endpoint = predict_endpoint(server.grpc_port)
        if isinstance(clients, H2Load):
            # h2load measures synchronously: the server's CPU is taken over warm-up and window.
            cpu0, wall0 = server.cpu_seconds(), time.monotonic()
            load = clients.measure(endpoint, args.seconds, args.warmup)
            cpu1, wall1 = server.cpu_seconds(), time.monotonic()
            server_cores = (cpu1 - cpu0) / (wall1 - wall0)
        else:
            start, end = clients.start(endpoint, args.seconds, args.warmup)
            time.sleep(max(0.0, start - time.monotonic()))
            cpu0 = server.cpu_seconds()
            time.sleep(max(0.0, end - time.monotonic()))
            cpu1 = server.cpu_seconds()
            load = clients.result()
            server_cores = (cpu1 - cpu0) / load.seconds
    finally:
        server.stop()
    return Result(
        setting=setting,
        requests=load.requests,
        seconds=load.seconds,
        p50=load.p50,
        p99=load.p99,
        mean=load.mean,
        errors=load.errors,
        client_cpu=load.generator_cores,
        server_cpu=server_cores,
        startup=startup,
    )


# --- reporting --------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def report(
    runs: dict[Setting, list[Result]],
    exec_times: dict[int, float],
    args: argparse.Namespace,
    machine: list[str],
    elapsed: float,
) -> str:
    results = [combine(setting_runs) for setting_runs in runs.values()]
    off = next((r for r in results if r.setting == Setting()), None)
    out = [
        "# Batching: throughput and latency of the fastserve server, batching off and on",
        "",
        f"Command: `{shlex.join([sys.executable, *sys.argv])}`",
        "",
        *machine,
        "- clients and server share this machine's CPUs (see the CPU columns)",
        "",
        f"Model: MLP {' -> '.join(map(str, LAYERS))} (ReLU, float32), a TF1 SavedModel built "
        "by the script; served by the `fastserve` command (gRPC on 127.0.0.1, "
        f"`--model_name={MODEL} --model_base_path=...`"
        + (f" `--grpc_max_threads={args.grpc_threads}`" if args.grpc_threads > 0 else "")
        + "), batching on with `--enable_batching --batching_parameters_file=FILE` "
        "(max_enqueued_batches 100). "
        + (
            f"Load: h2load, {args.clients} closed-loop gRPC requests in flight (a "
            "pre-serialized PredictRequest, 1 row per Predict); server CPU over warm-up and "
            "window. "
            if args.load == "h2load"
            else f"Load: {args.clients} concurrent closed-loop gRPC clients (grpc.aio calls of "
            "PredictionService/Predict with a pre-serialized request, 1 row per Predict) in "
            f"{args.client_processes} client processes. "
        )
        + "Per run: a fresh server, "
        f"{args.warmup:g} s warm-up, then a {args.seconds:g} s window; throughput = "
        "requests answered OK in the window / window; latency as the client saw it (its "
        "send to its answer). CPU = CPU seconds "
        "used in the window / window seconds (2 = both cores busy). Each setting ran "
        f"{args.repeats} time(s), settings in turn; each figure is the median over its runs. "
        "The reference rows serve a python model returning zeros under the same name and "
        "signature: the server's cost per request without the model's.",
        "",
        "## Model execution time, in-process (no server running)",
        "",
        "The SavedModel loaded by fastserve's TensorFlow loader and called with a batch of "
        "N rows, as a batch thread calls it; median of calls over "
        f"{args.exec_seconds:g} s per size.",
        "",
        "| rows | ms per call | µs per row |",
        "| ---: | ---: | ---: |",
    ]
    out += [f"| {n} | {ms(t)} | {t / n * 1e6:,.0f} |" for n, t in sorted(exec_times.items())]
    out += [
        "",
        "## Throughput and latency",
        "",
        "Server CPU per request = server CPU seconds / requests answered.",
        "",
        "| setting | requests/s | vs off | p50 ms | p99 ms | mean ms | errors | "
        "server CPU | server CPU ms/request | client CPU | server start s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        ratio = f"{r.throughput / off.throughput:.2f}x" if off and off.throughput else "-"
        errors = ", ".join(f"{k} {v}" for k, v in sorted(r.errors.items())) or "0"
        out.append(
            f"| {r.setting.label} | {r.throughput:,.0f} | {ratio} | {ms(r.p50)} | {ms(r.p99)} | "
            f"{ms(r.mean)} | {errors} | {r.server_cpu:.2f} | "
            f"{ms(r.server_cpu / r.throughput) if r.throughput else '-'} | "
            f"{r.client_cpu:.2f} | {r.startup:.1f} |"
        )
    out += [
        "",
        "## The issue's targets, as ratios from this run",
        "",
        "Throughput: on / off, target >= 3 (issue 11). Latency: p99 / bound, bound = "
        "batch_timeout + 2 x the execution time of a full batch (max_batch_size rows, "
        "measured above), target <= 1.",
        "",
        "| setting | throughput on / off | >= 3? | bound ms | p99 ms | p99 / bound | <= 1? |",
        "| --- | ---: | :---: | ---: | ---: | ---: | :---: |",
    ]
    for r in results:
        if not r.setting.batching or r.setting.noop:
            continue
        full = exec_times[r.setting.max_batch_size]
        bound = r.setting.batch_timeout_micros / 1e6 + 2 * full
        gain = r.throughput / off.throughput if off and off.throughput else float("nan")
        out.append(
            f"| {r.setting.label} | {gain:.2f} | {'yes' if gain >= 3 else 'no'} | "
            f"{ms(bound)} | {ms(r.p99)} | {r.p99 / bound:.2f} | "
            f"{'yes' if r.p99 <= bound else 'no'} |"
        )
    out += reading(results, off, exec_times, args.clients)
    if args.plot:
        out += ["", f"![throughput and p99]({args.plot.name})"]
    out += ["", "## All runs (requests/s, p99 ms, in run order)", ""]
    for setting, setting_runs in runs.items():
        values = ", ".join(f"{r.throughput:,.0f} / {ms(r.p99)}" for r in setting_runs)
        out.append(f"- {setting.label}: {values}")
    out += ["", f"Total time: {elapsed:.1f} s.", ""]
    return "\n".join(out)


def reading(
    results: list[Result], off: Result | None, exec_times: dict[int, float], clients: int
) -> list[str]:
    """What bounds the targets, computed from this run's figures."""
    out = ["", "What bounds these figures, from this run's numbers:", ""]
    noop = next((r for r in results if r.setting == Setting(noop=True)), None)
    if off is not None and noop is not None and off.throughput and noop.throughput:
        out.append(
            f"- The server with a Python no-op model (batching off) answered "
            f"{noop.throughput:,.0f} requests/s, {noop.throughput / off.throughput:.2f}x the MLP "
            f"with batching off, at {ms(noop.server_cpu / noop.throughput)} ms of server CPU "
            "per request: the cost of a request that takes the Python step (a SavedModel "
            "batched natively never does). The model itself costs "
            f"{ms(exec_times[1])} ms per call "
            f"for 1 row and {ms(exec_times[max(exec_times)] / max(exec_times))} ms per row "
            f"in a batch of {max(exec_times)}."
        )
    batched_noop = next(
        (r for r in results if r.setting.noop and r.setting.batching and r.throughput), None
    )
    if noop is not None and batched_noop is not None and noop.throughput:
        out.append(
            f"- The same no-op model batched (max_batch_size "
            f"{batched_noop.setting.max_batch_size}, timeout "
            f"{batched_noop.setting.batch_timeout_micros} µs) answered "
            f"{batched_noop.throughput:,.0f} requests/s, "
            f"{batched_noop.throughput / noop.throughput:.2f}x its unbatched rate, at "
            f"{ms(batched_noop.server_cpu / batched_noop.throughput)} ms of server CPU per "
            f"request and p99 {ms(batched_noop.p99)} ms: what batching costs a Python servable "
            "(its request is queued in one runner round and answered in a later one; a batch "
            "thread takes the GIL once per batch)."
        )
    best = max(
        (r for r in results if r.setting.batching and not r.setting.noop),
        default=None,
        key=lambda r: r.throughput,
    )
    if best is not None and best.throughput:
        full = exec_times[best.setting.max_batch_size]
        bound = best.setting.batch_timeout_micros / 1e6 + 2 * full
        out.append(
            f"- {clients} closed-loop clients keep {clients} requests in the server, so the "
            f"mean latency is {clients} / throughput (Little's law): "
            f"{ms(clients / best.throughput)} ms at the best setting's "
            f"{best.throughput:,.0f} requests/s (measured mean {ms(best.mean)} ms). A p99 "
            f"within that setting's bound of {ms(bound)} ms needs a mean below it, i.e. at "
            f"least {clients / bound:,.0f} requests/s under this load."
        )
    return out


def plot(runs: dict[Setting, list[Result]], path: Path) -> bool:
    """A PNG of throughput and p99 per setting, if matplotlib is installed."""
    results = [combine(setting_runs) for setting_runs in runs.values()]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    labels = [r.setting.label.replace(", ", "\n").replace("on: ", "on\n") for r in results]
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    left.bar(labels, [r.throughput for r in results])
    left.set_ylabel("requests/s")
    left.set_title("throughput")
    right.bar(labels, [r.p50 * 1000 for r in results], label="p50")
    right.bar(
        labels,
        [(r.p99 - r.p50) * 1000 for r in results],
        bottom=[r.p50 * 1000 for r in results],
        label="p99",
    )
    right.set_ylabel("ms")
    right.set_title("latency")
    right.legend()
    for axis in (left, right):
        axis.tick_params(axis="x", labelsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


# --- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seconds", type=float, default=8.0, help="measured window per run (default: 8)"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs per setting, in turn (default: 3)"
    )
    parser.add_argument(
        "--warmup",
        type=float,
        help="load before the window, per run (default: 2, or --seconds if less)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="only batching off and one setting on (max_batch_size 64, timeout 1000 µs)",
    )
    parser.add_argument("--clients", type=int, default=64, help="concurrent clients (default: 64)")
    parser.add_argument(
        "--load",
        choices=("python", "h2load"),
        default="python",
        help="the load generator: Python grpc.aio clients (default), or h2load (closed loop, "
        "--clients streams in flight; far less CPU per request, so more is left to the server)",
    )
    parser.add_argument(
        "--client-processes", type=int, default=2, help="client processes (default: 2)"
    )
    parser.add_argument(
        "--grpc-threads",
        type=int,
        default=64,
        help="the server's --grpc_max_threads, so that every client's request can be in the "
        "server at once (default: 64; 0 leaves the server's default, 4 per CPU)",
    )
    parser.add_argument("--output", type=Path, help="also write the Markdown report here")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or min(args.clients, args.client_processes, args.repeats) < 1:
        parser.error("--seconds, --clients, --client-processes and --repeats must be positive")
    args.client_processes = min(args.client_processes, args.clients)
    if args.warmup is None:
        args.warmup = min(2.0, args.seconds)
    args.exec_seconds = min(2.0, max(0.2, args.seconds / 10))
    args.plot = None
    if args.output is not None:
        args.plot = args.output.with_suffix(".png")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.perf_counter()
    machine = machine_description()
    settings = QUICK_SETTINGS if args.quick else SETTINGS
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tempfile.TemporaryDirectory(prefix="fastserve-batching-") as tmp:
        workdir = Path(tmp)
        base_path = workdir / MODEL
        build_model(base_path / "1")
        sizes = sorted({1, 8, *(s.max_batch_size for s in settings if s.batching)})
        exec_times = execution_times(base_path / "1", sizes, args.exec_seconds)
        clients: PythonClients | H2Load = (
            H2Load(args.clients)
            if args.load == "h2load"
            else PythonClients(args.clients, args.client_processes)
        )
        runs: dict[Setting, list[Result]] = {setting: [] for setting in settings}
        try:
            for repeat in range(args.repeats):
                for setting in settings:
                    result = measure(setting, base_path, workdir, clients, args)
                    print(
                        f"run {repeat + 1}, {setting.label}: {result.throughput:,.0f} req/s, "
                        f"p50 {ms(result.p50)} ms, p99 {ms(result.p99)} ms",
                        file=sys.stderr,
                    )
                    runs[setting].append(result)
        finally:
            if isinstance(clients, PythonClients):
                clients.close()
    if args.plot is not None and not plot(runs, args.plot):
        args.plot = None
    text = report(runs, exec_times, args, machine, time.perf_counter() - began)
    publish(text, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
