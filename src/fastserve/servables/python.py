"""Python servables: a `model.py` in the version folder declares signatures and a function each.

A version folder holds `model.py`, for example::

    from fastserve.servables.python import signature, tensor

    def load(path):            # optional: called once with the version folder
        ...

    @signature(inputs={"x": tensor("float32", [-1])}, outputs={"y": tensor("float32", [-1])})
    def serving_default(x):
        return {"y": x * 0.5 + 2.0}

    def unload():              # optional: called once when the version is unloaded
        ...

Each function receives numpy arrays as keyword arguments named after the signature's inputs
(strings as object arrays of bytes) and returns a mapping from output names to array-likes,
which are converted to the declared dtypes. Every version gets its own module object, so
module-level state is per version.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from fastserve import dtypes
from fastserve.errors import Code, ServingError, from_exception, internal
from fastserve.servables.base import Loader, LoadOptions, Servable, check_declared_shapes
from fastserve.types import PREDICT_METHOD, RunContext, Signature, TensorInfo

MODEL_FILE = "model.py"
_SIGNATURE_ATTRIBUTE = "__fastserve_signature__"


@dataclass(frozen=True)
class TensorSpec:
    """A declared input or output: a dtype name ("float32", "int64", "string", ...) and a
    shape (-1 or None for an unknown dimension; shape None for an unknown rank)."""

    dtype: str
    shape: Sequence[int | None] | None = None

    def info(self, alias: str) -> TensorInfo:
        dims = (
            None if self.shape is None else tuple(-1 if d is None else int(d) for d in self.shape)
        )
        return TensorInfo(name=alias, dtype=dtypes.from_name(self.dtype), shape=dims)


def tensor(dtype: str, shape: Sequence[int | None] | None = None) -> TensorSpec:
    """Declares a tensor for @signature."""
    return TensorSpec(dtype, shape)


@dataclass(frozen=True)
class _Declared:
    name: str | None
    inputs: Mapping[str, TensorSpec]
    outputs: Mapping[str, TensorSpec]
    method_name: str


def signature(
    *,
    inputs: Mapping[str, TensorSpec],
    outputs: Mapping[str, TensorSpec],
    name: str | None = None,
    method_name: str = PREDICT_METHOD,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Marks a function of model.py as a signature (named after the function unless `name`)."""

    def mark(function: Callable[..., Any]) -> Callable[..., Any]:
        # A function may serve several signatures (under different names).
        declared = (
            *getattr(function, _SIGNATURE_ATTRIBUTE, ()),
            _Declared(name, inputs, outputs, method_name),
        )
        setattr(function, _SIGNATURE_ATTRIBUTE, declared)
        return function

    return mark


class PythonServable(Servable):
    """The signatures of one model.py module."""

    runtime = "Python"

    def __init__(self, module: ModuleType, module_name: str) -> None:
        self._module = module
        self._module_name = module_name
        self._functions: dict[str, Callable[..., Any]] = {}
        signatures: dict[str, Signature] = {}
        seen: set[int] = set()
        for attribute in vars(module).values():
            declarations = getattr(attribute, _SIGNATURE_ATTRIBUTE, None)
            if not isinstance(declarations, tuple) or id(attribute) in seen:
                continue  # not a signature, or one already seen under another global name
            seen.add(id(attribute))
            for declared in declarations:
                name = declared.name or attribute.__name__
                if name in signatures:
                    raise ValueError(f"{MODEL_FILE} declares signature {name!r} twice")
                signatures[name] = Signature(
                    name=name,
                    inputs={a: spec.info(a) for a, spec in declared.inputs.items()},
                    outputs={a: spec.info(a) for a, spec in declared.outputs.items()},
                    method_name=declared.method_name,
                )
                self._functions[name] = attribute
        if not signatures:
            raise ValueError(
                f"{MODEL_FILE} declares no signature: decorate a function with "
                "@fastserve.servables.python.signature(inputs=..., outputs=...)"
            )
        self._signatures = signatures

    @property
    def signatures(self) -> Mapping[str, Signature]:
        return self._signatures

    def run(
        self,
        signature: Signature,
        inputs: Mapping[str, np.ndarray],
        output_names: Sequence[str],
        context: RunContext | None = None,
    ) -> dict[str, np.ndarray]:
        # Declared shapes are this kind's contract (TensorFlow leaves them to the graph).
        check_declared_shapes(signature, inputs)
        # Inputs decoded without a copy are read-only views; model code may write to its
        # arguments, so it gets arrays of its own whatever the protocol was.
        arguments = {
            alias: array if array.flags.writeable else array.copy()
            for alias, array in inputs.items()
        }
        try:
            produced = self._functions[signature.name](**arguments)
        except ServingError:
            raise
        except BaseException as error:  # SystemExit from a model must not stop a frontend
            raise from_exception(error) from error
        if not isinstance(produced, Mapping):
            raise internal(
                f"signature {signature.name} returned {type(produced).__name__}, "
                "not a mapping of output names to arrays"
            )
        outputs: dict[str, np.ndarray] = {}
        for name in output_names:
            if name not in produced:
                raise internal(f"signature {signature.name} did not return output {name!r}")
            outputs[name] = _convert(produced[name], signature.outputs[name], name)
        return outputs

    def unload(self) -> None:
        hook = getattr(self._module, "unload", None)
        try:
            if callable(hook):
                hook()
        finally:
            sys.modules.pop(self._module_name, None)


def _convert(value: Any, info: TensorInfo, name: str) -> np.ndarray:
    try:
        if info.dtype is dtypes.DType.DT_STRING:
            array = np.asarray(value, dtype=object)
            return np.vectorize(_as_bytes, otypes=[object])(array) if array.size else array
        return np.asarray(value, dtype=info.dtype.numpy)
    except (TypeError, ValueError) as error:
        raise internal(
            f"output {name!r} cannot be converted to {info.dtype.short_name}: {error}"
        ) from None


def _as_bytes(item: Any) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode("utf-8")
    raise TypeError(f"{type(item).__name__} is not bytes or str")


# Each load gets its own module name, so a version loaded again while its previous load is
# still draining does not share (or lose) a sys.modules entry.
_load_numbers = itertools.count(1)


class PythonLoader(Loader):
    """Loads `model.py` version folders (model_platform "python")."""

    platform = "python"

    def load(self, path: str, options: LoadOptions) -> Servable:
        file = os.path.join(path, MODEL_FILE)
        if not os.path.isfile(file):
            raise ServingError(Code.NOT_FOUND, f"Could not find {MODEL_FILE} in {path}")
        module_name = f"fastserve_model_{next(_load_numbers)}"
        spec = importlib.util.spec_from_file_location(module_name, file)
        if spec is None or spec.loader is None:
            raise ServingError(Code.INVALID_ARGUMENT, f"Cannot import {file}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # lets the model's own dataclasses and pickles work
        try:
            spec.loader.exec_module(module)
            hook = getattr(module, "load", None)
            if callable(hook):
                hook(path)
            return PythonServable(module, module_name)
        except BaseException:
            sys.modules.pop(module_name, None)
            raise
