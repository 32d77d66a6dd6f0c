"""TF Serving's REST JSON rules (fastserve.json_tensors): parsing, row and columnar requests,
per-dtype value rules, and response bodies.

Expected messages are TF Serving's wording (util/json_tensor.cc).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import ml_dtypes
import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fastserve.codecs import rest_json as jt
from fastserve.codecs.rest_json import Format
from fastserve.dtypes import DType
from fastserve.errors import Code, ServingError
from fastserve.types import Signature, TensorInfo


def signature(**inputs: DType) -> Signature:
    return Signature(
        "serving_default",
        {alias: TensorInfo(f"{alias}:0", dtype, None) for alias, dtype in inputs.items()},
        {"y": TensorInfo("y:0", DType.DT_FLOAT, None)},
    )


ONE_INT = signature(x=DType.DT_INT32)
ONE_FLOAT = signature(x=DType.DT_FLOAT)
ONE_STRING = signature(s=DType.DT_STRING)
TWO = signature(a=DType.DT_INT32, b=DType.DT_STRING)


def error(call: Callable[[], object], code: Code = Code.INVALID_ARGUMENT) -> str:
    """The message of the ServingError `call` raises, after checking its code."""
    with pytest.raises(ServingError) as caught:
        call()
    assert caught.value.code is code, caught.value
    return caught.value.message


def pretty(value: Any) -> str:
    """rapidjson PrettyWriter's layout (4-space indent), as TF Serving quotes JSON in errors."""
    return json.dumps(value, indent=4)


def row_error(index: int, inner: str, key: str | None = None) -> str:
    where = f" key: {key}" if key is not None else ""
    return (
        f"Failed to process element: {index}{where} of 'instances' list. "
        f"Error: INVALID_ARGUMENT: {inner}"
    )


