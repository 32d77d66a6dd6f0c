"""The vocabulary kind: vocab.txt, keys to ids (with TensorFlow's hash buckets) and back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from fastserve.dtypes import DType
from fastserve.errors import Code, ServingError
from fastserve.servables import loader_for
from fastserve.servables.base import LoadOptions, Servable
from fastserve.servables.vocabulary import VocabularyLoader
from fastserve.types import TensorInfo
from support import tables

FRUIT = ("apple", "pear", "plum")


def load(path: Path) -> Servable:
    return VocabularyLoader().load(str(path), LoadOptions())


def load_error(path: Path) -> ServingError:
    with pytest.raises(ServingError) as caught:
        load(path)
    return caught.value


def ids(servable: Servable, keys: list) -> np.ndarray:
    signature = servable.signatures["serving_default"]
    return servable.run(signature, {"keys": np.array(keys, dtype=object)}, ["ids"])["ids"]


def keys(servable: Servable, numbers: list) -> np.ndarray:
    signature = servable.signatures["ids_to_keys"]
    return servable.run(signature, {"ids": np.array(numbers, dtype=np.int64)}, ["keys"])["keys"]


def test_signatures(tmp_path: Path) -> None:
    servable = load(tables.vocabulary(tmp_path / "1", FRUIT))
    default, back = servable.signatures["serving_default"], servable.signatures["ids_to_keys"]
    string = {"keys": TensorInfo("keys", DType.DT_STRING, None)}
    int64 = {"ids": TensorInfo("ids", DType.DT_INT64, None)}
    assert (dict(default.inputs), dict(default.outputs)) == (string, int64)
    assert (dict(back.inputs), dict(back.outputs)) == (int64, string)


def test_keys_to_ids_and_back_keep_the_shape(tmp_path: Path) -> None:
    servable = load(tables.vocabulary(tmp_path / "1", FRUIT))
    found = ids(servable, [[b"plum", b"fig"], [b"apple", b"pear"]])
    assert (found.dtype, found.tolist()) == (np.int64, [[2, -1], [0, 1]])
    assert type(found[0, 0]) is np.int64
    back = keys(servable, [[2, 3], [-1, 0]])
    assert back.tolist() == [[b"plum", b"UNK"], [b"UNK", b"apple"]]
    assert ids(servable, b"pear").tolist() == 1


def test_default_value_and_default_key(tmp_path: Path) -> None:
    options = "default_value: 99\ndefault_key: '[UNK]'\n"
    servable = load(tables.vocabulary(tmp_path / "1", FRUIT, options))
    assert ids(servable, [b"fig", b"plum"]).tolist() == [99, 2]
    assert keys(servable, [7]).tolist() == [b"[UNK]"]


def test_out_of_vocabulary_buckets_number_as_tensorflows_table(tmp_path: Path) -> None:
    servable = load(tables.vocabulary(tmp_path / "1", FRUIT, "num_oov_buckets: 4\n"))
    asked = [b"pear", b"fig", b"kiwi", b"", "f\u00e9ijoa".encode(), b"plum"]
    table = tf.lookup.StaticVocabularyTable(
        tf.lookup.TextFileInitializer(
            str(tmp_path / "1" / "vocab.txt"),
            tf.string,
            tf.lookup.TextFileIndex.WHOLE_LINE,
            tf.int64,
            tf.lookup.TextFileIndex.LINE_NUMBER,
        ),
        num_oov_buckets=4,
    )
    ours = ids(servable, asked).tolist()
    assert ours == table.lookup(tf.constant(asked)).numpy().tolist()
    assert ours[0] == 1 and ours[-1] == 2 and all(3 <= i <= 6 for i in ours[1:-1])
    # A bucket's id is no key.
    assert keys(servable, [ours[1]]).tolist() == [b"UNK"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("num_oov_buckets: -1\n", "num_oov_buckets: expected a whole number >= 0, not -1"),
        (
            "num_oov_buckets: 2\ndefault_value: 0\n",
            "default_value applies only without num_oov_buckets (unknown keys then go to buckets)",
        ),
        ("default_value: x\n", "default_value: expected a whole number, not 'x'"),
        ("default_key: 3\n", "default_key: expected a string, not 3"),
        ("num_buckets: 3\n", "unknown field 'num_buckets'"),
    ],
)
def test_a_bad_servable_yaml_fails_to_load(tmp_path: Path, text: str, message: str) -> None:
    folder = tables.vocabulary(tmp_path / "1", FRUIT, text)
    error = load_error(folder)
    assert (error.code, error.message) == (
        Code.INVALID_ARGUMENT,
        f"{folder / 'servable.yaml'}: {message}",
    )


def test_a_key_twice_or_no_file_fails_to_load(tmp_path: Path) -> None:
    folder = tables.vocabulary(tmp_path / "1", ["a", "b", "a"])
    assert (
        load_error(folder).message
        == f"{folder / 'vocab.txt'}: key 'a' is on line 1 and again on line 3"
    )
    (folder / "vocab.txt").unlink()
    error = load_error(folder)
    assert (error.code, error.message) == (Code.NOT_FOUND, f"Could not find vocab.txt in {folder}")


def test_registered_as_model_platform_vocabulary(tmp_path: Path) -> None:
    folder = tables.vocabulary(tmp_path / "1", FRUIT)
    servable = loader_for("vocabulary").load(str(folder), LoadOptions())
    assert ids(servable, [b"pear"]).tolist() == [1]
