"""xgboost, lightgbm and scikit-learn models (model_platform xgboost, lightgbm, sklearn) served
by the real server: Predict, Classify and Regress over gRPC and REST, metadata, batching, new
and corrupt versions, and sklearn's pickles with and without --allow_pickled_models.

One batched server, polling its folders every second, serves every model of the module."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    regression_pb2,
)

from support import estimator_models as models
from support.lifecycle import statuses, wait_until
from support.requests import predict_request
from support.server import ServerProcess

pytestmark = pytest.mark.filterwarnings("ignore:X does not have valid feature names")

X = models.data(5, seed=3)
UNNAMED = ("f0", "f1", "f2", "f3")

# name -> (platform, the trained model, how it is saved, the feature names tf.Examples use)
CLASSIFIERS: dict[str, tuple[str, Callable[[], Any], Callable[[Any, Path], Path]]] = {
    "xgb_classes": ("xgboost", models.xgboost_classifier, models.save_xgboost),
    "lgb_classes": ("lightgbm", models.lightgbm_classifier, models.save_lightgbm),
    "skl_classes": ("sklearn", models.sklearn_classifier, models.save_skops),
}


def _xgboost_ubj(model: Any, folder: Path) -> Path:
    return models.save_xgboost(model, folder, "model.ubj")


REGRESSORS: dict[str, tuple[str, Callable[..., Any], Callable[[Any, Path], Path]]] = {
    "xgb_values": ("xgboost", models.xgboost_regressor, _xgboost_ubj),
    "lgb_values": ("lightgbm", models.lightgbm_regressor, models.save_lightgbm),
    "skl_values": ("sklearn", models.sklearn_regressor, models.save_skops),
}
# Per kind: a model whose version 2 the reload test publishes, and one a corrupt version 2
# is published to.
PLATFORMS = {"xgb": "xgboost", "lgb": "lightgbm", "skl": "sklearn"}
MODEL_FILES = {"xgboost": "model.json", "lightgbm": "model.txt", "sklearn": "model.skops"}
LOAD_ERRORS = {
    "xgboost": "Cannot load XGBoost model",
    "lightgbm": "Cannot load LightGBM model",
    "sklearn": "Cannot load scikit-learn model",
}


def regressor_values(name: str, x: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """What the library itself predicts for the regressor `name` serves."""
    platform, trained, _ = REGRESSORS[name]
    model = trained(scale)
    if platform == "xgboost":
        import xgboost

        return model.predict(xgboost.DMatrix(x, feature_names=list(models.NAMES)))
    return model.predict(x)


def config(models_by_name: dict[str, tuple[str, Path]]) -> str:
    blocks = "".join(
        f'  config {{ name: "{name}" base_path: "{path}" model_platform: "{platform}" }}\n'
        for name, (platform, path) in models_by_name.items()
    )
    return f"model_config_list {{\n{blocks}}}\n"


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("estimators")
    served: dict[str, tuple[str, Path]] = {}
    for name, (platform, trained, save) in {**CLASSIFIERS, **REGRESSORS}.items():
        save(trained(), root / name / "1")
        served[name] = (platform, root / name)
    for prefix, platform in PLATFORMS.items():
        _, trained, save = REGRESSORS[f"{prefix}_values"]
        for purpose in ("versions", "corrupt"):
            save(trained(), root / f"{prefix}_{purpose}" / "1")
            served[f"{prefix}_{purpose}"] = (platform, root / f"{prefix}_{purpose}")
    (root / "models.config").write_text(config(served))
    (root / "batching.txt").write_text(
        "max_batch_size { value: 8 }\nbatch_timeout_micros { value: 2000 }\n"
        "max_enqueued_batches { value: 1000 }\nnum_batch_threads { value: 2 }\n"
    )
    return root


@pytest.fixture(scope="module")
def servers(repository: Path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """The module's batched, polling server of every model, and a server with
    --allow_pickled_models of a joblib model, started together."""
    models.save_joblib(models.sklearn_classifier(), repository / "pickled" / "1")
    (repository / "pickled.config").write_text(
        config({"pickled": ("sklearn", repository / "pickled")})
    )
    started = (
        ServerProcess(
            [
                f"--model_config_file={repository / 'models.config'}",
                "--enable_batching",
                f"--batching_parameters_file={repository / 'batching.txt'}",
                "--file_system_poll_wait_seconds=1",
                "--max_num_load_retries=0",
            ]
        ),
        ServerProcess(
            [f"--model_config_file={repository / 'pickled.config'}", "--allow_pickled_models"]
        ),
    )
    try:
        yield started[0].ready(), started[1].ready()
    finally:
        codes = [process.terminate() for process in started]
    assert codes == [0, 0], [process.output for process in started]


@pytest.fixture(scope="module")
def server(servers: tuple[ServerProcess, ServerProcess]) -> ServerProcess:
    return servers[0]


def grpc_error(call: Callable[..., Any], request: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=30)
    return caught.value


def add_examples(request: Any, x: np.ndarray, names: tuple[str, ...]) -> None:
    for row in x:
        example = request.input.example_list.examples.add()
        for name, value in zip(names, row, strict=True):
            example.features.feature[name].float_list.value.append(float(value))


def rest_examples(x: np.ndarray, names: tuple[str, ...]) -> list[dict[str, float]]:
    return [{name: float(value) for name, value in zip(names, row, strict=True)} for row in x]


# --- Predict ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_predict_a_classifier_over_grpc_and_rest(server: ServerProcess, name: str) -> None:
    model = CLASSIFIERS[name][1]()
    labels = model.predict(X).tolist()
    probabilities = model.predict_proba(X)
    response = server.prediction.Predict(predict_request(name, {"inputs": X}), timeout=30)
    assert response.model_spec.signature_name == "serving_default"
    assert set(response.outputs) == {"predictions", "probabilities"}
    predicted = tf.make_ndarray(response.outputs["predictions"]).tolist()
    assert predicted == ([label.encode() for label in labels] if name == "skl_classes" else labels)
    np.testing.assert_allclose(
        tf.make_ndarray(response.outputs["probabilities"]), probabilities, rtol=1e-5
    )
    answer = server.http.post(f"/v1/models/{name}:predict", json={"instances": X.tolist()})
    assert answer.status_code == 200, answer.text
    rows = answer.json()["predictions"]
    assert [row["predictions"] for row in rows] == labels
    np.testing.assert_allclose([row["probabilities"] for row in rows], probabilities, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(REGRESSORS))
def test_predict_a_regressor_over_grpc_and_rest(server: ServerProcess, name: str) -> None:
    expected = regressor_values(name, X)
    response = server.prediction.Predict(predict_request(name, {"inputs": X}), timeout=30)
    values = tf.make_ndarray(response.outputs["predictions"])
    assert values.dtype == np.float32
    np.testing.assert_allclose(values, expected, rtol=1e-5)
    answer = server.http.post(f"/v1/models/{name}:predict", json={"inputs": X.tolist()})
    assert answer.status_code == 200, answer.text
    np.testing.assert_allclose(answer.json()["outputs"], expected, rtol=1e-5)


# --- Classify and Regress --------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_classify_over_grpc_and_rest(server: ServerProcess, name: str) -> None:
    model = CLASSIFIERS[name][1]()
    labels = [str(label) for label in model.classes_]
    probabilities = model.predict_proba(X)
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = "classify"
    add_examples(request, X, UNNAMED)
    response = server.prediction.Classify(request, timeout=30)
    assert response.model_spec.signature_name == "classify"
    rows = response.result.classifications
    assert [[c.label for c in row.classes] for row in rows] == [labels] * len(X)
    np.testing.assert_allclose(
        [[c.score for c in row.classes] for row in rows], probabilities, rtol=1e-5
    )
    body = {"signature_name": "classify", "examples": rest_examples(X, UNNAMED)}
    answer = server.http.post(f"/v1/models/{name}:classify", json=body)
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [[label for label, _ in row] for row in results] == [labels] * len(X)
    np.testing.assert_allclose(
        [[score for _, score in row] for row in results], probabilities, rtol=1e-5
    )


@pytest.mark.parametrize("name", sorted(REGRESSORS))
def test_regress_over_grpc_and_rest(server: ServerProcess, name: str) -> None:
    expected = regressor_values(name, X)
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = "regress"
    add_examples(request, X, models.NAMES)
    response = server.prediction.Regress(request, timeout=30)
    np.testing.assert_allclose([r.value for r in response.result.regressions], expected, rtol=1e-5)
    # A context's features merge into every example (REST's "context").
    first, rest = models.NAMES[0], models.NAMES[1:]
    body = {
        "signature_name": "regress",
        "context": {first: float(X[0, 0])},
        "examples": rest_examples(np.repeat(X[:1, 1:], 2, axis=0), rest),
    }
    answer = server.http.post(f"/v1/models/{name}:regress", json=body)
    assert answer.status_code == 200, answer.text
    np.testing.assert_allclose(answer.json()["results"], [expected[0]] * 2, rtol=1e-5)


# --- metadata --------------------------------------------------------------------------------


def test_metadata_shows_the_signatures(server: ServerProcess) -> None:
    found = {}
    for name in ("lgb_classes", "skl_values"):
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.name = name
        response = server.prediction.GetModelMetadata(request, timeout=30)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        assert response.metadata["signature_def"].Unpack(signatures)
        found[name] = {
            key: (
                signature.method_name,
                {
                    alias: (info.dtype, [d.size for d in info.tensor_shape.dim])
                    for alias, info in [*signature.inputs.items(), *signature.outputs.items()]
                },
            )
            for key, signature in signatures.signature_def.items()
        }
    float_, int64, string = 1, 9, 7
    assert found["lgb_classes"] == {
        "serving_default": (
            "tensorflow/serving/predict",
            {
                "inputs": (float_, [-1, 4]),
                "predictions": (int64, [-1]),
                "probabilities": (float_, [-1, 3]),
            },
        ),
        "classify": (
            "tensorflow/serving/classify",
            {"inputs": (string, [-1]), "classes": (string, [-1, 3]), "scores": (float_, [-1, 3])},
        ),
    }
    assert found["skl_values"] == {
        "serving_default": (
            "tensorflow/serving/predict",
            {"inputs": (float_, [-1, 4]), "predictions": (float_, [-1])},
        ),
        "regress": (
            "tensorflow/serving/regress",
            {"inputs": (string, [-1]), "outputs": (float_, [-1])},
        ),
    }
    answer = server.http.get("/v1/models/xgb_values/metadata")
    assert answer.status_code == 200
    assert set(answer.json()["metadata"]["signature_def"]["signature_def"]) == {
        "serving_default",
        "regress",
    }


# --- batching --------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", sorted(PLATFORMS))
def test_batched_callers_each_get_their_own_rows(server: ServerProcess, prefix: str) -> None:
    x = models.data(48, seed=4)
    name = f"{prefix}_values"
    expected = regressor_values(name, x)

    def grpc_call(row: int) -> list[float]:
        response = server.prediction.Predict(
            predict_request(name, {"inputs": x[row : row + 2]}), timeout=30
        )
        return tf.make_ndarray(response.outputs["predictions"]).tolist()

    def rest_call(row: int) -> list[float]:
        body = {
            "signature_name": "regress",
            "examples": rest_examples(x[row : row + 1], models.NAMES),
        }
        return server.http.post(f"/v1/models/{name}:regress", json=body).json()["results"]

    with ThreadPoolExecutor(8) as pool:
        by_grpc = list(pool.map(grpc_call, range(0, 48, 2)))
        by_rest = list(pool.map(rest_call, range(48)))
    np.testing.assert_allclose(np.concatenate(by_grpc), expected, rtol=1e-5)
    np.testing.assert_allclose(np.concatenate(by_rest), expected, rtol=1e-5)
    # Only a batch queue knows max_batch_size (8): a larger task is refused by it.
    error = grpc_error(server.prediction.Predict, predict_request(name, {"inputs": x[:9]}))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "Task size 9 is larger than maximum input batch size 8"


# --- bad inputs ------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", sorted(PLATFORMS))
def test_a_wrong_number_of_features_is_invalid_argument(server: ServerProcess, prefix: str) -> None:
    name = f"{prefix}_classes"
    message = (
        "input tensor inputs has shape [2,3], which the signature's shape [-1,4] does not accept"
    )
    error = grpc_error(server.prediction.Predict, predict_request(name, {"inputs": X[:2, :3]}))
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)
    answer = server.http.post(f"/v1/models/{name}:predict", json={"inputs": X[:2, :3].tolist()})
    assert (answer.status_code, answer.json()) == (400, {"error": message})
    # The model goes on serving.
    good = server.http.post(f"/v1/models/{name}:predict", json={"inputs": X[:2].tolist()})
    assert good.status_code == 200, good.text


def test_bad_examples_are_invalid_argument(server: ServerProcess) -> None:
    words = {"signature_name": "classify", "examples": [{"f0": "a", "f1": 1, "f2": 2, "f3": 3}]}
    answer = server.http.post("/v1/models/xgb_classes:classify", json=words)
    assert (answer.status_code, answer.json()) == (
        400,
        {
            "error": "Example 0: feature f0 holds bytes; the model takes one number per "
            "feature (a float_list or an int64_list)"
        },
    )
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "skl_values"
    request.model_spec.signature_name = "regress"
    add_examples(request, X[:1, :3], models.NAMES[:3])  # no delta
    error = grpc_error(server.prediction.Regress, request)
    assert (error.code(), error.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Example 0: feature delta (data type: float) is required but could not be found",
    )


# --- versions on disk ------------------------------------------------------------------------


def publish(write: Callable[[Path], Path], target: Path) -> None:
    """Writes a version folder beside `target` and renames it into place, as an export does."""
    staging = target.parent / f".{target.name}.partial"
    write(staging)
    staging.rename(target)


def test_a_new_version_of_each_kind_is_served(server: ServerProcess, repository: Path) -> None:
    for prefix in PLATFORMS:
        _, trained, save = REGRESSORS[f"{prefix}_values"]
        publish(
            lambda folder, trained=trained, save=save: save(trained(2.0), folder),
            repository / f"{prefix}_versions" / "2",
        )
    for prefix in PLATFORMS:
        name = f"{prefix}_versions"
        wait_until(lambda name=name: statuses(server, name).get("1", ("",))[0] == "END", what=name)
        assert statuses(server, name) == {"2": ("AVAILABLE", "OK", ""), "1": ("END", "OK", "")}
        expected = regressor_values(f"{prefix}_values", X, 2.0)
        response = server.prediction.Predict(predict_request(name, {"inputs": X}), timeout=30)
        assert response.model_spec.version.value == 2
        np.testing.assert_allclose(
            tf.make_ndarray(response.outputs["predictions"]), expected, rtol=1e-5
        )


def test_a_corrupt_version_fails_to_load_and_the_old_one_keeps_serving(
    server: ServerProcess, repository: Path
) -> None:
    for prefix, platform in PLATFORMS.items():
        publish(
            lambda folder, file=MODEL_FILES[platform]: models.corrupt(folder, file),
            repository / f"{prefix}_corrupt" / "2",
        )
    for prefix, platform in PLATFORMS.items():
        name = f"{prefix}_corrupt"
        wait_until(lambda name=name: statuses(server, name).get("2", ("",))[0] == "END", what=name)
        state, code, message = statuses(server, name)["2"]
        assert (state, code) == ("END", "DATA_LOSS")
        folder = repository / name / "2"
        assert message.startswith(f"{LOAD_ERRORS[platform]} {folder / MODEL_FILES[platform]}: ")
        assert statuses(server, name)["1"] == ("AVAILABLE", "OK", "")
        answer = server.http.post(f"/v1/models/{name}:predict", json={"inputs": X.tolist()})
        assert answer.status_code == 200, answer.text
        expected = regressor_values(f"{prefix}_values", X)
        np.testing.assert_allclose(answer.json()["outputs"], expected, rtol=1e-5)
    # A pickle where the server does not allow them fails its load too, saying why.
    publish(
        lambda folder: models.save_joblib(models.sklearn_regressor(), folder),
        repository / "skl_corrupt" / "3",
    )
    wait_until(
        lambda: statuses(server, "skl_corrupt").get("3", ("",))[0] == "END", what="version 3 END"
    )
    assert statuses(server, "skl_corrupt")["3"] == (
        "END",
        "FAILED_PRECONDITION",
        f"{repository / 'skl_corrupt' / '3' / 'model.joblib'} is a pickle, and loading a "
        "pickle runs the code it holds: fastserve loads it only when started with "
        "--allow_pickled_models (or save the model with skops as model.skops)",
    )
    assert statuses(server, "skl_corrupt")["1"] == ("AVAILABLE", "OK", "")


def test_a_pickle_is_served_with_allow_pickled_models(
    servers: tuple[ServerProcess, ServerProcess],
) -> None:
    server = servers[1]
    assert statuses(server, "pickled") == {"1": ("AVAILABLE", "OK", "")}
    body = {"examples": rest_examples(X, UNNAMED), "signature_name": "classify"}
    answer = server.http.post("/v1/models/pickled:classify", json=body)
    assert answer.status_code == 200, answer.text
    probabilities = models.sklearn_classifier().predict_proba(X)
    np.testing.assert_allclose(
        [[score for _, score in row] for row in answer.json()["results"]], probabilities, rtol=1e-5
    )
