"""Memory: the server's RSS while a version is loaded and unloaded again and again under load,
with batching off and on.

What it measures: the `fastserve` command, started as a subprocess on free loopback ports with
`--model_config_file` serving the MLP SavedModel of benchmarks/batching.py (512 -> 1024 ->
1024 -> 16, about 6.4 MB of float32 weights; built in a temporary folder, version 1, and the
same files copied as version 2) under a specific-versions policy; once unbatched, and once
batched (`--enable_batching --batching_parameters_file=...`: each version gets its own batch
queue, which must go with it), each on a server of its own. A client thread sends one gRPC
Predict (1 row, to the latest version) every --interval-ms (10 ms by default) for the whole
run. One cycle = a HandleReloadConfigRequest that serves versions {1, 2} (version 2 loads),
GetModelStatus polled until version 2 is AVAILABLE, one Predict to version 2 (so that it has
served, and batched has made its queue, in every cycle), then a HandleReloadConfigRequest back
to {1} (version 2 unloads once its in-flight requests finish), GetModelStatus polled until
version 2 is END. The reload request is the fastest correct way to switch a version: the
server polls its sources at once on a reload, so no --file_system_poll_wait_seconds interval
is waited for.

The server's resident set (VmRSS, with its anonymous and file-backed parts, from
/proc/<pid>/status) is read after a warm-up (the server ready, a few seconds of load and
--warmup-cycles cycles, so that one-time allocations such as TensorFlow's kernels and caches
are in the baseline) and after each cycle. Growth = RSS after the last cycle - RSS after the
warm-up; the issue's target is growth <= 30 MB, for the unbatched and the batched cycles
alike, reported as growth / 30 MB. A least-squares slope (MB per cycle) over the cycles shows
whether the growth is steady (a leak) or a step.

    .venv/bin/python benchmarks/memory.py                          # 2 x 50 cycles, about 4 min
    .venv/bin/python benchmarks/memory.py --cycles 2 --warmup-cycles 1   # smoke test
    .venv/bin/python benchmarks/memory.py --modes batched          # only the batched cycles
    .venv/bin/python benchmarks/memory.py --output benchmarks/results/memory.md
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batching import LAYERS, build_model
from common import machine_description, publish

from fastserve.tune.processes import FastserveProcess

MODEL = "mlp"
TARGET_MB = 30.0
MB = 1024 * 1024


# --- the server -------------------------------------------------------------------------------

MODES = ("unbatched", "batched")
# Batches of up to 8 rows, no waiting: the load is light; what matters is that each version
# gets a batch queue.
BATCHING_PARAMETERS = (
    "max_batch_size { value: 8 }\nbatch_timeout_micros { value: 0 }\n"
    "max_enqueued_batches { value: 100 }\nnum_batch_threads { value: 2 }\n"
)


def config_text(base_path: Path, versions: list[int]) -> str:
    specific = "".join(f"        versions: {v}\n" for v in versions)
    return (
        "model_config_list {\n  config {\n"
        f'    name: "{MODEL}"\n    base_path: "{base_path}"\n    model_platform: "tensorflow"\n'
        f"    model_version_policy {{\n      specific {{\n{specific}      }}\n    }}\n"
        "  }\n}\n"
    )


def memory(pid: int) -> dict[str, int]:
    """VmRSS, RssAnon, RssFile, VmHWM (bytes) of a process now."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            values[key] = int(rest.split()[0]) * 1024
    return values


def predict_request(version: int | None = None) -> Any:
    """A PredictRequest of one row for the MLP (its latest version, or `version`)."""
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    if version is not None:
        request.model_spec.version.value = version
    x = np.random.default_rng(1).standard_normal((1, LAYERS[0]), dtype=np.float32)
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(x))
    return request


# --- the clients ------------------------------------------------------------------------------


class Load:
    """A thread sending one Predict every `interval` seconds; counts answers and errors."""

    def __init__(self, target: str, interval: float) -> None:
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        self._grpc = grpc
        self._channel = grpc.insecure_channel(target)
        self._predict = prediction_service_pb2_grpc.PredictionServiceStub(self._channel).Predict
        self._request = predict_request()
        self._interval = interval
        self.answered = 0
        self.began = time.monotonic()
        self.ended = self.began
        self.errors: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._predict(self._request, timeout=30)
                self.answered += 1
            except self._grpc.RpcError as error:
                name = error.code().name
                self.errors[name] = self.errors.get(name, 0) + 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)
        self.ended = time.monotonic()
        self._channel.close()

    @property
    def rate(self) -> float:
        return self.answered / max(1e-9, self.ended - self.began)


