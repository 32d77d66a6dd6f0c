"""Batching with the real C++ scheduler and a real python servable: every caller gets exactly
its own rows, whatever mix of sizes, signatures, filters, deadlines and failures arrives."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastserve._core as _core
from fastserve.errors import Code, ServingError
from fastserve.servables.base import LoadOptions, Pending, Servable
from fastserve.servables.batching import BatchingServable, BatchScheduler
from fastserve.servables.batching_parameters import BatchingParameters
from fastserve.servables.python import PythonLoader
from fastserve.types import RunContext
from support import models, observed

MODEL = """
    import time

    import numpy as np

    from fastserve.servables.python import signature, tensor
    from support import observed

    IO = {"x": tensor("float32", [-1]), "tag": tensor("int64", [-1])}


    def run(name, x, tag, factor):
        raised = bool((x < 0).any())
        observed.record(observed.Call(name, len(x), tuple(int(t) for t in tag), raised))
        if (x == 999).any():
            time.sleep(0.3)  # simulated slow work: holds the batch thread meanwhile
        if raised:
            raise ValueError("negative input")
        return {"y": x * factor, "tag": tag, "rows": np.full(len(x), len(x))}


    OUT = {"y": tensor("float32", [-1]), "tag": tensor("int64", [-1]), "rows": tensor("int64", [-1])}


    @signature(inputs=IO, outputs=OUT)
    def serving_default(x, tag):
        return run("serving_default", x, tag, 2.0)


    @signature(inputs=IO, outputs=OUT)
    def triple(x, tag):
        return run("triple", x, tag, 3.0)


    @signature(inputs={"seq": tensor("float32", [-1, -1])}, outputs={"width": tensor("int64", [-1]), "total": tensor("float32", [-1])})
    def ragged(seq):
        observed.record(observed.Call("ragged", len(seq), (), False))
        return {"width": np.full(len(seq), seq.shape[1]), "total": seq.sum(axis=1)}


    @signature(inputs=IO, outputs={"scalar": tensor("float32", [])})
    def scalar_out(x, tag):
        return {"scalar": np.float32(1.0)}
