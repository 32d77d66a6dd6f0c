"""The contract every kind of servable meets: a Loader makes a Servable from one version folder.

A servable knows nothing of protocols: it receives numpy arrays keyed by the signature's
input names and returns numpy arrays keyed by its output names. The inference API checks
requests against the signature before calling run(), so a servable may trust its inputs.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import numpy as np

from fastserve.errors import invalid_argument
from fastserve.types import RunContext, Signature, shape_text

T = TypeVar("T")
U = TypeVar("U")


class Pending(Generic[T]):
    """Work handed to a queue that ends later, for a caller that does not wait for it on a
    thread of its own: `waitable` (a fastserve._core.Task, which C++ can be told to call back
    when it ends) ends when the work did, and finish() then gives its result or raises its
    error. finish() must be called exactly once, after `waitable` ended."""

    __slots__ = ("finish", "waitable")

    def __init__(self, waitable: object, finish: Callable[[], T]) -> None:
        self.waitable = waitable
        self.finish = finish

    def then(self, step: Callable[[T], U]) -> Pending[U]:
        """The same work, whose result goes through `step` (errors pass it by)."""
        finish = self.finish
        return Pending(self.waitable, lambda: step(finish()))


class Servable(abc.ABC):
    """One loaded version of a model.

    Guarantees an implementation must give:
    - `signatures` is fixed once the servable is constructed (it is read without locks).
    - run() is safe to call from many threads at once, and does not hold the GIL while it
      computes where the underlying runtime allows (TensorFlow releases it).
    - run() returns exactly the outputs asked for, each a numpy array whose dtype matches the
      signature (strings as object arrays of bytes).
    - unload() is called once, after the last run() has returned and no new one can start;
      it frees what the servable holds (sessions, graphs, files).
    Errors: raise fastserve.errors.ServingError to choose the status code; any other
    exception reaches the client as INTERNAL with its message.
    """

    # What computes: the `runtime` label of the runtime_latency metric.
    runtime: str = "unknown"
    # Whether run() waits for other requests (a batch queue) rather than just computing.
    queues_requests: bool = False
    # Whether start() queues the request and returns Pending instead of waiting for it (the
    # native gRPC path then answers it without a thread waiting).
    pends: bool = False

    @property
    @abc.abstractmethod
    def signatures(self) -> Mapping[str, Signature]: ...

    @abc.abstractmethod
    def run(
        self,
        signature: Signature,
        inputs: Mapping[str, np.ndarray],
        output_names: Sequence[str],
        context: RunContext | None = None,
    ) -> dict[str, np.ndarray]:
        """Runs `signature` on `inputs` (every input of the signature, checked for dtype;
        shapes are the servable's to check) and returns the outputs named in `output_names`
        (a non-empty subset of the signature's outputs, without duplicates). `context` carries
        the request's deadline and cancellation for servables that queue work."""

    def start(
        self,
        signature: Signature,
        inputs: Mapping[str, np.ndarray],
        output_names: Sequence[str],
        context: RunContext | None = None,
    ) -> dict[str, np.ndarray] | Pending[dict[str, np.ndarray]]:
        """run() for a caller that will not wait: a servable whose run() waits for other
        requests (a batch queue) returns Pending at once instead; by default, run()'s outputs.
        Cancellation is then the caller's to handle (abandoning the waitable), not `context`'s."""
        return self.run(signature, inputs, output_names, context)

    def run_many(
        self,
        runs: Sequence[tuple[Signature, Sequence[str]]],
        inputs: Mapping[str, np.ndarray],
    ) -> list[dict[str, np.ndarray]]:
        """Runs several signatures that share their input on the same `inputs` (MultiInference);
        one result per run, in order. This default runs them one after the other; a servable
        that can compute them in one pass overrides it."""
        return [self.run(signature, inputs, outputs) for signature, outputs in runs]

    def unload(self) -> None:  # noqa: B027 - optional hook; most servables own nothing else
        """Frees what the servable holds. Called once, when no request is using it."""


class HeldServable(Protocol):
    """A served version held for one use (the servable table's handle): the version cannot be
    unloaded until release() is called, which must be called exactly once."""

    @property
    def version(self) -> int: ...

    @property
    def servable(self) -> Servable: ...

    def release(self) -> None: ...


# (model name, version or None, label or None) -> the version held; raises a ServingError
# worded as a request's lookup is (NOT_FOUND "Servable not found for request: Latest(m)").
Resolve = Callable[[str, int | None, str | None], HeldServable]


@dataclass(frozen=True)
class LoadOptions:
    """Settings a loader may honour; each kind ignores what does not concern it."""

    saved_model_tags: tuple[str, ...] = ("serve",)
    intra_op_parallelism: int = 0
    inter_op_parallelism: int = 0
    # TF Serving's --prefer_tflite_model: a SavedModel folder that also holds model.tflite
    # serves the TF Lite model.
    prefer_tflite_model: bool = False
    # --allow_pickled_models: kinds that can read pickles (sklearn's model.joblib) may load
    # them; loading a pickle runs the code it holds.
    allow_pickled_models: bool = False
    # The name of the model whose version is loading (the manager sets it; "" outside one).
    model_name: str = ""
    # How a servable that calls other served models (a pipeline) reaches them, at request
    # time: it holds each version only while it runs it and keeps no handle past a request.
    # None where no server is wired in (such a servable then fails to load).
    resolve: Resolve | None = field(default=None, compare=False, repr=False)


class Loader(abc.ABC):
    """Makes servables of one kind (one `model_platform`) from version folders.

    load() runs on a load thread, never on a request path; it may take long. It must either
    return a servable ready to serve or raise (a ServingError, or any exception whose message
    tells the operator what is wrong with the folder). It must not leave anything behind when
    it raises.
    """

    platform: str

    @abc.abstractmethod
    def load(self, path: str, options: LoadOptions) -> Servable: ...


def check_declared_shapes(signature: Signature, inputs: Mapping[str, np.ndarray]) -> None:
    """For kinds whose declared input shapes are their contract (TensorFlow leaves shapes to
    the graph): INVALID_ARGUMENT naming the first input whose shape the signature refuses."""
    for alias, array in inputs.items():
        info = signature.inputs[alias]
        if not info.accepts_shape(array.shape):
            raise invalid_argument(
                f"input tensor {alias} has shape {shape_text(array.shape)}, which the "
                f"signature's shape {shape_text(info.shape)} does not accept"
            )
