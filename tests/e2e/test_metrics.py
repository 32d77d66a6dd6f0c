"""Prometheus metrics: TF Serving's names and labels, counting exactly the requests sent."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from tensorflow_serving.apis import classification_pb2, regression_pb2

from support import tools
from support.prometheus import Scraper, parse, select
from support.requests import X, predict_request
from support.server import ServerProcess
from support.store import ModelStore
from support.warmup import predict_log, write_warmup

MONITORING = 'prometheus_config {\n  enable: true\n  path: "/monitoring/prometheus/metrics"\n}\n'
PATH = "/monitoring/prometheus/metrics"


def _examples(request: object, *values: float) -> None:
    for value in values:
        example = request.input.example_list.examples.add()  # type: ignore[attr-defined]
        example.features.feature["x"].float_list.value.append(value)


@pytest.fixture()
def monitored(
    store: ModelStore, tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> ServerProcess:
    base = tmp_path / "hp"
    store.install(store.half_plus_two(2.0), base / "1")
    config = tmp_path / "monitoring.txt"
    config.write_text(MONITORING)
    return start_server(
        "--model_name=hp",
        f"--model_base_path={base}",
        f"--monitoring_config_file={config}",
        "--enable_batching",
    )


def _send_traffic(server: ServerProcess) -> None:
    """5 + 2 gRPC Predicts (2 of them wrong), 3 REST Predicts, one for a model nobody
    configured, 2 Regress of 3 examples and 1 Classify of 2."""
    for _ in range(5):
        server.prediction.Predict(predict_request("hp", {"x": X}), timeout=30)
    for _ in range(2):
        with pytest.raises(grpc.RpcError) as failed:
            server.prediction.Predict(predict_request("hp", {"nope": X}), timeout=30)
        assert failed.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    for _ in range(3):
        answer = server.http.post("/v1/models/hp:predict", json={"instances": [1.0, 2.0, 5.0]})
        assert answer.status_code == 200, answer.text
    ghost = server.http.post("/v1/models/ghost:predict", json={"instances": [1.0]})
    assert ghost.status_code == 404
    for _ in range(2):
        regress = regression_pb2.RegressionRequest()
        regress.model_spec.name = "hp"
        regress.model_spec.signature_name = "regress_x_to_y"
        _examples(regress, 1.0, 2.0, 3.0)
        server.prediction.Regress(regress, timeout=30)
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = "hp"
    classify.model_spec.signature_name = "classify_x_to_y"
    _examples(classify, 1.0, 2.0)
    server.prediction.Classify(classify, timeout=30)


def test_metrics_count_the_requests_sent(monitored: ServerProcess) -> None:
    _send_traffic(monitored)
    answer = monitored.http.get(PATH)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    text = answer.text
    assert "# TYPE :tensorflow:serving:request_count counter" in text
    assert "# TYPE :tensorflow:serving:request_latency histogram" in text
    samples = parse(text)

    def value(name: str, **labels: str) -> float:
        return select(samples, name, **labels)

    count = ":tensorflow:serving:request_count"
    assert value(count, model_name="hp", status="OK") == 5 + 3 + 2 + 1
    assert value(count, model_name="hp", status="INVALID_ARGUMENT") == 2
    # A model name nobody configured is counted, under one label whatever the name.
    assert value(count, model_name="<unknown>", status="NOT_FOUND") == 1
    assert value(count, model_name="ghost") == 0

    latency = ":tensorflow:serving:request_latency_count"
    assert value(latency, model_name="hp", API="Predict", entrypoint="GRPC") == 7
    assert value(latency, model_name="hp", API="Predict", entrypoint="REST") == 3
    assert value(latency, model_name="hp", API="Regress", entrypoint="GRPC") == 2
    assert value(latency, model_name="hp", API="Classify", entrypoint="GRPC") == 1
    assert value(":tensorflow:serving:request_latency_sum", model_name="hp") > 0
    # Buckets are cumulative: the +Inf bucket holds every request.
    assert value(":tensorflow:serving:request_latency_bucket", API="Predict", le="+Inf") == 11

    # Only the requests that reached the model ran it.
    runtime = ":tensorflow:serving:runtime_latency_count"
    assert value(runtime, model_name="hp", API="Predict", runtime="TF1") == 8
    assert value(runtime, model_name="hp", API="Regress", runtime="TF1") == 2
    assert value(":tensorflow:serving:request_example_counts_count", model="hp") == 3
    assert value(":tensorflow:serving:request_example_counts_sum", model="hp") == 8
    assert value(":tensorflow:serving:request_example_count_total", model="hp") == 8

    loads = ":tensorflow:cc:saved_model:load_attempt_count"
    assert value(loads, status="success") == 1
    assert value(loads, status="fail") == 0
    assert value(":tensorflow:cc:saved_model:load_latency") > 0
    state = "fastserve_model_version_state"
    assert value(state, model_name="hp", version="1", state="AVAILABLE") == 1
    assert value(state, model_name="hp", version="1", state="LOADING") == 0

    # Batching: every row that ran went through the queue (8 Predicts of 3 rows, 2 Regress
    # of 3 examples, a Classify of 2), and each batch is counted once.
    batching = ":tensorflow:serving:batching_session:"
    assert value(f"{batching}input_batch_size_sum") == 8 * 3 + 2 * 3 + 2
    runs = value(f"{batching}wrapped_run_count")
    assert 1 <= runs <= 11
    assert value(f"{batching}processed_batch_size_count") == runs
    assert value(f"{batching}queuing_latency_count", thread_pool_name="") == 11


def test_metrics_endpoint_path_is_exact(monitored: ServerProcess) -> None:
    answer = monitored.http.get(f"{PATH}?x=1")
    assert answer.status_code == 400
    assert answer.text == f"Unexpected path: {PATH}?x=1. Should be {PATH}"


@pytest.fixture(
    params=[
        pytest.param(True, id="prometheus-server"),
        pytest.param(False, id="prometheus-client-parser"),
    ]
)
def scraper(
    request: pytest.FixtureRequest, monitored: ServerProcess, tmp_path: Path
) -> Iterator[Scraper]:
    """A real Prometheus server scraping fastserve (skipped, naming the Debian package, where
    it is not installed), and prometheus-client's parser reading the endpoint (always)."""
    if request.param:
        tools.require("prometheus")
    scraping = Scraper(f"127.0.0.1:{monitored.rest_port}", PATH, tmp_path, real=request.param)
    yield scraping
    scraping.close()


