"""Health checks: REST /v1/health probes and gRPC grpc.health.v1.Health."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from support import models
from support.lifecycle import wait_until
from support.reload import reload_request
from support.server import ServerProcess
from support.store import ModelStore

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def check(server: ServerProcess, service: str) -> int:
    stub = health_pb2_grpc.HealthStub(server.channel)
    return int(stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status)


@pytest.fixture()
def echo_base(store: ModelStore, tmp_path: Path) -> Path:
    store.install(store.echo(1.0), tmp_path / "echo" / "1")
    return tmp_path / "echo"


@pytest.fixture()
def healthy(echo_base: Path, start_server: Callable[..., ServerProcess]) -> ServerProcess:
    config = echo_base.parent / "models.config"
    config.write_text(
        "model_config_list {\n  config {\n"
        f'    name: "echo"\n    base_path: "{echo_base}"\n    model_platform: "python"\n'
        "  }\n}\n"
    )
    return start_server(
        f"--model_config_file={config}",
        "--enable_grpc_healthcheck_service",
        "--max_num_load_retries=0",
    )


def test_rest_probes_of_a_ready_server(healthy: ServerProcess) -> None:
    live = healthy.http.get("/v1/health/live")
    assert (live.status_code, live.json()) == (200, {"status": "LIVE"})
    ready = healthy.http.get("/v1/health/ready")
    assert (ready.status_code, ready.json()) == (200, {"status": "READY"})
    model = healthy.http.get("/v1/health/ready/echo")
    assert (model.status_code, model.json()) == (200, {"status": "READY"})
    unknown = healthy.http.get("/v1/health/ready/nope")
    assert (unknown.status_code, unknown.json()) == (404, {"error": "Model nope is not configured"})


def test_grpc_health_of_a_ready_server(healthy: ServerProcess) -> None:
    assert check(healthy, "") == SERVING
    assert check(healthy, "tensorflow.serving.PredictionService") == SERVING
    assert check(healthy, "tensorflow.serving.ModelService") == SERVING
    assert check(healthy, "echo") == SERVING
    with pytest.raises(grpc.RpcError) as unknown:
        check(healthy, "nope")
    assert unknown.value.code() is grpc.StatusCode.NOT_FOUND


def test_a_model_without_an_available_version_makes_the_server_unready(
    healthy: ServerProcess, echo_base: Path, tmp_path: Path
) -> None:
    """A reload adds a model whose only version cannot load: the server and that model
    report not ready (REST 503, gRPC NOT_SERVING); removing it makes the server ready."""
    models.corrupt_saved_model(tmp_path / "broken" / "1")
    add_broken = reload_request(
        [
            {"name": "echo", "base_path": echo_base},
            {"name": "broken", "base_path": tmp_path / "broken", "platform": "tensorflow"},
        ]
    )
    with pytest.raises(grpc.RpcError) as failed:
        healthy.model_service.HandleReloadConfigRequest(add_broken, timeout=120)
    assert "model broken failed to load" in str(failed.value.details())
    ready = healthy.http.get("/v1/health/ready")
    assert ready.status_code == 503
    assert ready.json() == {
        "status": "NOT_READY",
        "unready": {"broken": "no version is AVAILABLE"},
    }
    assert healthy.http.get("/v1/health/ready/broken").status_code == 503
    assert healthy.http.get("/v1/health/ready/echo").status_code == 200
    assert healthy.http.get("/v1/health/live").status_code == 200
    # gRPC health follows transitions as they happen (pushed to watchers), so it may lag a
    # moment behind the reload's answer.
    wait_until(lambda: check(healthy, "") == NOT_SERVING, what="'' NOT_SERVING")
    assert check(healthy, "broken") == NOT_SERVING
    assert check(healthy, "echo") == SERVING

    only_echo = reload_request([{"name": "echo", "base_path": echo_base}])
    assert (
        healthy.model_service.HandleReloadConfigRequest(only_echo, timeout=60).status.error_code
        == 0
    )
    assert healthy.http.get("/v1/health/ready").status_code == 200
    wait_until(lambda: check(healthy, "") == SERVING, what="'' SERVING again")


def test_watchers_hear_not_serving_when_shutdown_begins(healthy: ServerProcess) -> None:
    stub = health_pb2_grpc.HealthStub(healthy.channel)
    stream = stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=60)
    seen: list[int] = []
    first = threading.Event()

    def watch() -> None:
        try:
            for answer in stream:
                seen.append(int(answer.status))
                first.set()
                if answer.status == NOT_SERVING:
                    stream.cancel()
                    return
        except grpc.RpcError:
            pass

    watcher = threading.Thread(target=watch)
    watcher.start()
    assert first.wait(30)
    healthy.process.send_signal(15)
    watcher.join(60)
    assert seen == [SERVING, NOT_SERVING]
    assert healthy.wait(60) == 0


def test_grpc_health_service_is_off_by_default(server: ServerProcess) -> None:
    with pytest.raises(grpc.RpcError) as off:
        check(server, "")
    assert off.value.code() is grpc.StatusCode.UNIMPLEMENTED
    # The REST probes are always there.
    assert server.http.get("/v1/health/ready").status_code == 200
