"""The tflite kind: real TF Lite models made with TFLiteConverter, run by TF Lite's interpreter."""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from fastserve.dtypes import DType
from fastserve.errors import Code, ServingError
from fastserve.servables import loader_for
from fastserve.servables.base import LoadOptions, Servable
from fastserve.servables.tensorflow import TensorFlowLoader
from fastserve.servables.tflite import TfLiteLoader, TfLiteOptions, TfLiteServable, read_options
from fastserve.types import RunContext, TensorInfo
from support import tflite_models
from support.store import ModelStore
from support.tflite_models import TfLiteStore


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> TfLiteStore:
    return TfLiteStore(tmp_path_factory.mktemp("tflite_models"))


def graph(models: TfLiteStore, target: Path) -> Path:
    return models.install("graph", tflite_models.half_plus_two_graph, target)


def dynamic(models: TfLiteStore, target: Path) -> Path:
    return models.install("dynamic", tflite_models.half_plus_two_signature, target)


def several(models: TfLiteStore, target: Path) -> Path:
    return models.install("several", tflite_models.several, target)


def load(path: Path) -> Servable:
    return TfLiteLoader().load(str(path), LoadOptions())


def load_error(path: Path) -> ServingError:
    with pytest.raises(ServingError) as caught:
        load(path)
    return caught.value


def run(
    servable: Servable,
    inputs: dict[str, np.ndarray],
    outputs: list[str] | None = None,
    signature: str = "serving_default",
) -> dict[str, np.ndarray]:
    found = servable.signatures[signature]
    return servable.run(found, inputs, outputs or sorted(found.outputs))


def test_a_model_without_signature_defs_serves_its_tensors(
    models: TfLiteStore, tmp_path: Path
) -> None:
    servable = load(graph(models, tmp_path / "1"))
    assert servable.runtime == "tflite"
    (signature,) = servable.signatures.values()
    assert signature.name == "serving_default"
    assert signature.method_name == "tensorflow/serving/predict"
    assert dict(signature.inputs) == {"x": TensorInfo("x", DType.DT_FLOAT, (1, 1))}
    assert dict(signature.outputs) == {"y": TensorInfo("y", DType.DT_FLOAT, (1, 1))}
    # TF Serving's testPredictOnTfLite feeds x of shape [1] to this (1, 1) model.
    y = run(servable, {"x": np.array([2.0], dtype=np.float32)})["y"]
    assert (y.dtype, y.shape, y.tolist()) == (np.float32, (1,), [3.0])
    # A batch of any size: the interpreter is resized to the fed shape.
    batch = run(servable, {"x": np.array([[1.0], [2.0], [6.0]], dtype=np.float32)})["y"]
    assert batch.tolist() == [[2.5], [3.0], [5.0]]
    assert run(servable, {"x": np.array([[4.0]], dtype=np.float32)})["y"].tolist() == [[4.0]]


def test_signature_defs_by_their_keys_with_dynamic_dimensions(
    models: TfLiteStore, tmp_path: Path
) -> None:
    servable = load(dynamic(models, tmp_path / "1"))
    (signature,) = servable.signatures.values()
    assert signature.name == "serving_default"
    assert dict(signature.inputs) == {"x": TensorInfo("serving_default_x:0", DType.DT_FLOAT, (-1,))}
    assert list(signature.outputs) == ["y"]
    assert signature.outputs["y"].shape == (-1,)
    assert run(servable, {"x": np.array([1.0, 2.0, 5.0], dtype=np.float32)})["y"].tolist() == [
        2.5,
        3.0,
        4.5,
    ]


def test_several_signatures_dtypes_and_an_output_filter(
    models: TfLiteStore, tmp_path: Path
) -> None:
    servable = load(several(models, tmp_path / "1"))
    assert sorted(servable.signatures) == ["reverse", "serving_default"]
    default = servable.signatures["serving_default"]
    assert {a: (i.dtype, i.shape) for a, i in default.inputs.items()} == {
        "values": (DType.DT_FLOAT, (-1, 2)),
        "counts": (DType.DT_INT64, (-1,)),
    }
    assert {a: (i.dtype, i.shape) for a, i in default.outputs.items()} == {
        "total": (DType.DT_FLOAT, (-1,)),
        "doubled": (DType.DT_INT64, (-1,)),
    }
    inputs = {
        "values": np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32),
        "counts": np.array([2, 5], dtype=np.int64),
    }
    both = run(servable, inputs)
    assert (both["total"].dtype, both["total"].tolist()) == (np.float32, [42.0, 215.0])
    assert both["doubled"].dtype.type is np.int64
    assert both["doubled"].tolist() == [4, 10]
    assert list(run(servable, inputs, ["doubled"])) == ["doubled"]


