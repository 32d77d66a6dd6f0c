"""The SSLConfig file: TF Serving's field numbers, its text format, and the SSL context made of it."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from fastserve.config.protos import message
from fastserve.config.ssl import SSLConfig, read_ssl_config, server_context
from fastserve.errors import ConfigError
from support.certificates import Certificates, make_certificates, quoted, ssl_config_text


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certificates"))


def test_field_numbers_are_tf_serving_s() -> None:
    proto = message("SSLConfig")
    proto.server_key, proto.server_cert, proto.custom_ca = "k", "c", "a"
    proto.client_verify = True
    # field 1..3 length-delimited (tag 0x0a, 0x12, 0x1a), field 4 varint (tag 0x20)
    assert proto.SerializeToString() == b"\x0a\x01k\x12\x01c\x1a\x01a\x20\x01"


def test_reads_pem_contents_written_as_adjacent_strings(
    certificates: Certificates, tmp_path: Path
) -> None:
    # One quoted string per PEM line, as people write these files by hand.
    lines = " ".join(quoted(line + "\n") for line in certificates.server_key.splitlines())
    path = tmp_path / "ssl.config"
    path.write_text(
        f"server_key: {lines}\nserver_cert: {quoted(certificates.server_cert)}\n"
        f"custom_ca: {quoted(certificates.ca_cert)}\nclient_verify: true\n"
    )
    assert read_ssl_config(str(path)) == SSLConfig(
        server_key=certificates.server_key,
        server_cert=certificates.server_cert,
        custom_ca=certificates.ca_cert,
        client_verify=True,
    )


@pytest.mark.parametrize(
    ("custom_ca", "client_verify", "verify_mode"),
    [
        (False, False, ssl.CERT_NONE),
        (True, False, ssl.CERT_OPTIONAL),
        (True, True, ssl.CERT_REQUIRED),
    ],
)
def test_client_certificates_are_verified_against_custom_ca_only(
    certificates: Certificates, custom_ca: bool, client_verify: bool, verify_mode: ssl.VerifyMode
) -> None:
    context = server_context(
        SSLConfig(
            certificates.server_key,
            certificates.server_cert,
            certificates.ca_cert if custom_ca else "",
            client_verify,
        )
    )
    assert context.verify_mode == verify_mode
    # Never the system's CAs: a client certificate must come from custom_ca.
    assert len(context.get_ca_certs()) == (1 if custom_ca else 0)


def test_a_certificate_chain_is_accepted(certificates: Certificates) -> None:
    chain = certificates.server_cert + certificates.ca_cert
    server_context(SSLConfig(certificates.server_key, chain))


def test_an_encrypted_key_is_refused_without_prompting(
    certificates: Certificates, tmp_path: Path
) -> None:
    key = serialization.load_pem_private_key(certificates.server_key.encode(), password=None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    ).decode()
    path = tmp_path / "ssl.config"
    path.write_text(ssl_config_text(encrypted, certificates.server_cert))
    with pytest.raises(ConfigError) as refused:
        read_ssl_config(str(path))
    assert str(refused.value) == (
        f"{path}: server_key is encrypted; SSLConfig takes an unencrypted PEM key"
    )