class Control:
    """HandleReloadConfigRequest and GetModelStatus through TF Serving's stubs, and a Predict
    to a given version."""

    def __init__(self, target: str, base_path: Path) -> None:
        import grpc
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        self._channel = grpc.insecure_channel(target)
        self._stub = model_service_pb2_grpc.ModelServiceStub(self._channel)
        self._prediction = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._base_path = base_path

    def predict(self, version: int) -> None:
        self._prediction.Predict(predict_request(version), timeout=60)

    def serve(self, versions: list[int]) -> None:
        from google.protobuf import text_format
        from tensorflow_serving.apis import model_management_pb2
        from tensorflow_serving.config import model_server_config_pb2

        request = model_management_pb2.ReloadConfigRequest()
        config = model_server_config_pb2.ModelServerConfig()
        text_format.Parse(config_text(self._base_path, versions), config)
        request.config.CopyFrom(config)
        response = self._stub.HandleReloadConfigRequest(request, timeout=120)
        if response.status.error_code != 0:
            raise RuntimeError(f"reload failed: {response.status.error_message}")

    def wait_for(self, version: int, state: str, timeout: float = 120.0) -> float:
        """Polls GetModelStatus until `version` is in `state`; returns the seconds waited."""
        from tensorflow_serving.apis import get_model_status_pb2

        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = MODEL
        request.model_spec.version.value = version
        began = time.monotonic()
        while True:
            try:
                response = self._stub.GetModelStatus(request, timeout=30)
                states = [
                    get_model_status_pb2.ModelVersionStatus.State.Name(s.state)
                    for s in response.model_version_status
                ]
            except Exception:  # NOT_FOUND before the version is known
                states = []
            if state in states:
                return time.monotonic() - began
            if time.monotonic() - began > timeout:
                raise RuntimeError(f"version {version} did not reach {state}: {states}")
            time.sleep(0.005)

    def close(self) -> None:
        self._channel.close()


# --- the run ----------------------------------------------------------------------------------


@dataclass
class Sample:
    cycle: int  # 0: after the warm-up
    memory: dict[str, int]
    load_seconds: float
    unload_seconds: float


@dataclass
class ModeRun:
    """The cycles of one server: unbatched or batched."""

    mode: str
    command: str  # the server's environment (what differs) and command line
    samples: list[Sample]
    load: Load


def cycle(control: Control) -> tuple[float, float]:
    control.serve([1, 2])
    loaded = control.wait_for(2, "AVAILABLE")
    control.predict(2)
    control.serve([1])
    unloaded = control.wait_for(2, "END")
    return loaded, unloaded


def build(workdir: Path) -> Path:
    """The MLP as versions 1 and 2 (its base path), and workdir/models.config serving 1."""
    base_path = workdir / MODEL
    build_model(base_path / "1")
    shutil.copytree(base_path / "1", base_path / "2")
    (workdir / "models.config").write_text(config_text(base_path, [1]))
    return base_path


def run(mode: str, args: argparse.Namespace, workdir: Path, base_path: Path) -> ModeRun:
    """A fresh server in `mode`: warm-up, baseline, then --cycles cycles, RSS after each."""
    flags = [f"--model_config_file={workdir / 'models.config'}"]
    if mode == "batched":
        parameters = workdir / "batching_parameters.txt"
        parameters.write_text(BATCHING_PARAMETERS)
        flags += ["--enable_batching", f"--batching_parameters_file={parameters}"]
    env: dict[str, str] = {}
    if args.malloc_arena_max:
        env["MALLOC_ARENA_MAX"] = str(args.malloc_arena_max)
    server = FastserveProcess(flags, env=env, name=f"fastserve ({mode})")
    samples: list[Sample] = []
    load: Load | None = None
    try:
        server.wait_ready()
        load = Load(server.target, args.interval_ms / 1000)
        control = Control(server.target, base_path)
        time.sleep(args.warmup_seconds)
        for _ in range(args.warmup_cycles):
            cycle(control)
        samples.append(Sample(0, memory(server.pid), 0.0, 0.0))
        for index in range(1, args.cycles + 1):
            loaded, unloaded = cycle(control)
            samples.append(Sample(index, memory(server.pid), loaded, unloaded))
            print(
                f"{mode} cycle {index}: RSS {samples[-1].memory['VmRSS'] / MB:.1f} MB",
                file=sys.stderr,
            )
        control.close()
    finally:
        if load is not None:
            load.stop()
        server.stop()
    assert load is not None
    prefix = " ".join(f"{k}={v}" for k, v in env.items())
    command = f"{prefix} {shlex.join(server.args)}".strip()
    return ModeRun(mode, command, samples, load)


