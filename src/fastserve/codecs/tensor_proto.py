"""TensorProto <-> numpy, with TensorFlow's rules for typed value fields and tensor_content."""

from __future__ import annotations

import numpy as np

from fastserve.codecs.tfs_protos import tensor_pb2, tensor_shape_pb2
from fastserve.dtypes import NUMPY_MAX_RANK, TENSORFLOW_MAX_RANK, DType
from fastserve.errors import DEFAULT_MAX_REQUEST_BYTES, Code, ServingError, invalid_argument

# The largest tensor a request may declare: the largest message gRPC carries.
# --max_request_bytes by default: what a gRPC message may carry in TF Serving. No tensor of
# a request may decode to more bytes than that.

# Which typed field of a TensorProto carries each dtype (tensorflow/core/framework/tensor.cc).
_VALUE_FIELD: dict[DType, str] = {
    DType.DT_FLOAT: "float_val",
    DType.DT_DOUBLE: "double_val",
    DType.DT_INT32: "int_val",
    DType.DT_INT16: "int_val",
    DType.DT_INT8: "int_val",
    DType.DT_UINT8: "int_val",
    DType.DT_UINT16: "int_val",
    DType.DT_QINT8: "int_val",
    DType.DT_QUINT8: "int_val",
    DType.DT_QINT16: "int_val",
    DType.DT_QUINT16: "int_val",
    DType.DT_QINT32: "int_val",
    DType.DT_INT64: "int64_val",
    DType.DT_UINT32: "uint32_val",
    DType.DT_UINT64: "uint64_val",
    DType.DT_BOOL: "bool_val",
    DType.DT_STRING: "string_val",
    DType.DT_HALF: "half_val",
    DType.DT_BFLOAT16: "half_val",
    DType.DT_COMPLEX64: "scomplex_val",
    DType.DT_COMPLEX128: "dcomplex_val",
}

# Field numbers of the packed fixed-width value fields, which are written straight from the
# array's bytes instead of element by element.
_PACKED_FIXED: dict[DType, tuple[int, str]] = {
    DType.DT_FLOAT: (5, "<f4"),
    DType.DT_DOUBLE: (6, "<f8"),
    DType.DT_COMPLEX64: (9, "<f4"),
    DType.DT_COMPLEX128: (12, "<f8"),
}


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def shape_of(proto: tensor_pb2.TensorProto, name: str = "") -> tuple[int, ...]:
    """The dims of a TensorProto; unknown rank, negative dims or more dims than TensorFlow
    allows cannot make a tensor (TF Serving's answer), and more than numpy holds cannot
    make an array here."""
    shape = proto.tensor_shape
    dims = tuple(dim.size for dim in shape.dim)
    if shape.unknown_rank or len(dims) > TENSORFLOW_MAX_RANK or any(size < 0 for size in dims):
        raise invalid_argument(f"tensor parsing error: {name}")
    if len(dims) > NUMPY_MAX_RANK:
        raise invalid_argument(
            f"tensor parsing error: {name}: {len(dims)} dimensions; this server decodes "
            f"tensors of at most {NUMPY_MAX_RANK} dimensions (numpy's limit)"
        )
    return dims


