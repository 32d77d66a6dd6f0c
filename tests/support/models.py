"""SavedModels and python servables for tests, built with TensorFlow in the test session."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _save_v1(session_graph: object, export_dir: Path, signatures: dict) -> None:
    """Saves a TF1 graph's variables and `signatures` as a SavedModel tagged "serve"."""
    import tensorflow as tf

    v1 = tf.compat.v1
    with v1.Session(graph=session_graph) as session:
        session.run(v1.global_variables_initializer())
        builder = v1.saved_model.Builder(str(export_dir))
        builder.add_meta_graph_and_variables(
            session,
            [v1.saved_model.tag_constants.SERVING],
            signature_def_map=signatures,
            strip_default_attrs=True,
        )
        builder.save()


def half_plus_two_v1(export_dir: Path, add: float = 2.0, extra: bool = True) -> None:
    """TF Serving's test model saved_model_half_plus_two, rebuilt with the TF1 API.

    Serialized tf.Examples (feature x, and x2 defaulting to 0) are parsed into x and x2 of
    shape (-1, 1); y = 0.5 * x + add, y2 = 0.5 * x + 3, y3 = 0.5 * x2 + 3. Signatures as in
    TF Serving's model: serving_default (x -> y), regress_x_to_y, regress_x_to_y2,
    regress_x2_to_y3, classify_x_to_y, classify_x2_to_y3 (scores only); with `extra`, also
    "two_outputs" (x -> y and doubled = 2x) for output filters.
    """
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        a = v1.Variable(0.5, name="a")
        b = v1.Variable(add, name="b")
        c = v1.Variable(3.0, name="c")
        examples = v1.placeholder(tf.string, name="tf_example")
        parsed = v1.io.parse_example(
            examples,
            {
                "x": v1.io.FixedLenFeature([1], tf.float32),
                "x2": v1.io.FixedLenFeature([1], tf.float32, default_value=[0.0]),
            },
        )
        # TensorFlow 2 no longer infers (-1, 1) through parse_example on an unknown-rank
        # input; TF Serving's model records it, so say it.
        for feature in parsed.values():
            feature.set_shape([None, 1])
        x = tf.identity(parsed["x"], name="x")
        y = tf.identity(a * x + b, name="y")
        y2 = tf.identity(a * x + c, name="y2")
        x2 = tf.identity(parsed["x2"], name="x2")
        y3 = tf.identity(a * x2 + c, name="y3")
        doubled = tf.identity(x * 2.0, name="doubled")
        info = v1.saved_model.utils.build_tensor_info
        build = v1.saved_model.signature_def_utils.build_signature_def
        constants = v1.saved_model.signature_constants

        def regress(source: tf.Tensor, target: tf.Tensor) -> object:
            return build(
                {"inputs": info(source)}, {"outputs": info(target)}, constants.REGRESS_METHOD_NAME
            )

        def classify(source: tf.Tensor, target: tf.Tensor) -> object:
            return build(
                {"inputs": info(source)}, {"scores": info(target)}, constants.CLASSIFY_METHOD_NAME
            )

        def predict(inputs: dict, outputs: dict) -> object:
            return build(
                {k: info(v) for k, v in inputs.items()},
                {k: info(v) for k, v in outputs.items()},
                constants.PREDICT_METHOD_NAME,
            )

        signatures = {
            "serving_default": predict({"x": x}, {"y": y}),
            "regress_x_to_y": regress(examples, y),
            "regress_x_to_y2": regress(examples, y2),
            "regress_x2_to_y3": regress(x2, y3),
            "classify_x_to_y": classify(examples, y),
            "classify_x2_to_y3": classify(x2, y3),
        }
        if extra:
            signatures["two_outputs"] = predict({"x": x}, {"y": y, "doubled": doubled})
        _save_v1(graph, export_dir, signatures)


def half_plus_three(export_dir: Path) -> None:
    """TF Serving's saved_model_half_plus_three: serving_default (x -> y = 0.5 * x + 3) and a
    regress signature keyed by its method name, "tensorflow/serving/regress"."""
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        examples = v1.placeholder(tf.string, name="tf_example")
        parsed = v1.io.parse_example(examples, {"x": v1.io.FixedLenFeature([1], tf.float32)})
        parsed["x"].set_shape([None, 1])
        x = tf.identity(parsed["x"], name="x")
        y = tf.identity(v1.Variable(0.5, name="a") * x + v1.Variable(3.0, name="b"), name="y")
        info = v1.saved_model.utils.build_tensor_info
        build = v1.saved_model.signature_def_utils.build_signature_def
        constants = v1.saved_model.signature_constants
        _save_v1(
            graph,
            export_dir,
            {
                "serving_default": build(
                    {"x": info(x)}, {"y": info(y)}, constants.PREDICT_METHOD_NAME
                ),
                constants.REGRESS_METHOD_NAME: build(
                    {"inputs": info(examples)}, {"outputs": info(y)}, constants.REGRESS_METHOD_NAME
                ),
            },
        )


