"""The contract every kind of servable meets: a Loader makes a Servable from one version folder.

A servable knows nothing of protocols: it receives numpy arrays keyed by the signature's
input names and returns numpy arrays keyed by its output names. The inference API checks
requests against the signature before calling run(), so a servable may trust its inputs.
"""

from __future__ import annotations

import abc
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from fastserve.dtypes import DType
from fastserve.errors import Code, ServingError

# SignatureDef method names (tensorflow/cc/saved_model/signature_constants.h).
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
DEFAULT_SIGNATURE = "serving_default"


@dataclass(frozen=True)
class TensorInfo:
    """One input or output of a signature.

    `name` is the tensor's own name inside the servable (for TensorFlow, the graph tensor such
    as "x:0"); the signature's key is the alias clients use. `shape` is None when the rank is
    unknown; a dimension of -1 is unknown.
    """

    name: str
    dtype: DType
    shape: tuple[int, ...] | None

    def accepts_shape(self, shape: Sequence[int]) -> bool:
        if self.shape is None:
            return True
        if len(shape) != len(self.shape):
            return False
        return all(want < 0 or want == got for want, got in zip(self.shape, shape, strict=True))


@dataclass(frozen=True)
class Signature:
    """A named function of a servable: typed inputs to typed outputs."""

    name: str
    inputs: Mapping[str, TensorInfo]
    outputs: Mapping[str, TensorInfo]
    method_name: str = PREDICT_METHOD
    # Input aliases in a fixed order, for messages and positional feeds.
    input_order: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_order", tuple(sorted(self.inputs)))


class RunContext:
    """What a request brings besides its tensors: a deadline, and a way to be cancelled.

    `deadline` is a time.monotonic() value after which the caller no longer wants the result
    (None: no deadline). Work that waits (a batch queue) registers on_cancel() callbacks;
    they run once, when the caller goes away, and one registered after that runs at once.
    Thread-safe.
    """

    __slots__ = ("_callbacks", "_cancelled", "_lock", "deadline")

    def __init__(self, deadline: float | None = None) -> None:
        self.deadline = deadline
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], object]] = []
        self._cancelled = False

    @classmethod
    def within(cls, seconds: float | None) -> RunContext:
        """A context whose deadline is `seconds` from now (None: no deadline)."""
        return cls(None if seconds is None else time.monotonic() + seconds)

    def remaining(self) -> float | None:
        """Seconds left before the deadline (never negative), or None without one."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def check(self) -> None:
        """Raises when the caller no longer wants the result (its deadline passed, or it went
        away): work about to start is then never started."""
        if self._cancelled:
            raise ServingError(Code.CANCELLED, "The request was cancelled before it ran")
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise ServingError(
                Code.DEADLINE_EXCEEDED, "The request's deadline passed before it ran"
            )

    def cancel(self) -> None:
        with self._lock:
            if self._cancelled:
                return
            self._cancelled = True
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def on_cancel(self, callback: Callable[[], object]) -> None:
        with self._lock:
            if not self._cancelled:
                self._callbacks.append(callback)
                return
        callback()


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


@dataclass(frozen=True)
class LoadOptions:
    """Settings a loader may honour; each kind ignores what does not concern it."""

    saved_model_tags: tuple[str, ...] = ("serve",)
    intra_op_parallelism: int = 0
    inter_op_parallelism: int = 0


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
