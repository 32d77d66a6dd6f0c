"""Model warmup: a version's assets.extra/tf_serving_warmup_requests replay before it serves."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    prediction_log_pb2,
)

from support import models
from support.lifecycle import statuses, wait_until
from support.requests import predict_request
from support.server import ServerProcess
from support.store import ModelStore
from support.warmup import (
    classify_log,
    multi_inference_log,
    predict_log,
    regress_log,
    write_warmup,
)

# Each signature run appends its name to calls.txt in the version folder; unload appends
# "unload". So the file tells how often warmup ran each signature, and whether a version
# whose warmup failed was unloaded.
COUNTING_MODEL = """
    import os

    from fastserve.servables.python import signature, tensor

    CALLS = None


    def load(path):
        global CALLS
        CALLS = os.path.join(path, "calls.txt")


    def _record(name):
        with open(CALLS, "a") as calls:
            calls.write(name + "\\n")


    def unload():
        _record("unload")


    @signature(inputs={"x": tensor("float32", [-1])}, outputs={"y": tensor("float32", [-1])})
    def serving_default(x):
        _record("serving_default")
        return {"y": x + 1}


    @signature(
        inputs={"inputs": tensor("string", [-1])},
        outputs={"scores": tensor("float32", [-1, 1])},
        method_name="tensorflow/serving/classify",
    )
    def classify(inputs):
        _record("classify")
        return {"scores": [[0.5]] * len(inputs)}


    @signature(
        inputs={"inputs": tensor("string", [-1])},
        outputs={"outputs": tensor("float32", [-1])},
        method_name="tensorflow/serving/regress",
    )
    def regress(inputs):
        _record("regress")
        return {"outputs": [1.0] * len(inputs)}
"""


def counting_model(path: Path) -> Path:
    models.python_model(path, COUNTING_MODEL)
    return path


def calls(version: Path) -> Counter[str]:
    file = version / "calls.txt"
    return Counter(file.read_text().split()) if file.exists() else Counter()


X = {"x": np.array([1.0, 2.0], dtype=np.float32)}


def every_kind(model: str) -> list[bytes]:
    return [
        predict_log(X),
        classify_log("classify"),
        regress_log("regress"),
        multi_inference_log(model, "classify", "regress"),
    ]


def python_config(name: str, base: Path) -> str:
    """--config= for one python model."""
    config = base.parent / f"{name}.yaml"
    config.write_text(f"models:\n  - {{name: {name}, base_path: {base}, model_platform: python}}\n")
    return f"--config={config}"


def serve(start: Callable[..., ServerProcess], name: str, base: Path, *flags: str) -> ServerProcess:
    return start(python_config(name, base), "--max_num_load_retries=0", *flags)


def run_failing(*args: str) -> ServerProcess:
    """Runs fastserve, which must exit 1 at start-up."""
    process = ServerProcess([*args, "--max_num_load_retries=0"], rest=False)
    assert process.wait(120) == 1, process.output
    return process


# --- warmup runs, and runs each request as often as asked --------------------------------------


@pytest.mark.parametrize(
    ("flags", "times"), [((), 1), (("--num_request_iterations_for_warmup=3",), 3)]
)
def test_every_record_kind_replays_before_the_version_serves(
    tmp_path: Path,
    start_server: Callable[..., ServerProcess],
    flags: tuple[str, ...],
    times: int,
) -> None:
    version = counting_model(tmp_path / "counting" / "1")
    write_warmup(version, every_kind("counting"))
    server = serve(start_server, "counting", tmp_path / "counting", *flags)
    # Before any client request: one predict, two classify (one alone, one in the
    # multi-inference), two regress, each `times` times.
    assert calls(version) == Counter(
        serving_default=times, classify=2 * times, regress=2 * times
    ), server.output
    assert "Finished reading warmup data for model at" in server.output
    assert "Number of warmup records read: 4." in server.output
    server.prediction.Predict(predict_request("counting", {"x": X["x"]}), timeout=30)
    assert calls(version)["serving_default"] == times + 1
    assert server.terminate() == 0


def test_warmup_can_be_turned_off(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    version = counting_model(tmp_path / "counting" / "1")
    write_warmup(version, [*every_kind("counting"), predict_log(X, "no_such_signature")])
    server = serve(start_server, "counting", tmp_path / "counting", "--enable_model_warmup=false")
    assert calls(version) == Counter()
    assert "warmup" not in server.output.lower()


def test_a_version_without_warmup_file_loads_as_before(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    version = counting_model(tmp_path / "counting" / "1")
    server = serve(start_server, "counting", tmp_path / "counting")
    assert calls(version) == Counter()
    warmup_file = version / "assets.extra" / "tf_serving_warmup_requests"
    assert f"No warmup data file found at {warmup_file}" in server.output


def test_empty_warmup_file_replays_nothing(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    version = counting_model(tmp_path / "counting" / "1")
    write_warmup(version, [])
    server = serve(start_server, "counting", tmp_path / "counting")
    assert calls(version) == Counter()
    assert "Number of warmup records read: 0." in server.output


# --- SavedModels ---------------------------------------------------------------------------------


def test_warmup_runs_in_a_saved_model(
    store: ModelStore, tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    """TF Serving's counter model: each warmed-up incr_counter is visible in get_counter."""
    version = store.install(store.counter(), tmp_path / "counter" / "1")
    write_warmup(version, [predict_log({}, "incr_counter")] * 2)
    server = start_server(
        "--model_name=counter",
        f"--model_base_path={tmp_path / 'counter'}",
        "--num_request_iterations_for_warmup=3",
    )
    response = server.prediction.Predict(
        predict_request("counter", {}, signature="get_counter"), timeout=30
    )
    assert float(tf.make_ndarray(response.outputs["output"])) == 6.0