def counter(export_dir: Path) -> None:
    """TF Serving's saved_model_counter: one float variable, and the predict signatures
    get_counter, incr_counter, incr_counter_by (input delta) and reset_counter, each with
    the output "output"."""
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        value = v1.Variable(0.0, dtype=tf.float32, name="counter", use_resource=True)
        delta = v1.placeholder(tf.float32, name="delta")
        read = tf.identity(value.read_value(), name="get")
        incremented = tf.identity(value.assign_add(1.0), name="incr")
        incremented_by = tf.identity(value.assign_add(delta), name="incr_by")
        reset = tf.identity(value.assign(0.0), name="reset")
        info = v1.saved_model.utils.build_tensor_info
        build = v1.saved_model.signature_def_utils.build_signature_def
        method = v1.saved_model.signature_constants.PREDICT_METHOD_NAME
        _save_v1(
            graph,
            export_dir,
            {
                "get_counter": build({}, {"output": info(read)}, method),
                "incr_counter": build({}, {"output": info(incremented)}, method),
                "incr_counter_by": build(
                    {"delta": info(delta)}, {"output": info(incremented_by)}, method
                ),
                "reset_counter": build({}, {"output": info(reset)}, method),
            },
        )


IDENTITY_TYPES = [
    "float32",
    "float64",
    "int32",
    "uint8",
    "int16",
    "int8",
    "complex64",
    "int64",
    "bool",
    "bfloat16",
    "uint16",
    "complex128",
    "float16",
    "uint32",
    "uint64",
    "string",
]


def identities(export_dir: Path) -> None:
    """A TF1 SavedModel with, for each of IDENTITY_TYPES, a signature of that name feeding
    placeholder in_<type> (x) to Identity out_<type> (y)."""
    import tensorflow as tf

    v1 = tf.compat.v1
    info = v1.saved_model.utils.build_tensor_info
    build = v1.saved_model.signature_def_utils.build_signature_def
    graph = tf.Graph()
    signatures = {}
    with graph.as_default():
        for name in IDENTITY_TYPES:
            source = v1.placeholder(tf.as_dtype(name), name=f"in_{name}")
            target = tf.identity(source, name=f"out_{name}")
            signatures[name] = build(
                {"x": info(source)}, {"y": info(target)}, "tensorflow/serving/predict"
            )
        _save_v1(graph, export_dir, signatures)


def string_pair(export_dir: Path) -> None:
    """Two string inputs and a binary output: joined_bytes = first + b"|" + second, and
    length (int64) = its length."""
    import tensorflow as tf

    class Pair(tf.Module):
        @tf.function(
            input_signature=[
                tf.TensorSpec([None], tf.string, name="first"),
                tf.TensorSpec([None], tf.string, name="second"),
            ]
        )
        def serve(self, first: tf.Tensor, second: tf.Tensor) -> dict:
            joined = tf.strings.join([first, second], separator="|")
            return {"joined_bytes": joined, "length": tf.cast(tf.strings.length(joined), tf.int64)}

    module = Pair()
    tf.saved_model.save(module, str(export_dir), signatures={"serving_default": module.serve})


