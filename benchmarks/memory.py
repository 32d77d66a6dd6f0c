"""Memory: the server's RSS while a version is loaded and unloaded again and again under load.

What it measures: the `fastserve` command, started as a subprocess on free loopback ports with
`--model_config_file` serving the MLP SavedModel of benchmarks/batching.py (512 -> 1024 ->
1024 -> 16, about 6.4 MB of float32 weights; built in a temporary folder, version 1, and the
same files copied as version 2) under a specific-versions policy. A client thread sends one
gRPC Predict (1 row, to the latest version) every --interval-ms (10 ms by default) for the
whole run. One cycle = a HandleReloadConfigRequest that serves versions {1, 2} (version 2
loads), GetModelStatus polled until version 2 is AVAILABLE, then a HandleReloadConfigRequest
back to {1} (version 2 unloads once its in-flight requests finish), GetModelStatus polled
until version 2 is END. The reload request is the fastest correct way to switch a version:
the server polls its sources at once on a reload, so no --file_system_poll_wait_seconds
interval is waited for.

The server's resident set (VmRSS, with its anonymous and file-backed parts, from
/proc/<pid>/status) is read after a warm-up (the server ready, a few seconds of load and
--warmup-cycles cycles, so that one-time allocations such as TensorFlow's kernels and caches
are in the baseline) and after each cycle. Growth = RSS after the last cycle - RSS after the
warm-up; the issue's target is growth <= 30 MB, reported as growth / 30 MB. A least-squares
slope (MB per cycle) over the cycles shows whether the growth is steady (a leak) or a step.

    .venv/bin/python benchmarks/memory.py                          # 50 cycles, about 2 min
    .venv/bin/python benchmarks/memory.py --cycles 2 --warmup-cycles 1   # smoke test
    .venv/bin/python benchmarks/memory.py --output benchmarks/results/memory.md
"""

from __future__ import annotations

import argparse
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
from dataclasses import dataclass
from pathlib import Path

from batching import LAYERS, build_model
from common import machine_description, publish

READY_LINE = "fastserve is ready"
MODEL = "mlp"
TARGET_MB = 30.0
MB = 1024 * 1024


# --- the server -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def config_text(base_path: Path, versions: list[int]) -> str:
    specific = "".join(f"        versions: {v}\n" for v in versions)
    return (
        "model_config_list {\n  config {\n"
        f'    name: "{MODEL}"\n    base_path: "{base_path}"\n    model_platform: "tensorflow"\n'
        f"    model_version_policy {{\n      specific {{\n{specific}      }}\n    }}\n"
        "  }\n}\n"
    )


class Server:
    """A `fastserve` process; its output is collected."""

    def __init__(self, config: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.args = [
            sys.executable,
            "-m",
            "fastserve",
            "--host=127.0.0.1",
            f"--port={self.port}",
            "--rest_api_port=0",
            f"--model_config_file={config}",
        ]
        self.env = {k: v for k, v in env.items() if k not in os.environ or os.environ[k] != v}
        full = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2", **env)
        self.process = subprocess.Popen(
            self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=full
        )
        self.lines: list[str] = []
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if READY_LINE in line:
                self._ready.set()
        self._ready.set()

    def wait_ready(self, timeout: float = 180.0) -> None:
        if not self._ready.wait(timeout) or self.process.poll() is not None:
            self.stop()
            raise RuntimeError("fastserve did not become ready:\n" + "\n".join(self.lines[-40:]))

    def memory(self) -> dict[str, int]:
        """VmRSS, RssAnon, RssFile (bytes) of the server process now."""
        values: dict[str, int] = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024
        return values

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)


# --- the clients ------------------------------------------------------------------------------


class Load:
    """A thread sending one Predict every `interval` seconds; counts answers and errors."""

    def __init__(self, port: int, interval: float) -> None:
        import grpc
        import numpy as np
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

        self._grpc = grpc
        self._channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self._predict = prediction_service_pb2_grpc.PredictionServiceStub(self._channel).Predict
        self._request = predict_pb2.PredictRequest()
        self._request.model_spec.name = MODEL
        x = np.random.default_rng(1).standard_normal((1, LAYERS[0]), dtype=np.float32)
        self._request.inputs["x"].CopyFrom(tf.make_tensor_proto(x))
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
    """HandleReloadConfigRequest and GetModelStatus through TF Serving's stubs."""

    def __init__(self, port: int, base_path: Path) -> None:
        import grpc
        from tensorflow_serving.apis import model_service_pb2_grpc

        self._channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self._stub = model_service_pb2_grpc.ModelServiceStub(self._channel)
        self._base_path = base_path

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


def cycle(control: Control) -> tuple[float, float]:
    control.serve([1, 2])
    loaded = control.wait_for(2, "AVAILABLE")
    control.serve([1])
    unloaded = control.wait_for(2, "END")
    return loaded, unloaded


def run(args: argparse.Namespace, workdir: Path) -> tuple[list[Sample], Load, Server]:
    base_path = workdir / MODEL
    build_model(base_path / "1")
    shutil.copytree(base_path / "1", base_path / "2")
    config = workdir / "models.config"
    config.write_text(config_text(base_path, [1]))
    env: dict[str, str] = {}
    if args.malloc_arena_max:
        env["MALLOC_ARENA_MAX"] = str(args.malloc_arena_max)
    server = Server(config, env)
    samples: list[Sample] = []
    load: Load | None = None
    try:
        server.wait_ready()
        load = Load(server.port, args.interval_ms / 1000)
        control = Control(server.port, base_path)
        time.sleep(args.warmup_seconds)
        for _ in range(args.warmup_cycles):
            cycle(control)
        samples.append(Sample(0, server.memory(), 0.0, 0.0))
        for index in range(1, args.cycles + 1):
            loaded, unloaded = cycle(control)
            samples.append(Sample(index, server.memory(), loaded, unloaded))
            print(
                f"cycle {index}: RSS {samples[-1].memory['VmRSS'] / MB:.1f} MB",
                file=sys.stderr,
            )
        control.close()
    finally:
        if load is not None:
            load.stop()
        server.stop()
    assert load is not None
    return samples, load, server


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


