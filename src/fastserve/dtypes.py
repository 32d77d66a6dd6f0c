"""Tensor element types: TensorFlow's DataType numbers, their names and their numpy types."""

from __future__ import annotations

import enum

import numpy as np

# The most dimensions a tensor may have: TensorFlow's (TensorShape::MaxDimensions), and
# numpy's (64 since numpy 2, 32 before), which bounds what a numpy array can hold.
TENSORFLOW_MAX_RANK = 254
NUMPY_MAX_RANK = 64 if np.lib.NumpyVersion(np.__version__) >= "2.0.0" else 32


class DType(enum.IntEnum):
    """TensorFlow's DataType enum (tensorflow/core/framework/types.proto), by wire value."""

    DT_INVALID = 0
    DT_FLOAT = 1
    DT_DOUBLE = 2
    DT_INT32 = 3
    DT_UINT8 = 4
    DT_INT16 = 5
    DT_INT8 = 6
    DT_STRING = 7
    DT_COMPLEX64 = 8
    DT_INT64 = 9
    DT_BOOL = 10
    DT_QINT8 = 11
    DT_QUINT8 = 12
    DT_QINT32 = 13
    DT_BFLOAT16 = 14
    DT_QINT16 = 15
    DT_QUINT16 = 16
    DT_UINT16 = 17
    DT_COMPLEX128 = 18
    DT_HALF = 19
    DT_RESOURCE = 20
    DT_VARIANT = 21
    DT_UINT32 = 22
    DT_UINT64 = 23

    @property
    def short_name(self) -> str:
        """TensorFlow's own short name, as its error messages print it ("float", "int64")."""
        return _SHORT_NAMES.get(self, self.name[3:].lower())

    @property
    def numpy(self) -> np.dtype:
        """The numpy type that holds this type's values; strings are object arrays of bytes."""
        found = _NUMPY.get(self)
        if found is not None:
            return found
        if self is DType.DT_BFLOAT16:
            import ml_dtypes  # TensorFlow's own dependency; only bfloat16 needs it

            return np.dtype(ml_dtypes.bfloat16)
        raise TypeError(f"{self.name} has no numpy equivalent")


_SHORT_NAMES = {
    DType.DT_HALF: "half",
    DType.DT_BFLOAT16: "bfloat16",
}

_NUMPY: dict[DType, np.dtype] = {
    DType.DT_FLOAT: np.dtype(np.float32),
    DType.DT_DOUBLE: np.dtype(np.float64),
    DType.DT_INT32: np.dtype(np.int32),
    DType.DT_UINT8: np.dtype(np.uint8),
    DType.DT_INT16: np.dtype(np.int16),
    DType.DT_INT8: np.dtype(np.int8),
    DType.DT_STRING: np.dtype(object),
    DType.DT_COMPLEX64: np.dtype(np.complex64),
    DType.DT_INT64: np.dtype(np.int64),
    DType.DT_BOOL: np.dtype(np.bool_),
    DType.DT_QINT8: np.dtype(np.int8),
    DType.DT_QUINT8: np.dtype(np.uint8),
    DType.DT_QINT32: np.dtype(np.int32),
    DType.DT_QINT16: np.dtype(np.int16),
    DType.DT_QUINT16: np.dtype(np.uint16),
    DType.DT_UINT16: np.dtype(np.uint16),
    DType.DT_COMPLEX128: np.dtype(np.complex128),
    DType.DT_HALF: np.dtype(np.float16),
    DType.DT_UINT32: np.dtype(np.uint32),
    DType.DT_UINT64: np.dtype(np.uint64),
}

# numpy type -> DType, for values a servable returns. bfloat16 has no numpy type of its own;
# TensorFlow hands it out as ml_dtypes.bfloat16, recognised by name.
_FROM_NUMPY: dict[np.dtype, DType] = {
    np.dtype(np.float32): DType.DT_FLOAT,
    np.dtype(np.float64): DType.DT_DOUBLE,
    np.dtype(np.int32): DType.DT_INT32,
    np.dtype(np.uint8): DType.DT_UINT8,
    np.dtype(np.int16): DType.DT_INT16,
    np.dtype(np.int8): DType.DT_INT8,
    np.dtype(object): DType.DT_STRING,
    np.dtype(np.complex64): DType.DT_COMPLEX64,
    np.dtype(np.int64): DType.DT_INT64,
    np.dtype(np.bool_): DType.DT_BOOL,
    np.dtype(np.uint16): DType.DT_UINT16,
    np.dtype(np.complex128): DType.DT_COMPLEX128,
    np.dtype(np.float16): DType.DT_HALF,
    np.dtype(np.uint32): DType.DT_UINT32,
    np.dtype(np.uint64): DType.DT_UINT64,
}

# Names a user may write in a python servable's signature or a config.
_BY_NAME: dict[str, DType] = {
    "float": DType.DT_FLOAT,
    "float32": DType.DT_FLOAT,
    "double": DType.DT_DOUBLE,
    "float64": DType.DT_DOUBLE,
    "half": DType.DT_HALF,
    "float16": DType.DT_HALF,
    "bfloat16": DType.DT_BFLOAT16,
    "int8": DType.DT_INT8,
    "int16": DType.DT_INT16,
    "int32": DType.DT_INT32,
    "int64": DType.DT_INT64,
    "uint8": DType.DT_UINT8,
    "uint16": DType.DT_UINT16,
    "uint32": DType.DT_UINT32,
    "uint64": DType.DT_UINT64,
    "bool": DType.DT_BOOL,
    "string": DType.DT_STRING,
    "bytes": DType.DT_STRING,
    "complex64": DType.DT_COMPLEX64,
    "complex128": DType.DT_COMPLEX128,
}


def from_numpy(dtype: np.dtype) -> DType:
    """The DType for a numpy type; bytes and str arrays are DT_STRING."""
    found = _FROM_NUMPY.get(dtype)
    if found is not None:
        return found
    if dtype.kind in ("S", "U"):
        return DType.DT_STRING
    if dtype.name == "bfloat16":
        return DType.DT_BFLOAT16
    raise TypeError(f"numpy type {dtype} has no TensorFlow equivalent")


def matching(dtype: np.dtype) -> DType | None:
    """The DType for a numpy type, or None where TensorFlow has none."""
    try:
        return from_numpy(dtype)
    except TypeError:
        return None


def short_name_of(dtype: np.dtype) -> str:
    """A numpy type as TF Serving's messages name it ("float"), or numpy's name for a type
    TensorFlow has none for."""
    found = matching(dtype)
    return found.short_name if found is not None else str(dtype)


def from_name(name: str) -> DType:
    """The DType for "float32", "DT_FLOAT", "string" and the like."""
    key = name.strip()
    if key.upper().startswith("DT_") and key.upper() in DType.__members__:
        return DType[key.upper()]
    try:
        return _BY_NAME[key.lower()]
    except KeyError:
        known = ", ".join(sorted(_BY_NAME))
        raise ValueError(f"unknown tensor type {name!r}; use one of: {known}") from None
