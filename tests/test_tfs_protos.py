"""codecs/tfs_protos.py: fastserve's own TF Serving messages (protos/tensorflow*/) are TF
Serving's on the wire. Each is held against tensorflow-serving-api's and TensorFlow's generated
classes: the same fields (names, numbers, types, oneofs), enums and service methods, and
messages written by one side read back equal by the other, Any type URL included."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from google.protobuf import descriptor, descriptor_pool, text_format
from tensorflow.core.example import example_pb2 as tf_example_pb2
from tensorflow.core.framework import tensor_pb2 as tf_tensor_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_service_pb2,
    predict_pb2,
    prediction_log_pb2,
    prediction_service_pb2,
    regression_pb2,
)
from tensorflow_serving.config import model_server_config_pb2, platform_config_pb2

from fastserve.codecs import protos, tfs_protos
from fastserve.dtypes import DType
from fastserve.types import Signature, TensorInfo

# Fields that fastserve's files leave out on purpose (protos/tensorflow/core/protobuf/*.proto
# say why); protobuf keeps them as unknown fields. Nothing else may differ.
LEFT_OUT = {
    "tensorflow.TensorInfo.CompositeTensor": {"type_spec"},
}
# Messages kept by name only (SessionRun's options and metadata, which fastserve never reads).
BY_NAME_ONLY = {"tensorflow.RunOptions", "tensorflow.RunMetadata"}
# Config messages that tensorflow-serving-api does not ship (their field lists are checked by
# the config tests, which parse TF Serving's text protos).
NOT_SHIPPED = {
    "tensorflow.serving.SSLConfig",
    "tensorflow.serving.MonitoringConfig",
    "tensorflow.serving.PrometheusConfig",
    "tensorflow.serving.BatchingParameters",
}

# Make sure TF Serving's and TensorFlow's generated modules are in the default pool.
THEIR_MODULES = (
    model_management_pb2,
    model_service_pb2,
    prediction_log_pb2,
    prediction_service_pb2,
    platform_config_pb2,
)


def our_messages() -> list[descriptor.Descriptor]:
    """Every message fastserve's descriptor set defines (nested ones too), but protobuf's own."""
    found: list[descriptor.Descriptor] = []

    def walk(message: descriptor.Descriptor) -> None:
        if not message.GetOptions().map_entry:
            found.append(message)
        for nested in message.nested_types:
            walk(nested)

    for file in _our_files():
        for message in file.message_types_by_name.values():
            walk(message)
    return found


def _our_files() -> list[descriptor.FileDescriptor]:
    names = [
        value.DESCRIPTOR.name
        for value in vars(tfs_protos).values()
        if isinstance(value, tfs_protos.ProtoFile)
    ]
    return [tfs_protos.POOL.FindFileByName(name) for name in names]


def _field_facts(field: descriptor.FieldDescriptor) -> tuple[Any, ...]:
    target = field.message_type or field.enum_type
    return (
        field.number,
        field.type,
        field.is_repeated,
        target.full_name if target else None,
        field.containing_oneof.name if field.containing_oneof else None,
        field.json_name,
    )


@pytest.mark.parametrize("ours", our_messages(), ids=lambda message: message.full_name)
def test_each_message_has_tf_servings_fields(ours: descriptor.Descriptor) -> None:
    if ours.full_name in NOT_SHIPPED:
        with pytest.raises(KeyError):
            descriptor_pool.Default().FindMessageTypeByName(ours.full_name)
        return
    theirs = descriptor_pool.Default().FindMessageTypeByName(ours.full_name)
    if ours.full_name in BY_NAME_ONLY:
        assert not ours.fields
        return
    expected = {
        field.name: _field_facts(field)
        for field in theirs.fields
        if field.name not in LEFT_OUT.get(ours.full_name, set())
    }
    assert {field.name: _field_facts(field) for field in ours.fields} == expected
    for enum in ours.enum_types:
        their_enum = theirs.enum_types_by_name[enum.name]
        assert [(v.name, v.number) for v in enum.values] == [
            (v.name, v.number) for v in their_enum.values
        ]


def test_top_level_enums_and_services_match() -> None:
    default = descriptor_pool.Default()
    enums = [enum for file in _our_files() for enum in file.enum_types_by_name.values()]
    assert {enum.full_name for enum in enums} >= {
        "tensorflow.DataType",
        "tensorflow.error.Code",
        "tensorflow.serving.ModelType",
    }
    for enum in enums:
        theirs = default.FindEnumTypeByName(enum.full_name)
        assert {v.name: v.number for v in enum.values} == {v.name: v.number for v in theirs.values}
    for service in ("tensorflow.serving.PredictionService", "tensorflow.serving.ModelService"):
        ours = tfs_protos.POOL.FindServiceByName(service)
        theirs = default.FindServiceByName(service)
        assert [
            (m.name, m.input_type.full_name, m.output_type.full_name) for m in ours.methods
        ] == [(m.name, m.input_type.full_name, m.output_type.full_name) for m in theirs.methods]
    assert (
        tfs_protos.method_path("tensorflow.serving.PredictionService", "Predict")
        == "/tensorflow.serving.PredictionService/Predict"
    )


def test_our_classes_are_not_tensorflows() -> None:
    """A private pool: TensorFlow's registrations (already made in this process) and ours
    do not meet."""
    assert tfs_protos.predict_pb2.PredictRequest is not predict_pb2.PredictRequest
    assert tfs_protos.predict_pb2.PredictRequest.DESCRIPTOR.file.pool is tfs_protos.POOL
    assert tfs_protos.types_pb2.DT_STRING == 7
    assert tfs_protos.get_model_status_pb2.ModelVersionStatus.AVAILABLE == 30


# Each text proto below, read into fastserve's class and into TF Serving's, then written by one
# and read by the other.
SAMPLES: list[tuple[str, Any, str]] = [
    (
        "PredictRequest",
        predict_pb2.PredictRequest,
        """
        model_spec { name: "m" version { value: 3 } signature_name: "s" }
        inputs { key: "x" value { dtype: DT_FLOAT tensor_shape { dim { size: 2 } }
                                  float_val: [1.5, 2.5] } }
        inputs { key: "s" value { dtype: DT_STRING tensor_shape { dim { size: 1 } }
                                  string_val: "\\001b" } }
        output_filter: "y"
        client_id: "c"
        request_options { deterministic_mode: FIXED_DECODER_SLOT return_stoptokens: [1, 2] }
        """,
    ),
    (
        "PredictResponse",
        predict_pb2.PredictResponse,
        """
        model_spec { name: "m" version_label: "stable" }
        outputs { key: "y" value { dtype: DT_HALF tensor_shape { unknown_rank: true }
                                   half_val: 15360 tensor_content: "\\000\\001" } }
        """,
    ),
    (
        "ClassificationRequest",
        classification_pb2.ClassificationRequest,
        """
        model_spec { name: "m" }
        input { example_list_with_context {
          examples { features { feature { key: "x" value { float_list { value: 1 } } } } }
          context { features { feature { key: "c" value { int64_list { value: -7 } } } } }
        } }
        """,
    ),
    (
        "ClassificationResponse",
        classification_pb2.ClassificationResponse,
        'result { classifications { classes { label: "a" score: 0.25 } } }',
    ),
    (
        "RegressionResponse",
        regression_pb2.RegressionResponse,
        "result { regressions { value: 4 } } model_spec { name: 'm' }",
    ),
    (
        "MultiInferenceResponse",
        inference_pb2.MultiInferenceResponse,
        "results { model_spec { name: 'm' } regression_result { regressions { value: 1 } } }",
    ),
    (
        "GetModelStatusResponse",
        get_model_status_pb2.GetModelStatusResponse,
        """
        model_version_status {
          version: 2 state: END status { error_code: DATA_LOSS error_message: "bad" }
        }
        """,
    ),
    (
        "ReloadConfigRequest",
        model_management_pb2.ReloadConfigRequest,
        """
        config { model_config_list { config {
          name: "m" base_path: "/models/m" model_platform: "onnx"
          model_version_policy { specific { versions: [1, 2] } }
          version_labels { key: "stable" value: 1 }
          logging_config { sampling_config { sampling_rate: 0.5 } }
        } } }
        """,
    ),
    (
        "PredictionLog",
        prediction_log_pb2.PredictionLog,
        """
        log_metadata { model_spec { name: "m" } saved_model_tags: "serve" }
        session_run_log { request { fetch: "y" feed { name: "x" tensor { dtype: DT_INT64
                                                                         int64_val: 5 } } } }
        """,
    ),
    (
        "ModelServerConfig",
        model_server_config_pb2.ModelServerConfig,
        """
        model_config_list { config { name: "a" base_path: "/a" model_type: TENSORFLOW
                                     model_version_policy { latest { num_versions: 2 } } } }
        """,
    ),
]


def _ours(theirs_class: Any) -> Any:
    return tfs_protos.message_class(theirs_class.DESCRIPTOR.full_name)


@pytest.mark.parametrize(("name", "theirs_class", "text"), SAMPLES, ids=[s[0] for s in SAMPLES])
def test_messages_cross_the_wire_both_ways(name: str, theirs_class: Any, text: str) -> None:
    ours = text_format.Parse(text, _ours(theirs_class)(), descriptor_pool=tfs_protos.POOL)
    theirs = text_format.Parse(text, theirs_class())
    assert theirs_class.FromString(ours.SerializeToString()) == theirs
    assert type(ours).FromString(theirs.SerializeToString()) == ours
    assert text_format.MessageToString(ours) == text_format.MessageToString(theirs)


def test_metadata_any_unpacks_as_tf_servings_signature_def_map() -> None:
    """GetModelMetadata's Any, packed by fastserve, unpacked by a TF Serving client."""
    signatures = {
        "serving_default": Signature(
            "serving_default",
            {"x": TensorInfo("x:0", DType.DT_FLOAT, (-1, 3))},
            {"y": TensorInfo("y:0", DType.DT_STRING, None)},
        )
    }
    response = tfs_protos.get_model_metadata_pb2.GetModelMetadataResponse()
    response.metadata[protos.SIGNATURE_DEF_FIELD].Pack(protos.signature_def_map(signatures))
    sent = response.SerializeToString()

    theirs = get_model_metadata_pb2.GetModelMetadataResponse.FromString(sent)
    packed = theirs.metadata["signature_def"]
    assert packed.type_url == "type.googleapis.com/tensorflow.serving.SignatureDefMap"
    unpacked = get_model_metadata_pb2.SignatureDefMap()
    assert packed.Unpack(unpacked)
    assert (
        text_format.Parse(
            """
        signature_def { key: "serving_default" value {
          inputs { key: "x" value { name: "x:0" dtype: DT_FLOAT tensor_shape {
            dim { size: -1 } dim { size: 3 } } } }
          outputs { key: "y" value { name: "y:0" dtype: DT_STRING tensor_shape {
            unknown_rank: true } } }
          method_name: "tensorflow/serving/predict"
        } }
        """,
            get_model_metadata_pb2.SignatureDefMap(),
        )
        == unpacked
    )


