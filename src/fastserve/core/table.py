"""The servable table: lock-free, reference-counted lookup of the versions being served.

A thin wrapper of the C++ table (fastserve._core). Readers never take a lock; a handle keeps
its version alive, and the manager unloads a version only after wait_until_released().
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import fastserve._core as _core
from fastserve._core import LookupStatus as _Status
from fastserve._core import ServableHandle
from fastserve.errors import invalid_argument, not_found


class ServableTable:
    """Model name -> version -> servable, plus version labels.

    - add(): the version becomes visible to lookups.
    - remove(): once it returns, no new handle to the version can be taken.
    - wait_until_released(): blocks (without the GIL) until every handle is released.
    - acquire(): the latest version, a specific version, or the version a label names.
    """

    def __init__(self) -> None:
        self._table = _core.ServableTable()
        # The C++ lookups themselves, for hot paths: a handle, or None on a miss.
        self.lookup_latest = self._table.acquire_latest
        self.lookup_version = self._table.acquire_version

    @property
    def native(self) -> Any:
        """The C++ table itself, for the native request path."""
        return self._table

    def add(self, model: str, version: int, servable: Any) -> bool:
        """Publishes a version; False if that version is already in the table."""
        return bool(self._table.add(model, version, servable))

    def remove(self, model: str, version: int) -> bool:
        """Takes a version out of the table; False if it was not there."""
        return bool(self._table.remove(model, version))

    def wait_until_released(self, model: str, version: int, timeout: float | None = None) -> bool:
        """Waits for the handles on a removed version; False if `timeout` seconds passed first."""
        return bool(
            self._table.wait_until_released(model, version, -1.0 if timeout is None else timeout)
        )

    def set_labels(self, model: str, labels: Mapping[str, int]) -> None:
        self._table.set_labels(model, dict(labels))

    def models(self) -> list[str]:
        return list(self._table.models())

    def versions(self, model: str) -> list[int]:
        return list(self._table.versions(model))

    def labels(self, model: str) -> dict[str, int]:
        return dict(self._table.labels(model))

    def handle_count(self, model: str, version: int) -> int:
        return int(self._table.handle_count(model, version))

    def acquire(
        self, model: str, version: int | None = None, label: str | None = None
    ) -> ServableHandle:
        """A handle on the requested version, or a ServingError worded as TF Serving words it.

        The caller must release() the handle (or use it as a context manager).
        """
        table = self._table
        if label is not None:
            handle = table.acquire_label(model, label)
            if handle is not None:
                return handle
            status, labelled = table.explain_label(model, label)
            if status == _Status.VERSION_NOT_FOUND:
                raise not_found(f"Servable not found for request: Specific({model}, {labelled})")
            raise invalid_argument(f"Unrecognized servable version label: {label}")
        if version is not None:
            handle = table.acquire_version(model, version)
            if handle is not None:
                return handle
            raise not_found(f"Servable not found for request: Specific({model}, {version})")
        handle = table.acquire_latest(model)
        if handle is not None:
            return handle
        raise not_found(f"Servable not found for request: Latest({model})")
