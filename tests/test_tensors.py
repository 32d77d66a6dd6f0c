"""TensorProto <-> numpy (fastserve.tensors), checked against TensorFlow's own encoder and decoders.

TensorFlow is the oracle: `tf.make_tensor_proto` for encoding, `tf.make_ndarray` (Python) and
`tf.io.parse_tensor` (C++ `Tensor::FromProto`, what TF Serving runs) for decoding.
"""

from __future__ import annotations

from collections.abc import Callable

import ml_dtypes
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework.tensor_pb2 import TensorProto

from fastserve.codecs import tensor_proto as tensors
from fastserve.dtypes import DType
from fastserve.errors import Code, ServingError

# One sample of every dtype tensors.py supports, with extreme and awkward values.
SAMPLES: dict[DType, np.ndarray] = {
    DType.DT_FLOAT: np.array([[0.0, -1.5, 0.1], [1e-45, np.inf, 3.4e38]], np.float32),
    DType.DT_DOUBLE: np.array([[0.1, -1e300, 5e-324], [np.nan, -np.inf, 2.0**60]], np.float64),
    DType.DT_HALF: np.array([[1.5, -2.0, 65504.0], [6e-8, -0.0, np.inf]], np.float16),
    DType.DT_BFLOAT16: np.array([[1.5, -2.0, 3e38], [1e-38, 0.0, -7.0]], ml_dtypes.bfloat16),
    DType.DT_INT8: np.array([[-128, 0, 127], [1, -1, 2]], np.int8),
    DType.DT_INT16: np.array([[-32768, 0, 32767], [1, -1, 2]], np.int16),
    DType.DT_INT32: np.array([[-(2**31), 0, 2**31 - 1], [1, -1, 2]], np.int32),
    DType.DT_INT64: np.array([[-(2**63), 0, 2**63 - 1], [1, -1, 2**40]], np.int64),
    DType.DT_UINT8: np.array([[0, 255, 1], [128, 2, 3]], np.uint8),
    DType.DT_UINT16: np.array([[0, 65535, 1], [32768, 2, 3]], np.uint16),
    DType.DT_UINT32: np.array([[0, 2**32 - 1, 1], [2**31, 2, 3]], np.uint32),
    DType.DT_UINT64: np.array([[0, 2**64 - 1, 1], [2**63, 2, 3]], np.uint64),
    DType.DT_BOOL: np.array([[True, False, True], [False, False, True]]),
    DType.DT_STRING: np.array([[b"a", b"", b"\xff\x00"], [b"long " * 20, b"\n", b"z"]], object),
    DType.DT_COMPLEX64: np.array([[1 + 2j, -3.5 - 0.25j, 0j], [1e30j, -1, 2]], np.complex64),
    DType.DT_COMPLEX128: np.array([[1 + 2j, -3.5 - 0.25j, 0j], [1e300j, -1, 2]], np.complex128),
}
DTYPES = list(SAMPLES)
NUMERIC = [dtype for dtype in DTYPES if dtype is not DType.DT_STRING]

# The typed value field TensorFlow reads for each dtype (tensorflow/core/framework/tensor.cc).
VALUE_FIELD: dict[DType, str] = {
    DType.DT_FLOAT: "float_val",
    DType.DT_DOUBLE: "double_val",
    DType.DT_HALF: "half_val",
    DType.DT_BFLOAT16: "half_val",
    DType.DT_INT8: "int_val",
    DType.DT_INT16: "int_val",
    DType.DT_INT32: "int_val",
    DType.DT_INT64: "int64_val",
    DType.DT_UINT8: "int_val",
    DType.DT_UINT16: "int_val",
    DType.DT_UINT32: "uint32_val",
    DType.DT_UINT64: "uint64_val",
    DType.DT_BOOL: "bool_val",
    DType.DT_STRING: "string_val",
    DType.DT_COMPLEX64: "scomplex_val",
    DType.DT_COMPLEX128: "dcomplex_val",
}


def ids(dtype: DType) -> str:
    return dtype.name


def tf_decode(proto: TensorProto) -> np.ndarray:
    """TensorFlow's C++ decoder (Tensor::FromProto), the one TF Serving uses."""
    return tf.io.parse_tensor(proto.SerializeToString(), out_type=tf.as_dtype(proto.dtype)).numpy()


