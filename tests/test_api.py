"""The inference API (api/inference.py, predict.py, signatures.py, examples.py) over fakes of the
Servable contract served by the real control plane: a ServableTable filled by a Manager that
Models drives from a config, as the server does. Every call must leave no handle behind."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from fastserve.api.examples import Classifications, Regressions, Served, Tasks
from fastserve.api.inference import InferenceAPI
from fastserve.api.predict import check_input_names, check_inputs, select_outputs
from fastserve.api.signatures import Asking, find_signature
from fastserve.core.manager import Manager, ManagerOptions
from fastserve.core.models import ModelConfig, ModelFailures, Models
from fastserve.core.policies import All
from fastserve.core.table import ServableTable
from fastserve.errors import Code, ServingError
from fastserve.types import (
    CLASSIFY_METHOD,
    PREDICT_METHOD,
    REGRESS_METHOD,
    ModelSpec,
    RunContext,
    State,
    VersionStatus,
)
from support.fakes import SIGNATURES, FakeLoader, FakeServable, example

X = np.array([1.0, 2.0, 5.0], np.float32)


@dataclass
class Parts:
    """The parts of a server the API works over."""

    table: ServableTable
    manager: Manager
    models: Models
    loader: FakeLoader
    api: InferenceAPI
    base: Path

    def config(self, **labels: int) -> ModelConfig:
        return ModelConfig(
            "hp",
            str(self.base / "hp"),
            model_platform="fake",
            version_policy=All(),
            version_labels=labels,
        )

    def servable(self, version: int) -> FakeServable:
        return self.loader.loaded[str(self.base / "hp" / str(version))]

    def handles(self) -> dict[tuple[str, int], int]:
        """Every version's handle count that is not 0."""
        counts = {
            (model, version): self.table.handle_count(model, version)
            for model in self.table.models()
            for version in self.table.versions(model)
        }
        return {key: count for key, count in counts.items() if count}


def build(tmp_path: Path, check_method_names: bool = False) -> Parts:
    (tmp_path / "hp" / "1").mkdir(parents=True)
    (tmp_path / "hp" / "2").mkdir()
    table = ServableTable()
    manager = Manager(table, ManagerOptions(max_num_load_retries=0, load_retry_interval=0.0))
    loader = FakeLoader()
    models = Models(table, manager, poll_wait_seconds=0, loader=lambda _: loader)
    api = InferenceAPI(table, manager, models, check_method_names=check_method_names)
    parts = Parts(table, manager, models, loader, api, tmp_path)
    api.reload_config([parts.config(stable=1, canary=2)])
    return parts


@pytest.fixture()
def parts(tmp_path: Path) -> Iterator[Parts]:
    """Model hp, versions 1 (0.5x+2) and 2 (0.5x+3), labels stable=1 and canary=2. After the
    test, no handle is held."""
    parts = build(tmp_path)
    yield parts
    assert parts.handles() == {}
    parts.models.stop()
    parts.manager.stop()


def raised(call, *args, **kwargs) -> ServingError:  # type: ignore[no-untyped-def]
    with pytest.raises(ServingError) as caught:
        call(*args, **kwargs)
    return caught.value


# --- resolving a model spec ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "version", "offset"),
    [
        (ModelSpec("hp"), 2, 3.0),
        (ModelSpec("hp", version=1), 1, 2.0),
        (ModelSpec("hp", version=2), 2, 3.0),
        (ModelSpec("hp", label="stable"), 1, 2.0),
        (ModelSpec("hp", label="canary"), 2, 3.0),
    ],
)
def test_resolve_latest_version_and_label(
    parts: Parts, spec: ModelSpec, version: int, offset: float
) -> None:
    with parts.api.resolve(spec) as resolved:
        assert (resolved.model, resolved.version) == ("hp", version)
        assert resolved.signature is SIGNATURES["serving_default"]
        assert parts.table.handle_count("hp", version) == 1  # held while resolved
        outputs = parts.api.predict(resolved, {"x": X})
    np.testing.assert_allclose(outputs["y"], 0.5 * X + offset)
    np.testing.assert_allclose(outputs["x2"], 2 * X)
    assert parts.handles() == {}


