"""Prometheus metrics under TF Serving's names, through prometheus-client.

TF Serving names its metrics like paths (/tensorflow/serving/request_count) and its exporter
turns every character outside [A-Za-z0-9_] into ':', so the names scraped are
`:tensorflow:serving:request_count`. Latencies are microseconds, with TF Serving's buckets.
Its counters carry no `_total` suffix: prometheus-client would add one, so counters are kept
as gauge values (the same lock-free increments) and exported typed as counters.

Recording is cheap but not free: a server without --monitoring_config_file records nothing
(`Metrics(enabled=False)`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from fastserve.errors import ServingError
from fastserve.types import State

if TYPE_CHECKING:
    from fastserve.servables.batching import BatchScheduler

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Exponential(10, 1.8, 33): 10 µs to about 20 minutes (TF Serving's request latencies).
LATENCY_BUCKETS_MICROS = tuple(10 * 1.8**i for i in range(33))
# Exponential(1, 2, 15): TF Serving's examples-per-request buckets.
EXAMPLE_BUCKETS = tuple(float(2**i) for i in range(15))
# Exponential(100, 1.2, 52): TF Serving's batch queuing latency buckets, 100 µs to ~1 s.
QUEUING_BUCKETS_MICROS = tuple(100 * 1.2**i for i in range(52))
# Exponential(1, 2, 14): TF Serving's batch size buckets.
BATCH_SIZE_BUCKETS = tuple(float(2**i) for i in range(14))

# The APIs whose requests TF Serving counts and times (GetModelMetadata and status are not).
INFERENCE_APIS = frozenset({"Predict", "Classify", "Regress", "MultiInference"})
# The states a version's state gauge reports.
_STATES = tuple(state for state in State if state is not State.UNKNOWN)
# The model_name label of requests naming a model that is not configured: a label per name
# a client makes up would let clients grow the server's memory without bound.
UNKNOWN_MODEL = "<unknown>"

# TF Serving exports no `_created` series, and they double the size of a scrape.
disable_created_metrics()


class _CountersAsTFServing(Collector):
    """Gauges holding counts, exported as counters named without `_total`."""

    def __init__(self, gauges: Iterable[Gauge]) -> None:
        self._gauges = tuple(gauges)

    def collect(self) -> Iterator[Metric]:
        for gauge in self._gauges:
            for family in gauge.collect():
                family.type = "counter"
                yield family

    def names(self) -> list[str]:
        return [family.name for gauge in self._gauges for family in gauge.collect()]


class _BatchingCollector(Collector):
    """TF Serving's batching_session metrics: a batch scheduler's observer (see
    fastserve.batching.BatchObserver) recording into histograms of fixed size."""

    def __init__(self) -> None:
        prefix = ":tensorflow:serving:batching_session:"
        queuing = Histogram(
            f"{prefix}queuing_latency",
            "Distribution of wall time spent (in microseconds) in queuing",
            ["thread_pool_name"],
            buckets=QUEUING_BUCKETS_MICROS,
            registry=None,
        )
        # The model server's batching sessions have an empty thread pool name label.
        self._queuing = queuing.labels("")
        self._histograms: list[Histogram] = [queuing]
        self._input = self._histogram(
            f"{prefix}input_batch_size", "Tracks the batch size distribution on the inputs."
        )
        self._processed = self._histogram(
            f"{prefix}processed_batch_size", "Tracks the batch size distribution on processing."
        )
        self._padding = self._histogram(
            f"{prefix}padding_size",
            "Tracks the padding size distribution on batches.",
            ["execution_batch_size"],
        )
        self._run_count = Gauge(
            f"{prefix}wrapped_run_count",
            "Total count of run calls on the wrapped session",
            registry=None,
        )
        self.counters = _CountersAsTFServing([self._run_count])
        self.refresh: Callable[[], None] | None = None

    def _histogram(self, name: str, documentation: str, labels: list[str] | None = None) -> Any:
        histogram = Histogram(
            name, documentation, labels or [], buckets=BATCH_SIZE_BUCKETS, registry=None
        )
        self._histograms.append(histogram)
        return histogram

    def task_queued(self, rows: int) -> None:
        self._input.observe(rows)

    def batch_run(self, rows: int, padded: int, latencies: list[float]) -> None:
        self._processed.observe(padded)
        self._padding.labels(str(padded)).observe(padded - rows)
        for micros in latencies:
            self._queuing.observe(micros)
        self._run_count.inc()

    def collect(self) -> Iterator[Metric]:
        # Native batchers record in C++; what they recorded since the last scrape comes in now.
        if self.refresh is not None:
            self.refresh()
        for histogram in self._histograms:
            yield from histogram.collect()
        yield from self.counters.collect()


def _child(cache: dict[tuple[str, ...], Any], metric: Any, labels: tuple[str, ...]) -> Any:
    """metric.labels(*labels), remembered: prometheus-client's own lookup takes a lock and
    checks the values on every call (about 1 µs), twice or thrice per request. Children are
    never removed, so a remembered one stays valid; two threads racing here get the same
    child from labels()."""
    child = cache.get(labels)
    if child is None:
        child = cache[labels] = metric.labels(*labels)
    return child


class _Timed:
    __slots__ = ("_histogram", "_started")

    def __init__(self, histogram: Any) -> None:
        self._histogram = histogram
        self._started = 0.0

    def __enter__(self) -> object:
        self._started = time.perf_counter()
        return self

    def __exit__(self, *_: object) -> None:
        self._histogram.observe((time.perf_counter() - self._started) * 1e6)


_UNTIMED = nullcontext()


class Metrics:
    """Everything fastserve measures. Thread-safe; every method is a no-op when disabled
    (the version states are kept either way)."""

    def __init__(
        self, enabled: bool = False, known_model: Callable[[str], bool] = lambda name: True
    ) -> None:
        self.enabled = enabled
        self._known_model = known_model
        # Remembered children of the per-request metrics (see _child).
        self._count_children: dict[tuple[str, ...], Any] = {}
        self._latency_children: dict[tuple[str, ...], Any] = {}
        self._runtime_children: dict[tuple[str, ...], Any] = {}
        self._sources: list[Callable[[], object]] = []
        self.registry = CollectorRegistry(auto_describe=False)
        registry = self.registry
        self._request_count = Gauge(
            ":tensorflow:serving:request_count",
            "The total number of requests.",
            ["model_name", "status"],
            registry=None,
        )
        self._request_latency = Histogram(
            ":tensorflow:serving:request_latency",
            "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
            ["model_name", "API", "entrypoint"],
            buckets=LATENCY_BUCKETS_MICROS,
            registry=registry,
        )
        self._runtime_latency = Histogram(
            ":tensorflow:serving:runtime_latency",
            "Distribution of wall time (in microseconds) for Tensorflow runtime.",
            ["model_name", "API", "runtime"],
            buckets=LATENCY_BUCKETS_MICROS,
            registry=registry,
        )
        self._example_counts = Histogram(
            ":tensorflow:serving:request_example_counts",
            "The number of tensorflow.Examples per request.",
            ["model"],
            buckets=EXAMPLE_BUCKETS,
            registry=registry,
        )
        self._example_count_total = Gauge(
            ":tensorflow:serving:request_example_count_total",
            "The total number of tensorflow.Examples.",
            ["model"],
            registry=None,
        )
        self._load_attempts = Gauge(
            ":tensorflow:cc:saved_model:load_attempt_count",
            "The number of attempts to load a model version, by outcome.",
            ["model_path", "status"],
            registry=None,
        )
        self._load_latency = Gauge(
            ":tensorflow:cc:saved_model:load_latency",
            "Latency in microseconds for SavedModels that were successfully loaded.",
            ["model_path"],
            registry=None,
        )
        self._warmup_latency = Histogram(
            ":tensorflow:serving:model_warmup_latency",
            "Distribution of wall time (in microseconds) for warming up the model.",
            ["model_path", "status"],
            buckets=LATENCY_BUCKETS_MICROS,
            registry=registry,
        )
        self._version_state = Gauge(
            "fastserve_model_version_state",
            "1 for the state each model version is in (START, LOADING, AVAILABLE, "
            "UNLOADING, END), 0 for the others.",
            ["model_name", "version", "state"],
            registry=registry,
        )
        self._counters = _CountersAsTFServing(
            [
                self._request_count,
                self._example_count_total,
                self._load_attempts,
                self._load_latency,
            ]
        )
        registry.register(self._counters)
        self._counter_names = set(self._counters.names())

    # --- recording -----------------------------------------------------------------------------

    def request(self, model: str, api: str, entrypoint: str, status: str, micros: float) -> None:
        """One request of an inference API ended with `status` (a gRPC code name)."""
        if not self.enabled:
            return
        if not self._known_model(model):
            model = UNKNOWN_MODEL
        _child(self._count_children, self._request_count, (model, status)).inc()
        _child(self._latency_children, self._request_latency, (model, api, entrypoint)).observe(
            micros
        )

    def runtime(self, model: str, api: str, runtime: str) -> AbstractContextManager[object]:
        """Times a servable's computation of one request (with batching: queuing included;
        the request's checks against the signature too, a few microseconds)."""
        if not self.enabled:
            return _UNTIMED
        return _Timed(_child(self._runtime_children, self._runtime_latency, (model, api, runtime)))

    def runtime_observed(self, model: str, api: str, runtime: str, micros: float) -> None:
        """A computation timed elsewhere (the native request path)."""
        if self.enabled:
            _child(self._runtime_children, self._runtime_latency, (model, api, runtime)).observe(
                micros
            )

    def add_source(self, refresh: Callable[[], object]) -> None:
        """`refresh` brings in what was recorded elsewhere (the native server's requests);
        it runs before every exposition, so a scrape sees every request answered before it."""
        self._sources.append(refresh)

    def examples(self, model: str, count: int) -> None:
        """A Classify, Regress or MultiInference request carried `count` tf.Examples."""
        if self.enabled:
            self._example_counts.labels(model).observe(count)
            self._example_count_total.labels(model).inc(count)

    def load_attempt(self, path: str, ok: bool, micros: float) -> None:
        if not self.enabled:
            return
        self._load_attempts.labels(path, "success" if ok else "fail").inc()
        if ok:
            self._load_latency.labels(path).inc(micros)

    def warmup(self, path: str, seconds: float, ok: bool) -> None:
        if self.enabled:
            self._warmup_latency.labels(path, "OK" if ok else "ERROR").observe(seconds * 1e6)

    def transition(
        self, model: str, version: int, state: State, error: ServingError | None, took: float
    ) -> None:
        """A manager transition listener: keeps each version's state gauge."""
        if not self.enabled:
            return
        for each in _STATES:
            self._version_state.labels(model, str(version), each.name).set(
                1 if each is state else 0
            )

    def add_batching(self, scheduler: BatchScheduler) -> None:
        """Exports a batch scheduler's metrics (when enabled: else it records nothing)."""
        if not self.enabled:
            return
        collector = _BatchingCollector()
        collector.refresh = scheduler.drain_native
        scheduler.metrics = collector
        self.registry.register(collector)
        self._counter_names.add(":tensorflow:serving:batching_session:wrapped_run_count")

    # --- exporting -----------------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The Prometheus text format, counters named as TF Serving names them."""
        for refresh in self._sources:
            refresh()
        text = generate_latest(self.registry).decode("utf-8")
        for name in self._counter_names:
            # prometheus-client names a counter family `<name>_total` in HELP and TYPE.
            text = text.replace(f"# HELP {name}_total ", f"# HELP {name} ", 1)
            text = text.replace(f"# TYPE {name}_total counter", f"# TYPE {name} counter", 1)
        return text.encode("utf-8")


def status_name(error: BaseException | None) -> str:
    """The status label of a request: "OK", or the gRPC code name of its error."""
    if error is None:
        return "OK"
    if isinstance(error, ServingError):
        return error.code.name
    return "INTERNAL"
