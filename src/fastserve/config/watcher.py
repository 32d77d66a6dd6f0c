"""Re-reads the model config file on a period and applies it when it changed."""

from __future__ import annotations

import logging
import threading

from fastserve.config.model_server import load_text_proto
from fastserve.core.models import Models
from fastserve.errors import ConfigError, ServingError

log = logging.getLogger("fastserve.reload")


class ConfigFileWatcher:
    """--model_config_file_poll_wait_seconds: a file that no longer parses, or a config that
    fails, is logged and leaves the models being served as they are."""

    def __init__(self, path: str, period: float, models: Models) -> None:
        self._path = path
        self._period = period
        self._models = models
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="fastserve-config-watcher", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()

    def check_once(self) -> None:
        try:
            config = load_text_proto(self._path).models
        except ConfigError as error:
            log.error("not reloading the model config: %s", error)
            return
        if list(config) == self._models.config:
            return
        log.info("the model config file %s changed; applying it", self._path)
        try:
            self._models.apply(config)
        except ServingError as error:
            log.error("reloading %s: %s", self._path, error.message)

    def _run(self) -> None:
        while not self._stopping.wait(self._period):
            self.check_once()