@pytest.mark.parametrize(
    ("spec", "code", "message"),
    [
        (ModelSpec("nope"), Code.NOT_FOUND, "Servable not found for request: Latest(nope)"),
        (
            ModelSpec("nope", version=7),
            Code.NOT_FOUND,
            "Servable not found for request: Specific(nope, 7)",
        ),
        (
            ModelSpec("hp", version=7),
            Code.NOT_FOUND,
            "Servable not found for request: Specific(hp, 7)",
        ),
        (
            ModelSpec("hp", label="gold"),
            Code.INVALID_ARGUMENT,
            "Unrecognized servable version label: gold",
        ),
        (
            ModelSpec("nope", label="stable"),
            Code.INVALID_ARGUMENT,
            "Unrecognized servable version label: stable",
        ),
        (ModelSpec(""), Code.INVALID_ARGUMENT, "ModelSpec has no name specified."),
        (ModelSpec("", version=1), Code.INVALID_ARGUMENT, "ModelSpec has no name specified."),
    ],
)
def test_resolve_errors(parts: Parts, spec: ModelSpec, code: Code, message: str) -> None:
    error = raised(parts.api.resolve, spec)
    assert (error.code, error.message) == (code, message)
    assert raised(parts.api.metadata, spec).message == message


def test_a_label_naming_a_version_not_served_is_not_found(parts: Parts) -> None:
    parts.table.set_labels("hp", {"stable": 1, "future": 9})
    error = raised(parts.api.resolve, ModelSpec("hp", label="future"))
    assert (error.code, error.message) == (
        Code.NOT_FOUND,
        "Servable not found for request: Specific(hp, 9)",
    )


@pytest.mark.parametrize(
    ("rest", "code", "message"),
    [
        (False, Code.FAILED_PRECONDITION, 'Serving signature key "nope" not found.'),
        (True, Code.INVALID_ARGUMENT, 'Serving signature name: "nope" not found in signature def'),
    ],
)
def test_resolve_an_unknown_signature_releases_the_version(
    parts: Parts, rest: bool, code: Code, message: str
) -> None:
    error = raised(parts.api.resolve, ModelSpec("hp", signature_name="nope"), rest=rest)
    assert (error.code, error.message) == (code, message)
    assert parts.handles() == {}


def test_queues_is_false_for_an_unbatched_servable_and_for_a_miss(parts: Parts) -> None:
    assert parts.api.queues(ModelSpec("hp")) is False
    assert parts.api.queues(ModelSpec("nope")) is False


# --- signatures ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("asking", "code", "message"),
    [
        (Asking.GRPC_PREDICT, Code.FAILED_PRECONDITION, 'Serving signature key "nope" not found.'),
        (
            Asking.REST_PREDICT,
            Code.INVALID_ARGUMENT,
            'Serving signature name: "nope" not found in signature def',
        ),
        (
            Asking.CLASSIFY_OR_REGRESS,
            Code.INVALID_ARGUMENT,
            "No signature was found with the name: nope",
        ),
        (
            Asking.MULTI_INFERENCE,
            Code.INVALID_ARGUMENT,
            "Requested signature not found in model graph: nope",
        ),
    ],
)
def test_find_signature_words_a_miss_as_each_caller_does(
    asking: Asking, code: Code, message: str
) -> None:
    servable = FakeServable(2.0)
    error = raised(find_signature, servable, "nope", asking)
    assert (error.code, error.message) == (code, message)
    # "" is serving_default, whoever asks.
    assert find_signature(servable, "", asking) is SIGNATURES["serving_default"]
    assert find_signature(servable, "regress_x", asking) is SIGNATURES["regress_x"]


# --- Predict's checks ----------------------------------------------------------------------------

DEFAULT = SIGNATURES["serving_default"]


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (
            ["x", "extra"],
            "input size does not match signature: 2!=1 len({extra,x}) != len({x}). "
            "Sent extra: {extra}. Missing but required: {}.",
        ),
        (
            [],
            "input size does not match signature: 0!=1 len({}) != len({x}). "
            "Sent extra: {}. Missing but required: {x}.",
        ),
        (
            ["w"],
            "Signature input alias: x(feed name: x:0) not found in request and no default value "
            "provided. Inputs expected to be in the request {w}, or default input alias set: ",
        ),
    ],
)
def test_check_input_names(names: list[str], message: str) -> None:
    error = raised(check_input_names, DEFAULT, names)
    assert (error.code, error.message) == (Code.INVALID_ARGUMENT, message)


def test_check_input_names_accepts_the_signatures_aliases() -> None:
    check_input_names(DEFAULT, ["x"])


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.array([1], np.int32), "Expects arg[0] to be float but int32 is provided"),
        (np.array([1.0]), "Expects arg[0] to be float but double is provided"),
        (np.array([b"a"], object), "Expects arg[0] to be float but string is provided"),
        (
            np.array(["2020-01-01"], "datetime64[s]"),
            "Expects arg[0] to be float but datetime64[s] is provided",
        ),
    ],
)
def test_check_inputs_dtype(array: np.ndarray, message: str) -> None:
    error = raised(check_inputs, DEFAULT, {"x": array})
    assert (error.code, error.message) == (Code.INVALID_ARGUMENT, message)