def test_prometheus_scrapes_the_counts(monitored: ServerProcess, scraper: Scraper) -> None:
    _send_traffic(monitored)
    count = ":tensorflow:serving:request_count"
    assert scraper.wait_for(11, count, model_name="hp", status="OK") == 11, scraper.kind
    assert scraper.query(count, model_name="hp", status="INVALID_ARGUMENT") == 2
    assert scraper.query(":tensorflow:serving:request_latency_count", entrypoint="REST") == 4
    assert scraper.target_health() == "up"


def test_monitoring_config_errors_name_the_file(
    tmp_path: Path, store: ModelStore, start_server: Callable[..., ServerProcess]
) -> None:
    base = tmp_path / "hp"
    store.install(store.half_plus_two(2.0), base / "1")
    cases = {
        "bad_path.txt": (
            'prometheus_config { enable: true path: "metrics" }',
            "prometheus_config.path 'metrics' is not a URL path",
        ),
        "under_v1.txt": (
            'prometheus_config { enable: true path: "/v1/metrics" }',
            "is under /v1/, which is the REST API's",
        ),
        "syntax.txt": ("prometheus_config { enable: maybe }", "Invalid protobuf file"),
    }
    for name, (text, message) in cases.items():
        config = tmp_path / name
        config.write_text(text)
        server = start_server(
            f"--model_base_path={base}", f"--monitoring_config_file={config}", ready=False
        )
        assert server.wait(120) == 1, server.output
        assert str(config) in server.output
        assert message in server.output
    missing = start_server(
        f"--model_base_path={base}",
        f"--monitoring_config_file={tmp_path / 'none.txt'}",
        ready=False,
    )
    assert missing.wait(120) == 1
    assert f"{tmp_path / 'none.txt'}: cannot read the monitoring config" in missing.output
    (tmp_path / "ok.txt").write_text(MONITORING)
    no_rest = start_server(
        f"--model_base_path={base}",
        f"--monitoring_config_file={tmp_path / 'ok.txt'}",
        rest=False,
        ready=False,
    )
    assert no_rest.wait(120) == 1
    assert "give --rest_api_port too" in no_rest.output


def test_no_metrics_endpoint_without_a_monitoring_config(server: ServerProcess) -> None:
    answer = server.http.get(PATH)
    assert answer.status_code == 404


def test_warmup_latency_is_recorded(
    store: ModelStore, tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    version = store.install(store.half_plus_two(2.0), tmp_path / "hp" / "1")
    write_warmup(version, [predict_log({"x": X})] * 3)
    config = tmp_path / "monitoring.txt"
    config.write_text(MONITORING)
    server = start_server(
        "--model_name=hp",
        f"--model_base_path={tmp_path / 'hp'}",
        f"--monitoring_config_file={config}",
    )
    samples = parse(server.http.get(PATH).text)
    warmups = ":tensorflow:serving:model_warmup_latency_count"
    assert select(samples, warmups, model_path=str(version), status="OK") == 1
    # Warmup requests are not client requests.
    assert select(samples, ":tensorflow:serving:request_count") == 0
