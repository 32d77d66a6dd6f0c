"""codecs/protos.py: TF Serving's messages and REST JSON built from fastserve's types."""

from __future__ import annotations

import pytest
from google.protobuf import text_format, wrappers_pb2
from tensorflow_serving.apis import get_model_status_pb2, model_pb2

from fastserve.codecs.protos import (
    check_metadata_fields,
    fill_model_spec,
    metadata_json,
    model_spec_from_proto,
    model_status_json,
    model_status_response,
    signature_def_map,
)
from fastserve.dtypes import DType
from fastserve.errors import Code, ServingError
from fastserve.types import (
    REGRESS_METHOD,
    ModelSpec,
    Signature,
    State,
    TensorInfo,
    VersionStatus,
)

SIGNATURES = {
    "serving_default": Signature(
        "serving_default",
        {"x": TensorInfo("x:0", DType.DT_FLOAT, (-1, 3))},
        {"y": TensorInfo("y:0", DType.DT_FLOAT, None)},
    ),
    "regress": Signature(
        "regress",
        {"inputs": TensorInfo("tf_example:0", DType.DT_STRING, ())},
        {"outputs": TensorInfo("out:0", DType.DT_INT64, (2,))},
        REGRESS_METHOD,
    ),
}


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ('name: "m"', ModelSpec("m")),
        ('name: "m" version { value: 7 }', ModelSpec("m", version=7)),
        ('name: "m" version { value: 0 }', ModelSpec("m", version=0)),
        ('name: "m" version_label: "stable"', ModelSpec("m", label="stable")),
        ('name: "m" signature_name: "s"', ModelSpec("m", signature_name="s")),
        ("", ModelSpec("")),
    ],
)
def test_model_spec_from_proto(text: str, spec: ModelSpec) -> None:
    proto = text_format.Parse(text, model_pb2.ModelSpec())
    assert model_spec_from_proto(proto) == spec


def test_model_spec_from_proto_takes_the_version_choice_set_last() -> None:
    proto = model_pb2.ModelSpec(name="m")
    proto.version.value = 3
    proto.version_label = "x"
    assert model_spec_from_proto(proto) == ModelSpec("m", label="x")
    proto.version.value = 4
    assert model_spec_from_proto(proto) == ModelSpec("m", version=4)


def test_fill_model_spec_names_the_version_and_a_signature_if_any() -> None:
    proto = model_pb2.ModelSpec()
    fill_model_spec(proto, "m", 2, "")
    assert proto == model_pb2.ModelSpec(name="m", version=wrappers_pb2.Int64Value(value=2))
    assert not proto.HasField("version_label")
    fill_model_spec(proto, "m", 2, "regress")
    assert proto.signature_name == "regress"


def test_signature_def_map() -> None:
    proto = signature_def_map(SIGNATURES)
    expected = """
        signature_def {
          key: "regress"
          value {
            inputs { key: "inputs" value { name: "tf_example:0" dtype: DT_STRING tensor_shape {} } }
            outputs {
              key: "outputs"
              value { name: "out:0" dtype: DT_INT64 tensor_shape { dim { size: 2 } } }
            }
            method_name: "tensorflow/serving/regress"
          }
        }
        signature_def {
          key: "serving_default"
          value {
            inputs {
              key: "x"
              value {
                name: "x:0"
                dtype: DT_FLOAT
                tensor_shape { dim { size: -1 } dim { size: 3 } }
              }
            }
            outputs {
              key: "y"
              value { name: "y:0" dtype: DT_FLOAT tensor_shape { unknown_rank: true } }
            }
            method_name: "tensorflow/serving/predict"
          }
        }
    """
    assert proto == text_format.Parse(expected, type(proto)())
    # A scalar has a shape with no dimension, which is not an unknown rank.
    scalar = proto.signature_def["regress"].inputs["inputs"].tensor_shape
    assert scalar.unknown_rank is False and len(scalar.dim) == 0


def test_check_metadata_fields() -> None:
    check_metadata_fields(["signature_def"])
    with pytest.raises(ServingError) as caught:
        check_metadata_fields([])
    assert (caught.value.code, caught.value.message) == (
        Code.INVALID_ARGUMENT,
        "GetModelMetadataRequest must specify at least one metadata_field",
    )
    with pytest.raises(ServingError) as caught:
        check_metadata_fields(["signature_def", "other"])
    assert caught.value.message == "Metadata field %s is not supportedother"


STATUSES = [
    VersionStatus(3, State.LOADING),
    VersionStatus(2, State.END, ServingError(Code.DATA_LOSS, "Cannot parse SavedModel")),
    VersionStatus(1, State.AVAILABLE),
]


def test_model_status_response() -> None:
    response = model_status_response(STATUSES)
    expected = """
        model_version_status { version: 3 state: LOADING status {} }
        model_version_status {
          version: 2 state: END status { error_code: DATA_LOSS error_message: "Cannot parse SavedModel" }
        }
        model_version_status { version: 1 state: AVAILABLE status {} }
    """
    # Read by TF Serving's own class: the same message on the wire.
    theirs = get_model_status_pb2.GetModelStatusResponse.FromString(response.SerializeToString())
    assert theirs == text_format.Parse(expected, get_model_status_pb2.GetModelStatusResponse())
    # OK is written, not left unset: REST prints it, gRPC clients read 0 either way.
    assert response.model_version_status[0].HasField("status")


def test_model_status_json_prints_defaults_as_tf_serving() -> None:
    assert model_status_json(STATUSES) == {
        "model_version_status": [
            {
                "version": "3",
                "state": "LOADING",
                "status": {"error_code": "OK", "error_message": ""},
            },
            {
                "version": "2",
                "state": "END",
                "status": {"error_code": "DATA_LOSS", "error_message": "Cannot parse SavedModel"},
            },
            {
                "version": "1",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            },
        ]
    }
    assert model_status_json([]) == {"model_version_status": []}


def test_metadata_json() -> None:
    doc = metadata_json("m", 4, {"serving_default": SIGNATURES["serving_default"]})
    assert doc == {
        "model_spec": {"name": "m", "signature_name": "", "version": "4"},
        "metadata": {
            "signature_def": {
                "signature_def": {
                    "serving_default": {
                        "inputs": {
                            "x": {
                                "name": "x:0",
                                "dtype": "DT_FLOAT",
                                "tensor_shape": {
                                    "dim": [
                                        {"size": "-1", "name": ""},
                                        {"size": "3", "name": ""},
                                    ],
                                    "unknown_rank": False,
                                },
                            }
                        },
                        "outputs": {
                            "y": {
                                "name": "y:0",
                                "dtype": "DT_FLOAT",
                                "tensor_shape": {"dim": [], "unknown_rank": True},
                            }
                        },
                        "method_name": "tensorflow/serving/predict",
                        "defaults": {},
                    }
                }
            }
        },
    }
