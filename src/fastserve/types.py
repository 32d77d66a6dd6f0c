"""The plain values every layer shares: model specs, signatures, run contexts, version states."""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from fastserve.dtypes import DType
from fastserve.errors import Code, ServingError


class State(enum.IntEnum):
    """ModelVersionStatus.State: START -> LOADING -> AVAILABLE -> UNLOADING -> END."""

    UNKNOWN = 0
    START = 10
    LOADING = 20
    AVAILABLE = 30
    UNLOADING = 40
    END = 50


@dataclass(frozen=True)
class VersionStatus:
    """What GetModelStatus reports for one version; `error` is set when it ended in failure."""

    version: int
    state: State
    error: ServingError | None = None


# SignatureDef method names (tensorflow/cc/saved_model/signature_constants.h).
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
DEFAULT_SIGNATURE = "serving_default"


def shape_text(shape: Sequence[int] | None) -> str:
    """A shape as TF Serving's messages print it: "[2,3]", or "[?]" when the rank is unknown."""
    if shape is None:
        return "[?]"
    return "[" + ",".join(str(d) for d in shape) + "]"


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """Which model, which version (a number, a label, or the latest), which signature."""

    name: str
    version: int | None = None
    label: str | None = None
    signature_name: str = ""


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


@dataclass(frozen=True)
class SSLConfig:
    """TF Serving's SSLConfig: PEM contents (not paths) of the server's key and certificate
    chain, and of the CA that client certificates must be signed by."""

    server_key: str
    server_cert: str
    custom_ca: str = ""
    client_verify: bool = False
