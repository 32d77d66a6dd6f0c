"""Servables: an ONNX and an XGBoost model in fastserve, against the library in-process and
against MLServer.

What it measures, all in one run on this machine:
- In-process: each model called with its own library in one thread, no server: onnxruntime's
  InferenceSession.run, xgboost's Booster.inplace_predict (what fastserve's onnx and xgboost
  kinds call); µs per call, calls/s and CPU µs per call.
- fastserve: the real `fastserve` command serving the model (model_platform onnx / xgboost),
  gRPC Predict (h2load sending a pre-built frame) and REST :predict (wrk), batching off.
- MLServer (the XGBoost model only): MLServer 1.7.1 with its own XGBoost runtime,
  mlserver-xgboost, over the V2 protocol, gRPC and REST (benchmarks/peers.py). MLServer ships
  no ONNX runtime (its runtimes: scikit-learn, XGBoost, LightGBM, CatBoost, Spark MLlib,
  MLflow, Alibi), so the ONNX model is compared in-process only.

Models, built here (no downloads) and cached under the temporary folder: an MLP
32 -> 256 -> 256 -> 8 (float32, dynamic batch dimension) written with onnx's helper API, and
an XGBoost regressor of 100 trees of depth 6 on 32 features trained on synthetic data.
Requests: 1 row and 64 rows of 32 float32 features; 1 and 16 in flight. Before measuring a
target, each payload is sent once with a real client and the answer checked against the
in-process prediction. The server's overhead is reported as ratios: throughput at 16 in flight
over the library's single-thread calls/s, and the server's CPU µs per request over the
library's µs per call. Nothing asserts on timing.

    .venv/bin/python benchmarks/servables.py --output benchmarks/results/servables.md
    .venv/bin/python benchmarks/servables.py --quick --seconds 1          # smoke test
    bash benchmarks/setup_peers.sh mlserver    # once, for the MLServer rows (about 2.6 GB)
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import importlib.util
import itertools
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import peers
import serving
from common import (
    CallTiming,
    load_average,
    machine_description,
    positive_ints,
    publish,
    time_calls,
)
from serving import Cell, Run
from targets import check_tfs_grpc, check_tfs_rest, expect_close, predict_request, rest_body

import fastserve.tune.load as loadgen
from fastserve.tune.load import PREDICT_PATH, Endpoint

FEATURES = 32
ROWS = (1, 64)
CONCURRENCIES = (1, 16)
ONNX_MODEL = "mlp_onnx"
XGBOOST_MODEL = "trees_xgboost"
ONNX_LAYERS = (FEATURES, 256, 256, 8)
XGBOOST_TREES = 100
XGBOOST_DEPTH = 6
XGBOOST_TRAINING_ROWS = 4096
# One thread per call in the server and in-process alike, so that the library's µs per call
# is its CPU per call and the server's CPU per request minus it is the server's own.
ONNX_SERVABLE_YAML = "intra_op_num_threads: 1\n"
CACHE = Path(tempfile.gettempdir()) / "fastserve-bench-servables"


def features(rows: int) -> np.ndarray:
    """`rows` rows of FEATURES float32 values in [-2, 2), multiples of 1/64: exact and short
    in JSON, so REST and gRPC carry the same numbers."""
    rng = np.random.default_rng(rows)
    return (rng.integers(-128, 128, (rows, FEATURES)) / 64).astype(np.float32)


# --- the models -----------------------------------------------------------------------------


def build_onnx(version_dir: Path) -> None:
    """The MLP as model.onnx: Gemm + Relu per hidden layer, then a Gemm; x [batch, 32] ->
    y [batch, 8]."""
    from onnx import TensorProto, helper, numpy_helper, save_model

    rng = np.random.default_rng(13)
    nodes, weights = [], []
    last = "x"
    for index, (fan_in, fan_out) in enumerate(itertools.pairwise(ONNX_LAYERS)):
        w = (rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)).astype(np.float32)
        b = (rng.standard_normal(fan_out) * 0.1).astype(np.float32)
        weights.append(numpy_helper.from_array(w, f"w{index}"))
        weights.append(numpy_helper.from_array(b, f"b{index}"))
        output = "y" if index == len(ONNX_LAYERS) - 2 else f"h{index}"
        linear = output if output == "y" else f"linear{index}"
        nodes.append(helper.make_node("Gemm", [last, f"w{index}", f"b{index}"], [linear]))
        if output != "y":
            nodes.append(helper.make_node("Relu", [linear], [output]))
        last = output
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", ONNX_LAYERS[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", ONNX_LAYERS[-1]])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    version_dir.mkdir(parents=True, exist_ok=True)
    save_model(model, str(version_dir / "model.onnx"))
    (version_dir / "servable.yaml").write_text(ONNX_SERVABLE_YAML)


def build_xgboost(version_dir: Path) -> None:
    """A regressor of XGBOOST_TREES trees of depth XGBOOST_DEPTH trained on synthetic data
    (xgboost.train, which needs no scikit-learn), saved with save_model as model.json."""
    import xgboost

    rng = np.random.default_rng(13)
    x = rng.standard_normal((XGBOOST_TRAINING_ROWS, FEATURES)).astype(np.float32)
    y = (
        x[:, :8] @ rng.standard_normal(8)
        + np.sin(x[:, 8] * 3)
        + 0.1 * rng.standard_normal(XGBOOST_TRAINING_ROWS)
    )
    parameters = {"objective": "reg:squarederror", "max_depth": XGBOOST_DEPTH, "seed": 13}
    booster = xgboost.train(parameters, xgboost.DMatrix(x, label=y), XGBOOST_TREES)
    version_dir.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(version_dir / "model.json"))


def cached_models() -> dict[str, Path]:
    """Each model's base path (a folder with version 1), built once per set of parameters and
    library versions under CACHE."""
    import onnx
    import xgboost

    key = json.dumps(
        [
            ONNX_LAYERS,
            ONNX_SERVABLE_YAML,
            onnx.__version__,
            XGBOOST_TREES,
            XGBOOST_DEPTH,
            XGBOOST_TRAINING_ROWS,
            xgboost.__version__,
        ]
    )
    root = CACHE / hashlib.sha256(key.encode()).hexdigest()[:16]
    bases = {ONNX_MODEL: root / ONNX_MODEL, XGBOOST_MODEL: root / XGBOOST_MODEL}
    for name, build, file in (
        (ONNX_MODEL, build_onnx, "model.onnx"),
        (XGBOOST_MODEL, build_xgboost, "model.json"),
    ):
        if not (bases[name] / "1" / file).is_file():
            root.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
            build(staging / "1")
            shutil.rmtree(bases[name], ignore_errors=True)  # a run stopped half-way
            os.replace(staging, bases[name])  # whole, or not there
    return bases


# --- the models in-process --------------------------------------------------------------------


@dataclass
class Model:
    """One model: how fastserve serves it and how its library runs it in-process."""

    name: str
    kind: str  # the library, for the report
    platform: str  # fastserve's model_platform
    base_path: Path
    input_name: str  # in fastserve's serving_default
    output_name: str
    predict: Callable[[np.ndarray], np.ndarray]  # the library called directly
    call: str  # what `predict` calls, for the report


def onnx_model(base: Path) -> Model:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # as servable.yaml tells fastserve's session
    session = onnxruntime.InferenceSession(
        str(base / "1" / "model.onnx"), sess_options=options, providers=["CPUExecutionProvider"]
    )

    def predict(x: np.ndarray) -> np.ndarray:
        return np.asarray(session.run(["y"], {"x": x})[0])

    call = (
        f"onnxruntime {onnxruntime.__version__} `InferenceSession.run` "
        "(CPU provider, intra_op_num_threads 1)"
    )
    return Model(ONNX_MODEL, "ONNX", "onnx", base, "x", "y", predict, call)


def xgboost_model(base: Path) -> Model:
    import xgboost

    booster = xgboost.Booster(model_file=str(base / "1" / "model.json"))
    booster.set_param({"nthread": 1})  # fastserve's xgboost kind: threads 1 by default

    def predict(x: np.ndarray) -> np.ndarray:
        return np.asarray(booster.inplace_predict(x, predict_type="value", validate_features=False))

    call = f"xgboost {xgboost.__version__} `Booster.inplace_predict` (nthread 1)"
    return Model(XGBOOST_MODEL, "XGBoost", "xgboost", base, "inputs", "predictions", predict, call)


@dataclass
class InProcess:
    model: str
    rows: int
    timing: CallTiming


def in_process(models: Sequence[Model], rows: Sequence[int], seconds: float) -> list[InProcess]:
    out = []
    for model in models:
        for count in rows:
            call = functools.partial(model.predict, features(count))
            out.append(InProcess(model.name, count, time_calls(call, seconds)))
    return out


# --- targets ----------------------------------------------------------------------------------


class FastserveServable(serving.Fastserve):
    """serving.py's fastserve target for one of these models (its platform from a config
    file), batching off; a payload is a number of rows."""

    def __init__(self, model: Model, workdir: Path, rows: Sequence[int], rest: str | None):
        super().__init__(
            model.name,
            model.base_path,
            workdir,
            batching=False,
            rest_server=rest,
            platform=model.platform,
        )
        self.spec = model
        self.name = f"fastserve ({model.kind})"
        self.payloads = tuple(rows)

    def _x(self, floats: int) -> np.ndarray:
        return features(floats)

    def want(self, floats: int) -> np.ndarray:
        return self.spec.predict(features(floats))

    def endpoints(self, floats: int) -> list[Endpoint]:
        x = features(floats)
        grpc_body = predict_request(x, self.model, self.spec.input_name)
        return [
            Endpoint("grpc", "127.0.0.1", self.grpc_port, PREDICT_PATH, grpc_body),
            Endpoint(
                "rest",
                "127.0.0.1",
                self.rest_port,
                f"/v1/models/{self.model}:predict",
                rest_body(x),
                "application/json",
            ),
        ]

    def check(self, floats: int) -> None:
        want = self.want(floats)
        grpc_endpoint, rest_endpoint = self.endpoints(floats)
        check_tfs_grpc(grpc_endpoint, want, self.spec.output_name)
        check_tfs_rest(rest_endpoint, want)


class MLServerXGBoost(peers.MLServerXGBoostTarget):
    """MLServer's XGBoost runtime serving the same model.json; V2 input "inputs", FP32
    [rows, 32], output "predict"."""

    kind = "peer"

    def __init__(self, model: Model, rows: Sequence[int], omp_threads: int | None) -> None:
        super().__init__(model.base_path / "1", model.name, omp_threads=omp_threads)
        self.spec = model
        self.payloads = tuple(rows)

    def endpoints(self, floats: int) -> list[Endpoint]:
        x = features(floats)
        return [
            Endpoint(
                "grpc",
                peers.HOST,
                self.grpc_port,
                peers.INFER_PATH,
                peers.v2_grpc_message(self.model, "inputs", x),
            ),
            Endpoint(
                "rest",
                peers.HOST,
                self.http_port,
                f"/v2/models/{self.model}/infer",
                peers.v2_rest_json("inputs", x),
                "application/json",
            ),
        ]

    def check(self, floats: int) -> None:
        want = self.spec.predict(features(floats))
        grpc_endpoint, rest_endpoint = self.endpoints(floats)
        status, body = loadgen.rest_call(rest_endpoint)
        if status != 200:
            raise AssertionError(f"{self.name} REST: HTTP {status}: {body[:300]!r}")
        output = json.loads(body)["outputs"][0]
        if output.get("name") != "predict":
            raise AssertionError(f"{self.name} REST: output {output.get('name')!r}, not predict")
        expect_close(f"{self.name} REST", output["data"], want)
        name, _, y = peers.v2_grpc_response(loadgen.grpc_call(grpc_endpoint))
        if name != "predict":
            raise AssertionError(f"{self.name} gRPC: output {name!r}, not predict")
        expect_close(f"{self.name} gRPC", y, want)


def rest_server() -> str | None:
    """fastserve's REST server for the run: Uvicorn when offered and installed (as serving.py
    picks it)."""
    offered = serving.fastserve_rest_servers()
    if "uvicorn" in offered and importlib.util.find_spec("uvicorn"):
        return "uvicorn"
    return offered[0] if offered else None


def plan(models: Sequence[Model], workdir: Path, args: argparse.Namespace, run: Run) -> list[Any]:
    rest = rest_server()
    targets: list[Any] = []
    for model in models:
        targets.append(FastserveServable(model, workdir, args.rows, rest))
        if model.platform != "xgboost":
            run.skipped.append(
                f"MLServer with the {model.kind} model: MLServer has no official {model.kind} "
                "runtime (https://docs.seldon.ai/mlserver/runtimes lists scikit-learn, XGBoost, "
                "LightGBM, CatBoost, Spark MLlib, MLflow and Alibi-Detect); compared in-process "
                "only"
            )
            continue
        # As shipped (xgboost predicts on every core), and with one thread per prediction
        # like fastserve's xgboost kind.
        for omp_threads in (None, 1):
            peer = MLServerXGBoost(model, args.rows, omp_threads)
            if not args.peers:
                run.skipped.append(f"{peer.name}: --no-peers")
            elif not peer.installed():
                reason = (
                    f"{peer.name}: not installed in {peer.venv} (MLServer and "
                    f"mlserver-xgboost): run `bash {peers.SETUP} mlserver`"
                )
                print(f"servables.py: skipping {reason}", file=sys.stderr)
                run.skipped.append(reason)
            else:
                targets.append(peer)
    return targets


# --- reporting ----------------------------------------------------------------------------------


def cpu_micros(cell: Cell | None) -> float:
    """The server's CPU µs per request answered in the cell (nan without CPU figures)."""
    if cell is None or not cell.load.throughput or cell.server_cores != cell.server_cores:
        return float("nan")
    return cell.server_cores / cell.load.throughput * 1e6