def half_plus_two_tf2(export_dir: Path, add: float = 2.0) -> None:
    """The same function exported the TensorFlow 2 way (tf.Module + tf.saved_model.save)."""
    import tensorflow as tf

    class HalfPlus(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = tf.Variable(0.5)
            self.b = tf.Variable(add)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def serve(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"y": self.a * x + self.b}

    module = HalfPlus()
    tf.saved_model.save(module, str(export_dir), signatures={"serving_default": module.serve})


def half_plus_two_tf2_signatures(export_dir: Path) -> None:
    """TF Serving's saved_model_half_plus_two_tf2_cpu, rebuilt with tf.Module: the TF1 model's
    signatures, but each its own concrete function, so each has its own input tensor
    (regress_x_to_y_inputs:0, classify_x_to_y_inputs:0, ...): serving_default (x [1] -> y),
    regress_x_to_y, regress_x_to_y2 and classify_x_to_y over serialized tf.Examples,
    regress_x2_to_y3 and classify_x2_to_y3 over a float x2."""
    import tensorflow as tf

    features = {"x": tf.io.FixedLenFeature([1], tf.float32)}
    examples = [tf.TensorSpec([None], tf.string, name="inputs")]
    floats = [tf.TensorSpec([1], tf.float32, name="inputs")]

    class HalfPlusTwo(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = tf.Variable(0.5)
            self.b = tf.Variable(2.0)
            self.c = tf.Variable(3.0)

        def parsed(self, serialized: tf.Tensor) -> tf.Tensor:
            return tf.io.parse_example(serialized, features)["x"]

        @tf.function(input_signature=[tf.TensorSpec([1], tf.float32)])
        def predict(self, x: tf.Tensor) -> dict:
            return {"y": self.a * x + self.b}

        @tf.function(input_signature=examples)
        def regress_xy(self, serialized: tf.Tensor) -> dict:
            return {"outputs": self.a * self.parsed(serialized) + self.b}

        @tf.function(input_signature=examples)
        def regress_xy2(self, serialized: tf.Tensor) -> dict:
            return {"outputs": self.a * self.parsed(serialized) + self.c}

        @tf.function(input_signature=floats)
        def regress_x2y3(self, x2: tf.Tensor) -> dict:
            return {"outputs": self.a * x2 + self.c}

        @tf.function(input_signature=examples)
        def classify_xy(self, serialized: tf.Tensor) -> dict:
            return {"scores": self.a * self.parsed(serialized) + self.b}

        @tf.function(input_signature=floats)
        def classify_x2y3(self, x2: tf.Tensor) -> dict:
            return {"scores": self.a * x2 + self.c}

    module = HalfPlusTwo()
    tf.saved_model.save(
        module,
        str(export_dir),
        signatures={
            "serving_default": module.predict,
            "regress_x_to_y": module.regress_xy,
            "regress_x_to_y2": module.regress_xy2,
            "regress_x2_to_y3": module.regress_x2y3,
            "classify_x_to_y": module.classify_xy,
            "classify_x2_to_y3": module.classify_x2y3,
        },
    )


def mixed_inputs(export_dir: Path) -> None:
    """Three typed inputs and three outputs, for dtypes, names and row/columnar formats.

    inputs:  values float32 [-1, 2], counts int64 [-1], words string [-1]
    outputs: total float32 [-1] (row sum of values plus counts), flag bool [-1] (counts > 0),
             echo string [-1] (words, with "!" appended)
    """
    import tensorflow as tf

    class Mixed(tf.Module):
        @tf.function(
            input_signature=[
                tf.TensorSpec([None, 2], tf.float32, name="values"),
                tf.TensorSpec([None], tf.int64, name="counts"),
                tf.TensorSpec([None], tf.string, name="words"),
            ]
        )
        def serve(self, values: tf.Tensor, counts: tf.Tensor, words: tf.Tensor) -> dict:
            total = tf.reduce_sum(values, axis=1) + tf.cast(counts, tf.float32)
            return {
                "total": total,
                "flag": counts > 0,
                "echo": tf.strings.join([words, tf.constant("!")]),
            }

    module = Mixed()
    tf.saved_model.save(module, str(export_dir), signatures={"serving_default": module.serve})


def python_model(export_dir: Path, source: str) -> None:
    """A `python` servable: model.py with the given source."""
    export_dir.mkdir(parents=True, exist_ok=True)
    (export_dir / "model.py").write_text(textwrap.dedent(source))


ECHO_MODEL = """
    import numpy as np

    from fastserve.servables.python import signature, tensor

    OFFSET = None


    def load(path):
        global OFFSET
        OFFSET = float(open(path + "/offset.txt").read())


    @signature(inputs={"x": tensor("float32", [-1])}, outputs={"y": tensor("float32", [-1])})
    def serving_default(x):
        return {"y": x + OFFSET}


    @signature(
        inputs={"text": tensor("string", [-1])},
        outputs={"length": tensor("int64", [-1]), "upper_bytes": tensor("string", [-1])},
    )
    def describe(text):
        return {
            "length": [len(t) for t in text],
            "upper_bytes": [t.upper() for t in text],
        }


    @signature(inputs={"x": tensor("float32", [-1])}, outputs={"y": tensor("float32", [-1])})
    def explode(x):
        raise RuntimeError("the model failed on purpose")


    @signature(inputs={"x": tensor("float32", [-1])}, outputs={"y": tensor("float32", [-1])})
    def leave(x):
        raise SystemExit(3)


    @signature(inputs={"x": tensor("float32", [-1])}, outputs={"y": tensor("float32", [-1])})
    def double_in_place(x):
        x *= 2
        return {"y": x}


    @signature(inputs={"small": tensor("int8", [-1])}, outputs={"wide": tensor("int64", [-1])})
    def widen(small):
        return {"wide": small.astype("int64")}
"""


def echo_model(export_dir: Path, offset: float) -> None:
    python_model(export_dir, ECHO_MODEL)
    (export_dir / "offset.txt").write_text(str(offset))


def corrupt_saved_model(export_dir: Path) -> None:
    """A version folder whose saved_model.pb is not a SavedModel."""
    export_dir.mkdir(parents=True, exist_ok=True)
    (export_dir / "saved_model.pb").write_bytes(b"this is not a protocol buffer \x00\xff" * 10)
