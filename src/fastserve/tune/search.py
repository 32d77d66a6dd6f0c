"""The search over batching settings: candidates, measured points, and which point is best."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from fastserve.tune.load import LoadResult
from fastserve.tune.processes import cores

# --- candidates and measured points ------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """One batching setting to measure."""

    max_batch_size: int
    batch_timeout_micros: int
    num_batch_threads: int
    max_enqueued_batches: int

    @property
    def label(self) -> str:
        return (
            f"max_batch_size {self.max_batch_size}, timeout {self.batch_timeout_micros} µs, "
            f"{self.num_batch_threads} thread(s)"
        )

    def text_proto(self) -> str:
        return (
            f"max_batch_size {{ value: {self.max_batch_size} }}\n"
            f"batch_timeout_micros {{ value: {self.batch_timeout_micros} }}\n"
            f"max_enqueued_batches {{ value: {self.max_enqueued_batches} }}\n"
            f"num_batch_threads {{ value: {self.num_batch_threads} }}\n"
        )


@dataclass
class Point:
    """A candidate (None: batching off, or a running server as it is) and what it achieved:
    requests answered OK in `seconds`, their p50 and p99 (infinite without any), requests
    failed, and the status of one failed request when one was seen."""

    candidate: Candidate | None
    requests: int
    seconds: float
    p50: float
    p99: float
    failed: int
    took: float = 0.0  # wall seconds this point cost, start-up included
    error: str = ""

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def meets(self, p99_target: float) -> bool:
        return self.requests > 0 and self.failed == 0 and self.p99 <= p99_target


def point_of(candidate: Candidate | None, measured: LoadResult, took: float = 0.0) -> Point:
    answered = measured.requests > 0
    return Point(
        candidate,
        measured.requests,
        measured.seconds,
        measured.p50 if answered else math.inf,
        measured.p99 if answered else math.inf,
        measured.failed,
        took,
        measured.error_sample,
    )


def better(a: Point, b: Point | None, p99_target: float) -> bool:
    """Whether `a` beats `b`: a point within the target beats one outside it; within it the
    higher throughput wins (the lower p99 on a tie); outside it, the lower p99."""
    if b is None:
        return True
    if a.meets(p99_target) != b.meets(p99_target):
        return a.meets(p99_target)
    if a.meets(p99_target):
        return (a.throughput, -a.p99) > (b.throughput, -b.p99)
    return (a.failed, a.p99) < (b.failed, b.p99)


# --- the search --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Space:
    sizes: tuple[int, ...]
    timeouts: tuple[int, ...]
    threads: tuple[int, ...]
    max_enqueued_batches: int

    def start(self, in_flight_rows: int) -> Candidate:
        """The first point: a batch of about half the rows in flight, 1 ms, every core."""
        fitting = [s for s in self.sizes if s <= max(1, in_flight_rows // 2)]
        size = fitting[-1] if fitting else self.sizes[0]
        timeout = 1000 if 1000 in self.timeouts else self.timeouts[len(self.timeouts) // 2]
        threads = cores() if cores() in self.threads else self.threads[-1]
        return Candidate(size, timeout, threads, self.max_enqueued_batches)


def search(
    measure: Callable[[Candidate], Point],
    space: Space,
    in_flight_rows: int,
    p99_target: float,
    budget_seconds: float,
    log: Callable[[str], None],
    began: float | None = None,
) -> list[Point]:
    """Coordinate-wise search; returns every point measured, in order. At least one point is
    measured whatever the budget; another starts only if it is expected to end within it
    (the budget counts from `began`, a time.monotonic(), by default now)."""
    began = time.monotonic() if began is None else began
    points: dict[Candidate, Point] = {}
    best: Point | None = None

    def affordable() -> bool:
        if not points:
            return True
        cost = max(p.took for p in points.values())
        return time.monotonic() - began + cost <= budget_seconds

    def visit(candidate: Candidate) -> bool:
        """Measures `candidate` unless already measured; False when the budget is spent."""
        nonlocal best
        if candidate in points:
            return True
        if not affordable():
            return False
        point = measure(candidate)
        points[candidate] = point
        log(describe(point, p99_target))
        if better(point, best, p99_target):
            best = point
        return True

    if not visit(space.start(in_flight_rows)):
        return list(points.values())
    coordinates: list[tuple[str, tuple[int, ...]]] = [
        ("max_batch_size", space.sizes),
        ("batch_timeout_micros", space.timeouts),
        ("num_batch_threads", space.threads),
    ]
    for _round in range(3):
        before = best
        for field, values in coordinates:
            assert best is not None and best.candidate is not None
            centre = best.candidate
            for value in values:
                if not visit(replace(centre, **{field: value})):
                    return list(points.values())
        if best is before:
            break
    return list(points.values())


def describe(point: Point, p99_target: float, what: str = "") -> str:
    """A line of progress: the point's label (or `what`), its figures, and any failures."""
    what = what or (point.candidate.label if point.candidate else "the running server")
    mark = "meets" if point.meets(p99_target) else "misses"
    return (
        f"{what}: {point.throughput:,.0f} requests/s, p50 {point.p50 * 1e3:.2f} ms, "
        f"p99 {point.p99 * 1e3:.2f} ms ({mark} the target){failures(point)}"
    )


def failures(point: Point) -> str:
    """`, N of M requests failed (e.g. CODE: details)`, or nothing when none failed."""
    if not point.failed:
        return ""
    example = f" (e.g. {point.error})" if point.error else ""
    return f", {point.failed:,} of {point.failed + point.requests:,} requests failed{example}"
