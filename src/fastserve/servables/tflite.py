"""TF Lite models: a `model.tflite` in the version folder, run by TensorFlow's TF Lite interpreter.

A version folder holds `model.tflite` and, optionally, `servable.yaml` with the interpreters'
options (each optional)::

    num_interpreters: 2     # interpreters of this version, each serving one request at a time
    num_threads: 1          # threads of one interpreter; TF Lite's default when not set

A TF Lite interpreter runs one request at a time, so a version keeps a pool of
`num_interpreters` interpreters (default 1: requests take turns); a request waits for a free
one, no longer than its deadline. Each interpreter holds its own copy of the model's buffers.

Signatures are the model's SignatureDefs, by their keys. A model without any (TF1-style
conversions) is served under serving_default: its input and output tensors by name (without a
":0" suffix, as TF Serving names them). Shapes are the model's shape signatures (a dynamic
dimension is -1).

As TF Serving does, an input is not checked against the declared shape: the interpreter's input
tensors are resized to the request's shapes (a batch of any size, even for a model converted
with a fixed batch of 1), and a shape the model cannot compute is INVALID_ARGUMENT with TF
Lite's message. The interpreter is tf.lite.Interpreter from the installed tensorflow wheel.
"""

from __future__ import annotations

import os
import queue
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from fastserve.dtypes import DType, from_numpy
from fastserve.errors import Code, ServingError, invalid_argument
from fastserve.servables.base import Loader, LoadOptions, Servable
from fastserve.servables.settings import servable_options, whole_number
from fastserve.types import (
    DEFAULT_SIGNATURE,
    PREDICT_METHOD,
    RunContext,
    Signature,
    TensorInfo,
    shape_text,
)

MODEL_FILE = "model.tflite"
_OPTIONS = ("num_interpreters", "num_threads")

# TensorFlow 2.18+ warns on every tf.lite.Interpreter that it moves to the ai_edge_litert
# package; the interpreter works as before, and the operator can do nothing about the warning.
warnings.filterwarnings("ignore", message=r"\s*Warning: tf\.lite\.Interpreter is deprecated")


@dataclass(frozen=True)
class TfLiteOptions:
    """A version's servable.yaml: how many interpreters, and the threads of each."""

    num_interpreters: int = 1
    num_threads: int | None = None


def read_options(path: str) -> TfLiteOptions:
    """The version folder's servable.yaml as checked values (defaults without the file)."""
    file, loaded = servable_options(path, _OPTIONS)
    values = {key: whole_number(file, key, value, 1) for key, value in loaded.items()}
    return TfLiteOptions(**values)


def _interpreter_class() -> Any:
    try:
        from tensorflow.lite.python.interpreter import Interpreter
    except ImportError as error:
        raise ServingError(
            Code.FAILED_PRECONDITION,
            f"model_platform tflite needs tensorflow's TF Lite interpreter, which cannot be "
            f"imported ({error}): pip install 'fastserve[tensorflow]'",
        ) from None
    return Interpreter


def _legacy_name(tensor: str) -> str:
    """A tensor's name without its ":0" output index, as TF Serving keys a model without
    SignatureDefs (early TF Lite converters dropped the suffix)."""
    return re.sub(r":\d+$", "", tensor)


def _tensor_info(details: Mapping[str, Any], role: str) -> TensorInfo:
    kind = np.dtype(details["dtype"])
    try:
        dtype = from_numpy(kind)
    except TypeError:
        raise invalid_argument(
            f"{MODEL_FILE}: {role} {details['name']} is a {kind}, which fastserve cannot serve"
        ) from None
    shape = details.get("shape_signature")
    if shape is None or len(shape) != len(details["shape"]):
        shape = details["shape"]
    return TensorInfo(name=str(details["name"]), dtype=dtype, shape=tuple(int(d) for d in shape))


def _signatures(interpreter: Any) -> dict[str, Signature]:
    """The model's SignatureDefs, or serving_default made of its input and output tensors."""
    listed = interpreter.get_signature_list()
    if not listed:
        inputs = {
            _legacy_name(d["name"]): _tensor_info(d, "input")
            for d in interpreter.get_input_details()
        }
        outputs = {
            _legacy_name(d["name"]): _tensor_info(d, "output")
            for d in interpreter.get_output_details()
        }
        return {DEFAULT_SIGNATURE: Signature(DEFAULT_SIGNATURE, inputs, outputs, PREDICT_METHOD)}
    found = {}
    for key in listed:
        runner = interpreter.get_signature_runner(key)
        found[key] = Signature(
            name=key,
            inputs={a: _tensor_info(d, "input") for a, d in runner.get_input_details().items()},
            outputs={a: _tensor_info(d, "output") for a, d in runner.get_output_details().items()},
            method_name=PREDICT_METHOD,
        )
    return found


class _SignatureRunners:
    """Runs a model's SignatureDefs on one interpreter, through TF Lite's SignatureRunner
    (which resizes the inputs to the fed shapes and allocates before it invokes)."""

    def __init__(self, interpreter: Any, keys: Sequence[str]) -> None:
        self._runners = {key: interpreter.get_signature_runner(key) for key in keys}

    def run(self, signature: Signature, feeds: Mapping[str, np.ndarray]) -> dict[str, Any]:
        return dict(self._runners[signature.name](**feeds))


