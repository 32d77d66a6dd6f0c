"""Warmup records as TF Serving's tools write them: PredictionLogs of every request kind, in the
TFRecord file a version's assets.extra holds."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow.core.example import example_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    inference_pb2,
    predict_pb2,
    prediction_log_pb2,
    regression_pb2,
)

CLASSIFY = "tensorflow/serving/classify"
REGRESS = "tensorflow/serving/regress"


def example(x: float) -> example_pb2.Example:
    proto = example_pb2.Example()
    proto.features.feature["x"].float_list.value.append(x)
    return proto


def predict_log(inputs: dict[str, np.ndarray], signature: str = "") -> bytes:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "ignored"
    request.model_spec.signature_name = signature
    for alias, array in inputs.items():
        request.inputs[alias].CopyFrom(tf.make_tensor_proto(array))
    log = prediction_log_pb2.PredictionLog()
    log.predict_log.request.CopyFrom(request)
    return log.SerializeToString()


def classify_log(signature: str) -> bytes:
    request = classification_pb2.ClassificationRequest()
    request.model_spec.signature_name = signature
    request.input.example_list.examples.extend([example(1.0), example(2.0)])
    log = prediction_log_pb2.PredictionLog()
    log.classify_log.request.CopyFrom(request)
    return log.SerializeToString()


def regress_log(signature: str) -> bytes:
    request = regression_pb2.RegressionRequest()
    request.model_spec.signature_name = signature
    request.input.example_list.examples.append(example(3.0))
    log = prediction_log_pb2.PredictionLog()
    log.regress_log.request.CopyFrom(request)
    return log.SerializeToString()


def multi_inference_log(model: str, classify: str, regress: str) -> bytes:
    request = inference_pb2.MultiInferenceRequest()
    for signature, method in ((classify, CLASSIFY), (regress, REGRESS)):
        task = request.tasks.add()
        task.model_spec.name = model
        task.model_spec.signature_name = signature
        task.method_name = method
    request.input.example_list.examples.append(example(4.0))
    log = prediction_log_pb2.PredictionLog()
    log.multi_inference_log.request.CopyFrom(request)
    return log.SerializeToString()


def write_warmup(version: Path, records: Sequence[bytes]) -> Path:
    """Writes `records` as the version's TFRecord warmup file; returns its path."""
    folder = version / "assets.extra"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tf_serving_warmup_requests"
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)
    return path
