"""Predict's servable-level steps, shared by the API and by warmup: find the signature, check
the request against it, run it, select the outputs."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

from fastserve import dtypes
from fastserve.errors import (
    Code,
    ServingError,
    from_exception,
    internal,
    invalid_argument,
)
from fastserve.servables.base import Pending, Servable
from fastserve.types import (
    CLASSIFY_METHOD,
    PREDICT_METHOD,
    REGRESS_METHOD,
    RunContext,
    Signature,
)

# --enable_signature_method_name_check: the methods Predict may run.
_PREDICT_METHODS = (PREDICT_METHOD, CLASSIFY_METHOD, REGRESS_METHOD)


def _join(names: Sequence[str] | set[str]) -> str:
    return ",".join(sorted(names))


# --- the servable-level part of a request, shared by the API and by warmup ---------------------


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
    output_names = _checked(signature, inputs, output_filter, context, check_method_names)
    outputs = _servables_own(servable.run, signature, inputs, output_names, context)
    return _counted(outputs, output_names)


def start_predict(
    servable: Servable,
    signature: Signature,
    inputs: Mapping[str, np.ndarray],
    output_filter: Sequence[str] = (),
    context: RunContext | None = None,
    *,
    check_method_names: bool = False,
) -> dict[str, np.ndarray] | Pending[dict[str, np.ndarray]]:
    """run_predict() for a caller that will not wait (Servable.start): the outputs, or
    Pending on them when the servable queued the request."""
    output_names = _checked(signature, inputs, output_filter, context, check_method_names)
    started = _servables_own(servable.start, signature, inputs, output_names, context)
    if isinstance(started, Pending):
        return started.then(lambda outputs: _counted(outputs, output_names))
    return _counted(started, output_names)


def _checked(
    signature: Signature,
    inputs: Mapping[str, np.ndarray],
    output_filter: Sequence[str],
    context: RunContext | None,
    check_method_names: bool,
) -> tuple[str, ...]:
    """TF Serving's checks of a Predict before it runs; the outputs to compute."""
    check_predict_request(signature, inputs.keys(), output_filter, check_method_names)
    check_inputs(signature, inputs)
    output_names = select_outputs(signature, output_filter)
    if context is not None:
        context.check()
    return output_names


R = TypeVar("R")


def _servables_own(call: Callable[..., R], *args: Any) -> R:
    """`call(*args)`, a servable's: whatever it raises fails the request alone, as a
    ServingError (its own, or INTERNAL naming the exception)."""
    try:
        return call(*args)
    except ServingError:
        raise
    except BaseException as error:
        raise from_exception(error) from error


def _counted(outputs: dict[str, np.ndarray], output_names: Sequence[str]) -> dict[str, np.ndarray]:
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
        if dtypes.matching(array.dtype) is not info.dtype:
            raise invalid_argument(
                f"Expects arg[{position}] to be {info.dtype.short_name} but "
                f"{dtypes.short_name_of(array.dtype)} is provided"
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
