"""TF Serving's protobuf messages built from fastserve's types, shared by both frontends."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf import json_format

from fastserve.codecs.tfs_protos import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    meta_graph_pb2,
    model_pb2,
    tensor_shape_pb2,
)
from fastserve.errors import Code, invalid_argument
from fastserve.types import ModelSpec, Signature, TensorInfo, VersionStatus

SIGNATURE_DEF_FIELD = "signature_def"


def model_spec_from_proto(proto: model_pb2.ModelSpec) -> ModelSpec:
    choice = proto.WhichOneof("version_choice")
    return ModelSpec(
        name=proto.name,
        version=proto.version.value if choice == "version" else None,
        label=proto.version_label if choice == "version_label" else None,
        signature_name=proto.signature_name,
    )


def fill_model_spec(proto: model_pb2.ModelSpec, name: str, version: int, signature: str) -> None:
    proto.name = name
    proto.version.value = version
    if signature:
        proto.signature_name = signature


def _tensor_info(info: TensorInfo) -> meta_graph_pb2.TensorInfo:
    proto = meta_graph_pb2.TensorInfo(name=info.name, dtype=int(info.dtype))
    if info.shape is None:
        proto.tensor_shape.unknown_rank = True
    else:
        proto.tensor_shape.CopyFrom(
            tensor_shape_pb2.TensorShapeProto(
                dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in info.shape]
            )
        )
    return proto


def signature_def_map(signatures: Mapping[str, Signature]) -> Any:
    result = get_model_metadata_pb2.SignatureDefMap()
    for name, signature in signatures.items():
        target = result.signature_def[name]
        target.method_name = signature.method_name
        for alias, info in signature.inputs.items():
            target.inputs[alias].CopyFrom(_tensor_info(info))
        for alias, info in signature.outputs.items():
            target.outputs[alias].CopyFrom(_tensor_info(info))
    return result


def check_metadata_fields(fields: Sequence[str]) -> None:
    """GetModelMetadata serves the signature_def field only (TF Serving's wording, quirk kept)."""
    if not fields:
        raise invalid_argument("GetModelMetadataRequest must specify at least one metadata_field")
    for field in fields:
        if field != SIGNATURE_DEF_FIELD:
            # TF Serving concatenates rather than formats this message; clients may match it.
            raise invalid_argument(f"Metadata field %s is not supported{field}")


def model_status_response(statuses: Sequence[VersionStatus]) -> Any:
    response = get_model_status_pb2.GetModelStatusResponse()
    for status in statuses:
        entry = response.model_version_status.add()
        entry.version = status.version
        entry.state = int(status.state)
        if status.error is not None:
            entry.status.error_code = int(status.error.code)
            entry.status.error_message = status.error.message
        else:
            entry.status.error_code = int(Code.OK)
    return response


def model_status_json(statuses: Sequence[VersionStatus]) -> dict[str, Any]:
    """GetModelStatusResponse as TF Serving's REST API prints it (defaults included)."""
    return {
        "model_version_status": [
            {
                "version": str(status.version),
                "state": status.state.name,
                "status": {
                    "error_code": status.error.code.name if status.error else "OK",
                    "error_message": status.error.message if status.error else "",
                },
            }
            for status in statuses
        ]
    }


def metadata_json(name: str, version: int, signatures: Mapping[str, Signature]) -> dict[str, Any]:
    """GetModelMetadataResponse as TF Serving's REST API prints it."""
    return {
        "model_spec": {"name": name, "signature_name": "", "version": str(version)},
        "metadata": {
            SIGNATURE_DEF_FIELD: json_format.MessageToDict(
                signature_def_map(signatures),
                always_print_fields_with_no_presence=True,
                preserving_proto_field_name=True,
            )
        },
    }
