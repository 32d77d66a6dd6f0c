"""The C++ core on its own, compiled with sanitizers: any data race or memory error fails."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from support import cpp

REPO = Path(__file__).resolve().parents[1]
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


def _native_flags(tmp_path: Path) -> tuple[list[str], list[str]]:
    """Compiles protos/ with protoc into tmp_path; returns (sources, flags)."""
    out = tmp_path / "protos"
    out.mkdir()
    protos = sorted(str(p.relative_to(REPO / "protos")) for p in (REPO / "protos").rglob("*.proto"))
    subprocess.run(
        ["protoc", f"--proto_path={REPO / 'protos'}", f"--cpp_out={out}", *protos],
        check=True,
        capture_output=True,
    )
    pkg = subprocess.run(
        ["pkg-config", "--cflags", "--libs", "grpc++", "protobuf"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return [str(p) for p in sorted(out.rglob("*.cc"))], [f"-I{out}", *pkg]


@pytest.mark.parametrize("program", sorted(PROGRAMS))
@pytest.mark.parametrize("sanitizer", ["thread", "address,undefined"])
def test_core_under_sanitizer(tmp_path: Path, sanitizer: str, program: str) -> None:
    sources, passed = PROGRAMS[program]
    extra_sources: list[str] = []
    flags: list[str] = []
    if program in NATIVE:
        extra_sources, flags = _native_flags(tmp_path)
    binary = cpp.build(tmp_path, program, sanitizer, sources, [*extra_sources, *flags])
    cpp.run(binary, [], passed)
