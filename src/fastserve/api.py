"""The inference API every frontend calls: resolve a model spec, check inputs, run, report.

Protocol-free: it takes and returns numpy arrays and fastserve types, and raises ServingError
with TF Serving's codes and messages, so gRPC and REST give the same answers.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from fastserve import dtypes
from fastserve.config import ModelConfig
from fastserve.core.manager import Manager
from fastserve.core.models import Models
from fastserve.core.states import VersionStatus
from fastserve.core.table import ServableHandle, ServableTable
from fastserve.errors import Code, ServingError, failed_precondition, internal, invalid_argument
from fastserve.metrics import Metrics
from fastserve.servables.base import (
    CLASSIFY_METHOD,
    DEFAULT_SIGNATURE,
    PREDICT_METHOD,
    REGRESS_METHOD,
    RunContext,
    Servable,
    Signature,
)

# --enable_signature_method_name_check: the methods Predict may run.
_PREDICT_METHODS = (PREDICT_METHOD, CLASSIFY_METHOD, REGRESS_METHOD)


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """Which model, which version (a number, a label, or the latest), which signature."""

    name: str
    version: int | None = None
    label: str | None = None
    signature_name: str = ""


class Resolved:
    """A held version of a model and the signature a request named. Call release() when done;
    until then the version cannot be unloaded."""

    __slots__ = ("_handle", "model", "servable", "signature", "version")

    def __init__(self, handle: ServableHandle, signature: Signature) -> None:
        self._handle = handle
        self.model: str = handle.model
        self.version: int = handle.version
        self.servable: Servable = handle.servable
        self.signature = signature

    def release(self) -> None:
        self._handle.release()


def _join(names: Sequence[str] | set[str]) -> str:
    return ",".join(sorted(names))


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
        try:
            return bool(handle.servable.queues_requests)
        finally:
            handle.release()

    def resolve(self, spec: ModelSpec, *, rest: bool = False) -> Resolved:
        """Holds the version `spec` names and finds its signature ("" means serving_default).

        TF Serving words a missing signature differently per protocol: gRPC answers
        FAILED_PRECONDITION, REST checks first and answers INVALID_ARGUMENT.
        """
        handle = self.acquire(spec)
        try:
            return Resolved(handle, find_signature(handle.servable, spec.signature_name, rest=rest))
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
        handle = self.acquire(spec)
        try:
            return handle.model, handle.version, handle.servable.signatures
        finally:
            handle.release()


# --- the servable-level part of a request, shared by the API and by warmup ---------------------


def find_signature(servable: Servable, name: str, *, rest: bool = False) -> Signature:
    """The signature a Predict names ("" means serving_default).

    TF Serving words a missing signature differently per protocol: gRPC answers
    FAILED_PRECONDITION, REST checks first and answers INVALID_ARGUMENT.
    """
    name = name or DEFAULT_SIGNATURE
    signature = servable.signatures.get(name)
    if signature is None:
        if rest:
            raise invalid_argument(f'Serving signature name: "{name}" not found in signature def')
        raise failed_precondition(f'Serving signature key "{name}" not found.')
    return signature


def check_predict_request(
    signature: Signature,
    input_names: Collection[str],
    output_filter: Sequence[str],
    check_method_names: bool = False,
) -> None:
    """A Predict's checks that need no tensor: the method name (with
    --enable_signature_method_name_check), the input aliases and the output filter."""
    if check_method_names and signature.method_name not in _PREDICT_METHODS:
        raise internal(
            "Expected prediction signature method_name to be one of {"
            f"{', '.join(_PREDICT_METHODS)}}}. Was: {signature.method_name}"
        )
    check_input_names(signature, input_names)
    select_outputs(signature, output_filter)


def run_predict(
    servable: Servable,
    signature: Signature,
    inputs: Mapping[str, np.ndarray],
    output_filter: Sequence[str] = (),
    context: RunContext | None = None,
    *,
    check_method_names: bool = False,
) -> dict[str, np.ndarray]:
    """Checks a Predict against `signature` and runs it on `servable`; returns the filtered
    outputs (all when no filter)."""
    check_predict_request(signature, inputs.keys(), output_filter, check_method_names)
    check_inputs(signature, inputs)
    output_names = select_outputs(signature, output_filter)
    if context is not None:
        context.check()
    try:
        outputs = servable.run(signature, inputs, output_names, context)
    except ServingError:
        raise
    except BaseException as error:  # whatever a servable raises, the request fails alone
        raise internal(f"{type(error).__name__}: {error}") from error
    if len(outputs) != len(output_names):
        raise ServingError(Code.UNKNOWN, "Predict internal error")
    return outputs


def check_inputs(signature: Signature, inputs: Mapping[str, np.ndarray]) -> None:
    """TF Serving's input checks: the names, then each tensor's dtype.

    Shapes are left to the servable, as TF Serving leaves them to the session: a graph may
    accept shapes its signature does not declare (TF Serving's half_plus_two takes [n] for x).
    """
    check_input_names(signature, inputs)
    expected = signature.inputs
    for position, alias in enumerate(signature.input_order):
        info = expected[alias]
        array = inputs[alias]
        try:
            got = dtypes.from_numpy(array.dtype)
        except TypeError:
            got = None
        if got is not info.dtype:
            got_name = got.short_name if got is not None else str(array.dtype)
            raise invalid_argument(
                f"Expects arg[{position}] to be {info.dtype.short_name} but {got_name} is provided"
            )


def check_input_names(signature: Signature, inputs: Collection[str]) -> None:
    """TF Serving's checks of the input aliases a request sent against the signature's."""
    expected = signature.inputs
    if len(inputs) != len(expected):
        sent, wanted = set(inputs), set(expected)
        raise invalid_argument(
            f"input size does not match signature: {len(inputs)}!={len(expected)} "
            f"len({{{_join(sent)}}}) != len({{{_join(wanted)}}}). "
            f"Sent extra: {{{_join(sent - wanted)}}}. "
            f"Missing but required: {{{_join(wanted - sent)}}}."
        )
    for alias in signature.input_order:
        if alias not in inputs:
            raise invalid_argument(
                f"Signature input alias: {alias}(feed name: {expected[alias].name}) not found "
                f"in request and no default value provided. Inputs expected to be in the "
                f"request {{{_join(set(inputs))}}}, or default input alias set: "
            )


def select_outputs(signature: Signature, output_filter: Sequence[str]) -> tuple[str, ...]:
    """The outputs to compute: the filter, checked against the signature, or all of them."""
    if not output_filter:
        return tuple(sorted(signature.outputs))
    seen: set[str] = set()
    for alias in output_filter:
        if alias not in signature.outputs:
            raise invalid_argument(
                f"output tensor alias not found in signature: {alias} Outputs expected to be "
                f"in the set {{{_join(set(signature.outputs))}}}."
            )
        if alias in seen:
            raise invalid_argument(f"duplicate output tensor alias: {alias}")
        seen.add(alias)
    return tuple(output_filter)
