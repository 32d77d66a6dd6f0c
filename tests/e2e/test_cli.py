"""The `fastserve` command: TF Serving's flags and config files, and its start-up errors."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from fastserve.tune.processes import FastserveProcess
from support.requests import X, predict_request
from support.server import FASTSERVE, ServerProcess, free_port
from support.store import ModelStore

REPO = Path(__file__).resolve().parents[2]


def run_fastserve(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FASTSERVE, "--host=127.0.0.1", f"--port={free_port()}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_version_flag() -> None:
    done = subprocess.run([FASTSERVE, "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert done.stdout.startswith("TensorFlow ModelServer: fastserve-")
    assert "TensorFlow Library: " in done.stdout


def test_python_dash_m_serves_like_the_command(
    store: ModelStore, tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    base = tmp_path / "default_model"
    store.install(store.half_plus_two(2.0), base / "00000123")
    # FastserveProcess starts `python -m fastserve` unless told otherwise.
    process = FastserveProcess([f"--model_base_path={base}"], rest=True)
    try:
        import httpx

        process.wait_ready()
        # TF Serving's default model name is "default"; 00000123 is version 123.
        answer = httpx.post(
            f"{process.rest_url}/v1/models/default:predict", json={"instances": [1.0]}
        )
        assert answer.json() == {"predictions": [2.5]}
        status = httpx.get(f"{process.rest_url}/v1/models/default").json()
        assert status["model_version_status"][0]["version"] == "123"
    finally:
        assert process.stop() == 0, process.output


def test_text_proto_config_with_two_models_policy_and_labels(
    store: ModelStore, tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    for version, add in ((1, 2.0), (2, 3.0), (3, 4.0)):
        store.install(store.half_plus_two(add), tmp_path / "hp" / str(version))
    store.install(store.half_plus_two_tf2(2.0), tmp_path / "other" / "1")
    config = tmp_path / "models.config"
    config.write_text(
        f"""
