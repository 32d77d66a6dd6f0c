"""What the tree and linear model kinds (xgboost, lightgbm, sklearn) share: their signatures,
their servable.yaml, tf.Examples as feature columns, and Predict, Classify and Regress on them.

A kind's module only opens its model file as an `Estimator` (the few questions this module
asks of a model: how many features and their names, classifier or regressor, and the
predictions); everything else is here, so the three kinds serve the same signatures:

- `serving_default` (Predict): input `inputs`, `[-1, n_features]` of the declared input dtype
  (float32 unless servable.yaml says `input_dtype: float64`); output `predictions`: for a
  regressor its values, `[-1]` (`[-1, n_outputs]` for several targets), of the input dtype;
  for a classifier the predicted class, `[-1]` (int64 class values, or strings when the
  labels are strings). A classifier that gives probabilities adds `probabilities`,
  `[-1, n_classes]` of the input dtype, in the order of its class labels.
- `classify` (a classifier, tensorflow/serving/classify): input `inputs`, a `[-1]` string
  tensor of serialized tf.Examples (what TF Serving's Classify API feeds); outputs `classes`
  (`[-1, n_classes]` strings, every row the class labels) and `scores` (`[-1, n_classes]`
  float, the probabilities). A classifier without probabilities gives only `classes`,
  `[-1, 1]`, the predicted class.
- `regress` (a regressor of one target, tensorflow/serving/regress): input `inputs` as for
  classify; output `outputs`, `[-1]` float.

A tf.Example's features map to columns by the names the model was trained with (f0, f1, ...
when it has none); see fastserve.codecs.tf_example.example_columns.
"""

from __future__ import annotations

import abc
import importlib
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from fastserve.codecs.tf_example import example_columns
from fastserve.dtypes import DType
from fastserve.errors import Code, ServingError, internal, invalid_argument
from fastserve.servables.base import Loader, LoadOptions, Servable, check_declared_shapes
from fastserve.servables.settings import servable_options, whole_number
from fastserve.types import (
    CLASSIFY_METHOD,
    DEFAULT_SIGNATURE,
    PREDICT_METHOD,
    REGRESS_METHOD,
    RunContext,
    Signature,
    TensorInfo,
)

CLASSIFY_SIGNATURE = "classify"
REGRESS_SIGNATURE = "regress"
# Tensor names, as TF Serving's Classify and Regress APIs name them.
INPUTS = "inputs"
PREDICTIONS = "predictions"
PROBABILITIES = "probabilities"
CLASSES = "classes"
SCORES = "scores"
OUTPUTS = "outputs"

_INPUT_DTYPES = {"float32": DType.DT_FLOAT, "float64": DType.DT_DOUBLE}
# The servable.yaml options every kind of this module reads; a kind adds its own.
COMMON_OPTIONS = ("threads", "input_dtype")


def default_feature_names(count: int) -> tuple[str, ...]:
    """The names of a model's features when it was trained without names: f0, f1, ..."""
    return tuple(f"f{index}" for index in range(count))


