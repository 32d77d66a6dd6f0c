"""The xgboost, lightgbm and sklearn kinds: real models trained by their libraries, loaded by
the kinds' loaders, run through Predict's signature and the Classify and Regress APIs."""

from __future__ import annotations

import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from tensorflow.core.example import example_pb2

from fastserve.api.examples import run_classify, run_regress
from fastserve.codecs.tf_example import example_columns
from fastserve.dtypes import DType
from fastserve.errors import Code, ServingError
from fastserve.servables import loader_for
from fastserve.servables.base import LoadOptions, Servable
from fastserve.servables.estimators import import_library, read_settings
from fastserve.types import CLASSIFY_METHOD, PREDICT_METHOD, REGRESS_METHOD, TensorInfo
from support import estimator_models as models

pytestmark = pytest.mark.filterwarnings("ignore:X does not have valid feature names")

X = models.data(6, seed=1)
UNNAMED = ("f0", "f1", "f2", "f3")


def load(platform: str, folder: Path, options: LoadOptions | None = None) -> Servable:
    return loader_for(platform).load(str(folder), options or LoadOptions())


def load_error(platform: str, folder: Path, options: LoadOptions | None = None) -> ServingError:
    with pytest.raises(ServingError) as caught:
        load(platform, folder, options)
    return caught.value


def predict(servable: Servable, x: np.ndarray, outputs: tuple[str, ...] = ()) -> dict:
    signature = servable.signatures["serving_default"]
    return servable.run(signature, {"inputs": x}, outputs or tuple(sorted(signature.outputs)))


def example(values: dict[str, object]) -> bytes:
    proto = example_pb2.Example()
    for name, value in values.items():
        feature = proto.features.feature[name]
        if isinstance(value, bytes):
            feature.bytes_list.value.append(value)
        elif isinstance(value, int):
            feature.int64_list.value.append(value)
        elif isinstance(value, list):
            feature.float_list.value.extend(value)
        else:
            feature.float_list.value.append(float(value))  # type: ignore[arg-type]
    return proto.SerializeToString()


def examples(x: np.ndarray, names: tuple[str, ...]) -> list[bytes]:
    return [example(dict(zip(names, row, strict=True))) for row in x]


def invalid(call: object, *args: object) -> str:
    with pytest.raises(ServingError) as caught:
        call(*args)  # type: ignore[operator]
    assert caught.value.code == Code.INVALID_ARGUMENT, caught.value
    return caught.value.message


# --- the three kinds -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("estimators")
    return {
        "xgboost_classifier": models.save_xgboost(models.xgboost_classifier(), root / "xc" / "1"),
        "xgboost_regressor": models.save_xgboost(
            models.xgboost_regressor(), root / "xr" / "1", "model.ubj"
        ),
        "lightgbm_classifier": models.save_lightgbm(models.lightgbm_classifier(), root / "lc/1"),
        "lightgbm_regressor": models.save_lightgbm(models.lightgbm_regressor(), root / "lr" / "1"),
        "sklearn_classifier": models.save_skops(models.sklearn_classifier(), root / "sc" / "1"),
        "sklearn_regressor": models.save_skops(models.sklearn_regressor(), root / "sr" / "1"),
    }


CLASSIFIERS = {
    "xgboost": ("xgboost_classifier", models.xgboost_classifier, "xgboost"),
    "lightgbm": ("lightgbm_classifier", models.lightgbm_classifier, "lightgbm"),
    "sklearn": ("sklearn_classifier", models.sklearn_classifier, "sklearn"),
}
REGRESSORS = {
    "xgboost": ("xgboost_regressor", lambda x: _xgboost_values(x), "xgboost"),
    "lightgbm": (
        "lightgbm_regressor",
        lambda x: models.lightgbm_regressor().predict(x),
        "lightgbm",
    ),
    "sklearn": ("sklearn_regressor", lambda x: models.sklearn_regressor().predict(x), "sklearn"),
}