def _num(value: float, digits: int = 0) -> str:
    return "-" if value != value else f"{value:,.{digits}f}"


def _ms(cell: Cell | None, which: str) -> str:
    return serving.ms(getattr(cell.load, which)) if cell else "-"


def report(
    run: Run,
    models: Sequence[Model],
    targets: Sequence[Any],
    inproc: list[InProcess],
    args: argparse.Namespace,
    machine: list[str],
    elapsed: float,
) -> str:
    hi = max(args.concurrencies)
    out = [
        "# Servables: ONNX and XGBoost in fastserve, against the library in-process and MLServer",
        "",
        f"Reproduce: `{shlex.join(['.venv/bin/python', *sys.argv])}` from the repository root "
        "(MLServer rows need `bash benchmarks/setup_peers.sh mlserver` once).",
        "",
        *machine,
        f"- load average at the end: {load_average()}",
        "- load generators, servers and other work share this machine's CPUs: a busy machine "
        "lowers every server's figures; compare rows of one run, not runs",
        "",
        "## What runs",
        "",
        "Models, built by the script (no downloads):",
        "",
        f"- ONNX (`{ONNX_MODEL}`): an MLP "
        + " -> ".join(str(n) for n in ONNX_LAYERS)
        + " (Gemm + Relu, float32, dynamic batch dimension) written with onnx's helper API; "
        "fastserve's `model_platform: onnx` with `servable.yaml` "
        f"`{ONNX_SERVABLE_YAML.strip()}`; input `x`, output `y`.",
        f"- XGBoost (`{XGBOOST_MODEL}`): a regressor (`xgboost.train`, reg:squarederror) "
        f"of {XGBOOST_TREES} trees of depth {XGBOOST_DEPTH} on {FEATURES} features, "
        f"trained on {XGBOOST_TRAINING_ROWS:,} synthetic rows, `save_model('model.json')`; "
        "fastserve's `model_platform: xgboost` (threads 1, its default); input `inputs`, "
        "output `predictions`.",
        "",
        f"Requests: {', '.join(str(r) for r in args.rows)} row(s) of {FEATURES} float32 features. "
        "fastserve: gRPC Predict with the tensor as tensor_content, REST "
        '`{"instances": [[...]]}`. MLServer: V2 `ModelInfer` with the tensor in '
        "fp32_contents, V2 REST `/v2/models/<name>/infer` with the data flat and its shape.",
        "",
        "Load as in serving.py: gRPC with h2load (a pre-built frame), REST with wrk (a Lua "
        f"script); closed loop, {' and '.join(str(c) for c in args.concurrencies)} in flight; "
        f"each cell {args.warmup:g} s of warm-up, then a {args.seconds:g} s window. Server CPU "
        "= the server's processes' CPU seconds in the window; per request = that / requests "
        "answered. Before each payload one request per protocol with a real client (grpcio, "
        "http.client) must give the in-process prediction.",
        "",
        "MLServer: its own XGBoost runtime, mlserver-xgboost (the model loaded as xgboost's "
        "`XGBRegressor`, `predict`), with the settings benchmarks/peers.py runs MLServer "
        "with: as shipped but `debug: false`, REST and gRPC in the main process, inference in "
        "one worker process. mlserver-xgboost sets no thread count, so xgboost predicts on "
        "every core (OpenMP): MLServer runs twice, as shipped and with `OMP_NUM_THREADS=1` "
        "(one thread per prediction, as fastserve's xgboost kind by default). MLServer has no "
        "ONNX runtime: the ONNX model is compared with its library only.",
    ]
    if run.commands:
        out += ["", "Server commands (ports and temporary paths vary):", ""]
        out += [f"- {name}: `{command}`" for name, command in run.commands.items()]
    for target in targets:
        if isinstance(target, peers.PeerTarget) and target.server_version:
            out.append(f"- {target.name}: server {target.server_version}; {target.settings_note}")
    out += [
        "",
        "## The library in-process, no server",
        "",
        f"One thread, called over and over for {args.inproc_seconds:g} s per payload.",
        "",
        "| model | call | rows | µs per call (median) | calls/s | CPU µs per call |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    calls = {m.name: m for m in models}
    for row in inproc:
        t = row.timing
        out.append(
            f"| {calls[row.model].kind} | {calls[row.model].call} | {row.rows} | "
            f"{t.median_micros:,.1f} | {t.calls_per_second:,.0f} | {t.cpu_micros_per_call:,.1f} |"
        )
    out += [
        "",
        "## Servers",
        "",
        "| target | protocol | rows | req/s at 1 | p50 ms at 1 | p99 ms at 1 | server CPU µs/req "
        f"at 1 | req/s at {hi} | p50 ms at {hi} | p99 ms at {hi} | server cores at {hi} | "
        f"server CPU µs/req at {hi} | errors |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, protocol, rows in serving.rows_of(run):
        one = run.find(name, protocol, rows, 1)
        many = run.find(name, protocol, rows, hi)
        cores = "-" if many is None else _num(many.server_cores, 2)
        out.append(
            f"| {name} | {protocol} | {rows} | {serving.rps(one)} | {_ms(one, 'p50')} | "
            f"{_ms(one, 'p99')} | {_num(cpu_micros(one))} | {serving.rps(many)} | "
            f"{_ms(many, 'p50')} | {_ms(many, 'p99')} | {cores} | {_num(cpu_micros(many))} | "
            f"{serving._errors([c for c in (one, many) if c])} |"
        )
    out += ["", *overhead_section(run, models, inproc, hi)]
    out += ["", *peer_section(run, targets, hi)]
    out += serving.generator_section(run, unit="rows")
    if args.plot is not None:
        out += ["", f"![requests/s at {hi} in flight and p50 at 1]({args.plot.name})"]
    if run.skipped:
        out += ["", "## Not measured", ""] + [f"- {s}" for s in run.skipped]
    if run.failures:
        out += ["", "## Failures", ""] + [f"- {f}" for f in run.failures]
    out += ["", f"Total time: {elapsed:.0f} s.", ""]
    return "\n".join(out)


def overhead_section(
    run: Run, models: Sequence[Model], inproc: list[InProcess], hi: int
) -> list[str]:
    out = [
        "## fastserve / the library in-process: the server's overhead",
        "",
        f"Throughput: fastserve's req/s at {hi} in flight / the library's calls/s in one "
        "thread (the machine's other core is free to serve the protocol, so > 1 is possible). "
        "CPU: the server's CPU µs per request / the library's CPU µs per call, and their "
        "difference, what serving a request costs beyond the model.",
        "",
        f"| model | protocol | rows | fastserve req/s at {hi} | library calls/s | throughput "
        f"ratio | server CPU µs/req at {hi} | library CPU µs/call | CPU ratio | overhead µs/req "
        "| p50 ms at 1 | library µs/call |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for model in models:
        name = f"fastserve ({model.kind})"
        for row in inproc:
            if row.model != model.name:
                continue
            t = row.timing
            for protocol in ("grpc", "rest"):
                cell = run.find(name, protocol, row.rows, hi)
                one = run.find(name, protocol, row.rows, 1)
                if cell is None:
                    continue
                cpu = cpu_micros(cell)
                out.append(
                    f"| {model.kind} | {protocol} | {row.rows} | {serving.rps(cell)} | "
                    f"{t.calls_per_second:,.0f} | "
                    f"{cell.load.throughput / t.calls_per_second:.2f} | {_num(cpu)} | "
                    f"{t.cpu_micros_per_call:,.1f} | {_num(cpu / t.cpu_micros_per_call, 2)} | "
                    f"{_num(cpu - t.cpu_micros_per_call)} | {_ms(one, 'p50')} | "
                    f"{t.median_micros:,.1f} |"
                )
    return out


def peer_section(run: Run, targets: Sequence[Any], hi: int) -> list[str]:
    out = [
        "## fastserve / MLServer (XGBoost)",
        "",
        f"Throughput at {hi} in flight and at 1 (fastserve / MLServer: > 1 is fastserve "
        "faster); latency p50 at 1 and CPU per request at "
        f"{hi} (MLServer / fastserve: > 1 is fastserve quicker or cheaper).",
        "",
    ]
    mine = [t for t in targets if isinstance(t, MLServerXGBoost)]
    if not mine:
        return [*out, "Not measured in this run (see below)."]
    out += [
        f"| MLServer | protocol | rows | fastserve req/s at {hi} | MLServer req/s at {hi} | "
        f"ratio at {hi} | ratio at 1 | p50 ms at 1: fastserve | MLServer | ratio | "
        f"CPU µs/req at {hi}: fastserve | MLServer | ratio |",
        "| --- | --- " + "| ---: " * 11 + "|",
    ]
    ours_name = "fastserve (XGBoost)"
    for peer in mine:
        for protocol in ("grpc", "rest"):
            for rows in peer.payloads:
                ours, theirs = (
                    run.find(ours_name, protocol, rows, hi),
                    run.find(peer.name, protocol, rows, hi),
                )
                ours1, theirs1 = (
                    run.find(ours_name, protocol, rows, 1),
                    run.find(peer.name, protocol, rows, 1),
                )
                if ours is None or theirs is None or not theirs.load.throughput:
                    continue
                at1 = (
                    _num(ours1.load.throughput / theirs1.load.throughput, 2)
                    if ours1 and theirs1 and theirs1.load.throughput
                    else "-"
                )
                p50 = (
                    _num(theirs1.load.p50 / ours1.load.p50, 2)
                    if ours1 and theirs1 and ours1.load.p50
                    else "-"
                )
                cpu_ours, cpu_theirs = cpu_micros(ours), cpu_micros(theirs)
                out.append(
                    f"| {peer.name} | {protocol} | {rows} | {serving.rps(ours)} | "
                    f"{serving.rps(theirs)} | "
                    f"{ours.load.throughput / theirs.load.throughput:.2f} | {at1} | "
                    f"{_ms(ours1, 'p50')} | {_ms(theirs1, 'p50')} | {p50} | {_num(cpu_ours)} | "
                    f"{_num(cpu_theirs)} | {_num(cpu_theirs / cpu_ours, 2)} |"
                )
    return out


# --- main -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seconds", type=float, default=5.0, help="measured window per cell (default: 5)"
    )
    parser.add_argument(
        "--warmup", type=float, help="warm-up load before each cell (default: 1; --quick: 0)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke test: 1 row only, in-process 0.2 s"
    )
    parser.add_argument("--rows", help="comma-separated rows per request (default: 1,64)")
    parser.add_argument(
        "--concurrencies", help="comma-separated requests in flight (default: 1,16)"
    )
    parser.add_argument(
        "--peers",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure MLServer's XGBoost runtime when installed (default: on; without it "
        "installed it is skipped, with the reason in the report)",
    )
    parser.add_argument("--output", type=Path, help="also write the Markdown report here")
    args = parser.parse_args(argv)
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    if args.warmup is None:
        args.warmup = 0.0 if args.quick else 1.0
    try:
        args.rows = positive_ints(args.rows) or ((1,) if args.quick else ROWS)
        args.concurrencies = positive_ints(args.concurrencies) or CONCURRENCIES
    except ValueError as error:
        parser.error(f"--rows and --concurrencies take positive integers: {error}")
    args.payloads = args.rows  # serving.measure_target's name for them
    args.inproc_seconds = 0.2 if args.quick else 2.0
    args.plot = args.output.with_suffix(".png") if args.output is not None else None
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.perf_counter()
    machine = machine_description()
    for tool in ("h2load", "wrk"):
        try:
            loadgen.require(tool)
        except loadgen.MissingTool as error:
            print(f"servables.py: {error}", file=sys.stderr)
            return 2
    run = Run()
    bases = cached_models()
    models = [onnx_model(bases[ONNX_MODEL]), xgboost_model(bases[XGBOOST_MODEL])]
    inproc = in_process(models, args.rows, args.inproc_seconds)
    with tempfile.TemporaryDirectory(prefix="fastserve-servables-") as tmp:
        targets = plan(models, Path(tmp), args, run)
        for target in targets:
            serving.measure_target(target, args, run)
    if args.plot is not None and not serving.plot(run, args.plot, unit="rows"):
        args.plot = None
    text = report(run, models, targets, inproc, args, machine, time.perf_counter() - began)
    publish(text, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
