"""The peers fastserve is measured against in the same run, as benchmark Targets.

- Seldon MLServer (`mlserver start`), a custom runtime (peer_runtimes/mlserver_runtime.py);
- NVIDIA Triton through nvidia-pytriton (its bundled tritonserver, Python backend), a bound
  Python function (peer_runtimes/triton_server.py), Triton's batching off.

Both serve the same half_plus_two SavedModel (y = 0.5 * x + 2) as the model "half_plus_two",
called the way fastserve calls it (peer_runtimes/half_plus_two_session.py: a TF1 session and a
callable from CallableOptions), bound to 127.0.0.1 on free ports, and speak the V2 (KServe)
inference protocol: gRPC `inference.GRPCInferenceService/ModelInfer` and REST
`POST /v2/models/half_plus_two/infer`. Each peer runs from its own virtualenv under
benchmarks/.venvs/, which `bash benchmarks/setup_peers.sh` installs from PyPI (about 2 GB a
peer; nothing is fetched when they run).

The gRPC request body is a V2 ModelInferRequest built here from the V2 proto's field numbers
(this process is fastserve's; the peers' venvs are not importable from it), with x in
contents.fp32_contents, which both peers accept.

    bash benchmarks/setup_peers.sh                      # once
    .venv/bin/python benchmarks/peers.py --check        # start each peer, check 1 and 1,000
                                                        # floats over REST and gRPC, stop it
    .venv/bin/python benchmarks/peers.py --check --smoke 3   # plus a short, noisy h2load/wrk run

The serving benchmark uses `make_targets(model_dir)` when run with --peers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from targets import Target

from fastserve.tune.load import Endpoint, LoadError, drive
from fastserve.tune.processes import free_port

HERE = Path(__file__).resolve().parent
VENVS = HERE / ".venvs"
RUNTIMES = HERE / "peer_runtimes"
SETUP = HERE / "setup_peers.sh"
MODEL = "half_plus_two"
HOST = "127.0.0.1"
INFER_PATH = "/inference.GRPCInferenceService/ModelInfer"
READY_TIMEOUT = 240.0


class PeerNotInstalled(RuntimeError):
    """A peer's virtualenv is missing: run benchmarks/setup_peers.sh."""


# --- V2 inference protocol messages (KServe grpc_service.proto, package "inference") --------


