"""The request tune sends: the signature from the server, the inputs, a serialized Predict."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fastserve.tune.load import Endpoint, grpc_call, grpc_status


class TuneError(Exception):
    """Something the user can act on; tune prints it and exits 2."""


# --- the request -------------------------------------------------------------------------------


def _signature_from_proto(name: str, proto: Any) -> Any:
    from fastserve.dtypes import DType
    from fastserve.types import Signature, TensorInfo

    def info(tensor: Any) -> TensorInfo:
        shape = tensor.tensor_shape
        dims = None if shape.unknown_rank else tuple(int(d.size) for d in shape.dim)
        return TensorInfo(tensor.name, DType(tensor.dtype), dims)

    return Signature(
        name,
        {alias: info(t) for alias, t in proto.inputs.items()},
        {alias: info(t) for alias, t in proto.outputs.items()},
        proto.method_name,
    )


def fetch_signature(target: str, model: str, signature_name: str) -> Any:
    """The signature the load will call, from the server's GetModelMetadata."""
    import grpc

    from fastserve.codecs.tfs_protos import get_model_metadata_pb2, method_path

    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = model
    request.metadata_field.append("signature_def")
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(
            method_path("tensorflow.serving.PredictionService", "GetModelMetadata"),
            request_serializer=get_model_metadata_pb2.GetModelMetadataRequest.SerializeToString,
            response_deserializer=get_model_metadata_pb2.GetModelMetadataResponse.FromString,
        )
        try:
            response = call(request, timeout=30)
        except grpc.RpcError as error:
            raise TuneError(f"GetModelMetadata of {model} failed: {error.details()}") from None
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    name = signature_name or "serving_default"
    if name not in signatures.signature_def:
        known = ", ".join(sorted(signatures.signature_def)) or "none"
        raise TuneError(f"model {model} has no signature {name!r} (it has: {known})")
    return _signature_from_proto(name, signatures.signature_def[name])


def parse_input(text: str) -> tuple[str, tuple[int, ...], str]:
    """`name=shape:dtype`, shape as comma-separated dimensions (-1: the batch dimension
    first, 1 elsewhere), e.g. x=-1,512:float32."""
    try:
        name, rest = text.split("=", 1)
        shape_text, dtype = rest.rsplit(":", 1)
        shape = tuple(int(d) for d in shape_text.split(",") if d.strip())
    except ValueError:
        raise TuneError(
            f"--input {text!r}: expected name=shape:dtype, e.g. x=-1,512:float32"
        ) from None
    return name.strip(), shape, dtype.strip()


def _random(shape: Sequence[int], dtype: Any, rng: np.random.Generator) -> np.ndarray:
    from fastserve.dtypes import DType

    if dtype is DType.DT_STRING:
        return np.full(tuple(shape), b"", dtype=object)
    try:
        numpy_type = dtype.numpy
    except TypeError:
        raise TuneError(f"cannot make values of {dtype.name}: give --input_file") from None
    if numpy_type.kind == "f":
        return rng.standard_normal(tuple(shape)).astype(numpy_type)
    return np.zeros(tuple(shape), dtype=numpy_type)


def _concrete(shape: Sequence[int] | None, rows: int) -> tuple[int, ...]:
    if shape is None:
        return (rows,)
    return tuple(rows if i == 0 and d < 0 else (1 if d < 0 else d) for i, d in enumerate(shape))


def build_inputs(args: argparse.Namespace, signature: Any) -> dict[str, np.ndarray]:
    """The request's tensors: from --input_file, --input, or the signature's own shapes."""
    from fastserve import dtypes
    from fastserve.codecs import rest_json as json_tensors

    rows = args.rows_per_request
    rng = np.random.default_rng(0)
    if args.input_file:
        try:
            doc = json_tensors.parse_object(Path(args.input_file).read_bytes())
            inputs, _ = json_tensors.predict_inputs(doc, signature)
        except OSError as error:
            raise TuneError(f"--input_file: {error}") from None
        except Exception as error:
            raise TuneError(f"--input_file {args.input_file}: {error}") from None
        return inputs
    if args.input:
        inputs = {}
        for text in args.input:
            name, shape, dtype_name = parse_input(text)
            try:
                dtype = dtypes.from_name(dtype_name)
            except ValueError as error:
                raise TuneError(f"--input {text!r}: {error}") from None
            inputs[name] = _random(_concrete(shape, rows), dtype, rng)
        return inputs
    return {
        alias: _random(_concrete(info.shape, rows), info.dtype, rng)
        for alias, info in signature.inputs.items()
    }


def predict_body(model: str, signature_name: str, inputs: dict[str, np.ndarray]) -> bytes:
    """A serialized PredictRequest (not framed)."""
    from fastserve import dtypes
    from fastserve.codecs import tensor_proto as tensors
    from fastserve.codecs.tfs_protos import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    if signature_name:
        request.model_spec.signature_name = signature_name
    for alias, array in inputs.items():
        dtype = dtypes.from_numpy(array.dtype) if array.dtype != object else dtypes.DType.DT_STRING
        tensors.fill_proto(request.inputs[alias], array, dtype, as_content=True)
    return bytes(request.SerializeToString())


def check_predict(endpoint: Endpoint) -> None:
    """One real Predict; raises TuneError with the server's answer unless it is OK."""
    import grpc

    try:
        grpc_call(endpoint)
    except grpc.RpcError as error:
        raise TuneError(f"a Predict with the tuning request failed: {grpc_status(error)}") from None