def slope(samples: list[Sample]) -> float:
    """Least-squares MB per cycle of VmRSS over the cycles (not the warm-up sample)."""
    points = [(s.cycle, s.memory["VmRSS"] / MB) for s in samples if s.cycle > 0]
    if len(points) < 2:
        return float("nan")
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var


def growth(samples: list[Sample]) -> float:
    """MB of VmRSS after the last cycle over the warm-up's."""
    return (samples[-1].memory["VmRSS"] - samples[0].memory["VmRSS"]) / MB


def summary_rows(runs: list[ModeRun]) -> list[str]:
    """The figures of each mode, a column each."""

    def row(label: str, cell: Callable[[ModeRun], str]) -> str:
        return f"| {label} | " + " | ".join(cell(r) for r in runs) + " |"

    def mb(value: int) -> str:
        return f"{value / MB:.1f}"

    def median_ms(values: list[float]) -> str:
        return f"{sorted(values)[len(values) // 2] * 1e3:.0f} ms" if values else "-"

    cycles = runs[0].samples[-1].cycle
    out = [
        "| | " + " | ".join(r.mode for r in runs) + " |",
        "| --- |" + " ---: |" * len(runs),
        row("RSS after the warm-up", lambda r: f"{mb(r.samples[0].memory['VmRSS'])} MB"),
        row(f"RSS after cycle {cycles}", lambda r: f"{mb(r.samples[-1].memory['VmRSS'])} MB"),
        row(f"growth over {cycles} cycles", lambda r: f"{growth(r.samples):+.1f} MB"),
        row(
            f"growth / target ({TARGET_MB:g} MB)",
            lambda r: (
                f"{growth(r.samples) / TARGET_MB:.2f} "
                f"({'met' if growth(r.samples) <= TARGET_MB else 'missed'})"
            ),
        ),
        row(
            "highest RSS seen",
            lambda r: f"{mb(max(s.memory['VmRSS'] for s in r.samples))} MB",
        ),
        row("slope over the cycles", lambda r: f"{slope(r.samples):+.2f} MB/cycle"),
    ]
    for part, name in (("RssAnon", "anonymous"), ("RssFile", "file-backed")):
        out.append(
            row(
                f"{name} RSS: warm-up -> last",
                lambda r, part=part: (
                    f"{mb(r.samples[0].memory[part])} -> {mb(r.samples[-1].memory[part])} MB"
                ),
            )
        )
    out.append(
        row(
            "median time to AVAILABLE / to END",
            lambda r: (
                median_ms([s.load_seconds for s in r.samples if s.cycle])
                + " / "
                + median_ms([s.unload_seconds for s in r.samples if s.cycle])
            ),
        )
    )
    out.append(
        row(
            "load: answered, requests/s, errors",
            lambda r: (
                f"{r.load.answered:,}, {r.load.rate:.0f}, "
                + (", ".join(f"{k} {v}" for k, v in sorted(r.load.errors.items())) or "0")
            ),
        )
    )
    return out


