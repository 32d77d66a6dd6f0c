"""The C++ servable table, driven from Python: resolution, labels, handles, concurrency."""

from __future__ import annotations

import random
import threading
import time
import weakref

import pytest

from fastserve.core.table import ServableHandle, ServableTable
from fastserve.errors import Code, ServingError


class Servable:
    def __init__(self, name: str) -> None:
        self.name = name


@pytest.fixture()
def table() -> ServableTable:
    table = ServableTable()
    for version in (1, 2, 10):
        table.add("m", version, Servable(f"m{version}"))
    table.add("other", 5, Servable("other5"))
    return table


def test_latest_is_the_highest_version(table: ServableTable) -> None:
    with table.acquire("m") as handle:
        assert (handle.model, handle.version, handle.servable.name) == ("m", 10, "m10")


def test_specific_version(table: ServableTable) -> None:
    with table.acquire("m", version=2) as handle:
        assert handle.servable.name == "m2"


def test_labels_resolve_to_their_version(table: ServableTable) -> None:
    table.set_labels("m", {"stable": 1, "canary": 2, "future": 99})
    with table.acquire("m", label="stable") as handle:
        assert handle.version == 1
    with table.acquire("m", label="canary") as handle:
        assert handle.version == 2
    assert table.labels("m") == {"stable": 1, "canary": 2, "future": 99}


@pytest.mark.parametrize(
    ("model", "version", "label", "code", "message"),
    [
        ("x", None, None, Code.NOT_FOUND, "Servable not found for request: Latest(x)"),
        ("x", 3, None, Code.NOT_FOUND, "Servable not found for request: Specific(x, 3)"),
        ("m", 3, None, Code.NOT_FOUND, "Servable not found for request: Specific(m, 3)"),
        ("m", None, "gold", Code.INVALID_ARGUMENT, "Unrecognized servable version label: gold"),
        ("x", None, "gold", Code.INVALID_ARGUMENT, "Unrecognized servable version label: gold"),
        ("m", None, "future", Code.NOT_FOUND, "Servable not found for request: Specific(m, 99)"),
    ],
)
def test_misses_are_worded_as_tf_serving_words_them(
    table: ServableTable,
    model: str,
    version: int | None,
    label: str | None,
    code: Code,
    message: str,
) -> None:
    table.set_labels("m", {"future": 99})
    with pytest.raises(ServingError) as caught:
        table.acquire(model, version, label)
    assert (caught.value.code, caught.value.message) == (code, message)


def test_add_twice_is_refused_and_remove_missing_is_false(table: ServableTable) -> None:
    assert table.add("m", 1, Servable("again")) is False
    with table.acquire("m", 1) as handle:
        assert handle.servable.name == "m1"
    assert table.remove("m", 77) is False
    assert table.remove("nope", 1) is False


def test_removed_version_is_invisible_and_latest_falls_back(table: ServableTable) -> None:
    assert table.remove("m", 10)
    assert table.versions("m") == [1, 2]
    with table.acquire("m") as handle:
        assert handle.version == 2
    with pytest.raises(ServingError):
        table.acquire("m", 10)
    assert table.wait_until_released("m", 10, timeout=0) is True


def test_models_lists_models_with_versions(table: ServableTable) -> None:
    assert table.models() == ["m", "other"]
    table.remove("other", 5)
    assert table.models() == ["m"]


def test_a_held_handle_delays_wait_until_released() -> None:
    table = ServableTable()
    table.add("m", 1, Servable("m1"))
    handle = table.acquire("m")
    assert table.handle_count("m", 1) == 1
    assert table.remove("m", 1)
    # The version is out of the table but the handle keeps it alive.
    assert table.handle_count("m", 1) == 1
    assert table.wait_until_released("m", 1, timeout=0.2) is False
    waiting, released = threading.Event(), threading.Event()

    def waiter() -> None:
        waiting.set()
        table.wait_until_released("m", 1)
        released.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    assert waiting.wait(5)
    # Held: the waiter cannot have returned, wherever it is (the timed wait above showed that
    # the wait itself blocks).
    assert not released.is_set()
    assert handle.servable.name == "m1"  # still usable while held
    handle.release()
    thread.join(5)
    assert released.is_set()
    assert table.handle_count("m", 1) == 0


