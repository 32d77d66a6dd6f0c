"""Batching: the Python side of the C++ batch scheduler (batch threads, merging, padding and
splitting), and the servable wrapper that sends a version's requests through it.

A request's task waits in C++ (without the GIL) while a batch thread, also waiting in C++
for a ready batch, merges the batch's inputs, runs the model once and hands every task its
own rows. One queue per model version and signature; the batch threads serve all queues in
turn. Tasks whose inputs differ in their non-batch dimensions never share a batch (unless
pad_variable_length_inputs pads them to a common shape).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

import fastserve._core as _core
from fastserve._core import SubmitStatus, TaskOutcome
from fastserve.errors import Code, ServingError, from_exception, internal, invalid_argument
from fastserve.servables.base import Loader, LoadOptions, Pending, Servable
from fastserve.servables.batching_parameters import BatchingParameters
from fastserve.types import RunContext, Signature

log = logging.getLogger("fastserve.batching")


class BatchObserver(Protocol):
    """What batching reports, under TF Serving's batching_session meanings, to whoever exports
    metrics (fastserve.metrics); a scheduler without an observer records nothing."""

    def task_queued(self, rows: int) -> None:
        """A request of `rows` rows entered a queue (input_batch_size)."""

    def batch_run(self, rows: int, padded: int, latencies: list[float]) -> None:
        """A batch of `rows` rows, padded to `padded`, ran; `latencies` are its tasks' queuing
        times in microseconds (processed_batch_size, padding_size, queuing_latency,
        wrapped_run_count)."""


@dataclass(frozen=True)
class _Request:
    """What a task carries into the C++ queue."""

    inputs: Mapping[str, np.ndarray]
    output_names: tuple[str, ...]
    queued_at: float


@dataclass(frozen=True)
class _Queue:
    servable: Servable
    signature: Signature
    parameters: BatchingParameters


class BatchScheduler:
    """The batch threads, shared by every batched model: num_batch_threads of them."""

    def __init__(self, num_batch_threads: int, thread_pool_name: str = "batch_threads") -> None:
        if num_batch_threads <= 0:
            raise ValueError(f"num_batch_threads must be positive; was {num_batch_threads}")
        self._core = _core.BatchScheduler()
        self._queues: dict[int, _Queue] = {}
        self._lock = threading.Lock()
        self._metrics: BatchObserver | None = None
        # The native batchers of versions batched in C++ (their own queues and threads): their
        # metrics are recorded in C++ and handed to the observer at scrape time (drain_native).
        self._native: set[_core.NativeBatcher] = set()
        self._threads = [
            threading.Thread(target=self._serve, name=f"{thread_pool_name}_{index}", daemon=True)
            for index in range(num_batch_threads)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def metrics(self) -> BatchObserver | None:
        return self._metrics

    @metrics.setter
    def metrics(self, observer: BatchObserver | None) -> None:
        with self._lock:
            self._metrics = observer
            for batcher in self._native:
                batcher.set_recording(observer is not None)

    # --- native batchers -----------------------------------------------------------------------

    def add_native(self, batcher: _core.NativeBatcher) -> None:
        """Reports `batcher`'s batches to this scheduler's observer from now on."""
        with self._lock:
            self._native.add(batcher)
            batcher.set_recording(self._metrics is not None)

    def remove_native(self, batcher: _core.NativeBatcher) -> None:
        self.drain_native()
        with self._lock:
            self._native.discard(batcher)

    def drain_native(self) -> None:
        """Hands what the native batchers recorded since the last call to the observer (the
        metrics exporter calls this before each scrape)."""
        with self._lock:
            observer, batchers = self._metrics, list(self._native)
        if observer is None:
            return
        for batcher in batchers:
            task_rows, batches, _dropped = batcher.drain()
            for rows in task_rows:
                observer.task_queued(rows)
            for rows, padded, latencies in batches:
                observer.batch_run(rows, padded, latencies)

    # --- queues --------------------------------------------------------------------------------

    def add_queue(
        self, servable: Servable, signature: Signature, parameters: BatchingParameters
    ) -> int:
        queue_id = self._core.add_queue(
            parameters.max_batch_size,
            parameters.batch_timeout_micros,
            parameters.max_enqueued_batches,
            parameters.enable_large_batch_splitting,
            parameters.execution_batch_size,
        )
        with self._lock:
            self._queues[queue_id] = _Queue(servable, signature, parameters)
        return queue_id

    def remove_queue(self, queue_id: int) -> None:
        """No new tasks, and the queue's entry goes at once with the servable it holds (for
        TensorFlow, its graph). The caller (BatchingServable.unload) calls this after every
        request of the version returned, so no batch of it can still run."""
        self._core.remove_queue(queue_id)
        with self._lock:
            self._queues.pop(queue_id, None)

    def submit(
        self,
        queue_id: int,
        request: _Request,
        rows: int,
        key: str,
        context: RunContext | None,
    ) -> list[dict[str, np.ndarray]]:
        """Queues a task and waits for its parts' outputs (several when it was split)."""
        task = self.enqueue(queue_id, request, rows, key, context)
        if context is not None:
            context.on_cancel(lambda: task.abandon(TaskOutcome.CANCELLED))
        remaining = context.remaining() if context is not None else None
        outcome = task.wait(-1.0 if remaining is None else remaining)
        if outcome == TaskOutcome.PENDING:
            # The deadline passed: work not started yet is never started.
            expired = task.abandon(TaskOutcome.EXPIRED)
            outcome = TaskOutcome.EXPIRED if expired else task.wait()
        return task_outputs(task, outcome)

    def enqueue(
        self,
        queue_id: int,
        request: _Request,
        rows: int,
        key: str,
        context: RunContext | None,
    ) -> _core.Task:
        """Queues a task without waiting for it (raises when the queue refuses it): the task
        ends when its batch ran, or at its deadline when that passes while it is queued, or
        when it is abandoned; task_outputs() then gives its outputs."""
        parameters = self._queues[queue_id].parameters
        remaining = context.remaining() if context is not None else None
        task = _core.Task(request, rows, -1.0 if remaining is None else remaining)
        status = self._core.submit(queue_id, key, task)
        if status != SubmitStatus.OK:
            raise _refusal(status, rows, parameters, self._core.enqueued_batches(queue_id))
        if self.metrics is not None:
            self.metrics.task_queued(rows)
        return task

    def queued_rows(self, queue_id: int) -> int:
        return self._core.queued_rows(queue_id)

    def stop(self) -> None:
        with self._lock:
            native = list(self._native)
        for batcher in native:  # what they hold still runs; their threads then end
            batcher.stop()
        self._core.stop()
        for thread in self._threads:
            thread.join(10)

    # --- batch threads -------------------------------------------------------------------------

    def _serve(self) -> None:
        while True:
            batch = self._core.next_batch()
            if batch is None:
                return
            self._run_batch(*batch)
            # Nothing of the batch (its queue's servable, its tasks) stays referenced here
            # while this thread waits for the next one.
            del batch

    def _run_batch(
        self, queue_id: int, _key: str, rows: int, entries: list[tuple[_core.Task, int, int, int]]
    ) -> None:
        with self._lock:
            queue = self._queues.get(queue_id)
        try:
            if queue is None:
                raise internal(f"batch of an unknown queue {queue_id}")
            self._run(queue, rows, entries)
        except BaseException as error:  # every task of this batch, and only these, fail
            failure = from_exception(error)
            for task, _, _, _ in entries:
                task.fail(failure)

    def _run(
        self, queue: _Queue, rows: int, entries: list[tuple[_core.Task, int, int, int]]
    ) -> None:
        now = time.monotonic()
        requests: list[_Request] = [task.input for task, _, _, _ in entries]
        padded = _padded_size(rows, queue.parameters)
        inputs = _merge(queue.signature, entries, requests, padded - rows, queue.parameters)
        names = sorted({name for request in requests for name in request.output_names})
        if self.metrics is not None:
            latencies = [(now - request.queued_at) * 1e6 for request in requests]
            self.metrics.batch_run(rows, padded, latencies)
        outputs = queue.servable.run(queue.signature, inputs, names)
        for array in outputs.values():
            if array.ndim == 0:
                raise ServingError(
                    Code.FAILED_PRECONDITION, "Batched output tensor has 0 dimensions"
                )
            if array.shape[0] != padded:
                raise ServingError(
                    Code.FAILED_PRECONDITION,
                    "Batched output tensor's 0th dimension does not equal the sum of the 0th "
                    "dimension sizes of the input tensors",
                )
        start = 0
        for (task, part, _, part_rows), request in zip(entries, requests, strict=True):
            task.complete(
                part,
                {name: outputs[name][start : start + part_rows] for name in request.output_names},
            )
            start += part_rows