@cache
def _v2_messages() -> tuple[type, type]:
    """ModelInferRequest and ModelInferResponse, built from their field numbers (the fields
    the benchmark uses; a parser keeps the rest as unknown fields)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    f = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="fastserve_bench/v2_inference.proto", package="inference", syntax="proto3"
    )
    contents = file.message_type.add(name="InferTensorContents")
    for name, number, kind in [
        ("bool_contents", 1, f.TYPE_BOOL),
        ("int_contents", 2, f.TYPE_INT32),
        ("int64_contents", 3, f.TYPE_INT64),
        ("uint_contents", 4, f.TYPE_UINT32),
        ("uint64_contents", 5, f.TYPE_UINT64),
        ("fp32_contents", 6, f.TYPE_FLOAT),
        ("fp64_contents", 7, f.TYPE_DOUBLE),
        ("bytes_contents", 8, f.TYPE_BYTES),
    ]:
        contents.field.add(name=name, number=number, type=kind, label=f.LABEL_REPEATED)

    def tensor(parent: Any, name: str) -> None:
        message = parent.nested_type.add(name=name)
        message.field.add(name="name", number=1, type=f.TYPE_STRING, label=f.LABEL_OPTIONAL)
        message.field.add(name="datatype", number=2, type=f.TYPE_STRING, label=f.LABEL_OPTIONAL)
        message.field.add(name="shape", number=3, type=f.TYPE_INT64, label=f.LABEL_REPEATED)
        message.field.add(
            name="contents",
            number=5,
            type=f.TYPE_MESSAGE,
            label=f.LABEL_OPTIONAL,
            type_name=".inference.InferTensorContents",
        )

    for message_name, tensor_name, tensors, raw, raw_number in [
        ("ModelInferRequest", "InferInputTensor", "inputs", "raw_input_contents", 7),
        ("ModelInferResponse", "InferOutputTensor", "outputs", "raw_output_contents", 6),
    ]:
        message = file.message_type.add(name=message_name)
        for name, number in [("model_name", 1), ("model_version", 2), ("id", 3)]:
            message.field.add(name=name, number=number, type=f.TYPE_STRING, label=f.LABEL_OPTIONAL)
        tensor(message, tensor_name)
        message.field.add(
            name=tensors,
            number=5,
            type=f.TYPE_MESSAGE,
            label=f.LABEL_REPEATED,
            type_name=f".inference.{message_name}.{tensor_name}",
        )
        message.field.add(name=raw, number=raw_number, type=f.TYPE_BYTES, label=f.LABEL_REPEATED)
    pool = descriptor_pool.DescriptorPool()  # our own: no clash with any other V2 protos
    pool.Add(file)
    request = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("inference.ModelInferRequest")
    )
    response = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("inference.ModelInferResponse")
    )
    return request, response


def values(floats: int) -> np.ndarray:
    """The x sent: `floats` float32 values, exact in binary and short in JSON."""
    return (np.arange(floats) % 100 * 0.25).astype(np.float32)


def v2_grpc_request(floats: int) -> bytes:
    return v2_grpc_message(MODEL, "x", values(floats))


def v2_grpc_message(model: str, name: str, x: np.ndarray) -> bytes:
    """A serialized ModelInferRequest for `model` with one FP32 input `name` = x (any shape),
    its values in contents.fp32_contents."""
    request_class, _ = _v2_messages()
    request = request_class(model_name=model)
    tensor = request.inputs.add(name=name, datatype="FP32", shape=list(x.shape))
    tensor.contents.fp32_contents.extend(np.asarray(x, np.float32).reshape(-1).tolist())
    return bytes(request.SerializeToString())


def v2_grpc_response(data: bytes) -> tuple[str, list[int], np.ndarray]:
    """(name, shape, values) of the first output of a serialized ModelInferResponse."""
    _, response_class = _v2_messages()
    response = response_class.FromString(data)
    if not response.outputs:
        raise AssertionError(f"ModelInferResponse without outputs: {response}")
    output = response.outputs[0]
    if output.datatype != "FP32":
        raise AssertionError(f"output {output.name!r} is {output.datatype}, not FP32")
    if response.raw_output_contents:
        y = np.frombuffer(response.raw_output_contents[0], dtype="<f4")
    else:
        y = np.asarray(output.contents.fp32_contents, dtype=np.float32)
    return output.name, list(output.shape), y


def v2_rest_body(floats: int) -> bytes:
    return v2_rest_json("x", values(floats))


def v2_rest_json(name: str, x: np.ndarray) -> bytes:
    """A V2 REST inference request with one FP32 input `name` = x (any shape), its data flat."""
    data = np.asarray(x, np.float32).reshape(-1).tolist()
    inputs = [{"name": name, "shape": list(x.shape), "datatype": "FP32", "data": data}]
    return json.dumps({"inputs": inputs}, separators=(",", ":")).encode()


def verify(source: str, floats: int, name: str, shape: list[int], y: np.ndarray) -> None:
    expected = 0.5 * values(floats) + 2.0
    if name != "y" or shape != [floats] or y.shape != expected.shape:
        raise AssertionError(
            f"{source}: expected output y of shape [{floats}], got {name!r} of shape {shape} "
            f"with {y.size} values"
        )
    if not np.allclose(y, expected, rtol=1e-6, atol=1e-6):
        wrong = int(np.argmax(~np.isclose(y, expected, rtol=1e-6, atol=1e-6)))
        raise AssertionError(
            f"{source}: y[{wrong}] = {y[wrong]}, expected 0.5 * {values(floats)[wrong]} + 2"
        )


# --- Processes ------------------------------------------------------------------------------


def http(method: str, url: str, body: bytes | None = None, timeout: float = 30.0) -> bytes:
    request = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return bytes(response.read())


def installed_version(venv: Path, distribution: str) -> str:
    """A distribution's version in a venv, from its dist-info folder (without running it)."""
    normalized = distribution.replace("-", "_").lower()
    for folder in venv.glob("lib/python3*/site-packages/*.dist-info"):
        name, _, version = folder.name[: -len(".dist-info")].partition("-")
        if name.lower() == normalized:
            return version
    return "?"


