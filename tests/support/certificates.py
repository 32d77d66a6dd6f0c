"""A test CA with a server certificate for localhost and a client certificate, made with the
`cryptography` package, and TF Serving SSLConfig text protos over them."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVER_NAME = "localhost"


@dataclass(frozen=True)
class Certificates:
    """PEM contents, and `folder` holding the client's as files (ssl loads chains from files)."""

    ca_cert: str
    server_key: str
    server_cert: str
    client_key: str
    client_cert: str
    # A key that signed none of the above, and a CA of its own the server does not trust.
    other_key: str
    other_ca_cert: str
    other_client_key: str
    other_client_cert: str
    folder: Path

    @property
    def client_files(self) -> tuple[str, str]:
        return str(self.folder / "client.crt"), str(self.folder / "client.key")

    @property
    def other_client_files(self) -> tuple[str, str]:
        return str(self.folder / "other_client.crt"), str(self.folder / "other_client.key")


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    usage: x509.ObjectIdentifier | None = None,
    names: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    is_ca = issuer is None
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.subject if issuer else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=not is_ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=is_ca,
                crl_sign=is_ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _cert_pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def make_certificates(folder: Path) -> Certificates:
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, server_key, client_key, other_key = _key(), _key(), _key(), _key()
    ca = _certificate("fastserve test CA", ca_key, None, ca_key)
    server = _certificate(
        SERVER_NAME,
        server_key,
        ca,
        ca_key,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        names=[x509.DNSName(SERVER_NAME), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )
    client = _certificate(
        "fastserve test client", client_key, ca, ca_key, usage=ExtendedKeyUsageOID.CLIENT_AUTH
    )
    other_ca_key, other_client_key = _key(), _key()
    other_ca = _certificate("another CA", other_ca_key, None, other_ca_key)
    other_client = _certificate(
        "another client",
        other_client_key,
        other_ca,
        other_ca_key,
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    certificates = Certificates(
        ca_cert=_cert_pem(ca),
        server_key=_key_pem(server_key),
        server_cert=_cert_pem(server),
        client_key=_key_pem(client_key),
        client_cert=_cert_pem(client),
        other_key=_key_pem(other_key),
        other_ca_cert=_cert_pem(other_ca),
        other_client_key=_key_pem(other_client_key),
        other_client_cert=_cert_pem(other_client),
        folder=folder,
    )
    for name, text in (
        ("client.crt", certificates.client_cert),
        ("client.key", certificates.client_key),
        ("other_client.crt", certificates.other_client_cert),
        ("other_client.key", certificates.other_client_key),
    ):
        (folder / name).write_text(text)
    return certificates


def quoted(text: str) -> str:
    """A text-proto string literal (PEMs hold no quotes or backslashes)."""
    return '"' + text.replace("\n", "\\n") + '"'


def ssl_config_text(
    server_key: str, server_cert: str, custom_ca: str = "", client_verify: bool = False
) -> str:
    lines = [f"server_key: {quoted(server_key)}", f"server_cert: {quoted(server_cert)}"]
    if custom_ca:
        lines.append(f"custom_ca: {quoted(custom_ca)}")
    if client_verify:
        lines.append("client_verify: true")
    return "\n".join(lines) + "\n"
