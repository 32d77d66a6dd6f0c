"""XGBoost models: `model.json` or `model.ubj` in the version folder, as `Booster.save_model`
(or the scikit-learn API's `save_model`) writes them, run by xgboost's inplace_predict.

A booster whose objective is binary:logistic, binary:logitraw, multi:softprob or
multi:softmax is a classifier: its probabilities are the sigmoid (binary) or softmax (multi)
of its margins, its classes the indices "0", "1", ... unless servable.yaml names them
(`class_labels`). Any other objective is a regressor, of `num_target` outputs. Signatures and
servable.yaml: see fastserve.servables.estimators (this kind reads threads, input_dtype and
class_labels). xgboost is imported when a version loads (`pip install 'fastserve[xgboost]'`).
"""

from __future__ import annotations

import json
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

PLATFORM = "xgboost"
_BINARY = ("binary:logistic", "binary:logitraw")
_MULTI = ("multi:softprob", "multi:softmax")


class XGBoostModel(Estimator):
    """A Booster; inplace_predict is thread-safe and runs in libxgboost without the GIL."""

    runtime = "xgboost"
    missing_is_nan = True

    def __init__(self, booster: Any, settings: Settings, file: str) -> None:
        self._booster = booster
        config = json.loads(booster.save_config())["learner"]
        objective = config["objective"]["name"]
        parameters = config["learner_model_param"]
        self.n_features = booster.num_features()
        names = booster.feature_names
        self.feature_names = tuple(names) if names else default_feature_names(self.n_features)
        self._binary = objective in _BINARY
        if self._binary or objective in _MULTI:
            count = 2 if self._binary else int(parameters["num_class"])
            self.classes = Classes.indices(count, settings.class_labels, file)
        else:
            if settings.class_labels is not None:
                raise invalid_argument(
                    f"{file}: class_labels given for a regressor (objective {objective})"
                )
            self.n_outputs = max(1, int(parameters.get("num_target", "1")))

    def _predict(self, x: np.ndarray, kind: str) -> np.ndarray:
        # validate_features compares names with a data frame's columns; an array has none,
        # and its column count is checked by the signature's shape.
        return np.asarray(
            self._booster.inplace_predict(x, predict_type=kind, validate_features=False)
        )

    def regress(self, x: np.ndarray) -> np.ndarray:
        return self._predict(x, "value")

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        margins = self._predict(x, "margin").astype(np.float64)
        if self._binary:
            positive = 1.0 / (1.0 + np.exp(-margins.reshape(-1)))
            return np.stack([1.0 - positive, positive], axis=1)
        margins -= margins.max(axis=1, keepdims=True)
        exponents = np.exp(margins)
        return exponents / exponents.sum(axis=1, keepdims=True)

    def close(self) -> None:
        self._booster = None


class XGBoostLoader(EstimatorLoader):
    """Loads `model.json` / `model.ubj` version folders (model_platform "xgboost")."""

    platform = PLATFORM
    files = ("model.json", "model.ubj")
    options = (*COMMON_OPTIONS, "class_labels")

    def open(self, file: str, settings: Settings, options: LoadOptions) -> Estimator:
        xgboost = import_library(PLATFORM, "xgboost", "xgboost")
        try:
            booster = xgboost.Booster(model_file=file)
            if settings.threads:
                booster.set_param({"nthread": settings.threads})
        except xgboost.core.XGBoostError as error:
            message = str(error).split("\nStack trace:", 1)[0].strip()
            raise ServingError(
                Code.DATA_LOSS, f"Cannot load XGBoost model {file}: {message}"
            ) from None
        return XGBoostModel(booster, settings, file)
