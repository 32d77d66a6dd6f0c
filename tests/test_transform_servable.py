"""The transform kind: transform.yaml's ops on numpy arrays, held equal to TensorFlow's ops
where TensorFlow has one, and every mistake in the file a load error naming the op."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from fastserve.dtypes import DType
from fastserve.errors import Code, ServingError
from fastserve.servables import loader_for
from fastserve.servables.base import LoadOptions, Servable
from fastserve.servables.transform import TransformLoader
from fastserve.types import TensorInfo
from support import tables

# One of each op, wired as a user would: an example of everything transform.yaml takes.
EVERY_OP = """
inputs:
  age: {dtype: float32, shape: [-1]}
  income: {dtype: float64, shape: [-1, 2]}
  city: {dtype: string, shape: [-1]}
  tag: {dtype: string}
  count: {dtype: int64, shape: [-1]}
ops:
  - {op: standardize, input: age, output: age_z, mean: 40, std: 10}
  - {op: min_max_scale, input: income, output: income_01, min: [0, 100], max: [10, 200]}
  - {op: clip, input: count, output: count_clipped, min: 0, max: 5}
  - {op: log1p, input: count_clipped, output: count_log}
  - {op: bucketize, input: age, output: age_bucket, boundaries: [18, 65]}
  - {op: vocabulary, input: city, output: city_id, vocabulary_file: cities.txt, num_oov_buckets: 1}
  - {op: one_hot, input: city_id, output: city_hot, depth: 3}
  - {op: hash_bucket, input: tag, output: tag_bucket, num_buckets: 100}
  - {op: cast, input: count_log, output: count_log32, dtype: float32}
  - {op: concatenate, inputs: [age_z, count_log32], output: pair, axis: 0}
  - {op: cast, input: age_z, output: age_column, dtype: float32}
