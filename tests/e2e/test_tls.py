"""TLS with --ssl_config_file: gRPC (TCP and UNIX socket) and REST over TLS, mutual TLS, and the
start-up errors of a bad SSLConfig."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import httpx
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_service_pb2_grpc

from support.certificates import (
    SERVER_NAME,
    Certificates,
    make_certificates,
    quoted,
    ssl_config_text,
)
from support.requests import X, predict_request
from support.server import ServerProcess
from support.store import ModelStore

EXPECTED = [2.5, 3.0, 4.5]  # half_plus_two of X


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certificates"))


@pytest.fixture(scope="module")
def model(store: ModelStore, tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("tls_models") / "hp"
    store.install(store.half_plus_two(2.0), base / "1")
    return base


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def tls_server(
    certificates: Certificates, model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """TLS without client certificates, on the TCP port, a UNIX socket and REST."""
    folder = tmp_path_factory.mktemp("tls")
    config = _write(
        folder,
        "ssl.config",
        ssl_config_text(certificates.server_key, certificates.server_cert),
    )
    process = ServerProcess(
        [
            "--model_name=hp",
            f"--model_base_path={model}",
            f"--ssl_config_file={config}",
            f"--grpc_socket_path={folder / 'grpc.sock'}",
        ]
    ).ready()
    yield process
    assert process.terminate() == 0, process.output


@pytest.fixture(scope="module")
def mtls_server(
    certificates: Certificates, model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """Mutual TLS (client_verify), with the SSL config given in the YAML's server: section."""
    folder = tmp_path_factory.mktemp("mtls")
    ssl_config = _write(
        folder,
        "ssl.config",
        ssl_config_text(
            certificates.server_key,
            certificates.server_cert,
            custom_ca=certificates.ca_cert,
            client_verify=True,
        ),
    )
    config = _write(
        folder,
        "models.yaml",
        f"server:\n  ssl_config_file: {ssl_config}\nmodels:\n  - {{name: hp, base_path: {model}}}\n",
    )
    process = ServerProcess([f"--config={config}"]).ready()
    yield process
    assert process.terminate() == 0, process.output


# --- clients --------------------------------------------------------------------------------


def _grpc_predict(channel: grpc.Channel) -> list[float]:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    response = stub.Predict(predict_request("hp", {"x": X}), timeout=30)
    return [float(value) for value in tf.make_ndarray(response.outputs["y"])]


def _credentials(certificates: Certificates, *, client: bool) -> grpc.ChannelCredentials:
    if not client:
        return grpc.ssl_channel_credentials(root_certificates=certificates.ca_cert.encode())
    return grpc.ssl_channel_credentials(
        root_certificates=certificates.ca_cert.encode(),
        private_key=certificates.client_key.encode(),
        certificate_chain=certificates.client_cert.encode(),
    )


def _secure_predict(server: ServerProcess, credentials: grpc.ChannelCredentials) -> list[float]:
    with grpc.secure_channel(f"127.0.0.1:{server.grpc_port}", credentials) as channel:
        return _grpc_predict(channel)


def _grpc_refusal(
    server: ServerProcess, credentials: grpc.ChannelCredentials | None
) -> grpc.RpcError:
    target = f"127.0.0.1:{server.grpc_port}"
    channel = (
        grpc.insecure_channel(target)
        if credentials is None
        else grpc.secure_channel(target, credentials)
    )
    with channel, pytest.raises(grpc.RpcError) as refused:
        _grpc_predict(channel)
    return refused.value


def _client_context(certificates: Certificates, client: tuple[str, str] | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=certificates.ca_cert)
    if client is not None:
        context.load_cert_chain(*client)
    return context


def _tls12_status_line(server: ServerProcess, context: ssl.SSLContext) -> bytes:
    """The REST port's first answer line over TLS 1.2, where the server asks for the client's
    certificate within the handshake: a refused certificate fails the handshake itself (raises
    ssl.SSLError), rather than closing the connection after it as under TLS 1.3."""
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with (
        socket.create_connection(("127.0.0.1", server.rest_port), timeout=30) as raw,
        context.wrap_socket(raw, server_hostname=SERVER_NAME) as tls,
    ):
        tls.sendall(f"GET /v1/models/hp HTTP/1.1\r\nHost: {SERVER_NAME}\r\n\r\n".encode())
        return tls.recv(4096).split(b"\r\n")[0]


def _https_predict(server: ServerProcess, context: ssl.SSLContext) -> httpx.Response:
    with httpx.Client(verify=context, timeout=30) as client:
        return client.post(
            f"https://{SERVER_NAME}:{server.rest_port}/v1/models/hp:predict",
            json={"instances": X.tolist()},
        )


