"""Every dtype TF Serving accepts, in and out over gRPC (typed fields and tensor_content) and
REST, through a python servable that echoes each tensor it receives."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
import tensorflow as tf

from support import models
from support.requests import predict_request
from support.server import ServerProcess

DTYPES = {
    "f16": ("float16", np.float16),
    "bf16": ("bfloat16", ml_dtypes.bfloat16),
    "f32": ("float32", np.float32),
    "f64": ("float64", np.float64),
    "i8": ("int8", np.int8),
    "i16": ("int16", np.int16),
    "i32": ("int32", np.int32),
    "i64": ("int64", np.int64),
    "u8": ("uint8", np.uint8),
    "u16": ("uint16", np.uint16),
    "u32": ("uint32", np.uint32),
    "u64": ("uint64", np.uint64),
    "flag": ("bool", np.bool_),
    "text": ("string", object),
    "c64": ("complex64", np.complex64),
    "c128": ("complex128", np.complex128),
}
REAL = [name for name in DTYPES if not name.startswith("c")]

ECHO_ALL = (
    """
    from fastserve.servables.python import signature, tensor

    TYPES = """
    + repr({name: spec for name, (spec, _) in DTYPES.items()})
    + """

    def echo(**inputs):
        return dict(inputs)

    for group, names in (("real", """
    + repr(REAL)
    + """), ("all", list(TYPES))):
        specs = {name: tensor(TYPES[name], [-1]) for name in names}
        globals()[group] = signature(name=group, inputs=specs, outputs=specs)(echo)
"""
)


def sample(name: str) -> np.ndarray:
    _, kind = DTYPES[name]
    if kind is object:
        return np.array([b"a", b"\x00\xff"], dtype=object)
    if kind is np.bool_:
        return np.array([True, False])
    if name.startswith("c"):
        return np.array([1 + 2j, -3.5j], dtype=kind)
    info = np.iinfo(kind) if np.dtype(kind).kind in "iu" else None
    if info is not None:
        return np.array([info.min, info.max], dtype=kind)
    return np.array([1.5, -2.25], dtype=kind)


@pytest.fixture(scope="module")
def echo_all(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dtypes")
    models.python_model(root / "dtypes" / "1", ECHO_ALL)
    config = root / "models.yaml"
    config.write_text(
        f"models:\n  - {{name: dtypes, base_path: {root / 'dtypes'}, model_platform: python}}\n"
    )
    return config


@pytest.mark.parametrize("tensor_content", [False, True], ids=["typed-fields", "tensor-content"])
def test_every_dtype_over_grpc(
    echo_all: Path, start_server: Callable[..., ServerProcess], tensor_content: bool
) -> None:
    flags = ["--enable_serialization_as_tensor_content"] if tensor_content else []
    server = start_server(f"--config={echo_all}", *flags)
    inputs = {name: sample(name) for name in DTYPES}
    response = server.prediction.Predict(
        predict_request("dtypes", inputs, signature="all"), timeout=30
    )
    for name, expected in inputs.items():
        output = response.outputs[name]
        got = tf.make_ndarray(output)
        if name == "bf16":
            got = got.astype(np.float32)
            expected = expected.astype(np.float32)
        assert got.tolist() == expected.tolist(), name
        uses_content = bool(output.tensor_content)
        assert uses_content == (tensor_content and name != "text"), name


def test_every_json_dtype_over_rest(
    echo_all: Path, start_server: Callable[..., ServerProcess]
) -> None:
    server = start_server(f"--config={echo_all}")
    columns = {
        name: [
            value.decode("latin-1") if isinstance(value, bytes) else value
            for value in sample(name)
            .astype(np.float32 if name == "bf16" else sample(name).dtype)
            .tolist()
        ]
        for name in REAL
    }
    columns["text"] = ["a", "b"]
    answer = server.http.post(
        "/v1/models/dtypes:predict", json={"signature_name": "real", "inputs": columns}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"outputs": columns}
    body = {"signature_name": "all", "inputs": {**columns, "c64": [1], "c128": [1]}}
    refused = server.http.post("/v1/models/dtypes:predict", json=body)
    assert refused.status_code == 501  # UNIMPLEMENTED: complex numbers have no JSON form
    assert refused.json()["error"] in (
        "Conversion of JSON Value: 1 to type: complex64",
        "Conversion of JSON Value: 1 to type: complex128",
    )