def report(
    runs: list[ModeRun], args: argparse.Namespace, machine: list[str], elapsed: float
) -> str:
    out = [
        "# Memory: RSS of the fastserve server over version load/unload cycles under load",
        "",
        f"Command: `{shlex.join([sys.executable, *sys.argv])}`",
        "",
        *machine,
        "",
        "Servers, one per mode (ports and temporary paths vary):",
        "",
        *[f"- {r.mode}: `{r.command}`" for r in runs],
        "",
        f"Each serves the MLP SavedModel ({' -> '.join(map(str, LAYERS))}, float32, about "
        "6.4 MB of weights) with a specific-versions policy; batched with the batching "
        f"parameters `{' '.join(BATCHING_PARAMETERS.split())}`. Load: one gRPC Predict (1 row, "
        f"latest version) every {args.interval_ms:g} ms from a client thread, all run long. "
        "One cycle: HandleReloadConfigRequest serving versions {1, 2}, GetModelStatus polled "
        "until version 2 is AVAILABLE, one Predict to version 2, HandleReloadConfigRequest "
        "back to {1}, GetModelStatus polled until version 2 is END. Warm-up before the "
        f"baseline: {args.warmup_seconds:g} s of load and {args.warmup_cycles} cycle(s). RSS "
        "from /proc/<pid>/status. The target applies to each mode.",
        "",
        *summary_rows(runs),
    ]
    if args.plot:
        out += ["", f"![RSS per cycle]({args.plot.name})"]
    out += [
        "",
        "## RSS after each cycle (MB)",
        "",
        "| cycle | " + " | ".join(f"{r.mode} VmRSS | RssAnon | RssFile" for r in runs) + " |",
        "| ---: |" + " ---: | ---: | ---: |" * len(runs),
    ]
    for index, first in enumerate(runs[0].samples):
        cells = []
        for r in runs:
            m = r.samples[index].memory
            cells += [f"{m[k] / MB:.1f}" for k in ("VmRSS", "RssAnon", "RssFile")]
        out.append(f"| {first.cycle or 'warm-up'} | " + " | ".join(cells) + " |")
    out += ["", f"Total time: {elapsed:.1f} s.", ""]
    return "\n".join(out)


def plot(runs: list[ModeRun], path: Path) -> bool:
    """RSS growth since the warm-up per cycle, a line per mode, against the target."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, axis = plt.subplots(figsize=(8, 4.5))
    for r in runs:
        color = {"unbatched": "tab:blue", "batched": "tab:orange"}[r.mode]
        cycles = [s.cycle for s in r.samples]
        for part, style in (("VmRSS", "-"), ("RssAnon", ":")):
            base = r.samples[0].memory[part]
            axis.plot(
                cycles,
                [(s.memory[part] - base) / MB for s in r.samples],
                color=color,
                linestyle=style,
                marker=".",
                label=f"{r.mode}: {part}",
            )
    axis.xaxis.get_major_locator().set_params(integer=True)
    axis.axhline(TARGET_MB, color="grey", linestyle="--", label=f"target: +{TARGET_MB:g} MB")
    axis.set_xlabel("cycle (0 = after the warm-up)")
    axis.set_ylabel("MB since the warm-up")
    axis.set_title("fastserve RSS over version load/unload cycles")
    axis.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=50, help="measured cycles (default: 50)")
    parser.add_argument(
        "--warmup-cycles", type=int, default=2, help="cycles before the baseline (default: 2)"
    )
    parser.add_argument(
        "--warmup-seconds", type=float, default=3.0, help="load before the baseline (default: 3)"
    )
    parser.add_argument(
        "--interval-ms", type=float, default=10.0, help="ms between requests (default: 10)"
    )
    parser.add_argument(
        "--malloc-arena-max",
        type=int,
        default=0,
        help="run the server with MALLOC_ARENA_MAX set to this (default: glibc's own)",
    )
    parser.add_argument(
        "--modes",
        default=",".join(MODES),
        help=f"comma-separated, each on a server of its own (default: {','.join(MODES)})",
    )
    parser.add_argument("--output", type=Path, help="also write the Markdown report here")
    args = parser.parse_args(argv)
    if args.cycles < 1 or args.warmup_cycles < 0:
        parser.error("--cycles must be positive")
    args.modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    if not args.modes or set(args.modes) - set(MODES):
        parser.error(f"--modes: one or more of {', '.join(MODES)}")
    args.plot = args.output.with_suffix(".png") if args.output is not None else None
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.perf_counter()
    machine = machine_description()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tempfile.TemporaryDirectory(prefix="fastserve-memory-") as tmp:
        workdir = Path(tmp)
        base_path = build(workdir)
        runs = [run(mode, args, workdir, base_path) for mode in args.modes]
    if args.plot is not None and not plot(runs, args.plot):
        args.plot = None
    publish(report(runs, args, machine, time.perf_counter() - began), args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
