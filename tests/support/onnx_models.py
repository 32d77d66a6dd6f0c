"""Small ONNX models built with onnx's helper API (no downloads), written as version folders."""

from __future__ import annotations

from pathlib import Path

from onnx import TensorProto, helper, save_model

# An opset and IR version every onnxruntime >= 1.17 runs.
OPSET = 13
IR_VERSION = 8


def _save(graph: object, version_dir: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    version_dir.mkdir(parents=True, exist_ok=True)
    save_model(model, str(version_dir / "model.onnx"))
    return version_dir


def half_plus(version_dir: Path, add: float = 2.0, shape: tuple[object, ...] = ("batch",)) -> Path:
    """y = 0.5 * x + add, float32 x and y of `shape` (a str is a symbolic dimension)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))
    half = helper.make_tensor("half", TensorProto.FLOAT, [], [0.5])
    offset = helper.make_tensor("offset", TensorProto.FLOAT, [], [add])
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "half"], ["halved"]),
            helper.make_node("Add", ["halved", "offset"], ["y"]),
        ],
        "half_plus",
        [x],
        [y],
        [half, offset],
    )
    return _save(graph, version_dir)


def two_in_two_out(version_dir: Path) -> Path:
    """values float32 [-1, 2] and counts int64 [-1] -> total float32 [-1] (row sums times
    counts) and doubled int64 [-1] (counts * 2)."""
    values = helper.make_tensor_value_info("values", TensorProto.FLOAT, ["batch", 2])
    counts = helper.make_tensor_value_info("counts", TensorProto.INT64, ["batch"])
    total = helper.make_tensor_value_info("total", TensorProto.FLOAT, ["batch"])
    doubled = helper.make_tensor_value_info("doubled", TensorProto.INT64, ["batch"])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    two = helper.make_tensor("two", TensorProto.INT64, [], [2])
    graph = helper.make_graph(
        [
            helper.make_node("ReduceSum", ["values", "axes"], ["sums"], keepdims=0),
            helper.make_node("Cast", ["counts"], ["counts_float"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["sums", "counts_float"], ["total"]),
            helper.make_node("Mul", ["counts", "two"], ["doubled"]),
        ],
        "two_in_two_out",
        [values, counts],
        [total, doubled],
        [axes, two],
    )
    return _save(graph, version_dir)


def strings(version_dir: Path) -> Path:
    """words string [-1] -> same string [-1] (Identity)."""
    words = helper.make_tensor_value_info("words", TensorProto.STRING, ["batch"])
    same = helper.make_tensor_value_info("same", TensorProto.STRING, ["batch"])
    graph = helper.make_graph(
        [helper.make_node("Identity", ["words"], ["same"])], "strings", [words], [same]
    )
    return _save(graph, version_dir)


def broadcast_three(version_dir: Path) -> Path:
    """y = x + [1, 2, 3] with x float32 of unknown length: onnxruntime refuses a length other
    than 1 or 3 while it runs (its own error, not a declared shape)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])
    steps = helper.make_tensor("steps", TensorProto.FLOAT, [3], [1.0, 2.0, 3.0])
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "steps"], ["y"])], "broadcast", [x], [y], [steps]
    )
    return _save(graph, version_dir)


def corrupt(version_dir: Path) -> Path:
    """A model.onnx that is not a protobuf at all."""
    version_dir.mkdir(parents=True, exist_ok=True)
    (version_dir / "model.onnx").write_bytes(b"\x08\x07not an onnx model\xff\xff\xff")
    return version_dir