def assert_arrays(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert actual.keys() == expected.keys()
    for name, want in expected.items():
        got = actual[name]
        assert got.dtype == want.dtype, name
        assert got.shape == want.shape, name
        assert got.tolist() == want.tolist(), name


# --- parse_object ------------------------------------------------------------------------------


def test_empty_body() -> None:
    assert error(lambda: jt.parse_object(b"")) == "JSON Parse error: The document is empty"


@pytest.mark.parametrize(
    ("body", "offset"),
    [(b"instances = [1, 2]", 0), (b'{"a": }', 6), (b'{"instances": [1, 2}', 19)],
)
def test_malformed_json(body: bytes, offset: int) -> None:
    message = error(lambda: jt.parse_object(body))
    assert message.startswith("JSON Parse error: ")
    assert message.endswith(f" at offset: {offset}")


def test_malformed_json_uses_rapidjson_wording() -> None:
    assert error(lambda: jt.parse_object(b"instances = [1, 2]")) == (
        "JSON Parse error: Invalid value. at offset: 0"
    )
    assert error(lambda: jt.parse_object(b"   ")) == (
        "JSON Parse error: The document is empty. at offset: 3"
    )
    assert error(lambda: jt.parse_object(b'{"a": [1, 2}')) == (
        "JSON Parse error: Missing a comma or ']' after an array element. at offset: 11"
    )
    assert error(lambda: jt.parse_object(b'{"a": "\xff"}')) == (
        "JSON Parse error: Invalid encoding in string. at offset: 7"
    )


@pytest.mark.parametrize("doc", [[1, 2], "x", 3, None, True], ids=repr)
def test_body_that_is_not_an_object(doc: Any) -> None:
    body = json.dumps(doc).encode()
    assert error(lambda: jt.parse_object(body)) == f"JSON Value: {pretty(doc)} Is not object"


def test_not_an_object_message_is_pretty_printed() -> None:
    assert error(lambda: jt.parse_object(b"[1,[2]]")) == (
        "JSON Value: [\n    1,\n    [\n        2\n    ]\n] Is not object"
    )


def test_object_body_parses() -> None:
    assert jt.parse_object(b' {"instances": [1.5, "a"], "x": {}} ') == {
        "instances": [1.5, "a"],
        "x": {},
    }


def test_nan_and_infinity_are_accepted_in_bodies() -> None:
    doc = jt.parse_object(b'{"instances": [NaN, Infinity, -Infinity, Inf, -Inf]}')
    values = doc["instances"]
    assert math.isnan(values[0]) and values[1:] == [math.inf, -math.inf, math.inf, -math.inf]


# --- signature_name ----------------------------------------------------------------------------


def test_signature_name_defaults_to_empty() -> None:
    assert jt.signature_name({"instances": [1]}) == ""


def test_signature_name_is_read() -> None:
    assert jt.signature_name({"signature_name": "classify", "instances": [1]}) == "classify"


@pytest.mark.parametrize("name", [1, None, ["a"], {"a": 1}, True], ids=repr)
def test_signature_name_must_be_a_string(name: Any) -> None:
    doc = {"signature_name": name, "instances": [1]}
    assert error(lambda: jt.signature_name(doc)) == (
        f"JSON Value: {pretty(doc)} not formatted correctly. "
        "'signature_name' key must be a string value."
    )


# --- instances / inputs selection --------------------------------------------------------------


def test_both_instances_and_inputs() -> None:
    doc = {"instances": [1], "inputs": [1]}
    assert error(lambda: jt.predict_inputs(doc, ONE_INT)) == (
        f"JSON Value: {pretty(doc)} Not formatted correctly expecting only one of 'inputs' or "
        "'instances' keys to exist "
    )


def test_neither_instances_nor_inputs() -> None:
    doc = {"signature_name": "", "instance": [1]}
    assert error(lambda: jt.predict_inputs(doc, ONE_INT)) == "Missing 'inputs' or 'instances' key"


@pytest.mark.parametrize("instances", [1, "a", {"x": 1}, None], ids=repr)
def test_instances_must_be_a_list(instances: Any) -> None:
    doc = {"instances": instances}
    assert error(lambda: jt.predict_inputs(doc, ONE_INT)) == (
        f"JSON Value: {pretty(doc)} Excepting 'instances' to be an list/array"
    )


def test_instances_must_not_be_empty() -> None:
    doc = {"instances": []}
    assert error(lambda: jt.predict_inputs(doc, ONE_INT)) == (
        "JSON Value: {\n    \"instances\": []\n} No values in 'instances' array"
    )


def test_signature_without_inputs() -> None:
    empty = Signature("serving_default", {}, {})
    assert error(lambda: jt.predict_inputs({"instances": [1]}, empty)) == (
        "Failed to get input map for signature: DEFAULT"
    )
    named = jt.predict_inputs
    assert error(lambda: named({"instances": [1]}, empty, requested_signature="mine")) == (
        "Failed to get input map for signature: mine"
    )


def test_extra_top_level_keys_are_ignored() -> None:
    arrays, fmt = jt.predict_inputs({"instances": [1], "outputs": "?", "x": 2}, ONE_INT)
    assert fmt is Format.ROW
    assert_arrays(arrays, {"x": np.int32([1])})


# --- row format --------------------------------------------------------------------------------


def test_row_plain_list_for_one_input() -> None:
    arrays, fmt = jt.predict_inputs({"instances": [[1, 2], [3, 4], [5, 6]]}, ONE_INT)
    assert fmt is Format.ROW
    assert_arrays(arrays, {"x": np.int32([[1, 2], [3, 4], [5, 6]])})


def test_row_scalar_instances_make_a_batch_vector() -> None:
    arrays, _ = jt.predict_inputs({"instances": [1.5, 2, -3]}, ONE_FLOAT)
    assert_arrays(arrays, {"x": np.float32([1.5, 2, -3])})


def test_row_objects_for_several_inputs() -> None:
    doc = {"instances": [{"a": [1, 2], "b": "p"}, {"b": {"b64": "cQ=="}, "a": [3, 4]}]}
    arrays, fmt = jt.predict_inputs(doc, TWO)
    assert fmt is Format.ROW
    assert_arrays(
        arrays, {"a": np.int32([[1, 2], [3, 4]]), "b": np.array([b"p", b"q"], dtype=object)}
    )


def test_row_objects_for_one_input() -> None:
    arrays, _ = jt.predict_inputs({"instances": [{"x": 1}, {"x": 2}]}, ONE_INT)
    assert_arrays(arrays, {"x": np.int32([1, 2])})


def test_row_b64_objects_are_values_not_named_inputs() -> None:
    doc = {"instances": [{"b64": "AP8="}, "b", {"b64": ""}]}
    arrays, _ = jt.predict_inputs(doc, ONE_STRING)
    assert_arrays(arrays, {"s": np.array([b"\x00\xff", b"b", b""], dtype=object)})


def test_row_plain_list_with_several_inputs() -> None:
    assert error(lambda: jt.predict_inputs({"instances": [1, 2]}, TWO)) == (
        "instances is a plain list, but expecting list of objects as multiple input tensors "
        "required as per tensorinfo_map"
    )


def test_row_object_after_values() -> None:
    assert error(lambda: jt.predict_inputs({"instances": [1, {"x": 2}]}, ONE_INT)) == (
        "Expecting value/list but got object at item 1 of input list"
    )


def test_row_value_after_objects() -> None:
    doc = {"instances": [{"x": 1}, {"x": 2}, [3]]}
    assert error(lambda: jt.predict_inputs(doc, ONE_INT)) == (
        "Expecting object but got list at item 2 of input list"
    )


def test_row_ragged_size() -> None:
    doc = {"instances": [[1, 2], [3, 4], [5, 6, 7]]}
    assert error(lambda: jt.predict_inputs(doc, ONE_INT)) == row_error(
        2, "Expecting tensor size: 2 but got: 3"
    )


def test_row_same_size_different_shape() -> None:
    doc = {"instances": [[1, 2], [3, 4], [[5, 6]]]}
    assert error(lambda: jt.predict_inputs(doc, ONE_INT)) == row_error(
        2, "Expecting shape [2] but got: [1,2]"
    )


def test_row_scalar_then_list() -> None:
    doc = {"instances": [1, [2]]}
    assert error(lambda: jt.predict_inputs(doc, ONE_INT)) == row_error(
        1, "Expecting shape [] but got: [1]"
    )


def test_row_ragged_inside_one_instance() -> None:
    doc = {"instances": [[[1, 2], [3, 4]], [[1, 2], [3]]]}
    assert error(lambda: jt.predict_inputs(doc, ONE_INT)) == row_error(
        1, "Encountered list at unexpected size: 1 at level: 1 expected size: 2"
    )


def test_row_bad_value_names_its_instance() -> None:
    doc = {"instances": [1, 2, "three"]}
    assert error(lambda: jt.predict_inputs(doc, ONE_INT)) == row_error(
        2, 'JSON Value: "three" Type: String is not of expected type: int32'
    )


def test_row_bad_value_names_its_instance_and_key() -> None:
    doc = {"instances": [{"a": 1, "b": "x"}, {"a": 2.5, "b": "y"}]}
    assert error(lambda: jt.predict_inputs(doc, TWO)) == row_error(
        1, "JSON Value: 2.5 Type: Number is not of expected type: int32", key="a"
    )


def test_row_ragged_named_input() -> None:
    doc = {"instances": [{"a": [1], "b": "x"}, {"a": [1, 2], "b": "y"}]}
    assert error(lambda: jt.predict_inputs(doc, TWO)) == row_error(
        1, "Expecting tensor size: 1 but got: 2", key="a"
    )


def test_row_unknown_named_input() -> None:
    doc = {"instances": [{"a": 1, "b": "x", "c": 3}]}
    assert error(lambda: jt.predict_inputs(doc, TWO)) == row_error(
        0, "JSON object: does not have named input: c", key="c"
    )


def test_row_missing_named_input() -> None:
    doc = {"instances": [{"a": 1, "b": "x"}, {"a": 2}]}
    assert error(lambda: jt.predict_inputs(doc, TWO)) == (
        "Failed to process element: 1 of 'instances' list. JSON object: "
        '{\n    "a": 2\n} keys must be equal to: a,b'
    )


# --- columnar format ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(5, np.int32(5)), ([1, 2], np.int32([1, 2])), ([[1], [2]], np.int32([[1], [2]]))],
    ids=["scalar", "vector", "matrix"],
)
def test_columnar_bare_value_for_one_input(value: Any, expected: np.ndarray) -> None:
    arrays, fmt = jt.predict_inputs({"inputs": value}, ONE_INT)
    assert fmt is Format.COLUMNAR
    assert_arrays(arrays, {"x": np.asarray(expected)})


