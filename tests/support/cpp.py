"""Builds a C++ test program of fastserve's core with a sanitizer and runs it."""

from __future__ import annotations

import atexit
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CSRC = REPO / "csrc"
TESTS = REPO / "tests" / "cpp"
# TensorFlow is not built with sanitizers: TSan is told to ignore races in its own frames.
TENSORFLOW_TSAN = f"suppressions={TESTS / 'tensorflow_tsan.supp'}"


# Object files compiled in this test session, by source and flags: most programs share the
# tensor, table, batching and gRPC parts and the generated protos, so each is compiled once
# per sanitizer. Removed when the session ends.
_WORK = Path(tempfile.mkdtemp(prefix="fastserve-cpp-"))
atexit.register(shutil.rmtree, _WORK, True)
_OBJECTS: dict[tuple[str, tuple[str, ...]], Path] = {}
_LINK_ONLY = ("-l", "-L", "-Wl,")


def _compiler() -> str:
    compiler = shutil.which("g++")
    assert compiler, "g++ is needed to build fastserve's C++ core"
    return compiler


def _object(source: Path, flags: tuple[str, ...]) -> Path:
    """`source` compiled with `flags` (once per session); fails with the compiler's output."""
    key = (str(source), flags)
    found = _OBJECTS.get(key)
    if found is not None:
        return found
    digest = hashlib.sha256(repr(key).encode()).hexdigest()[:16]
    target = _WORK / f"{source.stem}-{digest}.o"
    built = subprocess.run(
        [_compiler(), *flags, "-c", str(source), "-o", str(target)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-4000:]
    _OBJECTS[key] = target
    return target


def build(
    tmp_path: Path,
    program: str,
    sanitizer: str,
    sources: Sequence[str],
    extra: Sequence[str] = (),
) -> Path:
    """Compiles csrc/`sources` and tests/cpp/`program`_test.cc (plus `extra`: more sources,
    compiler and linker flags) with -fsanitize=`sanitizer`, as many at once as there are
    CPUs, and links them; returns the binary. Fails with the compiler's output."""
    more = [Path(item) for item in extra if item.endswith(".cc")]
    flags = [item for item in extra if not item.endswith(".cc")]
    common = ("-std=c++17", "-O1", "-g", f"-fsanitize={sanitizer}", "-pthread")
    compile_flags = (
        *common,
        f"-I{CSRC}",
        f"-I{TESTS}",
        *(flag for flag in flags if not flag.startswith(_LINK_ONLY)),
    )
    units = [*(CSRC / source for source in sources), *more, TESTS / f"{program}_test.cc"]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        objects = list(pool.map(lambda unit: _object(unit, compile_flags), units))
    binary = tmp_path / program
    linked = subprocess.run(
        [_compiler(), *common, *map(str, objects), "-o", str(binary), *flags],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert linked.returncode == 0, linked.stderr[-4000:]
    return binary


@functools.cache
def _generated_protos() -> Path:
    """protos/ compiled to C++ by protoc, once per session."""
    out = _WORK / "protos"
    out.mkdir()
    protos = sorted(str(p.relative_to(REPO / "protos")) for p in (REPO / "protos").rglob("*.proto"))
    subprocess.run(
        ["protoc", f"--proto_path={REPO / 'protos'}", f"--cpp_out={out}", *protos],
        check=True,
        capture_output=True,
    )
    return out


def native_flags(beside_tensorflow: bool = False) -> list[str]:
    """For programs that use the protos and grpc++: the C++ sources protoc made of protos/,
    and grpc++/protobuf's compiler and linker flags.

    `beside_tensorflow`: for a program that also dlopens TensorFlow, whose libraries carry
    and export their own protobuf. The program then links protobuf statically and no grpc++
    library (grpc++'s headers only), so that no shared library of its makes protobuf's
    symbols global, where TensorFlow's calls to its own copy would bind to them."""
    out = _generated_protos()
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
