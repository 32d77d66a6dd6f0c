"""scikit-learn models: `model.skops` (skops.io), or `model.joblib` with --allow_pickled_models.

`model.skops` is read by skops.io.load, which builds objects from the file's description
without running code from it, and only of the types it is told to trust. fastserve trusts
what skops trusts by default (scikit-learn's estimators, numpy, scipy), the few scikit-learn
types below that skops leaves to the caller (fitted trees, neighbour trees and the like: data
structures of scikit-learn's own), and the types servable.yaml lists under `trusted_types`
(the operator's decision). A file holding any other type fails its load, naming those types.

`model.joblib` is a pickle: loading it runs whatever code it holds, so it is loaded only when
the server runs with --allow_pickled_models, and fails its load with a message naming that
flag otherwise.

The model is a fitted estimator (or pipeline) with predict(); a classifier (`classes_`) with
predict_proba() also gives probabilities. Its predicted class is its predict()'s. Features are
named as in `feature_names_in_` (f0, f1, ... when it was fitted on an array); a tf.Example
missing one is INVALID_ARGUMENT (most estimators refuse NaN). `threads` sets every `n_jobs`
parameter of the estimator. Classifiers of several outputs are not served (serve them as a
python servable). Signatures and servable.yaml: see fastserve.servables.estimators (this kind
reads threads, input_dtype and trusted_types). scikit-learn and skops are imported when a
version loads (`pip install 'fastserve[sklearn]'`).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

from fastserve.errors import Code, ServingError, invalid_argument
from fastserve.servables.base import LoadOptions
from fastserve.servables.estimators import (
    COMMON_OPTIONS,
    Classes,
    Estimator,
    EstimatorLoader,
    Settings,
    default_feature_names,
    import_library,
)

PLATFORM = "sklearn"
EXTRA = "sklearn"
SKOPS_FILE = "model.skops"
JOBLIB_FILE = "model.joblib"
ALLOW_PICKLES_FLAG = "--allow_pickled_models"

# Types skops does not trust by default that are scikit-learn's own data structures, built
# from arrays (fitted trees of the tree ensembles and gradient boosting, neighbour search
# trees, distance metrics, the MLP's optimizers).
TRUSTED_TYPES = frozenset(
    {
        "sklearn.tree._tree.Tree",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.neighbors._kd_tree.KDTree",
        "sklearn.neighbors._ball_tree.BallTree",
        "sklearn.metrics._dist_metrics.EuclideanDistance64",
        "sklearn.metrics._dist_metrics.EuclideanDistance32",
        "sklearn.metrics._dist_metrics.ManhattanDistance64",
        "sklearn.metrics._dist_metrics.ManhattanDistance32",
        "sklearn.metrics._dist_metrics.MinkowskiDistance64",
        "sklearn.metrics._dist_metrics.MinkowskiDistance32",
        "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
        "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
    }
)

# An estimator fitted on a data frame warns when it predicts on an array ("X does not have
# valid feature names"); fastserve maps columns by name itself, so the warning says nothing.
# Set once, here: warnings.catch_warnings() around each call is not thread-safe.
warnings.filterwarnings("ignore", message="X does not have valid feature names")


class SklearnModel(Estimator):
    """A fitted estimator; predict and predict_proba are called from many threads at once
    (scikit-learn's fitted estimators are read-only there)."""

    runtime = "sklearn"
    missing_is_nan = False
    classes_from_probabilities = False

    def __init__(self, estimator: Any, settings: Settings, file: str) -> None:
        if not callable(getattr(estimator, "predict", None)):
            raise invalid_argument(
                f"{file} holds a {type(estimator).__name__}, which has no predict(): "
                "fastserve serves fitted estimators and pipelines"
            )
        self._estimator = estimator
        count = getattr(estimator, "n_features_in_", None)
        if not isinstance(count, (int, np.integer)):
            raise invalid_argument(
                f"{file}: the {type(estimator).__name__} has no n_features_in_; is it fitted?"
            )
        self.n_features = int(count)
        names = getattr(estimator, "feature_names_in_", None)
        self.feature_names = (
            tuple(str(name) for name in names)
            if names is not None
            else default_feature_names(self.n_features)
        )
        classes = getattr(estimator, "classes_", None)
        if classes is not None:
            if isinstance(classes, list) or np.ndim(classes) != 1:
                raise invalid_argument(
                    f"{file}: the {type(estimator).__name__} classifies several outputs, "
                    "which model_platform sklearn does not serve"
                )
            self._labels = np.asarray(classes)
            self.classes = Classes.of(list(classes))
            self.has_probabilities = _has_predict_proba(estimator)
        else:
            self.n_outputs = max(1, int(getattr(estimator, "n_outputs_", 1) or 1))
        if settings.threads:
            _set_jobs(estimator, settings.threads)

    def regress(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self._estimator.predict(x))

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self._estimator.predict_proba(x))

    def classify(self, x: np.ndarray, probabilities: np.ndarray | None) -> np.ndarray:
        predicted = np.asarray(self._estimator.predict(x))
        # classes_ is sorted (np.unique), so each predicted label's index is found by search.
        return np.searchsorted(self._labels, predicted)

    def close(self) -> None:
        self._estimator = None