def assert_same(actual: np.ndarray, expected: np.ndarray) -> None:
    """Same dtype, same shape, same values (NaN equal to NaN)."""
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    if expected.dtype == np.dtype(object):
        assert actual.tolist() == expected.tolist()
    else:
        np.testing.assert_array_equal(actual, expected)


def proto_of(dtype: DType | int, dims: list[int], **fields: object) -> TensorProto:
    """A TensorProto built field by field, as a client might send it."""
    proto = TensorProto(dtype=dtype)
    for size in dims:
        proto.tensor_shape.dim.add(size=size)
    for name, value in fields.items():
        if name == "tensor_content":
            assert isinstance(value, bytes)
            proto.tensor_content = value
        else:
            assert isinstance(value, list)
            getattr(proto, name).extend(value)
    return proto


def raw_values(dtype: DType, values: list[object]) -> list[object]:
    """`values` as they sit in the dtype's typed field (half bits, complex pairs)."""
    if dtype in (DType.DT_HALF, DType.DT_BFLOAT16):
        return np.array(values, dtype.numpy).view(np.uint16).tolist()
    if dtype in (DType.DT_COMPLEX64, DType.DT_COMPLEX128):
        return np.array(values, dtype.numpy).view(dtype.numpy.type(0).real.dtype).tolist()
    return list(values)


def parsing_error(call: Callable[[], object]) -> ServingError:
    with pytest.raises(ServingError) as caught:
        call()
    assert caught.value.code is Code.INVALID_ARGUMENT
    return caught.value


# --- round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=ids)
def test_typed_fields_round_trip(dtype: DType) -> None:
    array = SAMPLES[dtype]
    proto = tensors.make_proto(array, dtype, as_content=False)

    assert proto.dtype == dtype
    assert [dim.size for dim in proto.tensor_shape.dim] == list(array.shape)
    assert not proto.tensor_content
    assert len(getattr(proto, VALUE_FIELD[dtype])) == len(raw_values(dtype, array.ravel().tolist()))
    assert_same(tensors.to_numpy(proto, "x"), array)


@pytest.mark.parametrize("dtype", NUMERIC, ids=ids)
def test_tensor_content_round_trip(dtype: DType) -> None:
    array = SAMPLES[dtype]
    proto = tensors.make_proto(array, dtype, as_content=True)

    assert proto.dtype == dtype
    assert [dim.size for dim in proto.tensor_shape.dim] == list(array.shape)
    assert len(proto.tensor_content) == array.size * array.dtype.itemsize
    assert not getattr(proto, VALUE_FIELD[dtype])
    assert_same(tensors.to_numpy(proto, "x"), array)


def test_strings_ignore_as_content_and_use_string_val() -> None:
    array = SAMPLES[DType.DT_STRING]
    proto = tensors.make_proto(array, DType.DT_STRING, as_content=True)

    assert not proto.tensor_content
    assert list(proto.string_val) == array.ravel().tolist()


@pytest.mark.parametrize("as_content", [False, True], ids=["typed", "content"])
@pytest.mark.parametrize("dtype", DTYPES, ids=ids)
def test_tensorflow_decodes_our_protos(dtype: DType, as_content: bool) -> None:
    array = SAMPLES[dtype]
    proto = tensors.make_proto(array, dtype, as_content=as_content)

    assert_same(tf.make_ndarray(proto), array)
    assert_same(tf_decode(proto), array)


@pytest.mark.parametrize("dtype", DTYPES, ids=ids)
def test_we_decode_tensorflow_protos(dtype: DType) -> None:
    array = SAMPLES[dtype]
    assert_same(tensors.to_numpy(tf.make_tensor_proto(array), "x"), array)


@pytest.mark.parametrize("dtype", DTYPES, ids=ids)
def test_protos_equal_tensorflow_encoding(dtype: DType) -> None:
    """Where TensorFlow writes tensor_content we match it with as_content, else field by field."""
    array = SAMPLES[dtype]
    theirs = tf.make_tensor_proto(array)
    ours = tensors.make_proto(array, dtype, as_content=bool(theirs.tensor_content))
    # Ours is fastserve's TensorProto class, theirs TensorFlow's: compared on the wire.
    assert TensorProto.FromString(ours.SerializeToString()) == theirs


@pytest.mark.parametrize("dtype", DTYPES, ids=ids)
def test_scalars_equal_tensorflow_encoding(dtype: DType) -> None:
    """TensorFlow writes a single element into the typed field; so do we, bit for bit."""
    scalar = SAMPLES[dtype].reshape(-1)[1:2].reshape(())
    theirs = tf.make_tensor_proto(scalar)

    assert TensorProto.FromString(tensors.make_proto(scalar, dtype).SerializeToString()) == theirs
    assert tensors.make_proto(scalar, dtype).SerializeToString() == theirs.SerializeToString()
    assert_same(tensors.to_numpy(theirs, "x"), scalar)