class _GraphRunner:
    """Runs a model without SignatureDefs on one interpreter: its input and output tensors by
    index, resized to the fed shapes as SignatureRunner does."""

    def __init__(self, interpreter: Any) -> None:
        self._interpreter = interpreter
        self._inputs = {
            _legacy_name(d["name"]): d["index"] for d in interpreter.get_input_details()
        }
        self._outputs = {
            _legacy_name(d["name"]): d["index"] for d in interpreter.get_output_details()
        }

    def run(self, signature: Signature, feeds: Mapping[str, np.ndarray]) -> dict[str, Any]:
        interpreter = self._interpreter
        for alias, array in feeds.items():
            interpreter.resize_tensor_input(self._inputs[alias], array.shape, strict=False)
        interpreter.allocate_tensors()
        for alias, array in feeds.items():
            interpreter.set_tensor(self._inputs[alias], array)
        interpreter.invoke()
        # get_tensor copies: the result outlives the interpreter's next run.
        return {alias: interpreter.get_tensor(index) for alias, index in self._outputs.items()}


def _shapes(inputs: Mapping[str, np.ndarray]) -> str:
    return ", ".join(
        f"{alias} {shape_text(array.shape)}" for alias, array in sorted(inputs.items())
    )


class TfLiteServable(Servable):
    """A pool of TF Lite interpreters of one model; run() takes one for the request's time.

    TF Lite's invoke releases the GIL, so the pool's interpreters compute in parallel.
    """

    runtime = "tflite"
    # A request may wait for another's interpreter: REST must not run it on its event loop.
    queues_requests = True

    def __init__(self, interpreters: Sequence[Any]) -> None:
        self._signatures = _signatures(interpreters[0])
        with_sigdefs = bool(interpreters[0].get_signature_list())
        self._idle: queue.Queue[_SignatureRunners | _GraphRunner] = queue.Queue()
        for interpreter in interpreters:
            interpreter.allocate_tensors()  # fails here, at load, on an op TF Lite lacks
            runner: _SignatureRunners | _GraphRunner = (
                _SignatureRunners(interpreter, list(self._signatures))
                if with_sigdefs
                else _GraphRunner(interpreter)
            )
            self._idle.put(runner)
        self.num_interpreters = len(interpreters)

    @property
    def signatures(self) -> Mapping[str, Signature]:
        return self._signatures

    @contextmanager
    def _interpreter(
        self, context: RunContext | None
    ) -> Iterator[_SignatureRunners | _GraphRunner]:
        timeout = context.remaining() if context is not None else None
        try:
            runner = self._idle.get(timeout=timeout)
        except queue.Empty:
            raise ServingError(
                Code.DEADLINE_EXCEEDED,
                "The request's deadline passed while it waited for a TF Lite interpreter",
            ) from None
        try:
            yield runner
        finally:
            self._idle.put(runner)

    def run(
        self,
        signature: Signature,
        inputs: Mapping[str, np.ndarray],
        output_names: Sequence[str],
        context: RunContext | None = None,
    ) -> dict[str, np.ndarray]:
        feeds = {alias: np.ascontiguousarray(array) for alias, array in inputs.items()}
        with self._interpreter(context) as runner:
            try:
                produced = runner.run(signature, feeds)
            except (RuntimeError, ValueError) as error:
                # Names and dtypes are checked before run(): what TF Lite refuses here is the
                # shapes (or values) it was given.
                message = str(error).strip()
                raise invalid_argument(
                    f"TF Lite cannot run signature {signature.name} on inputs {_shapes(inputs)}: "
                    f"{message}"
                ) from None
        return {
            name: self._output(produced[name], signature.outputs[name]) for name in output_names
        }

    @staticmethod
    def _output(array: Any, info: TensorInfo) -> np.ndarray:
        array = np.asarray(array)
        if info.dtype is DType.DT_STRING and array.dtype != object:
            return array.astype(object)
        return array

    def unload(self) -> None:
        # The interpreters free their buffers when the last reference goes.
        while True:
            try:
                self._idle.get_nowait()
            except queue.Empty:
                return


class TfLiteLoader(Loader):
    """Loads `model.tflite` version folders (model_platform "tflite"); TensorFlowLoader hands
    it SavedModel folders that hold a model.tflite under --prefer_tflite_model."""

    platform = "tflite"

    def load(self, path: str, options: LoadOptions) -> Servable:
        file = os.path.join(path, MODEL_FILE)
        if not os.path.isfile(file):
            raise ServingError(Code.NOT_FOUND, f"Could not find {MODEL_FILE} in {path}")
        settings = read_options(path)
        interpreter_class = _interpreter_class()
        try:
            with open(file, "rb") as stream:
                content = stream.read()
        except OSError as error:
            raise ServingError(
                Code.DATA_LOSS, f"Cannot read TF Lite model {file}: {error}"
            ) from None
        if not content:
            raise ServingError(
                Code.DATA_LOSS, f"Cannot load TF Lite model {file}: the file is empty"
            )
        try:
            interpreters = [
                interpreter_class(model_content=content, num_threads=settings.num_threads)
                for _ in range(settings.num_interpreters)
            ]
        except ValueError as error:  # not a TF Lite flatbuffer, or one of another schema
            raise ServingError(
                Code.DATA_LOSS, f"Cannot load TF Lite model {file}: {str(error).strip()}"
            ) from None
        try:
            return TfLiteServable(interpreters)
        except ServingError:
            raise
        except Exception as error:  # TF Lite raises RuntimeError and ValueError
            raise ServingError(
                Code.INVALID_ARGUMENT, f"Cannot load TF Lite model {file}: {str(error).strip()}"
            ) from None
