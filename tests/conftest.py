"""Shared fixtures: models built once per session, and a running server over them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support import tools
from support.server import ServerProcess
from support.store import ModelStore


def pytest_report_header() -> str:
    return tools.summary()


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> ModelStore:
    return ModelStore(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def repository(store: ModelStore, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model folder tree serving every kind of test model, with a YAML config."""
    root = tmp_path_factory.mktemp("repository")
    store.install(store.half_plus_two(2.0), root / "half_plus_two" / "1")
    store.install(store.half_plus_two(3.0), root / "half_plus_two" / "2")
    store.install(store.half_plus_two_tf2(2.0), root / "tf2" / "7")
    store.install(store.mixed(), root / "mixed" / "1")
    store.install(store.echo(1.0), root / "echo" / "3")
    (root / "models.yaml").write_text(
        """
models:
  - name: half_plus_two
    base_path: half_plus_two
    model_version_policy: {all: {}}
    version_labels: {stable: 1, canary: 2}
  - name: tf2
    base_path: tf2
  - name: mixed
    base_path: mixed
  - name: echo
    base_path: echo
    model_platform: python
"""
    )
    return root


@pytest.fixture(scope="session")
def server(repository: Path) -> Iterator[ServerProcess]:
    """One fastserve serving the repository for every read-only end-to-end test."""
    process = ServerProcess([f"--config={repository / 'models.yaml'}"]).ready()
    yield process
    code = process.terminate()
    assert code == 0, process.output


@pytest.fixture()
def start_server() -> Iterator[Callable[..., ServerProcess]]:
    """Starts fastserve processes for one test and stops whatever is still running after it."""
    started: list[ServerProcess] = []

    def start(*args: str, rest: bool = True, ready: bool = True) -> ServerProcess:
        process = ServerProcess(list(args), rest=rest)
        started.append(process)
        return process.ready() if ready else process

    yield start
    for process in started:
        process.kill()