@pytest.mark.parametrize("batching", [False, True])
def test_tf_serving_half_plus_two_warms_up_every_request_kind(
    store: ModelStore,
    tmp_path: Path,
    start_server: Callable[..., ServerProcess],
    batching: bool,
) -> None:
    """Predict, Classify, Regress and MultiInference records on TF Serving's test model, with
    and without batching (warmup then goes through the batch queues)."""
    version = store.install(store.tf_serving_half_plus_two(), tmp_path / "half_plus_two" / "1")
    write_warmup(
        version,
        [
            predict_log({"x": np.array([[1.0], [2.0]], dtype=np.float32)}),
            classify_log("classify_x_to_y"),
            regress_log("regress_x_to_y"),
            multi_inference_log("half_plus_two", "classify_x_to_y", "regress_x_to_y2"),
        ],
    )
    server = start_server(
        "--model_name=half_plus_two",
        f"--model_base_path={tmp_path / 'half_plus_two'}",
        *(["--enable_batching"] if batching else []),
    )
    assert "Number of warmup records read: 4." in server.output
    answer = server.http.post("/v1/models/half_plus_two:predict", json={"instances": [[1.0]]})
    assert answer.json() == {"predictions": [[2.5]]}


def test_a_classify_record_on_a_regress_signature_fails_the_saved_model(
    store: ModelStore, tmp_path: Path
) -> None:
    """The SavedModel's records really run: one that TF Serving's checks refuse fails it."""
    version = store.install(store.tf_serving_half_plus_two(), tmp_path / "half_plus_two" / "1")
    path = write_warmup(version, [classify_log("regress_x_to_y")])
    done = run_failing("--model_name=half_plus_two", f"--model_base_path={version.parent}")
    assert (
        f"model half_plus_two failed to load: Warmup request 1 of {path} failed: Expected "
        'classification signature outputs to contain at least one of "classes" or "scores".'
    ) in done.output


# --- failures fail the load ----------------------------------------------------------------------


def test_corrupt_warmup_file_fails_start_up_naming_the_file(tmp_path: Path) -> None:
    version = counting_model(tmp_path / "counting" / "1")
    path = write_warmup(version, every_kind("counting"))
    path.write_bytes(path.read_bytes()[:-7])  # the last record loses its end
    done = run_failing(python_config("counting", version.parent))
    assert "failed to start" in done.output
    assert f"model counting failed to load: Cannot read warmup data {path}: truncated record" in (
        done.output
    )
    assert "Please verify your warmup data is in TFRecord format." in done.output


