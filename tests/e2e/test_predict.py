"""Predict over gRPC and REST against SavedModels and a python servable."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from support import models
from support.requests import X, predict_request
from support.server import ServerProcess


def test_grpc_predict_latest_version(server: ServerProcess) -> None:
    response = server.prediction.Predict(predict_request("half_plus_two", {"x": X}), timeout=30)
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["y"]), [3.5, 4.0, 5.5])
    assert response.model_spec.name == "half_plus_two"
    assert response.model_spec.version.value == 2
    assert response.model_spec.signature_name == "serving_default"
    # TF Serving writes typed value fields unless asked for tensor_content.
    assert list(response.outputs["y"].float_val) == [3.5, 4.0, 5.5]


@pytest.mark.parametrize(
    ("version", "label", "served", "expected"),
    [
        (1, None, 1, [2.5, 3.0, 4.5]),
        (None, "stable", 1, [2.5, 3.0, 4.5]),
        (None, "canary", 2, [3.5, 4.0, 5.5]),
    ],
)
def test_grpc_predict_version_and_label(
    server: ServerProcess,
    version: int | None,
    label: str | None,
    served: int,
    expected: list[float],
) -> None:
    request = predict_request("half_plus_two", {"x": X}, version=version, label=label)
    response = server.prediction.Predict(request, timeout=30)
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["y"]), expected)
    assert response.model_spec.version.value == served


def test_grpc_predict_tensor_content_input(server: ServerProcess) -> None:
    request = predict_request("half_plus_two", {})
    proto = request.inputs["x"]
    proto.dtype = tf.float32.as_datatype_enum
    proto.tensor_shape.dim.add(size=3)
    proto.tensor_content = X.tobytes()
    response = server.prediction.Predict(request, timeout=30)
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["y"]), [3.5, 4.0, 5.5])


def test_grpc_output_filter(server: ServerProcess) -> None:
    both = server.prediction.Predict(
        predict_request("half_plus_two", {"x": X}, version=1, signature="two_outputs"), timeout=30
    )
    assert set(both.outputs) == {"y", "doubled"}
    np.testing.assert_allclose(tf.make_ndarray(both.outputs["doubled"]), [2.0, 4.0, 10.0])
    only = server.prediction.Predict(
        predict_request(
            "half_plus_two",
            {"x": X},
            version=1,
            signature="two_outputs",
            output_filter=("doubled",),
        ),
        timeout=30,
    )
    assert set(only.outputs) == {"doubled"}
    assert only.model_spec.signature_name == "two_outputs"


def test_grpc_tf2_saved_model(server: ServerProcess) -> None:
    response = server.prediction.Predict(predict_request("tf2", {"x": X}), timeout=30)
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["y"]), [2.5, 3.0, 4.5])
    assert response.model_spec.version.value == 7


def test_grpc_mixed_dtypes(server: ServerProcess) -> None:
    inputs = {
        "values": np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32),
        "counts": np.array([0, 5], dtype=np.int64),
        "words": np.array([b"hi", "h\u00e9".encode()], dtype=object),
    }
    response = server.prediction.Predict(predict_request("mixed", inputs), timeout=30)
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["total"]), [3.0, 12.0])
    assert tf.make_ndarray(response.outputs["flag"]).tolist() == [False, True]
    assert tf.make_ndarray(response.outputs["echo"]).tolist() == [b"hi!", "h\u00e9!".encode()]


def test_grpc_python_servable(server: ServerProcess) -> None:
    response = server.prediction.Predict(predict_request("echo", {"x": X}), timeout=30)
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["y"]), [2.0, 3.0, 6.0])
    assert response.model_spec.version.value == 3
    words = np.array([b"ab", b"xyz"], dtype=object)
    described = server.prediction.Predict(
        predict_request("echo", {"text": words}, signature="describe"), timeout=30
    )
    assert tf.make_ndarray(described.outputs["length"]).tolist() == [2, 3]
    assert tf.make_ndarray(described.outputs["upper_bytes"]).tolist() == [b"AB", b"XYZ"]


# --- REST ------------------------------------------------------------------------------------


def test_rest_predict_row_format(server: ServerProcess) -> None:
    answer = server.http.post(
        "/v1/models/half_plus_two:predict", json={"instances": [1.0, 2.0, 5.0]}
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {"predictions": [3.5, 4.0, 5.5]}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v1/models/half_plus_two/versions/1:predict", [2.5, 3.0, 4.5]),
        ("/v1/models/half_plus_two/labels/stable:predict", [2.5, 3.0, 4.5]),
        ("/v1/models/half_plus_two/labels/canary:predict", [3.5, 4.0, 5.5]),
        ("/v1/models/tf2:predict", [2.5, 3.0, 4.5]),
        ("/v1/models/echo:predict", [2.0, 3.0, 6.0]),
    ],
)
def test_rest_predict_versions_labels_kinds(
    server: ServerProcess, path: str, expected: list[float]
) -> None:
    answer = server.http.post(path, json={"instances": [1.0, 2.0, 5.0]})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"predictions": expected}


def test_rest_predict_columnar_format(server: ServerProcess) -> None:
    answer = server.http.post("/v1/models/half_plus_two:predict", json={"inputs": [1.0, 2.0, 5.0]})
    assert answer.json() == {"outputs": [3.5, 4.0, 5.5]}
    named = server.http.post("/v1/models/half_plus_two:predict", json={"inputs": {"x": [1.0]}})
    assert named.json() == {"outputs": [3.5]}


def test_rest_predict_several_outputs(server: ServerProcess) -> None:
    body = {"signature_name": "two_outputs", "instances": [1.0, 2.0]}
    rows = server.http.post("/v1/models/half_plus_two/versions/1:predict", json=body)
    assert rows.json() == {"predictions": [{"doubled": 2.0, "y": 2.5}, {"doubled": 4.0, "y": 3.0}]}
    body = {"signature_name": "two_outputs", "inputs": [1.0, 2.0]}
    columns = server.http.post("/v1/models/half_plus_two/versions/1:predict", json=body)
    assert columns.json() == {"outputs": {"doubled": [2.0, 4.0], "y": [2.5, 3.0]}}


def test_rest_predict_named_instances_and_strings(server: ServerProcess) -> None:
    instances = [
        {"values": [1.0, 2.0], "counts": 0, "words": "hi"},
        {"values": [3.0, 4.0], "counts": 5, "words": {"b64": base64.b64encode(b"yo").decode()}},
    ]
    answer = server.http.post("/v1/models/mixed:predict", json={"instances": instances})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "predictions": [
            {"echo": "hi!", "flag": False, "total": 3.0},
            {"echo": "yo!", "flag": True, "total": 12.0},
        ]
    }
    inputs = {"values": [[1.0, 2.0]], "counts": [1], "words": ["a"]}
    columnar = server.http.post("/v1/models/mixed:predict", json={"inputs": inputs})
    assert columnar.json() == {"outputs": {"echo": ["a!"], "flag": [True], "total": [4.0]}}


def test_rest_bytes_outputs_are_base64(server: ServerProcess) -> None:
    body = {"signature_name": "describe", "instances": ["ab", "xyz"]}
    answer = server.http.post("/v1/models/echo:predict", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "predictions": [
            {"length": 2, "upper_bytes": {"b64": base64.b64encode(b"AB").decode()}},
            {"length": 3, "upper_bytes": {"b64": base64.b64encode(b"XYZ").decode()}},
        ]
    }


def test_rest_percent_encoded_names(server: ServerProcess) -> None:
    answer = server.http.post(
        "/v1/models/half%5Fplus%5Ftwo/labels/st%61ble:predict", json={"instances": [1.0]}
    )
    assert answer.json() == {"predictions": [2.5]}


def test_grpc_and_rest_agree(server: ServerProcess) -> None:
    values = np.linspace(-3, 3, 13, dtype=np.float32)
    grpc_answer = server.prediction.Predict(
        predict_request("half_plus_two", {"x": values}), timeout=30
    )
    rest_answer = server.http.post(
        "/v1/models/half_plus_two:predict", json={"instances": values.tolist()}
    )
    np.testing.assert_allclose(
        tf.make_ndarray(grpc_answer.outputs["y"]), np.array(rest_answer.json()["predictions"])
    )


def test_one_python_function_may_serve_several_signatures(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    models.python_model(
        tmp_path / "twice" / "1",
        """
        from fastserve.servables.python import signature, tensor

        SPEC = {"x": tensor("float32", [-1])}

        @signature(name="first", inputs=SPEC, outputs=SPEC)
        @signature(name="second", inputs=SPEC, outputs=SPEC)
        def echo(x):
            return {"x": x}

        alias = echo
        """,
    )
    config = tmp_path / "models.yaml"
    config.write_text(
        f"models:\n  - {{name: twice, base_path: {tmp_path / 'twice'}, model_platform: python}}\n"
    )
    server = start_server(f"--config={config}")
    for name in ("first", "second"):
        answer = server.http.post(
            "/v1/models/twice:predict", json={"signature_name": name, "instances": [1.0]}
        )
        assert answer.json() == {"predictions": [1.0]}
