"""ONNX models: a `model.onnx` in the version folder, run by onnxruntime's CPU provider.

A version folder holds `model.onnx` and, optionally, `servable.yaml` with the session's
options (each optional; onnxruntime's defaults otherwise)::

    intra_op_num_threads: 4          # threads of one operator; 0: onnxruntime's choice
    inter_op_num_threads: 2          # threads across operators (execution_mode: parallel)
    execution_mode: sequential       # or parallel
    graph_optimization_level: all    # disable, basic, extended, layout or all

The model is served under one signature, serving_default: the graph's inputs by name are its
inputs and the graph's outputs its outputs, with their element types and shapes (a symbolic
or unknown dimension is -1; a rank onnxruntime does not report is unknown). onnxruntime is
imported when a version loads (`pip install 'fastserve[onnx]'`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fastserve.dtypes import DType
from fastserve.errors import Code, ServingError, internal, invalid_argument
from fastserve.servables.base import Loader, LoadOptions, Servable, check_declared_shapes
from fastserve.servables.settings import servable_options, whole_number
from fastserve.types import PREDICT_METHOD, RunContext, Signature, TensorInfo

MODEL_FILE = "model.onnx"
SIGNATURE = "serving_default"
PROVIDER = "CPUExecutionProvider"
EXTRA = "pip install 'fastserve[onnx]'"

# onnxruntime's element type names ("tensor(float)") -> fastserve's.
_DTYPES: dict[str, DType] = {
    "tensor(float)": DType.DT_FLOAT,
    "tensor(double)": DType.DT_DOUBLE,
    "tensor(float16)": DType.DT_HALF,
    "tensor(int8)": DType.DT_INT8,
    "tensor(int16)": DType.DT_INT16,
    "tensor(int32)": DType.DT_INT32,
    "tensor(int64)": DType.DT_INT64,
    "tensor(uint8)": DType.DT_UINT8,
    "tensor(uint16)": DType.DT_UINT16,
    "tensor(uint32)": DType.DT_UINT32,
    "tensor(uint64)": DType.DT_UINT64,
    "tensor(bool)": DType.DT_BOOL,
    "tensor(string)": DType.DT_STRING,
}

_OPTIMIZATION_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "layout": "ORT_ENABLE_LAYOUT",
    "all": "ORT_ENABLE_ALL",
}
_EXECUTION_MODES = {"sequential": "ORT_SEQUENTIAL", "parallel": "ORT_PARALLEL"}
_THREAD_OPTIONS = ("intra_op_num_threads", "inter_op_num_threads")
_OPTIONS = (*_THREAD_OPTIONS, "execution_mode", "graph_optimization_level")

# onnxruntime's exceptions (onnxruntime.capi.onnxruntime_pybind11_state) that blame the input.
_INPUT_ERRORS = frozenset({"InvalidArgument"})


def _import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as error:
        raise ServingError(
            Code.FAILED_PRECONDITION,
            f"model_platform onnx needs onnxruntime, which cannot be imported ({error}): {EXTRA}",
        ) from None
    return onnxruntime


def read_options(path: str) -> dict[str, Any]:
    """The version folder's servable.yaml as checked values ({} without the file)."""
    file, loaded = servable_options(path, _OPTIONS)
    options: dict[str, Any] = {}
    for key, value in loaded.items():
        if key in _THREAD_OPTIONS:
            options[key] = whole_number(file, key, value, 0)
        else:  # execution_mode, graph_optimization_level
            choices = _EXECUTION_MODES if key == "execution_mode" else _OPTIMIZATION_LEVELS
            if value not in choices:
                raise invalid_argument(
                    f"{file}: {key}: expected one of {', '.join(choices)}, not {value!r}"
                )
            options[key] = value
    return options


def _session_options(onnxruntime: Any, options: Mapping[str, Any]) -> Any:
    settings = onnxruntime.SessionOptions()
    for key in _THREAD_OPTIONS:
        if key in options:
            setattr(settings, key, options[key])
    if "execution_mode" in options:
        mode = _EXECUTION_MODES[options["execution_mode"]]
        settings.execution_mode = getattr(onnxruntime.ExecutionMode, mode)
    if "graph_optimization_level" in options:
        level = _OPTIMIZATION_LEVELS[options["graph_optimization_level"]]
        settings.graph_optimization_level = getattr(onnxruntime.GraphOptimizationLevel, level)
    return settings


