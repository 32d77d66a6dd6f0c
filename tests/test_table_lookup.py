"""Vocabulary files, lookups both ways and hash buckets, the last held equal to TensorFlow's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from fastserve.errors import Code, ServingError
from fastserve.servables.lookup import Vocabulary, hash_buckets, read_vocabulary_file

KEYS = [b"", b"a", b"hello", b"x" * 17, b"y" * 40, b"z" * 100, "h\u00e9".encode(), b"\x00\xff"]


def test_hash_buckets_are_tensorflows_to_hash_bucket_fast() -> None:
    keys = np.array(KEYS, dtype=object).reshape(2, 4)
    for buckets in (1, 7, 1000, 2**40):
        ours = hash_buckets(keys, buckets)
        theirs = tf.strings.to_hash_bucket_fast(keys.astype(bytes), buckets).numpy()
        assert ours.dtype == np.int64
        assert ours.tolist() == theirs.tolist()


def test_out_of_vocabulary_buckets_are_static_vocabulary_tables() -> None:
    vocabulary = [b"apple", b"pear", b"plum"]
    table = tf.lookup.StaticVocabularyTable(
        tf.lookup.KeyValueTensorInitializer(vocabulary, tf.range(3, dtype=tf.int64)),
        num_oov_buckets=5,
    )
    keys = np.array([b"pear", *KEYS, b"apple", b"plums"], dtype=object)
    ours = Vocabulary(vocabulary).ids_with_buckets(keys, 5, -1)
    assert ours.tolist() == table.lookup(tf.constant(keys.astype(bytes))).numpy().tolist()
    assert ours[0] == 1 and ours[-2] == 0 and all(3 <= i < 8 for i in ours[1:-2])


def test_lookups_both_ways_keep_the_shape() -> None:
    vocabulary = Vocabulary([b"a", b"b", b"c"])
    keys = np.array([[b"c", b"x"], [b"a", b"b"]], dtype=object)
    assert vocabulary.ids(keys).tolist() == [[2, -1], [0, 1]]
    assert vocabulary.ids_with_buckets(keys, 0, 9).tolist() == [[2, 9], [0, 1]]
    ids = np.array([[2, 3], [-1, 0]], dtype=np.int64)
    back = vocabulary.keys(ids, b"UNK")
    assert back.dtype == object
    assert back.tolist() == [[b"c", b"UNK"], [b"UNK", b"a"]]
    assert vocabulary.ids(np.array(b"b", dtype=object)).tolist() == 1


def test_an_empty_vocabulary_knows_no_key_and_no_id() -> None:
    vocabulary = Vocabulary([])
    assert vocabulary.ids(np.array([b"a"], dtype=object)).tolist() == [-1]
    assert vocabulary.keys(np.array([0], dtype=np.int64), b"?").tolist() == [b"?"]


def test_a_vocabulary_files_lines_are_its_keys(tmp_path: Path) -> None:
    file = tmp_path / "vocab.txt"
    file.write_bytes(b"first\r\n\nthird \n  \n")
    assert read_vocabulary_file(str(file)) == [b"first", b"", b"third ", b"  "]
    file.write_bytes(b"no final newline")
    assert read_vocabulary_file(str(file)) == [b"no final newline"]
    file.write_bytes(b"")
    assert read_vocabulary_file(str(file)) == []


def test_a_key_twice_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "vocab.txt"
    file.write_bytes(b"a\nb\nc\nb\n")
    with pytest.raises(ServingError) as caught:
        read_vocabulary_file(str(file))
    assert (caught.value.code, caught.value.message) == (
        Code.INVALID_ARGUMENT,
        f"{file}: key 'b' is on line 2 and again on line 4",
    )
