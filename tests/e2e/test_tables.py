"""The table kinds (embedding, vocabulary, transform, pipeline) served by one real server, over
gRPC and REST: predict, metadata, bad inputs, batching, and new and corrupt versions on disk."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2

from support import tables
from support.lifecycle import statuses, wait_until
from support.requests import predict_request
from support.server import ServerProcess

# Models each kind's tests publish versions into, so that the read-only models stay as built.
README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
FRUIT = ("apple", "pear", "plum")
BATCHED = "{max_batch_size: 4, batch_timeout_micros: 1000, max_enqueued_batches: 1000}"


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tables")
    tables.animals(root / "animals" / "1", servable_yaml="default: [-1, -1, -1]\n")
    tables.animals(root / "animals_versions" / "1")
    tables.vocabulary(root / "fruit" / "1", FRUIT, "num_oov_buckets: 2\n")
    tables.vocabulary(root / "fruit_versions" / "1", FRUIT)
    tables.transform(root / "features" / "1")
    tables.transform(root / "features_versions" / "1")
    tables.pipeline(root / "profile" / "1")
    tables.pipeline(root / "profile_versions" / "1")
    tables.pipeline(
        root / "dangling" / "1", tables.PROFILE.replace("model: animals", "model: pets")
    )
    # The README's embedding, made by its own snippet.
    (snippet,) = re.findall(r"```python\n(.*?)```", readme_section("Embeddings"), re.DOTALL)
    subprocess.run([sys.executable, "-c", snippet], cwd=root, check=True, timeout=60)
    (root / "models.yaml").write_text(
        f"""
server:
  file_system_poll_wait_seconds: 1
  max_num_load_retries: 0
models:
  - name: animals
    base_path: animals
    model_platform: embedding
    batching: {BATCHED}
  - name: animals_versions
    base_path: animals_versions
    model_platform: embedding
  - name: fruit
    base_path: fruit
    model_platform: vocabulary
    batching: {BATCHED}
  - name: fruit_versions
    base_path: fruit_versions
    model_platform: vocabulary
  - name: features
    base_path: features
    model_platform: transform
    batching: {BATCHED}
  - name: features_versions
    base_path: features_versions
    model_platform: transform
  - name: profile
    base_path: profile
    model_platform: pipeline
  - name: profile_versions
    base_path: profile_versions
    model_platform: pipeline
  - name: dangling
    base_path: dangling
    model_platform: pipeline
  - name: words
    base_path: models/words
    model_platform: embedding
"""
    )
    return root


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[ServerProcess]:
    process = ServerProcess([f"--config={repository / 'models.yaml'}"]).ready()
    yield process
    assert process.terminate() == 0, process.output


def readme_section(title: str) -> str:
    start = README.index(f"\n### {title}\n")
    return README[start : README.index("\n### ", start + 1)]


def readme_curls() -> list[tuple[str, str, str]]:
    """Each curl of the table kinds' README sections, with the answer shown under it."""
    found = []
    for title in ("Embeddings", "Vocabularies", "Transforms", "Pipelines"):
        for block in re.findall(r"```console\n(.*?)```", readme_section(title), re.DOTALL):
            lines = block.splitlines()
            found += [
                (title, line, lines[index + 1])
                for index, line in enumerate(lines)
                if line.startswith("$ curl ")
            ]
    return found


def predict(
    server: ServerProcess, name: str, inputs: dict[str, np.ndarray], signature: str = ""
) -> dict[str, np.ndarray]:
    response = server.prediction.Predict(
        predict_request(name, inputs, signature=signature), timeout=30
    )
    return {alias: tf.make_ndarray(proto) for alias, proto in response.outputs.items()}


def grpc_error(
    server: ServerProcess, name: str, inputs: dict[str, np.ndarray], signature: str = ""
) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        server.prediction.Predict(predict_request(name, inputs, signature=signature), timeout=30)
    return caught.value


def signature_defs(server: ServerProcess, name: str) -> dict[str, dict[str, tuple]]:
    """GetModelMetadata over gRPC: signature -> alias -> (dtype, dims or None for unknown rank)."""
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = name
    response = server.prediction.GetModelMetadata(request, timeout=30)
    found = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(found)
    return {
        key: {
            alias: (
                info.dtype,
                None if info.tensor_shape.unknown_rank else [d.size for d in info.tensor_shape.dim],
            )
            for alias, info in [*signature.inputs.items(), *signature.outputs.items()]
        }
        for key, signature in found.signature_def.items()
    }