def test_check_inputs_leaves_shapes_to_the_servable() -> None:
    check_inputs(DEFAULT, {"x": np.ones((2, 3), np.float32)})


@pytest.mark.parametrize(
    ("output_filter", "selected"),
    [((), ("x2", "y")), (("y",), ("y",)), (("y", "x2"), ("y", "x2"))],
)
def test_select_outputs(output_filter: tuple[str, ...], selected: tuple[str, ...]) -> None:
    assert select_outputs(DEFAULT, output_filter) == selected


@pytest.mark.parametrize(
    ("output_filter", "message"),
    [
        (
            ("nope",),
            "output tensor alias not found in signature: nope Outputs expected to be in the "
            "set {x2,y}.",
        ),
        (("y", "y"), "duplicate output tensor alias: y"),
    ],
)
def test_select_outputs_errors(output_filter: tuple[str, ...], message: str) -> None:
    error = raised(select_outputs, DEFAULT, output_filter)
    assert (error.code, error.message) == (Code.INVALID_ARGUMENT, message)


# --- Predict -------------------------------------------------------------------------------------


def test_predict_runs_only_the_filtered_outputs(parts: Parts) -> None:
    with parts.api.resolve(ModelSpec("hp", version=1)) as resolved:
        outputs = parts.api.predict(resolved, {"x": X}, ("x2",))
    assert list(outputs) == ["x2"]
    np.testing.assert_allclose(outputs["x2"], 2 * X)
    assert parts.servable(1).runs == [("serving_default", ("x2",))]


@pytest.mark.parametrize(
    ("inputs", "output_filter", "message"),
    [
        (
            {"x": X, "extra": X},
            (),
            "input size does not match signature: 2!=1 len({extra,x}) != len({x}). "
            "Sent extra: {extra}. Missing but required: {}.",
        ),
        ({"x": X.astype(np.int64)}, (), "Expects arg[0] to be float but int64 is provided"),
        (
            {"x": X},
            ("z",),
            "output tensor alias not found in signature: z Outputs expected to be in the set "
            "{x2,y}.",
        ),
    ],
)
def test_a_refused_predict_never_runs_and_releases(
    parts: Parts, inputs: dict[str, np.ndarray], output_filter: tuple[str, ...], message: str
) -> None:
    with parts.api.resolve(ModelSpec("hp")) as resolved:
        parts.api.check_request(resolved, ["x"], ())
        error = raised(parts.api.predict, resolved, inputs, output_filter)
    assert (error.code, error.message) == (Code.INVALID_ARGUMENT, message)
    assert parts.servable(2).runs == []
    assert parts.handles() == {}


def test_check_request_checks_names_and_filter_without_tensors(parts: Parts) -> None:
    with parts.api.resolve(ModelSpec("hp")) as resolved:
        parts.api.check_request(resolved, ["x"], ("y",))
        error = raised(parts.api.check_request, resolved, ["x"], ("y", "y"))
    assert error.message == "duplicate output tensor alias: y"


@pytest.mark.parametrize(
    ("signature", "code", "message"),
    [
        ("raises", Code.INTERNAL, "ValueError: boom"),
        ("exhausted", Code.RESOURCE_EXHAUSTED, "out of fake memory"),
        ("returns_nothing", Code.UNKNOWN, "Predict internal error"),
    ],
)
def test_a_servable_failing_fails_its_request_only(
    parts: Parts, signature: str, code: Code, message: str
) -> None:
    with parts.api.resolve(ModelSpec("hp", signature_name=signature)) as resolved:
        error = raised(parts.api.predict, resolved, {"x": X})
    assert (error.code, error.message) == (code, message)
    assert parts.handles() == {}
    with parts.api.resolve(ModelSpec("hp")) as resolved:
        np.testing.assert_allclose(parts.api.predict(resolved, {"x": X})["y"], 0.5 * X + 3)


def test_a_context_no_longer_wanted_is_never_run(parts: Parts) -> None:
    cancelled = RunContext()
    cancelled.cancel()
    expired = RunContext(deadline=0.0)
    with parts.api.resolve(ModelSpec("hp")) as resolved:
        error = raised(parts.api.predict, resolved, {"x": X}, (), cancelled)
        assert (error.code, error.message) == (
            Code.CANCELLED,
            "The request was cancelled before it ran",
        )
        error = raised(parts.api.predict, resolved, {"x": X}, (), expired)
        assert (error.code, error.message) == (
            Code.DEADLINE_EXCEEDED,
            "The request's deadline passed before it ran",
        )
    assert parts.servable(2).runs == []