def _xgboost_values(x: np.ndarray) -> np.ndarray:
    import xgboost

    return models.xgboost_regressor().predict(xgboost.DMatrix(x, feature_names=list(models.NAMES)))


@pytest.mark.parametrize("kind", sorted(CLASSIFIERS))
def test_a_classifier_predicts_and_classifies_as_its_library_does(
    kind: str, folders: dict[str, Path]
) -> None:
    folder, trained, platform = CLASSIFIERS[kind]
    servable = load(platform, folders[folder])
    assert servable.runtime == platform
    model = trained()
    labels = [str(label).encode() for label in model.classes_]
    assert set(servable.signatures) == {"serving_default", "classify"}
    default = servable.signatures["serving_default"]
    assert default.method_name == PREDICT_METHOD
    assert dict(default.inputs) == {"inputs": TensorInfo("inputs", DType.DT_FLOAT, (-1, 4))}
    label_dtype = DType.DT_STRING if kind == "sklearn" else DType.DT_INT64
    assert dict(default.outputs) == {
        "predictions": TensorInfo("predictions", label_dtype, (-1,)),
        "probabilities": TensorInfo("probabilities", DType.DT_FLOAT, (-1, 3)),
    }
    classify = servable.signatures["classify"]
    assert classify.method_name == CLASSIFY_METHOD
    assert dict(classify.inputs) == {"inputs": TensorInfo("inputs", DType.DT_STRING, (-1,))}
    assert dict(classify.outputs) == {
        "classes": TensorInfo("classes", DType.DT_STRING, (-1, 3)),
        "scores": TensorInfo("scores", DType.DT_FLOAT, (-1, 3)),
    }

    outputs = predict(servable, X)
    expected = model.predict(X)
    if kind == "sklearn":
        assert outputs["predictions"].tolist() == [label.encode() for label in expected]
    else:
        assert outputs["predictions"].dtype == np.int64
        assert outputs["predictions"].tolist() == expected.tolist()
    assert outputs["probabilities"].dtype == np.float32
    np.testing.assert_allclose(outputs["probabilities"], model.predict_proba(X), rtol=1e-5)
    assert list(predict(servable, X, ("probabilities",))) == ["probabilities"]

    # Classify: tf.Examples by the model's feature names (f0.. for these, fitted on arrays).
    result = run_classify(servable, "classify", examples(X, UNNAMED))
    assert [[label for label, _ in row] for row in result.rows] == [labels] * len(X)
    scores = np.array([[score for _, score in row] for row in result.rows])
    np.testing.assert_allclose(scores, model.predict_proba(X), rtol=1e-5)


@pytest.mark.parametrize("kind", sorted(REGRESSORS))
def test_a_regressor_predicts_and_regresses_as_its_library_does(
    kind: str, folders: dict[str, Path]
) -> None:
    folder, values, platform = REGRESSORS[kind]
    servable = load(platform, folders[folder])
    assert set(servable.signatures) == {"serving_default", "regress"}
    assert dict(servable.signatures["serving_default"].outputs) == {
        "predictions": TensorInfo("predictions", DType.DT_FLOAT, (-1,))
    }
    regress = servable.signatures["regress"]
    assert regress.method_name == REGRESS_METHOD
    assert dict(regress.outputs) == {"outputs": TensorInfo("outputs", DType.DT_FLOAT, (-1,))}
    expected = values(X)
    outputs = predict(servable, X)
    assert outputs["predictions"].dtype == np.float32
    np.testing.assert_allclose(outputs["predictions"], expected, rtol=1e-5)
    # These were trained with feature names: tf.Examples name their features so, in any order.
    shuffled = [dict(reversed(list(zip(models.NAMES, row, strict=True)))) for row in X]
    result = run_regress(servable, "regress", [example(values) for values in shuffled])
    np.testing.assert_allclose(result.values, expected, rtol=1e-5)


