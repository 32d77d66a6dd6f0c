"""The manager's lifecycle with real python servables in real version folders."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from fastserve.core.manager import Manager, ManagerOptions
from fastserve.core.table import ServableTable
from fastserve.errors import Code, ServingError
from fastserve.servables.base import LoadOptions
from fastserve.servables.pipeline import PipelineLoader
from fastserve.servables.python import PythonLoader
from fastserve.types import State
from support import models, tables

# A model whose load fails while `failures` (a file beside model.py) counts down, blocks while
# a gate named in `gate` is closed, and writes `unloaded` when it is unloaded.
MODEL = """
    import os

    from fastserve.servables.python import signature, tensor

    HERE = None


    def load(path):
        global HERE
        HERE = path
        gate = os.path.join(path, "gate")
        if os.path.exists(gate):
            from support import gates
            gates.wait(open(gate).read())
        failures = os.path.join(path, "failures")
        if os.path.exists(failures):
            left = int(open(failures).read())
            if left > 0:
                open(failures, "w").write(str(left - 1))
                raise RuntimeError(f"failing on purpose, {left} to go")


    def unload():
        open(os.path.join(HERE, "unloaded"), "w").write("yes")


    @signature(inputs={"x": tensor("float32", [-1])}, outputs={"y": tensor("float32", [-1])})
    def serving_default(x):
        return {"y": x}
