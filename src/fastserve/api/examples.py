"""Classify, Regress and MultiInference over serialized tf.Examples, protocol-free.

Each takes the serialized examples a frontend decoded, runs the signature(s) on a servable
(run_classify, run_regress, run_multi_inference, which warmup calls too) or on the model
version a spec names (Tasks), checks the outputs as TF Serving checks them and returns plain
results: (label, score) rows per example, or one value per example.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from fastserve.api.inference import InferenceAPI
from fastserve.api.predict import check_inputs
from fastserve.api.signatures import Asking, find_signature
from fastserve.dtypes import DType, from_numpy
from fastserve.errors import Code, ServingError, invalid_argument
from fastserve.servables.base import Servable
from fastserve.types import (
    CLASSIFY_METHOD,
    DEFAULT_SIGNATURE,
    REGRESS_METHOD,
    ModelSpec,
    RunContext,
    Signature,
    shape_text,
)

INPUTS = "inputs"
CLASSES = "classes"
SCORES = "scores"
OUTPUTS = "outputs"


@dataclass(frozen=True)
class Served:
    """Which model version and signature answered (a response's model_spec)."""

    model: str
    version: int
    signature_name: str


@dataclass(frozen=True)
class Classifications:
    """Per example, its (label, score) pairs; a label is b"" or a score 0.0 when the
    signature has no such output."""

    rows: list[list[tuple[bytes, float]]]


@dataclass(frozen=True)
class Regressions:
    values: list[float]


def _debug_string(signature: Signature) -> str:
    from google.protobuf import text_format

    from fastserve.codecs.protos import signature_def_map

    return text_format.MessageToString(signature_def_map({"s": signature}).signature_def["s"])


def _dtype_name(array: np.ndarray) -> str:
    try:
        return from_numpy(array.dtype).name
    except TypeError:
        return str(array.dtype)


def classification_outputs(signature: Signature, check_method: bool) -> list[str]:
    """TF Serving's PreProcessClassification: the outputs to fetch, classes before scores."""
    if check_method and signature.method_name != CLASSIFY_METHOD:
        raise invalid_argument(
            f"Expected classification signature method_name to be {CLASSIFY_METHOD}. "
            f"Was: {signature.method_name}"
        )
    if len(signature.inputs) != 1:
        raise invalid_argument("Expected one input Tensor.")
    if len(signature.outputs) not in (1, 2):
        raise invalid_argument(
            f"Expected one or two output Tensors, found {len(signature.outputs)}"
        )
    if INPUTS not in signature.inputs:
        raise invalid_argument(
            f"No classification inputs found in SignatureDef: {_debug_string(signature)}"
        )
    outputs = [name for name in (CLASSES, SCORES) if name in signature.outputs]
    if not outputs:
        raise invalid_argument(
            'Expected classification signature outputs to contain at least one of "classes" '
            f'or "scores". Signature was: {_debug_string(signature)}'
        )
    return outputs


def regression_outputs(signature: Signature, check_method: bool) -> list[str]:
    """TF Serving's PreProcessRegression."""
    if check_method and signature.method_name != REGRESS_METHOD:
        raise invalid_argument(
            f"Expected regression signature method_name to be {REGRESS_METHOD}. "
            f"Was: {signature.method_name}"
        )
    if len(signature.inputs) != 1:
        raise invalid_argument("Expected one input Tensor.")
    if len(signature.outputs) != 1:
        raise invalid_argument("Expected one output Tensor.")
    if INPUTS not in signature.inputs:
        raise invalid_argument(
            f"No regression inputs found in SignatureDef: {_debug_string(signature)}"
        )
    if OUTPUTS not in signature.outputs:
        raise invalid_argument(
            f"No regression outputs found in SignatureDef: {_debug_string(signature)}"
        )
    return [OUTPUTS]


def _check_matrix(array: np.ndarray, what: str, dtype: DType, examples: int) -> None:
    if array.ndim != 2:
        raise invalid_argument(
            f"Expected Tensor shape: [batch_size num_classes] but got {shape_text(array.shape)}"
        )
    if _dtype_name(array) != dtype.name:
        raise invalid_argument(f"Expected {what} Tensor of {dtype.name}. Got: {_dtype_name(array)}")
    if array.shape[0] != examples:
        raise invalid_argument(
            f"Expected {what} output batch size of {examples}. Got: {array.shape[0]}"
        )


def classifications(outputs: dict[str, np.ndarray], examples: int) -> Classifications:
    """TF Serving's PostProcessClassificationResult."""
    classes = outputs.get(CLASSES)
    scores = outputs.get(SCORES)
    if classes is not None:
        _check_matrix(classes, "classes", DType.DT_STRING, examples)
    if scores is not None:
        _check_matrix(scores, "scores", DType.DT_FLOAT, examples)
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise invalid_argument(
            "Tensors class and score should match in dim_size(1). Got "
            f"{classes.shape[1]} vs. {scores.shape[1]}"
        )
    width = (classes if classes is not None else scores).shape[1]  # type: ignore[union-attr]
    rows = []
    for row in range(examples):
        rows.append(
            [
                (
                    bytes(classes[row, column]) if classes is not None else b"",
                    float(scores[row, column]) if scores is not None else 0.0,
                )
                for column in range(width)
            ]
        )
    return Classifications(rows)


def regressions(outputs: dict[str, np.ndarray], examples: int) -> Regressions:
    """TF Serving's PostProcessRegressionResult."""
    values = outputs[OUTPUTS]
    if not (values.ndim == 1 or (values.ndim == 2 and values.shape[1] == 1)):
        raise invalid_argument(
            "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got "
            f"{shape_text(values.shape)}"
        )
    if values.shape[0] != examples:
        raise invalid_argument(
            f"Input batch size did not match output batch size: {examples} vs. {values.shape[0]}"
        )
    if _dtype_name(values) != DType.DT_FLOAT.name:
        raise invalid_argument(f"Expected output Tensor of DT_FLOAT.  Got: {_dtype_name(values)}")
    return Regressions([float(v) for v in values.reshape(-1)])


def _examples_tensor(examples: Sequence[bytes]) -> np.ndarray:
    if not examples:
        raise invalid_argument("Input is empty.")
    array = np.empty(len(examples), dtype=object)
    array[:] = list(examples)
    return array


def run_classify(
    servable: Servable,
    signature_name: str,
    examples: Sequence[bytes],
    context: RunContext | None = None,
    *,
    check_method_names: bool = False,
) -> Classifications:
    """Classify on one servable: the signature `signature_name` ("" means serving_default)
    over the serialized examples."""
    produced, count = _run_examples(
        servable, signature_name, examples, classification_outputs, context, check_method_names
    )
    return classifications(produced, count)


def run_regress(
    servable: Servable,
    signature_name: str,
    examples: Sequence[bytes],
    context: RunContext | None = None,
    *,
    check_method_names: bool = False,
) -> Regressions:
    """Regress on one servable, as run_classify() does."""
    produced, count = _run_examples(
        servable, signature_name, examples, regression_outputs, context, check_method_names
    )
    return regressions(produced, count)


def _run_examples(
    servable: Servable,
    signature_name: str,
    examples: Sequence[bytes],
    outputs_of: Callable[[Signature, bool], list[str]],
    context: RunContext | None,
    check_method_names: bool,
) -> tuple[dict[str, np.ndarray], int]:
    signature = find_signature(servable, signature_name, Asking.CLASSIFY_OR_REGRESS)
    output_names = outputs_of(signature, check_method_names)
    inputs = {INPUTS: _examples_tensor(examples)}
    check_inputs(signature, inputs)
    if context is not None:
        context.check()
    return servable.run(signature, inputs, output_names, context), len(examples)


def run_multi_inference(
    servable: Servable,
    tasks: Sequence[tuple[ModelSpec, str]],
    examples: Sequence[bytes] | None,
    *,
    check_method_names: bool = False,
) -> list[tuple[Signature, Classifications | Regressions]]:
    """TF Serving's MultiInference on one servable: every task (all naming the first task's
    model), one pass over the input feeding every task's input tensor; each task's signature
    and result, in task order."""
    first = tasks[0][0].name if tasks else ""
    plans: list[tuple[Signature, str, list[str]]] = []
    seen: set[str] = set()
    for spec, method in tasks:
        if not spec.name:
            raise invalid_argument("Found ModelSpec with an empty model name.")
        if spec.name != first:
            raise invalid_argument(
                "All ModelSpecs in a MultiInferenceRequest must access the same model name."
            )
        name = spec.signature_name or DEFAULT_SIGNATURE
        if name in seen:
            raise invalid_argument(f"Duplicate evaluation of signature: {name}")
        seen.add(name)
        signature = find_signature(servable, name, Asking.MULTI_INFERENCE)
        if method == CLASSIFY_METHOD:
            outputs = classification_outputs(signature, check_method_names)
        elif method == REGRESS_METHOD:
            outputs = regression_outputs(signature, check_method_names)
        else:
            raise ServingError(Code.UNIMPLEMENTED, f"Unsupported signature method_name: {method}")
        plans.append((signature, method, outputs))
    # As TF Serving does since 2020, the examples feed every task's input tensor in one run:
    # a TF2 SavedModel gives each signature its own (regress_x_to_y_inputs:0, ...), a TF1
    # model usually shares one. An input tensor that cannot take serialized examples (a
    # float) is refused before anything runs, with Predict's dtype message.
    inputs = {INPUTS: _examples_tensor(examples or [])}
    for signature, _, _ in plans:
        check_inputs(signature, inputs)
    produced = servable.run_many([(sig, outs) for sig, _, outs in plans], inputs)
    results: list[tuple[Signature, Classifications | Regressions]] = []
    count = len(inputs[INPUTS])
    for (signature, method, _), fetched in zip(plans, produced, strict=True):
        if method == CLASSIFY_METHOD:
            results.append((signature, classifications(fetched, count)))
        else:
            results.append((signature, regressions(fetched, count)))
    return results


Result = TypeVar("Result", Classifications, Regressions)


class Tasks:
    """Classify, Regress and MultiInference on the model versions the inference API holds."""

    def __init__(self, api: InferenceAPI, check_method_names: bool = False) -> None:
        self._api = api
        self._check_methods = check_method_names

    def classify(
        self, spec: ModelSpec, examples: Sequence[bytes], context: RunContext | None = None
    ) -> tuple[Served, Classifications]:
        return self._on_examples(spec, examples, context, "Classify", run_classify)

    def regress(
        self, spec: ModelSpec, examples: Sequence[bytes], context: RunContext | None = None
    ) -> tuple[Served, Regressions]:
        return self._on_examples(spec, examples, context, "Regress", run_regress)

    def _on_examples(
        self,
        spec: ModelSpec,
        examples: Sequence[bytes],
        context: RunContext | None,
        api: str,
        run: Callable[..., Result],
    ) -> tuple[Served, Result]:
        with self._api.acquire(spec) as handle:
            metrics = self._api.metrics
            metrics.examples(spec.name, len(examples))
            with metrics.runtime(spec.name, api, handle.servable.runtime):
                result = run(
                    handle.servable,
                    spec.signature_name,
                    examples,
                    context,
                    check_method_names=self._check_methods,
                )
            return _served(spec, handle.version), result

    def multi_inference(
        self, tasks: Sequence[tuple[ModelSpec, str]], examples: Sequence[bytes] | None
    ) -> list[tuple[Served, Classifications | Regressions]]:
        """Every task on the first task's model version; results in task order."""
        first = tasks[0][0] if tasks else ModelSpec("")
        with self._api.acquire(first) as handle:
            metrics = self._api.metrics
            metrics.examples(first.name, len(examples or ()))
            with metrics.runtime(first.name, "MultiInference", handle.servable.runtime):
                results = run_multi_inference(
                    handle.servable, tasks, examples, check_method_names=self._check_methods
                )
            return [
                (Served(spec.name, handle.version, signature.name), result)
                for (spec, _), (signature, result) in zip(tasks, results, strict=True)
            ]


def _served(spec: ModelSpec, version: int) -> Served:
    return Served(spec.name, version, spec.signature_name or DEFAULT_SIGNATURE)
