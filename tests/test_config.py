"""Config files: TF Serving's text proto and fastserve's YAML, and their errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastserve.config.model_server import load_text_proto, load_yaml
from fastserve.core.models import ModelConfig
from fastserve.core.policies import All, Latest, Specific
from fastserve.errors import ConfigError

SERVER_FIELDS = ("port", "rest_api_port", "file_system_poll_wait_seconds")


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_text_proto_every_model_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "models.config",
        """
model_config_list {
  config { name: "a" base_path: "/models/a" model_platform: "tensorflow" }
  config {
    name: "b"
    base_path: "/models/b"
    model_platform: "python"
    model_version_policy { latest { num_versions: 3 } }
  }
  config { name: "c" base_path: "file:///models/c" model_version_policy { all {} } }
  config {
    name: "d"
    base_path: "/models/d"
    model_version_policy { specific { versions: 4 versions: 2 } }
    version_labels { key: "stable" value: 2 }
    version_labels { key: "canary" value: 4 }
  }
}
""",
    )
    models = load_text_proto(path).models
    assert models == (
        ModelConfig("a", "/models/a", "tensorflow", Latest(1), {}),
        ModelConfig("b", "/models/b", "python", Latest(3), {}),
        ModelConfig("c", "/models/c", "tensorflow", All(), {}),
        ModelConfig(
            "d", "/models/d", "tensorflow", Specific(frozenset({2, 4})), {"stable": 2, "canary": 4}
        ),
    )


def test_text_proto_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "m.config", 'model_config_list { config { name: "a" base_path: "/a" } }')
    (model,) = load_text_proto(path).models
    assert (model.model_platform, model.version_policy) == ("tensorflow", Latest(1))
    assert load_text_proto(write(tmp_path, "empty.config", "")).models == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('model_config_list { config { name: "a" base_path: "/a" }', "ModelServerConfig: 1:"),
        (
            'model_config_list { config { nme: "a" } }',
            'Error parsing text-format tensorflow.serving.ModelServerConfig: 1:30: Message type "tensorflow.serving.ModelConfig" has no field named "nme".',
        ),
        (
            'model_config_list { config { name: "a" base_path: "a" } }',
            "Expected model a to have an absolute path or URI; got base_path()=a",
        ),
        (
            'model_config_list { config { name: "a" base_path: "s3://bucket/a" } }',
            "only local paths are supported",
        ),
        (
            'model_config_list { config { name: "a" base_path: "/a" model_version_policy { specific {} } } }',
            "specific lists no versions",
        ),
        (
            'model_config_list { config { name: "a" base_path: "/a" } config { name: "a" base_path: "/b" } }',
            "Illegal to list model a multiple times in config list",
        ),
        (
            'model_config_list { config { name: "a" base_path: "/a" model_platform: "torch" } }',
            "Model a requests unsupported platform torch",
        ),
        ("custom_model_config { }", "custom_model_config is not supported"),
    ],
)
def test_text_proto_errors(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, "bad.config", text)
    with pytest.raises(ConfigError) as caught:
        load_text_proto(path)
    assert str(caught.value).startswith(path)
    assert message in str(caught.value)


def test_every_registered_platform_is_accepted(tmp_path: Path) -> None:
    entries = "\n".join(
        f'  config {{ name: "{p}" base_path: "/m/{p}" model_platform: "{p}" }}'
        for p in ("tensorflow", "python", "onnx")
    )
    path = write(tmp_path, "models.config", f"model_config_list {{\n{entries}\n}}\n")
    loaded = load_text_proto(path)
    assert [m.model_platform for m in loaded.models] == ["tensorflow", "python", "onnx"]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_text_proto(str(tmp_path / "nope.config"))


def test_yaml_models_and_server_settings(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "models.yaml",
        """
server:
  port: 9000
  rest_api_port: 9001
models:
  - name: a
    base_path: relative/a
  - name: b
    base_path: /abs/b
    model_platform: python
    model_version_policy: {latest: {num_versions: 2}}
  - name: c
    base_path: c
    model_version_policy: {all: {}}
    version_labels: {stable: 1}
  - name: d
    base_path: d
    model_version_policy:
      specific:
        versions: [1, 3]
  - name: e
    base_path: e
    model_version_policy: {latest: }
""",
    )
    loaded = load_yaml(path, SERVER_FIELDS)
    assert loaded.server == {"port": 9000, "rest_api_port": 9001}
    a, b, c, d, e = loaded.models
    assert a == ModelConfig("a", str(tmp_path / "relative" / "a"))
    assert b == ModelConfig("b", "/abs/b", "python", Latest(2))
    assert c == ModelConfig(
        "c", str(tmp_path / "c"), version_policy=All(), version_labels={"stable": 1}
    )
    assert d.version_policy == Specific(frozenset({1, 3}))
    assert e.version_policy == Latest(1)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("models:\n  - name: a\n    base_pth: a\n", ":3: models[0].base_pth: unknown field"),
        ("models:\n  - name: a\n", ":2: models[0]: missing field base_path"),
        (
            "models:\n  - name: a\n    base_path: a\n    model_platform: torch\n",
            ":4: models[0].model_platform: unsupported platform 'torch' (expected one of: "
            "embedding, lightgbm, onnx, pipeline, python, sklearn, tensorflow, tflite, transform, "
            "vocabulary, xgboost)",
        ),
        (
            "models:\n  - name: a\n    base_path: a\n    model_version_policy: {latest: {num_versions: 0}}\n",
            ":4: models[0].model_version_policy.latest.num_versions: must be at least 1",
        ),
        (
            "models:\n  - name: a\n    base_path: a\n    model_version_policy: {latest: {}, all: {}}\n",
            ":4: models[0].model_version_policy: give exactly one",
        ),
        (
            "models:\n  - name: a\n    base_path: a\n    version_labels: {stable: one}\n",
            ":4: models[0].version_labels.stable: expected an integer",
        ),
        ("server:\n  prot: 1\nmodels: []\n", ":2: server.prot: unknown field"),
        ("models: {a: 1}\n", ":1: models: expected a list of models"),
        ("models:\n  - name: a\n    base_path: [a\n", ":4: "),
        ("", ":1: the file is empty"),
        (
            "models:\n  - {name: a, base_path: a}\n  - {name: a, base_path: b}\n",
            "Illegal to list model a multiple times in config list",
        ),
    ],
)
def test_yaml_errors_name_file_line_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, "bad.yaml", text)
    with pytest.raises(ConfigError) as caught:
        load_yaml(path, SERVER_FIELDS)
    assert str(caught.value).startswith(path)
    assert message in str(caught.value)