def test_framework_messages_read_tensorflows_bytes() -> None:
    tensor = tf_tensor_pb2.TensorProto(dtype=9, int64_val=[1, -2])
    tensor.tensor_shape.dim.add(size=2)
    ours = tfs_protos.tensor_pb2.TensorProto.FromString(tensor.SerializeToString())
    assert (list(ours.int64_val), ours.tensor_shape.dim[0].size) == ([1, -2], 2)
    example = tf_example_pb2.Example()
    example.features.feature["w"].bytes_list.value.append(b"\xff")
    read = tfs_protos.example_pb2.Example.FromString(example.SerializeToString())
    assert list(read.features.feature["w"].bytes_list.value) == [b"\xff"]


def test_unknown_fields_survive_a_pass_through() -> None:
    """What fastserve's subset leaves out (CompositeTensor's type_spec) is kept as bytes."""
    from tensorflow.core.protobuf import meta_graph_pb2

    info = meta_graph_pb2.TensorInfo()
    info.composite_tensor.type_spec.type_spec_class_name = "RaggedTensorSpec"
    info.composite_tensor.components.add(name="values:0")
    ours = tfs_protos.meta_graph_pb2.TensorInfo.FromString(info.SerializeToString())
    assert meta_graph_pb2.TensorInfo.FromString(ours.SerializeToString()) == info


def test_loads_beside_tensorflow_in_either_order() -> None:
    """fastserve's messages import before or after TensorFlow's own registrations of the same
    names in protobuf's default pool, and both work."""
    script = (
        "import fastserve.codecs.tfs_protos as ours\n"
        "from tensorflow_serving.apis import predict_pb2\n"
        "import tensorflow\n"
        "ours.predict_pb2.PredictRequest(model_spec={'name': 'm'})\n"
        "predict_pb2.PredictRequest(model_spec={'name': 'm'})\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.stdout.strip() == "ok", done.stderr[-2000:]
