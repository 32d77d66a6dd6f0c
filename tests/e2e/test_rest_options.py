"""REST options: CORS, gzip-encoded bodies and the request deadline."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import pytest

from support.lifecycle import slow_model
from support.server import ServerProcess


@pytest.fixture()
def slow_config(tmp_path: Path) -> Path:
    slow_model(tmp_path / "slow" / "1", 1)
    config = tmp_path / "models.yaml"
    config.write_text(
        f"models:\n  - {{name: slow, base_path: {tmp_path / 'slow'}, model_platform: python}}\n"
    )
    return config


def test_cors_headers_and_preflight(
    slow_config: Path, start_server: Callable[..., ServerProcess]
) -> None:
    server = start_server(f"--config={slow_config}", "--rest_api_enable_cors_support")
    answer = server.http.post("/v1/models/slow:predict", json={"instances": [0.0]})
    assert answer.json() == {"predictions": [1.0]}
    assert answer.headers["access-control-allow-origin"] == "*"
    assert answer.headers["access-control-allow-methods"] == "POST, GET"
    assert answer.headers["access-control-allow-headers"] == "Content-Type"
    error = server.http.get("/v1/models/nope")
    assert error.status_code == 404 and error.headers["access-control-allow-origin"] == "*"
    preflight = server.http.options(
        "/v1/models/slow:predict",
        headers={"Origin": "http://example.com", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-methods"] == "POST, GET"


def test_no_cors_headers_by_default(server: ServerProcess) -> None:
    answer = server.http.get("/v1/models/half_plus_two")
    assert "access-control-allow-origin" not in answer.headers
    assert server.http.options("/v1/models/half_plus_two").status_code == 400


def test_gzip_request_bodies(server: ServerProcess) -> None:
    body = gzip.compress(b'{"instances": [1.0, 2.0, 5.0]}')
    answer = server.http.post(
        "/v1/models/half_plus_two:predict",
        content=body,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert answer.json() == {"predictions": [3.5, 4.0, 5.5]}
    broken = server.http.post(
        "/v1/models/half_plus_two:predict",
        content=body[:-8] + b"garbage!",
        headers={"Content-Encoding": "gzip"},
    )
    assert broken.status_code == 400
    assert broken.json()["error"].startswith("Failed to decompress gzip request body")
    cut = server.http.post(
        "/v1/models/half_plus_two:predict", content=body[:10], headers={"Content-Encoding": "gzip"}
    )
    assert cut.json() == {"error": "Failed to decompress gzip request body: it is truncated"}
    bomb = gzip.compress(b" " * (100 * 1024 * 1024 + 1))
    answer = server.http.post(
        "/v1/models/half_plus_two:predict", content=bomb, headers={"Content-Encoding": "gzip"}
    )
    assert answer.json() == {
        "error": "Failed to decompress gzip request body: it is larger than 104857600 bytes"
    }


def test_rest_deadline_answers_504_and_the_server_keeps_serving(
    slow_config: Path, start_server: Callable[..., ServerProcess]
) -> None:
    server = start_server(f"--config={slow_config}", "--rest_api_timeout_in_ms=300")
    late = server.http.post("/v1/models/slow:predict", json={"instances": [2.0]})
    assert (late.status_code, late.json()) == (504, {"error": "Timed out waiting for notification"})
    quick = server.http.post("/v1/models/slow:predict", json={"instances": [0.0]})
    assert quick.json() == {"predictions": [1.0]}