@pytest.mark.parametrize("platform", ["xgboost", "lightgbm", "sklearn"])
def test_a_wrong_number_of_features_is_invalid_argument(
    platform: str, folders: dict[str, Path]
) -> None:
    servable = load(platform, folders[f"{platform}_regressor"])
    message = invalid(predict, servable, np.zeros((2, 3), dtype=np.float32))
    assert message == (
        "input tensor inputs has shape [2,3], which the signature's shape [-1,4] does not accept"
    )


def test_missing_features_are_nan_for_tree_models(folders: dict[str, Path]) -> None:
    row = {"alpha": 0.5, "beta": -1.0, "delta": 2.0}  # no gamma
    with_nan = np.array([[0.5, -1.0, np.nan, 2.0]], dtype=np.float32)
    xgb = load("xgboost", folders["xgboost_regressor"])
    np.testing.assert_allclose(
        run_regress(xgb, "regress", [example(row)]).values, _xgboost_values(with_nan), rtol=1e-5
    )
    lgb = load("lightgbm", folders["lightgbm_regressor"])
    np.testing.assert_allclose(
        run_regress(lgb, "regress", [example(row)]).values,
        models.lightgbm_regressor().predict(with_nan),
        rtol=1e-5,
    )


def test_sklearn_refuses_a_missing_feature(folders: dict[str, Path]) -> None:
    servable = load("sklearn", folders["sklearn_regressor"])
    row = {"alpha": 0.5, "beta": -1.0, "gamma": 1.0, "delta": 2.0}
    complete = run_regress(servable, "regress", [example(row)] * 2).values
    assert len(complete) == 2
    del row["beta"]
    assert invalid(run_regress, servable, "regress", [example(row)]) == (
        "Example 0: feature beta (data type: float) is required but could not be found"
    )


@pytest.mark.parametrize("platform", ["xgboost", "lightgbm", "sklearn"])
def test_a_feature_of_bytes_or_of_several_values_is_invalid_argument(
    platform: str, folders: dict[str, Path]
) -> None:
    servable = load(platform, folders[f"{platform}_classifier"])
    good = {"f0": 1.0, "f1": 2, "f2": 0.0, "f3": -1.0}  # an int64 feature is a number too
    assert len(run_classify(servable, "classify", [example(good)]).rows) == 1
    words = example({**good, "f2": b"word"})
    assert invalid(run_classify, servable, "classify", [example(good), words]) == (
        "Example 1: feature f2 holds bytes; the model takes one number per feature "
        "(a float_list or an int64_list)"
    )
    several = example({**good, "f0": [1.0, 2.0]})
    assert invalid(run_classify, servable, "classify", [several]) == (
        "Example 0: feature f0 has 2 values; the model takes one number per feature"
    )


def test_an_empty_batch_gives_empty_outputs(folders: dict[str, Path]) -> None:
    for name, platform in (("sklearn_classifier", "sklearn"), ("xgboost_regressor", "xgboost")):
        servable = load(platform, folders[name])
        outputs = predict(servable, np.zeros((0, 4), dtype=np.float32))
        assert all(len(array) == 0 for array in outputs.values()), outputs


def test_many_threads_share_one_model(folders: dict[str, Path]) -> None:
    servable = load("xgboost", folders["xgboost_classifier"])
    expected = models.xgboost_classifier().predict(models.data(64, seed=2))

    def call(row: int) -> int:
        x = models.data(64, seed=2)[row : row + 1]
        return int(predict(servable, x, ("predictions",))["predictions"][0])

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(call, range(64))) == expected.tolist()
    servable.unload()


# --- servable.yaml ---------------------------------------------------------------------------