"""


def version(base: Path, number: int, *, failures: int = 0, gate: str = "") -> str:
    path = base / str(number)
    models.python_model(path, MODEL)
    if failures:
        (path / "failures").write_text(str(failures))
    if gate:
        (path / "gate").write_text(gate)
    return str(path)


class Transitions:
    def __init__(self) -> None:
        self.seen: list[tuple[str, int, State]] = []

    def __call__(self, model: str, number: int, state: State, error: object, took: float) -> None:
        self.seen.append((model, number, state))

    def of(self, model: str, number: int) -> list[State]:
        return [s for m, v, s in self.seen if (m, v) == (model, number)]


@pytest.fixture()
def table() -> ServableTable:
    return ServableTable()


def make_manager(
    table: ServableTable, transitions: Transitions | None = None, **options: object
) -> Manager:
    settings = {"max_num_load_retries": 0, "load_retry_interval": 0.0, **options}
    return Manager(table, ManagerOptions(**settings), transitions)  # type: ignore[arg-type]


LOADER = PythonLoader()


def test_load_publishes_and_reports_every_state(table: ServableTable, tmp_path: Path) -> None:
    transitions = Transitions()
    manager = make_manager(table, transitions)
    manager.set_aspired_versions("m", {1: version(tmp_path, 1)}, LOADER)
    assert manager.wait_until_settled(["m"], timeout=30) == {"m": None}
    assert table.versions("m") == [1]
    assert transitions.of("m", 1) == [State.START, State.LOADING, State.AVAILABLE]
    manager.stop()
    assert transitions.of("m", 1)[-2:] == [State.UNLOADING, State.END]
    assert (tmp_path / "1" / "unloaded").exists()
    assert table.versions("m") == []


def test_new_version_replaces_old_only_after_it_loads(table: ServableTable, tmp_path: Path) -> None:
    from support import gates

    manager = make_manager(table)
    manager.set_aspired_versions("m", {1: version(tmp_path, 1)}, LOADER)
    manager.wait_until_settled(["m"], timeout=30)
    gate = gates.close("v2")
    manager.set_aspired_versions("m", {2: version(tmp_path, 2, gate="v2")}, LOADER)
    try:
        assert gates.wait_for_waiter("v2", timeout=30)
        # Version 2 is loading: version 1 must still serve.
        assert manager.status("m", 2).state == State.LOADING
        assert manager.status("m", 1).state == State.AVAILABLE
        with table.acquire("m") as handle:
            assert handle.version == 1
    finally:
        gate.set()
    assert manager.wait_until_idle(timeout=30)
    assert [s.state for s in manager.statuses("m")] == [State.AVAILABLE, State.END]
    assert table.versions("m") == [2]
    manager.stop()


def test_failed_load_retries_then_ends_with_the_error(table: ServableTable, tmp_path: Path) -> None:
    manager = make_manager(table, max_num_load_retries=2)
    manager.set_aspired_versions("m", {1: version(tmp_path, 1, failures=10)}, LOADER)
    outcome = manager.wait_until_settled(["m"], timeout=30)
    error = outcome["m"]
    assert isinstance(error, ServingError)
    assert error.code == Code.UNKNOWN
    assert error.message == "RuntimeError: failing on purpose, 8 to go"
    assert (tmp_path / "1" / "failures").read_text() == "7"  # three attempts: 10, 9, 8
    status = manager.status("m", 1)
    assert (status.state, status.error) == (State.END, error)
    manager.stop()


def test_load_succeeds_within_its_retries(table: ServableTable, tmp_path: Path) -> None:
    manager = make_manager(table, max_num_load_retries=2)
    manager.set_aspired_versions("m", {1: version(tmp_path, 1, failures=2)}, LOADER)
    assert manager.wait_until_settled(["m"], timeout=30) == {"m": None}
    manager.stop()


def test_failed_new_version_leaves_old_serving(table: ServableTable, tmp_path: Path) -> None:
    manager = make_manager(table)
    manager.set_aspired_versions("m", {1: version(tmp_path, 1)}, LOADER)
    manager.wait_until_settled(["m"], timeout=30)
    manager.set_aspired_versions("m", {2: version(tmp_path, 2, failures=1)}, LOADER)
    assert manager.wait_until_idle(timeout=30)
    assert [(s.version, s.state) for s in manager.statuses("m")] == [
        (2, State.END),
        (1, State.AVAILABLE),
    ]
    with table.acquire("m") as handle:
        assert handle.version == 1
    # Asking again for the same failed version does not reload it...
    manager.set_aspired_versions("m", {2: str(tmp_path / "2")}, LOADER)
    assert manager.status("m", 2).state == State.END
    # ...but once it was dropped and comes back, it is tried afresh (and now loads).
    manager.set_aspired_versions("m", {}, LOADER)
    manager.set_aspired_versions("m", {2: str(tmp_path / "2")}, LOADER)
    assert manager.wait_until_idle(timeout=30)
    assert manager.status("m", 2).state == State.AVAILABLE
    manager.stop()


def test_unload_waits_for_handles(table: ServableTable, tmp_path: Path) -> None:
    manager = make_manager(table)
    manager.set_aspired_versions("m", {1: version(tmp_path, 1)}, LOADER)
    manager.wait_until_settled(["m"], timeout=30)
    handle = table.acquire("m")
    manager.remove_model("m")
    assert manager.wait_until_idle(timeout=0.5) is False
    assert manager.status("m", 1).state == State.UNLOADING
    assert not (tmp_path / "1" / "unloaded").exists()
    handle.release()
    assert manager.wait_until_idle(timeout=30)
    assert manager.status("m", 1).state == State.END
    assert (tmp_path / "1" / "unloaded").exists()
    manager.stop()


def test_unaspired_version_cancels_its_retries(table: ServableTable, tmp_path: Path) -> None:
    manager = make_manager(table, max_num_load_retries=5, load_retry_interval=3600.0)
    manager.set_aspired_versions("m", {1: version(tmp_path, 1, failures=10)}, LOADER)
    # The first attempt fails, then the manager would wait an hour before the next.
    while (tmp_path / "1" / "failures").read_text() == "10":
        threading.Event().wait(0.01)
    manager.set_aspired_versions("m", {}, LOADER)
    assert manager.wait_until_idle(timeout=30)
    status = manager.status("m", 1)
    assert status.state == State.END
    assert (tmp_path / "1" / "failures").read_text() == "9"  # no further attempt
    manager.stop()


def test_loads_run_in_parallel_on_load_threads(table: ServableTable, tmp_path: Path) -> None:
    from support import gates

    manager = make_manager(table, num_load_threads=2)
    gate = gates.close("pair")
    manager.set_aspired_versions("a", {1: version(tmp_path / "a", 1, gate="pair")}, LOADER)
    manager.set_aspired_versions("b", {1: version(tmp_path / "b", 1, gate="pair")}, LOADER)
    try:
        # Both loads block on the same gate at once: two load threads are busy.
        assert gates.wait_for_waiter("pair", count=2, timeout=30)
    finally:
        gate.set()
    assert manager.wait_until_settled(["a", "b"], timeout=30) == {"a": None, "b": None}
    manager.stop()


def test_statuses_of_unknown_model_and_version(table: ServableTable) -> None:
    manager = make_manager(table)
    with pytest.raises(ServingError, match="Could not find any versions of model m"):
        manager.statuses("m")
    with pytest.raises(ServingError, match="Could not find version 3 of model m"):
        manager.status("m", 3)
    manager.stop()


def test_a_version_waiting_for_a_load_thread_is_reported_start(
    table: ServableTable, tmp_path: Path
) -> None:
    from support import gates

    manager = make_manager(table, num_load_threads=1)
    gate = gates.close("busy")
    manager.set_aspired_versions("a", {1: version(tmp_path / "a", 1, gate="busy")}, LOADER)
    manager.set_aspired_versions("b", {1: version(tmp_path / "b", 1)}, LOADER)
    try:
        assert gates.wait_for_waiter("busy", timeout=30)
        assert manager.status("a", 1).state == State.LOADING
        assert manager.status("b", 1).state == State.START  # queued behind a's load
        # Dropped before its load began: it ends without ever loading.
        manager.set_aspired_versions("b", {}, LOADER)
        assert manager.status("b", 1).state == State.END
    finally:
        gate.set()
    assert manager.wait_until_idle(timeout=30)
    assert manager.status("a", 1).state == State.AVAILABLE
    assert manager.status("b", 1).state == State.END
    assert table.versions("b") == []
    manager.stop()


def test_settling_waits_for_the_versions_labels_name(table: ServableTable, tmp_path: Path) -> None:
    """Regression: a model counted as settled once any version was AVAILABLE, so labels on a
    version still loading were refused (a TF Serving config with specific {1, 2} and labels
    on both failed to start, depending on which load finished first)."""
    from support import gates

    manager = make_manager(table)
    gate = gates.close("v1")
    aspired = {2: version(tmp_path, 2), 1: version(tmp_path, 1, gate="v1")}
    manager.set_aspired_versions("m", aspired, LOADER)
    try:
        assert gates.wait_for_waiter("v1", timeout=30)  # 2 is loaded, 1 is loading
        assert manager.status("m", 2).state == State.AVAILABLE
        assert manager.wait_until_settled(["m"], timeout=30) == {"m": None}
        held = manager.wait_until_settled(["m"], timeout=0.2, versions={"m": [1, 2]})
        assert held["m"] is not None and held["m"].code == Code.DEADLINE_EXCEEDED
    finally:
        gate.set()
    assert manager.wait_until_settled(["m"], timeout=30, versions={"m": [1, 2]}) == {"m": None}
    assert manager.status("m", 1).state == State.AVAILABLE
    manager.stop()


def test_a_loader_is_told_the_name_of_the_model_it_loads(
    table: ServableTable, tmp_path: Path
) -> None:
    # A pipeline refuses a step calling its own model, whose name only the manager knows.
    folder = tables.pipeline(
        tmp_path / "1",
        "inputs: {x: {dtype: float32}}\noutputs: {y: {dtype: float32}}\n"
        "steps: [{model: selfish, outputs: [y]}]\n",
    )
    manager = make_manager(table, load_options=LoadOptions(resolve=table.acquire))
    manager.set_aspired_versions("selfish", {1: str(folder)}, PipelineLoader())
    error = manager.wait_until_settled(["selfish"], timeout=30)["selfish"]
    assert error is not None
    assert error.message == (
        f"{folder / 'pipeline.yaml'}: step 1 (model 'selfish'): a pipeline cannot call itself"
    )
    manager.stop()
