"""TensorFlow's C API runner through Python: _core.TensorFlowSession and the servable that uses
it (or, where asked or where the C API cannot load, TensorFlow's Python session)."""

from __future__ import annotations

import logging
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from fastserve import _core
from fastserve.errors import Code, ServingError
from fastserve.servables.base import LoadOptions
from fastserve.servables.tensorflow import (
    RUNNER_VARIABLE,
    TensorFlowLoader,
    _session_config,
    c_api_library,
)
from support import models

# numpy type -> TensorFlow type name, each fed to an Identity of its own in `identities`.
DTYPES = {
    np.float32: "float32",
    np.float64: "float64",
    np.int32: "int32",
    np.uint8: "uint8",
    np.int16: "int16",
    np.int8: "int8",
    np.complex64: "complex64",
    np.int64: "int64",
    np.bool_: "bool",
    ml_dtypes.bfloat16: "bfloat16",
    np.uint16: "uint16",
    np.complex128: "complex128",
    np.float16: "float16",
    np.uint32: "uint32",
    np.uint64: "uint64",
}


@pytest.fixture(scope="module")
def identities(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SavedModel with in_<type> -> out_<type> Identity for every type, and strings."""
    export_dir = tmp_path_factory.mktemp("identities") / "identities" / "1"
    models.identities(export_dir)
    assert set(models.IDENTITY_TYPES) == {*DTYPES.values(), "string"}
    return export_dir


@pytest.fixture(scope="module")
def session(identities: Path) -> _core.TensorFlowSession:
    config = _session_config(LoadOptions()).SerializeToString()
    opened = _core.TensorFlowSession(c_api_library(), str(identities), ["serve"], config)
    yield opened
    opened.close()


def test_the_c_api_loads() -> None:
    assert _core.tensorflow_c_api(c_api_library()) == ""
    problem = _core.tensorflow_c_api("/nonexistent/libtensorflow_cc.so.2")
    assert "/nonexistent/libtensorflow_cc.so.2" in problem


@pytest.mark.parametrize("dtype", list(DTYPES), ids=list(DTYPES.values()))
def test_every_dtype_round_trips(session: _core.TensorFlowSession, dtype: type) -> None:
    name = DTYPES[dtype]
    values = np.arange(12).reshape(3, 4).astype(dtype)
    (result,) = session.run({f"in_{name}:0": values}, [f"out_{name}:0"])
    assert result.dtype == np.dtype(dtype)
    assert result.shape == (3, 4)
    np.testing.assert_array_equal(result, values)


def test_scalars_and_empty_tensors(session: _core.TensorFlowSession) -> None:
    (scalar,) = session.run({"in_float32:0": np.float32(1.5)}, ["out_float32:0"])
    assert scalar.shape == () and scalar == 1.5
    (empty,) = session.run({"in_int64:0": np.zeros((0, 3), np.int64)}, ["out_int64:0"])
    assert empty.shape == (0, 3) and empty.dtype == np.int64


@pytest.mark.parametrize(
    "values",
    [
        np.array([b"a", b"\x00binary\xff", b""], dtype=object),
        np.array(["a", "\u00e9t\u00e9", ""], dtype=object),
        np.array([b"a", b"bc", b""]),
        np.array(["a", "\u00e9t\u00e9", ""]),
    ],
    ids=["object-bytes", "object-str", "numpy-S", "numpy-U"],
)
def test_strings_round_trip_as_bytes(session: _core.TensorFlowSession, values: np.ndarray) -> None:
    (result,) = session.run({"in_string:0": values.reshape(3, 1)}, ["out_string:0"])
    expected = [v if isinstance(v, bytes) else v.encode() for v in values.tolist()]
    assert result.dtype == object and result.shape == (3, 1)
    assert result.ravel().tolist() == expected


def test_long_strings(session: _core.TensorFlowSession) -> None:
    values = np.array([b"x" * 1000, b"y" * 70000], dtype=object)
    (result,) = session.run({"in_string:0": values}, ["out_string:0"])
    assert result.tolist() == values.tolist()


def test_unaligned_and_strided_inputs(session: _core.TensorFlowSession) -> None:
    raw = np.arange(65, dtype=np.float32).tobytes()
    unaligned = np.frombuffer(raw, dtype=np.float32, offset=4)  # 4 bytes past the buffer's start
    (result,) = session.run({"in_float32:0": unaligned}, ["out_float32:0"])
    np.testing.assert_array_equal(result, np.arange(1, 65, dtype=np.float32))
    strided = np.arange(20, dtype=np.int32)[::2]
    (result,) = session.run({"in_int32:0": strided}, ["out_int32:0"])
    np.testing.assert_array_equal(result, strided)
    transposed = np.arange(6, dtype=np.float64).reshape(2, 3).T
    (result,) = session.run({"in_float64:0": transposed}, ["out_float64:0"])
    np.testing.assert_array_equal(result, transposed)


def test_outputs_are_read_only_views_that_outlive_the_run(session: _core.TensorFlowSession) -> None:
    (result,) = session.run({"in_float32:0": np.ones(1000, np.float32)}, ["out_float32:0"])
    assert not result.flags.writeable
    del session  # the array keeps TensorFlow's buffer alive, not the caller
    assert float(result.sum()) == 1000.0


def test_errors_carry_tensorflow_codes_and_messages(session: _core.TensorFlowSession) -> None:
    with pytest.raises(_core.TensorFlowError) as raised:
        session.run({"nope:0": np.ones(1, np.float32)}, ["out_float32:0"])
    assert raised.value.args == (5, "FeedInputs: unable to find feed output nope:0")
    with pytest.raises(_core.TensorFlowError) as raised:
        session.run({"in_float32:0": np.ones(1, np.int32)}, ["out_float32:0"])
    assert raised.value.args == (3, "Expects arg[0] to be float but int32 is provided")
    with pytest.raises(_core.TensorFlowError) as raised:
        session.run({"in_float32:0": np.array([{}], dtype=object)}, ["out_float32:0"])
    assert raised.value.args[0] == 3
    assert "in_float32:0" in raised.value.args[1]


def test_a_load_failure_raises_tensorflow_status(tmp_path: Path) -> None:
    with pytest.raises(_core.TensorFlowError) as raised:
        _core.TensorFlowSession(c_api_library(), str(tmp_path), ["serve"], b"")
    code, message = raised.value.args
    assert code != 0 and message


def _load(path: Path) -> object:
    return TensorFlowLoader().load(str(path), LoadOptions())


def test_the_servable_runs_on_the_c_api_and_says_so(
    identities: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(RUNNER_VARIABLE, raising=False)
    with caplog.at_level(logging.INFO, logger="fastserve.servables.tensorflow"):
        servable = _load(identities)
    try:
        assert servable.runner == "c_api"
        assert isinstance(servable.native_session, _core.TensorFlowSession)
        assert "model identities version 1: served by TensorFlow's C API runner" in caplog.text
        signature = servable.signatures["float32"]
        out = servable.run(signature, {"x": np.array([1.0, 2.0], np.float32)}, ["y"])
        np.testing.assert_array_equal(out["y"], [1.0, 2.0])
        with pytest.raises(ServingError) as raised:
            servable.run(signature, {"x": np.array([1], np.int64)}, ["y"])
        assert raised.value.code == Code.INVALID_ARGUMENT
        assert raised.value.message == "Expects arg[0] to be float but int64 is provided"
    finally:
        servable.unload()


def test_the_python_session_when_asked(
    identities: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(RUNNER_VARIABLE, "python")
    with caplog.at_level(logging.INFO, logger="fastserve.servables.tensorflow"):
        servable = _load(identities)
    try:
        assert servable.runner == "python"
        assert servable.native_session is None
        assert (
            "model identities version 1: served by the Python TensorFlow session "
            f"({RUNNER_VARIABLE}=python)" in caplog.text
        )
        out = servable.run(servable.signatures["string"], {"x": np.array([b"a"], object)}, ["y"])
        assert out["y"].tolist() == [b"a"]
        with pytest.raises(ServingError) as raised:
            servable.run(servable.signatures["float32"], {"x": np.array([1], np.int64)}, ["y"])
        assert raised.value.code == Code.INVALID_ARGUMENT
        assert "int64" in raised.value.message  # its words differ; the API checks first
    finally:
        servable.unload()


def test_the_python_session_when_the_c_api_cannot_load(
    identities: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastserve.servables import tensorflow

    monkeypatch.delenv(RUNNER_VARIABLE, raising=False)
    monkeypatch.setattr(tensorflow, "c_api_library", lambda: "/nonexistent/libtensorflow_cc.so.2")
    with caplog.at_level(logging.INFO, logger="fastserve.servables.tensorflow"):
        servable = _load(identities)
    try:
        assert servable.runner == "python"
        assert servable.native_session is None
        assert (
            "model identities version 1: served by the Python TensorFlow session (cannot load "
            "TensorFlow's C API from /nonexistent/libtensorflow_cc.so.2: " in caplog.text
        )
        out = servable.run(servable.signatures["int64"], {"x": np.arange(3)}, ["y"])
        np.testing.assert_array_equal(out["y"], [0, 1, 2])
    finally:
        servable.unload()


def test_many_threads_run_at_once_and_close_ends_them(identities: Path) -> None:
    import threading

    config = _session_config(LoadOptions()).SerializeToString()
    opened = _core.TensorFlowSession(c_api_library(), str(identities), ["serve"], config)
    wrong: list[int] = []

    def work(offset: int) -> None:
        for i in range(300):
            values = np.arange(offset + i, offset + i + 64, dtype=np.int64)
            strings = np.array([str(offset + i).encode()], dtype=object)
            numbers, texts = opened.run(
                {"in_int64:0": values, "in_string:0": strings}, ["out_int64:0", "out_string:0"]
            )
            if not np.array_equal(numbers, values) or texts.tolist() != strings.tolist():
                wrong.append(offset + i)

    threads = [threading.Thread(target=work, args=(n * 1000,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []
    opened.close()
    with pytest.raises(_core.TensorFlowError) as raised:
        opened.run({"in_int64:0": np.arange(2)}, ["out_int64:0"])
    assert raised.value.args == (9, "Session has been closed.")
    opened.close()  # idempotent