def test_strings_go_in_and_come_out_as_bytes(models: TfLiteStore, tmp_path: Path) -> None:
    servable = load(several(models, tmp_path / "1"))
    reverse = servable.signatures["reverse"]
    assert reverse.inputs["words"].dtype == DType.DT_STRING
    words = np.array([b"hi", "h\u00e9".encode(), b"\xff"], dtype=object)
    out = run(servable, {"words": words}, signature="reverse")["reversed"]
    assert out.dtype == object
    assert out.tolist() == [b"\xff", "h\u00e9".encode(), b"hi"]


def test_a_shape_the_model_cannot_compute_is_invalid_argument(
    models: TfLiteStore, tmp_path: Path
) -> None:
    servable = load(several(models, tmp_path / "1"))
    bad = {
        "values": np.ones((2, 3), dtype=np.float32),
        "counts": np.array([1, 1], dtype=np.int64),
    }
    with pytest.raises(ServingError) as caught:
        run(servable, bad)
    assert caught.value.code == Code.INVALID_ARGUMENT
    assert caught.value.message.startswith(
        "TF Lite cannot run signature serving_default on inputs counts [2], values [2,3]: "
    ), caught.value.message
    # The interpreter is resized back for the next request.
    good = {"values": np.ones((1, 2), dtype=np.float32), "counts": np.array([1], dtype=np.int64)}
    assert run(servable, good)["total"].tolist() == [11.0]


def test_many_threads_share_a_pool_of_interpreters(models: TfLiteStore, tmp_path: Path) -> None:
    folder = dynamic(models, tmp_path / "1")
    (folder / "servable.yaml").write_text("num_interpreters: 2\nnum_threads: 1\n")
    servable = load(folder)
    assert isinstance(servable, TfLiteServable)
    assert servable.num_interpreters == 2
    # It may wait for another request's interpreter, as a batch queue waits.
    assert servable.queues_requests

    def call(n: int) -> list[float]:
        return run(servable, {"x": np.arange(n, dtype=np.float32)})["y"].tolist()

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(call, range(1, 65)))
    assert answers == [[0.5 * i + 2.0 for i in range(n)] for n in range(1, 65)]
    servable.unload()


def test_a_request_waits_for_an_interpreter_no_longer_than_its_deadline(
    models: TfLiteStore, tmp_path: Path
) -> None:
    servable = load(dynamic(models, tmp_path / "1"))
    assert isinstance(servable, TfLiteServable)
    x = {"x": np.array([2.0], dtype=np.float32)}
    signature = servable.signatures["serving_default"]
    # The only interpreter is busy.
    with servable._interpreter(None), pytest.raises(ServingError) as caught:
        servable.run(signature, x, ["y"], RunContext(deadline=time.monotonic()))
    assert (caught.value.code, caught.value.message) == (
        Code.DEADLINE_EXCEEDED,
        "The request's deadline passed while it waited for a TF Lite interpreter",
    )
    assert servable.run(signature, x, ["y"], RunContext.within(30))["y"].tolist() == [3.0]


def test_options_from_servable_yaml(tmp_path: Path) -> None:
    assert read_options(str(tmp_path)) == TfLiteOptions(num_interpreters=1, num_threads=None)
    (tmp_path / "servable.yaml").write_text("num_interpreters: 3\nnum_threads: 2\n")
    assert read_options(str(tmp_path)) == TfLiteOptions(num_interpreters=3, num_threads=2)
    (tmp_path / "servable.yaml").write_text("")
    assert read_options(str(tmp_path)) == TfLiteOptions()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("threads: 2\n", "unknown option 'threads' (known: num_interpreters, num_threads)"),
        ("num_interpreters: 0\n", "num_interpreters: expected a whole number >= 1, not 0"),
        ("num_threads: two\n", "num_threads: expected a whole number >= 1, not 'two'"),
        ("num_threads: true\n", "num_threads: expected a whole number >= 1, not True"),
        ("- 1\n", "expected a mapping of options (num_interpreters, num_threads)"),
        ("a: [\n", "Cannot read "),
    ],
)
def test_bad_options_fail_the_load(
    models: TfLiteStore, tmp_path: Path, text: str, message: str
) -> None:
    folder = dynamic(models, tmp_path / "1")
    (folder / "servable.yaml").write_text(text)
    error = load_error(folder)
    assert error.code == Code.INVALID_ARGUMENT
    assert message in error.message
    assert str(folder / "servable.yaml") in error.message


