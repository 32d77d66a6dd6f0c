"""Builds the bundled example models in this folder.

    python examples/make_examples.py

half_plus_two/1 answers y = 0.5 * x + 2 and half_plus_two/2 answers y = 0.5 * x + 3, so a
reload (or a request for a specific version or label) shows which version answered. Both are
TensorFlow SavedModels exported the way TensorFlow 2 users export them, with tf.saved_model,
with TF Serving's half_plus_two signatures: serving_default for Predict, regress_x_to_y and
classify_x_to_y (tf.Examples with a float feature x) for Regress and Classify.
standardize/1 is a `python` servable: plain numpy code, no TensorFlow.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

STANDARDIZE_MODEL = '''\
"""Standardizes features with the mean and deviation stored beside this file."""

import json
import os

import numpy as np

from fastserve.servables.python import signature, tensor

MEAN = STD = None


def load(path):
    global MEAN, STD
    with open(os.path.join(path, "stats.json")) as handle:
        stats = json.load(handle)
    MEAN = np.asarray(stats["mean"], dtype=np.float32)
    STD = np.asarray(stats["std"], dtype=np.float32)


@signature(
    inputs={"features": tensor("float32", [-1, 3])},
    outputs={"standardized": tensor("float32", [-1, 3])},
)
def serving_default(features):
    return {"standardized": (features - MEAN) / STD}
'''


def half_plus(add: float, export_dir: str) -> None:
    """y = 0.5 * x + add, with TF Serving's half_plus_two signatures: serving_default (x -> y)
    for Predict, and regress_x_to_y and classify_x_to_y over serialized tf.Examples with a
    float feature x, for Regress and Classify."""
    import tensorflow as tf

    features = {"x": tf.io.FixedLenFeature([1], tf.float32)}
    examples = [tf.TensorSpec([None], tf.string, name="inputs")]

    class HalfPlus(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = tf.Variable(0.5, name="a")
            self.b = tf.Variable(add, name="b")

        def compute(self, x: tf.Tensor) -> tf.Tensor:
            return self.a * x + self.b

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def serve(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"y": self.compute(x)}

        @tf.function(input_signature=examples)
        def regress(self, serialized: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"outputs": self.compute(tf.io.parse_example(serialized, features)["x"])}

        @tf.function(input_signature=examples)
        def classify(self, serialized: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"scores": self.compute(tf.io.parse_example(serialized, features)["x"])}

    module = HalfPlus()
    tf.saved_model.save(
        module,
        export_dir,
        signatures={
            "serving_default": module.serve,
            "regress_x_to_y": module.regress,
            "classify_x_to_y": module.classify,
        },
    )


def standardize(export_dir: str) -> None:
    os.makedirs(export_dir)
    with open(os.path.join(export_dir, "model.py"), "w") as handle:
        handle.write(STANDARDIZE_MODEL)
    with open(os.path.join(export_dir, "stats.json"), "w") as handle:
        json.dump({"mean": [1.0, 10.0, 100.0], "std": [0.5, 2.0, 20.0]}, handle)


def main() -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for name in ("half_plus_two", "standardize"):
        shutil.rmtree(os.path.join(HERE, name), ignore_errors=True)
    half_plus(2.0, os.path.join(HERE, "half_plus_two", "1"))
    half_plus(3.0, os.path.join(HERE, "half_plus_two", "2"))
    standardize(os.path.join(HERE, "standardize", "1"))
    print("built examples/half_plus_two/{1,2} and examples/standardize/1")
    return 0


if __name__ == "__main__":
    sys.exit(main())
