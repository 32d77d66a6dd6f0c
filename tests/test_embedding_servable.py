"""The embedding kind: a memory-mapped [V, D] table and its vocabulary, written with numpy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fastserve.dtypes import DType
from fastserve.errors import Code, ServingError
from fastserve.servables import loader_for
from fastserve.servables.base import LoadOptions, Servable
from fastserve.servables.embedding import EmbeddingLoader
from fastserve.types import TensorInfo
from support import tables


def load(path: Path) -> Servable:
    return EmbeddingLoader().load(str(path), LoadOptions())


def load_error(path: Path) -> ServingError:
    with pytest.raises(ServingError) as caught:
        load(path)
    return caught.value


def lookup(servable: Servable, keys: list, signature: str = "serving_default") -> np.ndarray:
    name = "ids" if signature == "by_id" else "keys"
    dtype = np.int64 if signature == "by_id" else object
    array = np.array(keys, dtype=dtype)
    return servable.run(servable.signatures[signature], {name: array}, ["embeddings"])["embeddings"]


def test_signatures(tmp_path: Path) -> None:
    servable = load(tables.animals(tmp_path / "1"))
    assert servable.runtime == "numpy"
    default, by_id = servable.signatures["serving_default"], servable.signatures["by_id"]
    assert dict(default.inputs) == {"keys": TensorInfo("keys", DType.DT_STRING, None)}
    assert dict(by_id.inputs) == {"ids": TensorInfo("ids", DType.DT_INT64, None)}
    out = {"embeddings": TensorInfo("embeddings", DType.DT_FLOAT, None)}
    assert dict(default.outputs) == dict(by_id.outputs) == out


def test_keys_of_any_shape_give_rows_of_that_shape_plus_width(tmp_path: Path) -> None:
    servable = load(tables.animals(tmp_path / "1"))
    found = lookup(servable, [[b"dog", b"cat"], [b"bird", b"dog"]])
    assert found.shape == (2, 2, 3)
    assert found.dtype == np.float32
    assert type(found) is np.ndarray  # a plain array, not a view of the memory map
    assert found.tolist() == [
        [[2, 20, 200], [1, 10, 100]],
        [[4, 40, 400], [2, 20, 200]],
    ]
    assert lookup(servable, b"fish").tolist() == [3, 30, 300]  # a scalar key: one row
    assert lookup(servable, []).shape == (0, 3)


def test_unknown_keys_get_zeros_without_servable_yaml(tmp_path: Path) -> None:
    servable = load(tables.animals(tmp_path / "1"))
    assert lookup(servable, [b"cow", b"dog", b""]).tolist() == [
        [0, 0, 0],
        [2, 20, 200],
        [0, 0, 0],
    ]


def test_default_vector(tmp_path: Path) -> None:
    servable = load(tables.animals(tmp_path / "1", servable_yaml="default: [0.5, -1, 7]\n"))
    assert lookup(servable, [b"cow", b"fish"]).tolist() == [[0.5, -1, 7], [3, 30, 300]]


def test_default_row(tmp_path: Path) -> None:
    servable = load(tables.animals(tmp_path / "1", servable_yaml="default_row: 3\n"))
    assert lookup(servable, [[b"cow"], [b"cat"]]).tolist() == [[[4, 40, 400]], [[1, 10, 100]]]


def test_by_id(tmp_path: Path) -> None:
    servable = load(tables.animals(tmp_path / "1"))
    assert lookup(servable, [3, 1], "by_id").tolist() == [[4, 40, 400], [2, 20, 200]]


@pytest.mark.parametrize(("ids", "message"), [([0, 4], "4 at [1]"), ([[1], [-1]], "-1 at [1, 0]")])
def test_an_id_outside_the_table_is_invalid_argument(
    tmp_path: Path, ids: list, message: str
) -> None:
    servable = load(tables.animals(tmp_path / "1"))
    with pytest.raises(ServingError) as caught:
        lookup(servable, ids, "by_id")
    assert caught.value.code is Code.INVALID_ARGUMENT
    assert caught.value.message == (
        f"input tensor ids holds id {message}, outside the table's rows 0..3"
    )


def test_the_table_is_memory_mapped_not_copied(tmp_path: Path) -> None:
    servable = load(tables.animals(tmp_path / "1"))
    table = servable.table  # type: ignore[attr-defined]
    assert isinstance(table, np.memmap)
    assert table.filename == str(tmp_path / "1" / "embeddings.npy")
    assert not table.flags.writeable
    servable.unload()
    assert servable.table is None  # type: ignore[attr-defined]


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int32, np.int8])
def test_the_output_keeps_the_tables_dtype(tmp_path: Path, dtype: type) -> None:
    folder = tables.embedding(tmp_path / "1", ["a", "b"], np.array([[1, 2], [3, 4]], dtype))
    servable = load(folder)
    found = lookup(servable, [b"b", b"z"])
    assert (found.dtype, found.tolist()) == (np.dtype(dtype), [[3, 4], [0, 0]])


def test_a_vocabulary_of_other_length_than_the_table_fails_to_load(tmp_path: Path) -> None:
    folder = tables.embedding(tmp_path / "1", ["a", "b", "c"], np.zeros((2, 4), np.float32))
    error = load_error(folder)
    assert error.code is Code.INVALID_ARGUMENT
    assert error.message == (
        f"vocab.txt has 3 lines but embeddings.npy has 2 rows in {folder}: line i names row i"
    )


def test_a_key_twice_fails_to_load(tmp_path: Path) -> None:
    folder = tables.embedding(tmp_path / "1", ["a", "b", "a"], np.zeros((3, 1), np.float32))
    assert (
        load_error(folder).message
        == f"{folder / 'vocab.txt'}: key 'a' is on line 1 and again on line 3"
    )


def test_a_cut_file_fails_to_load_as_data_loss(tmp_path: Path) -> None:
    folder = tables.corrupt_npy(tmp_path / "1")
    error = load_error(folder)
    assert error.code is Code.DATA_LOSS
    assert error.message.startswith(f"Cannot load {folder / 'embeddings.npy'}: "), error.message


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (np.zeros(3, np.float32), "expected a [V, D] table, not shape [3]"),
        (np.zeros((0, 2), np.float32), "the table has no rows"),
        (np.array([["a"]]), "expected a table of numbers in native byte order, not <U1"),
        (np.zeros((1, 2), ">f4"), "expected a table of numbers in native byte order, not >f4"),
    ],
)
def test_a_table_that_is_not_v_by_d_numbers_fails_to_load(
    tmp_path: Path, table: np.ndarray, message: str
) -> None:
    folder = tables.embedding(tmp_path / "1", [str(i) for i in range(len(table))], table)
    error = load_error(folder)
    assert (error.code, error.message) == (
        Code.INVALID_ARGUMENT,
        f"{folder / 'embeddings.npy'}: {message}",
    )


def test_a_pickled_object_table_is_refused_without_unpickling(tmp_path: Path) -> None:
    folder = tables.embedding(tmp_path / "1", ["a"], np.array([[{"x": 1}]], dtype=object))
    error = load_error(folder)
    assert error.code is Code.DATA_LOSS
    assert "Python objects" in error.message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("default: [1, 2]\n", "default: expected 3 numbers (the table's width), not 2"),
        ("default_row: 4\n", "default_row: 4 is not a row of the table (it has 4)"),
        ("default_row: 1\ndefault: [1, 2, 3]\n", "set default or default_row, not both"),
        ("defualt: [1, 2, 3]\n", "unknown field 'defualt'"),
        ("default: [1, x, 3]\n", "default[1]: expected a number, not 'x'"),
        ("- 1\n", "expected a mapping, not list"),
    ],
)
def test_a_bad_servable_yaml_fails_to_load_naming_the_file(
    tmp_path: Path, text: str, message: str
) -> None:
    folder = tables.animals(tmp_path / "1", servable_yaml=text)
    error = load_error(folder)
    assert (error.code, error.message) == (
        Code.INVALID_ARGUMENT,
        f"{folder / 'servable.yaml'}: {message}",
    )


def test_missing_files_are_not_found(tmp_path: Path) -> None:
    folder = tables.animals(tmp_path / "1")
    (folder / "vocab.txt").unlink()
    error = load_error(folder)
    assert (error.code, error.message) == (Code.NOT_FOUND, f"Could not find vocab.txt in {folder}")


def test_registered_as_model_platform_embedding(tmp_path: Path) -> None:
    servable = loader_for("embedding").load(str(tables.animals(tmp_path / "1")), LoadOptions())
    assert lookup(servable, [b"cat"]).tolist() == [[1, 10, 100]]
