"""The C++ core on its own, compiled with sanitizers: any data race or memory error fails."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROGRAMS = {
    "servable_table": (("servable_table.cc",), "all servable table checks passed"),
    "batch_queue": (("batch_queue.cc",), "all batch queue checks passed"),
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
    compiler = shutil.which("g++")
    assert compiler, "g++ is needed to build fastserve's C++ core"
    sources, passed = PROGRAMS[program]
    binary = tmp_path / program
    extra_sources: list[str] = []
    flags: list[str] = []
    if program in NATIVE:
        extra_sources, flags = _native_flags(tmp_path)
    built = subprocess.run(
        [
            compiler,
            "-std=c++17",
            "-O1",
            "-g",
            f"-fsanitize={sanitizer}",
            "-pthread",
            f"-I{REPO / 'csrc'}",
            *(str(REPO / "csrc" / source) for source in sources),
            *extra_sources,
            str(REPO / "tests" / "cpp" / f"{program}_test.cc"),
            "-o",
            str(binary),
            *flags,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-4000:]
    done = subprocess.run([str(binary)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert passed in done.stdout
    assert "WARNING: ThreadSanitizer" not in done.stderr