def test_columnar_bare_b64_object_for_one_input() -> None:
    arrays, _ = jt.predict_inputs({"inputs": {"b64": "aGk="}}, ONE_STRING)
    assert_arrays(arrays, {"s": np.array(b"hi", dtype=object)})


def test_columnar_object_with_every_input() -> None:
    doc = {"inputs": {"b": [["p", "q"]], "a": 7}}
    arrays, fmt = jt.predict_inputs(doc, TWO)
    assert fmt is Format.COLUMNAR
    assert_arrays(arrays, {"a": np.int32(7), "b": np.array([[b"p", b"q"]], dtype=object)})


def test_columnar_extra_keys_are_ignored() -> None:
    arrays, _ = jt.predict_inputs({"inputs": {"x": [1, 2], "extra": "?"}}, ONE_INT)
    assert_arrays(arrays, {"x": np.int32([1, 2])})


@pytest.mark.parametrize(
    ("inputs", "sig", "missing"),
    [({"y": [1]}, ONE_INT, "x"), ({"a": [1]}, TWO, "b"), ({}, TWO, "a")],
    ids=["one-input", "second", "empty-object"],
)
def test_columnar_missing_named_input(inputs: dict[str, Any], sig: Signature, missing: str) -> None:
    assert error(lambda: jt.predict_inputs({"inputs": inputs}, sig)) == (
        f"Missing named input: {missing} in 'inputs' object."
    )


