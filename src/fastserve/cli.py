"""The `fastserve` command: tensorflow_model_server's flags, plus --config and --host."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from importlib import metadata
from typing import Any, NoReturn

from fastserve import __version__, options


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _rest_server(text: str) -> str:
    lowered = text.strip().lower()
    if lowered not in ("hypercorn", "uvicorn"):
        raise argparse.ArgumentTypeError(f"expected hypercorn or uvicorn, got {text!r}")
    return lowered


@dataclass(frozen=True)
class Flag:
    """A command-line flag. `yaml` says whether a --config file's server: section may set it."""

    name: str
    kind: Callable[[str], Any]
    default: Any  # OPTION: the server setting of the same name's default (fastserve.options)
    help: str
    yaml: bool = True

    def __post_init__(self) -> None:
        if self.default is OPTION:
            value = options.default(self.name)
            # A list-valued setting is given as one comma-separated flag.
            flag_value = ",".join(value) if isinstance(value, tuple) else value
            object.__setattr__(self, "default", flag_value)


OPTION: Any = object()


# TF Serving's flags that fastserve serves, with TF Serving's defaults (most of them those of
# the server setting of the same name).
FLAGS: tuple[Flag, ...] = (
    Flag("port", int, OPTION, "TCP port for the gRPC API."),
    Flag("rest_api_port", int, OPTION, "TCP port for the REST API; 0 turns REST off."),
    Flag("grpc_socket_path", str, OPTION, "Also serve gRPC on this UNIX socket."),
    Flag("rest_api_timeout_in_ms", int, OPTION, "Deadline of a REST request (504 after it)."),
    Flag(
        "rest_api_enable_cors_support",
        _boolean,
        OPTION,
        "Add CORS headers to REST responses and answer preflight requests.",
    ),
    Flag(
        "grpc_channel_arguments",
        str,
        OPTION,
        "gRPC server arguments as k=v,k=v (integers passed as integers).",
    ),
    Flag(
        "rest_server",
        _rest_server,
        OPTION,
        "HTTP server of the REST API: uvicorn (HTTP/1.1, the fastest) or hypercorn (also "
        "HTTP/2). Default: uvicorn, or hypercorn with --ssl_config_file.",
    ),
    Flag("rest_api_num_threads", int, OPTION, "Threads running REST requests (0: 4 per CPU)."),
    Flag(
        "rest_inline_micros",
        int,
        OPTION,
        "REST requests of a model whose recent runs computed for less than this run on the "
        "event loop, not a worker thread; 0 turns it off.",
    ),
    Flag("grpc_max_threads", int, OPTION, "Threads running gRPC requests (0: 4 per CPU)."),
    Flag("model_name", str, "default", "Name of the model served from --model_base_path.", False),
    Flag("model_base_path", str, "", "Folder of the model's numbered version folders.", False),
    Flag("model_config_file", str, OPTION, "TF Serving ModelServerConfig text proto.", False),
    Flag(
        "model_config_file_poll_wait_seconds",
        int,
        OPTION,
        "Seconds between re-reads of --model_config_file; 0 reads it once.",
        False,
    ),
    Flag(
        "file_system_poll_wait_seconds",
        int,
        OPTION,
        "Seconds between polls for new versions; 0 polls once, negative never.",
    ),
    Flag("num_load_threads", int, OPTION, "Threads loading versions (0: one)."),
    Flag("num_unload_threads", int, OPTION, "Threads unloading versions (0: one)."),
    Flag("max_num_load_retries", int, OPTION, "Retries of a failed load before giving up."),
    Flag("load_retry_interval_micros", int, OPTION, "Microseconds between load retries."),
    Flag(
        "allow_version_labels_for_unavailable_models",
        _boolean,
        OPTION,
        "Allow labels to name versions that are not available.",
    ),
    Flag(
        "enable_serialization_as_tensor_content",
        _boolean,
        OPTION,
        "Write gRPC Predict outputs as tensor_content instead of typed value fields.",
    ),
    Flag("saved_model_tags", str, OPTION, "Comma-separated tags of the meta graph to load."),
    Flag("enable_batching", _boolean, OPTION, "Batch requests (see --batching_parameters_file)."),
    Flag(
        "batching_parameters_file",
        str,
        OPTION,
        "TF Serving BatchingParameters text proto (with --enable_batching).",
    ),
    Flag(
        "enable_per_model_batching_parameters",
        _boolean,
        OPTION,
        "Read batching_params.pbtxt from each version folder (with --enable_batching).",
    ),
    Flag(
        "enable_signature_method_name_check",
        _boolean,
        OPTION,
        "Check SignatureDef method names for predict, classify and regress.",
    ),
    Flag(
        "tensorflow_session_parallelism",
        int,
        0,
        "Threads for a TensorFlow session (sets both intra- and inter-op when non-zero).",
    ),
    Flag(
        "tensorflow_intra_op_parallelism", int, OPTION, "Threads parallelising one TF op (0: auto)."
    ),
    Flag(
        "tensorflow_inter_op_parallelism",
        int,
        OPTION,
        "Threads running TF ops concurrently (0: auto, which runs on the request's thread).",
    ),
    Flag(
        "monitoring_config_file",
        str,
        OPTION,
        "TF Serving MonitoringConfig text proto; its prometheus_config serves metrics on the "
        "REST port.",
    ),
    Flag(
        "enable_grpc_healthcheck_service",
        _boolean,
        OPTION,
        "Serve grpc.health.v1.Health on the gRPC port.",
    ),
    Flag(
        "enable_profiler",
        _boolean,
        OPTION,
        "Serve TensorFlow's profiler service (tensorflow.ProfilerService) on the gRPC port, "
        "for TensorBoard's profile capture and tf.profiler.experimental.client.trace.",
    ),
    Flag(
        "max_request_bytes",
        int,
        OPTION,
        "Largest request: REST bodies (413 past it), gRPC messages (RESOURCE_EXHAUSTED) and "
        "any decoded tensor.",
    ),
    Flag("access_log", _boolean, OPTION, "Log one line per request (gRPC and REST)."),
    Flag("log_level", str, "INFO", "DEBUG, INFO, WARNING or ERROR."),
    Flag("log_format", str, "text", "text, or json: one JSON object per line."),
    Flag(
        "ssl_config_file",
        str,
        OPTION,
        "TF Serving SSLConfig text proto: gRPC and REST serve TLS (mTLS with client_verify).",
    ),
    Flag(
        "enable_model_warmup",
        _boolean,
        OPTION,
        "Replay assets.extra/tf_serving_warmup_requests of each version before it serves.",
    ),
    Flag(
        "num_request_iterations_for_warmup",
        int,
        OPTION,
        "Times each warmup request is replayed; used only if > 0 (else once).",
    ),
    Flag(
        "allow_pickled_models",
        _boolean,
        OPTION,
        "Load pickled models (model_platform sklearn's model.joblib); unpickling runs the "
        "code the file holds, so only for files you trust.",
    ),
    Flag(
        "flush_filesystem_caches",
        _boolean,
        True,
        "Accepted for compatibility; fastserve keeps no filesystem caches to flush.",
    ),
    Flag(
        "remove_unused_fields_from_bundle_metagraph",
        _boolean,
        True,
        "Accepted for compatibility; fastserve keeps only the signatures of a meta graph.",
    ),
)

