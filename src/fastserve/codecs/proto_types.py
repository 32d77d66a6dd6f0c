"""Protobuf message types that no installed package ships, built at run time from their field
lists (names and numbers as their own .proto files define them).

Each file gets a descriptor pool of its own, so that a later package shipping the same types
cannot clash with them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf import descriptor, descriptor_pb2, descriptor_pool, message_factory

F = descriptor_pb2.FieldDescriptorProto

# (field, number, type, label, type_name): type_name is ".package.Message" for a message field.
Field = tuple[str, int, int, int, str]


def build_pool(
    file_name: str,
    package: str,
    messages: Mapping[str, Sequence[Field]],
    dependencies: Sequence[descriptor.FileDescriptor] = (),
) -> descriptor_pool.DescriptorPool:
    """A pool holding `messages` in one proto3 file, plus the (already compiled) files whose
    types their fields name. A dependency's own imports must be among the dependencies too."""
    pool = descriptor_pool.DescriptorPool()
    for dependency in dependencies:
        compiled = descriptor_pb2.FileDescriptorProto()
        dependency.CopyToProto(compiled)
        pool.Add(compiled)
    file = descriptor_pb2.FileDescriptorProto(
        name=file_name,
        package=package,
        syntax="proto3",
        dependency=[dependency.name for dependency in dependencies],
    )
    for message, fields in messages.items():
        described = file.message_type.add(name=message)
        for name, number, kind, label, type_name in fields:
            field = described.field.add(name=name, number=number, type=kind, label=label)
            if type_name:
                field.type_name = type_name
    pool.Add(file)
    return pool


def message_class(pool: descriptor_pool.DescriptorPool, full_name: str) -> Any:
    """The message class of `full_name` ("package.Message") in `pool`."""
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(full_name))
