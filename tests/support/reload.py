"""Model server configs for reload tests: the text proto, and a ReloadConfigRequest of it."""

from __future__ import annotations

from google.protobuf import text_format
from tensorflow_serving.apis import model_management_pb2


def config_text(entries: list[dict]) -> str:
    """A model_config_list of `entries` (name, base_path, and optional platform, policy,
    labels); the platform defaults to python."""
    blocks = []
    for entry in entries:
        lines = [f'name: "{entry["name"]}"', f'base_path: "{entry["base_path"]}"']
        lines.append(f'model_platform: "{entry.get("platform", "python")}"')
        if "policy" in entry:
            lines.append(f"model_version_policy {{ {entry['policy']} }}")
        for label, version in entry.get("labels", {}).items():
            lines.append(f'version_labels {{ key: "{label}" value: {version} }}')
        blocks.append("  config {\n    " + "\n    ".join(lines) + "\n  }")
    return "model_config_list {\n" + "\n".join(blocks) + "\n}\n"


def reload_request(entries: list[dict]) -> model_management_pb2.ReloadConfigRequest:
    request = model_management_pb2.ReloadConfigRequest()
    text_format.Parse(config_text(entries), request.config)
    return request