def test_columnar_plain_value_with_several_inputs() -> None:
    assert error(lambda: jt.predict_inputs({"inputs": [1, 2]}, TWO)) == (
        "inputs is a plain value/list, but expecting an object as multiple input tensors "
        "required as per tensorinfo_map"
    )


def test_columnar_value_errors_are_not_wrapped() -> None:
    assert error(lambda: jt.predict_inputs({"inputs": {"a": ["x"], "b": "y"}}, TWO)) == (
        'JSON Value: "x" Type: String is not of expected type: int32'
    )


# --- value rules per dtype ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [DType.DT_FLOAT, DType.DT_DOUBLE], ids=lambda d: d.name)
def test_float_accepts_numbers(dtype: DType) -> None:
    array = jt.to_array([[1, -2.5], [0, 1e-3]], dtype)
    assert array.dtype == dtype.numpy
    assert array.tolist() == np.array([[1, -2.5], [0, 1e-3]], dtype.numpy).tolist()


def test_float_accepts_non_finite_numbers() -> None:
    array = jt.to_array([math.nan, math.inf, -math.inf], DType.DT_FLOAT)
    assert np.isnan(array[0]) and array[1:].tolist() == [math.inf, -math.inf]


@pytest.mark.parametrize(
    ("value", "kind"),
    [(True, "True"), (False, "False"), ("1.5", "String"), (None, "Null"), ({"a": 1}, "Object")],
    ids=repr,
)
@pytest.mark.parametrize("dtype", [DType.DT_FLOAT, DType.DT_DOUBLE], ids=lambda d: d.name)
def test_float_rejects_non_numbers(value: Any, kind: str, dtype: DType) -> None:
    for doc in (value, [value], [[value], [value]]):
        assert error(lambda doc=doc: jt.to_array(doc, dtype)) == (
            f"JSON Value: {pretty(value)} Type: {kind} is not of expected type: {dtype.short_name}"
        )


