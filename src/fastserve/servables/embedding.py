"""Embedding tables: `embeddings.npy` (`[V, D]`) and `vocab.txt` (line i names row i).

A version folder holds::

    embeddings.npy       # a [V, D] numeric array (numpy.save), memory-mapped at load
    vocab.txt            # V lines, one key per row
    servable.yaml        # optional: the row unknown keys get

`servable.yaml` sets what a key outside the vocabulary gets (zeros without the file)::

    default: [0.0, 0.1, 0.0]   # D numbers
    default_row: 0             # or: the table's row 0 (say, an "[UNK]" line); not both

Signatures:
- serving_default: `keys` (string, any shape) -> `embeddings` (keys' shape + [D], the table's
  dtype);
- by_id: `ids` (int64, any shape) -> `embeddings`; an id outside 0..V-1 is INVALID_ARGUMENT.

The table is memory-mapped read-only, so a large table costs no copy and versions that share
pages with the file cache share memory; a lookup is one dict pass over the keys and one numpy
gather. Rows are read from the file as requests touch them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from fastserve import dtypes
from fastserve.errors import Code, ServingError, invalid_argument
from fastserve.servables.base import Loader, LoadOptions, Servable
from fastserve.servables.lookup import Vocabulary, read_vocabulary_file
from fastserve.servables.settings import OPTIONS_FILE, Settings, read_yaml
from fastserve.types import DEFAULT_SIGNATURE, PREDICT_METHOD, RunContext, Signature, TensorInfo

TABLE_FILE = "embeddings.npy"
VOCABULARY_FILE = "vocab.txt"
BY_ID = "by_id"


def load_table(file: str) -> np.memmap:
    """The [V, D] numeric array of an .npy file, memory-mapped read-only (no copy)."""
    try:
        table = np.load(file, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise ServingError(Code.DATA_LOSS, f"Cannot load {file}: {error}") from None
    if not isinstance(table, np.memmap):  # an .npz archive, which np.load opens otherwise
        raise ServingError(Code.DATA_LOSS, f"Cannot load {file}: not a .npy array")
    try:
        dtypes.from_numpy(table.dtype)
        numeric = table.dtype.kind in "fiub"
    except TypeError:  # another byte order, or a type TensorFlow does not have
        numeric = False
    if not numeric:
        raise invalid_argument(
            f"{file}: expected a table of numbers in native byte order, not {table.dtype}"
        )
    if table.ndim != 2:
        raise invalid_argument(f"{file}: expected a [V, D] table, not shape {list(table.shape)}")
    if table.shape[0] == 0:
        raise invalid_argument(f"{file}: the table has no rows")
    return table


def default_row(settings: Settings | None, table: np.ndarray) -> tuple[int, np.ndarray | None]:
    """What unknown keys get: (row index, None) for `default_row`, else (-1, the row)."""
    rows, width = table.shape
    if settings is None:
        return -1, np.zeros(width, dtype=table.dtype)
    if "default" in settings and "default_row" in settings:
        settings.fail("set default or default_row, not both")
    index = settings.integer("default_row", -1, minimum=0)
    values = settings.numbers("default", None)
    settings.finish()
    if index >= 0:
        if index >= rows:
            settings.fail(f"default_row: {index} is not a row of the table (it has {rows})")
        return index, None
    if values is None:
        return -1, np.zeros(width, dtype=table.dtype)
    if len(values) != width:
        settings.fail(f"default: expected {width} numbers (the table's width), not {len(values)}")
    row = np.asarray(values).astype(table.dtype)
    if not np.array_equal(row, values):
        settings.fail(f"default: {values} cannot be held exactly by the table's {table.dtype}")
    return -1, row


class EmbeddingServable(Servable):
    """One memory-mapped table and its vocabulary."""

    runtime = "numpy"

    def __init__(
        self, table: np.memmap, vocabulary: Vocabulary, index: int, row: np.ndarray | None
    ) -> None:
        # The memmap itself (the tests check that nothing was copied) and a plain ndarray
        # view of it for gathers, so that results are plain arrays, not memmaps.
        self.table: np.memmap | None = table
        self._rows = np.asarray(table)
        self._vocabulary = vocabulary
        self._missing = index
        self._default = row
        dtype = dtypes.from_numpy(table.dtype)
        out = {"embeddings": TensorInfo("embeddings", dtype, None)}
        self._signatures = {
            DEFAULT_SIGNATURE: Signature(
                DEFAULT_SIGNATURE,
                {"keys": TensorInfo("keys", dtypes.DType.DT_STRING, None)},
                out,
                PREDICT_METHOD,
            ),
            BY_ID: Signature(
                BY_ID, {"ids": TensorInfo("ids", dtypes.DType.DT_INT64, None)}, out, PREDICT_METHOD
            ),
        }

    @property
    def signatures(self) -> Mapping[str, Signature]:
        return self._signatures

    def run(
        self,
        signature: Signature,
        inputs: Mapping[str, np.ndarray],
        output_names: Sequence[str],
        context: RunContext | None = None,
    ) -> dict[str, np.ndarray]:
        if signature.name == BY_ID:
            return {"embeddings": self._by_id(inputs["ids"])}
        ids = self._vocabulary.ids(inputs["keys"], self._missing)
        if self._default is None:
            return {"embeddings": np.take(self._rows, ids, axis=0)}
        unknown = ids < 0
        found = np.take(self._rows, np.where(unknown, 0, ids), axis=0)
        found[unknown] = self._default
        return {"embeddings": found}

    def _by_id(self, ids: np.ndarray) -> np.ndarray:
        rows = self._rows.shape[0]
        outside = (ids < 0) | (ids >= rows)
        if outside.any():
            where = tuple(int(i) for i in np.argwhere(outside)[0])
            raise invalid_argument(
                f"input tensor ids holds id {int(ids[where])} at {list(where)}, outside the "
                f"table's rows 0..{rows - 1}"
            )
        return np.take(self._rows, ids, axis=0)

    def unload(self) -> None:
        # The mapping is closed once the last reference to it goes (results are copies).
        self.table = None
        self._rows = np.empty((0, 0))


class EmbeddingLoader(Loader):
    """Loads `embeddings.npy` + `vocab.txt` version folders (model_platform "embedding")."""

    platform = "embedding"

    def load(self, path: str, options: LoadOptions) -> Servable:
        file = os.path.join(path, TABLE_FILE)
        for name in (TABLE_FILE, VOCABULARY_FILE):
            if not os.path.isfile(os.path.join(path, name)):
                raise ServingError(Code.NOT_FOUND, f"Could not find {name} in {path}")
        settings = read_yaml(path, OPTIONS_FILE, required=False)
        table = load_table(file)
        keys = read_vocabulary_file(os.path.join(path, VOCABULARY_FILE))
        if len(keys) != table.shape[0]:
            raise invalid_argument(
                f"{VOCABULARY_FILE} has {len(keys)} lines but {TABLE_FILE} has "
                f"{table.shape[0]} rows in {path}: line i names row i"
            )
        index, row = default_row(settings, table)
        return EmbeddingServable(table, Vocabulary(keys), index, row)
