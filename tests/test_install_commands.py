"""The README's test command is what CI runs, and its Debian step works without root."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "debian-packages"


def readme_commands() -> list[str]:
    """The README's first two commands: install and serve, install and test."""
    text = (REPO / "README.md").read_text()
    return re.findall(r"```sh\n(.*?)\n```", text, re.DOTALL)[:2]


def test_ci_runs_the_readmes_test_command() -> None:
    _, test_command = readme_commands()
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert ci[-1] == test_command
    assert test_command.endswith(".venv/bin/pytest")


def test_debian_packages_are_installed_without_recommends() -> None:
    assert "--no-install-recommends" in SCRIPT.read_text()
    assert "scripts/debian-packages build test" in readme_commands()[1]
    assert "scripts/debian-packages build" in readme_commands()[0]


def test_without_root_the_debian_step_names_the_packages_and_lets_the_suite_run() -> None:
    done = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(SCRIPT), "test"],
        env=dict(os.environ, FASTSERVE_TEST_PACKAGES="fastserve-no-such-package"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    assert done.stderr.splitlines() == [
        "scripts/debian-packages: cannot install fastserve-no-such-package (not root, and no "
        "sudo without a password); as root: apt-get install -y --no-install-recommends "
        "fastserve-no-such-package. The tests that need them will say so and skip."
    ]


def test_installed_packages_are_left_alone() -> None:
    done = subprocess.run(
        [str(SCRIPT), "test"],
        env=dict(os.environ, FASTSERVE_TEST_PACKAGES="bash coreutils"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stderr) == (0, "")
