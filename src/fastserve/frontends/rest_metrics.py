"""The Prometheus endpoint on the REST port (--monitoring_config_file's path)."""

from __future__ import annotations

from fastserve.frontends.asgi import Answer, text_answer
from fastserve.observability.metrics import CONTENT_TYPE, Metrics

_CONTENT_TYPE = CONTENT_TYPE.encode("latin-1")


def metrics_answer(metrics: Metrics, metrics_path: str, path: str) -> Answer | None:
    """The exposition at `metrics_path`, TF Serving's 400 for the path with a suffix or a
    query, None for any other path."""
    if not path.startswith(metrics_path):
        return None
    if path != metrics_path:
        return text_answer(f"Unexpected path: {path}. Should be {metrics_path}", 400)
    return Answer(200, metrics.exposition(), _CONTENT_TYPE)
