"""The inference API every frontend calls: resolve a model spec, check inputs, run, report.

Protocol-free: it takes and returns numpy arrays and fastserve types, and raises ServingError
with TF Serving's codes and messages, so gRPC and REST give the same answers.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping, Sequence

import numpy as np

from fastserve.api.predict import check_predict_request, run_predict, start_predict
from fastserve.api.signatures import Asking, find_signature
from fastserve.core.manager import Manager
from fastserve.core.models import ModelConfig, Models
from fastserve.core.table import ServableHandle, ServableTable
from fastserve.errors import ServingError, invalid_argument
from fastserve.observability.metrics import Metrics
from fastserve.servables.base import Pending, Servable
from fastserve.types import (
    ModelSpec,
    RunContext,
    Signature,
    VersionStatus,
)


class Resolved:
    """A held version of a model and the signature a request named. Until it is released
    (`with resolved:` or release()) the version cannot be unloaded.

    The rule for every API call: whoever acquires a version releases it, in a `with` block.
    Predict's frontends resolve themselves, to check a request before decoding its tensors;
    every other call acquires and releases inside the API."""

    __slots__ = ("_handle", "model", "servable", "signature", "version")

    def __init__(self, handle: ServableHandle, signature: Signature) -> None:
        self._handle = handle
        self.model: str = handle.model
        self.version: int = handle.version
        self.servable: Servable = handle.servable
        self.signature = signature

    def release(self) -> None:
        self._handle.release()

    def __enter__(self) -> Resolved:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.release()


class InferenceAPI:
    """Predict, metadata and status over the servable table and the manager."""

    def __init__(
        self,
        table: ServableTable,
        manager: Manager,
        models: Models,
        *,
        check_method_names: bool = False,
        metrics: Metrics | None = None,
    ) -> None:
        self._table = table
        self._manager = manager
        self._models = models
        self._check_method_names = check_method_names
        self.metrics = metrics or Metrics(enabled=False)
        self._acquire_latest = table.lookup_latest
        self._acquire_version = table.lookup_version

    @property
    def table(self) -> ServableTable:
        return self._table

    @property
    def check_method_names(self) -> bool:
        return self._check_method_names

    # --- resolving ---------------------------------------------------------------------------

    def acquire(self, spec: ModelSpec) -> ServableHandle:
        # The common cases go straight to the C++ lookup; misses and labels take the
        # wrapper, which words the errors.
        if spec.label is None and spec.name:
            if spec.version is None:
                handle = self._acquire_latest(spec.name)
            else:
                handle = self._acquire_version(spec.name, spec.version)
            if handle is not None:
                return handle
        if not spec.name:
            raise invalid_argument("ModelSpec has no name specified.")
        return self._table.acquire(spec.name, spec.version, spec.label)

    def queues(self, spec: ModelSpec) -> bool:
        """Whether the version `spec` resolves to queues its requests (batching): a caller
        then waits for others' requests too, so it must not hold an event loop meanwhile.
        False when nothing is found (the request itself will say why)."""
        try:
            handle = self.acquire(spec)
        except ServingError:
            return False
        with handle:
            return bool(handle.servable.queues_requests)

    def resolve(self, spec: ModelSpec, *, rest: bool = False) -> Resolved:
        """Holds the version `spec` names and finds its signature ("" means serving_default).

        TF Serving words a missing signature differently per protocol: gRPC answers
        FAILED_PRECONDITION, REST checks first and answers INVALID_ARGUMENT.
        """
        handle = self.acquire(spec)
        try:
            asking = Asking.REST_PREDICT if rest else Asking.GRPC_PREDICT
            return Resolved(handle, find_signature(handle.servable, spec.signature_name, asking))
        except BaseException:
            handle.release()
            raise

    # --- predict -----------------------------------------------------------------------------

    def check_request(
        self, resolved: Resolved, input_names: Collection[str], output_filter: Sequence[str]
    ) -> None:
        """The checks that need no tensor: the method name, the input aliases and the output
        filter. A frontend runs them before it decodes any tensor, as TF Serving does."""
        check_predict_request(
            resolved.signature, input_names, output_filter, self._check_method_names
        )

    def predict(
        self,
        resolved: Resolved,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str] = (),
        context: RunContext | None = None,
    ) -> dict[str, np.ndarray]:
        """Runs the resolved signature; returns the filtered outputs (all when no filter)."""
        servable = resolved.servable
        with self.metrics.runtime(resolved.model, "Predict", servable.runtime):
            return run_predict(
                servable,
                resolved.signature,
                inputs,
                output_filter,
                context,
                check_method_names=self._check_method_names,
            )

    def start_predict(
        self,
        resolved: Resolved,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str] = (),
        context: RunContext | None = None,
    ) -> dict[str, np.ndarray] | Pending[dict[str, np.ndarray]]:
        """predict() for a caller that will not wait: Pending on the outputs when the servable
        queued the request (Servable.start). Its runtime is timed until finish()."""
        servable = resolved.servable
        started = time.perf_counter()

        def observe() -> None:
            self.metrics.runtime_observed(
                resolved.model, "Predict", servable.runtime, (time.perf_counter() - started) * 1e6
            )

        try:
            outcome = start_predict(
                servable,
                resolved.signature,
                inputs,
                output_filter,
                context,
                check_method_names=self._check_method_names,
            )
        except BaseException:
            observe()
            raise
        if not isinstance(outcome, Pending):
            observe()
            return outcome
        finish = outcome.finish

        def finished() -> dict[str, np.ndarray]:
            try:
                return finish()
            finally:
                observe()

        return Pending(outcome.waitable, finished)

    # --- config ------------------------------------------------------------------------------

    def reload_config(self, models: Sequence[ModelConfig]) -> None:
        """HandleReloadConfigRequest: serve exactly `models` from now on; returns once each is
        served, or raises naming those that failed."""
        self._models.apply(models)

    # --- status and metadata -----------------------------------------------------------------

    def model_status(
        self, name: str, version: int | None = None, label: str | None = None
    ) -> list[VersionStatus]:
        """GetModelStatus: one version's status, or every version's, highest first."""
        if label is not None:
            labelled = self._table.labels(name).get(label)
            if labelled is None:
                raise invalid_argument(f"Unrecognized servable version label: {label}")
            version = labelled
        if version is not None:
            return [self._manager.status(name, version)]
        return self._manager.statuses(name)

    def metadata(self, spec: ModelSpec) -> tuple[str, int, Mapping[str, Signature]]:
        """GetModelMetadata's signature_def: the model, its resolved version, its signatures."""
        with self.acquire(spec) as handle:
            return handle.model, handle.version, handle.servable.signatures
