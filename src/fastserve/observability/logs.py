"""Logging set-up: --log_level and --log_format (text, or one JSON object per line).

Records may carry fields (`extra={"fields": {...}}`); the text format already has them in
its message, the JSON format adds them as keys, so a log pipeline can filter on
`model`, `version`, `state` without parsing messages.
"""

from __future__ import annotations

import logging
import sys
import time

import orjson

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FORMATS = ("text", "json")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode("utf-8")


def configure(level: str, fmt: str) -> None:
    """Sends fastserve's logs to stderr at `level`, as text or JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # TensorFlow's Python side logs every variable restore at INFO.
    logging.getLogger("tensorflow").setLevel(max(logging.WARNING, root.level))


def quiet_tensorflow(debug: bool) -> None:
    """Keeps TensorFlow's C++ start-up noise (absl's banner, CUDA probes, oneDNN notices) off
    the terminal unless `debug`: its log level goes to errors-only (the user's own
    TF_CPP_MIN_LOG_LEVEL wins), and its import, which logs before any level applies, runs
    now with the process's stderr set aside (printed if the import fails). Call it before
    anything imports TensorFlow; without TensorFlow installed it does nothing."""
    import importlib.util
    import os
    import tempfile

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if debug else "3")
    if debug or "tensorflow" in sys.modules or importlib.util.find_spec("tensorflow") is None:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
