"""Kinds of servables, each behind a Loader; `model_platform` in the config picks one.

A kind is registered as an entry point of the group `fastserve.servables`: its name is the
`model_platform` value, its value the kind's Loader class (fastserve's own kinds register the
same way, in fastserve's pyproject.toml). Finding the registered names imports nothing; a
kind's module is imported on a load thread, when a version of that kind is first loaded, so a
kind whose library is missing fails that version's load and nothing else.
"""

from __future__ import annotations

import functools
import threading
from importlib.metadata import EntryPoint, entry_points

from fastserve.errors import Code, ServingError
from fastserve.servables.base import Loader, LoadOptions, Servable

GROUP = "fastserve.servables"


@functools.cache
def _registry() -> dict[str, tuple[EntryPoint, ...]]:
    """Every registered platform and the entry points naming it (more than one: ambiguous).
    Read once per process: a kind installed later is seen after a restart."""
    found: dict[str, tuple[EntryPoint, ...]] = {}
    for entry in entry_points(group=GROUP):
        if entry not in found.get(entry.name, ()):
            found[entry.name] = (*found.get(entry.name, ()), entry)
    return found


def platforms() -> tuple[str, ...]:
    """The registered model_platform values, sorted."""
    return tuple(sorted(_registry()))


class RegisteredLoader(Loader):
    """The loader of a registered platform: imports the kind's Loader on its first load()
    (on a load thread) and hands every load to it."""

    def __init__(self, platform: str, entries: tuple[EntryPoint, ...]) -> None:
        self.platform = platform
        self._entries = entries
        self._inner: Loader | None = None
        self._lock = threading.Lock()

    def _loader(self) -> Loader:
        with self._lock:
            if self._inner is None:
                self._inner = _import(self.platform, self._entries)
            return self._inner

    def load(self, path: str, options: LoadOptions) -> Servable:
        return self._loader().load(path, options)


def _import(platform: str, entries: tuple[EntryPoint, ...]) -> Loader:
    if len(entries) > 1:
        named = "; ".join(f"{_package(entry)} ({entry.value})" for entry in entries)
        raise ServingError(
            Code.FAILED_PRECONDITION,
            f"model_platform {platform} is registered by more than one package: {named}; "
            "uninstall all but one",
        )
    (entry,) = entries
    try:
        kind = entry.load()
    except Exception as error:
        raise ServingError(
            Code.FAILED_PRECONDITION,
            f"model_platform {platform}: cannot import {entry.value} (from {_package(entry)}): "
            f"{type(error).__name__}: {error}",
        ) from error
    if not (isinstance(kind, type) and issubclass(kind, Loader)):
        raise ServingError(
            Code.FAILED_PRECONDITION,
            f"model_platform {platform}: {entry.value} (from {_package(entry)}) is not a "
            "subclass of fastserve.servables.base.Loader",
        )
    return kind()


def _package(entry: EntryPoint) -> str:
    dist = getattr(entry, "dist", None)
    return dist.name if dist is not None else "an unknown package"


def loader_for(platform: str) -> Loader:
    """The loader of a registered model_platform (KeyError when none is registered); the
    kind's module is imported only when the loader first loads a version."""
    return RegisteredLoader(platform, _registry()[platform])
