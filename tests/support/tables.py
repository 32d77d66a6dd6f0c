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


# The transform the end-to-end tests serve (and the README shows).
FEATURES = """
inputs:
  age: {dtype: float32, shape: [-1]}
  city: {dtype: string, shape: [-1]}
ops:
  - {op: standardize, input: age, output: age_z, mean: 40.0, std: 10.0}
  - {op: vocabulary, input: city, output: city_id, vocabulary: [paris, tokyo], num_oov_buckets: 1}
  - {op: one_hot, input: city_id, output: city_hot, depth: 3}
outputs: [age_z, city_id, city_hot]
"""


def transform(path: Path, text: str = FEATURES, **files: str) -> Path:
    """transform.yaml (`text`) and any other files (name with "__" for ".") in `path`."""
    return yaml_folder(path, "transform.yaml", text, **files)


# The pipeline the end-to-end tests serve (and the README shows): the transform FEATURES served
# as model "features", then the embedding of animals (model "animals"), then one concatenation.
PROFILE = """
inputs:
  age: {dtype: float32, shape: [-1]}
  city: {dtype: string, shape: [-1]}
  animal: {dtype: string, shape: [-1]}
outputs:
  age_z: {dtype: float32, shape: [-1]}
  profile: {dtype: float32, shape: [-1, 6]}
steps:
  - model: features                  # takes age and city, by their names
    outputs: [age_z, city_hot]       # keeps two of its outputs
  - model: animals
    signature_name: serving_default
    inputs: {keys: animal}           # the model's input keys is fed the pipeline's animal
    outputs: {embeddings: pet}       # its output embeddings is named pet here
  - transform:
      - {op: concatenate, inputs: [city_hot, pet], output: profile}
"""


def pipeline(path: Path, text: str = PROFILE) -> Path:
    """pipeline.yaml (`text`) in `path`."""
    return yaml_folder(path, "pipeline.yaml", text)
