"""The native batcher on its own (C++, no Python), under the sanitizers, against SavedModels
built here: batch assembly and splitting, many threads batching, padding, splitting, deadlines,
cancellation, queue bounds, error isolation and stop (tests/cpp/native_batcher_test.cc).

As for tests/test_cpp_tensorflow.py: AddressSanitizer (with LeakSanitizer and UBSan) runs with
no suppressions; ThreadSanitizer with tests/cpp/tensorflow_tsan.supp (TensorFlow's own frames).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from support import cpp, models

SOURCES = (
    "batching/batch_queue.cc",
    "batching/native_batcher.cc",
    "runners/tensorflow_api.cc",
    "runners/tensorflow_session.cc",
    "table/servable_table.cc",
    "tensor/tensor.cc",
)


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, str, Path]:
    """The C API library, half_plus_two, a session config as hex, and models.identities."""
    from fastserve.servables.base import LoadOptions
    from fastserve.servables.tensorflow import _session_config, c_api_library

    export_dir = tmp_path_factory.mktemp("batcher_hp") / "1"
    models.half_plus_two_v1(export_dir)
    identities = tmp_path_factory.mktemp("batcher_identities") / "1"
    models.identities(identities)
    config = _session_config(LoadOptions()).SerializeToString().hex()
    return c_api_library(), export_dir, config, identities


@pytest.mark.parametrize("sanitizer", ["thread", "address,undefined"])
def test_native_batcher_under_sanitizer(
    tmp_path: Path, sanitizer: str, saved_models: tuple[str, Path, str, Path]
) -> None:
    library, export_dir, config, identities = saved_models
    binary = cpp.build(tmp_path, "native_batcher", sanitizer, SOURCES, ["-ldl"])
    cpp.run(
        binary,
        [library, str(export_dir), config, str(identities)],
        "all native batcher checks passed",
        cpp.TENSORFLOW_TSAN,
    )
