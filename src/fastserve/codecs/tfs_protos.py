"""TF Serving's and TensorFlow's protobuf messages, from fastserve's own .proto files.

protos/tensorflow/ and protos/tensorflow_serving/ hold the messages the Python side reads and
writes (TF Serving's APIs and configs, and the TensorFlow framework messages they use),
written with TF Serving's package names, field names and numbers; the build compiles them into
one descriptor set, `tfs_protos.binpb` beside this module. So fastserve needs neither
tensorflow nor tensorflow-serving-api to speak TF Serving's protocol, and TF Serving's clients
see the same wire format, the same service and method names and the same Any type URLs
("type.googleapis.com/tensorflow.serving.SignatureDefMap").

The messages live in a descriptor pool of their own, not protobuf's default pool: TensorFlow,
when installed and imported (the tensorflow servable, the profiler), registers files with the
same names there, and a second registration would fail. The classes here are therefore not
TensorFlow's: a message goes to or from TensorFlow's own classes as bytes.

Each `*_pb2` name below stands for the generated module of the .proto file of that name, with
its messages and enums as attributes (`predict_pb2.PredictRequest`, `types_pb2.DT_FLOAT`).
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.internal import enum_type_wrapper

DESCRIPTOR_SET = "tfs_protos.binpb"


def _load_pool() -> descriptor_pool.DescriptorPool:
    """A new pool holding every file of the descriptor set (dependencies first, as protoc
    writes them with --include_imports)."""
    data = resources.files(__package__).joinpath(DESCRIPTOR_SET).read_bytes()
    files = descriptor_pb2.FileDescriptorSet.FromString(data)
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    return pool


POOL = _load_pool()


def message_class(full_name: str) -> Any:
    """The class of the message `full_name` ("tensorflow.serving.SSLConfig")."""
    return message_factory.GetMessageClass(POOL.FindMessageTypeByName(full_name))


class ProtoFile:
    """The messages and top-level enums of one .proto file, by name, as protoc's generated
    Python module has them (an enum's values too, e.g. DT_FLOAT)."""

    def __init__(self, file_name: str) -> None:
        self.DESCRIPTOR = POOL.FindFileByName(file_name)
        for name, message in self.DESCRIPTOR.message_types_by_name.items():
            setattr(self, name, message_factory.GetMessageClass(message))
        for name, enum in self.DESCRIPTOR.enum_types_by_name.items():
            setattr(self, name, enum_type_wrapper.EnumTypeWrapper(enum))
            for value in enum.values:
                setattr(self, value.name, value.number)

    def __repr__(self) -> str:
        return f"<messages of {self.DESCRIPTOR.name}>"


def _file(path: str) -> Any:
    return ProtoFile(path)


_TF = "tensorflow/core"
_TFS = "tensorflow_serving"

# TensorFlow's framework messages.
types_pb2 = _file(f"{_TF}/framework/types.proto")
tensor_shape_pb2 = _file(f"{_TF}/framework/tensor_shape.proto")
tensor_pb2 = _file(f"{_TF}/framework/tensor.proto")
feature_pb2 = _file(f"{_TF}/example/feature.proto")
example_pb2 = _file(f"{_TF}/example/example.proto")
meta_graph_pb2 = _file(f"{_TF}/protobuf/meta_graph.proto")
error_codes_pb2 = _file(f"{_TF}/protobuf/error_codes.proto")

# TF Serving's APIs.
model_pb2 = _file(f"{_TFS}/apis/model.proto")
predict_pb2 = _file(f"{_TFS}/apis/predict.proto")
input_pb2 = _file(f"{_TFS}/apis/input.proto")
classification_pb2 = _file(f"{_TFS}/apis/classification.proto")
regression_pb2 = _file(f"{_TFS}/apis/regression.proto")
inference_pb2 = _file(f"{_TFS}/apis/inference.proto")
get_model_metadata_pb2 = _file(f"{_TFS}/apis/get_model_metadata.proto")
get_model_status_pb2 = _file(f"{_TFS}/apis/get_model_status.proto")
status_pb2 = _file(f"{_TFS}/apis/status.proto")
model_management_pb2 = _file(f"{_TFS}/apis/model_management.proto")
session_service_pb2 = _file(f"{_TFS}/apis/session_service.proto")
logging_pb2 = _file(f"{_TFS}/apis/logging.proto")
prediction_log_pb2 = _file(f"{_TFS}/apis/prediction_log.proto")
prediction_service_pb2 = _file(f"{_TFS}/apis/prediction_service.proto")
model_service_pb2 = _file(f"{_TFS}/apis/model_service.proto")

# TF Serving's configs.
model_server_config_pb2 = _file(f"{_TFS}/config/model_server_config.proto")
file_system_storage_path_source_pb2 = _file(f"{_TFS}/config/file_system_storage_path_source.proto")
logging_config_pb2 = _file(f"{_TFS}/config/logging_config.proto")
log_collector_config_pb2 = _file(f"{_TFS}/config/log_collector_config.proto")
platform_config_pb2 = _file(f"{_TFS}/config/platform_config.proto")
ssl_config_pb2 = _file(f"{_TFS}/config/ssl_config.proto")
monitoring_config_pb2 = _file(f"{_TFS}/config/monitoring_config.proto")
session_bundle_config_pb2 = _file(f"{_TFS}/servables/tensorflow/session_bundle_config.proto")


def method_path(service: str, method: str) -> str:
    """A method's gRPC path, "/tensorflow.serving.PredictionService/Predict", from the
    service's descriptor (so a misspelt name fails here, not on the wire)."""
    described = POOL.FindServiceByName(service).methods_by_name[method]
    return f"/{described.containing_service.full_name}/{described.name}"
