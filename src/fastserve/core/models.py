"""The configured models: applies a model config list, at start-up and on every reload.

Applying a config is one step for the whole list: new models start loading, removed models
are unloaded (each version after its in-flight requests), changed policies take effect at the
next poll (which apply() runs at once), and labels change once the versions they name are
served. apply() returns when every configured model is served or has failed, and raises a
ServingError naming every model that failed. Calls are serialised.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastserve.core.manager import Manager
from fastserve.core.policies import Latest, VersionPolicy
from fastserve.core.sources import FileSystemSource, ModelSource, SourcePoller
from fastserve.core.table import ServableTable
from fastserve.errors import Code, ServingError, failed_precondition, invalid_argument
from fastserve.servables import loader_for
from fastserve.servables.base import Loader

log = logging.getLogger("fastserve.models")


@dataclass(frozen=True)
class ModelConfig:
    name: str
    base_path: str
    model_platform: str = "tensorflow"
    version_policy: VersionPolicy = field(default_factory=Latest)
    version_labels: Mapping[str, int] = field(default_factory=dict)
    # fastserve's YAML only: batching parameters of this model (it is then batched).
    batching: Mapping[str, Any] | None = None


def default_loader(model: ModelConfig) -> Loader:
    """The loader of a model's platform, unwrapped."""
    return loader_for(model.model_platform)


class ModelFailures(ServingError):
    """Some models of a config could not be served; `failures` says which and why."""

    def __init__(self, failures: dict[str, ServingError]) -> None:
        self.failures = failures
        summary = "; ".join(
            f"model {name} failed to load: {error.message}" for name, error in failures.items()
        )
        super().__init__(
            Code.UNKNOWN, f"{len(failures)} model(s) did not become available: {summary}"
        )


class Models:
    """The model config list in force, kept in step with the poller, manager and table."""

    def __init__(
        self,
        table: ServableTable,
        manager: Manager,
        poll_wait_seconds: float,
        allow_version_labels_for_unavailable_models: bool = False,
        loader: Callable[[ModelConfig], Loader] = default_loader,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self._table = table
        self._on_change = on_change
        self._loader = loader
        self._manager = manager
        self._allow_unavailable_labels = allow_version_labels_for_unavailable_models
        self._poller = SourcePoller([], manager.set_aspired_versions, poll_wait_seconds)
        self._polling = poll_wait_seconds >= 0
        self._config: dict[str, ModelConfig] = {}
        # The configured model names, for lock-free membership tests.
        self.names: frozenset[str] = frozenset()
        self._lock = threading.Lock()
        self._started = False

    @property
    def config(self) -> list[ModelConfig]:
        return list(self._config.values())

    def apply(self, models: Sequence[ModelConfig]) -> None:
        """Makes `models` the config in force and waits until each is served or failed."""
        with self._lock:
            new = {model.name: model for model in models}
            if len(new) != len(models):
                seen: set[str] = set()
                for model in models:
                    if model.name in seen:
                        raise invalid_argument(
                            f"Illegal to list model {model.name} multiple times in config list"
                        )
                    seen.add(model.name)
            for name, model in new.items():
                old = self._config.get(name)
                if old is not None and old.model_platform != model.model_platform:
                    raise invalid_argument(
                        f"Illegal to change a model's platform. For model {name} platform was "
                        f"{old.model_platform} and new platform requested is "
                        f"{model.model_platform}"
                    )
            removed = [name for name in self._config if name not in new]
            self._config = new
            self.names = frozenset(new)
            if self._on_change is not None:
                self._on_change()
            self._poller.set_models([self._source(model) for model in models])
            for name in removed:
                log.info("model %s is no longer configured; unloading it", name)
                self._table.set_labels(name, {})
                self._manager.remove_model(name)
            problems = self._poll()
            names = list(new)
            # Wait for all the others too, so that one error names every model that failed.
            # Labels are applied once the versions they name have loaded (or failed to).
            outcome = self._manager.wait_until_settled(
                (n for n in names if n not in problems),
                versions={model.name: model.version_labels.values() for model in models},
            )
            failed = {**problems, **{n: e for n, e in outcome.items() if e is not None}}
            if failed:
                raise ModelFailures({name: failed[name] for name in names if name in failed})
            self._apply_labels(models)

    def _source(self, model: ModelConfig) -> ModelSource:
        return ModelSource(
            name=model.name,
            source=FileSystemSource(model.name, model.base_path),
            policy=model.version_policy,
            loader=self._loader(model),
        )

    def _poll(self) -> dict[str, ServingError]:
        if not self._polling:
            return {}
        if not self._started:
            self._started = True
            return self._poller.start()
        return self._poller.poll_once()

    def _apply_labels(self, models: Sequence[ModelConfig]) -> None:
        """TF Serving's rule: a label may name only an AVAILABLE version, unless labels for
        unavailable models are allowed and the label is new or already names that version."""
        refused: list[str] = []
        for model in models:
            available = self._manager.available_versions(model.name)
            current = self._table.labels(model.name)
            for label, version in model.version_labels.items():
                if version in available:
                    continue
                if self._allow_unavailable_labels and current.get(label, version) == version:
                    continue
                refused.append(
                    f"Request to assign label to version {version} of model {model.name}, "
                    "which is not currently available for inference"
                )
        if refused:
            raise failed_precondition("; ".join(refused))
        for model in models:
            self._table.set_labels(model.name, model.version_labels)

    def stop(self) -> None:
        self._poller.stop()
