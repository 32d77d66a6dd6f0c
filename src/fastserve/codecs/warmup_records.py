"""TF Serving's warmup file: a TFRecord of tensorflow.serving.PredictionLog records, read into
plain requests (numpy inputs and serialized examples) that the API can replay."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fastserve.codecs import protos
from fastserve.codecs import tensor_proto as tensors
from fastserve.codecs import tf_example as tf_examples
from fastserve.codecs.tfrecord import read_records
from fastserve.codecs.tfs_protos import prediction_log_pb2
from fastserve.errors import Code, ServingError, invalid_argument
from fastserve.types import ModelSpec

# TF Serving's limit (servables/tensorflow/saved_model_warmup_util.h).
MAX_RECORDS = 1000


@dataclass(frozen=True)
class PredictRecord:
    signature_name: str
    input_names: tuple[str, ...]
    output_filter: tuple[str, ...]
    # The request's tensors, decoded only when asked: the API checks names first, as it does
    # for a client's request.
    tensors: Any

    def inputs(self) -> dict[str, np.ndarray]:
        return {alias: tensors.to_numpy(proto, alias) for alias, proto in self.tensors.items()}


@dataclass(frozen=True)
class ExamplesRecord:
    """A Classify ("classify") or Regress ("regress") request."""

    kind: str
    signature_name: str
    examples: Sequence[bytes]


@dataclass(frozen=True)
class MultiInferenceRecord:
    tasks: Sequence[tuple[ModelSpec, str]]
    examples: Sequence[bytes] | None


@dataclass(frozen=True)
class UnsupportedRecord:
    """A log type warmup does not replay (TF Serving fails the load on it)."""

    log_type: str


WarmupRequest = PredictRecord | ExamplesRecord | MultiInferenceRecord | UnsupportedRecord


def read_requests(warmup_path: str) -> Iterator[WarmupRequest | None]:
    """Each record's request in file order (None for a record without one, which TF Serving
    skips). Raises a ServingError naming the file for an unreadable file, a record that is not
    a PredictionLog, or more than MAX_RECORDS records."""
    for count, record in enumerate(_records(warmup_path), start=1):
        if count > MAX_RECORDS:
            raise invalid_argument(
                f"Number of warmup records exceeds the maximum ({MAX_RECORDS}) at {warmup_path}"
            )
        try:
            prediction_log = prediction_log_pb2.PredictionLog.FromString(record)
        except Exception as error:  # protobuf's DecodeError, or its C++ twin
            raise invalid_argument(
                f"Failed to parse warmup record {count} from {warmup_path}: "
                f"it is not a tensorflow.serving.PredictionLog ({error})"
            ) from None
        yield _request(prediction_log)


def _request(prediction_log: Any) -> WarmupRequest | None:
    kind = prediction_log.WhichOneof("log_type")
    if kind == "predict_log":
        request = prediction_log.predict_log.request
        return PredictRecord(
            request.model_spec.signature_name,
            tuple(request.inputs.keys()),
            tuple(request.output_filter),
            request.inputs,
        )
    if kind in ("classify_log", "regress_log"):
        request = getattr(prediction_log, kind).request
        return ExamplesRecord(
            kind.removesuffix("_log"),
            request.model_spec.signature_name,
            tf_examples.serialize_input(request.input),
        )
    if kind == "multi_inference_log":
        request = prediction_log.multi_inference_log.request
        return MultiInferenceRecord(
            [
                (protos.model_spec_from_proto(task.model_spec), task.method_name)
                for task in request.tasks
            ],
            tf_examples.serialize_input(request.input),
        )
    if kind is not None:
        return UnsupportedRecord(kind)
    return None


def _records(warmup_path: str) -> Iterator[bytes]:
    """The records of a TFRecord file; unreadable or corrupt data becomes a ServingError
    naming the file, worded as TF Serving words it."""
    try:
        yield from read_records(warmup_path)
    except ServingError as error:
        hint = (
            ". Please verify your warmup data is in TFRecord format."
            if error.code is Code.DATA_LOSS
            else ""
        )
        raise ServingError(
            error.code, f"Cannot read warmup data {warmup_path}: {error.message}{hint}"
        ) from None