def test_method_name_check(tmp_path: Path) -> None:
    checking = build(tmp_path, check_method_names=True)
    try:
        with checking.api.resolve(ModelSpec("hp", signature_name="custom_method")) as resolved:
            error = raised(checking.api.predict, resolved, {"x": X})
        assert (error.code, error.message) == (
            Code.INTERNAL,
            "Expected prediction signature method_name to be one of {tensorflow/serving/predict, "
            "tensorflow/serving/classify, tensorflow/serving/regress}. Was: custom/method",
        )
        assert checking.handles() == {}
    finally:
        checking.manager.stop()


# --- metadata and status -------------------------------------------------------------------------


def test_metadata(parts: Parts) -> None:
    name, version, signatures = parts.api.metadata(ModelSpec("hp"))
    assert (name, version, dict(signatures)) == ("hp", 2, SIGNATURES)
    assert parts.api.metadata(ModelSpec("hp", label="stable"))[1] == 1
    assert parts.handles() == {}


def test_model_status(parts: Parts) -> None:
    api = parts.api
    both = [VersionStatus(2, State.AVAILABLE), VersionStatus(1, State.AVAILABLE)]
    assert api.model_status("hp") == both
    assert api.model_status("hp", version=1) == [VersionStatus(1, State.AVAILABLE)]
    assert api.model_status("hp", label="stable") == [VersionStatus(1, State.AVAILABLE)]
    assert api.model_status("hp", label="canary") == [VersionStatus(2, State.AVAILABLE)]
    for call, code, message in [
        (
            lambda: api.model_status("nope"),
            Code.NOT_FOUND,
            "Could not find any versions of model nope",
        ),
        (lambda: api.model_status("hp", 7), Code.NOT_FOUND, "Could not find version 7 of model hp"),
        (
            lambda: api.model_status("hp", label="gold"),
            Code.INVALID_ARGUMENT,
            "Unrecognized servable version label: gold",
        ),
    ]:
        error = raised(call)
        assert (error.code, error.message) == (code, message)


def test_reload_config_removes_relabels_and_reports_failures(parts: Parts) -> None:
    api, base = parts.api, parts.base
    api.reload_config([parts.config(stable=2)])
    assert parts.table.labels("hp") == {"stable": 2}
    with api.resolve(ModelSpec("hp", label="stable")) as resolved:
        assert resolved.version == 2
    (base / "bad" / "1").mkdir(parents=True)
    (base / "bad" / "1" / "broken").write_text("cannot read the fake weights")
    bad = ModelConfig("bad", str(base / "bad"), model_platform="fake")
    with pytest.raises(ModelFailures) as caught:
        api.reload_config([parts.config(), bad])
    assert (caught.value.code, caught.value.message) == (
        Code.UNKNOWN,
        "1 model(s) did not become available: model bad failed to load: "
        "RuntimeError: cannot read the fake weights",
    )
    [status] = api.model_status("bad")
    assert (status.version, status.state) == (1, State.END)
    assert status.error is not None
    assert (status.error.code, status.error.message) == (
        Code.UNKNOWN,
        "RuntimeError: cannot read the fake weights",
    )
    api.reload_config([])  # nothing configured: every version unloads
    assert parts.manager.wait_until_idle(timeout=30)
    assert parts.table.models() == []
    assert parts.servable(1).unloaded and parts.servable(2).unloaded
    assert [s.state for s in api.model_status("hp")] == [State.END, State.END]


# --- Classify, Regress, MultiInference -----------------------------------------------------------

EXAMPLES = [example(1.0), example(4.0)]


@pytest.fixture()
def tasks(parts: Parts) -> Tasks:
    return Tasks(parts.api)


def test_classify(tasks: Tasks, parts: Parts) -> None:
    answered, result = tasks.classify(ModelSpec("hp", signature_name="classify_x"), EXAMPLES)
    assert answered == Served("hp", 2, "classify_x")
    assert result == Classifications([[(b"x", 1.0), (b"y", 3.5)], [(b"x", 4.0), (b"y", 5.0)]])
    assert parts.servable(2).runs == [("classify_x", ("classes", "scores"))]


def test_regress_by_label(tasks: Tasks) -> None:
    answered, result = tasks.regress(
        ModelSpec("hp", label="stable", signature_name="regress_x"), EXAMPLES
    )
    assert answered == Served("hp", 1, "regress_x")
    assert result == Regressions([2.5, 4.0])


