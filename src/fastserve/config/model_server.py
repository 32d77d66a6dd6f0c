"""Model configs: TF Serving's ModelServerConfig text proto and fastserve's YAML, both typed here.

The YAML form takes the same model fields as the text proto plus a `server:` section whose
keys are the command-line flags' names, and resolves relative base paths against the file.
Every error names the file, the line and the field.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from fastserve.core.models import ModelConfig
from fastserve.core.policies import All, Latest, Specific, VersionPolicy
from fastserve.errors import ConfigError
from fastserve.servables import platforms


@dataclass(frozen=True)
class ServingConfig:
    """What a config file says: the models, and (YAML only) server settings by flag name."""

    models: tuple[ModelConfig, ...]
    server: Mapping[str, Any] = field(default_factory=dict)


def _at(source: str, message: str) -> ConfigError:
    """An error about `source` (a file, or "" when the config came over the wire)."""
    return ConfigError(f"{source}: {message}" if source else message)


def validate_models(models: list[ModelConfig], source: str) -> None:
    """TF Serving's checks on a model list, with its wording."""
    seen: set[str] = set()
    for model in models:
        if model.name in seen:
            raise _at(source, f"Illegal to list model {model.name} multiple times in config list")
        seen.add(model.name)
        if not model.name:
            raise _at(source, "a model has an empty name")
        if model.model_platform not in platforms():
            raise _at(
                source,
                f"Model {model.name} requests unsupported platform {model.model_platform}",
            )


# --- TF Serving's text proto --------------------------------------------------------------


def _has_scheme(path: str) -> bool:
    return "://" in path


def load_text_proto(path: str) -> ServingConfig:
    """Reads a ModelServerConfig text proto, unchanged from TF Serving."""
    from google.protobuf import text_format

    from fastserve.codecs.tfs_protos import POOL, model_server_config_pb2

    text = _read(path)
    message = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, message, descriptor_pool=POOL)
    except text_format.ParseError as error:
        # Worded like protobuf's own log line, which scripts written for TF Serving look for.
        raise ConfigError(
            f"{path}: Error parsing text-format tensorflow.serving.ModelServerConfig: "
            f"{_proto_position(error)}: {_proto_reason(error)}"
        ) from None
    return ServingConfig(models=tuple(models_from_proto(message, path)))


def models_from_proto(message: Any, source: str) -> list[ModelConfig]:
    """The models of a ModelServerConfig message (from a file or a ReloadConfigRequest);
    `source` names where it came from in errors."""
    kind = message.WhichOneof("config")
    if kind is None:
        return []
    if kind != "model_config_list":
        raise _at(source, f"{kind} is not supported; use model_config_list")
    models: list[ModelConfig] = []
    for index, proto in enumerate(message.model_config_list.config):
        where = f"model_config_list.config[{index}] ({proto.name or 'no name'})"
        if not (os.path.isabs(proto.base_path) or _has_scheme(proto.base_path)):
            raise _at(
                source,
                f"Expected model {proto.name} to have an absolute path or URI; "
                f"got base_path()={proto.base_path}",
            )
        if _has_scheme(proto.base_path) and not proto.base_path.startswith("file://"):
            raise _at(
                source, f"{where}: base_path {proto.base_path}: only local paths are supported"
            )
        models.append(
            ModelConfig(
                name=proto.name,
                base_path=proto.base_path.removeprefix("file://"),
                model_platform=proto.model_platform or "tensorflow",
                version_policy=_proto_policy(proto.model_version_policy, source, where),
                version_labels=dict(proto.version_labels),
            )
        )
    validate_models(models, source)
    return models


def _proto_policy(policy: Any, source: str, where: str) -> VersionPolicy:
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return All()
    if choice == "specific":
        if not policy.specific.versions:
            raise _at(source, f"{where}: model_version_policy.specific lists no versions")
        return Specific(frozenset(policy.specific.versions))
    if choice == "latest":
        return Latest(max(1, policy.latest.num_versions))
    return Latest()


def _proto_position(error: Exception) -> str:
    line = getattr(error, "line", None) or (error.GetLine() if hasattr(error, "GetLine") else None)
    column = getattr(error, "column", None) or (
        error.GetColumn() if hasattr(error, "GetColumn") else None
    )
    if line is None:
        return "?"
    return f"{line}:{column}" if column else str(line)


def _proto_reason(error: Exception) -> str:
    # ParseError's message starts with "line:column : "; the position is printed already.
    text = str(error)
    head, sep, rest = text.partition(" : ")
    return rest if sep and head.replace(":", "").isdigit() else text


# --- fastserve's YAML ----------------------------------------------------------------------

_MODEL_FIELDS = (
    "name",
    "base_path",
    "model_platform",
    "model_version_policy",
    "version_labels",
    "batching",
)


@dataclass(frozen=True)
class _At:
    """Where a YAML node sits: the file, its line, and its field path."""

    file: str
    node: yaml.Node
    path: str

    def fail(self, message: str) -> ConfigError:
        line = self.node.start_mark.line + 1
        return ConfigError(f"{self.file}:{line}: {self.path}: {message}")

    def child(self, node: yaml.Node, name: str) -> _At:
        return _At(self.file, node, f"{self.path}.{name}" if self.path else name)


