"""Pipelines: `pipeline.yaml` chains served models and transforms under a signature of its own.

A version folder holds `pipeline.yaml` (and any vocabulary file a transform step names)::

    inputs:                           # the pipeline's signature: its inputs ...
      age: {dtype: float32, shape: [-1]}
    outputs:                          # ... and its outputs (dtype required, shape optional)
      score: {dtype: float32, shape: [-1]}
    steps:                            # run in order, on one dict of named arrays
      - transform:                    # inline ops, as in transform.yaml
          - {op: standardize, input: age, output: age_z, mean: 40.0, std: 10.0}
      - model: scorer                 # a served model, by name
        version: 2                    # optional: a version, or `label: stable` (not both)
        signature_name: serving_default   # optional
        inputs: {x: age_z}            # optional: the model's input alias -> a name of the
                                      #   pipeline (without it: each alias's own name)
        outputs: {y: score}           # the model's outputs -> names of the pipeline (or a
                                      #   list of aliases, kept under their own names)

A request runs only the steps its outputs need (with an output filter, a step whose names no
requested output depends on is skipped; a model step without an `inputs` mapping depends on
every name before it). A model step resolves its model when it runs, through
LoadOptions.resolve (the servable table, as server.py wires it), holds that version only while
it runs it, and passes the arrays as they are: nothing is encoded between steps. So a pipeline
loads whether or not the models it names are loaded yet; a step whose model is not served fails
the request (NOT_FOUND, with the step named). Every failure of a step is the request's failure
with the step's own status code and its message after "pipeline step N (model 'm'): ". A step
naming the pipeline's own model is a load error; a longer cycle (pipeline a calls b calls a)
fails the request, FAILED_PRECONDITION.
"""

from __future__ import annotations

import abc
import contextvars
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fastserve import dtypes
from fastserve.errors import Code, ServingError, failed_precondition, invalid_argument
from fastserve.servables.base import (
    Loader,
    LoadOptions,
    Resolve,
    Servable,
    check_declared_shapes,
)
from fastserve.servables.settings import Settings, read_yaml
from fastserve.servables.transform_ops import Op, read_ops, read_tensor_infos, run_ops
from fastserve.types import (
    DEFAULT_SIGNATURE,
    PREDICT_METHOD,
    RunContext,
    Signature,
    TensorInfo,
    shape_text,
)

PIPELINE_FILE = "pipeline.yaml"

# The pipelines running on this thread's request, outermost first: a cycle through several
# pipelines is caught when one is entered again. (A pipeline run by a batch thread starts a
# chain of its own, so do not batch pipelines that call each other.)
_RUNNING: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar(
    "fastserve_pipelines", default=()
)


class _Step(abc.ABC):
    """One step: runs on the pipeline's named arrays and adds its outputs to them. `label`
    ("pipeline step 2 (model 'scorer')") starts the message of each of its errors."""

    label: str

    @property
    @abc.abstractmethod
    def produces(self) -> frozenset[str]:
        """The names this step adds."""

    @property
    @abc.abstractmethod
    def consumes(self) -> frozenset[str] | None:
        """The names this step reads (None: not known before it runs, so any name)."""

    @abc.abstractmethod
    def run(self, values: dict[str, np.ndarray], context: RunContext | None) -> None: ...


@dataclass(frozen=True)
class TransformStep(_Step):
    label: str
    ops: tuple[Op, ...]

    def run(self, values: dict[str, np.ndarray], context: RunContext | None) -> None:
        run_ops(self.ops, values)

    @property
    def produces(self) -> frozenset[str]:
        return frozenset(op.output for op in self.ops)

    @property
    def consumes(self) -> frozenset[str]:
        return frozenset(name for op in self.ops for name in op.inputs) - self.produces


