"""--rest_server: the REST API behaves the same under Hypercorn and Uvicorn (limits, deadlines,
CORS, gzip, access logs, worker threads, draining on SIGTERM, a port in use), Uvicorn is the
default without TLS, Hypercorn with it, and each answers HTTP/2 as documented."""

from __future__ import annotations

import base64
import gzip
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from support import models
from support.certificates import SERVER_NAME, Certificates, make_certificates, ssl_config_text
from support.lifecycle import slow_model, started_calls, wait_until
from support.server import ServerProcess
from support.store import ModelStore

SERVERS = ["hypercorn", "uvicorn"]
SERVER_HEADERS = {"hypercorn": "hypercorn-h11", "uvicorn": "uvicorn"}
LIMIT = 100_000

# Sleeps x[0] seconds, then answers the most calls it has seen running at once.
COUNTING_MODEL = """
    import threading
    import time

    import numpy as np

    from fastserve.servables.python import signature, tensor

    LOCK = threading.Lock()
    RUNNING = 0
    MOST = 0


    @signature(inputs={"x": tensor("float32", [-1])}, outputs={"y": tensor("float32", [-1])})
    def serving_default(x):
        global RUNNING, MOST
        with LOCK:
            RUNNING += 1
            MOST = max(MOST, RUNNING)
        try:
            time.sleep(float(x[0]))
        finally:
            with LOCK:
                RUNNING -= 1
        return {"y": np.full(len(x), MOST, np.float32)}
"""


