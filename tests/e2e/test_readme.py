"""The README's Quickstart, run as written against the bundled example server: every curl
command and the gRPC client, each answer compared with the one the README shows; and the
commands of "Your own models" start a server that becomes ready."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.server import ServerProcess

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
ENV = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.index("\n## ", start + 1)
    return README[start:end]


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.DOTALL)


def commands(block: str) -> list[tuple[str, str | None]]:
    """Each command of a shell block with the answer the README shows for it: a comment at
    the end of its line, or a comment line right after it (None when there is none)."""
    lines = block.replace("\\\n", " ").splitlines()
    found: list[tuple[str, str | None]] = []
    for index, line in enumerate(lines):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        command, _, trailing = line.partition("  #")
        shown = trailing.strip() or None
        following = lines[index + 1].strip() if index + 1 < len(lines) else ""
        if shown is None and following.startswith("# {"):
            shown = following[2:]
        found.append((command.strip(), shown))
    return found


QUICKSTART = section("Quickstart")
CURLS = [(c, shown) for block in blocks(QUICKSTART, "sh") for c, shown in commands(block)]


@pytest.fixture(scope="module")
def example_server() -> Iterator[ServerProcess]:
    server = ServerProcess([f"--config={REPO / 'examples' / 'models.yaml'}"]).ready()
    yield server
    assert server.terminate() == 0, server.output


def test_the_quickstart_shows_commands_with_answers() -> None:
    assert len(CURLS) >= 8
    assert all(command.startswith("curl ") for command, _ in CURLS)
    assert sum(shown is not None for _, shown in CURLS) >= 6


@pytest.mark.parametrize(("command", "shown"), CURLS, ids=[c for c, _ in CURLS])
def test_quickstart_curl(example_server: ServerProcess, command: str, shown: str | None) -> None:
    local = command.replace("localhost:8501", f"127.0.0.1:{example_server.rest_port}")
    done = subprocess.run(["bash", "-c", local], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    if shown is not None:
        assert answer == json.loads(shown)
    else:
        assert "error" not in answer


def test_quickstart_grpc_client(example_server: ServerProcess) -> None:
    (script,) = blocks(QUICKSTART, "python")
    printed = re.search(r"^print\(.*#\s*(.+)$", script, re.MULTILINE)
    assert printed is not None
    local = script.replace("localhost:8500", f"127.0.0.1:{example_server.grpc_port}")
    done = subprocess.run(
        [sys.executable, "-c", local], capture_output=True, text=True, timeout=120, env=ENV
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == printed.group(1).strip()


def _own_model_commands() -> list[str]:
    (block,) = blocks(section("Your own models"), "sh")
    return [command for command, _ in commands(block)]


def test_your_own_models_commands_start_a_server(tmp_path: Path) -> None:
    """Each `fastserve` line starts a server (on free ports instead of 8500 and 8501); the
    lines before it run as written (with /tmp/ moved to this test's folder)."""
    started = 0
    for command in _own_model_commands():
        command = command.replace("/tmp/", f"{tmp_path}/")
        words = shlex.split(command)
        if words[0] != "fastserve":
            done = subprocess.run(
                ["bash", "-c", command], cwd=REPO, capture_output=True, text=True, env=ENV
            )
            assert done.returncode == 0, done.stderr
            continue
        flags = [w for w in words[1:] if not w.startswith(("--port=", "--rest_api_port="))]
        server = ServerProcess(flags, cwd=str(REPO)).ready()
        try:
            answer = server.http.post("/v1/models/half_plus_two:predict", json={"instances": [2.0]})
            assert answer.json() == {"predictions": [4.0]}  # the latest, 2: 0.5 * x + 3
        finally:
            assert server.terminate() == 0, server.output
        started += 1
    assert started == 2
