"""TF Serving's own test setup: its test models under their names, served as it serves them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support import tflite_models
from support.server import ServerProcess
from support.store import ModelStore


@pytest.fixture(scope="session")
def testdata(store: ModelStore, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TF Serving's testdata layout: each model's version 123 in a 00000123 folder."""
    root = tmp_path_factory.mktemp("testdata")
    store.install(
        store.tf_serving_half_plus_two(), root / "saved_model_half_plus_two_cpu" / "00000123"
    )
    store.install(
        store.tf_serving_half_plus_two_tf2(),
        root / "saved_model_half_plus_two_tf2_cpu" / "00000123",
    )
    store.install(store.half_plus_three(), root / "saved_model_half_plus_three" / "00000123")
    store.install(store.counter(), root / "saved_model_counter" / "00000123")
    return root


@pytest.fixture(scope="session")
def tflite_testdata(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TF Serving's two half_plus_two TF Lite models, converted here: without SignatureDefs
    (tensors x and y of shape (1, 1), from a TF1 session), and with a serving_default one."""
    root = tmp_path_factory.mktemp("tflite_testdata")
    tflite_models.half_plus_two_graph(root / "saved_model_half_plus_two_tflite" / "00000123")
    tflite_models.half_plus_two_signature(
        root / "saved_model_half_plus_two_tflite_with_sigdef" / "00000123", shape=(1, 1)
    )
    return root


def _tflite_server(base_path: Path) -> ServerProcess:
    """As TF Serving's RunServer(model_type='tflite'): the default platform, and
    --prefer_tflite_model=true."""
    return ServerProcess(
        [
            "--model_name=default",
            f"--model_base_path={base_path}",
            "--rest_api_timeout_in_ms=5000",
            "--prefer_tflite_model=true",
        ]
    ).ready()


@pytest.fixture(scope="session")
def tfs_tflite(tflite_testdata: Path) -> Iterator[ServerProcess]:
    process = _tflite_server(tflite_testdata / "saved_model_half_plus_two_tflite")
    yield process
    assert process.terminate() == 0, process.output


@pytest.fixture(scope="session")
def tfs_tflite_with_sigdef(tflite_testdata: Path) -> Iterator[ServerProcess]:
    process = _tflite_server(tflite_testdata / "saved_model_half_plus_two_tflite_with_sigdef")
    yield process
    assert process.terminate() == 0, process.output


@pytest.fixture(scope="session")
def socket_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("uds") / "tf-serving.sock"


@pytest.fixture(scope="session")
def tfs(testdata: Path, socket_path: Path) -> Iterator[ServerProcess]:
    """The server as TF Serving's end-to-end test runs it: model "default" is half_plus_two."""
    process = ServerProcess(
        [
            "--model_name=default",
            f"--model_base_path={testdata / 'saved_model_half_plus_two_cpu'}",
            "--rest_api_timeout_in_ms=5000",
            f"--grpc_socket_path={socket_path}",
        ]
    ).ready()
    yield process
    assert process.terminate() == 0, process.output


@pytest.fixture(scope="session")
def tfs_tf2(testdata: Path) -> Iterator[ServerProcess]:
    """TF Serving's _GetSavedModelHalfPlusTwoTf2 served as model "default"."""
    process = ServerProcess(
        [
            "--model_name=default",
            f"--model_base_path={testdata / 'saved_model_half_plus_two_tf2_cpu'}",
        ]
    ).ready()
    yield process
    assert process.terminate() == 0, process.output


@pytest.fixture(params=["tf1", "tf2"])
def tfs_any(request: pytest.FixtureRequest) -> ServerProcess:
    """The TF1 and the TF2 half_plus_two in turn (TF Serving's testClassify and
    testClassifyTf2, and their Regress and MultiInference twins)."""
    name = "tfs" if request.param == "tf1" else "tfs_tf2"
    server: ServerProcess = request.getfixturevalue(name)
    return server
