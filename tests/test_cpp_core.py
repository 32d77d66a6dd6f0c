"""The C++ core on its own, compiled with sanitizers: any data race or memory error fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from support import cpp

PROGRAMS = {
    "servable_table": (("table/servable_table.cc",), "all servable table checks passed"),
    "batch_queue": (("batching/batch_queue.cc",), "all batch queue checks passed"),
    "snapshot": ((), "all snapshot checks passed"),
    "python_runner": (("runners/python_runner.cc",), "all python runner checks passed"),
    "grpc_parts": (
        (
            "grpc/call.cc",
            "grpc/worker_pool.cc",
            "grpc/predict_codec.cc",
            "grpc/request_log.cc",
            "tensor/tensor.cc",
        ),
        "all grpc parts checks passed",
    ),
}
# Programs that need the protos compiled and grpc++/protobuf's flags.
NATIVE = {"grpc_parts"}


@pytest.mark.parametrize("program", sorted(PROGRAMS))
@pytest.mark.parametrize("sanitizer", ["thread", "address,undefined"])
def test_core_under_sanitizer(tmp_path: Path, sanitizer: str, program: str) -> None:
    sources, passed = PROGRAMS[program]
    extra = cpp.native_flags() if program in NATIVE else []
    binary = cpp.build(tmp_path, program, sanitizer, sources, extra)
    cpp.run(binary, [], passed)