def task_outputs(task: _core.Task, outcome: TaskOutcome) -> list[dict[str, np.ndarray]]:
    """An ended task's parts' outputs, or its end as a ServingError."""
    if outcome == TaskOutcome.DONE:
        return list(task.outputs())
    if outcome == TaskOutcome.FAILED:
        error = task.error()
        raise error if isinstance(error, ServingError) else internal(str(error))
    if outcome == TaskOutcome.CANCELLED:
        raise ServingError(Code.CANCELLED, "The request was cancelled while it was queued")
    if outcome == TaskOutcome.PENDING:
        raise internal("a batched task's result was read before it ended")
    raise ServingError(
        Code.DEADLINE_EXCEEDED, "Run() timeout exceeded while waiting in batching queue"
    )


def _refusal(
    status: SubmitStatus, rows: int, parameters: BatchingParameters, enqueued: int
) -> ServingError:
    if status == SubmitStatus.TOO_LARGE:
        return invalid_argument(
            f"Task size {rows} is larger than maximum input batch size {parameters.max_batch_size}"
        )
    if status == SubmitStatus.QUEUE_FULL:
        return ServingError(
            Code.UNAVAILABLE,
            "The batch scheduling queue to which this task was submitted is full; currently "
            f"{enqueued} batches enqueued and max_enqueued_batches is "
            f"{parameters.max_enqueued_batches}",
        )
    if status == SubmitStatus.NO_QUEUE:
        return ServingError(Code.UNAVAILABLE, "The model version is being unloaded")
    return invalid_argument("Batching Run() input tensors must have at least one row")