# TF Serving's flags that fastserve supports only at their default value so far.
DEFAULT_ONLY: dict[str, tuple[Callable[[str], Any], Any]] = {
    "use_alts_credentials": (_boolean, False),
    "prefer_tflite_model": (_boolean, False),
    "xla_cpu_compilation_enabled": (_boolean, False),
    "xla_gpu_compilation_enabled": (_boolean, False),
    "skip_initialize_tpu": (_boolean, False),
    "per_process_gpu_memory_fraction": (float, 0.0),
}

# TF Serving's flags that fastserve does not implement yet: any use is an error.
NOT_IMPLEMENTED = (
    "tensorflow_session_config_file",
    "platform_config_file",
    "num_tflite_pools",
    "num_tflite_interpreters_per_pool",
    "thread_pool_factory_config_file",
    "mixed_precision",
)


class _Unimplemented(argparse.Action):
    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: Any,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        parser.exit(2, f"fastserve: flag {option_string} is not implemented yet\n")


def _with_default(help: str, default: Any) -> str:
    if "Default:" in help:
        return help
    if isinstance(default, bool):
        shown = "true" if default else "false"
    elif default == "":
        shown = "none"
    else:
        shown = str(default)
    return f"{help} Default: {shown}."


def _add_flag(
    parser: argparse.ArgumentParser, name: str, kind: Callable[[str], Any], help: str
) -> None:
    """A flag defaulting to None (so that given flags can be told apart); booleans take
    --flag, --flag=true and --flag=false, as TF Serving's parser does."""
    if kind is _boolean:
        parser.add_argument(
            f"--{name}",
            nargs="?",
            const=True,
            type=_boolean,
            default=None,
            metavar="true|false",
            help=help,
        )
    else:
        metavar = "N" if kind in (int, float) else "VALUE"
        parser.add_argument(f"--{name}", type=kind, default=None, metavar=metavar, help=help)


