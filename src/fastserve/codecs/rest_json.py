"""TF Serving's REST JSON <-> numpy: request bodies, row and columnar formats, and their errors.

Values are converted to the signature's dtypes with TF Serving's rules (a number for a float,
an integer for an int, true/false for a bool, a string or {"b64": ...} for a string). The fast
path hands whole lists to numpy; only when that fails is the JSON walked again to say exactly
what is wrong, in TF Serving's words.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson
import rapidjson

from fastserve.dtypes import NUMPY_MAX_RANK, DType
from fastserve.errors import Code, ServingError, invalid_argument
from fastserve.types import Signature, TensorInfo, shape_text


class Format(enum.Enum):
    ROW = "instances"
    COLUMNAR = "inputs"


def decimal(value: float) -> str:
    """A number as TF Serving writes it: printf %g (6 digits) if that reads back exactly,
    else 17 digits; ".0" on whole numbers; NaN, Infinity and -Infinity as bare tokens."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "-Infinity" if value < 0 else "Infinity"
    text = f"{value:g}"
    if float(text) != value:
        text = f"{value:.17g}"
    if "." not in text and "e" not in text:
        text += ".0"
    return text


def pretty(value: Any, indent: str = "") -> str:
    """A JSON value as TF Serving quotes it in messages (rapidjson's pretty writer: four-space
    indent, numbers as decimal() writes them)."""
    inner = indent + "    "
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [
            f"{inner}{json.dumps(str(k), ensure_ascii=False)}: {pretty(v, inner)}"
            for k, v in value.items()
        ]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(value, list):
        if not value:
            return "[]"
        return "[\n" + ",\n".join(inner + pretty(v, inner) for v in value) + "\n" + indent + "]"
    if isinstance(value, float):
        return decimal(value)
    return json.dumps(value, ensure_ascii=False)


def _format_error(doc: Any, message: str) -> ServingError:
    return invalid_argument(f"JSON Value: {pretty(doc)} {message}")


_RAPIDJSON_ERROR = re.compile(r"Parse error at offset (\d+): (.*)", re.DOTALL)