@pytest.mark.parametrize("value", [1.5, 1.0, -0.5, 1e300], ids=repr)
@pytest.mark.parametrize("dtype", [DType.DT_INT32, DType.DT_INT64], ids=lambda d: d.name)
def test_int_rejects_fractions(value: float, dtype: DType) -> None:
    assert error(lambda: jt.to_array([1, value], dtype)) == (
        f"JSON Value: {pretty(value)} Type: Number is not of expected type: {dtype.short_name}"
    )


@pytest.mark.parametrize(
    ("value", "kind"), [(True, "True"), ("1", "String"), (None, "Null")], ids=repr
)
def test_int_rejects_non_numbers(value: Any, kind: str) -> None:
    assert error(lambda: jt.to_array(value, DType.DT_INT32)) == (
        f"JSON Value: {pretty(value)} Type: {kind} is not of expected type: int32"
    )


def test_bool_accepts_true_and_false() -> None:
    array = jt.to_array([[True, False], [False, True]], DType.DT_BOOL)
    assert array.dtype == np.bool_
    assert array.tolist() == [[True, False], [False, True]]


@pytest.mark.parametrize(
    ("value", "kind"), [(1, "Number"), (0, "Number"), ("true", "String"), (None, "Null")], ids=repr
)
def test_bool_rejects_everything_else(value: Any, kind: str) -> None:
    assert error(lambda: jt.to_array([True, value], DType.DT_BOOL)) == (
        f"JSON Value: {pretty(value)} Type: {kind} is not of expected type: bool"
    )


@pytest.mark.parametrize(
    ("dtype", "low", "high"),
    [
        (DType.DT_INT32, -(2**31), 2**31 - 1),
        (DType.DT_INT64, -(2**63), 2**63 - 1),
        (DType.DT_UINT32, 0, 2**32 - 1),
        (DType.DT_UINT64, 0, 2**64 - 1),
    ],
    ids=lambda v: v.name if isinstance(v, DType) else str(v),
)
def test_integer_ranges(dtype: DType, low: int, high: int) -> None:
    array = jt.to_array([low, high], dtype)
    assert array.dtype == dtype.numpy
    assert array.tolist() == [low, high]
    for outside in (low - 1, high + 1):
        assert error(lambda outside=outside: jt.to_array([low, outside], dtype)) == (
            f"JSON Value: {outside} Type: Number is not of expected type: {dtype.short_name}"
        )


@pytest.mark.parametrize("value", [2**24 - 1, -(2**24 - 1)], ids=str)
def test_float32_keeps_exact_integers(value: int) -> None:
    assert jt.to_array([value], DType.DT_FLOAT).tolist() == [float(value)]


@pytest.mark.parametrize("value", [2**24, -(2**24), 2**24 + 1, 2**40], ids=str)
def test_float32_rejects_integers_it_cannot_hold_exactly(value: int) -> None:
    assert error(lambda: jt.to_array([1, value], DType.DT_FLOAT)) == (
        f"Cannot convert JSON value: {value} to float without loss of precision."
    )


def test_double_precision_limit() -> None:
    assert jt.to_array([2**53 - 1], DType.DT_DOUBLE).tolist() == [2**53 - 1]
    assert error(lambda: jt.to_array([2**53], DType.DT_DOUBLE)) == (
        f"Cannot convert JSON value: {2**53} to double without loss of precision."
    )


def test_float32_rejects_doubles_outside_its_range() -> None:
    assert error(lambda: jt.to_array([1.5, 1e39], DType.DT_FLOAT)) == (
        "Cannot convert JSON value: 1e+39 to float without loss of precision."
    )


@pytest.mark.parametrize(
    ("values", "quoted"), [([-1e39], "-1e+39"), ([1e39, 1e40], "1e+39")], ids=["negative", "first"]
)
def test_float32_range_error_quotes_the_offending_value(values: list[float], quoted: str) -> None:
    assert error(lambda: jt.to_array(values, DType.DT_FLOAT)) == (
        f"Cannot convert JSON value: {quoted} to float without loss of precision."
    )