def to_numpy(
    proto: tensor_pb2.TensorProto, name: str = "", limit: int = DEFAULT_MAX_REQUEST_BYTES
) -> np.ndarray:
    """Decodes a TensorProto. tensor_content becomes a read-only view without a copy.
    A tensor that would take more than `limit` bytes is refused before it is allocated.

    Typed value fields follow TensorFlow: no values means zeros, fewer values than elements
    repeat the last value, more values than elements are cut.
    """
    try:
        dtype = DType(proto.dtype)
        np_dtype = dtype.numpy
    except (ValueError, TypeError):
        raise invalid_argument(f"tensor parsing error: {name}") from None
    dims = shape_of(proto, name)
    count = 1
    for size in dims:
        count *= size
    if count * np_dtype.itemsize > limit:
        # Refused before anything is allocated: a few bytes of shape could ask for terabytes.
        raise ServingError(
            Code.RESOURCE_EXHAUSTED,
            f"tensor parsing error: {name}: shape {list(dims)} needs "
            f"{count * np_dtype.itemsize} bytes, more than a request may carry "
            f"({limit})",
        )
    if proto.tensor_content:
        content = proto.tensor_content
        if dtype is DType.DT_STRING or len(content) != count * np_dtype.itemsize:
            raise invalid_argument(f"tensor parsing error: {name}")
        return np.frombuffer(content, dtype=np_dtype.newbyteorder("<")).reshape(dims)
    field = _VALUE_FIELD.get(dtype)
    if field is None:
        raise invalid_argument(f"tensor parsing error: {name}")
    values = getattr(proto, field)
    if dtype is DType.DT_STRING:
        flat = np.empty(len(values), dtype=object)
        flat[:] = list(values)
    elif dtype in (DType.DT_HALF, DType.DT_BFLOAT16):
        flat = np.asarray(values, dtype=np.uint16).view(np_dtype)
    elif dtype in (DType.DT_COMPLEX64, DType.DT_COMPLEX128):
        pairs = np.asarray(values, dtype=np_dtype.type(0).real.dtype)
        if len(pairs) % 2:
            raise invalid_argument(f"tensor parsing error: {name}")
        flat = pairs.view(np_dtype)
    elif field == "int_val" and np_dtype.itemsize < 4:
        # int_val holds 32-bit values; narrower types wrap as TensorFlow's cast does.
        flat = np.asarray(values, dtype=np.int64).astype(np_dtype)
    else:
        flat = np.asarray(values, dtype=np_dtype)
    return _fill(flat, count, np_dtype).reshape(dims)


def _fill(flat: np.ndarray, count: int, np_dtype: np.dtype) -> np.ndarray:
    have = len(flat)
    if have == count:
        return flat
    if have == 0:
        if np_dtype == np.dtype(object):
            out = np.empty(count, dtype=object)
            out[:] = b""
            return out
        return np.zeros(count, dtype=np_dtype)
    if have > count:
        return flat[:count]
    out = np.empty(count, dtype=np_dtype)
    out[:have] = flat
    out[have:] = flat[-1]
    return out


def _shape_proto(shape: tuple[int, ...]) -> tensor_shape_pb2.TensorShapeProto:
    return tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in shape]
    )


def fill_proto(
    proto: tensor_pb2.TensorProto, array: np.ndarray, dtype: DType, *, as_content: bool
) -> None:
    """Writes `array` into an empty TensorProto as `dtype`.

    With as_content, numeric tensors go into tensor_content (fast, compact); otherwise into
    the typed value fields, as TF Serving does by default.
    """
    proto.dtype = dtype
    proto.tensor_shape.CopyFrom(_shape_proto(array.shape))
    if dtype is DType.DT_STRING:
        proto.string_val.extend(_as_bytes_list(array))
        return
    np_dtype = dtype.numpy
    flat = np.ascontiguousarray(array, dtype=np_dtype).reshape(-1)
    if as_content:
        proto.tensor_content = flat.astype(np_dtype.newbyteorder("<"), copy=False).tobytes()
        return
    packed = _PACKED_FIXED.get(dtype)
    if packed is not None:
        field_number, wire_type = packed
        payload = (
            flat.view(np.float32 if wire_type == "<f4" else np.float64)
            .astype(wire_type, copy=False)
            .tobytes()
        )
        proto.MergeFromString(_varint(field_number << 3 | 2) + _varint(len(payload)) + payload)
        return
    if dtype in (DType.DT_HALF, DType.DT_BFLOAT16):
        proto.half_val.extend(flat.view(np.uint16).tolist())
        return
    getattr(proto, _VALUE_FIELD[dtype]).extend(flat.tolist())


def _as_bytes_list(array: np.ndarray) -> list[bytes]:
    flat = array.reshape(-1)
    if flat.dtype.kind == "S":
        return [bytes(item) for item in flat]
    return [_to_bytes(item) for item in flat.tolist()]


def _to_bytes(item: object) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode("utf-8")
    if isinstance(item, (bytearray, memoryview)):
        return bytes(item)
    raise TypeError(f"string tensor holds a {type(item).__name__}, not bytes or str")


def make_proto(
    array: np.ndarray, dtype: DType, *, as_content: bool = False
) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto()
    fill_proto(proto, array, dtype, as_content=as_content)
    return proto