model_config_list {{
  config {{
    name: "hp"
    base_path: "{tmp_path / "hp"}"
    model_platform: "tensorflow"
    model_version_policy {{ specific {{ versions: 1 versions: 2 }} }}
    version_labels {{ key: "stable" value: 1 }}
    version_labels {{ key: "canary" value: 2 }}
  }}
  config {{
    name: "other"
    base_path: "{tmp_path / "other"}"
  }}
}}
"""
    )
    server = start_server(f"--model_config_file={config}")
    status = server.http.get("/v1/models/hp").json()["model_version_status"]
    assert [s["version"] for s in status] == ["2", "1"]  # version 3 is not in the policy
    for label, expected in (("stable", 2.5), ("canary", 3.5)):
        response = server.prediction.Predict(
            predict_request("hp", {"x": X}, label=label), timeout=30
        )
        assert float(tf.make_ndarray(response.outputs["y"])[0]) == expected
    answer = server.http.post("/v1/models/other:predict", json={"instances": [1.0]})
    assert answer.json() == {"predictions": [2.5]}
    assert server.terminate() == 0


def test_examples_config_serves_the_bundled_models(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server(f"--config={REPO / 'examples' / 'models.yaml'}")
    stable = server.http.post(
        "/v1/models/half_plus_two/labels/stable:predict", json={"instances": [1.0, 2.0, 5.0]}
    )
    assert stable.json() == {"predictions": [2.5, 3.0, 4.5]}
    latest = server.http.post(
        "/v1/models/half_plus_two:predict", json={"instances": [1.0, 2.0, 5.0]}
    )
    assert latest.json() == {"predictions": [3.5, 4.0, 5.5]}
    standardized = server.http.post(
        "/v1/models/standardize:predict",
        json={"instances": [[1.0, 10.0, 100.0], [2.0, 12.0, 140.0]]},
    )
    assert standardized.json() == {"predictions": [[0.0, 0.0, 0.0], [2.0, 1.0, 2.0]]}
    response = server.prediction.Predict(
        predict_request("half_plus_two", {"x": X}, version=1), timeout=30
    )
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["y"]), [2.5, 3.0, 4.5])


# --- bad configs and flags -------------------------------------------------------------------


def test_bad_text_proto_names_file_line_and_field(tmp_path: Path) -> None:
    config = tmp_path / "bad.config"
    config.write_text(
        'model_config_list {\n  config {\n    name: "a"\n    bas_path: "/x"\n  }\n}\n'
    )
    done = run_fastserve(f"--model_config_file={config}")
    assert done.returncode == 2
    assert (
        f"{config}: Error parsing text-format tensorflow.serving.ModelServerConfig: 4:5: "
        in done.stderr
    )
    assert 'has no field named "bas_path"' in done.stderr


def test_bad_yaml_names_file_line_and_field(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        "models:\n  - name: a\n    base_path: a\n    model_version_policy:\n      lastest: {}\n"
    )
    done = run_fastserve(f"--config={config}")
    assert done.returncode == 2
    assert f"{config}:5: models[0].model_version_policy.lastest: unknown field" in done.stderr
    config.write_text("models:\n  - name: a\n    base_path: [oops\n")
    done = run_fastserve(f"--config={config}")
    assert done.returncode == 2
    assert f"{config}:4: " in done.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'model_config_list { config { name: "a" base_path: "/x" } config { name: "a" base_path: "/y" } }',
            "Illegal to list model a multiple times in config list",
        ),
        (
            'model_config_list { config { name: "a" base_path: "relative/a" } }',
            "Expected model a to have an absolute path or URI; got base_path()=relative/a",
        ),
        (
            'model_config_list { config { name: "a" base_path: "/x" model_platform: "torch" } }',
            "Model a requests unsupported platform torch",
        ),
    ],
)
def test_invalid_text_proto_models(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "models.config"
    config.write_text(text)
    done = run_fastserve(f"--model_config_file={config}")
    assert done.returncode == 2
    assert message in done.stderr


def test_label_on_version_not_served_fails_start(store: ModelStore, tmp_path: Path) -> None:
    store.install(store.echo(1.0), tmp_path / "echo" / "1")
    config = tmp_path / "models.yaml"
    config.write_text(
        f"models:\n  - name: echo\n    base_path: {tmp_path / 'echo'}\n    model_platform: python\n"
        "    version_labels: {stable: 1, canary: 2}\n"
    )
    done = run_fastserve(f"--config={config}")
    assert done.returncode == 1
    assert (
        "Request to assign label to version 2 of model echo, which is not currently available "
        "for inference" in done.stderr
    )


def test_start_up_failure_names_each_failed_model(store: ModelStore, tmp_path: Path) -> None:
    store.install(store.echo(1.0), tmp_path / "good" / "1")
    (tmp_path / "empty").mkdir()
    from support import models

    models.corrupt_saved_model(tmp_path / "corrupt" / "1")
    config = tmp_path / "models.yaml"
    config.write_text(
        f"models:\n"
        f"  - {{name: good, base_path: {tmp_path / 'good'}, model_platform: python}}\n"
        f"  - {{name: missing, base_path: {tmp_path / 'missing'}}}\n"
        f"  - {{name: empty, base_path: {tmp_path / 'empty'}}}\n"
        f"  - {{name: corrupt, base_path: {tmp_path / 'corrupt'}}}\n"
    )
    done = run_fastserve(f"--config={config}", "--max_num_load_retries=0")
    assert done.returncode == 1
    assert (
        f"model missing failed to load: Could not find base path {tmp_path / 'missing'}"
        in done.stderr
    )
    assert (
        f"model empty failed to load: No versions of servable empty found under base path {tmp_path / 'empty'}"
        in done.stderr
    )
    assert "model corrupt failed to load: " in done.stderr
    assert "model good failed" not in done.stderr


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        (
            "--platform_config_file=/tmp/platform.config",
            "fastserve: flag --platform_config_file is not implemented yet",
        ),
        (
            "--xla_cpu_compilation_enabled",
            "flag --xla_cpu_compilation_enabled=True is not implemented yet",
        ),
        ("--use_alts_credentials", "flag --use_alts_credentials=True is not implemented yet"),
        (
            "--platform_config_file=/tmp/p",
            "fastserve: flag --platform_config_file is not implemented yet",
        ),
    ],
)
def test_unimplemented_flags_are_refused_by_name(tmp_path: Path, flag: str, message: str) -> None:
    done = run_fastserve(f"--model_base_path={tmp_path}", flag)
    assert done.returncode == 2
    assert message in done.stderr


def test_unknown_flag_and_no_model(tmp_path: Path) -> None:
    done = run_fastserve("--no_such_flag=1")
    assert done.returncode == 2 and "unrecognized arguments: --no_such_flag=1" in done.stderr
    done = run_fastserve()
    assert done.returncode == 2 and "no models to serve" in done.stderr


LOAD_MARKER_MODEL = """
    import os

    from fastserve.servables.python import signature, tensor


    def load(path):
        # Leaves a mark beside the version folder: proof that a load happened.
        open(os.path.join(os.path.dirname(path), "loaded"), "w").close()


    @signature(inputs={"x": tensor("float32", [-1])}, outputs={"y": tensor("float32", [-1])})
    def serving_default(x):
        return {"y": x}
