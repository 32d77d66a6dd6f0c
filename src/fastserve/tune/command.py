"""The `fastserve tune` command: its flags, the run over started servers, the conclusion."""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from fastserve.observability import logs
from fastserve.tune.load import (
    PREDICT_PATH,
    Endpoint,
    H2Load,
    LoadError,
    LoadGenerator,
    PythonClients,
)
from fastserve.tune.processes import LOOPBACK, FastserveProcess, ServerNotReady, cores
from fastserve.tune.report import parameters_text, plot, table
from fastserve.tune.request import (
    TuneError,
    build_inputs,
    check_predict,
    fetch_signature,
    predict_body,
)
from fastserve.tune.search import Candidate, Point, Space, describe, failures, point_of, search

REFERENCE = "batching off (reference)"
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
    # tune reads the model's signature with TF Serving's protos, which import TensorFlow.
    logs.quiet_tensorflow(debug=False)
    try:
        return _run(args, extra)
    except (TuneError, LoadError, ServerNotReady) as error:
        print(f"fastserve tune: {error}", file=sys.stderr)
        return 2


def _generator(args: argparse.Namespace) -> LoadGenerator:
    """h2load, one stream on each of `--concurrency` connections; or Python client processes."""
    h2load = shutil.which("h2load")
    if args.load_generator == "h2load" and h2load is None:
        raise TuneError("h2load is not installed: apt-get install -y nghttp2-client")
    if h2load is not None and args.load_generator != "python":
        return H2Load(args.concurrency, connections=args.concurrency)
    clients = PythonClients(args.concurrency, cores())
    if h2load is None:
        clients.description += "; h2load was not found (apt-get install nghttp2-client)"
    return clients


def _server_endpoint(server: str) -> Endpoint:
    host, _, port = server.rpartition(":")
    if not host or not port.isdigit():
        raise TuneError(f"--server {server!r}: expected HOST:PORT")
    return Endpoint("grpc", host, int(port), PREDICT_PATH, b"")


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
    if args.server is not None:
        endpoint = _request(args, _server_endpoint(args.server))
        generator = _generator(args)
        say(f"load: {generator.description}")
        try:
            return _measure_running(args, generator, endpoint, p99_target)
        finally:
            generator.close()
    with tempfile.TemporaryDirectory(prefix="fastserve-tune-") as tmp:
        workdir = Path(tmp)
        # The first server runs without batching: it tells the signature, and its
        # throughput is the reference the batching settings are shown against.
        say("starting fastserve without batching (the signature, and a reference point) ...")
        first = FastserveProcess(flags)
        try:
            first.wait_ready(args.ready_timeout)
            endpoint = _request(args, _local_endpoint(first))
            generator = _generator(args)
            args.generator_description = generator.description
            say(f"load: {generator.description}")
            reference = point_of(
                None, generator.measure(endpoint, args.seconds_per_point, args.warmup_seconds)
            )
            say(describe(reference, p99_target, REFERENCE))
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
                server = FastserveProcess(
                    [*flags, "--enable_batching", f"--batching_parameters_file={parameters}"]
                )
                try:
                    server.wait_ready(args.ready_timeout)
                    measured = generator.measure(
                        _local_endpoint(server, endpoint.body),
                        args.seconds_per_point,
                        args.warmup_seconds,
                    )
                finally:
                    server.stop()
                return point_of(candidate, measured, time.monotonic() - started)

            points = search(measure, space, in_flight, p99_target, args.budget_seconds, say, began)
        finally:
            generator.close()
    return _conclude(args, reference, points, p99_target)


def _local_endpoint(server: FastserveProcess, body: bytes = b"") -> Endpoint:
    return Endpoint("grpc", LOOPBACK, server.grpc_port, PREDICT_PATH, body)


def _request(args: argparse.Namespace, endpoint: Endpoint) -> Endpoint:
    """The endpoint with the Predict the load sends, checked against the server once."""
    signature = fetch_signature(endpoint.address, args.model_name, args.signature_name)
    inputs = build_inputs(args, signature)
    endpoint = replace(endpoint, body=predict_body(args.model_name, args.signature_name, inputs))
    check_predict(endpoint)
    rows = {a.shape[0] for a in inputs.values() if a.ndim > 0}
    args.rows_per_request_used = rows.pop() if len(rows) == 1 else args.rows_per_request
    return endpoint


def _measure_running(
    args: argparse.Namespace, generator: LoadGenerator, endpoint: Endpoint, p99_target: float
) -> int:
    point = point_of(None, generator.measure(endpoint, args.seconds_per_point, args.warmup_seconds))
    print("\n".join(table([point], None, p99_target)))
    print(
        f"\nMeasured the running server at {args.server} as it is: tune cannot change a running "
        "server's batching parameters, so no file was written. To tune them, run tune "
        "without --server (it starts its own servers)."
    )
    if point.failed:
        print(
            f"fastserve tune: requests to the running server failed{failures(point)}",
            file=sys.stderr,
        )
        return 1
    if not point.meets(p99_target):
        print(
            f"fastserve tune: the running server misses p99 <= {args.p99_ms:g} ms: p99 "
            f"{point.p99 * 1e3:.2f} ms",
            file=sys.stderr,
        )
        return 1
    return 0


def _conclude(
    args: argparse.Namespace, reference: Point, points: list[Point], p99_target: float
) -> int:
    within = [p for p in points if p.meets(p99_target)]
    chosen = max(within, key=lambda p: p.throughput) if within else None
    print("\n".join(table([reference, *points], chosen, p99_target, REFERENCE)))
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
    if chosen is None and all(p.failed for p in points):
        fewest = min(points, key=lambda p: p.failed / (p.failed + p.requests))
        where = fewest.candidate.label if fewest.candidate else ""
        print(
            f"fastserve tune: requests failed at every setting measured; the fewest at {where}"
            f"{failures(fewest)}. No setting can be chosen: find out why they fail (the "
            "servers' logs, the model, the request: --input, --input_file), then run again.",
            file=sys.stderr,
        )
        return 1
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