"""

FACTORS = {"serving_default": 2.0, "triple": 3.0}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("batched") / "1"
    models.python_model(path, MODEL)
    return path


@pytest.fixture()
def make(model_dir: Path) -> Iterator[Callable[..., BatchingServable]]:
    made: list[tuple[BatchScheduler, Servable]] = []

    def build(threads: int = 2, **parameters: object) -> BatchingServable:
        scheduler = BatchScheduler(threads)
        inner = PythonLoader().load(str(model_dir), LoadOptions())
        checked = BatchingParameters(**parameters).checked()  # type: ignore[arg-type]
        servable = BatchingServable(inner, scheduler, checked)
        made.append((scheduler, servable))
        observed.take()
        return servable

    yield build
    for scheduler, servable in made:
        servable.unload()
        scheduler.stop()


def call(
    servable: BatchingServable,
    signature: str,
    x: np.ndarray,
    tag: np.ndarray,
    outputs: tuple[str, ...] = ("y", "tag", "rows"),
    context: RunContext | None = None,
    *,
    started: bool = False,
) -> dict[str, np.ndarray]:
    """run(), or (started) start() and, when it returns Pending, waiting on its task and
    finish(), as the native gRPC path does."""
    inputs = {"x": x, "tag": tag}
    if not started:
        return servable.run(servable.signatures[signature], inputs, outputs, context)
    pending = servable.start(servable.signatures[signature], inputs, outputs, context)
    if not isinstance(pending, Pending):
        return pending
    assert isinstance(pending.waitable, _core.Task)
    pending.waitable.wait()  # ends at its batch, or when next_batch finds it expired
    return pending.finish()


def wait_until_queued(servable: BatchingServable, rows: int) -> None:
    deadline = time.monotonic() + 30
    while servable.queued_rows("serving_default") != rows:
        assert time.monotonic() < deadline, "the task never reached the queue"
        time.sleep(0.005)


def test_concurrent_requests_share_batches(make: Callable[..., BatchingServable]) -> None:
    servable = make(threads=1, max_batch_size=64, batch_timeout_micros=200_000)
    barrier = threading.Barrier(8)

    def one(index: int) -> dict[str, np.ndarray]:
        barrier.wait()
        return call(servable, "serving_default", np.full(2, index, np.float32), np.full(2, index))

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(8)))
    for index, result in enumerate(results):
        assert result["y"].tolist() == [2.0 * index] * 2
        assert result["tag"].tolist() == [index] * 2
    calls = observed.take()
    assert sum(c.rows for c in calls) == 16
    assert max(c.rows for c in calls) > 2  # some requests ran together


def test_allowed_batch_sizes_pad_and_strip(make: Callable[..., BatchingServable]) -> None:
    servable = make(max_batch_size=8, allowed_batch_sizes=(4, 8))
    result = call(servable, "serving_default", np.array([1, 2, 3], np.float32), np.array([7, 8, 9]))
    assert result["y"].tolist() == [2.0, 4.0, 6.0]
    assert result["rows"].tolist() == [4, 4, 4]  # the model saw a padded batch of 4
    (seen,) = observed.take()
    assert seen.tags == (7, 8, 9, 7)  # padded with a copy of the first row


def test_large_batch_splitting_reassembles_in_order(make: Callable[..., BatchingServable]) -> None:
    servable = make(
        max_batch_size=20, enable_large_batch_splitting=True, max_execution_batch_size=4
    )
    x = np.arange(11, dtype=np.float32)
    result = call(servable, "serving_default", x, np.arange(11))
    assert result["y"].tolist() == (x * 2).tolist()
    assert result["tag"].tolist() == list(range(11))
    assert all(c.rows <= 4 for c in observed.take())


def test_task_too_large(make: Callable[..., BatchingServable]) -> None:
    servable = make(max_batch_size=4)
    with pytest.raises(ServingError) as caught:
        call(servable, "serving_default", np.zeros(5, np.float32), np.zeros(5, np.int64))
    assert (caught.value.code, caught.value.message) == (
        Code.INVALID_ARGUMENT,
        "Task size 5 is larger than maximum input batch size 4",
    )


def test_queue_full_fails_fast(make: Callable[..., BatchingServable]) -> None:
    servable = make(threads=1, max_batch_size=1, max_enqueued_batches=1, batch_timeout_micros=0)
    slow = threading.Thread(
        target=call, args=(servable, "serving_default", np.array([999], np.float32), np.array([0]))
    )
    slow.start()  # occupies the only batch thread for 0.3 s
    assert observed.wait_for(0)
    waiting = threading.Thread(
        target=call, args=(servable, "serving_default", np.array([1], np.float32), np.array([1]))
    )
    waiting.start()  # fills the one batch the queue may hold
    wait_until_queued(servable, 1)
    with pytest.raises(ServingError) as caught:
        call(servable, "serving_default", np.array([2], np.float32), np.array([2]))
    assert caught.value.code == Code.UNAVAILABLE
    assert caught.value.message == (
        "The batch scheduling queue to which this task was submitted is full; currently 1 "
        "batches enqueued and max_enqueued_batches is 1"
    )
    slow.join()
    waiting.join()


def test_inputs_with_different_dim_zero(make: Callable[..., BatchingServable]) -> None:
    servable = make()
    with pytest.raises(
        ServingError, match="Batching Run\\(\\) input tensors must have equal 0th-dimension size"
    ):
        call(servable, "serving_default", np.zeros(2, np.float32), np.zeros(3, np.int64))


def test_different_shapes_go_to_separate_batches(make: Callable[..., BatchingServable]) -> None:
    servable = make(threads=1, max_batch_size=16, batch_timeout_micros=100_000)
    signature = servable.signatures["ragged"]
    barrier = threading.Barrier(4)

    def one(width: int) -> dict[str, np.ndarray]:
        barrier.wait()
        return servable.run(signature, {"seq": np.ones((1, width), np.float32)}, ("width", "total"))

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, [2, 3, 2, 3]))
    assert [r["width"].tolist() for r in results] == [[2], [3], [2], [3]]
    assert [r["total"].tolist() for r in results] == [[2.0], [3.0], [2.0], [3.0]]


def test_variable_lengths_are_padded_together(make: Callable[..., BatchingServable]) -> None:
    servable = make(
        threads=1, max_batch_size=16, batch_timeout_micros=200_000, pad_variable_length_inputs=True
    )
    signature = servable.signatures["ragged"]
    barrier = threading.Barrier(2)

    def one(width: int) -> dict[str, np.ndarray]:
        barrier.wait()
        return servable.run(
            signature, {"seq": np.full((1, width), 2.0, np.float32)}, ("width", "total")
        )

    with ThreadPoolExecutor(2) as pool:
        narrow, wide = pool.map(one, [2, 4])
    # Both ran in one batch, padded to width 4 with each tensor's own first element.
    assert narrow["width"].tolist() == [4] and wide["width"].tolist() == [4]
    assert narrow["total"].tolist() == [8.0] and wide["total"].tolist() == [8.0]


def test_batch_independent_output_fails_the_batch(make: Callable[..., BatchingServable]) -> None:
    servable = make()
    with pytest.raises(ServingError) as caught:
        call(servable, "scalar_out", np.zeros(2, np.float32), np.zeros(2, np.int64), ("scalar",))
    assert (caught.value.code, caught.value.message) == (
        Code.FAILED_PRECONDITION,
        "Batched output tensor has 0 dimensions",
    )


def test_cancelled_task_is_dropped_before_it_runs(make: Callable[..., BatchingServable]) -> None:
    servable = make(threads=1, max_batch_size=1, batch_timeout_micros=0)
    slow = threading.Thread(
        target=call, args=(servable, "serving_default", np.array([999], np.float32), np.array([0]))
    )
    slow.start()
    assert observed.wait_for(0)
    context = RunContext()
    errors: list[ServingError] = []

    def queued() -> None:
        try:
            call(
                servable,
                "serving_default",
                np.array([5], np.float32),
                np.array([55]),
                context=context,
            )
        except ServingError as error:
            errors.append(error)

    waiter = threading.Thread(target=queued)
    waiter.start()
    wait_until_queued(servable, 1)
    context.cancel()
    waiter.join(5)
    slow.join()
    assert [e.code for e in errors] == [Code.CANCELLED]
    assert all(55 not in c.tags for c in observed.take())


def test_start_returns_pending_on_the_queued_task(
    make: Callable[..., BatchingServable],
) -> None:
    """start() queues and returns at once; the task ends when its batch ran, and finish()
    then gives the outputs (or the batch's error); a request that is not batched (no rows)
    runs at once and start() returns its outputs."""
    servable = make(threads=1, max_batch_size=2, batch_timeout_micros=0)
    signature = servable.signatures["serving_default"]
    slow = servable.start(
        signature, {"x": np.array([999], np.float32), "tag": np.array([0])}, ("y",)
    )
    assert isinstance(slow, Pending)
    queued = servable.start(
        signature, {"x": np.array([4, 5], np.float32), "tag": np.array([1, 1])}, ("y", "tag")
    )
    failing = servable.start(
        signature, {"x": np.array([-1], np.float32), "tag": np.array([2])}, ("y",)
    )
    assert isinstance(queued, Pending) and isinstance(failing, Pending)
    assert queued.waitable.outcome == _core.TaskOutcome.PENDING  # behind the slow batch
    assert queued.waitable.wait() == _core.TaskOutcome.DONE
    answer = queued.finish()
    assert answer["y"].tolist() == [8.0, 10.0] and answer["tag"].tolist() == [1, 1]
    assert failing.waitable.wait() == _core.TaskOutcome.FAILED
    with pytest.raises(ServingError) as caught:
        failing.finish()
    assert (caught.value.code, caught.value.message) == (
        Code.INTERNAL,
        "ValueError: negative input",
    )
    slow.waitable.wait()
    assert slow.finish()["y"].tolist() == [1998.0]
    empty = servable.start(
        signature, {"x": np.zeros(0, np.float32), "tag": np.zeros(0, np.int64)}, ("y",)
    )
    assert isinstance(empty, dict) and empty["y"].shape == (0,)


def test_expired_task_is_answered_and_never_run(make: Callable[..., BatchingServable]) -> None:
    servable = make(threads=1, max_batch_size=1, batch_timeout_micros=0)
    slow = threading.Thread(
        target=call, args=(servable, "serving_default", np.array([999], np.float32), np.array([0]))
    )
    slow.start()
    assert observed.wait_for(0)
    with pytest.raises(ServingError) as caught:
        call(
            servable,
            "serving_default",
            np.array([5], np.float32),
            np.array([66]),
            context=RunContext.within(0.05),
        )
    assert (caught.value.code, caught.value.message) == (
        Code.DEADLINE_EXCEEDED,
        "Run() timeout exceeded while waiting in batching queue",
    )
    slow.join()
    # One batch thread, one task a batch: once a later task has run, the expired one was
    # dropped or would have run before it.
    call(servable, "serving_default", np.array([5], np.float32), np.array([67]))
    tags = [tag for c in observed.take() for tag in c.tags]
    assert 67 in tags and 66 not in tags


request_strategy = st.lists(
    st.tuples(
        st.integers(1, 6),  # rows
        st.sampled_from(["serving_default", "triple"]),
        st.sampled_from([("y", "tag", "rows"), ("y",), ("tag", "y")]),  # output filter
        st.sampled_from([False, False, False, True]),  # the model raises on it
        st.sampled_from([None, None, None, 0.0]),  # no deadline, or one already passed
    ),
    min_size=1,
    max_size=24,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    requests=request_strategy,
    max_batch_size=st.sampled_from([4, 8, 16]),
    timeout_micros=st.sampled_from([0, 1000, 20_000]),
    padded=st.booleans(),
    split=st.booleans(),
    started=st.booleans(),
)
def test_every_caller_gets_its_own_rows(
    make: Callable[..., BatchingServable],
    requests: list,
    max_batch_size: int,
    timeout_micros: int,
    padded: bool,
    split: bool,
    started: bool,
) -> None:
    """...through run(), or through start() without waiting on a thread (`started`)."""
    parameters: dict = {
        "max_batch_size": 16,
        "batch_timeout_micros": timeout_micros,
        "max_enqueued_batches": 1000,
    }
    if split:
        parameters.update(
            enable_large_batch_splitting=True, max_execution_batch_size=max_batch_size
        )
        if padded:
            parameters["allowed_batch_sizes"] = tuple(
                s for s in (2, 4, 8, 16) if s <= max_batch_size
            )
    elif padded:
        parameters["allowed_batch_sizes"] = (2, 4, 8, 16)
    servable = make(threads=2, **parameters)

    def one(index: int) -> tuple[str, object]:
        rows, signature, outputs, fail, deadline = requests[index]
        x = np.arange(rows, dtype=np.float32) + 100 * index
        if fail:
            x[0] = -1.0
        tag = np.full(rows, index)
        context = RunContext.within(deadline) if deadline is not None else None
        try:
            return "ok", call(servable, signature, x, tag, outputs, context, started=started)
        except ServingError as error:
            return error.code.name, error.message

    with ThreadPoolExecutor(len(requests)) as pool:
        results = list(pool.map(one, range(len(requests))))
    calls = observed.take()
    ran_with_failure = {tag for c in calls if c.raised for tag in c.tags}
    ran = {tag for c in calls for tag in c.tags}
    for index, ((rows, signature, outputs, fail, deadline), (kind, value)) in enumerate(
        zip(requests, results, strict=True)
    ):
        if kind == "ok":
            assert isinstance(value, dict)
            assert set(value) == set(outputs)
            x = np.arange(rows, dtype=np.float32) + 100 * index
            assert value["y"].tolist() == (x * FACTORS[signature]).tolist()
            if "tag" in value:
                assert value["tag"].tolist() == [index] * rows
            assert not fail and index not in ran_with_failure
        elif kind == "DEADLINE_EXCEEDED":
            assert deadline is not None and index not in ran  # expired work never runs
        else:
            assert kind == "INTERNAL" and value == "ValueError: negative input", (kind, value)
            assert index in ran_with_failure  # it failed only because its batch raised
    if padded:
        allowed = parameters["allowed_batch_sizes"]
        assert all(
            c.rows in allowed or c.rows > allowed[-1] for c in calls if c.signature != "ragged"
        )
    assert all(
        c.rows <= parameters.get("max_execution_batch_size", 16)
        or c.rows in parameters.get("allowed_batch_sizes", ())
        for c in calls
    )


class _Recorder:
    """A BatchObserver keeping what it is told."""

    def __init__(self) -> None:
        self.input_batch_size: list[int] = []
        self.batches: list[tuple[int, int, list[float]]] = []

    def task_queued(self, rows: int) -> None:
        self.input_batch_size.append(rows)

    def batch_run(self, rows: int, padded: int, latencies: list[float]) -> None:
        self.batches.append((rows, padded, latencies))


def test_metrics_are_recorded_under_tf_servings_meanings(
    make: Callable[..., BatchingServable],
) -> None:
    servable = make(threads=1, max_batch_size=8, allowed_batch_sizes=(4, 8))
    scheduler = servable._scheduler  # the scheduler the server exports metrics from
    recorder = _Recorder()
    scheduler.metrics = recorder
    call(servable, "serving_default", np.array([1, 2, 3], np.float32), np.array([1, 2, 3]))
    assert recorder.input_batch_size == [3]
    [(rows, padded, latencies)] = recorder.batches
    assert (rows, padded) == (3, 4)  # padded to an allowed size
    assert len(latencies) == 1 and latencies[0] >= 0


def test_nothing_is_recorded_when_the_servers_metrics_are_off(
    make: Callable[..., BatchingServable],
) -> None:
    """A server without metrics gives its scheduler no observer: nothing grows per request."""
    from fastserve.observability.metrics import Metrics

    servable = make(threads=1, max_batch_size=8)
    scheduler = servable._scheduler
    Metrics(enabled=False).add_batching(scheduler)
    assert scheduler.metrics is None
    call(servable, "serving_default", np.array([1, 2, 3], np.float32), np.array([1, 2, 3]))
    Metrics(enabled=True).add_batching(scheduler)
    assert scheduler.metrics is not None


def test_an_unloaded_version_is_not_kept_alive_by_the_scheduler(model_dir: Path) -> None:
    """Regression: the scheduler kept each removed queue's entry, and with it the version's
    servable (for TensorFlow its graph), for as long as the server ran."""
    scheduler = BatchScheduler(1)
    try:
        inner = PythonLoader().load(str(model_dir), LoadOptions())
        alive = weakref.ref(inner)
        servable = BatchingServable(
            inner, scheduler, BatchingParameters(max_batch_size=8).checked()
        )
        result = call(servable, "serving_default", np.ones(2, np.float32), np.zeros(2, np.int64))
        assert result["y"].tolist() == [2.0, 2.0]
        servable.unload()
        del servable, inner, result
        gc.collect()
        assert alive() is None
    finally:
        scheduler.stop()