def test_input_dtype_float64_and_threads(tmp_path: Path) -> None:
    folder = models.save_lightgbm(models.lightgbm_classifier(), tmp_path / "1")
    (folder / "servable.yaml").write_text("input_dtype: float64\nthreads: 2\n")
    servable = load("lightgbm", folder)
    default = servable.signatures["serving_default"]
    assert default.inputs["inputs"].dtype is DType.DT_DOUBLE
    assert default.outputs["probabilities"].dtype is DType.DT_DOUBLE
    outputs = predict(servable, X.astype(np.float64))
    assert outputs["probabilities"].dtype == np.float64
    np.testing.assert_allclose(
        outputs["probabilities"], models.lightgbm_classifier().predict_proba(X), rtol=1e-6
    )
    # Classify's scores stay float, as TF Serving's Classify API requires.
    scores = run_classify(servable, "classify", examples(X[:1], UNNAMED)).rows[0]
    assert len(scores) == 3


def test_class_labels_name_an_xgboost_or_lightgbm_models_classes(tmp_path: Path) -> None:
    for platform, save, model in (
        ("xgboost", models.save_xgboost, models.xgboost_classifier()),
        ("lightgbm", models.save_lightgbm, models.lightgbm_classifier()),
    ):
        folder = save(model, tmp_path / platform / "1")
        (folder / "servable.yaml").write_text("class_labels: [low, middle, high]\n")
        servable = load(platform, folder)
        assert servable.signatures["serving_default"].outputs["predictions"].dtype is (
            DType.DT_STRING
        )
        names = {0: b"low", 1: b"middle", 2: b"high"}
        predicted = predict(servable, X, ("predictions",))["predictions"]
        assert predicted.tolist() == [names[index] for index in model.predict(X)]
        rows = run_classify(servable, "classify", examples(X[:1], UNNAMED)).rows
        assert [label for label, _ in rows[0]] == [b"low", b"middle", b"high"]
        (folder / "servable.yaml").write_text("class_labels: [low, high]\n")
        error = load_error(platform, folder)
        assert error.code == Code.INVALID_ARGUMENT
        assert error.message.endswith(": class_labels names 2 classes; the model has 3")


def test_threads_sets_the_estimators_n_jobs(tmp_path: Path) -> None:
    from sklearn.ensemble import RandomForestClassifier

    x = models.data(40)
    forest = RandomForestClassifier(n_estimators=3, max_depth=2).fit(x, models.three_classes(x))
    folder = models.save_skops(forest, tmp_path / "1")
    (folder / "servable.yaml").write_text("threads: 3\n")
    servable = load("sklearn", folder)
    assert servable._model._estimator.n_jobs == 3  # type: ignore[attr-defined]
    assert predict(servable, x[:2])["predictions"].tolist() == forest.predict(x[:2]).tolist()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("threads: -1\n", "threads: expected a whole number >= 0, not -1"),
        ("input_dtype: int8\n", "input_dtype: expected float32 or float64, not 'int8'"),
        ("class_labels: a\n", "class_labels: expected a list of strings, not 'a'"),
        ("colour: red\n", "unknown option 'colour' (known: threads, input_dtype, class_labels)"),
        ("- 1\n", "expected a mapping of options (threads, input_dtype, class_labels)"),
    ],
)
def test_a_bad_servable_yaml_fails_the_load(tmp_path: Path, text: str, message: str) -> None:
    folder = models.save_xgboost(models.xgboost_classifier(), tmp_path / "1")
    (folder / "servable.yaml").write_text(text)
    error = load_error("xgboost", folder)
    assert (error.code, error.message) == (
        Code.INVALID_ARGUMENT,
        f"{folder / 'servable.yaml'}: {message}",
    )


def test_read_settings_defaults(tmp_path: Path) -> None:
    settings = read_settings(str(tmp_path), ("threads",))
    assert (settings.threads, settings.input_dtype, settings.class_labels) == (
        1,
        DType.DT_FLOAT,
        None,
    )


