"""tf.Example inputs of Classify and Regress: from the Input proto, from REST JSON, and as a
matrix of numbers for servables that take columns."""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fastserve.codecs.rest_json import FLOAT32_MAX, decimal, json_type, pretty
from fastserve.codecs.tfs_protos import example_pb2, feature_pb2
from fastserve.errors import invalid_argument


def serialize_input(proto: Any) -> list[bytes]:
    """The serialized examples of an Input proto (ExampleList or ExampleListWithContext).

    With a context, each element is the context's bytes followed by the example's: parsing
    concatenated messages merges them, so an example's feature wins over the context's, as
    in TF Serving.
    """
    kind = proto.WhichOneof("kind")
    if kind == "example_list":
        serialized = [example.SerializeToString() for example in proto.example_list.examples]
    elif kind == "example_list_with_context":
        listed = proto.example_list_with_context
        context = listed.context.SerializeToString()
        serialized = [context + example.SerializeToString() for example in listed.examples]
    else:
        serialized = []
    return serialized  # empty: the task says "Input is empty." after its own checks


# --- REST ------------------------------------------------------------------------------------


def _kind_error(name: str, feature: feature_pb2.Feature) -> Exception:
    kind = {"bytes_list": "bytes", "float_list": "float", "int64_list": "int64"}.get(
        feature.WhichOneof("kind") or "", "UNKNOWN"
    )
    return invalid_argument(f"Unexpected element type in feature: {name} expecting type: {kind}")


def _is_kind(feature: feature_pb2.Feature, kind: str) -> bool:
    current = feature.WhichOneof("kind")
    return current is None or current == kind


def _add_value(value: Any, name: str, feature: feature_pb2.Feature) -> None:
    """One JSON value into a Feature, with TF Serving's kind rules: a string or {"b64": ...}
    is bytes, a number with a decimal point float, an integer or boolean int64."""
    if isinstance(value, bool):
        if not _is_kind(feature, "int64_list"):
            raise _kind_error(name, feature)
        feature.int64_list.value.append(1 if value else 0)
    elif isinstance(value, str):
        if not _is_kind(feature, "bytes_list"):
            raise _kind_error(name, feature)
        feature.bytes_list.value.append(value.encode("utf-8"))
    elif isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str):
        if not _is_kind(feature, "bytes_list"):
            raise _kind_error(name, feature)
        try:
            feature.bytes_list.value.append(base64.b64decode(value["b64"], validate=True))
        except (binascii.Error, ValueError):
            raise invalid_argument("Unable to base64 decode") from None
    elif isinstance(value, float):
        if not _is_kind(feature, "float_list"):
            raise _kind_error(name, feature)
        if math.isfinite(value) and abs(value) > FLOAT32_MAX:
            raise invalid_argument(
                f"Cannot convert JSON value: {decimal(value)} to float without loss of precision."
            )
        feature.float_list.value.append(value)
    elif isinstance(value, int):
        if not _is_kind(feature, "int64_list"):
            raise _kind_error(name, feature)
        if value >= 2**63:
            raise invalid_argument(f"Feature: {name} has uint64 element. Only int64 is supported.")
        feature.int64_list.value.append(value)
    else:
        raise invalid_argument(
            f"Feature: {name} has element with unexpected JSON type: {json_type(value)}"
        )


def example_from_json(value: Any) -> example_pb2.Example:
    """A JSON object of features (each a value or a list of values) as a tf.Example."""
    if not isinstance(value, dict):
        raise invalid_argument(f"Example must be JSON object but got JSON {json_type(value)}")
    example = example_pb2.Example()
    for name, content in value.items():
        feature = feature_pb2.Feature()
        for item in content if isinstance(content, list) else [content]:
            _add_value(item, name, feature)
        example.features.feature[name].CopyFrom(feature)
    return example


def examples_from_json(doc: Mapping[str, Any]) -> list[bytes]:
    """The serialized examples of a :classify or :regress body (`examples`, optional
    `context`), worded as TF Serving words its errors."""
    context = b""
    if "context" in doc:
        context = example_from_json(doc["context"]).SerializeToString()
    if "examples" not in doc:
        raise invalid_argument(
            f"JSON Value: {pretty(doc)} When method is classify, key 'examples' is expected "
            "and was not found"
        )
    examples = doc["examples"]
    if not isinstance(examples, list):
        raise invalid_argument(
            f"JSON Value: {pretty(doc)} Expecting 'examples' value to be an list/array"
        )
    if not examples:
        raise invalid_argument(f"JSON Value: {pretty(doc)} 'examples' value is an empty array")
    return [context + example_from_json(item).SerializeToString() for item in examples]


# --- tf.Examples as a matrix of numbers --------------------------------------------------------


def example_columns(
    serialized: Sequence[bytes],
    names: Sequence[str],
    dtype: np.dtype[Any],
    *,
    missing_is_nan: bool,
) -> np.ndarray:
    """Serialized tf.Examples as a [len(serialized), len(names)] matrix of `dtype`: column j
    holds each example's feature names[j], which must hold one number (a float_list or an
    int64_list of one value). Features the names do not list are ignored, as tf.parse_example
    ignores them.

    A feature that is missing (or holds no value) is NaN where `missing_is_nan` (for models that
    treat NaN as missing), else INVALID_ARGUMENT; a feature of bytes, of several values, or an
    example that does not parse is INVALID_ARGUMENT, naming the example and the feature.
    """
    columns = {name: index for index, name in enumerate(names)}
    matrix = np.full((len(serialized), len(names)), np.nan, dtype=dtype)
    example = example_pb2.Example()
    for row, data in enumerate(serialized):
        try:
            example.ParseFromString(data)
        except Exception:  # protobuf's DecodeError, or a TypeError for what is not bytes
            raise invalid_argument(f"Could not parse example {row}") from None
        seen = [False] * len(names)
        for name, feature in example.features.feature.items():
            column = columns.get(name)
            if column is None:
                continue
            kind = feature.WhichOneof("kind")
            values: Sequence[float | int]
            if kind == "float_list":
                values = feature.float_list.value
            elif kind == "int64_list":
                values = feature.int64_list.value
            elif kind == "bytes_list":
                raise invalid_argument(
                    f"Example {row}: feature {name} holds bytes; the model takes one number "
                    "per feature (a float_list or an int64_list)"
                )
            else:
                values = ()
            if len(values) > 1:
                raise invalid_argument(
                    f"Example {row}: feature {name} has {len(values)} values; the model takes "
                    "one number per feature"
                )
            if values:
                matrix[row, column] = values[0]
                seen[column] = True
        if not missing_is_nan and not all(seen):
            absent = [name for name, there in zip(names, seen, strict=True) if not there]
            raise invalid_argument(
                f"Example {row}: feature {absent[0]} (data type: float) is required but could "
                "not be found"
            )
    return matrix