USAGE = """fastserve [--flag=value ...]          serve models
       fastserve tune [--flag=value ...]     find batching parameters for a latency target"""


class _Parser(argparse.ArgumentParser):
    """A usage error says what is wrong in a few lines, not the whole usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(
            2,
            f"fastserve: error: {message}\n"
            "Run 'fastserve --help' for the flags, 'fastserve tune --help' for tuning.\n",
        )


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="fastserve",
        usage=USAGE,
        description="A model server that speaks TensorFlow Serving's gRPC and REST APIs. "
        "Serve one model (--model_name, --model_base_path), TF Serving's config "
        "(--model_config_file) or fastserve's YAML (--config).",
        epilog="fastserve tune: finds the batching parameters with the highest throughput "
        "within a p99 latency target and writes them for --batching_parameters_file; see "
        "'fastserve tune --help'.",
        allow_abbrev=False,
    )
    parser.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="fastserve YAML config: models, and server settings named like these flags. "
        "Default: none.",
    )
    parser.add_argument(
        "--host",
        default=None,
        metavar="ADDRESS",
        help="Address the gRPC and REST ports listen on. Default: 0.0.0.0.",
    )
    parser.add_argument(
        "--shutdown_grace_seconds",
        type=float,
        default=None,
        metavar="SECONDS",
        help="On SIGTERM/SIGINT, how long in-flight requests may take to finish. Default: 30.",
    )
    parser.add_argument(
        "--version",
        nargs="?",
        const=True,
        type=_boolean,
        default=False,
        metavar="true|false",
        help="Print the versions and exit.",
    )
    for flag in FLAGS:
        _add_flag(parser, flag.name, flag.kind, _with_default(flag.help, flag.default))
    for name, (kind, _) in DEFAULT_ONLY.items():
        _add_flag(parser, name, kind, argparse.SUPPRESS)
    for name in NOT_IMPLEMENTED:
        parser.add_argument(f"--{name}", action=_Unimplemented, nargs="?", help=argparse.SUPPRESS)
    return parser


def _normalise(argv: Sequence[str]) -> list[str]:
    """TF Serving's parser takes -flag as well as --flag."""
    return [
        f"-{arg}" if arg.startswith("-") and not arg.startswith("--") and len(arg) > 2 else arg
        for arg in argv
    ]


NO_MODELS = (
    "no models to serve: give --model_base_path (and --model_name), --model_config_file or --config"
)


class UsageError(Exception):
    pass


