"""Version policies (which versions to serve) and the availability-preserving transition rule."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from fastserve.types import State


class VersionPolicy(Protocol):
    """Chooses, from the versions a source found, the ones to serve (the aspired versions)."""

    def aspired(self, available: Iterable[int]) -> set[int]: ...


@dataclass(frozen=True)
class Latest:
    """The `num_versions` highest version numbers (TF Serving's default, with 1)."""

    num_versions: int = 1

    def __post_init__(self) -> None:
        if self.num_versions < 1:
            raise ValueError(f"latest.num_versions must be at least 1, got {self.num_versions}")

    def aspired(self, available: Iterable[int]) -> set[int]:
        return set(sorted(available, reverse=True)[: self.num_versions])


@dataclass(frozen=True)
class All:
    """Every version found."""

    def aspired(self, available: Iterable[int]) -> set[int]:
        return set(available)


@dataclass(frozen=True)
class Specific:
    """The listed versions that exist."""

    versions: frozenset[int]

    def aspired(self, available: Iterable[int]) -> set[int]:
        return set(available) & self.versions


class Action(enum.Enum):
    LOAD = "load"
    UNLOAD = "unload"


@dataclass(frozen=True)
class VersionView:
    """What the transition rule sees of one version of a model."""

    version: int
    aspired: bool
    state: State


def next_action(versions: Sequence[VersionView]) -> tuple[Action, int] | None:
    """The availability-preserving rule: load new versions before unloading old ones.

    - A version no longer aspired and AVAILABLE is unloaded (lowest first) when the model has
      no aspired version at all, or an aspired version is already AVAILABLE, or more than one
      unaspired version is AVAILABLE; so the only serving version is never unloaded for a
      replacement that has not loaded (or that failed).
    - Otherwise the highest aspired version still in START is loaded.
    """
    has_aspired = any(view.aspired for view in versions)
    aspired_available = any(view.aspired and view.state is State.AVAILABLE for view in versions)
    unaspired_available = sorted(
        view.version for view in versions if not view.aspired and view.state is State.AVAILABLE
    )
    if unaspired_available and (
        not has_aspired or aspired_available or len(unaspired_available) > 1
    ):
        return Action.UNLOAD, unaspired_available[0]
    new = [view.version for view in versions if view.aspired and view.state is State.START]
    if new:
        return Action.LOAD, max(new)
    return None