def publish(folder_maker: Callable[[Path], object], target: Path) -> None:
    """Writes a version folder beside `target` and renames it into place, as an export does."""
    staging = target.parent / f".{target.name}.partial"
    folder_maker(staging)
    staging.rename(target)


def reload_then_corrupt(
    server: ServerProcess,
    model: str,
    base: Path,
    good: Callable[[Path], object],
    corrupt: Callable[[Path], object],
    served: Callable[[], object],
) -> tuple[str, str]:
    """Publishes version 2 (`good`) and waits until it replaced version 1, then a corrupt
    version 3, and waits until that failed; returns version 3's (error code, message) after
    checking that version 2 still answers `served()`."""
    before = served()
    publish(good, base / "2")
    wait_until(lambda: statuses(server, model).get("1", ("",))[0] == "END", what="v1 unloaded")
    assert statuses(server, model)["2"] == ("AVAILABLE", "OK", "")
    after = served()
    assert after != before
    publish(corrupt, base / "3")
    wait_until(lambda: statuses(server, model).get("3", ("",))[0] == "END", what="v3 failed")
    assert statuses(server, model)["2"] == ("AVAILABLE", "OK", "")
    assert served() == after
    _, code, message = statuses(server, model)["3"]
    return code, message


# --- embedding -------------------------------------------------------------------------------


def test_embedding_grpc_keys_of_any_shape(server: ServerProcess) -> None:
    keys = np.array([[b"dog"], [b"cow"]], dtype=object)
    found = predict(server, "animals", {"keys": keys})["embeddings"]
    assert (found.dtype, found.shape) == (np.float32, (2, 1, 3))
    assert found.tolist() == [[[2, 20, 200]], [[-1, -1, -1]]]  # cow: servable.yaml's default


def test_embedding_grpc_by_id(server: ServerProcess) -> None:
    ids = np.array([3, 0], dtype=np.int64)
    found = predict(server, "animals", {"ids": ids}, "by_id")["embeddings"]
    assert found.tolist() == [[4, 40, 400], [1, 10, 100]]


def test_embedding_rest(server: ServerProcess) -> None:
    rows = server.http.post("/v1/models/animals:predict", json={"instances": ["fish", "cat"]})
    assert (rows.status_code, rows.json()) == (
        200,
        {"predictions": [[3.0, 30.0, 300.0], [1.0, 10.0, 100.0]]},
    )
    by_id = server.http.post(
        "/v1/models/animals:predict", json={"signature_name": "by_id", "inputs": {"ids": [1]}}
    )
    assert (by_id.status_code, by_id.json()) == (200, {"outputs": [[2.0, 20.0, 200.0]]})


def test_embedding_metadata(server: ServerProcess) -> None:
    assert signature_defs(server, "animals") == {
        "serving_default": {"keys": (7, None), "embeddings": (1, None)},  # DT_STRING, DT_FLOAT
        "by_id": {"ids": (9, None), "embeddings": (1, None)},  # DT_INT64
    }
    answer = server.http.get("/v1/models/animals/metadata")
    default = answer.json()["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert default["inputs"]["keys"]["dtype"] == "DT_STRING"
    assert default["inputs"]["keys"]["tensor_shape"] == {"dim": [], "unknown_rank": True}


def test_embedding_bad_inputs(server: ServerProcess) -> None:
    error = grpc_error(server, "animals", {"ids": np.array([1, 7], dtype=np.int64)}, "by_id")
    message = "input tensor ids holds id 7 at [1], outside the table's rows 0..3"
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)
    answer = server.http.post(
        "/v1/models/animals:predict", json={"signature_name": "by_id", "instances": [7]}
    )
    assert (answer.status_code, answer.json()) == (
        400,
        {"error": "input tensor ids holds id 7 at [0], outside the table's rows 0..3"},
    )
    error = grpc_error(server, "animals", {"keys": np.array([1.0], dtype=np.float32)})
    assert (error.code(), error.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Expects arg[0] to be string but float is provided",
    )