def _parse_leniently(body: bytes) -> Any:
    """TF Serving's parser (rapidjson, with NaN and Infinity allowed), for bodies orjson
    refuses: it accepts the non-finite numbers and words errors exactly as TF Serving does."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise invalid_argument(
            f"JSON Parse error: Invalid encoding in string. at offset: {error.start}"
        ) from None
    try:
        return rapidjson.loads(text, number_mode=rapidjson.NM_NAN)
    except RecursionError:
        raise invalid_argument("JSON Parse error: the document nests too deeply") from None
    except rapidjson.JSONDecodeError as error:
        found = _RAPIDJSON_ERROR.fullmatch(str(error))
        if found is None:
            raise invalid_argument(f"JSON Parse error: {error}") from None
        offset, message = found.groups()
        raise invalid_argument(f"JSON Parse error: {message} at offset: {offset}") from None


def parse_object(body: bytes) -> dict[str, Any]:
    """Parses a request body that must be a JSON object."""
    if not body:
        raise invalid_argument("JSON Parse error: The document is empty")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        doc = _parse_leniently(body)
    if not isinstance(doc, dict):
        raise _format_error(doc, "Is not object")
    return doc


def signature_name(doc: Mapping[str, Any]) -> str:
    name = doc.get("signature_name", "")
    if not isinstance(name, str):
        raise _format_error(
            doc, "not formatted correctly. 'signature_name' key must be a string value."
        )
    return name


# --- JSON -> numpy -----------------------------------------------------------------------------


def json_type(value: Any) -> str:
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def _type_error(value: Any, dtype: DType) -> ServingError:
    return invalid_argument(
        f"JSON Value: {pretty(value)} Type: {json_type(value)} is not of expected type: "
        f"{dtype.short_name}"
    )


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and "b64" in value


_INT_RANGES: dict[DType, tuple[int, int]] = {
    DType.DT_INT8: (-(2**31), 2**31 - 1),
    DType.DT_INT16: (-(2**31), 2**31 - 1),
    DType.DT_INT32: (-(2**31), 2**31 - 1),
    DType.DT_UINT8: (-(2**31), 2**31 - 1),
    DType.DT_UINT16: (-(2**31), 2**31 - 1),
    DType.DT_INT64: (-(2**63), 2**63 - 1),
    DType.DT_UINT32: (0, 2**32 - 1),
    DType.DT_UINT64: (0, 2**64 - 1),
}
_FLOAT_EXACT_INT = {DType.DT_FLOAT: 2**24 - 1, DType.DT_DOUBLE: 2**53 - 1, DType.DT_HALF: 2**11}
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _leaf(value: Any, dtype: DType) -> Any:
    """Checks and converts one JSON leaf for `dtype`, as TF Serving's AddValueToTensor does."""
    if dtype is DType.DT_STRING:
        if isinstance(value, str):
            return value.encode("utf-8")
        if isinstance(value, dict):
            if not _is_b64(value) or not isinstance(value["b64"], str):
                raise invalid_argument(
                    f"JSON Value: {pretty(value)} not formatted correctly for base64 data"
                )
            try:
                return base64.b64decode(value["b64"], validate=True)
            except (binascii.Error, ValueError):
                raise invalid_argument("Unable to base64 decode") from None
        raise _type_error(value, dtype)
    if dtype is DType.DT_BOOL:
        if isinstance(value, bool):
            return value
        raise _type_error(value, dtype)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _type_error(value, dtype)
    if dtype in (DType.DT_FLOAT, DType.DT_DOUBLE, DType.DT_HALF, DType.DT_BFLOAT16):
        limit = _FLOAT_EXACT_INT.get(dtype)
        if isinstance(value, int):
            lossy = limit is not None and abs(value) > limit
        else:  # a double must fit a float's range (non-finite values always pass)
            lossy = dtype is DType.DT_FLOAT and math.isfinite(value) and abs(value) > FLOAT32_MAX
        if lossy:
            raise invalid_argument(
                f"Cannot convert JSON value: {pretty(value)} to {dtype.short_name} without loss "
                "of precision."
            )
        return value
    bounds = _INT_RANGES.get(dtype)
    if bounds is None:
        raise ServingError(
            Code.UNIMPLEMENTED,
            f"Conversion of JSON Value: {pretty(value)} to type: {dtype.short_name}",
        )
    if not isinstance(value, int) or not bounds[0] <= value <= bounds[1]:
        raise _type_error(value, dtype)
    return value


def _dense_shape(value: Any) -> list[int]:
    """The shape TF Serving infers: each level's length, following first elements."""
    shape: list[int] = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _walk(value: Any, dtype: DType, shape: list[int], level: int, out: list[Any]) -> None:
    rank = len(shape)
    if not isinstance(value, list):
        if level != rank:
            raise invalid_argument(
                f"JSON Value: {pretty(value)} found at incorrect level: {level + 1} in the "
                f"JSON DOM. Expected at level: {rank}"
            )
        out.append(_leaf(value, dtype))
        return
    if level >= rank:
        raise invalid_argument(f"Encountered list at unexpected level: {level} expected < {rank}")
    if len(value) != shape[level]:
        raise invalid_argument(
            f"Encountered list at unexpected size: {len(value)} at level: {level} "
            f"expected size: {shape[level]}"
        )
    for item in value:
        _walk(item, dtype, shape, level + 1, out)


def _walked(value: Any, dtype: DType) -> np.ndarray:
    """The slow, exact conversion: validates every leaf and the shape, TF Serving's way."""
    shape = _dense_shape(value)
    if len(shape) > NUMPY_MAX_RANK:
        raise invalid_argument(
            f"JSON value nests lists {len(shape)} deep; this server decodes tensors of at "
            f"most {NUMPY_MAX_RANK} dimensions (numpy's limit)"
        )
    leaves: list[Any] = []
    _walk(value, dtype, shape, 0, leaves)
    if dtype is DType.DT_STRING:
        flat = np.empty(len(leaves), dtype=object)
        flat[:] = leaves
        return flat.reshape(shape)
    target = dtype.numpy
    if target.kind in "iu" and target.itemsize < 8:
        # Narrow integers wrap as TF Serving's static_cast does (numpy would refuse).
        return np.asarray(leaves, dtype=np.int64).astype(target).reshape(shape)
    return np.asarray(leaves, dtype=target).reshape(shape)


