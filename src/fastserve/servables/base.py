"""The contract every kind of servable meets: a Loader makes a Servable from one version folder.

A servable knows nothing of protocols: it receives numpy arrays keyed by the signature's
input names and returns numpy arrays keyed by its output names. The inference API checks
requests against the signature before calling run(), so a servable may trust its inputs.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from fastserve.errors import invalid_argument
from fastserve.types import RunContext, Signature, shape_text


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
    # --allow_pickled_models: kinds that can read pickles (sklearn's model.joblib) may load
    # them; loading a pickle runs the code it holds.
    allow_pickled_models: bool = False


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