# --- TLS ------------------------------------------------------------------------------------


def test_grpc_over_tls(tls_server: ServerProcess, certificates: Certificates) -> None:
    assert _secure_predict(tls_server, _credentials(certificates, client=False)) == EXPECTED


def test_plaintext_grpc_to_the_tls_port_is_refused(
    tls_server: ServerProcess, certificates: Certificates
) -> None:
    assert _secure_predict(tls_server, _credentials(certificates, client=False)) == EXPECTED
    refused = _grpc_refusal(tls_server, None)
    assert refused.code() == grpc.StatusCode.UNAVAILABLE


def test_grpc_over_tls_on_the_unix_socket(
    tls_server: ServerProcess, certificates: Certificates
) -> None:
    socket_path = next(arg for arg in tls_server.args if arg.startswith("--grpc_socket_path="))
    target = "unix:" + socket_path.partition("=")[2]
    options = [("grpc.ssl_target_name_override", SERVER_NAME)]
    credentials = _credentials(certificates, client=False)
    with grpc.secure_channel(target, credentials, options=options) as channel:
        assert _grpc_predict(channel) == EXPECTED
    with grpc.insecure_channel(target) as channel, pytest.raises(grpc.RpcError) as refused:
        _grpc_predict(channel)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_rest_over_https(tls_server: ServerProcess, certificates: Certificates) -> None:
    answer = _https_predict(tls_server, _client_context(certificates, None))
    assert answer.status_code == 200
    assert answer.json() == {"predictions": EXPECTED}


def test_plain_http_to_the_rest_port_is_refused(
    tls_server: ServerProcess, certificates: Certificates
) -> None:
    assert _https_predict(tls_server, _client_context(certificates, None)).status_code == 200
    # The connection is made (no ConnectError) but closed or reset without an HTTP answer.
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        httpx.post(
            f"http://127.0.0.1:{tls_server.rest_port}/v1/models/hp:predict",
            json={"instances": X.tolist()},
            timeout=30,
        )


def test_rest_offers_http2_and_http1_by_alpn(
    tls_server: ServerProcess, certificates: Certificates
) -> None:
    for offered, chosen in ((["h2", "http/1.1"], "h2"), (["http/1.1"], "http/1.1")):
        context = _client_context(certificates, None)
        context.set_alpn_protocols(offered)
        with (
            socket.create_connection(("127.0.0.1", tls_server.rest_port), timeout=30) as raw,
            context.wrap_socket(raw, server_hostname=SERVER_NAME) as tls,
        ):
            assert tls.selected_alpn_protocol() == chosen


# --- mutual TLS -----------------------------------------------------------------------------


def test_mtls_grpc_needs_a_client_certificate(
    mtls_server: ServerProcess, certificates: Certificates
) -> None:
    assert _secure_predict(mtls_server, _credentials(certificates, client=True)) == EXPECTED
    refused = _grpc_refusal(mtls_server, _credentials(certificates, client=False))
    assert refused.code() == grpc.StatusCode.UNAVAILABLE


def test_mtls_rest_needs_a_client_certificate(
    mtls_server: ServerProcess, certificates: Certificates
) -> None:
    answer = _https_predict(mtls_server, _client_context(certificates, certificates.client_files))
    assert answer.json() == {"predictions": EXPECTED}
    with pytest.raises(httpx.TransportError):
        _https_predict(mtls_server, _client_context(certificates, None))
    with_certificate = _client_context(certificates, certificates.client_files)
    assert _tls12_status_line(mtls_server, with_certificate) == b"HTTP/1.1 200 "
    with pytest.raises(ssl.SSLError):
        _tls12_status_line(mtls_server, _client_context(certificates, None))


def test_mtls_refuses_a_client_certificate_from_another_ca(
    mtls_server: ServerProcess, certificates: Certificates
) -> None:
    other = grpc.ssl_channel_credentials(
        root_certificates=certificates.ca_cert.encode(),
        private_key=certificates.other_client_key.encode(),
        certificate_chain=certificates.other_client_cert.encode(),
    )
    assert _grpc_refusal(mtls_server, other).code() == grpc.StatusCode.UNAVAILABLE
    context = _client_context(certificates, certificates.other_client_files)
    with pytest.raises(httpx.TransportError):
        _https_predict(mtls_server, context)
    with pytest.raises(ssl.SSLError):
        _tls12_status_line(
            mtls_server, _client_context(certificates, certificates.other_client_files)
        )
    answer = _https_predict(mtls_server, _client_context(certificates, certificates.client_files))
    assert answer.json() == {"predictions": EXPECTED}


