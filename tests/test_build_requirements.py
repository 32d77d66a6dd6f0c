"""`pip install .` on a machine without grpc++'s build tools stops at once with one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_setup_names_the_debian_packages_when_the_tools_are_missing(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "setup.py"), "--version"],
        cwd=REPO,
        env={"PATH": str(tmp_path)},  # no pkg-config, protoc or compiler here
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        "fastserve: cannot build the native server: pkg-config is missing. On Debian/Ubuntu "
        "run `scripts/debian-packages build` (apt-get install --no-install-recommends "
        "libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc pkg-config)."
    ]