class PeerTarget:
    """A peer server run as a subprocess of its own venv, in its own process group."""

    name = "peer"
    venv_name = ""
    settings_note = ""
    model = MODEL  # the model's name on the server (its readiness is awaited)

    def __init__(self, model_dir: Path, venvs: Path = VENVS) -> None:
        self.model_dir = Path(model_dir).resolve()
        self.venv = venvs / self.venv_name
        self.http_port = 0
        self.grpc_port = 0
        self.metrics_port = 0
        self.startup_seconds = 0.0
        self.server_version = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self._log: Any = None

    # Subclasses: the command line and its environment, given self._workdir and the ports.
    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["VIRTUAL_ENV"] = str(self.venv)
        env.pop("PYTHONPATH", None)  # fastserve's src must not shadow anything in the peer
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def installed(self) -> bool:
        return (self.venv / ".fastserve-peer").is_file() and (self.venv / "bin/python").is_file()

    @property
    def log_path(self) -> Path | None:
        return None if self._workdir is None else self._workdir / "server.log"

    def start(self) -> None:
        if not self.installed():
            raise PeerNotInstalled(
                f"{self.name}: no virtualenv at {self.venv}; run `bash {SETUP} {self.venv_name}`"
            )
        self._workdir = Path(tempfile.mkdtemp(prefix=f"fastserve-peer-{self.venv_name}-"))
        self.http_port, self.grpc_port, self.metrics_port = free_port(), free_port(), free_port()
        command = self.command()
        self._log = open(self._workdir / "server.log", "wb")  # noqa: SIM115 (closed in stop)
        began = time.monotonic()
        self._process = subprocess.Popen(
            command,
            cwd=self._workdir,
            env=self.environment(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() ends workers too
        )
        try:
            self._wait_ready(began)
        except BaseException:
            self.stop(keep_workdir=True)
            raise
        self.startup_seconds = time.monotonic() - began
        with contextlib.suppress(OSError, ValueError):
            self.server_version = json.loads(http("GET", self._url("/v2"))).get("version", "")

    def _url(self, path: str) -> str:
        return f"http://{HOST}:{self.http_port}{path}"

    def _wait_ready(self, began: float) -> None:
        assert self._process is not None
        ready = [self._url("/v2/health/ready"), self._url(f"/v2/models/{self.model}/ready")]
        while True:
            code = self._process.poll()
            if code is not None:
                raise RuntimeError(
                    f"{self.name} exited with {code} before it was ready:\n{self.tail()}"
                )
            try:
                for url in ready:
                    http("GET", url, timeout=2.0)
                return
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() - began > READY_TIMEOUT:
                raise RuntimeError(
                    f"{self.name} not ready after {READY_TIMEOUT:g} s:\n{self.tail()}"
                )
            time.sleep(0.25)

    def describe(self) -> str:
        """A line for a report: the server's own version, settings, processes."""
        version = f" {self.server_version}" if self.server_version else ""
        return f"{self.name}: server{version}; {self.settings_note}; {len(self.pids())} processes"

    def tail(self, lines: int = 40) -> str:
        path = self.log_path
        if path is None or not path.exists():
            return "(no log)"
        text = path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self, keep_workdir: bool = False) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        if process is not None:
            # Workers left in the group after the leader exited (MLServer's, Triton's stub).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._workdir is not None and not keep_workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> PeerTarget:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def pids(self) -> list[int]:
        """The server's processes (its process group), for CPU accounting by a harness."""
        if self._process is None:
            return []
        group = self._process.pid
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, ValueError):
                    if os.getpgid(int(entry.name)) == group:
                        found.append(int(entry.name))
        return found

    def endpoints(self, floats: int) -> list[Endpoint]:
        return [
            Endpoint("grpc", HOST, self.grpc_port, INFER_PATH, v2_grpc_request(floats)),
            Endpoint(
                "rest",
                HOST,
                self.http_port,
                f"/v2/models/{MODEL}/infer",
                v2_rest_body(floats),
                "application/json",
            ),
        ]

    def check(self, floats: int) -> None:
        """One REST request (urllib) and one gRPC call (grpcio, generic unary on the bytes)."""
        import grpc

        grpc_endpoint, rest_endpoint = self.endpoints(floats)
        answer = json.loads(
            http("POST", self._url(rest_endpoint.path), rest_endpoint.body, timeout=60.0)
        )
        output = answer["outputs"][0]
        if output.get("datatype") != "FP32":
            raise AssertionError(f"{self.name} REST: output datatype {output.get('datatype')}")
        y = np.asarray(output["data"], dtype=np.float32).reshape(-1)
        verify(f"{self.name} REST", floats, output["name"], list(output["shape"]), y)

        with grpc.insecure_channel(f"{HOST}:{grpc_endpoint.port}") as channel:
            call = channel.unary_unary(grpc_endpoint.path)  # bytes in, bytes out
            data = call(grpc_endpoint.body, timeout=60.0)
        name, shape, y = v2_grpc_response(data)
        verify(f"{self.name} gRPC", floats, name, shape, y)


