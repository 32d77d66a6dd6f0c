"""TF Serving's config files in text-proto form (--ssl_config_file, --monitoring_config_file,
--batching_parameters_file), parsed into the messages of fastserve.codecs.tfs_protos, whose
field names and numbers are TF Serving's, so text protos written for TF Serving parse unchanged."""

from __future__ import annotations

from typing import Any

from google.protobuf import text_format

from fastserve.codecs.tfs_protos import POOL, message_class
from fastserve.errors import ConfigError

_PACKAGE = "tensorflow.serving"


def message(name: str) -> Any:
    """A new, empty message of one of these types ("BatchingParameters", "SSLConfig")."""
    return message_class(f"{_PACKAGE}.{name}")()


def read_text_file(path: str, name: str, what: str) -> Any:
    """Parses the text-proto file `path` as message `name`; `what` names the file's role in
    errors (ConfigError naming the file, and the line and column of a syntax error)."""
    parsed = message(name)
    try:
        with open(path, encoding="utf-8") as handle:
            text_format.Parse(handle.read(), parsed, descriptor_pool=POOL)
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the {what}: {error.strerror}") from None
    except (text_format.ParseError, UnicodeDecodeError) as error:
        raise ConfigError(f"Invalid protobuf file: '{path}': {error}") from None
    return parsed