def _has_predict_proba(estimator: Any) -> bool:
    """predict_proba may exist only when a setting allows it (SVC(probability=True)): hasattr
    asks scikit-learn's available_if."""
    try:
        return callable(getattr(estimator, "predict_proba", None))
    except AttributeError:
        return False


def _set_jobs(estimator: Any, threads: int) -> None:
    """Sets every n_jobs parameter (of the estimator and of its steps) to `threads`."""
    get_params = getattr(estimator, "get_params", None)
    if get_params is None:
        return
    jobs = {
        name: threads
        for name in get_params(deep=True)
        if name == "n_jobs" or name.endswith("__n_jobs")
    }
    if jobs:
        estimator.set_params(**jobs)


def refused_types(reported: list[str], trusted: tuple[str, ...]) -> list[str]:
    """Of the types skops `reported` as untrusted in a file, those neither fastserve nor
    servable.yaml's `trusted` trust."""
    return sorted(set(reported) - TRUSTED_TYPES - set(trusted))


class SklearnLoader(EstimatorLoader):
    """Loads `model.skops` (or, with --allow_pickled_models, `model.joblib`) version folders
    (model_platform "sklearn")."""

    platform = PLATFORM
    files = (SKOPS_FILE, JOBLIB_FILE)
    options = (*COMMON_OPTIONS, "trusted_types")

    def open(self, file: str, settings: Settings, options: LoadOptions) -> Estimator:
        import_library(PLATFORM, "sklearn", EXTRA)
        if os.path.basename(file) == JOBLIB_FILE:
            estimator = self._unpickle(file, options)
        else:
            estimator = self._skops(file, settings)
        return SklearnModel(estimator, settings, file)

    def _skops(self, file: str, settings: Settings) -> Any:
        skops_io = import_library(PLATFORM, "skops.io", EXTRA)
        try:
            reported = skops_io.get_untrusted_types(file=file)
        except Exception as error:  # a file that is not a skops archive (zip) or is damaged
            raise ServingError(
                Code.DATA_LOSS, f"Cannot load scikit-learn model {file}: {error}"
            ) from None
        refused = refused_types(reported, settings.trusted_types)
        if refused:
            raise ServingError(
                Code.FAILED_PRECONDITION,
                f"{file} holds types fastserve does not trust: {', '.join(refused)}. "
                f"If you trust this file, list them under trusted_types in "
                f"{os.path.join(os.path.dirname(file), 'servable.yaml')}",
            )
        try:
            return skops_io.load(file, trusted=reported)
        except Exception as error:
            raise ServingError(
                Code.DATA_LOSS, f"Cannot load scikit-learn model {file}: {error}"
            ) from None

    def _unpickle(self, file: str, options: LoadOptions) -> Any:
        if not options.allow_pickled_models:
            raise ServingError(
                Code.FAILED_PRECONDITION,
                f"{file} is a pickle, and loading a pickle runs the code it holds: fastserve "
                f"loads it only when started with {ALLOW_PICKLES_FLAG} (or save the model with "
                f"skops as {SKOPS_FILE})",
            )
        joblib = import_library(PLATFORM, "joblib", EXTRA)
        try:
            return joblib.load(file)
        except Exception as error:  # unpickling raises whatever the pickle's code raises
            raise ServingError(
                Code.DATA_LOSS,
                f"Cannot load scikit-learn model {file}: {type(error).__name__}: {error}",
            ) from None