def test_multi_inference(tasks: Tasks) -> None:
    results = tasks.multi_inference(
        [
            (ModelSpec("hp", version=1, signature_name="classify_x"), CLASSIFY_METHOD),
            (ModelSpec("hp", version=1, signature_name="regress_x"), REGRESS_METHOD),
        ],
        EXAMPLES,
    )
    assert results == [
        (
            Served("hp", 1, "classify_x"),
            Classifications([[(b"x", 1.0), (b"y", 2.5)], [(b"x", 4.0), (b"y", 4.0)]]),
        ),
        (Served("hp", 1, "regress_x"), Regressions([2.5, 4.0])),
    ]


def classify(signature: str) -> tuple[ModelSpec, str]:
    return ModelSpec("hp", signature_name=signature), CLASSIFY_METHOD


def regress(signature: str, model: str = "hp") -> tuple[ModelSpec, str]:
    return ModelSpec(model, signature_name=signature), REGRESS_METHOD


@pytest.mark.parametrize(
    ("call", "code", "message"),
    [
        (
            lambda t: t.classify(ModelSpec("nope"), EXAMPLES),
            Code.NOT_FOUND,
            "Servable not found for request: Latest(nope)",
        ),
        (
            lambda t: t.classify(ModelSpec("hp", signature_name="nope"), EXAMPLES),
            Code.INVALID_ARGUMENT,
            "No signature was found with the name: nope",
        ),
        (
            lambda t: t.regress(ModelSpec("hp", signature_name="classify_x"), EXAMPLES),
            Code.INVALID_ARGUMENT,
            "Expected one output Tensor.",
        ),
        (
            lambda t: t.classify(ModelSpec("hp", signature_name="classify_x"), []),
            Code.INVALID_ARGUMENT,
            "Input is empty.",
        ),
        (
            lambda t: t.multi_inference(
                [classify("classify_x"), regress("regress_x", "other")], EXAMPLES
            ),
            Code.INVALID_ARGUMENT,
            "All ModelSpecs in a MultiInferenceRequest must access the same model name.",
        ),
        (
            lambda t: t.multi_inference(
                [classify("classify_x"), regress("regress_x", "")], EXAMPLES
            ),
            Code.INVALID_ARGUMENT,
            "Found ModelSpec with an empty model name.",
        ),
        (
            lambda t: t.multi_inference([classify("classify_x"), classify("classify_x")], EXAMPLES),
            Code.INVALID_ARGUMENT,
            "Duplicate evaluation of signature: classify_x",
        ),
        (
            lambda t: t.multi_inference([classify("classify_x"), regress("nope")], EXAMPLES),
            Code.INVALID_ARGUMENT,
            "Requested signature not found in model graph: nope",
        ),
        (
            lambda t: t.multi_inference(
                [(ModelSpec("hp", signature_name="regress_x"), PREDICT_METHOD)], EXAMPLES
            ),
            Code.UNIMPLEMENTED,
            "Unsupported signature method_name: tensorflow/serving/predict",
        ),
        (
            lambda t: t.multi_inference([regress("regress_x")], []),
            Code.INVALID_ARGUMENT,
            "Input is empty.",
        ),
    ],
)
def test_task_errors_run_nothing_and_release(
    tasks: Tasks,
    parts: Parts,
    call,
    code: Code,
    message: str,  # type: ignore[no-untyped-def]
) -> None:
    error = raised(call, tasks)
    assert (error.code, error.message) == (code, message)
    assert parts.servable(2).runs == []
    assert parts.handles() == {}


def test_classify_on_a_predict_signature_names_the_signature(tasks: Tasks) -> None:
    error = raised(tasks.classify, ModelSpec("hp"), EXAMPLES)
    assert error.code == Code.INVALID_ARGUMENT
    assert error.message.startswith("No classification inputs found in SignatureDef: ")
    assert 'key: "x"' in error.message and "tensorflow/serving/predict" in error.message


def test_method_names_are_checked_for_tasks_when_asked(parts: Parts) -> None:
    checking = Tasks(parts.api, check_method_names=True)
    error = raised(checking.classify, ModelSpec("hp", signature_name="regress_x"), EXAMPLES)
    assert (error.code, error.message) == (
        Code.INVALID_ARGUMENT,
        "Expected classification signature method_name to be tensorflow/serving/classify. "
        "Was: tensorflow/serving/regress",
    )
    # Unchecked, a regress signature classifies: its one output is neither classes nor scores.
    error = raised(Tasks(parts.api).classify, ModelSpec("hp", signature_name="regress_x"), EXAMPLES)
    assert error.message.startswith(
        'Expected classification signature outputs to contain at least one of "classes" or '
        '"scores". Signature was: '
    )
