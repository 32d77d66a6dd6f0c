"""TensorFlow SavedModels, loaded into a session as TensorFlow Serving loads them.

A session is TensorFlow's C API runner (fastserve._core.TensorFlowSession: TF_SessionRun without
the GIL) wherever the installed tensorflow wheel's C API loads, else TensorFlow's Python session.
FASTSERVE_TENSORFLOW_RUNNER=python asks for the Python session.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from fastserve.dtypes import DType
from fastserve.errors import Code, ServingError, from_exception, not_found
from fastserve.servables import tflite
from fastserve.servables.base import Loader, LoadOptions, Servable
from fastserve.types import RunContext, Signature, TensorInfo

SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
RUNNER_VARIABLE = "FASTSERVE_TENSORFLOW_RUNNER"
C_API_LIBRARY = "libtensorflow_cc.so.2"
EXTRA = "pip install 'fastserve[tensorflow]'"

log = logging.getLogger("fastserve.servables.tensorflow")


def _tensor_info(proto: Any) -> TensorInfo:
    shape = proto.tensor_shape
    dims = None if shape.unknown_rank else tuple(int(dim.size) for dim in shape.dim)
    return TensorInfo(name=proto.name, dtype=DType(proto.dtype), shape=dims)


def _signature(name: str, proto: Any) -> Signature:
    return Signature(
        name=name,
        inputs={alias: _tensor_info(info) for alias, info in proto.inputs.items()},
        outputs={alias: _tensor_info(info) for alias, info in proto.outputs.items()},
        method_name=proto.method_name,
    )


def _status_from_tf(error: Exception) -> ServingError:
    """Maps a TensorFlow error to a ServingError with the same code and message."""
    import tensorflow as tf

    if isinstance(error, tf.errors.OpError):
        try:
            code = Code(error.error_code)
        except ValueError:
            code = Code.UNKNOWN
        return ServingError(code, error.message)
    if isinstance(error, UnicodeDecodeError) and isinstance(error.object, bytes):
        # TensorFlow could not decode its own status message: one that quotes the client's
        # bytes (an unparseable tf.Example, say). The code is lost with it; such messages
        # come from ops rejecting their input.
        return ServingError(Code.INVALID_ARGUMENT, error.object.decode("utf-8", "replace"))
    return from_exception(error)


def _session_config(options: LoadOptions) -> Any:
    """The ConfigProto of a version's session."""
    from tensorflow.core.protobuf import config_pb2

    # TensorFlow runs small graphs fastest on the calling thread; fastserve's request
    # threads already give the parallelism, so "auto" (0) means inline (-1) here.
    return config_pb2.ConfigProto(
        inter_op_parallelism_threads=options.inter_op_parallelism or -1,
        intra_op_parallelism_threads=options.intra_op_parallelism,
        allow_soft_placement=True,
    )


def c_api_library() -> str:
    """Where the installed tensorflow wheel keeps TensorFlow's C API."""
    import tensorflow as tf

    return os.path.join(os.path.dirname(tf.__file__), C_API_LIBRARY)


def native_runner_problem() -> str:
    """Why TensorFlow's C API runner cannot serve here ("" when it can)."""
    if os.environ.get(RUNNER_VARIABLE, "").strip().lower() == "python":
        return f"{RUNNER_VARIABLE}=python"
    from fastserve import _core

    return _core.tensorflow_c_api(c_api_library())


class _NativeSession:
    """The SavedModel in a session of TensorFlow's C API; runs release the GIL."""

    def __init__(self, path: str, options: LoadOptions) -> None:
        from fastserve import _core

        config = _session_config(options).SerializeToString()
        tags = list(options.saved_model_tags)
        try:
            self.session: Any = _core.TensorFlowSession(c_api_library(), path, tags, config)
        except _core.TensorFlowError as error:
            raise _status_from_native(error) from None

    def run(
        self, feeds: tuple[str, ...], values: list[np.ndarray], fetches: tuple[str, ...]
    ) -> list[np.ndarray]:
        from fastserve import _core

        try:
            return self.session.run(dict(zip(feeds, values, strict=True)), list(fetches))
        except _core.TensorFlowError as error:
            raise _status_from_native(error) from None

    def close(self) -> None:
        self.session.close()


