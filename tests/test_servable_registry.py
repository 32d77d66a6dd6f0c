"""The registry of servable kinds: entry points of the group fastserve.servables.

Third-party kinds are real installed distributions here: a `*.dist-info` folder with an
entry_points.txt on the path of a fresh interpreter, as pip would leave one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fastserve.servables import GROUP, loader_for, platforms
from fastserve.servables.base import LoadOptions
from support.server import ServerProcess

KIND = """
import numpy as np

from fastserve.dtypes import DType
from fastserve.servables.base import Loader, Servable
from fastserve.types import Signature, TensorInfo

IO = {"x": TensorInfo("x", DType.DT_FLOAT, (-1,))}


class ConstantServable(Servable):
    runtime = "constant"
    signatures = {"serving_default": Signature("serving_default", IO, IO)}

    def run(self, signature, inputs, output_names, context=None):
        return {"x": np.full_like(inputs["x"], 42.0)}


class ConstantLoader(Loader):
    platform = "constant"

    def load(self, path, options):
        return ConstantServable()


NOT_A_LOADER = object()
"""


def install_kind(site: Path, distribution: str, entries: dict[str, str]) -> None:
    """A distribution `distribution` in `site` whose module `<distribution>_kind` is KIND and
    whose entry points in fastserve.servables are `entries` (name -> value)."""
    (site / f"{distribution}_kind.py").write_text(KIND)
    info = site / f"{distribution}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 0.1\n")
    lines = "".join(f"{name} = {value}\n" for name, value in entries.items())
    (info / "entry_points.txt").write_text(f"[{GROUP}]\n{lines}")


def run_python(site: Path, code: str) -> dict:
    """Runs `code` in a fresh interpreter with `site` on its path; it prints one JSON value."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=dict(os.environ, PYTHONPATH=str(site)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


LOAD = """
    import json, sys
    from fastserve.errors import ServingError
    from fastserve.servables import loader_for, platforms
    from fastserve.servables.base import LoadOptions

    loader = loader_for(PLATFORM)
    imported_before_load = "thirdparty_kind" in sys.modules
    try:
        servable = loader.load("/nowhere", LoadOptions())
        result = {"runtime": servable.runtime, "signatures": sorted(servable.signatures)}
    except ServingError as error:
        result = {"code": error.code.name, "message": error.message}
    print(json.dumps({"platforms": platforms(), "imported_before_load": imported_before_load,
                      "platform": loader.platform, **result}))
"""


def test_builtin_kinds_are_registered() -> None:
    assert set(platforms()) >= {
        "tensorflow",
        "python",
        "onnx",
        "tflite",
        "xgboost",
        "lightgbm",
        "sklearn",
        "embedding",
        "vocabulary",
        "transform",
        "pipeline",
    }
    assert platforms() == tuple(sorted(platforms()))
    with pytest.raises(KeyError):
        loader_for("torch")


def test_a_builtin_kind_loads_through_the_registry(tmp_path: Path) -> None:
    (tmp_path / "model.py").write_text(
        "from fastserve.servables.python import signature, tensor\n"
        "@signature(inputs={'x': tensor('float32')}, outputs={'x': tensor('float32')})\n"
        "def serving_default(x):\n    return {'x': x}\n"
    )
    loader = loader_for("python")
    assert loader.platform == "python"
    servable = loader.load(str(tmp_path), LoadOptions())
    assert servable.runtime == "Python"
    assert list(servable.signatures) == ["serving_default"]


def test_a_third_party_kind_is_imported_only_when_it_loads(tmp_path: Path) -> None:
    install_kind(tmp_path, "thirdparty", {"constant": "thirdparty_kind:ConstantLoader"})
    found = run_python(tmp_path, LOAD.replace("PLATFORM", '"constant"'))
    assert found == {
        "platforms": [
            "constant",
            "embedding",
            "lightgbm",
            "onnx",
            "pipeline",
            "python",
            "sklearn",
            "tensorflow",
            "tflite",
            "transform",
            "vocabulary",
            "xgboost",
        ],
        "imported_before_load": False,
        "platform": "constant",
        "runtime": "constant",
        "signatures": ["serving_default"],
    }


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "thirdparty_kind:NOT_A_LOADER",
            "model_platform constant: thirdparty_kind:NOT_A_LOADER (from thirdparty) is not a "
            "subclass of fastserve.servables.base.Loader",
        ),
        (
            "thirdparty_missing_module:ConstantLoader",
            "model_platform constant: cannot import thirdparty_missing_module:ConstantLoader "
            "(from thirdparty): ModuleNotFoundError: No module named 'thirdparty_missing_module'",
        ),
    ],
)
def test_a_kind_that_cannot_be_imported_fails_its_load(
    tmp_path: Path, value: str, message: str
) -> None:
    install_kind(tmp_path, "thirdparty", {"constant": value})
    found = run_python(tmp_path, LOAD.replace("PLATFORM", '"constant"'))
    assert (found["code"], found["message"]) == ("FAILED_PRECONDITION", message)


def test_a_platform_registered_twice_is_refused_when_it_loads(tmp_path: Path) -> None:
    install_kind(tmp_path, "thirdparty", {"constant": "thirdparty_kind:ConstantLoader"})
    install_kind(tmp_path, "otherparty", {"constant": "otherparty_kind:ConstantLoader"})
    found = run_python(tmp_path, LOAD.replace("PLATFORM", '"constant"'))
    assert found["code"] == "FAILED_PRECONDITION"
    assert found["message"].startswith("model_platform constant is registered by more than one")
    assert "thirdparty (thirdparty_kind:ConstantLoader)" in found["message"]
    assert "otherparty (otherparty_kind:ConstantLoader)" in found["message"]


def test_the_server_serves_a_third_party_kind(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    install_kind(site, "thirdparty", {"constant": "thirdparty_kind:ConstantLoader"})
    (tmp_path / "answer" / "1").mkdir(parents=True)
    config = tmp_path / "models.config"
    config.write_text(
        'model_config_list { config { name: "answer" '
        f'base_path: "{tmp_path / "answer"}" model_platform: "constant" }} }}\n'
    )
    server = ServerProcess([f"--model_config_file={config}"], env={"PYTHONPATH": str(site)}).ready()
    try:
        answer = server.http.post("/v1/models/answer:predict", json={"instances": [1.0, 2.0]})
        assert (answer.status_code, answer.json()) == (200, {"predictions": [42.0, 42.0]})
    finally:
        assert server.terminate() == 0, server.output
