"""The pipeline kind: pipeline.yaml's steps over real servables published in a real servable
table, which the pipeline reaches per request through LoadOptions.resolve."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fastserve.core.table import ServableTable
from fastserve.dtypes import DType
from fastserve.errors import Code, ServingError
from fastserve.servables import loader_for
from fastserve.servables.base import LoadOptions, Servable
from fastserve.servables.pipeline import PipelineLoader
from fastserve.servables.python import PythonLoader
from fastserve.servables.vocabulary import VocabularyLoader
from fastserve.types import RunContext, TensorInfo
from support import models, tables

SCORER = """
    import numpy as np

    from fastserve.servables.python import signature, tensor


    @signature(inputs={"x": tensor("float32", [-1])}, outputs={"y": tensor("float32", [-1])})
    def serving_default(x):
        return {"y": 2 * x + 1}


    @signature(inputs={"x": tensor("float32", [-1])}, outputs={"n": tensor("int64", [-1])})
    def count(x):
        if (x < 0).any():
            raise ValueError("negative x")
        return {"n": x.astype(np.int64)}
"""

PIPELINE = """
inputs:
  age: {dtype: float32, shape: [-1]}
  fruit: {dtype: string, shape: [-1]}
outputs:
  score: {dtype: float32, shape: [-1]}
  fruit_id: {dtype: int64, shape: [-1]}
steps:
  - transform:
      - {op: standardize, input: age, output: x, mean: 40, std: 10}
  - model: scorer
    outputs: {y: score}
  - model: fruit
    inputs: {keys: fruit}
    outputs: {ids: fruit_id}
