"""Where a REST request's work runs: on the event loop (quick work) or on a worker thread,
under the request's deadline (--rest_api_timeout_in_ms)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable
from typing import Any

import anyio.to_thread

from fastserve.errors import Code, ServingError, from_exception
from fastserve.types import RunContext

# The work of a request: given the request's context, the answer's body (or ServingError).
Work = Callable[[RunContext], bytes]

# Bodies larger than this never run on the event loop (their decoding alone takes time).
INLINE_MAX_BODY = 64 * 1024


class InlinePolicy:
    """Which requests run on the event loop instead of a worker thread.

    Handing a request to a worker thread and back costs two thread switches, and the worker
    then competes with the event loop for the GIL: for a model that answers in microseconds
    this costs more than the model. So requests of a kind (model, version or label, verb)
    whose recent runs took less than `threshold` seconds (an exponential average), nearly
    all of it computing on the calling thread, run inline. The first request of each kind
    and slower ones go to the worker threads, and a slow request inline moves its kind back
    there. Work that mostly waits (a servable waiting on another thread or process) does not
    run inline: the loop would wait with it; nor do requests of a batched version (the
    caller checks the version the request resolves to). 0 turns this off.
    """

    _WEIGHT = 0.2
    _MAX_KEYS = 10_000  # keys come from clients' requests: keep them bounded

    def __init__(self, threshold: float) -> None:
        self._threshold = threshold
        self._average: dict[Hashable, tuple[float, float]] = {}  # key -> (wall, waiting)

    def allows(self, key: Hashable) -> bool:
        average = self._average.get(key)
        if average is None:
            return False
        wall, waiting = average
        return wall < self._threshold and waiting < self._threshold / 2

    def measures_cpu(self, key: Hashable) -> bool:
        """Whether a run of `key` on the event loop must read the thread's CPU clock, a
        system call of several microseconds. Not while its runs average under a quarter of
        the threshold: each is then observed as waiting all its wall time, an over-estimate
        that only makes the policy stricter (work whose waiting matters averages more than
        half the threshold, and is measured again)."""
        average = self._average.get(key)
        return average is None or average[0] >= self._threshold / 4

    def observe(self, key: Hashable, wall: float, cpu: float) -> None:
        if self._threshold <= 0:
            return
        waiting = max(0.0, wall - cpu)
        average = self._average.get(key)
        if average is None:
            if len(self._average) < self._MAX_KEYS:
                self._average[key] = (wall, waiting)
            return
        weight = self._WEIGHT
        self._average[key] = (
            average[0] + weight * (wall - average[0]),
            average[1] + weight * (waiting - average[1]),
        )


def _unexpected(error: BaseException) -> ServingError:
    """A bug of ours: the request answers INTERNAL, and the server keeps serving."""
    return from_exception(error)


def run_inline(work: Work, context: RunContext, policy: InlinePolicy, key: Hashable) -> bytes:
    """Runs `work` on the calling thread (the event loop's) and tells `policy` how long it
    took. Raises ServingError."""
    measured = policy.measures_cpu(key)
    cpu = time.thread_time() if measured else 0.0
    started = time.perf_counter()
    try:
        return work(context)
    except ServingError:
        raise
    except Exception as error:
        raise _unexpected(error) from error
    finally:
        wall = time.perf_counter() - started
        policy.observe(key, wall, time.thread_time() - cpu if measured else 0.0)


def _timed(work: Work, context: RunContext) -> tuple[bytes, float, float]:
    """Runs `work`; its result, wall seconds and this thread's CPU seconds."""
    started, cpu = time.perf_counter(), time.thread_time()
    body = work(context)
    return body, time.perf_counter() - started, time.thread_time() - cpu


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Collects the outcome of work whose client stopped waiting for it (or asyncio would
    log it as never retrieved)."""
    if not task.cancelled():
        task.exception()


async def run_on_thread(
    work: Work,
    context: RunContext,
    timeout: float | None,
    policy: InlinePolicy | None = None,
    key: Hashable = None,
) -> bytes:
    """Runs `work` on a worker thread (at most --rest_api_num_threads at once, see
    http_server.py) and waits for it up to `timeout` seconds; tells `policy` how long it
    took. Raises ServingError (DEADLINE_EXCEEDED past the timeout)."""
    # Shielded: a request that times out, or whose client goes away, keeps its worker
    # thread until its work returns (work not started returns at once, see RunContext),
    # so --rest_api_num_threads bounds the threads busy with requests.
    task: asyncio.Future[tuple[bytes, float, float]] = asyncio.ensure_future(
        anyio.to_thread.run_sync(_timed, work, context)
    )
    task.add_done_callback(_retrieve)
    if policy is not None:

        def observe(done: asyncio.Future[tuple[bytes, float, float]]) -> None:
            if not done.cancelled() and done.exception() is None:
                _, wall, cpu = done.result()
                policy.observe(key, wall, cpu)

        task.add_done_callback(observe)
    try:
        body, _, _ = await asyncio.wait_for(asyncio.shield(task), timeout)
        return body
    except ServingError:
        raise
    except (TimeoutError, asyncio.TimeoutError):  # distinct classes before Python 3.11
        # Work not started is dropped; work running finishes and its result is dropped.
        context.cancel()
        raise ServingError(Code.DEADLINE_EXCEEDED, "Timed out waiting for notification") from None
    except asyncio.CancelledError:
        context.cancel()  # the client went away
        raise
    except BaseException as error:
        raise _unexpected(error) from error