class MLServerTarget(PeerTarget):
    """Seldon MLServer with its default settings but for the addresses: REST (FastAPI on
    Uvicorn) and gRPC (grpc.aio) in the main process, inference in its one default worker
    process (parallel_workers=1), metrics on a free port of its own."""

    venv_name = "mlserver"

    def __init__(
        self, model_dir: Path, venvs: Path = VENVS, parallel_workers: int | None = None
    ) -> None:
        super().__init__(model_dir, venvs)
        self.parallel_workers = parallel_workers
        self.name = f"MLServer {installed_version(self.venv, 'mlserver')}"
        if parallel_workers is not None:
            self.name += f" ({parallel_workers} workers)"
        workers = "default 1" if parallel_workers is None else str(parallel_workers)
        self.settings_note = f"custom runtime, debug off, parallel_workers {workers}"

    def model_settings(self, folder: Path) -> dict[str, Any]:
        """The model's model-settings.json; `folder` is the model's own folder, which the
        runtime's files may be copied to."""
        for source in ("mlserver_runtime.py", "half_plus_two_session.py"):
            shutil.copy(RUNTIMES / source, folder / source)
        return {
            "name": MODEL,
            "implementation": "mlserver_runtime.HalfPlusTwoRuntime",
            "parameters": {"uri": str(self.model_dir)},
        }

    def command(self) -> list[str]:
        assert self._workdir is not None
        folder = self._workdir / "models"
        model = folder / self.model
        model.mkdir(parents=True)
        model_settings = self.model_settings(model)
        settings: dict[str, Any] = {
            "host": HOST,
            "http_port": self.http_port,
            "grpc_port": self.grpc_port,
            "metrics_port": self.metrics_port,
            "debug": False,
        }
        if self.parallel_workers is not None:
            settings["parallel_workers"] = self.parallel_workers
        (folder / "settings.json").write_text(json.dumps(settings, indent=2))
        (model / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
        return [str(self.venv / "bin/mlserver"), "start", str(folder)]


class MLServerXGBoostTarget(MLServerTarget):
    """MLServer serving an XGBoost model (`model_dir`/model.json) with its own runtime,
    mlserver-xgboost (`mlserver_xgboost.XGBoostModel`: the model loaded as xgboost's
    XGBRegressor or XGBClassifier, V2 output "predict"), settings as MLServerTarget's. Its
    requests (endpoints, check) are the benchmark's to build: see benchmarks/servables.py."""

    def __init__(
        self,
        model_dir: Path,
        model: str,
        venvs: Path = VENVS,
        parallel_workers: int | None = None,
        omp_threads: int | None = None,
    ) -> None:
        super().__init__(model_dir, venvs, parallel_workers)
        self.model = model
        # mlserver-xgboost sets no thread count: xgboost then predicts on as many OpenMP
        # threads as there are cores. OMP_NUM_THREADS in the server's environment caps it.
        self.omp_threads = omp_threads
        self.name = f"MLServer {installed_version(self.venv, 'mlserver')} (mlserver-xgboost"
        self.name += ")" if omp_threads is None else f", OMP_NUM_THREADS={omp_threads})"
        workers = "default 1" if parallel_workers is None else str(parallel_workers)
        threads = (
            "xgboost's default threads"
            if omp_threads is None
            else (f"OMP_NUM_THREADS={omp_threads}")
        )
        self.settings_note = (
            f"mlserver-xgboost {installed_version(self.venv, 'mlserver-xgboost')} runtime, "
            f"xgboost {installed_version(self.venv, 'xgboost')} ({threads}), debug off, "
            f"parallel_workers {workers}"
        )

    def environment(self) -> dict[str, str]:
        env = super().environment()
        if self.omp_threads is not None:
            env["OMP_NUM_THREADS"] = str(self.omp_threads)
        return env

    def model_settings(self, folder: Path) -> dict[str, Any]:
        return {
            "name": self.model,
            "implementation": "mlserver_xgboost.XGBoostModel",
            "parameters": {"uri": str(self.model_dir / "model.json")},
        }

    def installed(self) -> bool:
        runtime = list(self.venv.glob("lib/python3*/site-packages/mlserver_xgboost"))
        return super().installed() and bool(runtime)


class TritonTarget(PeerTarget):
    """Triton (bundled in nvidia-pytriton) with the Python backend calling a bound function;
    Triton's batching off."""

    venv_name = "triton"

    def __init__(self, model_dir: Path, venvs: Path = VENVS) -> None:
        super().__init__(model_dir, venvs)
        self.settings_note = "Python backend (bound function), batching off, one instance"
        # The name stays as it is (a harness may key on it before start); the bundled
        # tritonserver's own version is known once it answers: server_version, describe().
        self.name = f"Triton (PyTriton {installed_version(self.venv, 'nvidia-pytriton')})"

    def environment(self) -> dict[str, str]:
        env = super().environment()
        # The Python backend's stub loads libpython: point at the venv interpreter's own.
        libdir = subprocess.run(
            [
                str(self.venv / "bin/python"),
                "-c",
                "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            part for part in (libdir, env.get("LD_LIBRARY_PATH", "")) if part
        )
        env["PYTHONPATH"] = str(RUNTIMES)
        return env

    def command(self) -> list[str]:
        return [
            str(self.venv / "bin/python"),
            str(RUNTIMES / "triton_server.py"),
            "--model",
            str(self.model_dir),
            "--http-port",
            str(self.http_port),
            "--grpc-port",
            str(self.grpc_port),
            "--metrics-port",
            str(self.metrics_port),
        ]


PEERS: dict[str, type[PeerTarget]] = {"mlserver": MLServerTarget, "triton": TritonTarget}


def make_targets(
    model_dir: Path, names: list[str] | None = None, venvs: Path = VENVS
) -> list[Target]:
    """The peers as Targets (not started), for the serving benchmark's --peers. Raises
    PeerNotInstalled, naming the setup command, for a peer whose venv is missing."""
    targets = [PEERS[name](model_dir, venvs) for name in names or list(PEERS)]
    missing = [t for t in targets if not t.installed()]
    if missing:
        names_missing = " ".join(t.venv_name for t in missing)
        raise PeerNotInstalled(
            f"peers not installed: {names_missing}; run `bash {SETUP} {names_missing}` "
            "(about 2 GB of PyPI downloads a peer)"
        )
    return list(targets)


# --- A short, noisy throughput smoke run with h2load (gRPC) and wrk (REST) ------------------


def smoke_throughput(endpoint: Endpoint, seconds: float, concurrency: int) -> str:
    """requests/s answered OK and the errors of a short run (h2load for gRPC, wrk for REST)."""
    try:
        result = drive(endpoint, concurrency, seconds)
    except LoadError as error:
        return f"failed: {str(error)[:300]}"
    return f"{result.throughput:,.0f} req/s (errors: {result.describe_errors()})"


# --- --check ------------------------------------------------------------------------------------


def build_model(folder: Path) -> Path:
    """half_plus_two built by the test suite's builder, in fastserve's venv."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, str(HERE.parent / "tests"))
    import tensorflow as tf

    from support.models import half_plus_two_v1

    tf.get_logger().setLevel("ERROR")  # TF1 API deprecation notes

    path = folder / "half_plus_two"
    half_plus_two_v1(path)
    return path


def ensure_installed(names: list[str]) -> None:
    """Runs setup_peers.sh for these peers: it installs what is missing or out of date (its
    pins changed) and skips the rest."""
    subprocess.run(["bash", str(SETUP), *names], check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="set up what is missing, start each peer, check 1 and 1,000 floats, stop it",
    )
    parser.add_argument(
        "--peers", default=",".join(PEERS), help=f"comma-separated (default: {','.join(PEERS)})"
    )
    parser.add_argument("--floats", default="1,1000", help="payloads to check (default: 1,1000)")
    parser.add_argument(
        "--smoke",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="also a short h2load/wrk run per protocol, 16 in flight (noisy; default: off)",
    )
    parser.add_argument(
        "--no-setup",
        action="store_true",
        help="do not run setup_peers.sh first (a missing peer then fails)",
    )
    args = parser.parse_args(argv)
    if not args.check:
        parser.print_help()
        return 2
    names = [name.strip() for name in args.peers.split(",") if name.strip()]
    unknown = sorted(set(names) - set(PEERS))
    if unknown:
        parser.error(f"unknown peers {unknown}; known: {sorted(PEERS)}")
    if not args.no_setup:
        ensure_installed(names)
    payloads = [int(n) for n in args.floats.split(",")]
    failures = 0
    with tempfile.TemporaryDirectory(prefix="fastserve-peers-") as tmp:
        model_dir = build_model(Path(tmp))
        for target in make_targets(model_dir, names):
            assert isinstance(target, PeerTarget)
            print(f"{target.name}: starting from {target.venv}", flush=True)
            try:
                target.start()
            except Exception as error:
                print(f"{target.name}: FAILED to start: {error}", flush=True)
                failures += 1
                continue
            try:
                print(
                    f"{target.describe()}; ready in {target.startup_seconds:.1f} s "
                    f"(HTTP {target.http_port}, gRPC {target.grpc_port})",
                    flush=True,
                )
                for floats in payloads:
                    try:
                        target.check(floats)
                        sizes = ", ".join(
                            f"{e.protocol} {len(e.body):,} B" for e in target.endpoints(floats)
                        )
                        print(f"{target.name}: check {floats} floats: ok ({sizes})", flush=True)
                    except Exception as error:
                        failures += 1
                        print(f"{target.name}: check {floats} floats: FAILED: {error}", flush=True)
                if args.smoke > 0:
                    for endpoint in target.endpoints(payloads[0]):
                        result = smoke_throughput(endpoint, args.smoke, 16)
                        print(
                            f"{target.name}: smoke {endpoint.protocol} {payloads[0]} floats, "
                            f"16 in flight, {args.smoke:g} s: {result} (noisy)",
                            flush=True,
                        )
            finally:
                target.stop()
                print(f"{target.name}: stopped", flush=True)
    print("peers: all checks passed" if not failures else f"peers: {failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
