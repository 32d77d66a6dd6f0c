"""Version policies and the availability-preserving transition rule."""

from __future__ import annotations

import pytest

from fastserve.core.policies import Action, All, Latest, Specific, VersionView, next_action
from fastserve.types import State


def test_latest_picks_the_highest_versions() -> None:
    assert Latest().aspired([3, 10, 2]) == {10}
    assert Latest(2).aspired([3, 10, 2]) == {10, 3}
    assert Latest(5).aspired([1]) == {1}
    assert Latest().aspired([]) == set()
    with pytest.raises(ValueError):
        Latest(0)


def test_all_and_specific() -> None:
    assert All().aspired([1, 2, 3]) == {1, 2, 3}
    assert Specific(frozenset({2, 7})).aspired([1, 2, 3]) == {2}


def view(version: int, aspired: bool, state: State) -> VersionView:
    return VersionView(version, aspired, state)


def test_new_versions_load_highest_first() -> None:
    views = [view(1, True, State.START), view(3, True, State.START), view(2, True, State.START)]
    assert next_action(views) == (Action.LOAD, 3)


def test_old_version_is_kept_until_the_new_one_is_available() -> None:
    loading = [view(1, False, State.AVAILABLE), view(2, True, State.LOADING)]
    assert next_action(loading) is None
    loaded = [view(1, False, State.AVAILABLE), view(2, True, State.AVAILABLE)]
    assert next_action(loaded) == (Action.UNLOAD, 1)


def test_old_version_keeps_serving_when_the_new_one_failed() -> None:
    assert next_action([view(1, False, State.AVAILABLE), view(2, True, State.END)]) is None


def test_nothing_aspired_unloads_everything_lowest_first() -> None:
    views = [view(2, False, State.AVAILABLE), view(1, False, State.AVAILABLE)]
    assert next_action(views) == (Action.UNLOAD, 1)
    assert next_action([view(2, False, State.AVAILABLE)]) == (Action.UNLOAD, 2)


def test_several_unaspired_versions_shrink_to_one_while_waiting() -> None:
    views = [
        view(1, False, State.AVAILABLE),
        view(2, False, State.AVAILABLE),
        view(3, True, State.LOADING),
    ]
    assert next_action(views) == (Action.UNLOAD, 1)


def test_unload_comes_before_load() -> None:
    views = [
        view(1, False, State.AVAILABLE),
        view(2, True, State.AVAILABLE),
        view(3, True, State.START),
    ]
    assert next_action(views) == (Action.UNLOAD, 1)


def test_settled_model_needs_nothing() -> None:
    assert next_action([view(2, True, State.AVAILABLE), view(1, False, State.END)]) is None