def _tensor_info(node: Any, role: str) -> TensorInfo:
    dtype = _DTYPES.get(node.type)
    if dtype is None:
        raise invalid_argument(
            f"{MODEL_FILE}: {role} {node.name} is a {node.type}, which fastserve cannot serve "
            f"(it serves tensors of {', '.join(t[7:-1] for t in _DTYPES)})"
        )
    # onnxruntime reports an unknown rank as [] like a scalar's: both are served as unknown.
    shape = node.shape
    dims = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in shape) if shape else None
    return TensorInfo(name=node.name, dtype=dtype, shape=dims)


def _status(error: Exception) -> ServingError:
    """onnxruntime's error with its message: INVALID_ARGUMENT where it blames the input."""
    if type(error).__name__ in _INPUT_ERRORS:
        return invalid_argument(str(error))
    return internal(str(error))


def _to_onnx(alias: str, array: np.ndarray) -> np.ndarray:
    """fastserve's strings (bytes) as onnxruntime takes them (str, UTF-8)."""
    if array.dtype != object:
        return array
    try:
        return np.vectorize(_text, otypes=[object])(array) if array.size else array
    except UnicodeDecodeError:
        raise invalid_argument(
            f"input tensor {alias} holds a string that is not UTF-8, as ONNX strings must be"
        ) from None


def _text(item: bytes | str) -> str:
    return item.decode("utf-8") if isinstance(item, bytes) else item


def _from_onnx(array: Any, info: TensorInfo) -> np.ndarray:
    """onnxruntime's output as the signature's dtype: strings (str) as bytes, and int64 as
    numpy's int64 type (onnxruntime hands out longlong, equal to it but another scalar type,
    which encoders that know numpy's int64 do not take)."""
    array = np.asarray(array)
    if info.dtype is DType.DT_STRING:
        encode = np.vectorize(lambda item: str(item).encode("utf-8"), otypes=[object])
        return encode(array) if array.size else array.astype(object)
    want = info.dtype.numpy
    if array.dtype.type is want.type:
        return array
    return array.view(want) if array.dtype == want else array.astype(want)


class OnnxServable(Servable):
    """One onnxruntime InferenceSession; run() is onnxruntime's run, without the GIL."""

    runtime = "onnxruntime"

    def __init__(self, session: Any) -> None:
        self._session = session
        signature = Signature(
            name=SIGNATURE,
            inputs={n.name: _tensor_info(n, "input") for n in session.get_inputs()},
            outputs={n.name: _tensor_info(n, "output") for n in session.get_outputs()},
            method_name=PREDICT_METHOD,
        )
        self._signatures = {SIGNATURE: signature}

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
        # The graph's declared shapes, checked here so that the message names the input
        # the way a python servable's does.
        check_declared_shapes(signature, inputs)
        feeds = {
            signature.inputs[alias].name: _to_onnx(alias, array) for alias, array in inputs.items()
        }
        fetches = [signature.outputs[name].name for name in output_names]
        try:
            # InferenceSession.run releases the GIL while it computes and may be called
            # from many threads at once.
            produced = self._session.run(fetches, feeds)
        except Exception as error:  # onnxruntime raises its own exception types
            raise _status(error) from None
        return {
            name: _from_onnx(array, signature.outputs[name])
            for name, array in zip(output_names, produced, strict=True)
        }

    def unload(self) -> None:
        # onnxruntime frees the session's memory when the last reference goes.
        self._session = None


class OnnxLoader(Loader):
    """Loads `model.onnx` version folders (model_platform "onnx")."""

    platform = "onnx"

    def load(self, path: str, options: LoadOptions) -> Servable:
        file = os.path.join(path, MODEL_FILE)
        if not os.path.isfile(file):
            raise ServingError(Code.NOT_FOUND, f"Could not find {MODEL_FILE} in {path}")
        settings = read_options(path)
        onnxruntime = _import_onnxruntime()
        try:
            session = onnxruntime.InferenceSession(
                file, sess_options=_session_options(onnxruntime, settings), providers=[PROVIDER]
            )
        except Exception as error:  # onnxruntime raises its own exception types
            code = (
                Code.DATA_LOSS
                if type(error).__name__ == "InvalidProtobuf"
                else Code.INVALID_ARGUMENT
            )
            raise ServingError(code, f"Cannot load ONNX model {file}: {error}") from None
        return OnnxServable(session)
