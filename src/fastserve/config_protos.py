"""TF Serving config messages that tensorflow-serving-api does not ship, built from their
field lists (names and numbers as TF Serving defines them) so text protos parse unchanged."""

from __future__ import annotations

from functools import cache
from typing import Any

from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    text_format,
    wrappers_pb2,
)

from fastserve.config import ConfigError

_PACKAGE = "tensorflow.serving"
_F = descriptor_pb2.FieldDescriptorProto

# message -> [(field, number, type, label, type_name)]
_MESSAGES: dict[str, list[tuple[str, int, int, int, str]]] = {
    # tensorflow_serving/servables/tensorflow/session_bundle_config.proto
    "BatchingParameters": [
        ("max_batch_size", 1, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, ".google.protobuf.Int64Value"),
        (
            "batch_timeout_micros",
            2,
            _F.TYPE_MESSAGE,
            _F.LABEL_OPTIONAL,
            ".google.protobuf.Int64Value",
        ),
        (
            "max_enqueued_batches",
            3,
            _F.TYPE_MESSAGE,
            _F.LABEL_OPTIONAL,
            ".google.protobuf.Int64Value",
        ),
        ("num_batch_threads", 4, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, ".google.protobuf.Int64Value"),
        ("thread_pool_name", 5, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, ".google.protobuf.StringValue"),
        ("allowed_batch_sizes", 6, _F.TYPE_INT64, _F.LABEL_REPEATED, ""),
        ("pad_variable_length_inputs", 7, _F.TYPE_BOOL, _F.LABEL_OPTIONAL, ""),
        (
            "enable_large_batch_splitting",
            8,
            _F.TYPE_MESSAGE,
            _F.LABEL_OPTIONAL,
            ".google.protobuf.BoolValue",
        ),
        (
            "max_execution_batch_size",
            9,
            _F.TYPE_MESSAGE,
            _F.LABEL_OPTIONAL,
            ".google.protobuf.Int64Value",
        ),
    ],
    # tensorflow_serving/config/monitoring_config.proto
    "PrometheusConfig": [
        ("enable", 1, _F.TYPE_BOOL, _F.LABEL_OPTIONAL, ""),
        ("path", 2, _F.TYPE_STRING, _F.LABEL_OPTIONAL, ""),
    ],
    "MonitoringConfig": [
        (
            "prometheus_config",
            1,
            _F.TYPE_MESSAGE,
            _F.LABEL_OPTIONAL,
            f".{_PACKAGE}.PrometheusConfig",
        ),
    ],
    # tensorflow_serving/config/ssl_config.proto
    "SSLConfig": [
        ("server_key", 1, _F.TYPE_STRING, _F.LABEL_OPTIONAL, ""),
        ("server_cert", 2, _F.TYPE_STRING, _F.LABEL_OPTIONAL, ""),
        ("custom_ca", 3, _F.TYPE_STRING, _F.LABEL_OPTIONAL, ""),
        ("client_verify", 4, _F.TYPE_BOOL, _F.LABEL_OPTIONAL, ""),
    ],
}


@cache
def _pool() -> descriptor_pool.DescriptorPool:
    # A pool of our own: a later tensorflow-serving-api that ships these cannot clash.
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    file = descriptor_pb2.FileDescriptorProto(
        name="fastserve/tf_serving_config.proto",
        package=_PACKAGE,
        syntax="proto3",
        dependency=[wrappers.name],
    )
    for message, fields in _MESSAGES.items():
        described = file.message_type.add(name=message)
        for name, number, kind, label, type_name in fields:
            field = described.field.add(name=name, number=number, type=kind, label=label)
            if type_name:
                field.type_name = type_name
    pool.Add(file)
    return pool


def message(name: str) -> Any:
    """A new, empty message of one of these types ("BatchingParameters", "SSLConfig")."""
    descriptor = _pool().FindMessageTypeByName(f"{_PACKAGE}.{name}")
    return message_factory.GetMessageClass(descriptor)()


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
