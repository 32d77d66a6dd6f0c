"""LightGBM models: `model.txt` in the version folder, as `Booster.save_model` (or
`LGBMModel.booster_.save_model`) writes it, run by lightgbm's predict.

A booster whose objective is binary, multiclass or multiclassova is a classifier (its classes
the indices "0", "1", ... unless servable.yaml names them with `class_labels`); any other
objective is a regressor. Features keep the names the model was trained with; a model trained
without names (lightgbm calls them Column_0, Column_1, ...) takes f0, f1, ... in tf.Examples.
Signatures and servable.yaml: see fastserve.servables.estimators (this kind reads threads,
input_dtype and class_labels). lightgbm is imported when a version loads
(`pip install 'fastserve[lightgbm]'`).
"""

from __future__ import annotations

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

PLATFORM = "lightgbm"
_CLASSIFIERS = ("binary", "multiclass", "multiclassova")


def objective_of(file: str) -> str:
    """The objective's name in a model file's header (`objective=multiclass num_class:3`):
    read from the file, since a Booster tells it only by dumping every tree."""
    with open(file, encoding="utf-8", errors="replace") as stream:
        for line in stream:
            if line.startswith("objective="):
                return line[len("objective=") :].split(" ", 1)[0].strip()
            if line.startswith("Tree="):
                break
    return ""


class LightGBMModel(Estimator):
    """A Booster; predict runs in LightGBM's library without the GIL, and many threads may
    predict at once (the library takes a shared lock for prediction)."""

    runtime = "lightgbm"
    missing_is_nan = True

    def __init__(self, booster: Any, objective: str, settings: Settings, file: str) -> None:
        self._booster = booster
        self._threads = settings.threads
        self.n_features = booster.num_feature()
        names = tuple(booster.feature_name())
        unnamed = names == tuple(f"Column_{index}" for index in range(self.n_features))
        self.feature_names = default_feature_names(self.n_features) if unnamed else names
        if objective in _CLASSIFIERS:
            count = 2 if objective == "binary" else booster.num_model_per_iteration()
            self.classes = Classes.indices(count, settings.class_labels, file)
            self._binary = objective == "binary"
        elif settings.class_labels is not None:
            raise invalid_argument(
                f"{file}: class_labels given for a regressor (objective {objective or 'unknown'})"
            )

    def _predict(self, x: np.ndarray) -> np.ndarray:
        extra = {"num_threads": self._threads} if self._threads else {}
        return np.asarray(self._booster.predict(x, **extra))

    def regress(self, x: np.ndarray) -> np.ndarray:
        return self._predict(x)

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        predicted = self._predict(x)
        if self._binary:
            positive = predicted.reshape(-1)
            return np.stack([1.0 - positive, positive], axis=1)
        return predicted

    def close(self) -> None:
        self._booster = None


class LightGBMLoader(EstimatorLoader):
    """Loads `model.txt` version folders (model_platform "lightgbm")."""

    platform = PLATFORM
    files = ("model.txt",)
    options = (*COMMON_OPTIONS, "class_labels")

    def open(self, file: str, settings: Settings, options: LoadOptions) -> Estimator:
        lightgbm = import_library(PLATFORM, "lightgbm", "lightgbm")
        try:
            booster = lightgbm.Booster(model_file=file)
        except lightgbm.basic.LightGBMError as error:
            raise ServingError(
                Code.DATA_LOSS, f"Cannot load LightGBM model {file}: {error}"
            ) from None
        return LightGBMModel(booster, objective_of(file), settings, file)