@pytest.mark.parametrize(
    ("values", "dtype", "bad"),
    [
        ([True, 1.5], DType.DT_FLOAT, True),
        ([1, True], DType.DT_INT32, True),
        ([[0.5], [False]], DType.DT_DOUBLE, False),
    ],
    ids=["float", "int32", "double-nested"],
)
def test_booleans_mixed_with_numbers_are_rejected(
    values: list[Any], dtype: DType, bad: bool
) -> None:
    assert error(lambda: jt.to_array(values, dtype)) == (
        f"JSON Value: {pretty(bad)} Type: {bad} is not of expected type: {dtype.short_name}"
    )


def test_float32_precision_check_applies_to_integers_mixed_with_decimals() -> None:
    assert error(lambda: jt.to_array([1.5, 16777217], DType.DT_FLOAT)) == (
        "Cannot convert JSON value: 16777217 to float without loss of precision."
    )


def test_quoted_decimals_use_tf_serving_number_format() -> None:
    assert error(lambda: jt.to_array(1e6, DType.DT_INT32)) == (
        "JSON Value: 1e+06 Type: Number is not of expected type: int32"
    )


def test_strings_are_utf8_bytes() -> None:
    array = jt.to_array([["a", "é"], ["", "\u2603"]], DType.DT_STRING)
    assert array.dtype == np.dtype(object)
    assert array.tolist() == [[b"a", "é".encode()], [b"", "\u2603".encode()]]


def test_b64_objects_are_decoded() -> None:
    assert jt.to_array([{"b64": "AAH/"}, {"b64": ""}], DType.DT_STRING).tolist() == [
        b"\x00\x01\xff",
        b"",
    ]


def test_bad_base64() -> None:
    assert error(lambda: jt.to_array({"b64": "not base64!"}, DType.DT_STRING)) == (
        "Unable to base64 decode"
    )


@pytest.mark.parametrize(
    "value", [{"b64": 1}, {"b64": "YQ==", "x": 1}, {"B64": "YQ=="}, {}], ids=repr
)
def test_objects_that_are_not_b64(value: dict[str, Any]) -> None:
    assert error(lambda: jt.to_array([value], DType.DT_STRING)) == (
        f"JSON Value: {pretty(value)} not formatted correctly for base64 data"
    )


@pytest.mark.parametrize(("value", "kind"), [(1, "Number"), (True, "True"), (None, "Null")])
def test_strings_reject_other_values(value: Any, kind: str) -> None:
    assert error(lambda: jt.to_array(["a", value], DType.DT_STRING)) == (
        f"JSON Value: {pretty(value)} Type: {kind} is not of expected type: string"
    )


def test_b64_object_for_a_number_is_a_type_error() -> None:
    value = {"b64": "YQ=="}
    assert error(lambda: jt.to_array([value], DType.DT_FLOAT)) == (
        f"JSON Value: {pretty(value)} Type: Object is not of expected type: float"
    )


def test_complex_inputs_are_unimplemented() -> None:
    assert error(lambda: jt.to_array([1], DType.DT_COMPLEX64), Code.UNIMPLEMENTED) == (
        "Conversion of JSON Value: 1 to type: complex64"
    )


# --- nested lists ------------------------------------------------------------------------------


def test_nested_list_shape() -> None:
    array = jt.to_array([[[1], [2]], [[3], [4]], [[5], [6]]], DType.DT_INT64)
    assert array.shape == (3, 2, 1)
    assert array.dtype == np.int64


def test_empty_inner_lists_keep_their_shape() -> None:
    assert jt.to_array([[], []], DType.DT_FLOAT).shape == (2, 0)
    assert jt.to_array([], DType.DT_FLOAT).shape == (0,)


def test_list_of_unexpected_size() -> None:
    assert error(lambda: jt.to_array([[1, 2], [3]], DType.DT_INT32)) == (
        "Encountered list at unexpected size: 1 at level: 1 expected size: 2"
    )


