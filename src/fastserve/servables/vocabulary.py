"""Vocabularies: `vocab.txt` (line i is the key of id i), keys to ids and ids to keys.

A version folder holds `vocab.txt` and, optionally, `servable.yaml`::

    num_oov_buckets: 0    # unknown keys go to one of n hash buckets, ids V..V+n-1
    default_value: -1     # without buckets: the id of an unknown key
    default_key: UNK      # the key of an id outside 0..V-1 (a bucket's included)

Signatures:
- serving_default: `keys` (string, any shape) -> `ids` (int64, the same shape);
- ids_to_keys: `ids` (int64, any shape) -> `keys` (string, the same shape).

The numbering is TensorFlow's `tf.lookup.StaticVocabularyTable` (buckets by FarmHash
Fingerprint64, as `tf.strings.to_hash_bucket_fast`) and, without buckets,
`tf.lookup.StaticHashTable`'s default value; `default_key` defaults to "UNK" as
`tf.lookup.index_to_string_table_from_file` does.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from fastserve.dtypes import DType
from fastserve.errors import Code, ServingError
from fastserve.servables.base import Loader, LoadOptions, Servable
from fastserve.servables.lookup import Vocabulary, read_vocabulary_file
from fastserve.servables.settings import OPTIONS_FILE, Settings, read_yaml
from fastserve.types import DEFAULT_SIGNATURE, PREDICT_METHOD, RunContext, Signature, TensorInfo

VOCABULARY_FILE = "vocab.txt"
IDS_TO_KEYS = "ids_to_keys"
DEFAULT_KEY = "UNK"


class VocabularyServable(Servable):
    """One vocabulary, looked up both ways."""

    runtime = "numpy"

    def __init__(
        self, vocabulary: Vocabulary, num_oov_buckets: int, default_value: int, default_key: bytes
    ) -> None:
        self._vocabulary = vocabulary
        self._buckets = num_oov_buckets
        self._default_value = default_value
        self._default_key = default_key
        keys = {"keys": TensorInfo("keys", DType.DT_STRING, None)}
        ids = {"ids": TensorInfo("ids", DType.DT_INT64, None)}
        self._signatures = {
            DEFAULT_SIGNATURE: Signature(DEFAULT_SIGNATURE, keys, ids, PREDICT_METHOD),
            IDS_TO_KEYS: Signature(IDS_TO_KEYS, ids, keys, PREDICT_METHOD),
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
        if signature.name == IDS_TO_KEYS:
            return {"keys": self._vocabulary.keys(inputs["ids"], self._default_key)}
        ids = self._vocabulary.ids_with_buckets(inputs["keys"], self._buckets, self._default_value)
        return {"ids": ids}


def read_options(settings: Settings | None) -> tuple[int, int, bytes]:
    """(num_oov_buckets, default_value, default_key) from servable.yaml (defaults without)."""
    if settings is None:
        return 0, -1, DEFAULT_KEY.encode()
    buckets = settings.integer("num_oov_buckets", 0, minimum=0)
    if buckets and "default_value" in settings:
        settings.fail(
            "default_value applies only without num_oov_buckets (unknown keys then go to buckets)"
        )
    default_value = settings.integer("default_value", -1)
    default_key = settings.string("default_key", DEFAULT_KEY)
    settings.finish()
    return buckets, default_value, default_key.encode("utf-8")


class VocabularyLoader(Loader):
    """Loads `vocab.txt` version folders (model_platform "vocabulary")."""

    platform = "vocabulary"

    def load(self, path: str, options: LoadOptions) -> Servable:
        file = os.path.join(path, VOCABULARY_FILE)
        if not os.path.isfile(file):
            raise ServingError(Code.NOT_FOUND, f"Could not find {VOCABULARY_FILE} in {path}")
        buckets, default_value, default_key = read_options(
            read_yaml(path, OPTIONS_FILE, required=False)
        )
        vocabulary = Vocabulary(read_vocabulary_file(file))
        return VocabularyServable(vocabulary, buckets, default_value, default_key)
