"""What tune prints and writes: the table of points, the parameters file, the plot."""

from __future__ import annotations

import argparse
import math
import shlex
import time
from collections.abc import Sequence
from pathlib import Path

from fastserve.tune.search import Point


def table(
    points: Sequence[Point], chosen: Point | None, p99_target: float, unbatched: str = ""
) -> list[str]:
    """A Markdown table of the points; a point without a candidate is shown as `unbatched`
    (a reference row that is never chosen) or as the running server."""
    out = [
        "| # | max_batch_size | batch_timeout_micros | num_batch_threads | requests/s | "
        "p50 ms | p99 ms | failed | within p99? |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: |",
    ]
    for i, p in enumerate(points, 1):
        c = p.candidate
        if c is not None:
            cells = [str(c.max_batch_size), str(c.batch_timeout_micros), str(c.num_batch_threads)]
        else:
            cells = [unbatched or "(the running server as it is)", "", ""]
        mark = "**chosen**" if p is chosen else ("yes" if p.meets(p99_target) else "no")
        out.append(
            f"| {i if c is not None or not unbatched else '-'} | {' | '.join(cells)} | "
            f"{p.throughput:,.0f} | {p.p50 * 1e3:.2f} | "
            f"{p.p99 * 1e3:.2f} | {p.failed} | {mark} |"
        )
    return out


def parameters_text(
    chosen: Point, reference: Point, points: Sequence[Point], args: argparse.Namespace
) -> str:
    assert chosen.candidate is not None
    header = [
        f"# Written by `fastserve tune` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        f"# Model {args.model_name}; load: {args.concurrency} concurrent gRPC Predict requests "
        f"of {args.rows_per_request_used} row(s), sent by {args.generator_description}.",
        f"# Highest throughput of {len(points)} settings measured with p99 <= "
        f"{args.p99_ms:g} ms: {chosen.throughput:,.0f} requests/s, p50 "
        f"{chosen.p50 * 1e3:.2f} ms, p99 {chosen.p99 * 1e3:.2f} ms over {chosen.seconds:g} s.",
        f"# The same load without batching: {reference.throughput:,.0f} requests/s, p50 "
        f"{reference.p50 * 1e3:.2f} ms, p99 {reference.p99 * 1e3:.2f} ms.",
        f"# Servers ran with: {shlex.join(args.server_flags)}",
        "# Serve with: fastserve --enable_batching --batching_parameters_file=<this file> ...",
    ]
    return "\n".join(header) + "\n" + chosen.candidate.text_proto()


def plot(
    points: Sequence[Point],
    chosen: Point | None,
    p99_target: float,
    path: Path,
    reference: Point | None = None,
) -> bool:
    """Throughput against p99 of every point measured that answered requests, if matplotlib is
    installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    points = [p for p in points if math.isfinite(p.p99)]
    figure, axis = plt.subplots(figsize=(9, 5.5))
    threads = sorted({p.candidate.num_batch_threads for p in points if p.candidate})
    markers = "osD^v"
    for i, count in enumerate(threads):
        mine = [p for p in points if p.candidate and p.candidate.num_batch_threads == count]
        axis.scatter(
            [p.p99 * 1e3 for p in mine],
            [p.throughput for p in mine],
            marker=markers[i % len(markers)],
            label=f"{count} batch thread(s)",
        )
        for p in mine:
            assert p.candidate is not None
            axis.annotate(
                f"{p.candidate.max_batch_size}/{p.candidate.batch_timeout_micros}",
                (p.p99 * 1e3, p.throughput),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
    if chosen is not None and math.isfinite(chosen.p99):
        axis.scatter(
            [chosen.p99 * 1e3], [chosen.throughput], s=200, facecolors="none",
            edgecolors="red", label="chosen",
        )  # fmt: skip
    if reference is not None and math.isfinite(reference.p99):
        axis.scatter(
            [reference.p99 * 1e3], [reference.throughput], marker="x", color="black",
            label="batching off",
        )  # fmt: skip
    axis.axvline(p99_target * 1e3, color="grey", linestyle="--", label="p99 target")
    axis.set_xlabel("p99 latency (ms)")
    axis.set_ylabel("requests/s")
    axis.set_title("fastserve tune: each point labelled max_batch_size/batch_timeout_micros")
    axis.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True