def test_embedding_is_batched(server: ServerProcess) -> None:
    # Only a batch queue knows max_batch_size (4): a larger request is refused by it.
    error = grpc_error(server, "animals", {"keys": np.array([b"cat"] * 5, dtype=object)})
    assert (error.code(), error.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Task size 5 is larger than maximum input batch size 4",
    )

    def call(index: int) -> list[list[float]]:
        key = tables.KEYS[index % 4]
        return predict(server, "animals", {"keys": np.array([key.encode()], dtype=object)})[
            "embeddings"
        ].tolist()

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(call, range(32)))
    assert answers == [
        [[(i % 4 + 1) * 1.0, (i % 4 + 1) * 10.0, (i % 4 + 1) * 100.0]] for i in range(32)
    ]


def test_embedding_new_version_then_corrupt_one(server: ServerProcess, repository: Path) -> None:
    base = repository / "animals_versions"

    def served() -> list:
        answer = server.http.post(
            "/v1/models/animals_versions:predict", json={"instances": ["bird"]}
        )
        assert answer.status_code == 200, answer.text
        return answer.json()["predictions"]

    code, message = reload_then_corrupt(
        server,
        "animals_versions",
        base,
        lambda path: tables.animals(path, scale=2.0),
        tables.corrupt_npy,
        served,
    )
    assert served() == [[8.0, 80.0, 800.0]]
    assert code == "DATA_LOSS"
    assert message.startswith(f"Cannot load {base / '3' / 'embeddings.npy'}: "), message


# --- vocabulary ------------------------------------------------------------------------------


def test_vocabulary_grpc_both_ways(server: ServerProcess) -> None:
    found = predict(server, "fruit", {"keys": np.array([[b"plum"], [b"fig"]], dtype=object)})
    ids = found["ids"]
    assert ids.dtype == np.int64
    assert ids[0, 0] == 2 and ids[1, 0] in (3, 4)  # fig: one of the 2 buckets after the 3 keys
    back = predict(server, "fruit", {"ids": np.array([0, 9], dtype=np.int64)}, "ids_to_keys")
    assert back["keys"].tolist() == [b"apple", b"UNK"]


def test_vocabulary_rest_both_ways(server: ServerProcess) -> None:
    rows = server.http.post("/v1/models/fruit:predict", json={"instances": ["pear", "apple"]})
    assert (rows.status_code, rows.json()) == (200, {"predictions": [1, 0]})
    columnar = server.http.post(
        "/v1/models/fruit:predict",
        json={"signature_name": "ids_to_keys", "inputs": {"ids": [[2, 1], [5, 0]]}},
    )
    assert (columnar.status_code, columnar.json()) == (
        200,
        {"outputs": [["plum", "pear"], ["UNK", "apple"]]},
    )


def test_vocabulary_metadata(server: ServerProcess) -> None:
    assert signature_defs(server, "fruit") == {
        "serving_default": {"keys": (7, None), "ids": (9, None)},
        "ids_to_keys": {"ids": (9, None), "keys": (7, None)},
    }


def test_vocabulary_bad_inputs(server: ServerProcess) -> None:
    error = grpc_error(server, "fruit", {"keys": np.array([1, 2], dtype=np.int64)})
    assert (error.code(), error.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Expects arg[0] to be string but int64 is provided",
    )
    answer = server.http.post(
        "/v1/models/fruit:predict",
        json={"signature_name": "ids_to_keys", "instances": ["pear"]},
    )
    assert answer.status_code == 400
    assert "is not of expected type: int64" in answer.json()["error"], answer.text


def test_vocabulary_is_batched(server: ServerProcess) -> None:
    # Only a batch queue knows max_batch_size (4): a larger request is refused by it.
    error = grpc_error(server, "fruit", {"keys": np.array([b"pear"] * 5, dtype=object)})
    assert (error.code(), error.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Task size 5 is larger than maximum input batch size 4",
    )
    keys = [b"apple", b"pear", b"plum"]

    def call(index: int) -> list[int]:
        found = predict(server, "fruit", {"keys": np.array([keys[index % 3]], dtype=object)})
        return found["ids"].tolist()

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(call, range(30)))
    assert answers == [[index % 3] for index in range(30)]


def test_vocabulary_new_version_then_invalid_one(server: ServerProcess, repository: Path) -> None:
    base = repository / "fruit_versions"

    def served() -> list:
        answer = server.http.post("/v1/models/fruit_versions:predict", json={"instances": ["fig"]})
        assert answer.status_code == 200, answer.text
        return answer.json()["predictions"]

    code, message = reload_then_corrupt(
        server,
        "fruit_versions",
        base,
        lambda path: tables.vocabulary(path, FRUIT, "default_value: 42\n"),
        lambda path: tables.vocabulary(path, ["fig", "kiwi", "fig"]),
        served,
    )
    assert served() == [42]
    assert (code, message) == (
        "INVALID_ARGUMENT",
        f"{base / '3' / 'vocab.txt'}: key 'fig' is on line 1 and again on line 3",
    )


