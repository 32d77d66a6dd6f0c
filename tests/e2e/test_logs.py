"""Logs: a structured line per model transition, access logs on request, --log_level."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx

from support.lifecycle import wait_until
from support.requests import X, predict_request
from support.server import ServerProcess
from support.store import ModelStore


def _echo_config(store: ModelStore, tmp_path: Path) -> Path:
    store.install(store.echo(1.0), tmp_path / "echo" / "1")
    config = tmp_path / "models.yaml"
    config.write_text(
        f"models:\n  - {{name: echo, base_path: {tmp_path / 'echo'}, model_platform: python}}\n"
    )
    return config


def _json_lines(output: str) -> list[dict[str, object]]:
    """The lines fastserve wrote (TensorFlow's own C++ logging is not JSON)."""
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_json_logs_with_one_line_per_transition_and_access_logs(
    store: ModelStore, tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    server = start_server(
        f"--config={_echo_config(store, tmp_path)}", "--log_format=json", "--access_log"
    )
    server.prediction.Predict(predict_request("echo", {"x": X}), timeout=30)
    assert server.http.post("/v1/models/echo:predict", json={"instances": [1.0]}).status_code == 200
    wait_until(lambda: "fastserve.access" in server.output and "POST" in server.output)
    lines = _json_lines(server.output)
    transitions = [line for line in lines if line.get("logger") == "fastserve.manager"]
    assert [(t["model"], t["version"], t["state"]) for t in transitions] == [
        ("echo", 1, "START"),
        ("echo", 1, "LOADING"),
        ("echo", 1, "AVAILABLE"),
    ]
    assert all(isinstance(t["duration_s"], float) and t["level"] == "INFO" for t in transitions)
    access = [str(line["message"]) for line in lines if line.get("logger") == "fastserve.access"]
    assert any(m.startswith("grpc Predict model=echo status=OK peer=") for m in access), access
    assert any('"POST /v1/models/echo:predict 1.1" 200' in m for m in access), access
    assert any(line.get("message") == "fastserve is ready" for line in lines)


def test_a_failed_load_is_logged_with_its_error(
    store: ModelStore, tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    (tmp_path / "broken" / "1").mkdir(parents=True)  # a version folder with no SavedModel
    server = start_server(
        f"--model_base_path={tmp_path / 'broken'}",
        "--model_name=broken",
        "--max_num_load_retries=0",
        "--log_format=json",
        ready=False,
    )
    assert server.wait(120) == 1
    ended = [
        line
        for line in _json_lines(server.output)
        if line.get("logger") == "fastserve.manager" and line.get("state") == "END"
    ]
    assert len(ended) == 1
    assert (ended[0]["level"], ended[0]["model"], ended[0]["version"]) == ("ERROR", "broken", 1)
    assert "SavedModel" in str(ended[0]["error"])


def test_no_access_logs_by_default(server: ServerProcess) -> None:
    server.http.get("/v1/models/echo")
    server.prediction.Predict(predict_request("echo", {"x": X}), timeout=30)
    assert "fastserve.access" not in server.output


def test_log_level_warning_hides_info(
    store: ModelStore, tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    server = start_server(
        f"--config={_echo_config(store, tmp_path)}", "--log_level=warning", ready=False
    )

    def ready() -> bool:
        try:
            return server.http.get("/v1/health/ready").status_code == 200
        except httpx.TransportError:
            return False

    wait_until(ready, timeout=120, what="readiness")
    assert server.http.post("/v1/models/echo:predict", json={"instances": [1.0]}).status_code == 200
    assert "state=AVAILABLE" not in server.output
    assert "fastserve is ready" not in server.output
    assert server.terminate() == 0


def test_bad_log_settings_are_usage_errors(start_server: Callable[..., ServerProcess]) -> None:
    for flag, message in [
        ("--log_level=LOUD", "--log_level must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("--log_format=xml", "--log_format must be one of text, json"),
    ]:
        server = start_server("--model_base_path=/nonexistent", flag, ready=False)
        assert server.wait(60) == 2
        assert message in server.output