# --- load errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("platform", "file", "start"),
    [
        ("xgboost", "model.json", "Cannot load XGBoost model"),
        ("xgboost", "model.ubj", "Cannot load XGBoost model"),
        ("lightgbm", "model.txt", "Cannot load LightGBM model"),
        ("sklearn", "model.skops", "Cannot load scikit-learn model"),
    ],
)
def test_a_corrupt_file_is_a_clear_load_error(
    tmp_path: Path, platform: str, file: str, start: str
) -> None:
    folder = models.corrupt(tmp_path / "1", file)
    error = load_error(platform, folder)
    assert error.code == Code.DATA_LOSS
    assert error.message.startswith(f"{start} {folder / file}: "), error.message
    assert "Stack trace" not in error.message


def test_a_folder_without_a_model_file_is_not_found(tmp_path: Path) -> None:
    (tmp_path / "1").mkdir()
    error = load_error("sklearn", tmp_path / "1")
    assert (error.code, error.message) == (
        Code.NOT_FOUND,
        f"Could not find model.skops or model.joblib in {tmp_path / '1'}",
    )


def test_two_model_files_are_refused(tmp_path: Path) -> None:
    folder = models.save_xgboost(models.xgboost_classifier(), tmp_path / "1")
    models.save_xgboost(models.xgboost_classifier(), folder, "model.ubj")
    error = load_error("xgboost", folder)
    assert error.message == (
        f"{folder} holds model.json and model.ubj; a version folder of model_platform xgboost "
        "holds one model file"
    )


