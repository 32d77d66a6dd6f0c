"""Builds fastserve's C++ core, the extension module fastserve._core.

The native gRPC server links grpc++ and protobuf from the system (Debian: libgrpc++-dev,
libprotobuf-dev, protobuf-compiler, protobuf-compiler-grpc, pkg-config; `scripts/debian-packages
build` installs them). The .proto files in protos/fastserve/ are compiled to C++ here, into
build/protos; those in protos/tensorflow/ and protos/tensorflow_serving/ (TF Serving's messages
for the Python side) into one descriptor set, src/fastserve/codecs/tfs_protos.binpb, which the
package ships and fastserve.codecs.tfs_protos reads.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from glob import glob
from pathlib import Path
from typing import NoReturn

HERE = Path(__file__).resolve().parent
PROTOS = HERE / "protos"
GENERATED = HERE / "build" / "protos"
DESCRIPTOR_SET = HERE / "src" / "fastserve" / "codecs" / "tfs_protos.binpb"
PACKAGES = ("grpc++", "protobuf")
DEBIAN = "libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc pkg-config"


def _fail(what: str) -> NoReturn:
    sys.exit(
        f"fastserve: cannot build the native server: {what}. On Debian/Ubuntu run "
        f"`scripts/debian-packages build` (apt-get install --no-install-recommends {DEBIAN})."
    )


# Wheels for PyPI (cibuildwheel, scripts/build-grpc-for-wheels): grpc++ and protobuf built
# from source with -fPIC, linked statically, their symbols kept out of the extension's exports.
STATIC = os.environ.get("FASTSERVE_STATIC_GRPC") == "1"


def _pkg_config(*args: str) -> list[str]:
    if shutil.which("pkg-config") is None:
        _fail("pkg-config is missing")
    if STATIC:
        args = ("--static", *args)
    done = subprocess.run(["pkg-config", *args, *PACKAGES], capture_output=True, text=True)
    if done.returncode != 0:
        _fail(f"pkg-config does not know {' and '.join(PACKAGES)}")
    return done.stdout.split()


def _protoc() -> str:
    protoc = shutil.which("protoc")
    if protoc is None:
        _fail("protoc is missing")
    return protoc


def _proto_files(*folders: str) -> list[str]:
    """The .proto files under protos/<folder>, as paths relative to protos/."""
    return sorted(
        str(path.relative_to(PROTOS))
        for folder in folders
        for path in (PROTOS / folder).rglob("*.proto")
    )


def _compile_protos() -> list[str]:
    """protoc and grpc_cpp_plugin turn protos/fastserve/*.proto into C++ sources; returns them."""
    protoc = _protoc()
    plugin = shutil.which("grpc_cpp_plugin")
    if plugin is None:
        _fail("grpc_cpp_plugin is missing")
    with tempfile.TemporaryDirectory() as fresh:
        subprocess.run(
            [
                protoc,
                f"--proto_path={PROTOS}",
                f"--cpp_out={fresh}",
                f"--grpc_out={fresh}",
                f"--plugin=protoc-gen-grpc={plugin}",
                *_proto_files("fastserve"),
            ],
            check=True,
        )
        _update(Path(fresh), GENERATED)
    return sorted(str(p) for p in GENERATED.rglob("*.cc"))


def _update(fresh: Path, kept: Path) -> None:
    """Copies what protoc wrote in `fresh` over `kept`, leaving files whose bytes did not
    change untouched: their unchanged times let a build in the same tree (`pip wheel .` after
    `pip install .`) find the extension up to date instead of compiling it again."""
    for source in fresh.rglob("*"):
        if source.is_dir():
            continue
        target = kept / source.relative_to(fresh)
        if target.is_file() and target.read_bytes() == source.read_bytes():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)


def _write_descriptor_set() -> None:
    """TF Serving's messages for the Python side, with the files they import (protobuf's own
    any.proto and wrappers.proto among them), as one FileDescriptorSet."""
    subprocess.run(
        [
            _protoc(),
            f"--proto_path={PROTOS}",
            "--include_imports",
            f"--descriptor_set_out={DESCRIPTOR_SET}",
            *_proto_files("tensorflow", "tensorflow_serving"),
        ],
        check=True,
    )


# The system's tools are checked before anything else, so that a machine without them gets one
# clear line rather than a compiler's error.
cflags, libs = _pkg_config("--cflags"), _pkg_config("--libs")
generated = _compile_protos()
_write_descriptor_set()

from pybind11.setup_helpers import ParallelCompile, Pybind11Extension, build_ext  # noqa: E402
from setuptools import setup  # noqa: E402

ParallelCompile("NPY_NUM_BUILD_JOBS").install()
core = Pybind11Extension(
    "fastserve._core",
    sorted(glob("csrc/**/*.cc", recursive=True)) + generated,
    include_dirs=["csrc", str(GENERATED)],
    cxx_std=17,
    extra_compile_args=["-O2", "-Wall", "-Wextra", *cflags],
    extra_link_args=[*libs, "-ldl", *(["-Wl,--exclude-libs,ALL"] if STATIC else [])],
)

setup(ext_modules=[core], cmdclass={"build_ext": build_ext})