def _status_from_native(error: Exception) -> ServingError:
    code, message = error.args
    try:
        return ServingError(Code(code), message)
    except ValueError:
        return ServingError(Code.UNKNOWN, message)


class _PythonSession:
    """The SavedModel in TensorFlow's Python session (the fallback runner).

    Each set of fed and fetched tensors is a session callable made on first use, so an output
    filter fetches (and computes) only what was asked for.
    """

    def __init__(self, path: str, options: LoadOptions) -> None:
        import tensorflow as tf

        self._graph = tf.Graph()
        self._session = tf.compat.v1.Session(graph=self._graph, config=_session_config(options))
        from tensorflow.python.saved_model.loader_impl import SavedModelLoader

        try:
            with self._graph.as_default():
                SavedModelLoader(path).load(self._session, list(options.saved_model_tags))
        except BaseException:
            self._session.close()
            raise
        self._callables: dict[tuple[tuple[str, ...], tuple[str, ...]], Callable[..., Any]] = {}
        self._callables_lock = threading.Lock()

    def _callable(self, feeds: tuple[str, ...], fetches: tuple[str, ...]) -> Callable[..., Any]:
        key = (feeds, fetches)
        found = self._callables.get(key)
        if found is not None:
            return found
        with self._callables_lock:
            found = self._callables.get(key)
            if found is None:
                from tensorflow.core.protobuf import config_pb2

                options = config_pb2.CallableOptions(feed=list(feeds), fetch=list(fetches))
                # A callable made from options feeds tensors as they are, like TF Serving's
                # C++ Session::Run: no client-side check of fed shapes against the graph's
                # static shapes (TF Serving's own half_plus_two is fed [n] for a (-1, 1) x),
                # and about half the per-call overhead of Session.make_callable.
                found = self._session._make_callable_from_options(options)
                self._callables[key] = found
        return found

    def run(
        self, feeds: tuple[str, ...], values: list[np.ndarray], fetches: tuple[str, ...]
    ) -> list[np.ndarray]:
        try:
            return list(self._callable(feeds, fetches)(*values))
        except Exception as error:  # TensorFlow raises its own error types
            raise _status_from_tf(error) from error

    def close(self) -> None:
        self._callables.clear()
        self._session.close()


def _native_servable(signatures: Mapping[str, Signature], session: Any, runtime: str) -> Any:
    """The version's signatures and C API session as the native Predict path takes them
    (None on the Python session)."""
    if session is None:
        return None
    from fastserve import _core

    def specs(tensors: Mapping[str, TensorInfo]) -> dict[str, tuple[str, int]]:
        return {alias: (info.name, int(info.dtype)) for alias, info in tensors.items()}

    return _core.NativeServable(
        {
            name: (signature.method_name, specs(signature.inputs), specs(signature.outputs))
            for name, signature in signatures.items()
        },
        session,
        runtime,
    )