def report(
    samples: list[Sample],
    load: Load,
    server: Server,
    args: argparse.Namespace,
    machine: list[str],
    elapsed: float,
) -> str:
    base, last = samples[0].memory, samples[-1].memory
    growth = (last["VmRSS"] - base["VmRSS"]) / MB
    peak = max(s.memory["VmRSS"] for s in samples)
    per_cycle = slope(samples)
    errors = ", ".join(f"{k} {v}" for k, v in sorted(load.errors.items())) or "0"
    env = " ".join(f"{k}={v}" for k, v in server.env.items())
    out = [
        "# Memory: RSS of the fastserve server over version load/unload cycles under load",
        "",
        f"Command: `{shlex.join([sys.executable, *sys.argv])}`",
        "",
        *machine,
        "",
        f"Server: `{(env + ' ') if env else ''}{shlex.join(server.args)}` serving the MLP "
        f"SavedModel ({' -> '.join(map(str, LAYERS))}, float32, about 6.4 MB of weights) "
        "with a specific-versions policy. Load: one gRPC Predict (1 row, latest version) "
        f"every {args.interval_ms:g} ms from a client thread, all run long "
        f"({load.answered:,} answered, {load.rate:.0f} requests/s on average, errors: "
        f"{errors}). One cycle: "
        "HandleReloadConfigRequest serving versions {1, 2}, GetModelStatus polled until "
        "version 2 is AVAILABLE, HandleReloadConfigRequest back to {1}, GetModelStatus "
        "polled until version 2 is END. Warm-up before the baseline: "
        f"{args.warmup_seconds:g} s of load and {args.warmup_cycles} cycle(s). RSS from "
        "/proc/<pid>/status.",
        "",
        "| | value |",
        "| --- | ---: |",
        f"| RSS after the warm-up | {base['VmRSS'] / MB:.1f} MB |",
        f"| RSS after cycle {samples[-1].cycle} | {last['VmRSS'] / MB:.1f} MB |",
        f"| growth over {samples[-1].cycle} cycles | {growth:+.1f} MB |",
        f"| growth / target ({TARGET_MB:g} MB) | {growth / TARGET_MB:.2f} "
        f"({'met' if growth <= TARGET_MB else 'missed'}) |",
        f"| highest RSS seen | {peak / MB:.1f} MB |",
        f"| slope over the cycles | {per_cycle:+.2f} MB/cycle |",
        f"| anonymous RSS: warm-up -> last | {base['RssAnon'] / MB:.1f} -> "
        f"{last['RssAnon'] / MB:.1f} MB |",
        f"| file-backed RSS: warm-up -> last | {base['RssFile'] / MB:.1f} -> "
        f"{last['RssFile'] / MB:.1f} MB |",
    ]
    timed = [s for s in samples if s.cycle > 0]
    if timed:
        loads = sorted(s.load_seconds for s in timed)
        unloads = sorted(s.unload_seconds for s in timed)
        out.append(
            f"| median time to AVAILABLE / to END | {loads[len(loads) // 2] * 1e3:.0f} ms / "
            f"{unloads[len(unloads) // 2] * 1e3:.0f} ms |"
        )
    if args.plot:
        out += ["", f"![RSS per cycle]({args.plot.name})"]
    out += ["", "## RSS after each cycle (MB)", "", "| cycle | VmRSS | RssAnon | RssFile |"]
    out.append("| ---: | ---: | ---: | ---: |")
    for s in samples:
        m = s.memory
        out.append(
            f"| {s.cycle or 'warm-up'} | {m['VmRSS'] / MB:.1f} | {m['RssAnon'] / MB:.1f} | "
            f"{m['RssFile'] / MB:.1f} |"
        )
    out += ["", f"Total time: {elapsed:.1f} s.", ""]
    return "\n".join(out)


def plot(samples: list[Sample], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, axis = plt.subplots(figsize=(8, 4.5))
    cycles = [s.cycle for s in samples]
    axis.plot(cycles, [s.memory["VmRSS"] / MB for s in samples], marker=".", label="VmRSS")
    axis.plot(cycles, [s.memory["RssAnon"] / MB for s in samples], marker=".", label="RssAnon")
    base = samples[0].memory["VmRSS"] / MB
    axis.axhline(base + TARGET_MB, color="grey", linestyle="--", label="warm-up + 30 MB target")
    axis.set_xlabel("cycle (0 = after the warm-up)")
    axis.set_ylabel("MB")
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
    parser.add_argument("--output", type=Path, help="also write the Markdown report here")
    args = parser.parse_args(argv)
    if args.cycles < 1 or args.warmup_cycles < 0:
        parser.error("--cycles must be positive")
    args.plot = args.output.with_suffix(".png") if args.output is not None else None
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.perf_counter()
    machine = machine_description()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tempfile.TemporaryDirectory(prefix="fastserve-memory-") as tmp:
        samples, load, server = run(args, Path(tmp))
    if args.plot is not None and not plot(samples, args.plot):
        args.plot = None
    publish(report(samples, load, server, args, machine, time.perf_counter() - began), args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