@pytest.mark.parametrize(
    "dtype", [DType.DT_FLOAT, DType.DT_DOUBLE, DType.DT_COMPLEX64, DType.DT_COMPLEX128], ids=ids
)
def test_packed_fields_read_back_as_repeated_values(dtype: DType) -> None:
    """The hand-written packed encoding of float, double and complex fields parses as protobuf's."""
    array = SAMPLES[dtype]
    proto = tensors.make_proto(array, dtype)
    expected = proto_of(
        dtype, list(array.shape), **{VALUE_FIELD[dtype]: raw_values(dtype, array.ravel().tolist())}
    )
    reparsed = TensorProto.FromString(proto.SerializeToString())
    np.testing.assert_array_equal(
        np.array(getattr(reparsed, VALUE_FIELD[dtype])),
        np.array(getattr(expected, VALUE_FIELD[dtype])),
    )


@pytest.mark.parametrize("as_content", [False, True], ids=["typed", "content"])
@pytest.mark.parametrize("shape", [(0,), (2, 0, 3), ()], ids=str)
def test_empty_and_scalar_shapes_round_trip(shape: tuple[int, ...], as_content: bool) -> None:
    array = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape) + 0.5
    proto = tensors.make_proto(array, DType.DT_FLOAT, as_content=as_content)

    assert_same(tensors.to_numpy(proto, "x"), array)
    assert_same(tf_decode(proto), array)


def test_make_proto_converts_to_the_requested_dtype() -> None:
    proto = tensors.make_proto(np.array([1.5, 2.5]), DType.DT_FLOAT)  # float64 in, float out
    assert proto.dtype == DType.DT_FLOAT
    assert list(proto.float_val) == [1.5, 2.5]


def test_make_proto_encodes_str_arrays_as_utf8() -> None:
    proto = tensors.make_proto(np.array([["é", "a"]]), DType.DT_STRING)
    assert list(proto.string_val) == ["é".encode(), b"a"]
    assert_same(tensors.to_numpy(proto, "x"), np.array([["é".encode(), b"a"]], object))


def test_make_proto_rejects_non_string_objects_for_strings() -> None:
    with pytest.raises(TypeError, match="int"):
        tensors.make_proto(np.array([b"a", 3], object), DType.DT_STRING)


# --- TensorFlow's fill rules for typed value fields ------------------------------------------

# Two distinct values per dtype, as numpy scalars of the dtype.
FILL_VALUES: dict[DType, list[object]] = {
    dtype: SAMPLES[dtype].ravel()[[1, 0]].tolist() for dtype in DTYPES
}


@pytest.mark.parametrize("dtype", DTYPES, ids=ids)
def test_no_values_mean_zeros(dtype: DType) -> None:
    proto = proto_of(dtype, [2, 3])
    zero: object = b"" if dtype is DType.DT_STRING else 0
    expected = np.full((2, 3), zero, dtype=dtype.numpy)

    assert_same(tensors.to_numpy(proto, "x"), expected)
    assert_same(tf_decode(proto), expected)


@pytest.mark.parametrize("dtype", DTYPES, ids=ids)
def test_fewer_values_repeat_the_last(dtype: DType) -> None:
    first, last = FILL_VALUES[dtype]
    proto = proto_of(dtype, [2, 3], **{VALUE_FIELD[dtype]: raw_values(dtype, [first, last])})
    expected = np.array([first, last, last, last, last, last], dtype=dtype.numpy).reshape(2, 3)

    assert_same(tensors.to_numpy(proto, "x"), expected)
    assert_same(tf_decode(proto), expected)


@pytest.mark.parametrize("dtype", DTYPES, ids=ids)
def test_single_value_is_broadcast(dtype: DType) -> None:
    value = SAMPLES[dtype].reshape(-1)[1:2].reshape(())
    proto = tf.make_tensor_proto(value, shape=[2, 2])  # TensorFlow writes one typed value
    assert len(getattr(proto, VALUE_FIELD[dtype])) == len(raw_values(dtype, [value.item()]))
    expected = np.full((2, 2), value.item(), dtype=dtype.numpy)

    assert_same(tensors.to_numpy(proto, "x"), expected)
    assert_same(tf_decode(proto), expected)