class TensorFlowServable(Servable):
    """A SavedModel's meta graph in its own session: TensorFlow's C API runner, or TensorFlow's
    Python session where the C API cannot be loaded (`runner` says which, `native_session` is
    the _core.TensorFlowSession or None). Signatures come from the meta graph as saved."""

    runtime = "TF1"  # TF Serving's label for a session-based SavedModel

    def __init__(
        self, path: str, options: LoadOptions, meta_graph: Any, python_reason: str = ""
    ) -> None:
        self._signatures = {
            name: _signature(name, proto) for name, proto in meta_graph.signature_def.items()
        }
        self._session: _NativeSession | _PythonSession
        if python_reason:
            self._session = _PythonSession(path, options)
            self.runner = "python"
            self.native_session = None
        else:
            self._session = _NativeSession(path, options)
            self.runner = "c_api"
            self.native_session = self._session.session
        # The native Predict path serves this version without Python through this.
        self.native: Any = _native_servable(self._signatures, self.native_session, self.runtime)

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
        return self.run_many([(signature, output_names)], inputs)[0]

    def run_many(
        self,
        runs: Sequence[tuple[Signature, Sequence[str]]],
        inputs: Mapping[str, np.ndarray],
    ) -> list[dict[str, np.ndarray]]:
        """One session run feeding every signature's input tensors and fetching all their
        outputs, as TF Serving's MultiInference does (so a stateful graph steps once). One
        callable serves each set of fed and fetched tensors, whatever order an output filter
        names them in."""
        fed = {sig.inputs[alias].name: alias for sig, _ in runs for alias in sig.input_order}
        feeds = tuple(sorted(fed))
        fetches = tuple(sorted({sig.outputs[name].name for sig, names in runs for name in names}))
        values = dict(
            zip(
                fetches,
                self._session.run(feeds, [inputs[fed[tensor]] for tensor in feeds], fetches),
                strict=True,
            )
        )
        return [{name: values[sig.outputs[name].name] for name in names} for sig, names in runs]

    def unload(self) -> None:
        self._session.close()


def _require_tensorflow() -> None:
    """TensorFlow is an extra (fastserve[tensorflow]): without it a SavedModel's load fails
    with this, naming the extra, and other kinds keep serving."""
    try:
        import tensorflow  # noqa: F401
    except ImportError as error:
        raise ServingError(
            Code.FAILED_PRECONDITION,
            f"model_platform tensorflow needs TensorFlow, which cannot be imported ({error}): "
            f"{EXTRA}",
        ) from None


def _check_folder(path: str, tags: Sequence[str]) -> Any:
    """The SavedModel's meta graph tagged `tags`; fails the way TF Serving does when the
    folder is not a SavedModel with these tags."""
    if not any(os.path.exists(os.path.join(path, name)) for name in SAVED_MODEL_FILES):
        raise ServingError(
            Code.NOT_FOUND,
            f"Could not find SavedModel .pb or .pbtxt at supplied export directory path: {path}",
        )
    _require_tensorflow()
    from tensorflow.python.saved_model import loader_impl

    try:
        saved_model = loader_impl.parse_saved_model(path)
    except Exception as error:
        raise ServingError(Code.DATA_LOSS, f"Cannot parse SavedModel at {path}: {error}") from None
    wanted = set(tags)
    for graph in saved_model.meta_graphs:
        if set(graph.meta_info_def.tags) == wanted:
            return graph
    joined = " ".join(sorted(wanted))
    raise not_found(
        f"Could not find meta graph def matching supplied tags: {{ {joined} }}. To inspect "
        "available tag-sets in the SavedModel, please use the SavedModel CLI: "
        "`saved_model_cli`"
    )


class TensorFlowLoader(Loader):
    """Loads SavedModels (model_platform "tensorflow")."""

    platform = "tensorflow"

    def load(self, path: str, options: LoadOptions) -> Servable:
        # A version folder is <model base path>/<version>: the model's folder names it here.
        model = os.path.basename(os.path.dirname(os.path.normpath(path)))
        version = os.path.basename(os.path.normpath(path))
        if options.prefer_tflite_model and os.path.isfile(os.path.join(path, tflite.MODEL_FILE)):
            # As TF Serving's SavedModel factory does: the TF Lite model wherever there is one.
            servable = tflite.TfLiteLoader().load(path, options)
            log.info(
                "model %s version %s: served by TF Lite from %s (--prefer_tflite_model)",
                model,
                version,
                tflite.MODEL_FILE,
            )
            return servable
        meta_graph = _check_folder(path, options.saved_model_tags)
        problem = native_runner_problem()
        try:
            servable = TensorFlowServable(path, options, meta_graph, problem)
        except ServingError:
            raise
        except Exception as error:
            raise _status_from_tf(error) from error
        if problem:
            log.info(
                "model %s version %s: served by the Python TensorFlow session (%s)",
                model,
                version,
                problem,
            )
        else:
            log.info("model %s version %s: served by TensorFlow's C API runner", model, version)
        return servable