def test_value_at_incorrect_level() -> None:
    assert error(lambda: jt.to_array([[1, 2], 3], DType.DT_INT32)) == (
        "JSON Value: 3 found at incorrect level: 2 in the JSON DOM. Expected at level: 2"
    )


def test_list_at_unexpected_level() -> None:
    assert error(lambda: jt.to_array([1, [2]], DType.DT_INT32)) == (
        "Encountered list at unexpected level: 1 expected < 1"
    )


FLOAT32_LISTS = hnp.arrays(
    np.float32,
    hnp.array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=4),
    elements=st.floats(width=32),
)
INT64_LISTS = hnp.arrays(
    np.int64,
    hnp.array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=4),
    elements=st.integers(-(2**63), 2**63 - 1),
)


@settings(deadline=None)
@given(FLOAT32_LISTS)
def test_float32_nested_lists_round_trip(array: np.ndarray) -> None:
    result = jt.to_array(array.tolist(), DType.DT_FLOAT)
    assert result.dtype == np.float32
    assert result.shape == array.shape
    np.testing.assert_array_equal(result, array)
    assert np.array_equal(np.signbit(result), np.signbit(array))


@settings(deadline=None)
@given(INT64_LISTS)
def test_int64_nested_lists_round_trip(array: np.ndarray) -> None:
    result = jt.to_array(array.tolist(), DType.DT_INT64)
    assert result.dtype == np.int64
    assert result.shape == array.shape
    assert result.tolist() == array.tolist()


@settings(deadline=None)
@given(
    hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4),
        elements=st.floats(width=32, allow_nan=False, allow_infinity=False),
    )
)
def test_float32_rows_round_trip_through_json_text(array: np.ndarray) -> None:
    body = orjson.dumps({"instances": array.tolist()})
    arrays, _ = jt.predict_inputs(jt.parse_object(body), ONE_FLOAT)
    assert arrays["x"].dtype == np.float32
    assert arrays["x"].shape == array.shape
    np.testing.assert_array_equal(arrays["x"], array)


# --- responses ---------------------------------------------------------------------------------


def response(outputs: dict[str, np.ndarray], fmt: Format) -> Any:
    return orjson.loads(jt.predict_response(outputs, fmt))


def test_row_one_output_drops_its_name() -> None:
    body = jt.predict_response({"y": np.float32([[1.5, 3], [0.25, -1]])}, Format.ROW)
    assert orjson.loads(body) == {"predictions": [[1.5, 3.0], [0.25, -1.0]]}
    assert b"3.0" in body  # whole floats keep their ".0", as TF Serving writes them


def test_row_several_outputs_make_one_object_per_row() -> None:
    outputs = {
        "scores": np.float32([[0.5, 0.25], [1, 0]]),
        "label": np.array([b"cat", b"dog"], dtype=object),
        "id": np.int64([7, -(2**63)]),
    }
    assert response(outputs, Format.ROW) == {
        "predictions": [
            {"id": 7, "label": "cat", "scores": [0.5, 0.25]},
            {"id": -(2**63), "label": "dog", "scores": [1.0, 0.0]},
        ]
    }


def test_columnar_one_output_drops_its_name() -> None:
    assert response({"y": np.int32([[1, 2]])}, Format.COLUMNAR) == {"outputs": [[1, 2]]}


def test_columnar_scalar_output() -> None:
    assert response({"y": np.float32(2.5)}, Format.COLUMNAR) == {"outputs": 2.5}


def test_columnar_several_outputs_keep_their_names_and_batch_sizes() -> None:
    outputs = {"a": np.float64([1, 2]), "b": np.bool_([True, False, True]), "c": np.uint8(3)}
    assert response(outputs, Format.COLUMNAR) == {
        "outputs": {"a": [1.0, 2.0], "b": [True, False, True], "c": 3}
    }


