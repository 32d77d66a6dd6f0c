"""fastserve.tune.load without a server: percentiles and how a result words its errors (the
generators themselves run against real servers in tests/e2e/test_tune.py and the benchmarks'
smoke tests)."""

from __future__ import annotations

import math

from fastserve.tune.load import LoadResult, grpc_frame, percentile


def test_percentile_is_the_nearest_rank() -> None:
    values = [float(v) for v in range(100, 0, -1)]  # 100 .. 1, unsorted
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([3.0], 99) == 3.0
    assert math.isnan(percentile([], 50))


def test_a_result_counts_failed_requests_apart_from_answered_ones() -> None:
    result = LoadResult(
        generator="h2load",
        concurrency=2,
        connections=2,
        seconds=2.0,
        requests=10,
        p50=0.001,
        p99=0.002,
        mean=0.001,
        generator_cpu=0.5,
        errors={"gRPC errors (HTTP 200 without a message)": 5, "timeouts": 1},
        error_sample="INTERNAL: the model failed",
    )
    assert result.failed == 6 and result.throughput == 5.0
    assert result.describe_errors() == (
        "gRPC errors (HTTP 200 without a message) 5, timeouts 1 (e.g. INTERNAL: the model failed)"
    )


def test_a_grpc_frame_is_uncompressed_with_a_big_endian_length() -> None:
    assert grpc_frame(b"abc") == b"\x00\x00\x00\x00\x03abc"