# numpy kinds of a parsed list that convert to a target kind without a walk. Complex targets
# have no JSON form (TF Serving answers UNIMPLEMENTED), so they always walk.
_ACCEPTED_KINDS: dict[str, str] = {"f": "fiu", "i": "iu", "u": "iu", "b": "b"}


def to_array(value: Any, dtype: DType, *, booleans_possible: bool = True) -> np.ndarray:
    """One JSON value (a scalar or nested lists) as an array of `dtype`.

    numpy turns [true, 1.5] into floats, so a numeric list that may hold booleans is walked
    leaf by leaf; callers that know the body has no `true`/`false` say so and keep the fast
    path.
    """
    if dtype is DType.DT_STRING:
        return _walked(value, dtype)
    try:
        raw = np.asarray(value)
    except (ValueError, TypeError, OverflowError):
        return _walked(value, dtype)  # ragged or mixed: the walk says where
    kind = raw.dtype.kind
    if kind not in _ACCEPTED_KINDS.get(dtype.numpy.kind, "") or (raw.size == 0 and raw.ndim > 1):
        return _walked(value, dtype)
    if booleans_possible and kind != "b":
        return _walked(value, dtype)
    if raw.size and kind in "iuf":
        limit = _FLOAT_EXACT_INT.get(dtype)
        if kind == "f":
            # Past the exact-integer limit a leaf may be an integer that loses precision, or a
            # double outside a float's range: only the walk can tell which, and quote it.
            # Non-finite leaves pass, so they are set aside only when the bound is not met.
            if limit is not None and not float(np.abs(raw).max()) <= limit:
                finite = raw[np.isfinite(raw)]
                largest = float(np.abs(finite).max()) if finite.size else 0.0
                if largest > limit:
                    return _walked(value, dtype)
        else:
            low, high = int(raw.min()), int(raw.max())
            bounds = _INT_RANGES.get(dtype)
            if bounds is not None and (low < bounds[0] or high > bounds[1]):
                return _walked(value, dtype)
            if limit is not None and max(-low, high) > limit:
                return _walked(value, dtype)
    return raw.astype(dtype.numpy, copy=False)


def _wrap_error(error: ServingError, prefix: str) -> ServingError:
    return ServingError(error.code, f"{prefix} Error: {error.code.name}: {error.message}")


def _stack(
    values: list[Any], info: TensorInfo, key: str | None, booleans_possible: bool
) -> np.ndarray:
    """Per-instance values of one input, stacked on a new batch dimension."""
    try:
        stacked = to_array(values, info.dtype, booleans_possible=booleans_possible)
        if stacked.ndim >= 1 and stacked.shape[0] == len(values):
            return stacked
    except ServingError:
        pass
    # Find the first instance that is wrong, and say it as TF Serving does.
    first_shape: tuple[int, ...] | None = None
    for index, value in enumerate(values):
        where = (
            f"Failed to process element: {index} key: {key} of 'instances' list."
            if key is not None
            else f"Failed to process element: {index} of 'instances' list."
        )
        try:
            item = to_array(value, info.dtype, booleans_possible=booleans_possible)
        except ServingError as error:
            raise _wrap_error(error, where) from None
        if first_shape is None:
            first_shape = item.shape
        elif item.size != int(np.prod(first_shape)):
            raise _wrap_error(
                invalid_argument(
                    f"Expecting tensor size: {int(np.prod(first_shape))} but got: {item.size}"
                ),
                where,
            ) from None
        elif item.shape != first_shape:
            raise _wrap_error(
                invalid_argument(
                    f"Expecting shape {shape_text(first_shape)} but got: {shape_text(item.shape)}"
                ),
                where,
            ) from None
    raise invalid_argument("instances could not be stacked into one tensor")