def _mapping(at: _At, allowed: tuple[str, ...] | None = None) -> dict[str, _At]:
    if not isinstance(at.node, yaml.MappingNode):
        raise at.fail("expected a mapping")
    fields: dict[str, _At] = {}
    for key_node, value_node in at.node.value:
        key = key_node.value
        key_at = at.child(key_node, str(key))
        if allowed is not None and key not in allowed:
            raise key_at.fail(f"unknown field (expected one of: {', '.join(allowed)})")
        if key in fields:
            raise key_at.fail("given twice")
        fields[key] = at.child(value_node, str(key))
    return fields


def _scalar(at: _At) -> Any:
    if not isinstance(at.node, yaml.ScalarNode):
        raise at.fail("expected a single value")
    return yaml.safe_load(yaml.serialize(at.node))


def _string(at: _At) -> str:
    value = _scalar(at)
    if not isinstance(value, str) or not value:
        raise at.fail("expected a non-empty string")
    return value


def _integer(at: _At) -> int:
    value = _scalar(at)
    if isinstance(value, bool) or not isinstance(value, int):
        raise at.fail("expected an integer")
    return value


def _yaml_policy(at: _At) -> VersionPolicy:
    fields = _mapping(at, ("latest", "all", "specific"))
    if len(fields) != 1:
        raise at.fail("give exactly one of latest, all, specific")
    ((choice, inner),) = fields.items()
    if choice == "all":
        if not (isinstance(inner.node, yaml.ScalarNode) and inner.node.value in ("", "null", "~")):
            _mapping(inner, ())
        return All()
    if choice == "latest":
        if isinstance(inner.node, yaml.ScalarNode) and inner.node.value in ("", "null", "~"):
            return Latest()
        options = _mapping(inner, ("num_versions",))
        count = _integer(options["num_versions"]) if "num_versions" in options else 1
        if count < 1:
            raise options["num_versions"].fail("must be at least 1")
        return Latest(count)
    options = _mapping(inner, ("versions",))
    if "versions" not in options:
        raise inner.fail("missing field versions")
    listed = options["versions"]
    if not isinstance(listed.node, yaml.SequenceNode) or not listed.node.value:
        raise listed.fail("expected a non-empty list of version numbers")
    versions = [_integer(listed.child(item, f"[{i}]")) for i, item in enumerate(listed.node.value)]
    return Specific(frozenset(versions))


def _yaml_model(at: _At, directory: str) -> ModelConfig:
    fields = _mapping(at, _MODEL_FIELDS)
    for required in ("name", "base_path"):
        if required not in fields:
            raise at.fail(f"missing field {required}")
    base_path = _string(fields["base_path"])
    if not _has_scheme(base_path):
        base_path = os.path.normpath(os.path.join(directory, base_path))
    platform = _string(fields["model_platform"]) if "model_platform" in fields else "tensorflow"
    if platform not in platforms():
        raise fields["model_platform"].fail(
            f"unsupported platform {platform!r} (expected one of: {', '.join(platforms())})"
        )
    batching = None
    if "batching" in fields:
        from fastserve.config.batching import from_mapping

        section = fields["batching"]
        values = {key: _scalar_or_list(value_at) for key, value_at in _mapping(section).items()}
        try:
            batching = from_mapping(values, section.path)
        except ConfigError as error:
            line = section.node.start_mark.line + 1
            raise ConfigError(f"{section.file}:{line}: {error}") from None
    labels: dict[str, int] = {}
    if "version_labels" in fields:
        for label, value_at in _mapping(fields["version_labels"]).items():
            labels[label] = _integer(value_at)
    return ModelConfig(
        name=_string(fields["name"]),
        base_path=base_path,
        model_platform=platform,
        version_policy=(
            _yaml_policy(fields["model_version_policy"])
            if "model_version_policy" in fields
            else Latest()
        ),
        version_labels=labels,
        batching=batching,
    )


def _scalar_or_list(at: _At) -> Any:
    if isinstance(at.node, yaml.SequenceNode):
        return [_scalar(at.child(item, f"[{i}]")) for i, item in enumerate(at.node.value)]
    return _scalar(at)


def load_yaml(path: str, server_fields: tuple[str, ...]) -> ServingConfig:
    """Reads fastserve's YAML config; `server_fields` are the settings its server: may set."""
    text = _read(path)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else "?"
        raise ConfigError(f"{path}:{line}: {error.problem or error.context}") from None
    if root is None:
        raise ConfigError(f"{path}:1: the file is empty; it needs a models: list")
    top = _mapping(_At(path, root, ""), ("server", "models"))
    server: dict[str, Any] = {}
    if "server" in top:
        for key, value_at in _mapping(top["server"], server_fields).items():
            server[key] = _scalar(value_at)
    models: list[ModelConfig] = []
    if "models" in top:
        listed = top["models"]
        if not isinstance(listed.node, yaml.SequenceNode):
            raise listed.fail("expected a list of models")
        directory = os.path.dirname(os.path.abspath(path))
        models = [
            _yaml_model(_At(path, item, f"models[{i}]"), directory)
            for i, item in enumerate(listed.node.value)
        ]
    validate_models(models, path)
    return ServingConfig(models=tuple(models), server=server)


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the config file: {error.strerror}") from None
