"""observability/health.py: liveness and readiness over a real manager and model config, with a
fake of the Loader contract. (Named for its unit's path: tests/e2e/test_health.py is the
end-to-end test of the probes.)"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fastserve.core.manager import Manager, ManagerOptions
from fastserve.core.models import ModelConfig, ModelFailures, Models
from fastserve.core.table import ServableTable
from fastserve.observability.health import Health
from support.fakes import FakeLoader


class Heard:
    """A health listener: records what `probe` answers at each call."""

    def __init__(self, probe: Callable[[], bool]) -> None:
        self.answers: list[bool] = []
        self._probe = probe
        self._condition = threading.Condition()

    def __call__(self) -> None:
        answer = self._probe()
        with self._condition:
            self.answers.append(answer)
            self._condition.notify_all()

    def heard(self, answer: bool, after: int = 0, timeout: float = 30) -> bool:
        """True once a call (after the first `after`) has seen `answer`."""
        with self._condition:
            return self._condition.wait_for(lambda: answer in self.answers[after:], timeout)


@dataclass
class Parts:
    base: Path
    manager: Manager
    models: Models
    health: Health

    def model(self, name: str, *, broken: bool = False) -> ModelConfig:
        version = self.base / name / "1"
        version.mkdir(parents=True)
        if broken:
            (version / "broken").write_text("no weights")
        return ModelConfig(name, str(self.base / name), model_platform="fake")


@pytest.fixture()
def parts(tmp_path: Path) -> Iterator[Parts]:
    table = ServableTable()
    health: list[Health] = []
    manager = Manager(
        table,
        ManagerOptions(max_num_load_retries=0, load_retry_interval=0.0),
        on_transition=lambda *change: health[0].changed(*change),
    )
    loader = FakeLoader()
    models = Models(table, manager, poll_wait_seconds=0, loader=lambda _: loader)
    health.append(Health(manager, models))
    yield Parts(tmp_path, manager, models, health[0])
    manager.stop()


def test_nothing_configured_is_ready(parts: Parts) -> None:
    assert parts.health.configured() == []
    assert parts.health.unready() == {}
    assert parts.health.ready()
    assert not parts.health.model_ready("a")


def test_ready_once_every_configured_model_has_a_version_available(parts: Parts) -> None:
    parts.models.apply([parts.model("a"), parts.model("b")])
    assert parts.health.configured() == ["a", "b"]
    assert parts.health.ready() and parts.health.unready() == {}
    assert parts.health.model_ready("a") and parts.health.model_ready("b")
    assert not parts.health.model_ready("c")


def test_a_model_without_an_available_version_is_not_ready(parts: Parts) -> None:
    with pytest.raises(ModelFailures):
        parts.models.apply([parts.model("a"), parts.model("bad", broken=True)])
    assert parts.health.unready() == {"bad": "no version is AVAILABLE"}
    assert not parts.health.ready()
    assert parts.health.model_ready("a") and not parts.health.model_ready("bad")
    parts.models.apply([ModelConfig("a", str(parts.base / "a"), model_platform="fake")])
    assert parts.health.ready()  # the broken model is no longer configured


def test_shutting_down_is_never_ready(parts: Parts) -> None:
    parts.models.apply([parts.model("a")])
    heard = Heard(parts.health.ready)
    parts.health.add_listener(heard)
    parts.health.start_stopping()
    assert parts.health.stopping
    assert parts.health.unready() == {"server": "shutting down"}
    assert not parts.health.ready() and not parts.health.model_ready("a")
    assert heard.heard(False)


def test_listeners_hear_version_transitions(parts: Parts) -> None:
    heard = Heard(lambda: parts.health.model_ready("a"))
    parts.health.add_listener(heard)
    parts.models.apply([parts.model("a")])
    assert heard.heard(True)  # told once the version was AVAILABLE
    told = heard.answers.index(True) + 1
    parts.models.apply([])
    assert heard.heard(False, after=told)  # and again once it was not