def test_custom_ca_without_client_verify_makes_the_certificate_optional(
    certificates: Certificates,
    model: Path,
    tmp_path: Path,
    start_server: Callable[..., ServerProcess],
) -> None:
    config = _write(
        tmp_path,
        "ssl.config",
        ssl_config_text(
            certificates.server_key, certificates.server_cert, custom_ca=certificates.ca_cert
        ),
    )
    server = start_server(
        "--model_name=hp", f"--model_base_path={model}", f"--ssl_config_file={config}"
    )
    for client in (False, True):
        assert _secure_predict(server, _credentials(certificates, client=client)) == EXPECTED
    for files in (None, certificates.client_files):
        answer = _https_predict(server, _client_context(certificates, files))
        assert answer.json() == {"predictions": EXPECTED}
    # A certificate that is sent is verified (by REST; gRPC does not ask for one).
    context = _client_context(certificates, certificates.other_client_files)
    with pytest.raises(httpx.TransportError):
        _https_predict(server, context)
    with pytest.raises(ssl.SSLError):
        _tls12_status_line(server, _client_context(certificates, certificates.other_client_files))
    assert _tls12_status_line(server, _client_context(certificates, None)) == b"HTTP/1.1 200 "


# --- start-up errors --------------------------------------------------------------------------

# name -> (SSLConfig text from the certificates, the problem the error must state)
BAD_CONFIGS: dict[str, tuple[Callable[[Certificates], str], str]] = {
    "does not parse": (
        lambda c: f'server_key: {quoted(c.server_key)}\nserver_certificate: "x"\n',
        "Invalid protobuf file: '{config}': 2:1 : Message type "
        '"tensorflow.serving.SSLConfig" has no field named "server_certificate".',
    ),
    "empty key": (
        lambda c: f"server_cert: {quoted(c.server_cert)}\n",
        "server_key is empty",
    ),
    "key is a path": (
        lambda c: ssl_config_text("/etc/ssl/server.key", c.server_cert),
        "server_key is not a PEM private key (-----BEGIN ... PRIVATE KEY-----); it takes the "
        "PEM contents, not a file name: got '/etc/ssl/server.key'",
    ),
    "key is not a key": (
        lambda c: ssl_config_text(
            "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
            c.server_cert,
        ),
        "server_key is not a PEM private key",
    ),
    "empty certificate": (
        lambda c: f"server_key: {quoted(c.server_key)}\n",
        "server_cert is empty",
    ),
    "certificate is not a certificate": (
        lambda c: ssl_config_text(c.server_key, c.server_key),
        "server_cert is not a PEM certificate",
    ),
    "certificate of another key": (
        lambda c: ssl_config_text(c.other_key, c.server_cert),
        "server_cert does not match server_key",
    ),
    "client_verify without custom_ca": (
        lambda c: ssl_config_text(c.server_key, c.server_cert, client_verify=True),
        "client_verify is true but custom_ca is empty",
    ),
    "custom_ca is not a certificate": (
        lambda c: ssl_config_text(c.server_key, c.server_cert, custom_ca=c.other_key),
        "custom_ca is not a PEM certificate",
    ),
}


def _start_up_error(start_server: Callable[..., ServerProcess], config: Path) -> str:
    process = start_server(
        "--model_name=hp",
        f"--model_base_path={config.parent}",
        f"--ssl_config_file={config}",
        ready=False,
    )
    assert process.wait() == 1, process.output
    assert "Traceback" not in process.output
    assert "fastserve is ready" not in process.output
    return process.output


@pytest.mark.parametrize("case", BAD_CONFIGS)
def test_bad_ssl_config_is_a_start_up_error(
    case: str,
    certificates: Certificates,
    tmp_path: Path,
    start_server: Callable[..., ServerProcess],
) -> None:
    text, problem = BAD_CONFIGS[case]
    config = _write(tmp_path, "ssl.config", text(certificates))
    output = _start_up_error(start_server, config)
    problem = problem.replace("{config}", str(config))
    if problem.startswith("Invalid protobuf file"):  # worded as for every text-proto file
        assert f"fastserve: failed to start:\n{problem}" in output
    else:
        assert f"fastserve: failed to start:\n{config}: {problem}" in output


def test_missing_ssl_config_is_a_start_up_error(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    config = tmp_path / "missing.config"
    output = _start_up_error(start_server, config)
    assert f"{config}: cannot read the SSL config: No such file or directory" in output
