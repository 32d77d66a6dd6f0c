"""TLS for the gRPC and REST ports: TF Serving's SSLConfig file, read and checked up front."""

from __future__ import annotations

import os
import ssl
import tempfile

from fastserve.errors import ConfigError
from fastserve.types import SSLConfig


def read_ssl_config(path: str) -> SSLConfig:
    """Reads an SSLConfig text proto and checks that its PEMs load as a server's key and
    certificate (gRPC would only find out at the first handshake). Raises ConfigError naming
    the file and the problem."""
    from fastserve.config.protos import read_text_file

    proto = read_text_file(path, "SSLConfig", "SSL config")
    config = SSLConfig(
        server_key=proto.server_key,
        server_cert=proto.server_cert,
        custom_ca=proto.custom_ca,
        client_verify=proto.client_verify,
    )
    try:
        server_context(config)
    except ValueError as error:
        raise ConfigError(f"{path}: {error}") from None
    return config


class _EncryptedKey(Exception):
    pass


def _no_password() -> str:
    # Without a callback, OpenSSL would prompt on the terminal for an encrypted key's password.
    raise _EncryptedKey


def server_context(config: SSLConfig) -> ssl.SSLContext:
    """A server-side SSL context with the config's key and certificate. Client certificates
    are verified against custom_ca only (never the system's CAs): required with
    client_verify, optional (but verified if sent) with a custom_ca alone, else not asked for.
    Raises ValueError saying which field is wrong."""
    if not config.server_key.strip():
        raise ValueError("server_key is empty; it must hold the PEM contents of the key")
    if not config.server_cert.strip():
        raise ValueError("server_cert is empty; it must hold the PEM contents of the certificate")
    if "-----BEGIN" not in config.server_key or "PRIVATE KEY-----" not in config.server_key:
        raise ValueError(
            "server_key is not a PEM private key (-----BEGIN ... PRIVATE KEY-----)"
            + _path_hint(config.server_key)
        )
    if config.client_verify and not config.custom_ca.strip():
        raise ValueError(
            "client_verify is true but custom_ca is empty: client certificates need the CA "
            "that signs them"
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION
    # The ssl module parses certificates only as trusted ones: a throwaway context checks
    # server_cert, so that a bad certificate is not reported as a bad key.
    _trust(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), config.server_cert, "server_cert")
    _load_key_and_certificate(context, config.server_key, config.server_cert)
    if config.custom_ca:
        _trust(context, config.custom_ca, "custom_ca")
        context.verify_mode = ssl.CERT_REQUIRED if config.client_verify else ssl.CERT_OPTIONAL
    return context


def _trust(context: ssl.SSLContext, pem: str, field: str) -> None:
    try:
        context.load_verify_locations(cadata=pem)
    except (ssl.SSLError, ValueError) as error:
        raise ValueError(
            f"{field} is not a PEM certificate{_reason(error)}{_path_hint(pem)}"
        ) from None


def _load_key_and_certificate(context: ssl.SSLContext, key: str, cert: str) -> None:
    # The ssl module loads keys from files only: they live in a private (0700) folder just
    # long enough to be read.
    with tempfile.TemporaryDirectory(prefix="fastserve-tls-") as folder:
        key_path = os.path.join(folder, "server.key")
        cert_path = os.path.join(folder, "server.crt")
        for path, text in ((key_path, key), (cert_path, cert)):
            with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
                file.write(text)
        try:
            context.load_cert_chain(cert_path, key_path, password=_no_password)
        except _EncryptedKey:
            raise ValueError(
                "server_key is encrypted; SSLConfig takes an unencrypted PEM key"
            ) from None
        except ssl.SSLError as error:
            if error.reason == "KEY_VALUES_MISMATCH":
                raise ValueError("server_cert does not match server_key") from None
            raise ValueError(f"server_key is not a PEM private key{_reason(error)}") from None


def _reason(error: Exception) -> str:
    """OpenSSL's words for a parse failure, when it has any beyond "PEM lib"."""
    text = str(error.args[-1] if error.args else error).split(" (_ssl.c")[0]
    return "" if not text or "PEM lib" in text else f" ({text})"


def _path_hint(text: str) -> str:
    """TF Serving's SSLConfig takes PEM contents; a path there is an easy mistake to make."""
    value = text.strip()
    if "\n" in value or not (os.sep in value or value.endswith((".pem", ".key", ".crt"))):
        return ""
    return f"; it takes the PEM contents, not a file name: got {value!r}"
