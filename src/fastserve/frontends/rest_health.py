"""The REST health probes: /v1/health/live, /v1/health/ready and /v1/health/ready/<model>."""

from __future__ import annotations

from urllib.parse import unquote

import orjson

from fastserve.errors import HTTP_STATUS, Code
from fastserve.frontends.asgi import Answer, error_answer, json_answer
from fastserve.observability.health import Health

_LIVE = "/v1/health/live"
_READY = "/v1/health/ready"
_READY_MODEL = "/v1/health/ready/"


def _readiness(unready: dict[str, str]) -> Answer:
    if unready:
        return json_answer(orjson.dumps({"status": "NOT_READY", "unready": unready}), 503)
    return json_answer(orjson.dumps({"status": "READY"}))


def health_answer(health: Health, method: str, path: str) -> Answer | None:
    """The answer to a health probe, or None when `method` `path` is not one."""
    if method not in ("GET", "HEAD") or not path.startswith("/v1/health/"):
        return None
    if path == _LIVE:
        return json_answer(b'{"status":"LIVE"}')
    if path == _READY:
        return _readiness(health.unready())
    if path.startswith(_READY_MODEL):
        name = unquote(path[len(_READY_MODEL) :])
        if name not in health.configured():
            return error_answer(f"Model {name} is not configured", HTTP_STATUS[Code.NOT_FOUND])
        ready = health.model_ready(name)
        return _readiness({} if ready else {name: "no version is AVAILABLE"})
    return None