# --- servable.yaml ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """A version's servable.yaml, checked.

    threads: threads one prediction may use (nthread, num_threads or n_jobs); 1 by default,
      because the server runs many requests (or batches) at once; 0 leaves it to the library,
      which takes every core.
    input_dtype: the dtype of serving_default's `inputs` (float32 or float64).
    class_labels: the labels of a classifier's classes, in class order (xgboost and lightgbm
      know only class indices; without labels they are "0", "1", ...).
    trusted_types: types a skops file may hold beyond those fastserve trusts (sklearn).
    """

    threads: int = 1
    input_dtype: DType = DType.DT_FLOAT
    class_labels: tuple[str, ...] | None = None
    trusted_types: tuple[str, ...] = ()


def read_settings(path: str, known: Collection[str]) -> Settings:
    """The version folder's servable.yaml (defaults without the file); `known` are the options
    the kind reads: any other fails the load, naming the file."""
    file, loaded = servable_options(path, known)
    values: dict[str, Any] = {}
    for key, value in loaded.items():
        if key == "threads":
            values[key] = whole_number(file, key, value, 0)
        elif key == "input_dtype":
            if value not in _INPUT_DTYPES:
                raise invalid_argument(
                    f"{file}: input_dtype: expected float32 or float64, not {value!r}"
                )
            values[key] = _INPUT_DTYPES[value]
        else:  # class_labels, trusted_types: lists of strings
            if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
                raise invalid_argument(f"{file}: {key}: expected a list of strings, not {value!r}")
            values[key] = tuple(value)
    return Settings(**values)


# --- what a kind gives -------------------------------------------------------------------------


@dataclass(frozen=True)
class Classes:
    """A classifier's class labels: `labels` as the Classify API reports them (strings), and
    `values` as Predict's `predictions` gives them (int64 where every label is a whole number,
    else the strings)."""

    labels: tuple[bytes, ...]
    values: np.ndarray

    @classmethod
    def of(cls, labels: Sequence[Any]) -> Classes:
        """Labels as a library keeps them (numbers, strings, numpy scalars)."""
        items = list(labels)
        whole = all(
            isinstance(item, (int, np.integer, bool, np.bool_))
            or (isinstance(item, (float, np.floating)) and float(item).is_integer())
            for item in items
        )
        if whole:
            values = np.array([int(item) for item in items], dtype=np.int64)
            return cls(tuple(str(int(item)).encode() for item in items), values)
        text = [item.decode() if isinstance(item, bytes) else str(item) for item in items]
        strings = np.empty(len(text), dtype=object)
        strings[:] = [item.encode("utf-8") for item in text]
        return cls(tuple(strings), strings)

    @classmethod
    def indices(cls, count: int, labels: tuple[str, ...] | None, file: str) -> Classes:
        """A classifier that knows only class indices: servable.yaml's class_labels, or the
        indices themselves."""
        if labels is None:
            return cls.of(range(count))
        if len(labels) != count:
            raise invalid_argument(
                f"{file}: class_labels names {len(labels)} classes; the model has {count}"
            )
        return cls.of(labels)

    @property
    def dtype(self) -> DType:
        return DType.DT_INT64 if self.values.dtype == np.int64 else DType.DT_STRING


class Estimator(abc.ABC):
    """One opened model, as a kind's module gives it to EstimatorServable.

    Its methods are called from many threads at once, with a 2-D float array of the declared
    input dtype (never empty) of `n_features` columns; they return numpy arrays of one row per
    input row. A library's exception may escape: the servable words it.
    """

    runtime: str
    n_features: int
    # Column names of tf.Examples, one per feature.
    feature_names: tuple[str, ...]
    # True: a missing tf.Example feature is NaN, which the model treats as missing.
    missing_is_nan: bool
    # A classifier's classes, or None for a regressor.
    classes: Classes | None = None
    # A classifier: whether probabilities() works, and whether classify() needs them (its
    # predicted class is then their argmax).
    has_probabilities: bool = True
    classes_from_probabilities: bool = True
    # A regressor: how many values it predicts per row (1: `[-1]`).
    n_outputs: int = 1

    def regress(self, x: np.ndarray) -> np.ndarray:
        """A regressor's predictions: [n] or [n, n_outputs]."""
        raise NotImplementedError

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """A classifier's probabilities: [n, n_classes], columns in class order."""
        raise NotImplementedError

    def classify(self, x: np.ndarray, probabilities: np.ndarray | None) -> np.ndarray:
        """A classifier's predicted class of each row, as indices into its classes;
        `probabilities` are the rows' probabilities where the caller already has them."""
        if probabilities is None:
            probabilities = self.probabilities(x)
        return np.argmax(probabilities, axis=1)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Frees what the model holds."""


# --- the servable ----------------------------------------------------------------------------


def _signatures(model: Estimator, input_dtype: DType) -> dict[str, Signature]:
    inputs = {INPUTS: TensorInfo(INPUTS, input_dtype, (-1, model.n_features))}
    examples = {INPUTS: TensorInfo(INPUTS, DType.DT_STRING, (-1,))}
    signatures: dict[str, Signature] = {}
    if model.classes is None:
        shape = (-1,) if model.n_outputs == 1 else (-1, model.n_outputs)
        outputs = {PREDICTIONS: TensorInfo(PREDICTIONS, input_dtype, shape)}
        signatures[DEFAULT_SIGNATURE] = Signature(DEFAULT_SIGNATURE, inputs, outputs)
        if model.n_outputs == 1:
            regress = {OUTPUTS: TensorInfo(OUTPUTS, DType.DT_FLOAT, (-1,))}
            signatures[REGRESS_SIGNATURE] = Signature(
                REGRESS_SIGNATURE, examples, regress, REGRESS_METHOD
            )
        return signatures
    count = len(model.classes.labels)
    outputs = {PREDICTIONS: TensorInfo(PREDICTIONS, model.classes.dtype, (-1,))}
    if model.has_probabilities:
        outputs[PROBABILITIES] = TensorInfo(PROBABILITIES, input_dtype, (-1, count))
        classify = {
            CLASSES: TensorInfo(CLASSES, DType.DT_STRING, (-1, count)),
            SCORES: TensorInfo(SCORES, DType.DT_FLOAT, (-1, count)),
        }
    else:
        classify = {CLASSES: TensorInfo(CLASSES, DType.DT_STRING, (-1, 1))}
    signatures[DEFAULT_SIGNATURE] = Signature(DEFAULT_SIGNATURE, inputs, outputs, PREDICT_METHOD)
    signatures[CLASSIFY_SIGNATURE] = Signature(
        CLASSIFY_SIGNATURE, examples, classify, CLASSIFY_METHOD
    )
    return signatures


def _error(error: Exception) -> ServingError:
    """A library's exception as a status: ValueError (the libraries' input checks) is
    INVALID_ARGUMENT, anything else INTERNAL; native stack traces are cut off."""
    message = str(error).split("\nStack trace:", 1)[0].strip() or type(error).__name__
    if isinstance(error, ValueError):
        return invalid_argument(message)
    return internal(message)


class EstimatorServable(Servable):
    """An Estimator under the signatures above. run() calls the library's predict, which
    releases the GIL while it computes (xgboost and lightgbm in their C++ libraries, scikit-
    learn in its Cython and numpy loops)."""

    def __init__(self, model: Estimator, input_dtype: DType) -> None:
        self._model = model
        self.runtime = model.runtime
        self._dtype = input_dtype.numpy
        self._signatures = _signatures(model, input_dtype)

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
        model = self._model
        if signature.name == DEFAULT_SIGNATURE:
            x = inputs[INPUTS]
        else:
            x = example_columns(
                list(inputs[INPUTS]),
                model.feature_names,
                self._dtype,
                missing_is_nan=model.missing_is_nan,
            )
        try:
            computed = self._compute(x, output_names)
        except ServingError:
            raise
        except Exception as error:  # the libraries raise their own exception types
            raise _error(error) from None
        return {name: computed[name] for name in output_names}

    def _compute(self, x: np.ndarray, output_names: Sequence[str]) -> dict[str, np.ndarray]:
        model = self._model
        rows = x.shape[0]
        if model.classes is None:
            shape = (rows,) if model.n_outputs == 1 else (rows, model.n_outputs)
            values = np.asarray(model.regress(x)) if rows else np.zeros(shape)
            values = values.reshape(shape)
            return {
                PREDICTIONS: values.astype(self._dtype, copy=False),
                OUTPUTS: values.astype(np.float32, copy=False),
            }
        classes = model.classes
        count = len(classes.labels)
        wanted = set(output_names)
        computed: dict[str, np.ndarray] = {}
        probabilities = None
        if model.has_probabilities and (
            wanted & {PROBABILITIES, SCORES}
            or (PREDICTIONS in wanted and model.classes_from_probabilities)
        ):
            probabilities = (
                np.asarray(model.probabilities(x)).reshape(rows, count)
                if rows
                else np.zeros((0, count))
            )
            computed[PROBABILITIES] = probabilities.astype(self._dtype, copy=False)
            computed[SCORES] = probabilities.astype(np.float32, copy=False)
        if model.has_probabilities:
            if CLASSES in wanted:  # every row lists the labels, as TF Serving's estimators do
                table = np.empty((rows, count), dtype=object)
                table[:] = np.asarray(classes.labels, dtype=object)
                computed[CLASSES] = table
            if PREDICTIONS not in wanted:
                return computed
        chosen = (
            np.asarray(model.classify(x, probabilities), dtype=np.int64)
            if rows
            else np.zeros(0, dtype=np.int64)
        )
        computed[PREDICTIONS] = classes.values[chosen]
        if not model.has_probabilities:  # classify's one column: the predicted class
            labels = np.empty((rows, 1), dtype=object)
            labels[:, 0] = [classes.labels[index] for index in chosen]
            computed[CLASSES] = labels
        return computed

    def unload(self) -> None:
        self._model.close()


# --- the loader ------------------------------------------------------------------------------


def import_library(platform: str, module: str, extra: str) -> ModuleType:
    """The kind's library, or FAILED_PRECONDITION naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ServingError(
            Code.FAILED_PRECONDITION,
            f"model_platform {platform} needs {module}, which cannot be imported ({error}): "
            f"pip install 'fastserve[{extra}]'",
        ) from None


class EstimatorLoader(Loader):
    """Loads version folders holding one of `files`; a kind says how to open its file."""

    files: tuple[str, ...]
    options: tuple[str, ...] = COMMON_OPTIONS

    @abc.abstractmethod
    def open(self, file: str, settings: Settings, options: LoadOptions) -> Estimator:
        """The model in `file` (one of `files`), opened with servable.yaml's `settings`."""

    def load(self, path: str, options: LoadOptions) -> Servable:
        found = [name for name in self.files if os.path.isfile(os.path.join(path, name))]
        if not found:
            raise ServingError(
                Code.NOT_FOUND, f"Could not find {' or '.join(self.files)} in {path}"
            )
        if len(found) > 1:
            raise invalid_argument(
                f"{path} holds {' and '.join(found)}; a version folder of model_platform "
                f"{self.platform} holds one model file"
            )
        settings = read_settings(path, self.options)
        model = self.open(os.path.join(path, found[0]), settings, options)
        return EstimatorServable(model, settings.input_dtype)