def test_a_file_that_is_not_tfrecord_fails_start_up(tmp_path: Path) -> None:
    version = counting_model(tmp_path / "counting" / "1")
    path = version / "assets.extra" / "tf_serving_warmup_requests"
    path.parent.mkdir()
    path.write_text("predict x=1.0\n" * 10)
    done = run_failing(python_config("counting", version.parent))
    assert (
        f"model counting failed to load: Cannot read warmup data {path}: corrupted record at 0"
    ) in done.output
    assert calls(version) == Counter(unload=1)


def test_at_most_1000_records(tmp_path: Path, start_server: Callable[..., ServerProcess]) -> None:
    record = predict_log({"x": np.array([1.0], dtype=np.float32)})
    version = counting_model(tmp_path / "counting" / "1")
    write_warmup(version, [record] * 1000)
    serve(start_server, "counting", tmp_path / "counting").terminate()
    assert calls(version)["serving_default"] == 1000

    version = counting_model(tmp_path / "too_many" / "1")
    path = write_warmup(version, [record] * 1001)
    done = run_failing(python_config("too_many", version.parent))
    assert (
        f"model too_many failed to load: Number of warmup records exceeds the maximum (1000) "
        f"at {path}"
    ) in done.output


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (
            predict_log(X, "no_such_signature"),
            'Warmup request 2 of {path} failed: Serving signature key "no_such_signature" '
            "not found.",
        ),
        (
            predict_log({"y": X["x"]}),
            "Warmup request 2 of {path} failed: Signature input alias: x(feed name: ",
        ),
        (
            prediction_log_pb2.PredictionLog(
                session_run_log=prediction_log_pb2.SessionRunLog()
            ).SerializeToString(),
            "Warmup request 2 of {path} failed: Unsupported log_type for warmup: session_run_log",
        ),
        (
            b"not a prediction log",
            "Failed to parse warmup record 2 from {path}: it is not a "
            "tensorflow.serving.PredictionLog",
        ),
    ],
    ids=["unknown-signature", "unknown-input", "session-run-log", "not-a-prediction-log"],
)
def test_a_failing_record_fails_start_up(tmp_path: Path, record: bytes, message: str) -> None:
    version = counting_model(tmp_path / "counting" / "1")
    path = write_warmup(version, [predict_log(X), record, predict_log(X)])
    done = run_failing(python_config("counting", version.parent))
    assert "model counting failed to load: " + message.format(path=path) in done.output
    # The first record ran, the third did not, and the loaded version was unloaded.
    assert calls(version) == Counter(serving_default=1, unload=1)


def test_new_version_whose_warmup_fails_ends_and_old_keeps_serving(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    base = tmp_path / "counting"
    first = counting_model(base / "1")
    write_warmup(first, [predict_log(X)])
    server = serve(start_server, "counting", base, "--file_system_poll_wait_seconds=1")
    assert calls(first) == Counter(serving_default=1)

    staging = counting_model(tmp_path / "staging")
    path = write_warmup(staging, [predict_log(X, "no_such_signature")])
    staging.rename(base / "2")
    path = base / "2" / path.relative_to(staging)
    wait_until(lambda: statuses(server, "counting").get("2", ("",))[0] == "END", what="v2 END")
    assert statuses(server, "counting") == {
        "2": (
            "END",
            "FAILED_PRECONDITION",
            f'Warmup request 1 of {path} failed: Serving signature key "no_such_signature" '
            "not found.",
        ),
        "1": ("AVAILABLE", "OK", ""),
    }
    assert calls(base / "2") == Counter(unload=1)
    response = server.prediction.Predict(predict_request("counting", {"x": X["x"]}), timeout=30)
    assert tf.make_ndarray(response.outputs["y"]).tolist() == [2.0, 3.0]
    assert calls(first) == Counter(serving_default=2)
    assert server.terminate() == 0
