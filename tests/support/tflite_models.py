"""Small TF Lite models made with TensorFlow's TFLiteConverter (no downloads), as version folders.

Converting takes about a second each: tests build them once (session- or module-scoped) and
copy the folders they change.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import tensorflow as tf

from support.store import ModelStore

MODEL_FILE = "model.tflite"


def _write(version_dir: Path, content: bytes) -> Path:
    version_dir.mkdir(parents=True, exist_ok=True)
    (version_dir / MODEL_FILE).write_bytes(content)
    return version_dir


def half_plus_two_graph(version_dir: Path, add: float = 2.0) -> Path:
    """TF Serving's saved_model_half_plus_two_tflite: y = 0.5 * x + add converted from a TF1
    session, so the model has no SignatureDefs; float32 tensors "x" and "y" of shape (1, 1)."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, shape=(1, 1), name="x")
        a = tf.compat.v1.Variable(0.5, name="a")
        b = tf.compat.v1.Variable(add, name="b")
        y = tf.identity(a * x + b, name="y")
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            converter = tf.compat.v1.lite.TFLiteConverter.from_session(session, [x], [y])
            return _write(version_dir, converter.convert())


class _HalfPlus(tf.Module):
    def __init__(self, add: float, shape: list[int | None]) -> None:
        super().__init__()
        self.a = tf.Variable(0.5)
        self.b = tf.Variable(add)
        self.serve = tf.function(
            lambda x: {"y": self.a * x + self.b},
            input_signature=[tf.TensorSpec(shape, tf.float32, name="x")],
        )


def half_plus_two_signature(
    version_dir: Path, add: float = 2.0, shape: tuple[int | None, ...] = (None,)
) -> Path:
    """TF Serving's saved_model_half_plus_two_tflite_with_sigdef: y = 0.5 * x + add with a
    serving_default SignatureDef (input "x", output "y") of `shape` (None: dynamic)."""
    module = _HalfPlus(add, list(shape))
    function = module.serve.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], module)
    return _write(version_dir, converter.convert())


class _Several(tf.Module):
    """serving_default: values float32 [-1, 2] and counts int64 [-1] -> total float32 [-1]
    (row sums weighted 1 and 10, times counts) and doubled int64 [-1]; reverse: words string
    [-1] -> reversed, the words in reverse order."""

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, 2], tf.float32, name="values"),
            tf.TensorSpec([None], tf.int64, name="counts"),
        ]
    )
    def predict(self, values: tf.Tensor, counts: tf.Tensor) -> dict[str, tf.Tensor]:
        sums = tf.reduce_sum(values * tf.constant([1.0, 10.0]), axis=1)
        return {"total": sums * tf.cast(counts, tf.float32), "doubled": counts * 2}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="words")])
    def reverse(self, words: tf.Tensor) -> dict[str, tf.Tensor]:
        order = tf.reverse(tf.range(tf.shape(words)[0]), [0])
        return {"reversed": tf.gather(words, order)}


def several(version_dir: Path) -> Path:
    """Two SignatureDefs (serving_default and reverse) with float, int64 and string tensors,
    converted from a SavedModel."""
    module = _Several()
    saved = version_dir.parent / f".{version_dir.name}.savedmodel"
    tf.saved_model.save(
        module,
        str(saved),
        signatures={"serving_default": module.predict, "reverse": module.reverse},
    )
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    content = converter.convert()
    shutil.rmtree(saved)
    return _write(version_dir, content)


def corrupt(version_dir: Path) -> Path:
    """A model.tflite that is not a TF Lite flatbuffer."""
    return _write(version_dir, b"not a TF Lite model, just bytes " * 8)


class TfLiteStore(ModelStore):
    """Builds each model once (ModelStore's cache); install() copies one to a version folder."""

    def install(self, key: str, build: Callable[[Path], Path], target: Path) -> Path:
        """Copies the model `key` (made by `build` on first use) to the version folder
        `target`, which appears at once, as a finished export does."""
        staging = target.parent / f".{target.name}.copying"
        shutil.copytree(self._built(key, build), staging)
        staging.rename(target)
        return target

    def add_to(self, key: str, build: Callable[[Path], Path], folder: Path) -> Path:
        """Copies the model `key`'s model.tflite into `folder` (a SavedModel's, say)."""
        shutil.copyfile(self._built(key, build) / MODEL_FILE, folder / MODEL_FILE)
        return folder