@pytest.mark.parametrize("dtype", DTYPES, ids=ids)
def test_extra_values_are_cut(dtype: DType) -> None:
    first, second = FILL_VALUES[dtype]
    proto = proto_of(dtype, [1], **{VALUE_FIELD[dtype]: raw_values(dtype, [first, second])})
    expected = np.array([first], dtype=dtype.numpy)

    assert_same(tensors.to_numpy(proto, "x"), expected)
    assert_same(tf_decode(proto), expected)


def test_tensor_content_wins_over_typed_values() -> None:
    proto = proto_of(
        DType.DT_FLOAT, [2], float_val=[9.0], tensor_content=np.float32([1, 2]).tobytes()
    )
    expected = np.float32([1, 2])

    assert_same(tensors.to_numpy(proto, "x"), expected)
    assert_same(tf_decode(proto), expected)


# --- zero copy ---------------------------------------------------------------------------------


def _owner(array: np.ndarray) -> object:
    base: object = array
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    return base


@pytest.mark.parametrize("dtype", NUMERIC, ids=ids)
def test_tensor_content_is_decoded_without_a_copy(dtype: DType) -> None:
    proto = tensors.make_proto(SAMPLES[dtype], dtype, as_content=True)
    array = tensors.to_numpy(proto, "x")

    assert not array.flags.writeable
    assert not array.flags.owndata
    owner = _owner(array)
    assert isinstance(owner, bytes)
    assert owner == proto.tensor_content
    assert np.shares_memory(array, np.frombuffer(owner, dtype=np.uint8))


# --- malformed protos --------------------------------------------------------------------------


@pytest.mark.parametrize("extra", [-4, -1, 1, 4], ids=lambda n: f"{n:+d}bytes")
def test_tensor_content_of_the_wrong_length(extra: int) -> None:
    content = np.float32([1, 2, 3]).tobytes()
    content = content[:extra] if extra < 0 else content + b"\0" * extra
    proto = proto_of(DType.DT_FLOAT, [3], tensor_content=content)

    assert parsing_error(lambda: tensors.to_numpy(proto, "x")).message == "tensor parsing error: x"
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf_decode(proto)


def test_tensor_content_for_more_elements_than_the_shape() -> None:
    proto = proto_of(DType.DT_INT64, [2, 2], tensor_content=np.int64([1, 2, 3, 4, 5]).tobytes())
    assert parsing_error(lambda: tensors.to_numpy(proto, "in")).message == (
        "tensor parsing error: in"
    )


def test_string_tensor_with_tensor_content() -> None:
    proto = proto_of(DType.DT_STRING, [1], tensor_content=b"\x01a")
    assert parsing_error(lambda: tensors.to_numpy(proto, "x")).message == "tensor parsing error: x"


@pytest.mark.parametrize(
    "dtype",
    [99, DType.DT_INVALID, DType.DT_RESOURCE, DType.DT_VARIANT],
    ids=["unknown99", "DT_INVALID", "DT_RESOURCE", "DT_VARIANT"],
)
def test_unknown_or_unsupported_dtype(dtype: int) -> None:
    proto = proto_of(dtype, [1])
    assert parsing_error(lambda: tensors.to_numpy(proto, "x")).message == "tensor parsing error: x"


@pytest.mark.parametrize("dims", [[-1], [2, -3]], ids=str)
def test_negative_dims_are_invalid_argument(dims: list[int]) -> None:
    proto = proto_of(DType.DT_FLOAT, dims, float_val=[1.0])
    parsing_error(lambda: tensors.to_numpy(proto, "x"))
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf_decode(proto)


def test_negative_dims_say_tensor_parsing_error() -> None:
    proto = proto_of(DType.DT_FLOAT, [-1], float_val=[1.0])
    assert parsing_error(lambda: tensors.to_numpy(proto, "x")).message == "tensor parsing error: x"


def test_unknown_rank_is_invalid_argument() -> None:
    proto = proto_of(DType.DT_FLOAT, [], float_val=[1.0])
    proto.tensor_shape.unknown_rank = True
    parsing_error(lambda: tensors.to_numpy(proto, "x"))


def test_shape_of_reads_dims() -> None:
    assert tensors.shape_of(proto_of(DType.DT_FLOAT, [2, 0, 5])) == (2, 0, 5)
    assert tensors.shape_of(proto_of(DType.DT_FLOAT, [])) == ()