@pytest.fixture(scope="module")
def config(store: ModelStore, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An echo model (y = x + 1) and a slow one (see COUNTING_MODEL)."""
    root = tmp_path_factory.mktemp("rest_server")
    store.install(store.echo(1.0), root / "echo" / "1")
    models.python_model(root / "slow" / "1", COUNTING_MODEL)
    path = root / "models.yaml"
    path.write_text(
        "models:\n"
        f"  - {{name: echo, base_path: {root / 'echo'}, model_platform: python}}\n"
        f"  - {{name: slow, base_path: {root / 'slow'}, model_platform: python}}\n"
    )
    return path


@pytest.fixture(scope="module", params=SERVERS)
def rest(request: pytest.FixtureRequest, config: Path) -> Iterator[ServerProcess]:
    """One server per HTTP server with every REST option on. Hypercorn is chosen in the YAML's
    server: section, Uvicorn on the command line."""
    name = request.param
    if name == "hypercorn":
        chosen = config.with_name("hypercorn.yaml")
        chosen.write_text("server:\n  rest_server: hypercorn\n" + config.read_text())
        args = [f"--config={chosen}"]
    else:
        args = [f"--config={config}", "--rest_server=uvicorn"]
    process = ServerProcess(
        [
            *args,
            "--rest_api_enable_cors_support",
            f"--max_request_bytes={LIMIT}",
            "--rest_api_timeout_in_ms=2000",
            "--rest_api_num_threads=2",
            "--access_log",
        ]
    ).ready()
    yield process
    assert process.terminate() == 0, process.output


def _name(process: ServerProcess) -> str:
    return "uvicorn" if "--rest_server=uvicorn" in process.args else "hypercorn"


def test_the_chosen_server_serves_predict(rest: ServerProcess) -> None:
    name = _name(rest)
    answer = rest.http.post("/v1/models/echo:predict", json={"instances": [1.0, 2.0]})
    assert answer.json() == {"predictions": [2.0, 3.0]}
    assert answer.headers["server"] == SERVER_HEADERS[name]
    assert f"Exporting HTTP/REST API at:127.0.0.1:{rest.rest_port} ..." in rest.output
    assert f"REST HTTP server: {name} (" in rest.output


def test_body_over_the_limit_is_413(rest: ServerProcess) -> None:
    big = rest.http.post("/v1/models/echo:predict", json={"instances": [1.5] * 30_000})
    assert big.status_code == 413
    assert "(--max_request_bytes)" in big.json()["error"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"instances": ['
        for _ in range(30_000):
            yield b"1.5,"
        yield b"1.5]}"

    streamed = rest.http.post("/v1/models/echo:predict", content=chunks())
    assert streamed.status_code == 413


def test_cors_and_gzip(rest: ServerProcess) -> None:
    answer = rest.http.post(
        "/v1/models/echo:predict",
        content=gzip.compress(b'{"instances": [1.0, 5.0]}'),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert answer.json() == {"predictions": [2.0, 6.0]}
    assert answer.headers["access-control-allow-origin"] == "*"
    preflight = rest.http.options(
        "/v1/models/echo:predict",
        headers={"Origin": "http://example.com", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-methods"] == "POST, GET"


def test_access_log_lines(rest: ServerProcess) -> None:
    rest.http.post(
        "/v1/models/echo:predict", json={"instances": [1.0]}, headers={"User-Agent": "probe/1"}
    )
    rest.http.get("/v1/models/nope")
    wait_until(lambda: '"GET /v1/models/nope 1.1" 404' in rest.output, what="the access log")
    lines = [line for line in rest.output.splitlines() if "fastserve.access" in line]
    predict = [line for line in lines if '"POST /v1/models/echo:predict 1.1" 200' in line]
    assert predict, lines
    assert predict[-1].endswith(' "-" "probe/1"'), predict[-1]
    assert " 127.0.0.1:" in predict[-1]


def test_worker_threads_are_bounded_by_rest_api_num_threads(rest: ServerProcess) -> None:
    """Six requests at once on --rest_api_num_threads=2: at most two run the model at once."""
    answers: list[int] = []

    def call() -> None:
        answer = rest.http.post("/v1/models/slow:predict", json={"instances": [0.25]})
        answers.append(answer.status_code)

    callers = [threading.Thread(target=call) for _ in range(6)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(60)
    assert answers == [200] * 6
    most = rest.http.post("/v1/models/slow:predict", json={"instances": [0.0]})
    assert most.json()["predictions"][0] in (1.0, 2.0)


def test_deadline_answers_504(rest: ServerProcess) -> None:
    late = rest.http.post("/v1/models/slow:predict", json={"instances": [3.0]})
    assert (late.status_code, late.json()) == (504, {"error": "Timed out waiting for notification"})
    assert rest.http.post("/v1/models/echo:predict", json={"instances": [0.0]}).status_code == 200


def test_cleartext_http2(rest: ServerProcess) -> None:
    """h2c by prior knowledge: Hypercorn answers over HTTP/2; Uvicorn does not speak it and
    closes the connection. h2c by upgrade: Hypercorn switches (101), Uvicorn answers over
    HTTP/1.1."""
    with httpx.Client(http1=False, http2=True, base_url=rest.rest_url, timeout=30) as client:
        if _name(rest) == "hypercorn":
            answer = client.post("/v1/models/echo:predict", json={"instances": [1.0]})
            assert (answer.http_version, answer.json()) == ("HTTP/2", {"predictions": [2.0]})
        else:
            with pytest.raises(httpx.TransportError):
                client.post("/v1/models/echo:predict", json={"instances": [1.0]})
    settings = base64.urlsafe_b64encode(struct.pack("!HIHI", 3, 100, 2, 0)).rstrip(b"=")
    with socket.create_connection(("127.0.0.1", rest.rest_port), timeout=30) as sock:
        sock.sendall(
            b"GET /v1/models/echo HTTP/1.1\r\nHost: localhost\r\n"
            b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
            b"HTTP2-Settings: " + settings + b"\r\n\r\n"
        )
        status = sock.recv(4096).split(b"\r\n")[0]
    expected = b"HTTP/1.1 101" if _name(rest) == "hypercorn" else b"HTTP/1.1 200 OK"
    assert status.startswith(expected), status
    assert "Unsupported upgrade request" not in rest.output


def test_uvicorn_is_the_default_without_tls(server: ServerProcess) -> None:
    answer = server.http.get("/v1/models/echo")
    assert answer.headers["server"] == "uvicorn"


@pytest.mark.parametrize("name", SERVERS)
def test_sigterm_drains_in_flight_rest_requests(
    name: str, tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    """SIGTERM with 16 REST requests running: every one is answered, the signal reached
    fastserve's own handler, and the process exits 0.

    Every request runs at once (16 worker threads), so that the test can see, in the model,
    that all of them arrived before it sends the signal; the model holds them all until the
    server has begun shutting down."""
    started, release = tmp_path / "started.txt", tmp_path / "release"
    slow_model(tmp_path / "slow" / "1", 0, started, release)
    config = tmp_path / "models.yaml"
    config.write_text(
        f"models:\n  - {{name: slow, base_path: {tmp_path / 'slow'}, model_platform: python}}\n"
    )
    server = start_server(
        f"--config={config}", f"--rest_server={name}", "--rest_api_num_threads=16"
    )
    client = server.http  # made once, before the callers share it
    assert client.get("/v1/models/slow").status_code == 200
    statuses: list[object] = []

    def call() -> None:
        try:
            answer = client.post("/v1/models/slow:predict", json={"instances": [0.0]})
            statuses.append(answer.status_code)
        except httpx.HTTPError as error:
            statuses.append(error)

    callers = [threading.Thread(target=call) for _ in range(16)]
    for caller in callers:
        caller.start()
    wait_until(lambda: len(started_calls(started)) == 16, what="all 16 calls to start")
    server.process.send_signal(15)
    wait_until(lambda: "received SIGTERM; shutting down" in server.output, what="SIGTERM")
    assert statuses == []
    release.touch()
    for caller in callers:
        caller.join(60)
    assert server.wait(60) == 0
    assert statuses == [200] * 16, (statuses, server.output)
    assert "received SIGTERM; shutting down" in server.output


@pytest.mark.parametrize("name", SERVERS)
def test_a_port_in_use_fails_start_up(
    name: str, config: Path, start_server: Callable[..., ServerProcess]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = start_server(
            f"--config={config}", f"--rest_server={name}", f"--rest_api_port={port}", ready=False
        )
        assert server.wait(120) == 1
    assert f"cannot serve REST on 127.0.0.1:{port}: [Errno 98] Address already in use" in (
        server.output
    )


def test_an_unknown_rest_server_is_a_usage_error(
    config: Path, start_server: Callable[..., ServerProcess]
) -> None:
    server = start_server(f"--config={config}", "--rest_server=gunicorn", ready=False)
    assert server.wait(60) == 2
    assert "expected hypercorn or uvicorn, got 'gunicorn'" in server.output


# --- TLS ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("rest_server_certificates"))


def _alpn(port: int, context: ssl.SSLContext) -> str | None:
    context.set_alpn_protocols(["h2", "http/1.1"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=30) as raw,
        context.wrap_socket(raw, server_hostname=SERVER_NAME) as tls,
    ):
        return tls.selected_alpn_protocol()


def test_hypercorn_is_the_default_with_tls(
    config: Path, certificates: Certificates, start_server: Callable[..., ServerProcess]
) -> None:
    ssl_config = config.with_name("ssl.config")
    ssl_config.write_text(ssl_config_text(certificates.server_key, certificates.server_cert))
    server = start_server(f"--config={config}", f"--ssl_config_file={ssl_config}")
    assert "REST HTTP server: hypercorn (" in server.output
    context = ssl.create_default_context(cadata=certificates.ca_cert)
    assert _alpn(server.rest_port, context) == "h2"


def test_uvicorn_serves_https_and_mtls_over_http1(
    config: Path, certificates: Certificates, start_server: Callable[..., ServerProcess]
) -> None:
    """--rest_server=uvicorn with --ssl_config_file: HTTPS over HTTP/1.1 only (ALPN), client
    certificates required with client_verify."""
    ssl_config = config.with_name("mtls.config")
    ssl_config.write_text(
        ssl_config_text(
            certificates.server_key,
            certificates.server_cert,
            custom_ca=certificates.ca_cert,
            client_verify=True,
        )
    )
    server = start_server(
        f"--config={config}", f"--ssl_config_file={ssl_config}", "--rest_server=uvicorn"
    )
    assert "REST HTTP server: uvicorn (" in server.output

    def client_context(with_certificate: bool) -> ssl.SSLContext:
        context = ssl.create_default_context(cadata=certificates.ca_cert)
        if with_certificate:
            context.load_cert_chain(*certificates.client_files)
        return context

    url = f"https://{SERVER_NAME}:{server.rest_port}/v1/models/echo:predict"
    with httpx.Client(verify=client_context(True), timeout=30) as client:
        answer = client.post(url, json={"instances": [1.0]})
    assert (answer.json(), answer.headers["server"]) == ({"predictions": [2.0]}, "uvicorn")
    assert _alpn(server.rest_port, client_context(True)) == "http/1.1"
    with (
        httpx.Client(verify=client_context(False), timeout=30) as client,
        pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)),
    ):
        client.post(url, json={"instances": [1.0]})
