"""Version folders of the table kinds (embedding, vocabulary, transform, pipeline), written with
numpy and plain files as a user would write them."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def embedding(
    path: Path, keys: Sequence[str], table: np.ndarray, servable_yaml: str | None = None
) -> Path:
    """embeddings.npy (`table`) and vocab.txt (`keys`, one a line) in `path`."""
    path.mkdir(parents=True, exist_ok=True)
    np.save(path / "embeddings.npy", table)
    (path / "vocab.txt").write_text("".join(f"{key}\n" for key in keys), encoding="utf-8")
    if servable_yaml is not None:
        (path / "servable.yaml").write_text(textwrap.dedent(servable_yaml))
    return path


# The embedding most tests serve: 4 keys, row i is (i + 1) * [1, 10, 100] (float32).
KEYS = ("cat", "dog", "fish", "bird")


def animals(path: Path, scale: float = 1.0, servable_yaml: str | None = None) -> Path:
    rows = np.arange(1, 5, dtype=np.float32)[:, None] * np.array([1, 10, 100], dtype=np.float32)
    return embedding(path, KEYS, rows * np.float32(scale), servable_yaml)


def vocabulary(path: Path, keys: Sequence[str], servable_yaml: str | None = None) -> Path:
    """vocab.txt (`keys`, one a line) and an optional servable.yaml in `path`."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("".join(f"{key}\n" for key in keys), encoding="utf-8")
    if servable_yaml is not None:
        (path / "servable.yaml").write_text(textwrap.dedent(servable_yaml))
    return path


def yaml_folder(path: Path, file_name: str, text: str, **files: str) -> Path:
    """`file_name` holding `text` (dedented), and any other `files` (name -> text), in `path`."""
    path.mkdir(parents=True, exist_ok=True)
    (path / file_name).write_text(textwrap.dedent(text))
    for name, content in files.items():
        (path / name.replace("__", ".")).write_text(content)
    return path


def corrupt_npy(path: Path) -> Path:
    """An embedding folder whose embeddings.npy is cut short (a broken copy)."""
    animals(path)
    data = (path / "embeddings.npy").read_bytes()
    (path / "embeddings.npy").write_bytes(data[:-7])
    return path