"""


@pytest.mark.parametrize("which", ["grpc", "rest"])
def test_a_port_in_use_fails_start_up_before_any_model_loads(tmp_path: Path, which: str) -> None:
    """Regression: a port in use was reported only after every model had loaded."""
    import socket

    from support import models

    models.python_model(tmp_path / "marked" / "1", LOAD_MARKER_MODEL)
    config = tmp_path / "models.yaml"
    config.write_text(
        f"models:\n  - {{name: marked, base_path: {tmp_path / 'marked'}, model_platform: python}}\n"
    )
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        grpc_port, rest_port = (port, free_port()) if which == "grpc" else (free_port(), port)
        done = subprocess.run(
            [
                FASTSERVE,
                "--host=127.0.0.1",
                f"--port={grpc_port}",
                f"--rest_api_port={rest_port}",
                f"--config={config}",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 1
    what = "gRPC" if which == "grpc" else "REST"
    assert f"cannot serve {what} on 127.0.0.1:{port}: [Errno 98] Address already in use" in (
        done.stderr
    )
    assert not (tmp_path / "marked" / "loaded").exists()


def test_tensor_content_and_session_flags(
    store: ModelStore, tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    store.install(store.half_plus_two(2.0), tmp_path / "hp" / "1")
    server = start_server(
        "--model_name=hp",
        f"--model_base_path={tmp_path / 'hp'}",
        "--enable_serialization_as_tensor_content=true",
        "--tensorflow_intra_op_parallelism=1",
        "--tensorflow_inter_op_parallelism=2",
        "--saved_model_tags=serve",
    )
    response = server.prediction.Predict(predict_request("hp", {"x": X}), timeout=30)
    output = response.outputs["y"]
    assert not output.float_val
    assert np.frombuffer(output.tensor_content, np.float32).tolist() == [2.5, 3.0, 4.5]
    np.testing.assert_allclose(tf.make_ndarray(output), [2.5, 3.0, 4.5])


def test_missing_saved_model_tags_fail_the_load(store: ModelStore, tmp_path: Path) -> None:
    store.install(store.half_plus_two(2.0), tmp_path / "hp" / "1")
    done = run_fastserve(
        "--model_name=hp",
        f"--model_base_path={tmp_path / 'hp'}",
        "--saved_model_tags=serve,gpu",
        "--max_num_load_retries=0",
    )
    assert done.returncode == 1
    assert (
        "model hp failed to load: Could not find meta graph def matching supplied tags: "
        "{ gpu serve }. To inspect available tag-sets in the SavedModel, please use the "
        "SavedModel CLI: `saved_model_cli`" in done.stderr
    )


def test_grpc_on_a_unix_socket_too(
    store: ModelStore, tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    store.install(store.half_plus_two(2.0), tmp_path / "hp" / "1")
    socket_path = tmp_path / "fastserve.sock"
    server = start_server(
        "--model_name=hp",
        f"--model_base_path={tmp_path / 'hp'}",
        f"--grpc_socket_path={socket_path}",
    )
    with grpc.insecure_channel(f"unix:{socket_path}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Predict(predict_request("hp", {"x": X}), timeout=30)
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["y"]), [2.5, 3.0, 4.5])
    # TCP still serves as well.
    response = server.prediction.Predict(predict_request("hp", {"x": X}), timeout=30)
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["y"]), [2.5, 3.0, 4.5])


def test_grpc_channel_arguments_reach_the_server(
    store: ModelStore, tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    import grpc

    store.install(store.echo(1.0), tmp_path / "echo" / "1")
    config = tmp_path / "models.yaml"
    config.write_text(
        f"models:\n  - {{name: echo, base_path: {tmp_path / 'echo'}, model_platform: python}}\n"
    )
    server = start_server(
        f"--config={config}",
        "--grpc_channel_arguments=grpc.max_receive_message_length=1000,grpc.primary_user_agent=x",
    )
    small = server.prediction.Predict(predict_request("echo", {"x": X}), timeout=30)
    assert tf.make_ndarray(small.outputs["y"]).tolist() == [2.0, 3.0, 6.0]
    big = np.zeros(1000, np.float32)
    with pytest.raises(grpc.RpcError) as caught:
        server.prediction.Predict(predict_request("echo", {"x": big}), timeout=30)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_malformed_grpc_channel_arguments(store: ModelStore, tmp_path: Path) -> None:
    store.install(store.echo(1.0), tmp_path / "echo" / "1")
    config = tmp_path / "models.yaml"
    config.write_text(
        f"models:\n  - {{name: echo, base_path: {tmp_path / 'echo'}, model_platform: python}}\n"
    )
    done = run_fastserve(f"--config={config}", "--grpc_channel_arguments=novalue")
    assert done.returncode == 1
    assert "--grpc_channel_arguments: 'novalue' is not key=value" in done.stderr


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["--version"], ["--no_such_flag=1"], [], ["tune", "--help"]],
    ids=["help", "version", "unknown-flag", "no-models", "tune-help"],
)
def test_help_version_and_usage_errors_do_not_import_tensorflow(argv: list[str]) -> None:
    script = (
        "import sys\n"
        "from fastserve.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('tensorflow' in sys.modules, file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.stderr.splitlines()[-1] == "False", done.stderr


def test_help_shows_defaults_and_the_tune_subcommand() -> None:
    done = subprocess.run([FASTSERVE, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    text = " ".join(done.stdout.split())  # argparse wraps lines
    assert "--port N TCP port for the gRPC API. Default: 8500." in text
    assert "--rest_api_port N TCP port for the REST API; 0 turns REST off. Default: 0." in text
    assert "--enable_batching [true|false] Batch requests" in text
    assert "fastserve tune" in text


def test_a_usage_error_is_a_few_lines() -> None:
    done = subprocess.run(
        [FASTSERVE, "--no_such_flag=1"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "fastserve: error: unrecognized arguments: --no_such_flag=1",
        "Run 'fastserve --help' for the flags, 'fastserve tune --help' for tuning.",
    ]


# What TensorFlow and CUDA print at start-up when nothing silences them.
NOISE = ("absl::InitializeLog", "cuInit", "cuda", "oneDNN", "I0000", "E0000", "W0000")


def test_a_server_start_prints_no_tensorflow_noise(
    store: ModelStore, tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    store.install(store.half_plus_two(), tmp_path / "model" / "1")
    server = start_server(f"--model_base_path={tmp_path / 'model'}", "--model_name=noise")
    result = server.prediction.Predict(predict_request("noise", {"x": X}), timeout=30)
    assert tf.make_ndarray(result.outputs["y"]).tolist() == [2.5, 3.0, 4.5]
    noisy = [line for line in server.output.splitlines() if any(n in line for n in NOISE)]
    assert noisy == []
