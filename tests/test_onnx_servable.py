"""The onnx kind: real ONNX models built with onnx's helper API, run by onnxruntime."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from fastserve.dtypes import DType
from fastserve.errors import Code, ServingError
from fastserve.servables import loader_for
from fastserve.servables.base import LoadOptions, Servable
from fastserve.servables.onnx import OnnxLoader, read_options
from fastserve.types import TensorInfo
from support import onnx_models


def load(path: Path) -> Servable:
    return OnnxLoader().load(str(path), LoadOptions())


def load_error(path: Path) -> ServingError:
    with pytest.raises(ServingError) as caught:
        load(path)
    return caught.value


def run(servable: Servable, inputs: dict[str, np.ndarray], outputs: list[str] | None = None):
    signature = servable.signatures["serving_default"]
    return servable.run(signature, inputs, outputs or sorted(signature.outputs))


def test_signature_maps_the_graphs_inputs_and_outputs(tmp_path: Path) -> None:
    servable = load(onnx_models.two_in_two_out(tmp_path / "1"))
    assert servable.runtime == "onnxruntime"
    (signature,) = servable.signatures.values()
    assert signature.name == "serving_default"
    assert signature.method_name == "tensorflow/serving/predict"
    assert dict(signature.inputs) == {
        "values": TensorInfo("values", DType.DT_FLOAT, (-1, 2)),
        "counts": TensorInfo("counts", DType.DT_INT64, (-1,)),
    }
    assert dict(signature.outputs) == {
        "total": TensorInfo("total", DType.DT_FLOAT, (-1,)),
        "doubled": TensorInfo("doubled", DType.DT_INT64, (-1,)),
    }


@pytest.mark.parametrize(
    ("shape", "expected"), [(("batch", 1), (-1, 1)), ((None,), (-1,)), ((3,), (3,))]
)
def test_symbolic_and_unknown_dimensions_are_minus_one(
    tmp_path: Path, shape: tuple[object, ...], expected: tuple[int, ...]
) -> None:
    servable = load(onnx_models.half_plus(tmp_path / "1", shape=shape))
    assert servable.signatures["serving_default"].inputs["x"].shape == expected


def test_run_computes_every_or_only_the_asked_outputs(tmp_path: Path) -> None:
    servable = load(onnx_models.two_in_two_out(tmp_path / "1"))
    inputs = {
        "values": np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32),
        "counts": np.array([2, 5], dtype=np.int64),
    }
    both = run(servable, inputs)
    np.testing.assert_array_equal(both["total"], np.array([6.0, 35.0], dtype=np.float32))
    assert both["total"].dtype == np.float32
    assert both["doubled"].tolist() == [4, 10]
    # numpy's own int64 scalar type (onnxruntime's longlong is equal to it, but JSON
    # encoders that know int64 do not take it).
    assert both["doubled"].dtype.type is np.int64
    assert type(both["doubled"][0]) is np.int64
    assert list(run(servable, inputs, ["doubled"])) == ["doubled"]


def test_strings_go_in_and_come_out_as_bytes(tmp_path: Path) -> None:
    servable = load(onnx_models.strings(tmp_path / "1"))
    words = np.array([b"hi", "h\u00e9".encode()], dtype=object)
    same = run(servable, {"words": words})["same"]
    assert same.dtype == object
    assert same.tolist() == [b"hi", "h\u00e9".encode()]
    with pytest.raises(ServingError) as caught:
        run(servable, {"words": np.array([b"\xff"], dtype=object)})
    assert caught.value.code == Code.INVALID_ARGUMENT
    assert caught.value.message == (
        "input tensor words holds a string that is not UTF-8, as ONNX strings must be"
    )


def test_a_shape_the_graph_does_not_declare_is_invalid_argument(tmp_path: Path) -> None:
    servable = load(onnx_models.half_plus(tmp_path / "1", shape=("batch", 1)))
    with pytest.raises(ServingError) as caught:
        run(servable, {"x": np.ones((2, 3), dtype=np.float32)})
    assert caught.value.code == Code.INVALID_ARGUMENT
    assert caught.value.message == (
        "input tensor x has shape [2,3], which the signature's shape [-1,1] does not accept"
    )


def test_onnxruntimes_own_errors_keep_its_message(tmp_path: Path) -> None:
    servable = load(onnx_models.broadcast_three(tmp_path / "1"))
    np.testing.assert_array_equal(
        run(servable, {"x": np.zeros(3, dtype=np.float32)})["y"], [1.0, 2.0, 3.0]
    )
    with pytest.raises(ServingError) as caught:
        run(servable, {"x": np.zeros(2, dtype=np.float32)})
    # A kernel's failure is onnxruntime's FAIL: INTERNAL, worded by onnxruntime.
    assert caught.value.code == Code.INTERNAL
    assert caught.value.message.startswith("[ONNXRuntimeError]"), caught.value.message
    assert "Add" in caught.value.message


def test_many_threads_share_one_session(tmp_path: Path) -> None:
    servable = load(onnx_models.half_plus(tmp_path / "1"))

    def call(n: int) -> list[float]:
        x = np.arange(n, dtype=np.float32)
        return run(servable, {"x": x})["y"].tolist()

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(call, range(1, 65)))
    assert answers == [[0.5 * i + 2.0 for i in range(n)] for n in range(1, 65)]
    servable.unload()


def test_options_from_servable_yaml(tmp_path: Path) -> None:
    folder = onnx_models.half_plus(tmp_path / "1")
    (folder / "servable.yaml").write_text(
        "intra_op_num_threads: 1\ninter_op_num_threads: 1\n"
        "execution_mode: parallel\ngraph_optimization_level: disable\n"
    )
    assert read_options(str(folder)) == {
        "intra_op_num_threads": 1,
        "inter_op_num_threads": 1,
        "execution_mode": "parallel",
        "graph_optimization_level": "disable",
    }
    servable = load(folder)
    assert run(servable, {"x": np.array([2.0], dtype=np.float32)})["y"].tolist() == [3.0]
    assert read_options(str(tmp_path)) == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("threads: 2\n", "unknown option 'threads' (known: intra_op_num_threads, "),
        (
            "intra_op_num_threads: -1\n",
            "intra_op_num_threads: expected a whole number >= 0, not -1",
        ),
        ("inter_op_num_threads: two\n", "inter_op_num_threads: expected a whole number >= 0"),
        (
            "graph_optimization_level: max\n",
            "graph_optimization_level: expected one of disable, basic, extended, layout, all, "
            "not 'max'",
        ),
        ("- 1\n", "expected a mapping of options"),
        ("a: [\n", "Cannot read "),
    ],
)
def test_bad_options_fail_the_load(tmp_path: Path, text: str, message: str) -> None:
    folder = onnx_models.half_plus(tmp_path / "1")
    (folder / "servable.yaml").write_text(text)
    error = load_error(folder)
    assert error.code == Code.INVALID_ARGUMENT
    assert message in error.message
    assert str(folder / "servable.yaml") in error.message


def test_a_folder_without_model_onnx(tmp_path: Path) -> None:
    error = load_error(tmp_path)
    assert (error.code, error.message) == (
        Code.NOT_FOUND,
        f"Could not find model.onnx in {tmp_path}",
    )


def test_a_corrupt_model_onnx(tmp_path: Path) -> None:
    error = load_error(onnx_models.corrupt(tmp_path / "1"))
    assert error.code == Code.DATA_LOSS
    assert error.message.startswith(f"Cannot load ONNX model {tmp_path / '1' / 'model.onnx'}: ")
    assert "INVALID_PROTOBUF" in error.message


def test_the_registry_names_this_loader(tmp_path: Path) -> None:
    loader = loader_for("onnx")
    assert loader.platform == "onnx"
    servable = loader.load(str(onnx_models.half_plus(tmp_path / "1")), LoadOptions())
    assert servable.runtime == "onnxruntime"


def test_without_onnxruntime_the_load_names_the_extra(tmp_path: Path) -> None:
    folder = onnx_models.half_plus(tmp_path / "1")
    # A fresh interpreter where onnxruntime cannot be imported (None in sys.modules).
    code = f"""
import sys
sys.modules["onnxruntime"] = None
from fastserve.errors import ServingError
from fastserve.servables import loader_for
from fastserve.servables.base import LoadOptions
try:
    loader_for("onnx").load({str(folder)!r}, LoadOptions())
except ServingError as error:
    print(error.code.name, error.message)
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=os.environ
    )
    assert done.returncode == 0, done.stderr
    code_name, message = done.stdout.strip().split(" ", 1)
    assert code_name == "FAILED_PRECONDITION"
    assert message.startswith("model_platform onnx needs onnxruntime, which cannot be imported")
    assert message.endswith(": pip install 'fastserve[onnx]'")


def test_the_readmes_servable_yaml_is_accepted(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start = readme.index("\n### ONNX\n")
    section = readme[start : readme.index("\n### ", start + 1)]
    (example,) = re.findall(r"```yaml\n(.*?)```", section, re.DOTALL)
    folder = onnx_models.half_plus(tmp_path / "1")
    (folder / "servable.yaml").write_text(example)
    assert read_options(str(folder)) == {
        "intra_op_num_threads": 4,
        "inter_op_num_threads": 2,
        "execution_mode": "sequential",
        "graph_optimization_level": "all",
    }
    assert load(folder).runtime == "onnxruntime"