# --- transform -------------------------------------------------------------------------------


def test_transform_grpc(server: ServerProcess) -> None:
    inputs = {
        "age": np.array([20.0, 45.0], dtype=np.float32),
        "city": np.array([b"tokyo", b"lima"], dtype=object),
    }
    out = predict(server, "features", inputs)
    assert out["age_z"].dtype == np.float32
    assert out["age_z"].tolist() == [-2.0, 0.5]
    assert out["city_id"].tolist() == [1, 2]  # lima: the one bucket after paris, tokyo
    assert out["city_hot"].tolist() == [[0, 1, 0], [0, 0, 1]]


def test_transform_rest_rows(server: ServerProcess) -> None:
    answer = server.http.post(
        "/v1/models/features:predict", json={"instances": [{"age": 50, "city": "paris"}]}
    )
    assert (answer.status_code, answer.json()) == (
        200,
        {"predictions": [{"age_z": 1.0, "city_hot": [1.0, 0.0, 0.0], "city_id": 0}]},
    )


def test_transform_metadata(server: ServerProcess) -> None:
    assert signature_defs(server, "features") == {
        "serving_default": {
            "age": (1, [-1]),
            "city": (7, [-1]),
            "age_z": (1, [-1]),
            "city_id": (9, [-1]),
            "city_hot": (1, [-1, 3]),
        }
    }


def test_transform_bad_input(server: ServerProcess) -> None:
    inputs = {
        "age": np.array([[20.0], [45.0]], dtype=np.float32),
        "city": np.array([b"tokyo", b"lima"], dtype=object),
    }
    error = grpc_error(server, "features", inputs)
    message = "input tensor age has shape [2,1], which the signature's shape [-1] does not accept"
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)
    answer = server.http.post(
        "/v1/models/features:predict", json={"inputs": {"age": [1.0], "town": ["paris"]}}
    )
    assert (answer.status_code, answer.json()) == (
        400,
        {"error": "Missing named input: city in 'inputs' object."},
    )


def test_transform_is_batched(server: ServerProcess) -> None:
    inputs = {
        "age": np.zeros(5, dtype=np.float32),
        "city": np.array([b"paris"] * 5, dtype=object),
    }
    error = grpc_error(server, "features", inputs)
    assert (error.code(), error.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Task size 5 is larger than maximum input batch size 4",
    )

    def call(index: int) -> tuple[list, list]:
        answer = server.http.post(
            "/v1/models/features:predict",
            json={"inputs": {"age": [float(index)], "city": ["tokyo"]}},
        )
        outputs = answer.json()["outputs"]
        return outputs["age_z"], outputs["city_id"]

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(call, range(24)))
    assert answers == [([(i - 40) / 10], [1]) for i in range(24)]


def test_transform_new_version_then_invalid_one(server: ServerProcess, repository: Path) -> None:
    base = repository / "features_versions"

    def served() -> list:
        answer = server.http.post(
            "/v1/models/features_versions:predict",
            json={"instances": [{"age": 60.0, "city": "paris"}]},
        )
        assert answer.status_code == 200, answer.text
        return answer.json()["predictions"]

    code, message = reload_then_corrupt(
        server,
        "features_versions",
        base,
        lambda path: tables.transform(path, tables.FEATURES.replace("std: 10.0", "std: 20.0")),
        lambda path: tables.transform(path, tables.FEATURES.replace("depth: 3", "depth: 0")),
        served,
    )
    assert served() == [{"age_z": 1.0, "city_hot": [1.0, 0.0, 0.0], "city_id": 0}]
    assert (code, message) == (
        "INVALID_ARGUMENT",
        f"{base / '3' / 'transform.yaml'}: op 3 (one_hot -> city_hot): depth: expected a whole "
        "number >= 1, not 0",
    )


# --- pipeline --------------------------------------------------------------------------------

PROFILE_INPUTS = {
    "age": np.array([50.0, 20.0], dtype=np.float32),
    "city": np.array([b"tokyo", b"paris"], dtype=object),
    "animal": np.array([b"dog", b"cow"], dtype=object),
}