def _row_inputs(
    instances: list[Any], signature: Signature, booleans_possible: bool
) -> dict[str, np.ndarray]:
    infos = signature.inputs
    first = instances[0]
    named = isinstance(first, dict) and not _is_b64(first)
    if not named:
        if len(infos) > 1:
            raise invalid_argument(
                "instances is a plain list, but expecting list of objects as multiple input "
                "tensors required as per tensorinfo_map"
            )
        ((alias, info),) = infos.items()
        for index, item in enumerate(instances):
            if isinstance(item, dict) and not _is_b64(item):
                raise invalid_argument(
                    f"Expecting value/list but got object at item {index} of input list"
                )
        return {alias: _stack(instances, info, None, booleans_possible)}
    columns: dict[str, list[Any]] = {alias: [] for alias in infos}
    wanted = set(infos)
    for index, item in enumerate(instances):
        if not isinstance(item, dict) or _is_b64(item):
            raise invalid_argument(f"Expecting object but got list at item {index} of input list")
        for key, value in item.items():
            if key not in infos:
                raise _wrap_error(
                    invalid_argument(f"JSON object: does not have named input: {key}"),
                    f"Failed to process element: {index} key: {key} of 'instances' list.",
                )
            columns[key].append(value)
        if set(item) != wanted:
            raise invalid_argument(
                f"Failed to process element: {index} of 'instances' list. JSON object: "
                f"{pretty(item)} keys must be equal to: {','.join(sorted(wanted))}"
            )
    return {
        alias: _stack(columns[alias], infos[alias], alias, booleans_possible) for alias in infos
    }


def _columnar_inputs(
    value: Any, signature: Signature, booleans_possible: bool
) -> dict[str, np.ndarray]:
    infos = signature.inputs
    if isinstance(value, dict) and not _is_b64(value):
        arrays: dict[str, np.ndarray] = {}
        for alias in signature.input_order:
            if alias not in value:
                raise invalid_argument(f"Missing named input: {alias} in 'inputs' object.")
            arrays[alias] = to_array(
                value[alias], infos[alias].dtype, booleans_possible=booleans_possible
            )
        return arrays
    if len(infos) > 1:
        raise invalid_argument(
            "inputs is a plain value/list, but expecting an object as multiple input tensors "
            "required as per tensorinfo_map"
        )
    ((alias, info),) = infos.items()
    return {alias: to_array(value, info.dtype, booleans_possible=booleans_possible)}


def predict_inputs(
    doc: Mapping[str, Any],
    signature: Signature,
    *,
    requested_signature: str = "",
    booleans_possible: bool = True,
) -> tuple[dict[str, np.ndarray], Format]:
    """The tensors of a :predict body, and which format it used.

    With `booleans_possible` False (the body holds no `true` or `false` at all) numeric lists
    skip the leaf-by-leaf check for booleans hidden among numbers.
    """
    if not signature.inputs:
        raise invalid_argument(
            f"Failed to get input map for signature: {requested_signature or 'DEFAULT'}"
        )
    has_instances, has_inputs = "instances" in doc, "inputs" in doc
    if has_instances and has_inputs:
        raise _format_error(
            doc,
            "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist ",
        )
    if has_instances:
        instances = doc["instances"]
        if not isinstance(instances, list):
            raise _format_error(doc, "Excepting 'instances' to be an list/array")
        if not instances:
            raise _format_error(doc, "No values in 'instances' array")
        return _row_inputs(instances, signature, booleans_possible), Format.ROW
    if has_inputs:
        return _columnar_inputs(doc["inputs"], signature, booleans_possible), Format.COLUMNAR
    raise invalid_argument("Missing 'inputs' or 'instances' key")


# --- numpy -> JSON -----------------------------------------------------------------------------


def _string_leaf(item: Any, as_b64: bool) -> Any:
    data = item if isinstance(item, bytes) else str(item).encode("utf-8")
    if as_b64:
        return {"b64": base64.b64encode(data).decode("ascii")}
    return data.decode("utf-8", errors="replace")