@pytest.mark.parametrize("fmt", list(Format), ids=lambda f: f.name)
def test_bytes_outputs_are_b64_objects(fmt: Format) -> None:
    outputs = {"image_bytes": np.array([b"\x00\xff", b"hi"], dtype=object)}
    written = response(outputs, fmt)
    values = written["predictions" if fmt is Format.ROW else "outputs"]
    assert values == [{"b64": "AP8="}, {"b64": "aGk="}]


def test_bytes_output_among_several() -> None:
    outputs = {"raw_bytes": np.array([b"a"], dtype=object), "text": np.array([b"a"], object)}
    assert response(outputs, Format.ROW) == {
        "predictions": [{"raw_bytes": {"b64": "YQ=="}, "text": "a"}]
    }


def test_bytes_suffix_on_a_numeric_output_is_just_a_name() -> None:
    assert response({"n_bytes": np.int32([3])}, Format.ROW) == {"predictions": [3]}


def test_string_outputs_are_json_strings() -> None:
    assert response({"y": np.array([["é", "b"]], dtype=object)}, Format.COLUMNAR) == {
        "outputs": [["é", "b"]]
    }


def test_row_scalar_output_has_no_shape() -> None:
    outputs = {"x": np.float32([1]), "y": np.float32(2)}
    assert error(lambda: jt.predict_response(outputs, Format.ROW)) == (
        "Tensor name: y has no shape information "
    )


def test_row_inconsistent_batch_sizes() -> None:
    outputs = {"a": np.float32([1, 2]), "b": np.int64([[1], [2], [3]])}
    assert error(lambda: jt.predict_response(outputs, Format.ROW)) == (
        "Tensor name: b has inconsistent batch size: 3 expecting: 2"
    )


def test_row_zero_batch() -> None:
    assert response({"y": np.zeros((0, 3), np.float32)}, Format.ROW) == {"predictions": []}
    outputs = {"a": np.zeros((0,), np.float32), "b": np.zeros((0, 2), np.int32)}
    assert response(outputs, Format.ROW) == {"predictions": []}


def test_empty_output_map() -> None:
    assert error(lambda: jt.predict_response({}, Format.ROW)) == (
        "Cannot convert empty tensor map to JSON"
    )


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128], ids=lambda d: d.__name__)
def test_complex_outputs_cannot_be_written(dtype: type) -> None:
    outputs = {"z": np.array([1 + 1j], dtype=dtype)}
    assert error(lambda: jt.predict_response(outputs, Format.COLUMNAR)) == (
        f"Failed to write JSON value for tensor type: {np.dtype(dtype).name}"
    )


def test_integer_extremes_are_json_numbers() -> None:
    outputs = {"u": np.uint64([2**64 - 1]), "i": np.int64([-(2**63)]), "b": np.bool_([False])}
    assert response(outputs, Format.ROW) == {
        "predictions": [{"u": 2**64 - 1, "i": -(2**63), "b": False}]
    }


def test_half_and_bfloat16_outputs_are_numbers() -> None:
    outputs = {
        "h": np.float16([1.5, -2]),
        "bf": np.array([0.5, 3], dtype=ml_dtypes.bfloat16),
    }
    assert response(outputs, Format.COLUMNAR) == {"outputs": {"bf": [0.5, 3.0], "h": [1.5, -2.0]}}


def test_float32_outputs_are_written_shortest() -> None:
    body = jt.predict_response({"y": np.float32([0.1, 0.2])}, Format.ROW)
    assert orjson.loads(body) == {"predictions": [0.1, 0.2]}


def test_non_finite_outputs_are_written_as_tokens() -> None:
    body = jt.predict_response({"y": np.float32([np.nan, np.inf, -np.inf])}, Format.ROW)
    assert body == b'{"predictions":[NaN,Infinity,-Infinity]}'
    written = json.loads(body)  # Python's json reads NaN/Infinity tokens
    assert math.isnan(written["predictions"][0])
    assert written["predictions"][1:] == [math.inf, -math.inf]


def test_error_body() -> None:
    body = jt.error_body('Serving signature name: "x" not found\n')
    assert orjson.loads(body) == {"error": 'Serving signature name: "x" not found\n'}