def test_pipeline_grpc(server: ServerProcess) -> None:
    out = predict(server, "profile", PROFILE_INPUTS)
    assert out["age_z"].tolist() == [1.0, -2.0]
    assert out["profile"].dtype == np.float32
    assert out["profile"].tolist() == [[0, 1, 0, 2, 20, 200], [1, 0, 0, -1, -1, -1]]


def test_pipeline_rest(server: ServerProcess) -> None:
    answer = server.http.post(
        "/v1/models/profile:predict",
        json={"instances": [{"age": 50, "city": "tokyo", "animal": "dog"}]},
    )
    assert (answer.status_code, answer.json()) == (
        200,
        {"predictions": [{"age_z": 1.0, "profile": [0.0, 1.0, 0.0, 2.0, 20.0, 200.0]}]},
    )


def test_pipeline_metadata(server: ServerProcess) -> None:
    assert signature_defs(server, "profile") == {
        "serving_default": {
            "age": (1, [-1]),
            "city": (7, [-1]),
            "animal": (7, [-1]),
            "age_z": (1, [-1]),
            "profile": (1, [-1, 6]),
        }
    }


def test_pipeline_bad_input_and_a_steps_batch_queue(server: ServerProcess) -> None:
    bad = dict(PROFILE_INPUTS, age=np.array([1, 2], dtype=np.int64))
    error = grpc_error(server, "profile", bad)
    assert (error.code(), error.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Expects arg[0] to be float but int64 is provided",
    )
    # Five rows: the batched transform's queue (max_batch_size 4) refuses them, in step 1.
    five = {name: np.repeat(array[:1], 5) for name, array in PROFILE_INPUTS.items()}
    error = grpc_error(server, "profile", five)
    assert (error.code(), error.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "pipeline step 1 (model 'features'): Task size 5 is larger than maximum input batch size 4",
    )


def test_pipeline_step_on_a_model_not_served(server: ServerProcess) -> None:
    message = "pipeline step 2 (model 'pets'): Servable not found for request: Latest(pets)"
    error = grpc_error(server, "dangling", PROFILE_INPUTS)
    assert (error.code(), error.details()) == (grpc.StatusCode.NOT_FOUND, message)
    answer = server.http.post(
        "/v1/models/dangling:predict",
        json={"instances": [{"age": 50, "city": "tokyo", "animal": "dog"}]},
    )
    assert (answer.status_code, answer.json()) == (404, {"error": message})
    assert statuses(server, "dangling") == {"1": ("AVAILABLE", "OK", "")}


def test_pipeline_new_version_then_invalid_one(server: ServerProcess, repository: Path) -> None:
    base = repository / "profile_versions"

    def served() -> list:
        answer = server.http.post(
            "/v1/models/profile_versions:predict",
            json={"instances": [{"age": 40, "city": "paris", "animal": "fish"}]},
        )
        assert answer.status_code == 200, answer.text
        return answer.json()["predictions"]

    swapped = tables.PROFILE.replace("[city_hot, pet]", "[pet, city_hot]")
    code, message = reload_then_corrupt(
        server,
        "profile_versions",
        base,
        lambda path: tables.pipeline(path, swapped),
        lambda path: tables.pipeline(path, tables.PROFILE.replace("animals", "profile_versions")),
        served,
    )
    assert served() == [{"age_z": 0.0, "profile": [3.0, 30.0, 300.0, 1.0, 0.0, 0.0]}]
    assert (code, message) == (
        "INVALID_ARGUMENT",
        f"{base / '3' / 'pipeline.yaml'}: step 2 (model 'profile_versions'): a pipeline cannot "
        "call itself",
    )


# --- the README ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("title", "command", "shown"),
    [pytest.param(*curl, id=f"{curl[0]}-{index}") for index, curl in enumerate(readme_curls())],
)
def test_the_readmes_curls_answer_as_shown(
    server: ServerProcess, title: str, command: str, shown: str
) -> None:
    # The README's models are this module's: words (its own snippet), fruit, features, profile.
    request = re.fullmatch(r"\$ curl -d '(.*)' localhost:8501(/v1/models/\S+)", command)
    assert request is not None, command
    answer = server.http.post(request[2], content=request[1])
    assert (answer.status_code, answer.json()) == (200, json.loads(shown))
