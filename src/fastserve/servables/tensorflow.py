"""TensorFlow SavedModels, loaded into a session as TensorFlow Serving loads them."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from fastserve.dtypes import DType
from fastserve.errors import Code, ServingError, not_found
from fastserve.servables.base import (
    Loader,
    LoadOptions,
    RunContext,
    Servable,
    Signature,
    TensorInfo,
)

SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")


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
    return ServingError(Code.INTERNAL, f"{type(error).__name__}: {error}")


class TensorFlowServable(Servable):
    """A SavedModel's meta graph in its own graph and session.

    Every signature is a session callable made on first use for each set of outputs, so an
    output filter fetches (and computes) only what was asked for.
    """

    runtime = "TF1"  # TF Serving's label for a session-based SavedModel

    def __init__(self, path: str, options: LoadOptions) -> None:
        import tensorflow as tf

        v1 = tf.compat.v1
        tags = list(options.saved_model_tags)
        # TensorFlow runs small graphs fastest on the calling thread; fastserve's request
        # threads already give the parallelism, so "auto" (0) means inline (-1) here.
        inter_op = options.inter_op_parallelism or -1
        config = v1.ConfigProto(
            inter_op_parallelism_threads=inter_op,
            intra_op_parallelism_threads=options.intra_op_parallelism,
            allow_soft_placement=True,
        )
        self._graph = tf.Graph()
        self._session = v1.Session(graph=self._graph, config=config)
        from tensorflow.python.saved_model.loader_impl import SavedModelLoader

        try:
            with self._graph.as_default():
                meta_graph = SavedModelLoader(path).load(self._session, tags)
        except BaseException:
            self._session.close()
            raise
        self._signatures = {
            name: _signature(name, proto) for name, proto in meta_graph.signature_def.items()
        }
        self._callables: dict[tuple[tuple[str, ...], tuple[str, ...]], Callable[..., Any]] = {}
        self._callables_lock = threading.Lock()

    @property
    def signatures(self) -> Mapping[str, Signature]:
        return self._signatures

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

    def _run_tensors(
        self, feeds: tuple[str, ...], values: list[np.ndarray], fetches: tuple[str, ...]
    ) -> list[np.ndarray]:
        try:
            return list(self._callable(feeds, fetches)(*values))
        except Exception as error:  # TensorFlow raises its own error types
            raise _status_from_tf(error) from error

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
                self._run_tensors(feeds, [inputs[fed[tensor]] for tensor in feeds], fetches),
                strict=True,
            )
        )
        return [{name: values[sig.outputs[name].name] for name in names} for sig, names in runs]

    def unload(self) -> None:
        self._callables.clear()
        self._session.close()


def _check_folder(path: str, tags: Sequence[str]) -> None:
    """Fails the way TF Serving does when the folder is not a SavedModel with these tags."""
    if not any(os.path.exists(os.path.join(path, name)) for name in SAVED_MODEL_FILES):
        raise ServingError(
            Code.NOT_FOUND,
            f"Could not find SavedModel .pb or .pbtxt at supplied export directory path: {path}",
        )
    from tensorflow.python.saved_model import loader_impl

    try:
        saved_model = loader_impl.parse_saved_model(path)
    except Exception as error:
        raise ServingError(Code.DATA_LOSS, f"Cannot parse SavedModel at {path}: {error}") from None
    wanted = set(tags)
    if not any(set(graph.meta_info_def.tags) == wanted for graph in saved_model.meta_graphs):
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
        _check_folder(path, options.saved_model_tags)
        try:
            return TensorFlowServable(path, options)
        except ServingError:
            raise
        except Exception as error:
            raise _status_from_tf(error) from error