@dataclass(frozen=True)
class ModelStep(_Step):
    label: str
    model: str
    version: int | None
    version_label: str | None
    signature_name: str
    # The model's input alias -> the pipeline's name (None: each alias's own name).
    inputs: Mapping[str, str] | None
    # The model's output alias -> the pipeline's name.
    outputs: Mapping[str, str]
    resolve: Resolve

    @property
    def produces(self) -> frozenset[str]:
        return frozenset(self.outputs.values())

    @property
    def consumes(self) -> frozenset[str] | None:
        # Without a wiring, the model's signature (known when it runs) names what it reads.
        return None if self.inputs is None else frozenset(self.inputs.values())

    def run(self, values: dict[str, np.ndarray], context: RunContext | None) -> None:
        held = self.resolve(self.model, self.version, self.version_label)
        try:
            servable = held.servable
            signature = servable.signatures.get(self.signature_name)
            if signature is None:
                raise failed_precondition(
                    f'Serving signature key "{self.signature_name}" not found.'
                )
            feeds = self._feeds(signature, values)
            for alias in self.outputs:
                if alias not in signature.outputs:
                    raise failed_precondition(
                        f"signature {signature.name} has no output {alias} (it has "
                        f"{', '.join(sorted(signature.outputs))})"
                    )
            produced = servable.run(signature, feeds, tuple(self.outputs), context)
        finally:
            held.release()
        for alias, name in self.outputs.items():
            values[name] = produced[alias]

    def _feeds(self, signature: Signature, values: Mapping[str, np.ndarray]) -> dict[str, Any]:
        wiring = self.inputs if self.inputs is not None else {a: a for a in signature.inputs}
        for alias in wiring:
            if alias not in signature.inputs:
                raise failed_precondition(
                    f"signature {signature.name} has no input {alias} (it has "
                    f"{', '.join(sorted(signature.inputs))})"
                )
        feeds: dict[str, np.ndarray] = {}
        for alias, info in signature.inputs.items():
            name = wiring.get(alias)
            if name is None or name not in values:
                raise failed_precondition(
                    f"signature {signature.name} needs input {alias}, which no name of the "
                    f"pipeline feeds (names here: {', '.join(sorted(values))})"
                )
            array = values[name]
            if dtypes.matching(array.dtype) is not info.dtype:
                held = dtypes.short_name_of(array.dtype)
                raise invalid_argument(
                    f"input {alias} (from {name}) is {held}, and the model's signature takes "
                    f"{info.dtype.short_name}"
                )
            feeds[alias] = array
        return feeds


class PipelineServable(Servable):
    """A checked list of steps behind one signature."""

    runtime = "pipeline"
    # A step may wait in another model's batch queue.
    queues_requests = True

    def __init__(self, name: str, signature: Signature, steps: Sequence[_Step]) -> None:
        self._name = name
        self._signatures = {signature.name: signature}
        self._steps = tuple(steps)
        # The steps each set of outputs needs (an output filter runs only those).
        self._plans: dict[frozenset[str], tuple[_Step, ...]] = {}

    def _plan(self, output_names: Sequence[str]) -> tuple[_Step, ...]:
        """The steps `output_names` need, in order: walking back from the outputs, a step
        runs when it adds a name still needed, and then what it reads is needed too (all of
        the earlier steps, for a model step whose inputs are known only when it runs)."""
        key = frozenset(output_names)
        plan = self._plans.get(key)
        if plan is not None:
            return plan
        needed = set(key)
        kept: list[_Step] = []
        for position in range(len(self._steps) - 1, -1, -1):
            step = self._steps[position]
            if not needed & step.produces:
                continue
            consumes = step.consumes
            if consumes is None:
                kept.extend(reversed(self._steps[: position + 1]))
                break
            kept.append(step)
            needed |= consumes
        plan = tuple(reversed(kept))
        if len(self._plans) < 64:  # a few output filters are common; keep those
            self._plans[key] = plan
        return plan

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
        check_declared_shapes(signature, inputs)
        running = _RUNNING.get()
        if self._name in running:
            chain = " -> ".join((*running, self._name))
            raise failed_precondition(f"pipeline {self._name} calls itself: {chain}")
        token = _RUNNING.set((*running, self._name))
        try:
            values = dict(inputs)
            for step in self._plan(output_names):
                if context is not None:
                    context.check()
                try:
                    step.run(values, context)
                except ServingError as error:
                    raise ServingError(error.code, f"{step.label}: {error.message}") from None
                except Exception as error:  # a model's bug fails this request, named
                    raise ServingError(
                        Code.INTERNAL, f"{step.label}: {type(error).__name__}: {error}"
                    ) from error
        finally:
            _RUNNING.reset(token)
        return {name: self._output(signature.outputs[name], values[name]) for name in output_names}

    @staticmethod
    def _output(info: TensorInfo, array: np.ndarray) -> np.ndarray:
        if dtypes.matching(array.dtype) is not info.dtype:
            held = dtypes.short_name_of(array.dtype)
            raise failed_precondition(
                f"pipeline output {info.name} is {held}, but {PIPELINE_FILE} declares "
                f"{info.dtype.short_name}"
            )
        if not info.accepts_shape(array.shape):
            raise failed_precondition(
                f"pipeline output {info.name} has shape {shape_text(array.shape)}, which "
                f"{PIPELINE_FILE}'s shape {shape_text(info.shape)} does not accept"
            )
        return array


