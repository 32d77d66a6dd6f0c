"""The filesystem source and the poller."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path

import pytest

from fastserve.core.policies import Latest
from fastserve.core.sources import FileSystemSource, ModelSource, SourcePoller, parse_version
from fastserve.errors import Code, ServingError
from fastserve.servables.python import PythonLoader


@pytest.mark.parametrize(
    ("name", "version"),
    [
        ("1", 1),
        ("00000123", 123),
        ("9223372036854775807", 2**63 - 1),
        ("-1", None),
        ("1a", None),
        ("", None),
        ("9223372036854775808", None),
        (" 1", None),
        ("+1", None),
    ],
)
def test_parse_version(name: str, version: int | None) -> None:
    assert parse_version(name) == version


def test_lists_integer_folders_only(tmp_path: Path) -> None:
    for name in ("1", "0002", "tmp", ".3", "10"):
        (tmp_path / name).mkdir()
    (tmp_path / "7").write_text("a file, not a version")
    versions = FileSystemSource("m", str(tmp_path)).list_versions()
    assert versions == {1: str(tmp_path / "1"), 2: str(tmp_path / "0002"), 10: str(tmp_path / "10")}


def test_missing_base_path(tmp_path: Path) -> None:
    with pytest.raises(ServingError) as caught:
        FileSystemSource("m", str(tmp_path / "nope")).list_versions()
    assert caught.value.code == Code.NOT_FOUND
    assert caught.value.message == f"Could not find base path {tmp_path / 'nope'} for servable m"


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[int, str]]] = []
        self.changed = threading.Event()
        self._condition = threading.Condition()

    def __call__(self, model: str, versions: Mapping[int, str], loader: object) -> None:
        with self._condition:
            self.calls.append((model, dict(versions)))
            self._condition.notify_all()
        self.changed.set()

    def wait_for(self, call: tuple[str, dict[int, str]], timeout: float = 30) -> bool:
        """True once the latest call is `call`."""
        with self._condition:
            return self._condition.wait_for(lambda: self.calls[-1:] == [call], timeout)


def test_poller_reports_aspired_versions_and_problems(tmp_path: Path) -> None:
    (tmp_path / "a" / "1").mkdir(parents=True)
    (tmp_path / "a" / "2").mkdir()
    (tmp_path / "empty").mkdir()
    recorder = Recorder()
    models = [
        ModelSource("a", FileSystemSource("a", str(tmp_path / "a")), Latest(), PythonLoader()),
        ModelSource(
            "empty", FileSystemSource("empty", str(tmp_path / "empty")), Latest(), PythonLoader()
        ),
        ModelSource(
            "gone", FileSystemSource("gone", str(tmp_path / "gone")), Latest(), PythonLoader()
        ),
    ]
    poller = SourcePoller(models, recorder, poll_wait_seconds=0)
    problems = poller.start()
    assert recorder.calls == [("a", {2: str(tmp_path / "a" / "2")}), ("empty", {})]
    assert set(problems) == {"empty", "gone"}
    assert problems["empty"].message == (
        f"No versions of servable empty found under base path {tmp_path / 'empty'}"
    )


def test_poller_polls_on_its_period_and_never_when_negative(tmp_path: Path) -> None:
    (tmp_path / "a" / "1").mkdir(parents=True)
    source = [
        ModelSource("a", FileSystemSource("a", str(tmp_path / "a")), Latest(), PythonLoader())
    ]
    recorder = Recorder()
    poller = SourcePoller(source, recorder, poll_wait_seconds=1)
    poller.start()
    (tmp_path / "a" / "2").mkdir()
    assert recorder.wait_for(("a", {2: str(tmp_path / "a" / "2")}))
    poller.stop()
    never = Recorder()
    assert SourcePoller(source, never, poll_wait_seconds=-1).start() == {}
    assert never.calls == []


class GatedSource:
    """A Source (the contract) whose listing blocks until the test opens its gate."""

    def __init__(self, path: Path) -> None:
        self.base_path = str(path)
        self.entered = threading.Event()
        self.gate = threading.Event()

    def list_versions(self) -> dict[int, str]:
        self.entered.set()
        assert self.gate.wait(30)
        return {1: self.base_path}


def test_set_models_waits_for_a_poll_in_progress(tmp_path: Path) -> None:
    """A model dropped from the config cannot be re-aspired by a poll that began before."""
    gated = GatedSource(tmp_path)
    recorder = Recorder()
    poller = SourcePoller(
        [ModelSource("b", gated, Latest(), PythonLoader())], recorder, poll_wait_seconds=0
    )
    polling = threading.Thread(target=poller.poll_once)
    polling.start()
    assert gated.entered.wait(30)
    replaced = threading.Event()
    replacing = threading.Thread(target=lambda: (poller.set_models([]), replaced.set()))
    replacing.start()
    assert not replaced.wait(0.3)  # still polling b: set_models waits
    gated.gate.set()
    polling.join(30)
    replacing.join(30)
    assert replaced.is_set()
    assert recorder.calls == [("b", {1: str(tmp_path)})]
    poller.poll_once()
    assert recorder.calls == [("b", {1: str(tmp_path)})]  # b is no longer polled