def _padded_size(rows: int, parameters: BatchingParameters) -> int:
    """The smallest allowed batch size that holds `rows` (rows itself without a list, or when
    the batch is larger than every allowed size)."""
    for size in parameters.allowed_batch_sizes:
        if size >= rows:
            return size
    return rows


def _pad_to(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """`array` grown at the end of each non-batch dimension to `shape`, filled with its own
    first element (TF Serving's pad_variable_length_inputs)."""
    if array.shape[1:] == shape:
        return array
    value = array.reshape(-1)[0] if array.size else 0
    padded = np.full((array.shape[0], *shape), value, dtype=array.dtype)
    padded[tuple(slice(0, size) for size in array.shape)] = array
    return padded


def _merge(
    signature: Signature,
    entries: list[tuple[_core.Task, int, int, int]],
    requests: list[_Request],
    padding: int,
    parameters: BatchingParameters,
) -> dict[str, np.ndarray]:
    """Each input of the batch: the tasks' rows stacked in order, padded as configured."""
    merged: dict[str, np.ndarray] = {}
    for alias in signature.input_order:
        pieces = [
            request.inputs[alias][offset : offset + rows]
            for (_, _, offset, rows), request in zip(entries, requests, strict=True)
        ]
        if parameters.pad_variable_length_inputs:
            widest = tuple(
                max(sizes) for sizes in zip(*(piece.shape[1:] for piece in pieces), strict=True)
            )
            pieces = [_pad_to(piece, widest) for piece in pieces]
        if padding:
            # TF Serving pads with copies of the last task's first row.
            pieces.append(np.repeat(pieces[-1][:1], padding, axis=0))
        merged[alias] = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
    return merged


def _shape_key(signature: Signature, inputs: Mapping[str, np.ndarray], pad: bool) -> str:
    """Tasks batch together only when this key matches: the non-batch shapes (only the ranks
    when variable lengths are padded) and dtypes of every input."""
    parts = []
    for alias in signature.input_order:
        array = inputs[alias]
        dims = len(array.shape) - 1 if pad else array.shape[1:]
        parts.append(f"{alias}:{array.dtype.str}:{dims}")
    return "|".join(parts)


class BatchingServable(Servable):
    """A servable whose requests go through batch queues (one per signature, made on first
    use). Requests that cannot be batched (no inputs, or a scalar input) run on their own.

    A servable with a native session (a SavedModel on TensorFlow's C API runner) is batched in
    C++ by its own _core.NativeBatcher (num_batch_threads C++ threads, no GIL): `native` then
    serves gRPC Predict without Python, and run() (REST, warmup, the Python gRPC step) waits
    in the same queues with the GIL released. Other servables take the Python batch threads.
    """

    queues_requests = True

    def __init__(
        self, inner: Servable, scheduler: BatchScheduler, parameters: BatchingParameters
    ) -> None:
        self._inner = inner
        self.runtime = inner.runtime
        self._scheduler = scheduler
        self._parameters = parameters
        self._queues: dict[str, int] = {}
        self._lock = threading.Lock()
        self._batcher: _core.NativeBatcher | None = None
        native = getattr(inner, "native", None)
        session = getattr(inner, "native_session", None)
        if native is not None and session is not None:
            self._batcher = _core.NativeBatcher(
                session,
                max_batch_size=parameters.max_batch_size,
                batch_timeout_micros=parameters.batch_timeout_micros,
                max_enqueued_batches=parameters.max_enqueued_batches,
                enable_large_batch_splitting=parameters.enable_large_batch_splitting,
                max_execution_batch_size=parameters.execution_batch_size,
                num_batch_threads=parameters.num_batch_threads,
                allowed_batch_sizes=list(parameters.allowed_batch_sizes),
                pad_variable_length_inputs=parameters.pad_variable_length_inputs,
            )
            # The native Predict path serves this version through the batcher.
            self.native: Any = _core.batched_native_servable(native, self._batcher)
            scheduler.add_native(self._batcher)
        # Queued for the Python batch threads, a request is Pending until its batch ran.
        self.pends = self._batcher is None

    @property
    def signatures(self) -> Mapping[str, Signature]:
        return self._inner.signatures

    def _queue(self, signature: Signature) -> int:
        found = self._queues.get(signature.name)
        if found is not None:
            return found
        with self._lock:
            found = self._queues.get(signature.name)
            if found is None:
                found = self._scheduler.add_queue(self._inner, signature, self._parameters)
                self._queues[signature.name] = found
            return found

    def run(
        self,
        signature: Signature,
        inputs: Mapping[str, np.ndarray],
        output_names: Sequence[str],
        context: RunContext | None = None,
    ) -> dict[str, np.ndarray]:
        if self._batcher is not None:
            return self._run_native(self._batcher, signature, inputs, output_names, context)
        queued = self._queued(signature, inputs, output_names)
        if queued is None:
            return self._inner.run(signature, inputs, output_names, context)
        queue_id, request, rows, key = queued
        parts = self._scheduler.submit(queue_id, request, rows, key, context)
        return _joined(parts, output_names)

    def start(
        self,
        signature: Signature,
        inputs: Mapping[str, np.ndarray],
        output_names: Sequence[str],
        context: RunContext | None = None,
    ) -> dict[str, np.ndarray] | Pending[dict[str, np.ndarray]]:
        """Queues the request and returns at once: Pending on the queued task. (A native
        batcher's version, or a request that is not batched, runs here and now.)"""
        if self._batcher is not None:
            return self._run_native(self._batcher, signature, inputs, output_names, context)
        queued = self._queued(signature, inputs, output_names)
        if queued is None:
            return self._inner.run(signature, inputs, output_names, context)
        queue_id, request, rows, key = queued
        task = self._scheduler.enqueue(queue_id, request, rows, key, context)
        names = tuple(output_names)
        return Pending(task, lambda: _joined(task_outputs(task, task.outcome), names))

    def _queued(
        self,
        signature: Signature,
        inputs: Mapping[str, np.ndarray],
        output_names: Sequence[str],
    ) -> tuple[int, _Request, int, str] | None:
        """What queueing this request takes (its queue, task input, rows and batch key), or
        None when it runs on its own: no inputs, a scalar input, or no rows."""
        if not inputs or any(array.ndim == 0 for array in inputs.values()):
            return None
        sizes = {array.shape[0] for array in inputs.values()}
        if len(sizes) != 1:
            raise invalid_argument(
                "Batching Run() input tensors must have equal 0th-dimension size"
            )
        (rows,) = sizes
        if rows == 0:
            return None
        request = _Request(inputs, tuple(output_names), time.monotonic())
        key = _shape_key(signature, inputs, self._parameters.pad_variable_length_inputs)
        return self._queue(signature), request, rows, key

    def _run_native(
        self,
        batcher: _core.NativeBatcher,
        signature: Signature,
        inputs: Mapping[str, np.ndarray],
        output_names: Sequence[str],
        context: RunContext | None,
    ) -> dict[str, np.ndarray]:
        from fastserve.servables.tensorflow import _status_from_native

        feeds = {signature.inputs[alias].name: array for alias, array in inputs.items()}
        fetches = [signature.outputs[name].name for name in output_names]
        remaining = context.remaining() if context is not None else None
        try:
            arrays = batcher.run(
                feeds,
                fetches,
                -1.0 if remaining is None else remaining,
                context.on_cancel if context is not None else None,
            )
        except _core.TensorFlowError as error:
            raise _status_from_native(error) from None
        return dict(zip(output_names, arrays, strict=True))

    def run_many(
        self,
        runs: Sequence[tuple[Signature, Sequence[str]]],
        inputs: Mapping[str, np.ndarray],
    ) -> list[dict[str, np.ndarray]]:
        return self._inner.run_many(runs, inputs)

    def queued_rows(self, signature: str) -> int:
        """Rows waiting in the signature's queue (open or ready batches; for a native batcher,
        in all its queues)."""
        if self._batcher is not None:
            return self._batcher.queued_rows()
        queue_id = self._queues.get(signature)
        return 0 if queue_id is None else self._scheduler.queued_rows(queue_id)

    def unload(self) -> None:
        # Every handle is released, so nothing is queued: the queues go, then the model.
        with self._lock:
            queues, self._queues = list(self._queues.values()), {}
        for queue_id in queues:
            self._scheduler.remove_queue(queue_id)
        if self._batcher is not None:
            self._scheduler.remove_native(self._batcher)
            self._batcher.stop()
        self._inner.unload()


def _joined(
    parts: list[dict[str, np.ndarray]], output_names: Sequence[str]
) -> dict[str, np.ndarray]:
    """A task's outputs from its parts' (several when it was split across batches)."""
    if len(parts) == 1:
        return dict(parts[0])
    return {name: np.concatenate([part[name] for part in parts]) for name in output_names}


class BatchingLoader(Loader):
    """Wraps another kind's loader: what it loads is served through batch queues with the
    parameters `parameters_for(version folder)` gives (None: that version is not batched)."""

    def __init__(
        self,
        inner: Loader,
        scheduler: BatchScheduler,
        parameters_for: Callable[[str], BatchingParameters | None],
    ) -> None:
        self.platform = inner.platform
        self._inner = inner
        self._scheduler = scheduler
        self._parameters_for = parameters_for

    def load(self, path: str, options: LoadOptions) -> Servable:
        parameters = self._parameters_for(path)
        if parameters is not None:
            try:
                parameters = parameters.checked()
            except ValueError as error:
                raise invalid_argument(str(error)) from None
        servable = self._inner.load(path, options)
        if parameters is None:
            return servable
        return BatchingServable(servable, self._scheduler, parameters)