def _settings(args: argparse.Namespace) -> tuple[dict[str, Any], Any]:
    """Flag values (command line over the YAML's server: section over defaults) and models."""
    from fastserve.config import model_server as config_module
    from fastserve.observability import logs

    for name, (_, default) in DEFAULT_ONLY.items():
        value = getattr(args, name)
        if value is not None and value != default:
            raise UsageError(
                f"flag --{name}={value} is not implemented yet (only its default works)"
            )
    given = {
        flag.name: getattr(args, flag.name)
        for flag in FLAGS
        if getattr(args, flag.name) is not None
    }
    if args.config and args.model_config_file:
        raise UsageError("give --config or --model_config_file, not both")
    yaml_fields = (*(f.name for f in FLAGS if f.yaml), "host", "shutdown_grace_seconds")
    server: dict[str, Any] = {}
    if args.config:
        loaded = config_module.load_yaml(args.config, yaml_fields)
        server = dict(loaded.server)
        models = loaded.models
    elif args.model_config_file:
        models = config_module.load_text_proto(args.model_config_file).models
    elif args.model_base_path:
        base_path = os.path.abspath(args.model_base_path)
        models = (
            config_module.ModelConfig(name=args.model_name or "default", base_path=base_path),
        )
    else:
        raise UsageError(NO_MODELS)
    settings: dict[str, Any] = {flag.name: flag.default for flag in FLAGS}
    settings["host"] = options.default("host")
    settings["shutdown_grace_seconds"] = options.default("shutdown_grace_seconds")
    kinds = {flag.name: flag.kind for flag in FLAGS}
    for name, value in server.items():
        kind = kinds.get(name)
        if kind is _boolean and isinstance(value, bool):
            settings[name] = value
        elif kind is not None:
            try:
                settings[name] = kind(str(value)) if kind is not str else str(value)
            except (ValueError, argparse.ArgumentTypeError) as error:
                raise UsageError(f"{args.config}: server.{name}: {error}") from None
        else:
            settings[name] = value
    settings.update(given)
    settings["log_level"] = str(settings["log_level"]).upper()
    if settings["log_level"] not in logs.LEVELS:
        raise UsageError(f"--log_level must be one of {', '.join(logs.LEVELS)}")
    if settings["log_format"] not in logs.FORMATS:
        raise UsageError(f"--log_format must be one of {', '.join(logs.FORMATS)}")
    if args.host is not None:
        settings["host"] = args.host
    if args.shutdown_grace_seconds is not None:
        settings["shutdown_grace_seconds"] = args.shutdown_grace_seconds
    return settings, models


def _options(settings: dict[str, Any], models: Any) -> Any:
    from fastserve.options import ServerOptions

    intra = settings["tensorflow_intra_op_parallelism"]
    inter = settings["tensorflow_inter_op_parallelism"]
    if settings["tensorflow_session_parallelism"]:
        intra = intra or settings["tensorflow_session_parallelism"]
        inter = inter or settings["tensorflow_session_parallelism"]
    tags = tuple(tag.strip() for tag in settings["saved_model_tags"].split(",") if tag.strip())
    # Flags and options share their names; the few that need shaping are given after.
    same = {f.name: settings[f.name] for f in fields(ServerOptions) if f.name in settings}
    same.update(
        host=str(settings["host"]),
        saved_model_tags=tags or ("serve",),
        tensorflow_intra_op_parallelism=intra,
        tensorflow_inter_op_parallelism=inter,
        shutdown_grace_seconds=float(settings["shutdown_grace_seconds"]),
        models=tuple(models),
    )
    return ServerOptions(**same)


def _print_version() -> None:
    try:
        tensorflow = metadata.version("tensorflow")
    except metadata.PackageNotFoundError:
        tensorflow = "not installed"
    print(f"TensorFlow ModelServer: fastserve-{__version__}")
    print(f"TensorFlow Library: {tensorflow}")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["tune"]:
        from fastserve import tune

        return tune.main(argv[1:])
    args = _parser().parse_args(_normalise(argv))
    if args.version:
        _print_version()
        return 0
    if not (args.config or args.model_config_file or args.model_base_path):
        print(f"fastserve: {NO_MODELS}", file=sys.stderr)
        return 2
    from fastserve.observability import logs

    logs.quiet_tensorflow(debug=str(args.log_level or "").upper() == "DEBUG")
    from fastserve.errors import ConfigError
    from fastserve.run import run

    try:
        settings, models = _settings(args)
    except (UsageError, ConfigError) as error:
        print(f"fastserve: {error}", file=sys.stderr)
        return 2
    logs.configure(settings["log_level"], settings["log_format"])
    if not models:
        print("fastserve: the config lists no models", file=sys.stderr)
        return 2
    return run(_options(settings, models))


if __name__ == "__main__":
    sys.exit(main())
