"""Config reload, by RPC (HandleReloadConfigRequest) and by re-reading the config file."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from tensorflow_serving.apis import model_management_pb2
from tensorflow_serving.config import model_server_config_pb2

from support.lifecycle import slow_model, started_calls, statuses, wait_until
from support.reload import config_text, reload_request
from support.server import ServerProcess
from support.store import ModelStore


@pytest.fixture()
def echo_models(store: ModelStore, tmp_path: Path) -> Path:
    """Python models a (versions 1, 2) and b (version 1), cheap to load."""
    store.install(store.echo(1.0), tmp_path / "a" / "1")
    store.install(store.echo(2.0), tmp_path / "a" / "2")
    store.install(store.echo(10.0), tmp_path / "b" / "1")
    return tmp_path


def predict(server: ServerProcess, path: str, value: float = 0.0) -> tuple[int, object]:
    answer = server.http.post(f"/v1/models/{path}:predict", json={"instances": [value]})
    return answer.status_code, answer.json()


def test_reload_adds_removes_and_relabels_models(
    echo_models: Path, start_server: Callable[..., ServerProcess]
) -> None:
    config = echo_models / "models.config"
    config.write_text(config_text([{"name": "a", "base_path": echo_models / "a"}]))
    server = start_server(f"--model_config_file={config}")
    assert predict(server, "a") == (200, {"predictions": [2.0]})
    assert predict(server, "b")[0] == 404

    request = reload_request(
        [
            {
                "name": "a",
                "base_path": echo_models / "a",
                "policy": "all {}",
                "labels": {"stable": 1},
            },
            {"name": "b", "base_path": echo_models / "b"},
        ]
    )
    response = server.model_service.HandleReloadConfigRequest(request, timeout=60)
    assert response.status.error_code == 0
    # Answered only once the new config is served: no waiting needed here.
    assert predict(server, "b") == (200, {"predictions": [10.0]})
    assert predict(server, "a/labels/stable") == (200, {"predictions": [1.0]})
    assert statuses(server, "a") == {"2": ("AVAILABLE", "OK", ""), "1": ("AVAILABLE", "OK", "")}

    request = reload_request([{"name": "b", "base_path": echo_models / "b"}])
    assert (
        server.model_service.HandleReloadConfigRequest(request, timeout=60).status.error_code == 0
    )
    wait_until(lambda: all(s[0] == "END" for s in statuses(server, "a").values()), what="a END")
    assert predict(server, "a") == (404, {"error": "Servable not found for request: Latest(a)"})
    assert predict(server, "a/labels/stable") == (
        400,
        {"error": "Unrecognized servable version label: stable"},
    )
    assert predict(server, "b") == (200, {"predictions": [10.0]})


def test_reload_removing_a_model_lets_in_flight_requests_finish(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    started = tmp_path / "started.txt"
    slow_model(tmp_path / "slow" / "1", 5, started)
    config = tmp_path / "models.config"
    config.write_text(config_text([{"name": "slow", "base_path": tmp_path / "slow"}]))
    server = start_server(f"--model_config_file={config}")
    results: list[object] = []
    caller = threading.Thread(target=lambda: results.append(predict(server, "slow", 2.0)))
    caller.start()
    wait_until(lambda: started_calls(started) == [2.0], what="the call to start")
    request = model_management_pb2.ReloadConfigRequest()
    request.config.model_config_list.SetInParent()
    assert (
        server.model_service.HandleReloadConfigRequest(request, timeout=60).status.error_code == 0
    )
    caller.join(30)
    assert results == [(200, {"predictions": [7.0]})]
    wait_until(lambda: statuses(server, "slow")["1"][0] == "END", what="slow END")


@pytest.mark.parametrize(
    ("entries", "code", "message"),
    [
        (
            [{"name": "a", "base_path": "A"}, {"name": "a", "base_path": "A"}],
            grpc.StatusCode.INVALID_ARGUMENT,
            "Illegal to list model a multiple times in config list",
        ),
        (
            [{"name": "a", "base_path": "relative/a"}],
            grpc.StatusCode.INVALID_ARGUMENT,
            "Expected model a to have an absolute path or URI; got base_path()=relative/a",
        ),
        (
            [{"name": "a", "base_path": "A", "labels": {"stable": 9}}],
            grpc.StatusCode.FAILED_PRECONDITION,
            "Request to assign label to version 9 of model a, which is not currently available "
            "for inference",
        ),
        (
            [{"name": "a", "base_path": "A", "platform": "tensorflow"}],
            grpc.StatusCode.INVALID_ARGUMENT,
            "Illegal to change a model's platform. For model a platform was python and new "
            "platform requested is tensorflow",
        ),
        (
            [{"name": "a", "base_path": "A"}, {"name": "c", "base_path": "MISSING"}],
            grpc.StatusCode.UNKNOWN,
            "1 model(s) did not become available: model c failed to load: Could not find base "
            "path MISSING for servable c",
        ),
    ],
    ids=["duplicate", "relative", "label", "platform", "missing"],
)
def test_bad_reloads_are_refused_and_the_server_keeps_serving(
    echo_models: Path,
    start_server: Callable[..., ServerProcess],
    entries: list[dict],
    code: grpc.StatusCode,
    message: str,
) -> None:
    config = echo_models / "models.config"
    config.write_text(config_text([{"name": "a", "base_path": echo_models / "a"}]))
    server = start_server(f"--model_config_file={config}")
    for entry in entries:
        entry["base_path"] = str(entry["base_path"]).replace("A", str(echo_models / "a"))
        entry["base_path"] = entry["base_path"].replace("MISSING", str(echo_models / "missing"))
    message = message.replace("MISSING", str(echo_models / "missing"))
    with pytest.raises(grpc.RpcError) as caught:
        server.model_service.HandleReloadConfigRequest(reload_request(entries), timeout=60)
    assert (caught.value.code(), caught.value.details()) == (code, message)
    assert predict(server, "a") == (200, {"predictions": [2.0]})


def test_reload_of_unsupported_config_kind(
    echo_models: Path, start_server: Callable[..., ServerProcess]
) -> None:
    config = echo_models / "models.config"
    config.write_text(config_text([{"name": "a", "base_path": echo_models / "a"}]))
    server = start_server(f"--model_config_file={config}")
    request = model_management_pb2.ReloadConfigRequest(
        config=model_server_config_pb2.ModelServerConfig(custom_model_config={})
    )
    with pytest.raises(grpc.RpcError) as caught:
        server.model_service.HandleReloadConfigRequest(request, timeout=60)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == (
        "ServerModelConfig type not supported by HandleReloadConfigRequest. Only "
        "ModelConfigList is currently supported"
    )


def test_config_file_is_re_read_on_its_period(
    echo_models: Path, start_server: Callable[..., ServerProcess]
) -> None:
    config = echo_models / "models.config"
    config.write_text(config_text([{"name": "a", "base_path": echo_models / "a"}]))
    server = start_server(
        f"--model_config_file={config}", "--model_config_file_poll_wait_seconds=1"
    )
    staged = echo_models / "staged.config"
    staged.write_text(
        config_text(
            [
                {"name": "a", "base_path": echo_models / "a", "policy": "specific { versions: 1 }"},
                {"name": "b", "base_path": echo_models / "b"},
            ]
        )
    )
    staged.rename(config)
    wait_until(lambda: predict(server, "b")[0] == 200, what="b served")
    wait_until(lambda: predict(server, "a") == (200, {"predictions": [1.0]}), what="a at v1")
    # A config file that no longer parses leaves everything as it is.
    config.write_text("model_config_list { config { nme: 1 } }")
    assert server.wait_for_line("not reloading the model config", timeout=30)
    assert predict(server, "b") == (200, {"predictions": [10.0]})


def test_labels_for_unavailable_versions_follow_tf_servings_rule(
    echo_models: Path, start_server: Callable[..., ServerProcess]
) -> None:
    config = echo_models / "models.config"
    config.write_text(
        config_text([{"name": "a", "base_path": echo_models / "a", "labels": {"stable": 2}}])
    )
    server = start_server(
        f"--model_config_file={config}", "--allow_version_labels_for_unavailable_models"
    )
    # Allowed: a new label may name a version that is not served (yet).
    request = reload_request(
        [{"name": "a", "base_path": echo_models / "a", "labels": {"stable": 2, "next": 9}}]
    )
    assert (
        server.model_service.HandleReloadConfigRequest(request, timeout=60).status.error_code == 0
    )
    assert predict(server, "a/labels/next") == (
        404,
        {"error": "Servable not found for request: Specific(a, 9)"},
    )
    # Refused even so: moving an existing label onto a version that is not served.
    request = reload_request(
        [{"name": "a", "base_path": echo_models / "a", "labels": {"stable": 7, "next": 9}}]
    )
    with pytest.raises(grpc.RpcError) as caught:
        server.model_service.HandleReloadConfigRequest(request, timeout=60)
    assert (caught.value.code(), caught.value.details()) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "Request to assign label to version 7 of model a, which is not currently available "
        "for inference",
    )
    assert predict(server, "a/labels/stable") == (200, {"predictions": [2.0]})
