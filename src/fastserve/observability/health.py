"""Liveness and readiness: what Kubernetes probes and gRPC health checks ask.

- live: the process answers (the frontends are up).
- ready: not shutting down, and every configured model has a version AVAILABLE.
- a model is ready when it has a version AVAILABLE.

Listeners hear about every change that may move an answer (a version transition, the start
of shutdown), so a gRPC health service can push it to watchers. They are called on a thread
of their own: a transition is reported under the manager's lock, and a listener asks the
manager again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from fastserve.core.manager import Manager
from fastserve.core.models import Models

Listener = Callable[[], None]


class Health:
    def __init__(self, manager: Manager, models: Models) -> None:
        self._manager = manager
        self._models = models
        self._stopping = False
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()
        self._dirty = threading.Condition(self._lock)
        self._pending = False
        self._notifier: threading.Thread | None = None

    @property
    def stopping(self) -> bool:
        return self._stopping

    def configured(self) -> list[str]:
        return [model.name for model in self._models.config]

    def model_ready(self, name: str) -> bool:
        return not self._stopping and bool(self._manager.available_versions(name))

    def unready(self) -> dict[str, str]:
        """Why the server is not ready: model name (or "server") -> reason; empty when ready."""
        if self._stopping:
            return {"server": "shutting down"}
        return {
            name: "no version is AVAILABLE"
            for name in self.configured()
            if not self._manager.available_versions(name)
        }

    def ready(self) -> bool:
        return not self.unready()

    # --- changes -------------------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.append(listener)
            if self._notifier is None:
                self._notifier = threading.Thread(
                    target=self._notify, name="fastserve-health", daemon=True
                )
                self._notifier.start()

    def changed(self, *_: object) -> None:
        """Something that readiness depends on changed (usable as a transition listener).
        Returns at once; the listeners run soon after, once for any number of changes."""
        with self._lock:
            self._pending = True
            self._dirty.notify()

    def _notify(self) -> None:
        while True:
            with self._lock:
                while not self._pending:
                    self._dirty.wait()
                self._pending = False
                listeners = list(self._listeners)
            for listener in listeners:
                listener()

    def start_stopping(self) -> None:
        """Shutdown began: from now on nothing is ready (load balancers stop sending)."""
        self._stopping = True
        self.changed()
