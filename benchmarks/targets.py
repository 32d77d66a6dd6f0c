"""What the serving benchmark drives: a Target (a server, or a floor) and its Endpoints.

The serving benchmark (serving.py) and the peers (peers.py) both code against `Endpoint` (from
fastserve.tune.load, what its load generators send) and `Target`; the helpers below build and
check TF Serving's half_plus_two request, which every TF Serving-compatible target (fastserve
and the floors) answers.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from fastserve.tune.load import Endpoint, grpc_call, rest_call

MODEL = "half_plus_two"


class Target(Protocol):
    name: str  # e.g. "fastserve", "MLServer 1.7", "Triton 2.x (PyTriton)", "grpcio floor"

    def start(self) -> None: ...  # returns when ready to serve

    def stop(self) -> None: ...

    def endpoints(self, floats: int) -> list[Endpoint]: ...  # the half_plus_two request carrying

    # `floats` float32 values, per protocol

    def check(self, floats: int) -> None: ...  # one real request with a real client;

    # raises unless the answer is 0.5*x+2


# --- helpers for TF Serving-compatible targets ----------------------------------------------


def payload(floats: int) -> np.ndarray:
    """The request's x: `floats` float32 values that print short and exactly in JSON."""
    return (np.arange(floats, dtype=np.float32) % 1000) / np.float32(4)


def predict_request(x: np.ndarray, model: str = MODEL, input_name: str = "x") -> bytes:
    """A serialized tensorflow.serving.PredictRequest for `model` with input `input_name` =
    `x` (float32 tensor_content, as TensorFlow's make_tensor_proto writes a numpy array)."""
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    tensor = request.inputs[input_name]
    tensor.dtype = 1  # DT_FLOAT
    for size in x.shape:
        tensor.tensor_shape.dim.add().size = size
    tensor.tensor_content = np.ascontiguousarray(x, dtype="<f4").tobytes()
    return bytes(request.SerializeToString())


def rest_body(x: np.ndarray) -> bytes:
    """TF Serving's REST Predict body in the row format: {"instances": x}."""
    import orjson

    return bytes(orjson.dumps({"instances": x.tolist()}))


def expect_close(name: str, got: Any, want: np.ndarray) -> None:
    array = np.asarray(got, dtype=np.float32).reshape(-1)
    if array.shape != want.reshape(-1).shape or not np.allclose(array, want.reshape(-1)):
        raise AssertionError(
            f"{name}: wrong answer: got {array[:4]}... ({array.size} values), "
            f"want {want.reshape(-1)[:4]}... ({want.size} values)"
        )


def check_tfs_grpc(endpoint: Endpoint, want: np.ndarray, output: str = "y") -> None:
    """Sends the endpoint's PredictRequest and checks the PredictResponse's `output`."""
    from tensorflow_serving.apis import predict_pb2

    from fastserve.codecs.tensor_proto import to_numpy

    response = predict_pb2.PredictResponse.FromString(grpc_call(endpoint))
    if output not in response.outputs:
        raise AssertionError(f"no output {output!r} in {list(response.outputs)}")
    expect_close(f"gRPC {endpoint.port}", to_numpy(response.outputs[output]), want)


def check_tfs_rest(endpoint: Endpoint, want: np.ndarray) -> None:
    """POSTs the endpoint's body and checks {"predictions": ...}."""
    import orjson

    status, body = rest_call(endpoint)
    if status != 200:
        raise AssertionError(f"REST {endpoint.port}: HTTP {status}: {body[:300]!r}")
    expect_close(f"REST {endpoint.port}", orjson.loads(body)["predictions"], want)
