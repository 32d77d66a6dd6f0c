"""TF Serving config messages that tensorflow-serving-api does not ship, built from their
field lists (names and numbers as TF Serving defines them) so text protos parse unchanged."""

from __future__ import annotations

from functools import cache
from typing import Any

from google.protobuf import descriptor_pool, text_format, wrappers_pb2

from fastserve.codecs.proto_types import F, Field, build_pool, message_class
from fastserve.errors import ConfigError

_PACKAGE = "tensorflow.serving"

_MESSAGES: dict[str, list[Field]] = {
    # tensorflow_serving/servables/tensorflow/session_bundle_config.proto
    "BatchingParameters": [
        ("max_batch_size", 1, F.TYPE_MESSAGE, F.LABEL_OPTIONAL, ".google.protobuf.Int64Value"),
        (
            "batch_timeout_micros",
            2,
            F.TYPE_MESSAGE,
            F.LABEL_OPTIONAL,
            ".google.protobuf.Int64Value",
        ),
        (
            "max_enqueued_batches",
            3,
            F.TYPE_MESSAGE,
            F.LABEL_OPTIONAL,
            ".google.protobuf.Int64Value",
        ),
        ("num_batch_threads", 4, F.TYPE_MESSAGE, F.LABEL_OPTIONAL, ".google.protobuf.Int64Value"),
        ("thread_pool_name", 5, F.TYPE_MESSAGE, F.LABEL_OPTIONAL, ".google.protobuf.StringValue"),
        ("allowed_batch_sizes", 6, F.TYPE_INT64, F.LABEL_REPEATED, ""),
        ("pad_variable_length_inputs", 7, F.TYPE_BOOL, F.LABEL_OPTIONAL, ""),
        (
            "enable_large_batch_splitting",
            8,
            F.TYPE_MESSAGE,
            F.LABEL_OPTIONAL,
            ".google.protobuf.BoolValue",
        ),
        (
            "max_execution_batch_size",
            9,
            F.TYPE_MESSAGE,
            F.LABEL_OPTIONAL,
            ".google.protobuf.Int64Value",
        ),
    ],
    # tensorflow_serving/config/monitoring_config.proto
    "PrometheusConfig": [
        ("enable", 1, F.TYPE_BOOL, F.LABEL_OPTIONAL, ""),
        ("path", 2, F.TYPE_STRING, F.LABEL_OPTIONAL, ""),
    ],
    "MonitoringConfig": [
        (
            "prometheus_config",
            1,
            F.TYPE_MESSAGE,
            F.LABEL_OPTIONAL,
            f".{_PACKAGE}.PrometheusConfig",
        ),
    ],
    # tensorflow_serving/config/ssl_config.proto
    "SSLConfig": [
        ("server_key", 1, F.TYPE_STRING, F.LABEL_OPTIONAL, ""),
        ("server_cert", 2, F.TYPE_STRING, F.LABEL_OPTIONAL, ""),
        ("custom_ca", 3, F.TYPE_STRING, F.LABEL_OPTIONAL, ""),
        ("client_verify", 4, F.TYPE_BOOL, F.LABEL_OPTIONAL, ""),
    ],
}


@cache
def _pool() -> descriptor_pool.DescriptorPool:
    return build_pool(
        "fastserve/tf_serving_config.proto", _PACKAGE, _MESSAGES, (wrappers_pb2.DESCRIPTOR,)
    )


def message(name: str) -> Any:
    """A new, empty message of one of these types ("BatchingParameters", "SSLConfig")."""
    return message_class(_pool(), f"{_PACKAGE}.{name}")()


def read_text_file(path: str, name: str, what: str) -> Any:
    """Parses the text-proto file `path` as message `name`; `what` names the file's role in
    errors (ConfigError naming the file, and the line and column of a syntax error)."""
    parsed = message(name)
    try:
        with open(path, encoding="utf-8") as handle:
            text_format.Parse(handle.read(), parsed)
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the {what}: {error.strerror}") from None
    except (text_format.ParseError, UnicodeDecodeError) as error:
        raise ConfigError(f"Invalid protobuf file: '{path}': {error}") from None
    return parsed
