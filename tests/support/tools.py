"""Debian's tools some tests drive servers with: present, or a skip that names the package.

`scripts/debian-packages test` installs them; without root a user can still run the suite,
and the tests that need a missing tool say which package would run them."""

from __future__ import annotations

import shutil

import pytest

PACKAGES = {"h2load": "nghttp2-client", "wrk": "wrk", "prometheus": "prometheus"}


def require(*tools: str) -> None:
    """Skips the calling test, naming the Debian packages, unless every tool is installed."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        packages = " ".join(PACKAGES[tool] for tool in missing)
        pytest.skip(
            f"{', '.join(missing)} not installed: scripts/debian-packages test "
            f"(apt-get install --no-install-recommends {packages})"
        )


def summary() -> str:
    """One line for pytest's header: which optional tools this run has."""
    found = [f"{tool} {'yes' if shutil.which(tool) else 'NO'}" for tool in PACKAGES]
    return "Debian tools: " + ", ".join(found)
