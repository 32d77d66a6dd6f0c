"""core/models.py: applying a model config list, at start-up and on reload, with the real
poller, manager and table over a fake of the Loader contract."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fastserve.core.manager import Manager, ManagerOptions
from fastserve.core.models import ModelConfig, ModelFailures, Models
from fastserve.core.policies import All, Latest
from fastserve.core.table import ServableTable
from fastserve.errors import Code, ServingError
from fastserve.types import State
from support.fakes import FakeLoader


@dataclass
class Parts:
    base: Path
    table: ServableTable
    manager: Manager
    loader: FakeLoader
    changes: list[int] = field(default_factory=list)
    models: Models = field(init=False)

    def versions(self, name: str, *numbers: int) -> str:
        for number in numbers:
            (self.base / name / str(number)).mkdir(parents=True, exist_ok=True)
        return str(self.base / name)

    def states(self, name: str) -> dict[int, State]:
        return {s.version: s.state for s in self.manager.statuses(name)}


def make(tmp_path: Path, allow_unavailable_labels: bool = False) -> Parts:
    table = ServableTable()
    manager = Manager(table, ManagerOptions(max_num_load_retries=0, load_retry_interval=0.0))
    parts = Parts(tmp_path, table, manager, FakeLoader())
    parts.models = Models(
        table,
        manager,
        poll_wait_seconds=0,
        allow_version_labels_for_unavailable_models=allow_unavailable_labels,
        loader=lambda _: parts.loader,
        on_change=lambda: parts.changes.append(len(parts.models.config)),
    )
    return parts


@pytest.fixture()
def parts(tmp_path: Path) -> Iterator[Parts]:
    parts = make(tmp_path)
    yield parts
    parts.models.stop()
    parts.manager.stop()


def config(base: str, name: str = "a", **settings: object) -> ModelConfig:
    return ModelConfig(name, base, model_platform="fake", **settings)  # type: ignore[arg-type]


def test_apply_serves_each_model_by_its_policy_and_labels(parts: Parts) -> None:
    a = parts.versions("a", 1, 2, 3)
    b = parts.versions("b", 1, 2)
    parts.models.apply(
        [config(a, version_policy=All(), version_labels={"stable": 1}), config(b, "b")]
    )
    # apply() returned: every version it waited for is served, the labels are set.
    assert parts.table.versions("a") == [1, 2, 3]
    assert parts.table.versions("b") == [2]  # Latest: the highest only
    assert parts.table.labels("a") == {"stable": 1}
    assert parts.models.names == frozenset({"a", "b"})
    assert [m.name for m in parts.models.config] == ["a", "b"]
    assert parts.changes == [2]


def test_reload_removes_models_and_applies_new_policies(parts: Parts) -> None:
    a = parts.versions("a", 1, 2)
    b = parts.versions("b", 1)
    parts.models.apply([config(a, version_policy=All()), config(b, "b")])
    parts.models.apply([config(a, version_policy=Latest())])
    assert parts.manager.wait_until_idle(timeout=30)
    assert parts.states("a") == {2: State.AVAILABLE, 1: State.END}
    assert parts.states("b") == {1: State.END}
    assert parts.table.models() == ["a"]
    unloaded = {path for path, servable in parts.loader.loaded.items() if servable.unloaded}
    assert unloaded == {f"{a}/1", f"{b}/1"}
    assert parts.models.names == frozenset({"a"})


def test_failures_name_every_failed_model_and_the_rest_are_served(parts: Parts) -> None:
    good = parts.versions("good", 1)
    bad = parts.versions("bad", 1)
    (parts.base / "bad" / "1" / "broken").write_text("no weights")
    (parts.base / "empty").mkdir()
    with pytest.raises(ModelFailures) as caught:
        parts.models.apply(
            [
                config(str(parts.base / "missing"), "missing"),
                config(bad, "bad"),
                config(good, "good"),
                config(str(parts.base / "empty"), "empty"),
            ]
        )
    failures = caught.value.failures
    assert list(failures) == ["missing", "bad", "empty"]  # in config order
    assert (failures["missing"].code, failures["missing"].message) == (
        Code.NOT_FOUND,
        f"Could not find base path {parts.base / 'missing'} for servable missing",
    )
    assert (failures["bad"].code, failures["bad"].message) == (
        Code.UNKNOWN,
        "RuntimeError: no weights",
    )
    assert (failures["empty"].code, failures["empty"].message) == (
        Code.NOT_FOUND,
        f"No versions of servable empty found under base path {parts.base / 'empty'}",
    )
    assert caught.value.code == Code.UNKNOWN
    assert caught.value.message == (
        "3 model(s) did not become available: "
        f"model missing failed to load: {failures['missing'].message}; "
        "model bad failed to load: RuntimeError: no weights; "
        f"model empty failed to load: {failures['empty'].message}"
    )
    assert parts.table.versions("good") == [1]


@pytest.mark.parametrize(
    ("second", "message"),
    [
        (
            lambda base: [config(base), config(base)],
            "Illegal to list model a multiple times in config list",
        ),
        (
            lambda base: [ModelConfig("a", base, model_platform="other")],
            "Illegal to change a model's platform. For model a platform was fake and new "
            "platform requested is other",
        ),
    ],
)
def test_refused_configs_change_nothing(parts: Parts, second, message: str) -> None:  # type: ignore[no-untyped-def]
    a = parts.versions("a", 1)
    parts.models.apply([config(a, version_labels={"stable": 1})])
    with pytest.raises(ServingError) as caught:
        parts.models.apply(second(a))
    assert (caught.value.code, caught.value.message) == (Code.INVALID_ARGUMENT, message)
    assert [m.model_platform for m in parts.models.config] == ["fake"]
    assert parts.table.labels("a") == {"stable": 1}
    assert parts.changes == [1]


def test_a_label_may_name_only_an_available_version(parts: Parts) -> None:
    a = parts.versions("a", 1)
    with pytest.raises(ServingError) as caught:
        parts.models.apply([config(a, version_labels={"stable": 1, "next": 2})])
    assert (caught.value.code, caught.value.message) == (
        Code.FAILED_PRECONDITION,
        "Request to assign label to version 2 of model a, which is not currently available "
        "for inference",
    )
    assert parts.table.labels("a") == {}  # none of the labels applied
    assert parts.table.versions("a") == [1]  # the model itself is served


def test_labels_for_unavailable_versions_when_allowed(tmp_path: Path) -> None:
    """TF Serving's rule: a new label may name an unavailable version; an existing label may
    not move to one."""
    parts = make(tmp_path, allow_unavailable_labels=True)
    try:
        a = parts.versions("a", 1)
        parts.models.apply([config(a, version_labels={"stable": 1, "next": 2})])
        assert parts.table.labels("a") == {"stable": 1, "next": 2}
        with pytest.raises(ServingError) as caught:
            parts.models.apply([config(a, version_labels={"stable": 3, "next": 2})])
        assert caught.value.message == (
            "Request to assign label to version 3 of model a, which is not currently "
            "available for inference"
        )
        assert parts.table.labels("a") == {"stable": 1, "next": 2}
    finally:
        parts.manager.stop()


def test_a_label_waits_for_the_version_it_names_to_load(parts: Parts) -> None:
    """apply() waits for labelled versions too, not only for one version of each model."""
    a = parts.versions("a", 1, 2, 3)
    parts.models.apply([config(a, version_policy=All(), version_labels={"old": 1, "new": 3})])
    assert parts.table.labels("a") == {"old": 1, "new": 3}
    assert parts.states("a") == {3: State.AVAILABLE, 2: State.AVAILABLE, 1: State.AVAILABLE}
