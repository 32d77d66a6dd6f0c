"""TensorFlow's C API runner on its own (C++, no Python), under the sanitizers, against a
SavedModel built here: many threads at once, strings, zero-copy and copied inputs, errors.

TensorFlow itself is not built with sanitizers. AddressSanitizer (with LeakSanitizer and
UBSan) runs with no suppressions. ThreadSanitizer runs with tests/cpp/tensorflow_tsan.supp,
which suppresses only races whose stacks have TensorFlow's own frames (TSan cannot see
TensorFlow's internal synchronization); none fired in the runs so far, it is a guard.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from support import cpp, models

SOURCES = ("runners/tensorflow_api.cc", "runners/tensorflow_session.cc", "tensor/tensor.cc")


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str, str, Path]:
    """half_plus_two, the C API library, a session config and a tf.Example (x = 3) as hex,
    and a SavedModel of Identity ops (models.identities)."""
    import tensorflow as tf

    from fastserve.servables.base import LoadOptions
    from fastserve.servables.tensorflow import _session_config, c_api_library

    export_dir = tmp_path_factory.mktemp("tf_session") / "1"
    models.half_plus_two_v1(export_dir)
    identities = tmp_path_factory.mktemp("tf_identities") / "1"
    models.identities(identities)
    config = _session_config(LoadOptions()).SerializeToString().hex()
    example = tf.train.Example(
        features=tf.train.Features(
            feature={"x": tf.train.Feature(float_list=tf.train.FloatList(value=[3.0]))}
        )
    )
    return export_dir, c_api_library(), config, example.SerializeToString().hex(), identities


@pytest.mark.parametrize("sanitizer", ["thread", "address,undefined"])
def test_tensorflow_session_under_sanitizer(
    tmp_path: Path, sanitizer: str, saved_model: tuple[Path, str, str, str, Path]
) -> None:
    export_dir, library, config, example, identities = saved_model
    binary = cpp.build(tmp_path, "tensorflow_session", sanitizer, SOURCES, ["-ldl"])
    cpp.run(
        binary,
        [library, str(export_dir), config, example, str(identities)],
        "all tensorflow session checks passed",
        cpp.TENSORFLOW_TSAN,
    )


NATIVE_PREDICT_SOURCES = (
    *SOURCES,
    "grpc/native_predict.cc",
    "grpc/call.cc",
    "grpc/predict_codec.cc",
    "grpc/request_log.cc",
    "table/servable_table.cc",
    "batching/native_batcher.cc",
    "batching/batch_queue.cc",
)


@pytest.mark.parametrize("sanitizer", ["thread", "address,undefined"])
def test_native_predict_under_sanitizer(
    tmp_path: Path, sanitizer: str, saved_model: tuple[Path, str, str, str, Path]
) -> None:
    """The native Predict path (csrc/grpc/native_predict.h): lookups by version, label and
    latest, what it leaves to Python, tensor_content, many threads unbatched and batched."""
    export_dir, library, config, _, _ = saved_model
    flags = [*cpp.native_flags(beside_tensorflow=True), "-ldl"]
    binary = cpp.build(tmp_path, "native_predict", sanitizer, NATIVE_PREDICT_SOURCES, flags)
    cpp.run(
        binary,
        [library, str(export_dir), config],
        "all native predict checks passed",
        cpp.TENSORFLOW_TSAN,
    )