def jsonable(array: np.ndarray, name: str) -> Any:
    """An output tensor as something orjson writes (numpy arrays are written natively)."""
    kind = array.dtype.kind
    if kind == "O" or kind in "SU":
        as_b64 = name.endswith("_bytes")
        converted = np.empty(array.shape, dtype=object)
        flat = converted.reshape(-1)
        for index, item in enumerate(array.reshape(-1)):
            flat[index] = _string_leaf(item, as_b64)
        return converted.tolist()
    if kind == "c":
        raise invalid_argument(f"Failed to write JSON value for tensor type: {array.dtype.name}")
    if array.dtype.name == "bfloat16":
        array = array.astype(np.float32)
    if array.ndim == 0:
        return array[()]
    return np.ascontiguousarray(array)


# The dtypes orjson writes from an array as the general path writes them (native byte order).
_NUMPY_WRITES = frozenset(
    np.dtype(name)
    for name in (
        "float64",
        "float32",
        "int64",
        "int32",
        "int16",
        "int8",
        "uint64",
        "uint32",
        "uint16",
        "uint8",
        "bool",
    )
)


def predict_response(outputs: Mapping[str, np.ndarray], fmt: Format) -> bytes:
    """The body of a :predict answer, row (`predictions`) or columnar (`outputs`)."""
    if not outputs:
        raise invalid_argument("Cannot convert empty tensor map to JSON")
    if len(outputs) == 1:
        # The common answer, one numeric tensor with finite values, is what the general path
        # below writes too, without its walk over the body.
        ((name, array),) = outputs.items()
        if (
            array.dtype in _NUMPY_WRITES
            and array.ndim >= 1
            and array.flags.c_contiguous
            and (array.dtype.kind != "f" or bool(np.isfinite(array).all()))
        ):
            key = "predictions" if fmt is Format.ROW else "outputs"
            return orjson.dumps({key: array}, option=orjson.OPT_SERIALIZE_NUMPY)
    names = sorted(outputs)
    if fmt is Format.COLUMNAR:
        if len(names) == 1:
            body: Any = {"outputs": jsonable(outputs[names[0]], names[0])}
        else:
            body = {"outputs": {name: jsonable(outputs[name], name) for name in names}}
        return dumps(body)
    batch = -1
    for name in names:
        array = outputs[name]
        if array.ndim == 0:
            raise invalid_argument(f"Tensor name: {name} has no shape information ")
        if batch >= 0 and array.shape[0] != batch:
            raise invalid_argument(
                f"Tensor name: {name} has inconsistent batch size: {array.shape[0]} "
                f"expecting: {batch}"
            )
        batch = array.shape[0]
    if len(names) == 1:
        return dumps({"predictions": jsonable(outputs[names[0]], names[0])})
    columns = {name: jsonable(outputs[name], name) for name in names}
    rows = [{name: columns[name][row] for name in names} for row in range(batch)]
    return dumps({"predictions": rows})


def _has_non_finite(body: Any) -> bool:
    if isinstance(body, np.ndarray):
        return body.dtype.kind == "f" and not bool(np.isfinite(body).all())
    if isinstance(body, np.floating | float):
        return not math.isfinite(body)
    if isinstance(body, dict):
        return any(_has_non_finite(value) for value in body.values())
    if isinstance(body, list):
        return any(_has_non_finite(value) for value in body)
    return False


def _plain(body: Any) -> Any:
    if isinstance(body, np.ndarray | np.generic):
        return body.tolist()
    if isinstance(body, dict):
        return {key: _plain(value) for key, value in body.items()}
    if isinstance(body, list):
        return [_plain(value) for value in body]
    return body


def dumps(body: Any) -> bytes:
    """orjson, unless a float is NaN or infinite: orjson writes those as null, TF Serving as
    the bare tokens NaN, Infinity and -Infinity, which rapidjson writes too."""
    if _has_non_finite(body):
        return rapidjson.dumps(_plain(body), number_mode=rapidjson.NM_NAN).encode("utf-8")
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})