outputs: [age_z, income_01, count_clipped, count_log, age_bucket, city_hot, tag_bucket, pair]
"""


def folder(tmp_path: Path, text: str, **files: str) -> Path:
    return tables.yaml_folder(tmp_path / "1", "transform.yaml", text, **files)


def load(path: Path) -> Servable:
    return TransformLoader().load(str(path), LoadOptions())


def load_error(path: Path) -> ServingError:
    with pytest.raises(ServingError) as caught:
        load(path)
    return caught.value


def run(servable: Servable, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    signature = servable.signatures["serving_default"]
    return servable.run(signature, inputs, sorted(signature.outputs))


@pytest.fixture()
def every_op(tmp_path: Path) -> Servable:
    return load(folder(tmp_path, EVERY_OP, cities__txt="paris\ntokyo\n"))


EVERY_INPUT = {
    "age": np.array([10.0, 40.0, 70.0], dtype=np.float32),
    "income": np.array([[5.0, 150.0], [10.0, 100.0]]),
    "city": np.array([b"tokyo", b"lima", b"paris"], dtype=object),
    "tag": np.array([[b"a", b"b"]], dtype=object),
    "count": np.array([-3, 0, 9], dtype=np.int64),
}


def test_the_signature_is_inferred_through_the_ops(every_op: Servable) -> None:
    (signature,) = every_op.signatures.values()
    assert signature.name == "serving_default"
    assert signature.inputs["tag"] == TensorInfo("tag", DType.DT_STRING, None)
    assert dict(signature.outputs) == {
        "age_z": TensorInfo("age_z", DType.DT_FLOAT, (-1,)),
        "income_01": TensorInfo("income_01", DType.DT_DOUBLE, (-1, 2)),
        "count_clipped": TensorInfo("count_clipped", DType.DT_INT64, (-1,)),
        "count_log": TensorInfo("count_log", DType.DT_FLOAT, (-1,)),
        "age_bucket": TensorInfo("age_bucket", DType.DT_INT64, (-1,)),
        "city_hot": TensorInfo("city_hot", DType.DT_FLOAT, (-1, 3)),
        "tag_bucket": TensorInfo("tag_bucket", DType.DT_INT64, None),
        "pair": TensorInfo("pair", DType.DT_FLOAT, (-1,)),
    }


def test_every_op_computes_what_tensorflow_computes(every_op: Servable) -> None:
    out = run(every_op, EVERY_INPUT)
    for name, info in every_op.signatures["serving_default"].outputs.items():
        assert out[name].dtype == info.dtype.numpy, name
    np.testing.assert_allclose(out["age_z"], [-3.0, 0.0, 3.0])
    np.testing.assert_allclose(out["income_01"], [[0.5, 0.5], [1.0, 0.0]])
    assert out["count_clipped"].tolist() == [0, 0, 5]
    np.testing.assert_allclose(out["count_log"], np.log1p([0.0, 0.0, 5.0]), rtol=1e-6)
    bucketized = tf.raw_ops.Bucketize(input=EVERY_INPUT["age"], boundaries=[18.0, 65.0])
    assert out["age_bucket"].tolist() == bucketized.numpy().tolist() == [0, 1, 2]
    city_ids = [1, 2, 0]  # lima: the one bucket after paris, tokyo
    assert out["city_hot"].tolist() == tf.one_hot(city_ids, 3).numpy().tolist()
    tags = tf.strings.to_hash_bucket_fast(EVERY_INPUT["tag"].astype(bytes), 100).numpy()
    assert out["tag_bucket"].tolist() == tags.tolist()
    assert out["pair"].shape == (6,)


def test_only_the_asked_outputs_are_returned(every_op: Servable) -> None:
    signature = every_op.signatures["serving_default"]
    assert list(every_op.run(signature, EVERY_INPUT, ["pair"])) == ["pair"]


def test_outputs_default_to_the_leaves(tmp_path: Path) -> None:
    text = """
    inputs: {x: {dtype: float64, shape: [-1, 2]}}
    ops:
      - {op: log1p, input: x, output: a}
      - {op: clip, input: a, output: b, max: 1}
      - {op: one_hot, input: i, output: unused, depth: 2}
    """
    assert load_error(folder(tmp_path, text)).message.endswith(
        "input i is not known here (known: a, b, x)"
    )
    text = text.replace("      - {op: one_hot, input: i, output: unused, depth: 2}\n", "").rstrip(
        " "
    )
    text += "      - {op: standardize, input: a, output: c, mean: [1, 2], std: [1, 4]}\n"
    servable = load(folder(tmp_path, text))
    assert sorted(servable.signatures["serving_default"].outputs) == ["b", "c"]
    out = run(servable, {"x": np.array([[0.0, np.e - 1]])})
    np.testing.assert_allclose(out["c"], [[-1.0, -0.25]])
    np.testing.assert_allclose(out["b"], [[0.0, 1.0]])


def test_one_hot_of_an_id_outside_depth_is_zeros_as_tensorflows(tmp_path: Path) -> None:
    text = """
    inputs: {i: {dtype: int32}}
    ops: [{op: one_hot, input: i, output: hot, depth: 3}]
    """
    servable = load(folder(tmp_path, text))
    ids = np.array([[0, 5], [-1, 2]], dtype=np.int32)
    assert run(servable, {"i": ids})["hot"].tolist() == tf.one_hot(ids, 3).numpy().tolist()


def test_a_shape_the_declaration_refuses_is_invalid_argument(every_op: Servable) -> None:
    bad = dict(EVERY_INPUT, income=np.zeros((2, 3)))
    with pytest.raises(ServingError) as caught:
        run(every_op, bad)
    assert (caught.value.code, caught.value.message) == (
        Code.INVALID_ARGUMENT,
        "input tensor income has shape [2,3], which the signature's shape [-1,2] does not accept",
    )


def test_per_column_parameters_against_an_undeclared_shape_fail_the_request(tmp_path: Path) -> None:
    text = """
    inputs: {x: {dtype: float32}}
    ops: [{op: standardize, input: x, output: z, mean: [1, 2], std: 1}]
    """
    servable = load(folder(tmp_path, text))
    with pytest.raises(ServingError) as caught:
        run(servable, {"x": np.zeros((2, 3), dtype=np.float32)})
    assert (caught.value.code, caught.value.message) == (
        Code.INVALID_ARGUMENT,
        "op 1 (standardize -> z): 2 values per column need a last dimension of 2; the input's "
        "shape is [2,3]",
    )


def test_concatenate_checks_shapes_on_the_arrays(tmp_path: Path) -> None:
    text = """
    inputs: {a: {dtype: float32, shape: [-1, -1]}, b: {dtype: float32, shape: [-1, 1]}}
    ops: [{op: concatenate, inputs: [a, b], output: ab}]
    """
    servable = load(folder(tmp_path, text))
    signature = servable.signatures["serving_default"]
    assert signature.outputs["ab"].shape == (-1, -1)
    ok = run(servable, {"a": np.ones((2, 2), np.float32), "b": np.zeros((2, 1), np.float32)})
    assert ok["ab"].tolist() == [[1, 1, 0], [1, 1, 0]]
    with pytest.raises(ServingError) as caught:
        run(servable, {"a": np.ones((3, 2), np.float32), "b": np.zeros((2, 1), np.float32)})
    assert caught.value.code is Code.INVALID_ARGUMENT
    assert caught.value.message.startswith("op 1 (concatenate -> ab): "), caught.value.message


@pytest.mark.parametrize(
    ("ops", "message"),
    [
        (
            "[{op: sqrt, input: x, output: y}]",
            "op 1: unknown op 'sqrt' (known: standardize, "
            "min_max_scale, clip, log1p, bucketize, one_hot, hash_bucket, vocabulary, cast, concatenate)",
        ),
        (
            "[{op: standardize, input: x, output: y, mean: 1}]",
            "op 1 (standardize -> y): std is required",
        ),
        (
            "[{op: standardize, input: x, output: y, mean: 1, std: 0}]",
            "op 1 (standardize -> y): std: expected numbers > 0, not 0.0",
        ),
        (
            "[{op: min_max_scale, input: x, output: y, min: 1, max: 1}]",
            "op 1 (min_max_scale -> y): max must be greater than min: min 1.0, max 1.0",
        ),
        (
            "[{op: standardize, input: x, output: y, mean: [1, 2, 3], std: 1}]",
            "op 1 (standardize -> y): 3 values per column need a last dimension of 3; the input's "
            "shape is [-1,2]",
        ),
        ("[{op: clip, input: x, output: y}]", "op 1 (clip -> y): clip needs min, max or both"),
        (
            "[{op: bucketize, input: x, output: y, boundaries: [3, 1]}]",
            "op 1 (bucketize -> y): boundaries: expected strictly increasing numbers, not [3.0, 1.0]",
        ),
        (
            "[{op: one_hot, input: x, output: y, depth: 3}]",
            "op 1 (one_hot -> y): input x is float, and one_hot takes integers",
        ),
        (
            "[{op: hash_bucket, input: x, output: y, num_buckets: 0}]",
            "op 1 (hash_bucket -> y): num_buckets: expected a whole number >= 1, not 0",
        ),
        (
            "[{op: vocabulary, input: x, output: y, vocabulary: [a]}]",
            "op 1 (vocabulary -> y): input x is float, and vocabulary takes strings",
        ),
        (
            "[{op: vocabulary, input: x, output: y}]",
            "op 1 (vocabulary -> y): give vocabulary (a list of keys) or vocabulary_file, one of the two",
        ),
        (
            "[{op: vocabulary, input: x, output: y, vocabulary_file: ../x.txt}]",
            "op 1 (vocabulary -> y): vocabulary_file: '../x.txt' must be a file of the version folder",
        ),
        (
            "[{op: cast, input: x, output: y, dtype: string}]",
            "op 1 (cast -> y): dtype: cast gives numbers or bool, not string",
        ),
        ("[{op: log1p, input: x, output: x}]", "op 1 (log1p -> x): x is already an input"),
        (
            "[{op: log1p, input: x, output: y}, {op: clip, input: y, output: y, min: 0}]",
            "op 2 (clip -> y): y is already the output of op 1 (log1p -> y)",
        ),
        (
            "[{op: log1p, input: z, output: y}, {op: log1p, input: x, output: z}]",
            "op 1 (log1p -> y): uses z before op 2 (log1p -> z) produces it",
        ),
        (
            "[{op: log1p, inputs: [x], output: y}]",
            "op 1 (log1p -> y): log1p takes one input: write input: NAME",
        ),
        ("[{op: log1p, input: x, output: y, base: 2}]", "op 1 (log1p -> y): unknown field 'base'"),
        (
            "[{op: concatenate, inputs: [x, c], output: y}]",
            "op 1 (concatenate -> y): inputs of different dtypes (float, int64); cast them first",
        ),
        (
            "[{op: concatenate, inputs: [x, x], output: y, axis: 2}]",
            "op 1 (concatenate -> y): axis 2 is outside the inputs' rank 2",
        ),
        ("[]", "expected a non-empty list of ops"),
    ],
)
def test_a_bad_op_is_a_load_error_naming_it(tmp_path: Path, ops: str, message: str) -> None:
    text = f"inputs: {{x: {{dtype: float32, shape: [-1, 2]}}, c: {{dtype: int64, shape: [-1, 2]}}}}\nops: {ops}\noutputs: [x, c]\n"
    path = folder(tmp_path, text)
    error = load_error(path)
    assert (error.code, error.message) == (
        Code.INVALID_ARGUMENT,
        f"{path / 'transform.yaml'}: {message}",
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ops: [{op: log1p, input: x, output: y}]", "inputs is required"),
        (
            "inputs: {x: {dtype: float32}}\nops: [{op: log1p, input: x, output: y}]\noutputs: [z]",
            "outputs: z is neither an input nor an op's output (known: x, y)",
        ),
        (
            "inputs: {x: {dtype: float32}, w: {dtype: float32}}\nops: [{op: log1p, input: x, output: y}]",
            "inputs: w is used by no op and is not an output",
        ),
        (
            "inputs: {x: {dtype: floaty}}\nops: [{op: log1p, input: x, output: y}]",
            "inputs: x: dtype: unknown tensor type 'floaty'; use one of: bfloat16, bool, bytes, "
            "complex128, complex64, double, float, float16, float32, float64, half, int16, int32, "
            "int64, int8, string, uint16, uint32, uint64, uint8",
        ),
        (
            "inputs: {x: {dtype: float32, shape: 3}}\nops: [{op: log1p, input: x, output: y}]",
            "inputs: x: shape: expected a list of sizes (-1: any), not 3",
        ),
        (
            "inputs: {x: {dtype: float32}}\nops: [{op: log1p, input: x, output: y}]\nextra: 1",
            "unknown field 'extra'",
        ),
    ],
)
def test_a_bad_transform_yaml_is_a_load_error(tmp_path: Path, text: str, message: str) -> None:
    path = folder(tmp_path, text)
    error = load_error(path)
    assert (error.code, error.message) == (
        Code.INVALID_ARGUMENT,
        f"{path / 'transform.yaml'}: {message}",
    )


def test_a_vocabulary_file_with_a_key_twice_is_a_load_error(tmp_path: Path) -> None:
    text = """
    inputs: {city: {dtype: string}}
    ops: [{op: vocabulary, input: city, output: id, vocabulary_file: cities.txt}]
    """
    path = folder(tmp_path, text, cities__txt="a\nb\na\n")
    assert load_error(path).message == (
        f"{path / 'transform.yaml'}: op 1 (vocabulary -> id): {path / 'cities.txt'}: key 'a' is "
        "on line 1 and again on line 3"
    )


def test_no_transform_yaml_is_not_found(tmp_path: Path) -> None:
    (tmp_path / "1").mkdir()
    error = load_error(tmp_path / "1")
    assert (error.code, error.message) == (
        Code.NOT_FOUND,
        f"Could not find transform.yaml in {tmp_path / '1'}",
    )


def test_registered_as_model_platform_transform(tmp_path: Path) -> None:
    text = "inputs: {x: {dtype: float32}}\nops: [{op: clip, input: x, output: y, max: 1}]\n"
    servable = loader_for("transform").load(str(folder(tmp_path, text)), LoadOptions())
    assert run(servable, {"x": np.array([0.5, 3.0], np.float32)})["y"].tolist() == [0.5, 1.0]


def test_the_readmes_example_runs_as_shown(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start = readme.index("\n### Transforms\n")
    section = readme[start : readme.index("\n### ", start + 1)]
    text = section.split("```yaml\n")[1].split("```")[0]
    assert text.strip() == tables.FEATURES.strip()  # what the end-to-end tests serve
    servable = load(folder(tmp_path, text))
    out = run(
        servable,
        {"age": np.array([50], np.float32), "city": np.array([b"paris"], dtype=object)},
    )
    assert {k: v.tolist() for k, v in out.items()} == {
        "age_z": [1.0],
        "city_hot": [[1.0, 0.0, 0.0]],
        "city_id": [0],
    }