def test_wait_until_released_does_not_hold_the_gil() -> None:
    table = ServableTable()
    table.add("m", 1, Servable("m1"))
    handle = table.acquire("m")
    table.remove("m", 1)
    progress = []

    def counter() -> None:
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            progress.append(1)

    thread = threading.Thread(target=counter)
    thread.start()
    assert table.wait_until_released("m", 1, timeout=0.3) is False
    thread.join()
    handle.release()
    assert len(progress) > 1000  # the other thread ran while we waited


def test_released_handle_refuses_access_and_release_is_idempotent(table: ServableTable) -> None:
    handle = table.acquire("m")
    handle.release()
    handle.release()
    assert handle.released
    with pytest.raises(ValueError, match="released"):
        _ = handle.servable


def test_dropping_a_handle_releases_it() -> None:
    table = ServableTable()
    table.add("m", 1, Servable("m1"))
    handle = table.acquire("m")
    table.remove("m", 1)
    del handle
    assert table.wait_until_released("m", 1, timeout=1) is True


def test_servable_is_freed_once_removed_and_released() -> None:
    table = ServableTable()
    servable = Servable("m1")
    ref = weakref.ref(servable)
    table.add("m", 1, servable)
    del servable
    handle = table.acquire("m")
    table.remove("m", 1)
    assert ref() is not None
    handle.release()
    assert table.wait_until_released("m", 1)
    assert ref() is None


def test_version_re_added_while_old_entry_drains() -> None:
    table = ServableTable()
    table.add("m", 1, Servable("old"))
    old = table.acquire("m")
    table.remove("m", 1)
    table.add("m", 1, Servable("new"))
    with table.acquire("m", 1) as handle:
        assert handle.servable.name == "new"
    assert table.wait_until_released("m", 1, timeout=0.1) is False  # the old one is still held
    old.release()
    assert table.wait_until_released("m", 1, timeout=1) is True


def test_handle_type_is_exported() -> None:
    table = ServableTable()
    table.add("m", 1, Servable("m1"))
    with table.acquire("m") as handle:
        assert isinstance(handle, ServableHandle)


def test_many_readers_while_versions_are_added_and_removed() -> None:
    """Readers always find a version that is in the table and never see a freed servable."""
    table = ServableTable()
    table.add("m", 0, Servable("m0"))  # version 0 stays for the whole run
    stop = threading.Event()
    errors: list[BaseException] = []
    lookups = [0] * 8

    def reader(index: int) -> None:
        rng = random.Random(index)
        try:
            while not stop.is_set():
                version = rng.choice([None, 0, 1, 2, 3])
                try:
                    handle = table.acquire("m", version)
                except ServingError as error:
                    assert error.code == Code.NOT_FOUND and version not in (None, 0)
                    continue
                try:
                    assert handle.servable.name == f"m{handle.version}"
                    if version is not None:
                        assert handle.version == version
                finally:
                    handle.release()
                lookups[index] += 1
        except BaseException as error:
            errors.append(error)

    def writer() -> None:
        rng = random.Random(99)
        try:
            for _ in range(300):
                version = rng.choice([1, 2, 3])
                if table.add("m", version, Servable(f"m{version}")):
                    continue
                table.remove("m", version)
                assert table.wait_until_released("m", version, timeout=10)
        except BaseException as error:
            errors.append(error)

    readers = [threading.Thread(target=reader, args=(i,)) for i in range(8)]
    for thread in readers:
        thread.start()
    writing = threading.Thread(target=writer)
    writing.start()
    writing.join(120)
    stop.set()
    for thread in readers:
        thread.join(30)
    assert not errors, errors[:3]
    assert all(count > 0 for count in lookups)
    for version in table.versions("m"):
        assert table.handle_count("m", version) == 0