"""


@pytest.fixture()
def table(tmp_path: Path) -> ServableTable:
    """scorer (a python model, version 1) and fruit (a vocabulary, version 3), served."""
    served = ServableTable()
    models.python_model(tmp_path / "scorer" / "1", SCORER)
    scorer = PythonLoader().load(str(tmp_path / "scorer" / "1"), LoadOptions())
    assert served.add("scorer", 1, scorer)
    fruit = tables.vocabulary(tmp_path / "fruit" / "3", ["apple", "pear"])
    assert served.add("fruit", 3, VocabularyLoader().load(str(fruit), LoadOptions()))
    return served


def write(path: Path, text: str) -> Path:
    return tables.yaml_folder(path, "pipeline.yaml", text)


def load(path: Path, table: ServableTable, name: str = "pipe") -> Servable:
    options = LoadOptions(model_name=name, resolve=table.acquire)
    return PipelineLoader().load(str(path), options)


def load_error(path: Path, table: ServableTable) -> ServingError:
    with pytest.raises(ServingError) as caught:
        load(path, table)
    return caught.value


def run(servable: Servable, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    signature = servable.signatures["serving_default"]
    return servable.run(signature, inputs, sorted(signature.outputs))


def run_error(servable: Servable, inputs: dict[str, np.ndarray]) -> ServingError:
    with pytest.raises(ServingError) as caught:
        run(servable, inputs)
    return caught.value


INPUTS = {
    "age": np.array([50.0, 20.0], dtype=np.float32),
    "fruit": np.array([b"pear", b"fig"], dtype=object),
}


def test_steps_chain_transforms_and_served_models(tmp_path: Path, table: ServableTable) -> None:
    servable = load(write(tmp_path / "1", PIPELINE), table)
    assert servable.runtime == "pipeline"
    signature = servable.signatures["serving_default"]
    assert dict(signature.outputs) == {
        "score": TensorInfo("score", DType.DT_FLOAT, (-1,)),
        "fruit_id": TensorInfo("fruit_id", DType.DT_INT64, (-1,)),
    }
    out = run(servable, INPUTS)
    assert out["score"].tolist() == [3.0, -3.0]  # 2 * (age - 40) / 10 + 1
    assert out["fruit_id"].tolist() == [1, -1]
    # Every version a step held was released when the request ended.
    assert table.handle_count("scorer", 1) == table.handle_count("fruit", 3) == 0
    only = servable.run(signature, INPUTS, ["fruit_id"])
    assert list(only) == ["fruit_id"]


def test_a_model_not_served_yet_fails_the_request_not_the_load(
    tmp_path: Path, table: ServableTable
) -> None:
    servable = load(write(tmp_path / "1", PIPELINE.replace("scorer", "later")), table)
    error = run_error(servable, INPUTS)
    assert (error.code, error.message) == (
        Code.NOT_FOUND,
        "pipeline step 2 (model 'later'): Servable not found for request: Latest(later)",
    )
    table.add("later", 1, table.acquire("scorer").servable)
    assert run(servable, INPUTS)["score"].tolist() == [3.0, -3.0]


def test_an_output_filter_runs_only_the_steps_it_needs(
    tmp_path: Path, table: ServableTable
) -> None:
    """fruit_id needs only the fruit step: the scorer's model, not served, is never asked
    for; score needs the transform and the scorer, and then fails naming it."""
    servable = load(write(tmp_path / "1", PIPELINE.replace("scorer", "later")), table)
    signature = servable.signatures["serving_default"]
    assert servable.run(signature, INPUTS, ["fruit_id"])["fruit_id"].tolist() == [1, -1]
    with pytest.raises(ServingError) as caught:
        servable.run(signature, INPUTS, ["score"])
    assert caught.value.message.startswith("pipeline step 2 (model 'later'): ")
    # A model step without an inputs mapping reads any earlier name: every step before it
    # runs (the transform here), whatever the filter.
    text = PIPELINE.replace("    inputs: {keys: fruit}\n", "")
    unwired = load(write(tmp_path / "2", text.replace("scorer", "later")), table)
    error = run_error(unwired, INPUTS)
    assert error.message.startswith("pipeline step 2 (model 'later'): ")
    with pytest.raises(ServingError) as caught:
        unwired.run(unwired.signatures["serving_default"], INPUTS, ["fruit_id"])
    assert caught.value.message.startswith("pipeline step 2 (model 'later'): ")


def test_a_version_or_a_label(tmp_path: Path, table: ServableTable) -> None:
    text = PIPELINE.replace("  - model: fruit\n", "  - model: fruit\n    version: 4\n")
    error = run_error(load(write(tmp_path / "1", text), table), INPUTS)
    assert (error.code, error.message) == (
        Code.NOT_FOUND,
        "pipeline step 3 (model 'fruit'): Servable not found for request: Specific(fruit, 4)",
    )
    text = PIPELINE.replace("  - model: fruit\n", "  - model: fruit\n    label: stable\n")
    servable = load(write(tmp_path / "2", text), table)
    table.set_labels("fruit", {"stable": 3})
    assert run(servable, INPUTS)["fruit_id"].tolist() == [1, -1]


def test_a_steps_error_keeps_its_code_and_names_the_step(
    tmp_path: Path, table: ServableTable
) -> None:
    text = PIPELINE.replace(
        "    outputs: {y: score}", "    signature_name: count\n    outputs: {n: n}"
    )
    text = text.replace("  score: {dtype: float32, shape: [-1]}", "  n: {dtype: int64}")
    servable = load(write(tmp_path / "1", text), table)
    error = run_error(servable, INPUTS)  # age 20 gives x -2: the model raises
    assert (error.code, error.message) == (
        Code.INTERNAL,
        "pipeline step 2 (model 'scorer'): ValueError: negative x",
    )
    assert table.handle_count("scorer", 1) == 0


def test_a_wrong_dtype_between_steps_is_invalid_argument(
    tmp_path: Path, table: ServableTable
) -> None:
    text = PIPELINE.replace(
        "      - {op: standardize, input: age, output: x, mean: 40, std: 10}",
        "      - {op: bucketize, input: age, output: x, boundaries: [30]}",
    )
    error = run_error(load(write(tmp_path / "1", text), table), INPUTS)
    assert (error.code, error.message) == (
        Code.INVALID_ARGUMENT,
        "pipeline step 2 (model 'scorer'): input x (from x) is int64, and the model's "
        "signature takes float",
    )


def test_a_transform_step_checks_a_models_output_when_it_arrives(
    tmp_path: Path, table: ServableTable
) -> None:
    text = PIPELINE.replace("outputs:\n", "outputs:\n  hot: {dtype: float32}\n", 1)
    text += "  - transform:\n      - {op: one_hot, input: score, output: hot, depth: 2}\n"
    error = run_error(load(write(tmp_path / "1", text), table), INPUTS)
    assert (error.code, error.message) == (
        Code.INVALID_ARGUMENT,
        "pipeline step 4 (transform): op 1 (one_hot -> hot): input score is float, and one_hot "
        "takes integers",
    )


@pytest.mark.parametrize(
    ("change", "code", "message"),
    [
        (
            ("    outputs: {y: score}", "    signature_name: nope\n    outputs: {y: score}"),
            Code.FAILED_PRECONDITION,
            "pipeline step 2 (model 'scorer'): Serving signature key \"nope\" not found.",
        ),
        (
            ("    outputs: {y: score}", "    outputs: {z: score}"),
            Code.FAILED_PRECONDITION,
            "pipeline step 2 (model 'scorer'): signature serving_default has no output z (it "
            "has y)",
        ),
        (
            ("    inputs: {keys: fruit}", "    inputs: {words: fruit}"),
            Code.FAILED_PRECONDITION,
            "pipeline step 3 (model 'fruit'): signature serving_default has no input words (it "
            "has keys)",
        ),
        (
            ("output: x, mean", "output: x2, mean"),
            Code.FAILED_PRECONDITION,
            "pipeline step 2 (model 'scorer'): signature serving_default needs input x, which "
            "no name of the pipeline feeds (names here: age, fruit, x2)",
        ),
        (
            ("  score: {dtype: float32, shape: [-1]}", "  score: {dtype: float64, shape: [-1]}"),
            Code.FAILED_PRECONDITION,
            "pipeline output score is float, but pipeline.yaml declares double",
        ),
    ],
)
def test_wiring_known_only_at_request_time_fails_the_request(
    tmp_path: Path, table: ServableTable, change: tuple[str, str], code: Code, message: str
) -> None:
    servable = load(write(tmp_path / "1", PIPELINE.replace(*change)), table)
    error = run_error(servable, INPUTS)
    assert (error.code, error.message) == (code, message)


def test_a_pipeline_calling_itself_is_a_load_error(tmp_path: Path, table: ServableTable) -> None:
    path = write(tmp_path / "1", PIPELINE.replace("model: scorer", "model: pipe"))
    assert load_error(path, table).message == (
        f"{path / 'pipeline.yaml'}: step 2 (model 'pipe'): a pipeline cannot call itself"
    )


def test_a_cycle_through_two_pipelines_fails_the_request(
    tmp_path: Path, table: ServableTable
) -> None:
    def calling(other: str) -> str:
        return f"""
        inputs: {{x: {{dtype: float32}}}}
        outputs: {{y: {{dtype: float32}}}}
        steps: [{{model: {other}, outputs: [y]}}]
        """

    table.add("a", 1, load(write(tmp_path / "a", calling("b")), table, "a"))
    table.add("b", 1, load(write(tmp_path / "b", calling("a")), table, "b"))
    error = run_error(table.acquire("a").servable, {"x": np.zeros(1, np.float32)})
    assert (error.code, error.message) == (
        Code.FAILED_PRECONDITION,
        "pipeline step 1 (model 'b'): pipeline step 1 (model 'a'): pipeline a calls itself: "
        "a -> b -> a",
    )


def test_a_request_past_its_deadline_runs_no_step(tmp_path: Path, table: ServableTable) -> None:
    servable = load(write(tmp_path / "1", PIPELINE), table)
    signature = servable.signatures["serving_default"]
    with pytest.raises(ServingError) as caught:
        servable.run(signature, INPUTS, ["score"], RunContext(deadline=0.0))
    assert caught.value.code is Code.DEADLINE_EXCEEDED


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "inputs: {x: {dtype: float32}}\noutputs: {y: {dtype: float32}}\nsteps: []",
            "steps: expected a non-empty list of steps",
        ),
        (
            "inputs: {x: {dtype: float32}}\noutputs: {y: {dtype: float32}}\n"
            "steps: [{model: m, transform: []}]",
            "step 1: expected a mapping with model: NAME or transform: [ops], not "
            "{'model': 'm', 'transform': []}",
        ),
        (
            "inputs: {x: {dtype: float32}}\noutputs: {y: {dtype: float32}}\n"
            "steps: [{model: m, outputs: [y], version: 1, label: a}]",
            "step 1 (model 'm'): give version or label, not both",
        ),
        (
            "inputs: {x: {dtype: float32}}\noutputs: {y: {dtype: float32}}\n"
            "steps: [{model: m, inputs: {a: z}, outputs: [y]}]",
            "step 1 (model 'm'): inputs: a: z is not known here (known: x)",
        ),
        (
            "inputs: {x: {dtype: float32}}\noutputs: {y: {dtype: float32}}\nsteps: [{model: m}]",
            "step 1 (model 'm'): outputs is required",
        ),
        (
            "inputs: {x: {dtype: float32}}\noutputs: {y: {dtype: float32}}\n"
            "steps: [{model: m, outputs: [x]}]",
            "step 1 (model 'm'): outputs: x is already a name of the pipeline",
        ),
        (
            "inputs: {x: {dtype: float32}}\noutputs: {z: {dtype: float32}}\n"
            "steps: [{model: m, outputs: [y]}]",
            "outputs: z is neither an input nor a step's output (known: x, y)",
        ),
        (
            "inputs: {x: {dtype: float32}}\noutputs: {y: {dtype: int64}}\n"
            "steps: [{transform: [{op: log1p, input: x, output: y}]}]",
            "outputs: y is float, not int64",
        ),
        (
            "inputs: {x: {dtype: float32}}\noutputs: {y: {dtype: float32}}\n"
            "steps: [{transform: [{op: one_hot, input: x, output: y, depth: 2}]}]",
            "step 1 (transform): op 1 (one_hot -> y): input x is float, and one_hot takes integers",
        ),
        (
            "inputs: {x: {dtype: float32}}\noutputs: {y: {dtype: float32}}\n"
            "steps: [{model: m, outputs: [y]}, {transform: [{op: log1p, input: x, output: y}]}]",
            "step 2 (transform): op 1 (log1p -> y): y is already a name of the pipeline",
        ),
        (
            "inputs: {x: {dtype: float32}}\noutputs: {y: {dtype: float32}}\n"
            "steps: [{model: m, outputs: [y], sig: a}]",
            "step 1 (model 'm'): unknown field 'sig'",
        ),
    ],
)
def test_a_bad_pipeline_yaml_is_a_load_error(
    tmp_path: Path, table: ServableTable, text: str, message: str
) -> None:
    path = write(tmp_path / "1", text)
    error = load_error(path, table)
    assert (error.code, error.message) == (
        Code.INVALID_ARGUMENT,
        f"{path / 'pipeline.yaml'}: {message}",
    )


def test_without_a_resolver_the_load_fails(tmp_path: Path) -> None:
    path = write(tmp_path / "1", PIPELINE)
    with pytest.raises(ServingError) as caught:
        loader_for("pipeline").load(str(path), LoadOptions())
    assert caught.value.code is Code.FAILED_PRECONDITION
    assert "LoadOptions.resolve" in caught.value.message


def test_the_readmes_example_is_what_the_end_to_end_tests_serve() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start = readme.index("\n### Pipelines\n")
    section = readme[start : readme.index("\n### ", start + 1)]
    assert section.split("```yaml\n")[1].split("```")[0].strip() == tables.PROFILE.strip()