# --- reading pipeline.yaml ------------------------------------------------------------------


def _model_step(
    settings: Settings, label: str, names: dict[str, TensorInfo | None], options: LoadOptions
) -> ModelStep:
    model = settings.string("model")
    if model == options.model_name:
        settings.fail("a pipeline cannot call itself")
    if "version" in settings and "label" in settings:
        settings.fail("give version or label, not both")
    version = settings.integer("version", None, minimum=1)
    version_label = settings.string("label", None)
    signature_name = settings.string("signature_name", DEFAULT_SIGNATURE) or DEFAULT_SIGNATURE
    inputs = settings.mapping("inputs", None)
    if inputs is not None:
        for alias, name in inputs.items():
            if not isinstance(name, str):
                settings.fail(f"inputs: {alias}: expected a name of the pipeline, not {name!r}")
            if name not in names:
                settings.fail(
                    f"inputs: {alias}: {name} is not known here (known: {', '.join(sorted(names))})"
                )
        inputs = {str(alias): name for alias, name in inputs.items()}
    raw = settings.raw("outputs")
    if isinstance(raw, list) and raw and all(isinstance(a, str) for a in raw):
        outputs = {alias: alias for alias in raw}
    elif isinstance(raw, dict) and raw and all(isinstance(n, str) for n in raw.values()):
        outputs = {str(alias): name for alias, name in raw.items()}
    else:
        settings.fail(
            f"outputs: expected the model's outputs as a list of aliases or a mapping of alias "
            f"to name, not {raw!r}"
        )
    for name in outputs.values():
        if name in names:
            settings.fail(f"outputs: {name} is already a name of the pipeline")
        names[name] = None  # known only when the model has run
    settings.finish()
    assert options.resolve is not None
    return ModelStep(
        label, model, version, version_label, signature_name, inputs, outputs, options.resolve
    )


def read_pipeline(path: str, options: LoadOptions) -> tuple[Signature, list[_Step]]:
    """pipeline.yaml of the version folder `path`, checked: the signature and the steps."""
    settings = read_yaml(path, PIPELINE_FILE, required=True)
    assert settings is not None
    inputs = read_tensor_infos(settings, "inputs")
    outputs = read_tensor_infos(settings, "outputs")
    items = settings.raw("steps")
    if not isinstance(items, list) or not items:
        settings.fail("steps: expected a non-empty list of steps")
    names: dict[str, TensorInfo | None] = dict(inputs)
    steps: list[_Step] = []
    for number, item in enumerate(items, start=1):
        where = f"{settings.where}: step {number}"
        if not isinstance(item, dict) or ("model" in item) == ("transform" in item):
            raise invalid_argument(
                f"{where}: expected a mapping with model: NAME or transform: [ops], not {item!r}"
            )
        if "transform" in item:
            label = f"pipeline step {number} (transform)"
            step_settings = Settings(item, f"{settings.where}: step {number} (transform)")
            ops, names = read_ops(
                step_settings.raw("transform"),
                step_settings.where,
                path,
                names,
                known_as="a name of the pipeline",
            )
            step_settings.finish()
            steps.append(TransformStep(label, tuple(ops)))
        else:
            step = f"step {number} (model {item['model']!r})"
            label = f"pipeline {step}"
            step_settings = Settings(item, f"{settings.where}: {step}")
            steps.append(_model_step(step_settings, label, names, options))
    for name, info in outputs.items():
        if name not in names:
            settings.fail(
                f"outputs: {name} is neither an input nor a step's output (known: "
                f"{', '.join(sorted(names))})"
            )
        known = names[name]
        if known is not None and known.dtype is not info.dtype:
            settings.fail(
                f"outputs: {name} is {known.dtype.short_name}, not {info.dtype.short_name}"
            )
    settings.finish()
    return Signature(DEFAULT_SIGNATURE, inputs, outputs, PREDICT_METHOD), steps


class PipelineLoader(Loader):
    """Loads `pipeline.yaml` version folders (model_platform "pipeline")."""

    platform = "pipeline"

    def load(self, path: str, options: LoadOptions) -> Servable:
        if options.resolve is None:
            raise failed_precondition(
                "model_platform pipeline needs a server that resolves the models it calls "
                "(LoadOptions.resolve); this loader was given none"
            )
        signature, steps = read_pipeline(path, options)
        return PipelineServable(options.model_name or path, signature, steps)