def test_a_folder_without_model_tflite(tmp_path: Path) -> None:
    error = load_error(tmp_path)
    assert (error.code, error.message) == (
        Code.NOT_FOUND,
        f"Could not find model.tflite in {tmp_path}",
    )


def test_a_corrupt_model_tflite(tmp_path: Path) -> None:
    error = load_error(tflite_models.corrupt(tmp_path / "1"))
    file = tmp_path / "1" / "model.tflite"
    assert (error.code, error.message) == (
        Code.DATA_LOSS,
        f"Cannot load TF Lite model {file}: The model is not a valid Flatbuffer buffer",
    )
    file.write_bytes(b"")
    assert (load_error(tmp_path / "1").code, load_error(tmp_path / "1").message) == (
        Code.DATA_LOSS,
        f"Cannot load TF Lite model {file}: the file is empty",
    )


def test_the_registry_names_this_loader(models: TfLiteStore, tmp_path: Path) -> None:
    loader = loader_for("tflite")
    assert loader.platform == "tflite"
    servable = loader.load(str(dynamic(models, tmp_path / "1")), LoadOptions())
    assert servable.runtime == "tflite"


# --- --prefer_tflite_model: the tensorflow platform's folders ----------------------------------


@pytest.fixture()
def both(store: ModelStore, models: TfLiteStore, tmp_path: Path) -> Path:
    """A SavedModel (y = 0.5x + 2) whose folder also holds a model.tflite (y = 0.5x + 3)."""
    folder = store.install(store.half_plus_two(2.0), tmp_path / "1")
    models.add_to("graph_add3", lambda p: tflite_models.half_plus_two_graph(p, 3.0), folder)
    return folder


def test_prefer_tflite_model_serves_the_tflite_model(both: Path) -> None:
    servable = TensorFlowLoader().load(str(both), LoadOptions(prefer_tflite_model=True))
    assert servable.runtime == "tflite"
    assert run(servable, {"x": np.array([2.0], dtype=np.float32)})["y"].tolist() == [4.0]


def test_without_prefer_tflite_model_the_saved_model_serves(both: Path) -> None:
    servable = TensorFlowLoader().load(str(both), LoadOptions())
    try:
        assert servable.runtime == "TF1"
        y = run(servable, {"x": np.array([2.0], dtype=np.float32)}, ["y"])["y"]
        assert y.tolist() == [3.0]
    finally:
        servable.unload()


def test_prefer_tflite_model_falls_back_to_the_saved_model(
    store: ModelStore, tmp_path: Path
) -> None:
    folder = store.install(store.half_plus_two(2.0), tmp_path / "1")
    servable = TensorFlowLoader().load(str(folder), LoadOptions(prefer_tflite_model=True))
    try:
        assert servable.runtime == "TF1"
    finally:
        servable.unload()


def test_prefer_tflite_model_serves_a_folder_with_only_model_tflite(
    models: TfLiteStore, tmp_path: Path
) -> None:
    # TF Serving's own TF Lite test models are such folders, served by the tensorflow platform.
    folder = graph(models, tmp_path / "1")
    servable = TensorFlowLoader().load(str(folder), LoadOptions(prefer_tflite_model=True))
    assert servable.runtime == "tflite"
    with pytest.raises(ServingError) as caught:
        TensorFlowLoader().load(str(folder), LoadOptions())
    assert caught.value.code == Code.NOT_FOUND
    assert caught.value.message.startswith("Could not find SavedModel .pb or .pbtxt")


def test_the_readmes_example_converts_and_serves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("\n### TF Lite\n") :]
    section = section[: section.index("\n### ", 1)]
    (script,) = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    (options,) = re.findall(r"```yaml\n(.*?)```", section, re.DOTALL)
    (curl,) = re.findall(r"```sh\n(curl .*?)```", section, re.DOTALL)
    monkeypatch.chdir(tmp_path)
    exec(compile(script, "README.md", "exec"), {})
    folder = tmp_path / "models" / "half_plus_two_lite" / "1"
    (folder / "servable.yaml").write_text(options)
    assert read_options(str(folder)) == TfLiteOptions(num_interpreters=2, num_threads=1)
    servable = load(folder)
    # The curl command's instances and the answer the README shows.
    sent = json.loads(re.search(r"-d '(.*?)'", curl).group(1))["instances"]
    shown = json.loads(curl.split("\n# ", 1)[1])["predictions"]
    assert run(servable, {"x": np.array(sent, dtype=np.float32)})["y"].tolist() == shown
