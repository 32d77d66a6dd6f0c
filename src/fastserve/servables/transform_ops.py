"""Feature transformations: a list of ops, each naming its inputs and its output, run in order
on numpy arrays. The transform kind serves such a list; a pipeline runs them between models.

An op is a mapping::

    {op: standardize, input: age, output: age_z, mean: 40.0, std: 12.0}

Ops (x is the input; every op works elementwise on any shape unless said otherwise):
- standardize (mean, std): (x - mean) / std. float64 stays float64; other numbers give float32.
- min_max_scale (min, max): (x - min) / (max - min), the same dtypes. For both, a parameter may
  be a list, one value per position of the last dimension (per-column statistics).
- clip (min and/or max): x limited to [min, max], x's dtype.
- log1p: log(1 + x), the same dtypes as standardize.
- bucketize (boundaries, strictly increasing): the number of boundaries <= x (int64), as
  TensorFlow's Bucketize counts: boundaries [0, 10] put -1 in 0, 0 and 9 in 1, 10 in 2.
- one_hot (depth, integers): shape + [depth] of float32, 1 at x; an x outside 0..depth-1 gives
  a row of zeros, as tf.one_hot does.
- hash_bucket (num_buckets, strings): tf.strings.to_hash_bucket_fast (int64).
- vocabulary (strings): ids by an inline list (`vocabulary: [a, b]`) or a file of the version
  folder (`vocabulary_file: cities.txt`, one key a line); unknown keys go to `num_oov_buckets`
  hash buckets after it, or get `default_value` (-1) — the vocabulary kind's numbering.
- cast (dtype): x as another dtype ("float32", "int64", ...; numbers only).
- concatenate (inputs: [a, b, ...], axis: -1): arrays of one dtype and rank, joined on `axis`.

Ops are checked when the file is read: the fields, their values, and the wiring (an op may use
only names known before it; no name is produced twice). Where the dtypes of an op's inputs are
known then (the transform kind declares its inputs), they are checked then too, and the outputs'
dtypes and shapes are inferred for the signature; where they are not (a pipeline step reading a
model's output), the same checks run on the arrays and fail the request, naming the op.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fastserve import dtypes
from fastserve.dtypes import DType
from fastserve.errors import ServingError, invalid_argument
from fastserve.servables.lookup import Vocabulary, hash_buckets, read_vocabulary_file
from fastserve.servables.settings import Settings
from fastserve.types import TensorInfo, shape_text

# What an op's inputs must hold.
NUMBERS = "numbers"
INTEGERS = "integers"
STRINGS = "strings"
TENSORS = "tensors of any dtype"

Shape = tuple[int, ...] | None


def _is(kind: str, dtype: DType) -> bool:
    if kind == TENSORS:
        return True
    numpy = dtype.numpy if dtype is not DType.DT_BFLOAT16 else np.dtype(np.float32)
    if kind == STRINGS:
        return dtype is DType.DT_STRING
    if kind == INTEGERS:
        return numpy.kind in "iu"
    return numpy.kind in "iuf" and dtype is not DType.DT_STRING


def _float_result(dtype: DType) -> DType:
    return DType.DT_DOUBLE if dtype is DType.DT_DOUBLE else DType.DT_FLOAT


@dataclass(frozen=True)
class Op:
    """One checked op: what it takes and how it computes, statically and on arrays."""

    position: int
    kind: str
    inputs: tuple[str, ...]
    output: str
    takes: str
    # Input dtypes -> output dtype; input shapes -> output shape (None: unknown rank).
    dtype: Callable[[Sequence[DType]], DType]
    shape: Callable[[Sequence[Shape]], Shape]
    compute: Callable[[Sequence[np.ndarray]], np.ndarray]

    @property
    def label(self) -> str:
        return f"op {self.position} ({self.kind} -> {self.output})"

    def infer(self, infos: Sequence[TensorInfo | None]) -> TensorInfo | None:
        """The output's dtype and shape from the inputs' (None when one is unknown); raises
        INVALID_ARGUMENT naming the op when a known input is of the wrong kind."""
        if any(info is None for info in infos):
            return None
        known = [info for info in infos if info is not None]
        for name, info in zip(self.inputs, known, strict=True):
            self._check_dtype(name, info.dtype)
        try:
            return TensorInfo(
                self.output,
                self.dtype([info.dtype for info in known]),
                self.shape([info.shape for info in known]),
            )
        except ServingError as error:
            raise invalid_argument(f"{self.label}: {error.message}") from None

    def run(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        """The output; INVALID_ARGUMENT naming the op when an input does not fit it."""
        for name, array in zip(self.inputs, arrays, strict=True):
            try:
                dtype = dtypes.from_numpy(array.dtype)
            except TypeError:
                raise invalid_argument(
                    f"{self.label}: input {name} holds {array.dtype}, not {self.takes}"
                ) from None
            self._check_dtype(name, dtype)
        try:
            with np.errstate(all="ignore"):  # log1p(-2) is NaN, as in TensorFlow
                return self.compute(arrays)
        except ServingError as error:
            raise invalid_argument(f"{self.label}: {error.message}") from None
        except ValueError as error:  # numpy's, for shapes that do not fit
            raise invalid_argument(f"{self.label}: {error}") from None

    def _check_dtype(self, name: str, dtype: DType) -> None:
        if not _is(self.takes, dtype):
            raise invalid_argument(
                f"{self.label}: input {name} is {dtype.short_name}, and {self.kind} takes "
                f"{self.takes}"
            )


# --- the ops --------------------------------------------------------------------------------

# Each builder reads its op's own fields and returns (takes, dtype, shape, compute).
Built = tuple[
    str,
    Callable[[Sequence[DType]], DType],
    Callable[[Sequence[Shape]], Shape],
    Callable[[Sequence[np.ndarray]], np.ndarray],
]


def _same_shape(shapes: Sequence[Shape]) -> Shape:
    return shapes[0]


def _per_column(settings: Settings, key: str) -> np.ndarray:
    """A number, or a list of numbers (one per position of the last dimension)."""
    return np.asarray(settings.number_or_numbers(key), dtype=np.float64)


def _columns_shape(parameters: np.ndarray) -> Callable[[Sequence[Shape]], Shape]:
    """The input's shape, checked against per-column parameters' length."""

    def shape(shapes: Sequence[Shape]) -> Shape:
        (found,) = shapes
        if (
            parameters.ndim == 1
            and found is not None
            and (not found or found[-1] not in (-1, parameters.size))
        ):
            raise invalid_argument(
                f"{parameters.size} values per column need a last dimension of "
                f"{parameters.size}; the input's shape is {shape_text(found)}"
            )
        return found

    return shape


def _columns_fit(parameters: np.ndarray, array: np.ndarray) -> None:
    if parameters.ndim == 1 and (array.ndim == 0 or array.shape[-1] != parameters.size):
        raise invalid_argument(
            f"{parameters.size} values per column need a last dimension of {parameters.size}; "
            f"the input's shape is {shape_text(array.shape)}"
        )


def _affine(offset: np.ndarray, scale: np.ndarray) -> Built:
    """(x - offset) / scale, in float64 or float32."""

    def compute(arrays: Sequence[np.ndarray]) -> np.ndarray:
        (x,) = arrays
        _columns_fit(offset if offset.ndim else scale, x)
        want = _float_result(dtypes.from_numpy(x.dtype)).numpy
        return ((x.astype(want) - offset.astype(want)) / scale.astype(want)).astype(want)

    wide = offset if offset.ndim else scale
    return (
        NUMBERS,
        lambda found: _float_result(found[0]),
        _columns_shape(wide),
        compute,
    )


def _standardize(settings: Settings, folder: str) -> Built:
    mean = _per_column(settings, "mean")
    std = _per_column(settings, "std")
    if (std <= 0).any():
        settings.fail(f"std: expected numbers > 0, not {std.tolist()}")
    _check_widths(settings, mean, std)
    return _affine(mean, std)


def _min_max_scale(settings: Settings, folder: str) -> Built:
    low = _per_column(settings, "min")
    high = _per_column(settings, "max")
    _check_widths(settings, low, high)
    if (high <= low).any():
        settings.fail(f"max must be greater than min: min {low.tolist()}, max {high.tolist()}")
    return _affine(low, high - low)


def _check_widths(settings: Settings, first: np.ndarray, second: np.ndarray) -> None:
    if first.ndim and second.ndim and first.size != second.size:
        settings.fail(f"per-column lists of different lengths ({first.size} and {second.size})")


def _clip(settings: Settings, folder: str) -> Built:
    low = settings.number("min", None)
    high = settings.number("max", None)
    if low is None and high is None:
        settings.fail("clip needs min, max or both")
    if low is not None and high is not None and high < low:
        settings.fail(f"max ({high}) is less than min ({low})")

    def compute(arrays: Sequence[np.ndarray]) -> np.ndarray:
        (x,) = arrays
        return np.clip(x, low, high).astype(x.dtype, copy=False)

    return NUMBERS, lambda found: found[0], _same_shape, compute


def _log1p(settings: Settings, folder: str) -> Built:
    def compute(arrays: Sequence[np.ndarray]) -> np.ndarray:
        (x,) = arrays
        want = _float_result(dtypes.from_numpy(x.dtype)).numpy
        return np.log1p(x.astype(want))

    return NUMBERS, lambda found: _float_result(found[0]), _same_shape, compute


def _bucketize(settings: Settings, folder: str) -> Built:
    boundaries = np.asarray(settings.numbers("boundaries"), dtype=np.float64)
    if boundaries.size == 0:
        settings.fail("boundaries: expected at least one number")
    if (np.diff(boundaries) <= 0).any():
        settings.fail(
            f"boundaries: expected strictly increasing numbers, not {boundaries.tolist()}"
        )

    def compute(arrays: Sequence[np.ndarray]) -> np.ndarray:
        (x,) = arrays
        return np.searchsorted(boundaries, x, side="right").astype(np.int64)

    return NUMBERS, lambda found: DType.DT_INT64, _same_shape, compute


def _one_hot(settings: Settings, folder: str) -> Built:
    depth = settings.integer("depth", minimum=1)
    positions = np.arange(depth)

    def shape(shapes: Sequence[Shape]) -> Shape:
        return None if shapes[0] is None else (*shapes[0], depth)

    def compute(arrays: Sequence[np.ndarray]) -> np.ndarray:
        (x,) = arrays
        return (x[..., np.newaxis] == positions).astype(np.float32)

    return INTEGERS, lambda found: DType.DT_FLOAT, shape, compute


def _hash_bucket(settings: Settings, folder: str) -> Built:
    buckets = settings.integer("num_buckets", minimum=1)

    def compute(arrays: Sequence[np.ndarray]) -> np.ndarray:
        return hash_buckets(arrays[0], buckets)

    return STRINGS, lambda found: DType.DT_INT64, _same_shape, compute


def _vocabulary(settings: Settings, folder: str) -> Built:
    if ("vocabulary" in settings) == ("vocabulary_file" in settings):
        settings.fail("give vocabulary (a list of keys) or vocabulary_file, one of the two")
    if "vocabulary" in settings:
        keys = [key.encode("utf-8") for key in settings.strings("vocabulary")]
    else:
        name = settings.string("vocabulary_file")
        if os.path.isabs(name) or ".." in name.split("/"):
            settings.fail(f"vocabulary_file: {name!r} must be a file of the version folder")
        file = os.path.join(folder, name)
        if not os.path.isfile(file):
            settings.fail(f"vocabulary_file: {file} does not exist")
        try:
            keys = read_vocabulary_file(file)
        except ServingError as error:
            settings.fail(error.message)
    try:
        vocabulary = Vocabulary(keys)
    except ServingError as error:
        settings.fail(error.message)
    buckets = settings.integer("num_oov_buckets", 0, minimum=0)
    if buckets and "default_value" in settings:
        settings.fail("default_value applies only without num_oov_buckets")
    default = settings.integer("default_value", -1)

    def compute(arrays: Sequence[np.ndarray]) -> np.ndarray:
        return vocabulary.ids_with_buckets(arrays[0], buckets, default)

    return STRINGS, lambda found: DType.DT_INT64, _same_shape, compute


def _cast(settings: Settings, folder: str) -> Built:
    name = settings.string("dtype")
    try:
        target = dtypes.from_name(name)
    except ValueError as error:
        settings.fail(f"dtype: {error}")
    if not _is(NUMBERS, target) and target is not DType.DT_BOOL:
        settings.fail(f"dtype: cast gives numbers or bool, not {name}")

    def compute(arrays: Sequence[np.ndarray]) -> np.ndarray:
        return arrays[0].astype(target.numpy)

    return NUMBERS, lambda found: target, _same_shape, compute


def _concatenate(settings: Settings, folder: str) -> Built:
    axis = settings.integer("axis", -1)

    def dtype(found: Sequence[DType]) -> DType:
        if len(set(found)) > 1:
            named = ", ".join(d.short_name for d in found)
            raise invalid_argument(f"inputs of different dtypes ({named}); cast them first")
        return found[0]

    def shape(shapes: Sequence[Shape]) -> Shape:
        if any(s is None for s in shapes):
            return None
        known = [s for s in shapes if s is not None]
        ranks = {len(s) for s in known}
        if len(ranks) > 1:
            raise invalid_argument(
                f"inputs of different ranks ({', '.join(map(shape_text, known))})"
            )
        (rank,) = ranks
        if not -rank <= axis < rank:
            raise invalid_argument(f"axis {axis} is outside the inputs' rank {rank}")
        where = axis % rank
        joined = [s[where] for s in known]
        dims = [-1 if -1 in joined else sum(joined)]
        for other in range(rank):
            if other == where:
                continue
            sizes = {s[other] for s in known} - {-1}
            if len(sizes) > 1:
                raise invalid_argument(
                    f"inputs of shapes {', '.join(map(shape_text, known))} differ outside "
                    f"axis {axis}"
                )
            dims.insert(other, sizes.pop() if sizes else -1)
        return tuple(dims)

    def compute(arrays: Sequence[np.ndarray]) -> np.ndarray:
        dtype([dtypes.from_numpy(a.dtype) for a in arrays])
        return np.concatenate(arrays, axis=axis)

    return TENSORS, dtype, shape, compute


_BUILDERS: dict[str, Callable[[Settings, str], Built]] = {
    "standardize": _standardize,
    "min_max_scale": _min_max_scale,
    "clip": _clip,
    "log1p": _log1p,
    "bucketize": _bucketize,
    "one_hot": _one_hot,
    "hash_bucket": _hash_bucket,
    "vocabulary": _vocabulary,
    "cast": _cast,
    "concatenate": _concatenate,
}
OPS = tuple(_BUILDERS)


# --- reading a list of ops ------------------------------------------------------------------


def read_op(item: Any, position: int, where: str, folder: str) -> Op:
    """One op of a list (position from 1), checked; `where` names the file (and step)."""
    if not isinstance(item, dict):
        raise invalid_argument(f"{where}: op {position}: expected a mapping, not {item!r}")
    kind = item.get("op")
    if kind not in _BUILDERS:
        raise invalid_argument(
            f"{where}: op {position}: unknown op {kind!r} (known: {', '.join(OPS)})"
        )
    output = item.get("output")
    label = (
        f"op {position} ({kind} -> {output})"
        if isinstance(output, str)
        else f"op {position} ({kind})"
    )
    settings = Settings(item, f"{where}: {label}")
    settings.raw("op")
    output = settings.string("output")
    if kind == "concatenate":
        inputs = tuple(settings.strings("inputs"))
        if not inputs:
            settings.fail("inputs: expected at least one name")
    else:
        if "inputs" in settings:
            settings.fail(f"{kind} takes one input: write input: NAME")
        inputs = (settings.string("input"),)
    takes, dtype, shape, compute = _BUILDERS[kind](settings, folder)
    settings.finish()
    return Op(position, kind, inputs, output, takes, dtype, shape, compute)


def read_ops(
    items: Any,
    where: str,
    folder: str,
    known: Mapping[str, TensorInfo | None],
    known_as: str = "an input",
) -> tuple[list[Op], dict[str, TensorInfo | None]]:
    """A list of ops, wired: each input must be in `known` (names available before the list,
    which messages call `known_as`) or an earlier op's output, and no output may take a known
    name. Returns the ops and every name with its inferred info (None where not known before
    a request)."""
    if not isinstance(items, list) or not items:
        raise invalid_argument(f"{where}: expected a non-empty list of ops")
    names = dict(known)
    producers: dict[str, str] = {}
    ops = [read_op(item, position, where, folder) for position, item in enumerate(items, 1)]
    later = {op.output: op for op in ops}
    for op in ops:
        for name in op.inputs:
            if name in names:
                continue
            if name in later and later[name].position > op.position:
                raise invalid_argument(
                    f"{where}: {op.label}: uses {name} before {later[name].label} produces it"
                )
            raise invalid_argument(
                f"{where}: {op.label}: input {name} is not known here (known: "
                f"{', '.join(sorted(names)) or 'nothing'})"
            )
        if op.output in names:
            what = producers.get(op.output, known_as)
            raise invalid_argument(f"{where}: {op.label}: {op.output} is already {what}")
        try:
            names[op.output] = op.infer([names[name] for name in op.inputs])
        except ServingError as error:
            raise invalid_argument(f"{where}: {error.message}") from None
        producers[op.output] = f"the output of {op.label}"
    return ops, names


def run_ops(ops: Sequence[Op], values: dict[str, np.ndarray]) -> None:
    """Runs `ops` in order on `values` (name -> array), adding each op's output to it."""
    for op in ops:
        values[op.output] = op.run([values[name] for name in op.inputs])


def read_tensor_infos(settings: Settings, key: str) -> dict[str, TensorInfo]:
    """A mapping of names to {dtype, shape} (shape optional: unknown rank; -1 an unknown
    dimension), as transform.yaml and pipeline.yaml declare inputs and outputs."""
    declared = settings.mapping(key)
    if not declared:
        settings.fail(f"{key}: expected at least one name")
    infos: dict[str, TensorInfo] = {}
    for name, spec in declared.items():
        where = f"{key}: {name}"
        if not isinstance(spec, dict):
            settings.fail(f"{where}: expected {{dtype: ..., shape: [...]}}, not {spec!r}")
        fields = Settings(spec, f"{settings.where}: {where}")
        try:
            dtype = dtypes.from_name(fields.string("dtype"))
        except ValueError as error:
            fields.fail(f"dtype: {error}")
        shape = fields.raw("shape", None)
        if shape is not None and not (
            isinstance(shape, list)
            and all(isinstance(d, int) and not isinstance(d, bool) and d >= -1 for d in shape)
        ):
            fields.fail(f"shape: expected a list of sizes (-1: any), not {shape!r}")
        fields.finish()
        infos[str(name)] = TensorInfo(str(name), dtype, None if shape is None else tuple(shape))
    return infos
