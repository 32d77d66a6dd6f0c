"""Small xgboost, lightgbm and scikit-learn models trained on synthetic data (no downloads),
written as version folders. Each model is trained once per test session (functools.cache);
writing it into a folder is cheap."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin

FEATURES = 4
NAMES = ("alpha", "beta", "gamma", "delta")


def data(rows: int = 300, seed: int = 0) -> np.ndarray:
    """Rows of FEATURES standard normal features, float32."""
    return np.random.default_rng(seed).normal(size=(rows, FEATURES)).astype(np.float32)


def three_classes(x: np.ndarray) -> np.ndarray:
    """0, 1 or 2: how many of the first two features are positive."""
    return (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0)


def target(x: np.ndarray, scale: float = 1.0) -> np.ndarray:
    return scale * (x @ np.array([1.0, 2.0, -1.0, 0.5]))


def _folder(version_dir: Path) -> Path:
    version_dir.mkdir(parents=True, exist_ok=True)
    return version_dir


# --- xgboost ---------------------------------------------------------------------------------


@functools.cache
def xgboost_classifier() -> Any:
    """A 3-class XGBClassifier (multi:softprob) fitted on an array: features f0..f3."""
    import xgboost

    x = data()
    return xgboost.XGBClassifier(n_estimators=8, max_depth=3, n_jobs=1).fit(x, three_classes(x))


@functools.cache
def xgboost_regressor(scale: float = 1.0) -> Any:
    """A Booster (reg:squarederror) with named features, trained with xgboost.train."""
    import xgboost

    x = data()
    matrix = xgboost.DMatrix(x, label=target(x, scale), feature_names=list(NAMES))
    parameters = {"objective": "reg:squarederror", "max_depth": 3, "nthread": 1}
    return xgboost.train(parameters, matrix, num_boost_round=10)


def save_xgboost(model: Any, version_dir: Path, file: str = "model.json") -> Path:
    model.save_model(str(_folder(version_dir) / file))
    return version_dir


# --- lightgbm --------------------------------------------------------------------------------


@functools.cache
def lightgbm_classifier() -> Any:
    """A 3-class LGBMClassifier (multiclass) fitted on an array: features Column_0.. (f0..)."""
    import lightgbm

    x = data()
    model = lightgbm.LGBMClassifier(n_estimators=8, num_leaves=7, n_jobs=1, verbose=-1)
    return model.fit(x, three_classes(x))


@functools.cache
def lightgbm_regressor(scale: float = 1.0) -> Any:
    """A Booster (regression) with named features, trained with lightgbm.train."""
    import lightgbm

    x = data()
    dataset = lightgbm.Dataset(x, label=target(x, scale), feature_name=list(NAMES))
    parameters = {"objective": "regression", "num_leaves": 7, "num_threads": 1, "verbose": -1}
    return lightgbm.train(parameters, dataset, num_boost_round=10)


def save_lightgbm(model: Any, version_dir: Path) -> Path:
    booster = getattr(model, "booster_", model)
    booster.save_model(str(_folder(version_dir) / "model.txt"))
    return version_dir


# --- scikit-learn ----------------------------------------------------------------------------

ANIMALS = np.array(["cat", "dog", "eel"])


@functools.cache
def sklearn_classifier() -> Any:
    """A pipeline (scaler, logistic regression) classifying into "cat", "dog" and "eel"."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = data()
    return make_pipeline(StandardScaler(), LogisticRegression()).fit(x, ANIMALS[three_classes(x)])


@functools.cache
def sklearn_regressor(scale: float = 1.0) -> Any:
    """A random forest (whose trees skops leaves to the caller to trust) with feature names,
    as if fitted on a data frame of columns NAMES."""
    from sklearn.ensemble import RandomForestRegressor

    x = data()
    model = RandomForestRegressor(n_estimators=5, max_depth=4, random_state=0)
    model.fit(x, target(x, scale))
    # What fitting on a pandas data frame records (pandas is not a test dependency).
    model.feature_names_in_ = np.array(NAMES, dtype=object)
    return model


class Doubler(RegressorMixin, BaseEstimator):
    """A regressor of this module's own, which skops does not trust: x[:, 0] * 2."""

    def fit(self, x: np.ndarray, y: np.ndarray) -> Doubler:
        self.n_features_in_ = x.shape[1]
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x)[:, 0] * 2.0


def save_skops(model: Any, version_dir: Path) -> Path:
    import skops.io

    skops.io.dump(model, str(_folder(version_dir) / "model.skops"))
    return version_dir


def save_joblib(model: Any, version_dir: Path) -> Path:
    import joblib

    joblib.dump(model, str(_folder(version_dir) / "model.joblib"))
    return version_dir


def corrupt(version_dir: Path, file: str) -> Path:
    """A model file that no library can read."""
    (_folder(version_dir) / file).write_bytes(b"not a model \x00\x01\x02")
    return version_dir
