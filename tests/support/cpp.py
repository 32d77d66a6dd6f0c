"""Builds a C++ test program of fastserve's core with a sanitizer and runs it."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CSRC = REPO / "csrc"
TESTS = REPO / "tests" / "cpp"
# TensorFlow is not built with sanitizers: TSan is told to ignore races in its own frames.
TENSORFLOW_TSAN = f"suppressions={TESTS / 'tensorflow_tsan.supp'}"


def build(
    tmp_path: Path,
    program: str,
    sanitizer: str,
    sources: Sequence[str],
    extra: Sequence[str] = (),
) -> Path:
    """Compiles csrc/`sources` and tests/cpp/`program`_test.cc (plus `extra` sources and
    flags) with -fsanitize=`sanitizer`; returns the binary. Fails with the compiler's output."""
    compiler = shutil.which("g++")
    assert compiler, "g++ is needed to build fastserve's C++ core"
    binary = tmp_path / program
    built = subprocess.run(
        [
            compiler,
            "-std=c++17",
            "-O1",
            "-g",
            f"-fsanitize={sanitizer}",
            "-pthread",
            f"-I{CSRC}",
            *(str(CSRC / source) for source in sources),
            str(TESTS / f"{program}_test.cc"),
            "-o",
            str(binary),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-4000:]
    return binary


def native_flags(tmp_path: Path, beside_tensorflow: bool = False) -> list[str]:
    """For programs that use the protos and grpc++: compiles protos/ with protoc into
    tmp_path; returns the generated sources and grpc++/protobuf's compiler and linker flags.

    `beside_tensorflow`: for a program that also dlopens TensorFlow, whose libraries carry
    and export their own protobuf. The program then links protobuf statically and no grpc++
    library (grpc++'s headers only), so that no shared library of its makes protobuf's
    symbols global, where TensorFlow's calls to its own copy would bind to them."""
    out = tmp_path / "protos"
    out.mkdir()
    protos = sorted(str(p.relative_to(REPO / "protos")) for p in (REPO / "protos").rglob("*.proto"))
    subprocess.run(
        ["protoc", f"--proto_path={REPO / 'protos'}", f"--cpp_out={out}", *protos],
        check=True,
        capture_output=True,
    )
    asked = ["--cflags"] if beside_tensorflow else ["--cflags", "--libs"]
    pkg = subprocess.run(
        ["pkg-config", *asked, "grpc++", "protobuf"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    if beside_tensorflow:
        pkg += ["-Wl,-Bstatic", "-lprotobuf", "-Wl,-Bdynamic"]
    return [*(str(p) for p in sorted(out.rglob("*.cc"))), f"-I{out}", *pkg]


def run(binary: Path, args: Sequence[str], passed: str, tsan_options: str = "") -> None:
    """Runs a test program; it must exit 0, print `passed`, and no sanitizer may warn."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if tsan_options:
        env["TSAN_OPTIONS"] = tsan_options
    done = subprocess.run(
        [str(binary), *args], capture_output=True, text=True, timeout=600, env=env
    )
    assert done.returncode == 0, done.stdout + done.stderr[-20000:]
    assert passed in done.stdout
    assert "WARNING: ThreadSanitizer" not in done.stderr
