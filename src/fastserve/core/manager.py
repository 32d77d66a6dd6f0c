"""The manager moves versions between states: it loads what is aspired and unloads what is not.

Guarantees:
- A version is published to the table only once it has loaded, and unloaded only after it
  left the table and every handle on it was released (in-flight requests finish first).
- The availability-preserving rule (policies.next_action) decides the order: a model's only
  serving version is never unloaded for a replacement that has not loaded.
- A failed load is retried `max_num_load_retries` times, `load_retry_interval` seconds apart;
  then the version ends in END with the error while older versions keep serving. A version
  that stops being aspired cancels its pending retries.
- Every transition is reported through `statuses()` exactly as TF Serving reports it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from fastserve.core.policies import Action, VersionView, next_action
from fastserve.core.table import ServableTable
from fastserve.errors import Code, ServingError, from_exception, not_found
from fastserve.servables.base import Loader, LoadOptions, Servable
from fastserve.types import State, VersionStatus

log = logging.getLogger("fastserve.manager")


@dataclass(frozen=True)
class ManagerOptions:
    num_load_threads: int = 1
    num_unload_threads: int = 1
    max_num_load_retries: int = 5
    load_retry_interval: float = 60.0
    load_options: LoadOptions = field(default_factory=LoadOptions)


@dataclass
class _Version:
    version: int
    path: str
    loader: Loader
    aspired: bool = True
    state: State = State.START
    error: ServingError | None = None
    servable: Servable | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    # Handed to the load threads but not started: still START, as TF Serving reports it.
    queued: bool = False
    since: float = field(default_factory=time.monotonic)


TransitionListener = Callable[[str, int, State, ServingError | None, float], None]
# (version folder, succeeded, seconds): called after every load attempt.
LoadAttemptListener = Callable[[str, bool, float], None]


def _as_serving_error(error: BaseException) -> ServingError:
    return from_exception(error, Code.UNKNOWN)


class Manager:
    """Loads, publishes, unpublishes and unloads the versions of every model."""

    def __init__(
        self,
        table: ServableTable,
        options: ManagerOptions,
        on_transition: TransitionListener | None = None,
        on_load_attempt: LoadAttemptListener | None = None,
    ) -> None:
        self._table = table
        self._options = options
        self._on_transition = on_transition
        self._on_load_attempt = on_load_attempt
        self._models: dict[str, dict[int, _Version]] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._load_pool = ThreadPoolExecutor(
            max(1, options.num_load_threads), thread_name_prefix="fastserve-load"
        )
        self._unload_pool = ThreadPoolExecutor(
            max(1, options.num_unload_threads), thread_name_prefix="fastserve-unload"
        )

    # --- what sources and the server call ---------------------------------------------------

    def set_aspired_versions(self, model: str, versions: Mapping[int, str], loader: Loader) -> None:
        """The versions of `model` that should be served now (version -> folder)."""
        with self._lock:
            self._set_aspired(model, versions, loader)

    def remove_model(self, model: str) -> None:
        """Stops serving every version of `model` (each after its in-flight requests)."""
        with self._lock:
            self._set_aspired(model, {}, None)

    def _set_aspired(self, model: str, versions: Mapping[int, str], loader: Loader | None) -> None:
        """Caller holds the lock; `loader` may be None only when `versions` is empty."""
        records = self._models.setdefault(model, {})
        for version, path in versions.items():
            record = records.get(version)
            if record is None or (
                record.state is State.END
                # unloaded, or failed and since dropped, or replaced by another folder
                and (record.error is None or not record.aspired or record.path != path)
            ):
                assert loader is not None
                records[version] = self._start(model, version, path, loader)
        for version, record in records.items():
            still = version in versions
            if record.aspired and not still:
                record.cancelled.set()  # stops pending load retries
                if record.state is State.START:
                    self._report(model, record, State.END, None)
            elif still and not record.aspired and record.state is State.LOADING:
                record.cancelled.clear()
            record.aspired = still
        self._manage(model)

    def statuses(self, model: str) -> list[VersionStatus]:
        """Every version the manager has seen for `model`, highest first."""
        with self._lock:
            records = self._models.get(model)
            if not records:
                raise not_found(f"Could not find any versions of model {model}")
            return [
                VersionStatus(r.version, r.state, r.error)
                for r in sorted(records.values(), key=lambda r: r.version, reverse=True)
            ]

    def status(self, model: str, version: int) -> VersionStatus:
        with self._lock:
            record = self._models.get(model, {}).get(version)
            if record is None:
                raise not_found(f"Could not find version {version} of model {model}")
            return VersionStatus(record.version, record.state, record.error)

    def available_versions(self, model: str) -> set[int]:
        with self._lock:
            return {
                r.version
                for r in self._models.get(model, {}).values()
                if r.state is State.AVAILABLE
            }

    def wait_until_settled(
        self,
        models: Iterable[str],
        timeout: float | None = None,
        versions: Mapping[str, Iterable[int]] | None = None,
    ) -> dict[str, ServingError | None]:
        """Waits until each model has a version AVAILABLE, or every version it aspires to has
        failed; and until each of the model's `versions` (those its labels name) that it
        aspires to has finished loading, one way or the other. Returns, per model, None if it
        is being served, else the error that stops it (DEADLINE_EXCEEDED for a model still
        loading when `timeout` seconds have passed).
        """
        names = list(models)
        awaited = {name: set(found) for name, found in (versions or {}).items()}
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while True:
                pending = [
                    name
                    for name in names
                    if not self._settled(name)[0] or self._loading(name, awaited.get(name, ()))
                ]
                remaining = None if deadline is None else deadline - time.monotonic()
                if not pending or (remaining is not None and remaining <= 0):
                    break
                self._changed.wait(remaining)
            outcome: dict[str, ServingError | None] = {}
            for name in names:
                done, error = self._settled(name)
                outcome[name] = (
                    error
                    if done and not self._loading(name, awaited.get(name, ()))
                    else ServingError(
                        Code.DEADLINE_EXCEEDED, f"model {name} did not become available in time"
                    )
                )
            return outcome

    def wait_until_idle(self, timeout: float | None = None) -> bool:
        """Waits until no version is loading or unloading and nothing is left to do."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            # _manage() dispatches every action the policy wants at once, so nothing is left
            # to do once no version is loading or unloading.
            while any(
                self._busy_state(r) in (State.LOADING, State.UNLOADING)
                for records in self._models.values()
                for r in records.values()
            ):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True

    def stop(self, timeout: float | None = None) -> bool:
        """Unloads every version (each after its in-flight requests) and stops the threads.
        Returns False if that took longer than `timeout` seconds (the rest is abandoned)."""
        with self._lock:
            names = list(self._models)
        for name in names:
            self.remove_model(name)
        finished = self.wait_until_idle(timeout)
        self._load_pool.shutdown(wait=False, cancel_futures=True)
        self._unload_pool.shutdown(wait=False, cancel_futures=True)
        return finished

    # --- internals (self._lock held unless said otherwise) -----------------------------------

    def _start(self, model: str, version: int, path: str, loader: Loader) -> _Version:
        record = _Version(version=version, path=path, loader=loader)
        self._report(model, record, State.START, None)
        return record

    def _loading(self, model: str, versions: Iterable[int]) -> bool:
        """Whether any of `versions` is aspired and not yet loaded or failed."""
        records = self._models.get(model, {})
        return any(
            record.aspired and self._busy_state(record) in (State.START, State.LOADING)
            for record in (records.get(version) for version in versions)
            if record is not None
        )

    def _settled(self, model: str) -> tuple[bool, ServingError | None]:
        """(True, None) if served; (True, error) if it cannot be; (False, None) if loading."""
        records = self._models.get(model, {})
        if any(r.state is State.AVAILABLE for r in records.values()):
            return True, None
        aspired = [r for r in records.values() if r.aspired]
        if not aspired or any(r.state is not State.END for r in aspired):
            return False, None
        failed = [r.error for r in aspired if r.error is not None]
        return True, failed[0] if failed else ServingError(
            Code.UNKNOWN, f"model {model} has no version to serve"
        )

    @staticmethod
    def _busy_state(record: _Version) -> State:
        """The state the policy sees: a queued load counts as loading."""
        return State.LOADING if record.queued and record.state is State.START else record.state

    def _manage(self, model: str) -> None:
        records = self._models.get(model, {})
        while True:
            views = [
                VersionView(r.version, r.aspired, self._busy_state(r)) for r in records.values()
            ]
            action = next_action(views)
            if action is None:
                break
            kind, version = action
            record = records[version]
            if kind is Action.LOAD:
                record.queued = True
                self._load_pool.submit(self._load, model, record)
            else:
                self._report(model, record, State.UNLOADING, None)
                self._unload_pool.submit(self._unload, model, record)
        self._changed.notify_all()

    def _report(
        self, model: str, record: _Version, state: State, error: ServingError | None
    ) -> None:
        now = time.monotonic()
        took = now - record.since
        record.state, record.error, record.since = state, error, now
        fields = {
            "model": model,
            "version": record.version,
            "state": state.name,
            "duration_s": round(took, 3),
        }
        if error is not None:
            fields["error"] = error.message
            log.error(
                "model=%s version=%d state=%s after=%.3fs error=%s",
                model,
                record.version,
                state.name,
                took,
                error.message,
                extra={"fields": fields},
            )
        else:
            log.info(
                "model=%s version=%d state=%s after=%.3fs",
                model,
                record.version,
                state.name,
                took,
                extra={"fields": fields},
            )
        if self._on_transition is not None:
            self._on_transition(model, record.version, state, error, took)

    def _load(self, model: str, record: _Version) -> None:
        """Runs on a load thread, without the manager's lock."""
        try:
            self._try_load(model, record)
        except BaseException as error:  # a bug: end the version rather than hang its waiters
            log.exception("model=%s version=%d: loading failed unexpectedly", model, record.version)
            self._end_after_failure(model, record, error)

    def _unload(self, model: str, record: _Version) -> None:
        """Runs on an unload thread, without the manager's lock."""
        try:
            self._try_unload(model, record)
        except BaseException as error:
            log.exception(
                "model=%s version=%d: unloading failed unexpectedly", model, record.version
            )
            self._end_after_failure(model, record, error)

    def _end_after_failure(self, model: str, record: _Version, error: BaseException) -> None:
        with self._lock:
            if record.state is not State.END:
                self._report(model, record, State.END, from_exception(error))
            self._manage(model)

    def _try_load(self, model: str, record: _Version) -> None:
        with self._lock:
            record.queued = False
            if record.state is not State.START:
                return  # no longer aspired while it waited for a load thread: already END
            self._report(model, record, State.LOADING, None)
        attempts = 1 + max(0, self._options.max_num_load_retries)
        load_options = replace(self._options.load_options, model_name=model)
        servable: Servable | None = None
        error: ServingError | None = None
        for attempt in range(attempts):
            if record.cancelled.is_set():
                error = error or ServingError(
                    Code.CANCELLED, "Load cancelled before we could try to load."
                )
                break
            started = time.monotonic()
            try:
                servable = record.loader.load(record.path, load_options)
                error = None
                self._attempted(record.path, True, started)
                break
            except BaseException as failure:  # a loader may raise anything; none may kill us
                error = _as_serving_error(failure)
                self._attempted(record.path, False, started)
                log.warning(
                    "model=%s version=%d load attempt %d/%d failed: %s",
                    model,
                    record.version,
                    attempt + 1,
                    attempts,
                    error.message,
                )
                if attempt + 1 < attempts and self._options.load_retry_interval > 0:
                    record.cancelled.wait(self._options.load_retry_interval)
        with self._lock:
            if servable is not None:
                if not self._table.add(model, record.version, servable):
                    raise RuntimeError(f"version {record.version} of {model} is already served")
                record.servable = servable
                self._report(model, record, State.AVAILABLE, None)
            else:
                assert error is not None
                self._report(model, record, State.END, error)
            self._manage(model)

    def _attempted(self, path: str, ok: bool, started: float) -> None:
        if self._on_load_attempt is not None:
            self._on_load_attempt(path, ok, time.monotonic() - started)

    def _try_unload(self, model: str, record: _Version) -> None:
        self._table.remove(model, record.version)
        self._table.wait_until_released(model, record.version)
        servable, record.servable = record.servable, None
        try:
            if servable is not None:
                servable.unload()
        except Exception:
            log.exception("model=%s version=%d: unload raised", model, record.version)
        with self._lock:
            self._report(model, record, State.END, None)
            if record.aspired:
                # Aspired again while it was unloading: load it afresh.
                records = self._models[model]
                records[record.version] = self._start(
                    model, record.version, record.path, record.loader
                )
            self._manage(model)
