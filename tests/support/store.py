"""Test models built once per session, and copies of them that tests may change."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from pathlib import Path

from support import models


class ModelStore:
    """Builds each test model once per session; copies them into folders tests may change."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()

    def _built(self, key: str, build: Callable[[Path], object]) -> Path:
        with self._lock:
            path = self.root / key
            if not path.exists():
                staging = self.root / f".{key}.partial"
                shutil.rmtree(staging, ignore_errors=True)
                build(staging)
                staging.rename(path)
            return path

    def half_plus_two(self, add: float = 2.0) -> Path:
        return self._built(f"half_plus_two_add{add}", lambda p: models.half_plus_two_v1(p, add))

    def tf_serving_half_plus_two(self) -> Path:
        """Exactly the signatures of TF Serving's own half_plus_two."""
        return self._built("tfs_half_plus_two", lambda p: models.half_plus_two_v1(p, extra=False))

    def half_plus_two_tf2(self, add: float = 2.0) -> Path:
        return self._built(f"tf2_add{add}", lambda p: models.half_plus_two_tf2(p, add))

    def tf_serving_half_plus_two_tf2(self) -> Path:
        """TF Serving's TF2 half_plus_two: the same signatures, each with its own input."""
        return self._built("tfs_half_plus_two_tf2", models.half_plus_two_tf2_signatures)

    def half_plus_three(self) -> Path:
        return self._built("half_plus_three", models.half_plus_three)

    def counter(self) -> Path:
        return self._built("counter", models.counter)

    def string_pair(self) -> Path:
        return self._built("string_pair", models.string_pair)

    def mixed(self) -> Path:
        return self._built("mixed", models.mixed_inputs)

    def echo(self, offset: float = 1.0) -> Path:
        return self._built(f"echo_{offset}", lambda p: models.echo_model(p, offset))

    def install(self, source: Path, target: Path) -> Path:
        """Copies a built version folder to `target` (for example base_path/7)."""
        staging = target.parent / f".{target.name}.copying"
        shutil.copytree(source, staging)
        staging.rename(target)  # appears at once, as a finished export does
        return target
