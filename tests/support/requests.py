"""The requests end-to-end tests send: a PredictRequest builder and the inputs most tests use."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from google.protobuf import wrappers_pb2
from tensorflow_serving.apis import predict_pb2


def predict_request(
    name: str,
    inputs: dict[str, np.ndarray],
    *,
    version: int | None = None,
    label: str | None = None,
    signature: str = "",
    output_filter: tuple[str, ...] = (),
) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    if version is not None:
        request.model_spec.version.CopyFrom(wrappers_pb2.Int64Value(value=version))
    if label is not None:
        request.model_spec.version_label = label
    if signature:
        request.model_spec.signature_name = signature
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    request.output_filter.extend(output_filter)
    return request


# half_plus_two's input in most tests: version 1 (0.5x+2) answers [2.5, 3.0, 4.5], version 2
# (0.5x+3) [3.5, 4.0, 5.5].
X = np.array([1.0, 2.0, 5.0], dtype=np.float32)