@pytest.mark.parametrize(
    ("platform", "hidden", "named"),
    [
        ("xgboost", ("xgboost",), "xgboost"),
        ("lightgbm", ("lightgbm",), "lightgbm"),
        ("sklearn", ("skops", "skops.io"), "skops.io"),
    ],
)
def test_a_missing_library_names_the_extra(
    platform: str,
    hidden: tuple[str, ...],
    named: str,
    folders: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for module in hidden:  # None in sys.modules: `import` raises ImportError
        monkeypatch.setitem(sys.modules, module, None)
    error = load_error(platform, folders[f"{platform}_regressor"])
    assert error.code == Code.FAILED_PRECONDITION
    assert error.message.startswith(f"model_platform {platform} needs {named}, which cannot be")
    assert error.message.endswith(f": pip install 'fastserve[{platform}]'")
    with pytest.raises(ServingError) as caught:
        import_library("xgboost", "fastserve_no_such_library", "xgboost")
    assert caught.value.message == (
        "model_platform xgboost needs fastserve_no_such_library, which cannot be imported "
        "(No module named 'fastserve_no_such_library'): pip install 'fastserve[xgboost]'"
    )


# --- sklearn: what may be loaded -------------------------------------------------------------


def test_skops_types_fastserve_does_not_trust_are_refused_unless_listed(tmp_path: Path) -> None:
    x = models.data(10)
    folder = models.save_skops(models.Doubler().fit(x, x[:, 0]), tmp_path / "1")
    error = load_error("sklearn", folder)
    assert error.code == Code.FAILED_PRECONDITION
    assert error.message == (
        f"{folder / 'model.skops'} holds types fastserve does not trust: "
        "support.estimator_models.Doubler. If you trust this file, list them under "
        f"trusted_types in {folder / 'servable.yaml'}"
    )
    (folder / "servable.yaml").write_text("trusted_types: [support.estimator_models.Doubler]\n")
    servable = load("sklearn", folder)
    assert predict(servable, x[:2])["predictions"].tolist() == (x[:2, 0] * 2).tolist()


def test_a_joblib_file_needs_allow_pickled_models(tmp_path: Path) -> None:
    folder = models.save_joblib(models.sklearn_classifier(), tmp_path / "1")
    error = load_error("sklearn", folder)
    assert error.code == Code.FAILED_PRECONDITION
    assert error.message == (
        f"{folder / 'model.joblib'} is a pickle, and loading a pickle runs the code it holds: "
        "fastserve loads it only when started with --allow_pickled_models (or save the model "
        "with skops as model.skops)"
    )
    servable = load("sklearn", folder, LoadOptions(allow_pickled_models=True))
    expected = models.sklearn_classifier().predict(X)
    assert predict(servable, X)["predictions"].tolist() == [label.encode() for label in expected]


def test_a_classifier_without_probabilities_classifies_with_its_predicted_class(
    tmp_path: Path,
) -> None:
    from sklearn.svm import LinearSVC

    x = models.data(60)
    svc = LinearSVC().fit(x, models.ANIMALS[models.three_classes(x)])
    servable = load("sklearn", models.save_skops(svc, tmp_path / "1"))
    assert set(servable.signatures["serving_default"].outputs) == {"predictions"}
    assert dict(servable.signatures["classify"].outputs) == {
        "classes": TensorInfo("classes", DType.DT_STRING, (-1, 1))
    }
    rows = run_classify(servable, "classify", examples(X, UNNAMED)).rows
    assert [row[0][0] for row in rows] == [label.encode() for label in svc.predict(X)]


# --- tf.Examples as columns ------------------------------------------------------------------


def test_example_columns_maps_features_by_name() -> None:
    serialized = [example({"b": 2.0, "a": 1, "other": b"ignored"}), example({"a": 3.0})]
    matrix = example_columns(serialized, ("a", "b"), np.dtype(np.float64), missing_is_nan=True)
    assert matrix.dtype == np.float64
    np.testing.assert_array_equal(matrix, [[1.0, 2.0], [3.0, np.nan]])
    message = invalid(
        lambda: example_columns(serialized, ("a", "b"), np.dtype(np.float32), missing_is_nan=False)
    )
    assert message == "Example 1: feature b (data type: float) is required but could not be found"
    assert invalid(
        lambda: example_columns([b"\xff\xff"], ("a",), np.dtype(np.float32), missing_is_nan=True)
    ) == ("Could not parse example 0")


# --- the README ------------------------------------------------------------------------------


def _readme_section() -> str:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start = readme.index("\n### Tree and linear models: XGBoost, LightGBM, scikit-learn\n")
    return readme[start : readme.index("\n### ", start + 1)]


def test_the_readmes_example_and_servable_yaml_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    section = _readme_section()
    (script,) = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    (options,) = re.findall(r"```yaml\n(.*?)```", section, re.DOTALL)
    monkeypatch.chdir(tmp_path)
    exec(compile(script, "README.md", "exec"), {})  # writes models/churn/1/model.json
    folder = tmp_path / "models" / "churn" / "1"
    servable = load("xgboost", folder)
    outputs = predict(servable, np.array([[0.5, -1.0, 0.2, 1.3]], dtype=np.float32))
    # The answer the README's curl shows.
    assert outputs["predictions"].tolist() == [1]
    np.testing.assert_allclose(
        outputs["probabilities"], [[0.027067982, 0.9500594, 0.02287263]], rtol=1e-5
    )
    (folder / "servable.yaml").write_text(options)
    assert read_settings(str(folder), ("threads", "input_dtype", "class_labels")).class_labels == (
        "low",
        "middle",
        "high",
    )
    rows = run_classify(load("xgboost", folder), "classify", examples(X[:1], UNNAMED)).rows
    assert [label for label, _ in rows[0]] == [b"low", b"middle", b"high"]


def test_a_regressor_of_two_targets_predicts_both(tmp_path: Path) -> None:
    from sklearn.linear_model import LinearRegression

    x = models.data(30)
    both = np.stack([models.target(x), models.target(x, -2.0)], axis=1)
    linear = LinearRegression().fit(x, both)  # records no n_outputs_
    servable = load("sklearn", models.save_skops(linear, tmp_path / "1"))
    assert set(servable.signatures) == {"serving_default"}  # Regress takes one value per row
    assert servable.signatures["serving_default"].outputs["predictions"].shape == (-1, 2)
    np.testing.assert_allclose(predict(servable, X)["predictions"], linear.predict(X), rtol=1e-5)
