"""String keys to row ids and back: vocabulary files, vocabularies and hash buckets.

Shared by the embedding, vocabulary and transform kinds. A vocabulary is built once, at load:
a dict from key to id for lookups (one C-level pass of dict.get over a request's keys) and an
object array of keys for the way back (one numpy gather). Keys are bytes, as fastserve's
string tensors hold them.

Hash buckets use FarmHash's Fingerprint64, TensorFlow's `tf.strings.to_hash_bucket_fast` (and
so `tf.lookup.StaticVocabularyTable`'s out-of-vocabulary buckets): a key lands in the same
bucket here as in a TensorFlow graph, on every machine and in every process.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
from farmhash import Fingerprint64  # the cityhash distribution's FarmHash module

from fastserve.errors import invalid_argument


def read_vocabulary_file(file: str) -> list[bytes]:
    """The keys of a vocabulary file: line i (from 0) is key i, without its line ending ("\\n",
    or "\\r\\n"). A final newline does not start a key; an empty line inside is the empty key.
    A key twice is a load error naming both lines, as one key cannot have two ids."""
    try:
        with open(file, "rb") as stream:
            data = stream.read()
    except OSError as error:
        raise invalid_argument(f"Cannot read {file}: {error}") from None
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    keys = [line[:-1] if line.endswith(b"\r") else line for line in lines]
    check_unique(keys, file)
    return keys


def check_unique(keys: Sequence[bytes], where: str) -> None:
    """INVALID_ARGUMENT naming the first key listed twice (lines counted from 1)."""
    if len(set(keys)) == len(keys):
        return
    first: dict[bytes, int] = {}
    for line, key in enumerate(keys, start=1):
        if key in first:
            raise invalid_argument(
                f"{where}: key {key.decode('utf-8', 'replace')!r} is on line {first[key]} "
                f"and again on line {line}"
            )
        first[key] = line


def hash_buckets(keys: np.ndarray, num_buckets: int) -> np.ndarray:
    """Fingerprint64(key) % num_buckets for each key (int64, keys' shape), as
    tf.strings.to_hash_bucket_fast computes it."""
    flat = keys.reshape(-1)
    fingerprints = np.fromiter(map(_fingerprint, flat), dtype=np.uint64, count=flat.size)
    return (fingerprints % np.uint64(num_buckets)).astype(np.int64).reshape(keys.shape)


def _fingerprint(key: object) -> int:
    if isinstance(key, bytes):
        return int(Fingerprint64(key))
    if isinstance(key, str):
        return int(Fingerprint64(key.encode("utf-8")))
    raise invalid_argument(f"expected strings to hash, found {type(key).__name__}")


class Vocabulary:
    """Keys numbered 0..size-1: lookups both ways, vectorized over any shape."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        self.size = len(keys)
        self._ids = {key: index for index, key in enumerate(keys)}
        if len(self._ids) != self.size:
            check_unique(keys, "vocabulary")  # raises, naming the repeated key
        self._keys = np.empty(self.size, dtype=object)
        self._keys[:] = list(keys)

    def ids(self, keys: np.ndarray, missing: int = -1) -> np.ndarray:
        """The id of each key (int64, keys' shape); `missing` for keys not in the vocabulary.
        Keys are bytes; str keys are looked up by their UTF-8 bytes."""
        flat = keys.reshape(-1)
        if flat.size and not isinstance(flat[0], bytes):
            flat = np.array([_as_bytes(key) for key in flat], dtype=object)
        found = np.fromiter(
            map(self._ids.get, flat, itertools.repeat(missing)), dtype=np.int64, count=flat.size
        )
        return found.reshape(keys.shape)

    def ids_with_buckets(
        self, keys: np.ndarray, num_oov_buckets: int, default_value: int
    ) -> np.ndarray:
        """ids(), with unknown keys in one of `num_oov_buckets` hash buckets numbered after
        the vocabulary (size..size+n-1), as tf.lookup.StaticVocabularyTable numbers them; or
        `default_value` for them when there are no buckets."""
        if num_oov_buckets <= 0:
            return self.ids(keys, default_value)
        found = self.ids(keys, -1)
        unknown = found < 0
        if unknown.any():
            found[unknown] = self.size + hash_buckets(keys[unknown], num_oov_buckets)
        return found

    def keys(self, ids: np.ndarray, default_key: bytes) -> np.ndarray:
        """The key of each id (an object array of bytes, ids' shape); `default_key` for ids
        outside 0..size-1."""
        known = (ids >= 0) & (ids < self.size)
        if self.size == 0:
            return np.full(ids.shape, default_key, dtype=object)
        found = np.take(self._keys, np.where(known, ids, 0))
        found[~known] = default_key
        return found


def _as_bytes(key: object) -> bytes:
    if isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode("utf-8")
    raise invalid_argument(f"expected string keys, found {type(key).__name__}")
