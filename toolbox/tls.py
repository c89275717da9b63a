"""Certificates for the engine's mutual TLS, made with ``cryptography`` (no openssl binary).

One CA per install (``<data>/certs/ca.pem``), a server and a client certificate per machine.
File names follow Docker's conventions so ``DOCKER_CERT_PATH`` can point at a machine dir:
``ca.pem``, ``cert.pem``, ``key.pem`` (client) and ``server.pem``, ``server-key.pem``.
Private keys are written 0600.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_DAYS = 3650
CA_FILE, CA_KEY_FILE = "ca.pem", "ca-key.pem"
CLIENT_CERT_FILE, CLIENT_KEY_FILE = "cert.pem", "key.pem"
SERVER_CERT_FILE, SERVER_KEY_FILE = "server.pem", "server-key.pem"


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` readable by the owner only, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
    if os.name == "posix":
        path.chmod(0o600)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load(pair: CertPair) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate(pair.cert.read_bytes())
    key = serialization.load_pem_private_key(pair.key.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return cert, key


def _validity() -> tuple[dt.datetime, dt.datetime]:
    now = dt.datetime.now(dt.UTC)
    # Backdate a little: a guest whose clock lags the host must still accept the cert.
    return now - dt.timedelta(days=1), now + dt.timedelta(days=VALID_DAYS)


def ensure_ca(directory: Path, common_name: str = "Toolbox CA") -> CertPair:
    """Return the CA in ``directory``, creating it on first use."""
    pair = CertPair(directory / CA_FILE, directory / CA_KEY_FILE)
    if pair.cert.exists() and pair.key.exists():
        return pair
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start, end = _validity()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    write_private(pair.key, _key_pem(key))
    pair.cert.parent.mkdir(parents=True, exist_ok=True)
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return pair


def _san(names: Iterable[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in dict.fromkeys(names):
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _issue(
    ca: CertPair,
    out: CertPair,
    common_name: str,
    usage: x509.ObjectIdentifier,
    sans: Iterable[str] = (),
) -> CertPair:
    ca_cert, ca_key = _load(ca)
    key = _new_key()
    start, end = _validity()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
    )
    sans = list(sans)
    if sans:
        builder = builder.add_extension(_san(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    write_private(out.key, _key_pem(key))
    out.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return out


def make_server_cert(ca: CertPair, directory: Path, sans: Iterable[str]) -> CertPair:
    """Issue ``server.pem``/``server-key.pem`` in ``directory`` valid for every name in ``sans``."""
    sans = list(sans)
    out = CertPair(directory / SERVER_CERT_FILE, directory / SERVER_KEY_FILE)
    return _issue(ca, out, sans[0] if sans else "toolbox", ExtendedKeyUsageOID.SERVER_AUTH, sans)


def make_client_cert(
    ca: CertPair, directory: Path, common_name: str = "toolbox-client"
) -> CertPair:
    """Issue ``cert.pem``/``key.pem`` in ``directory`` and copy ``ca.pem`` beside them."""
    out = CertPair(directory / CLIENT_CERT_FILE, directory / CLIENT_KEY_FILE)
    _issue(ca, out, common_name, ExtendedKeyUsageOID.CLIENT_AUTH)
    (directory / CA_FILE).write_bytes(ca.cert.read_bytes())
    return out


def certificate_sans(path: Path) -> list[str]:
    """The DNS names and IP addresses a certificate is valid for."""
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(v) for v in ext.get_values_for_type(x509.DNSName)] + [
        str(v) for v in ext.get_values_for_type(x509.IPAddress)
    ]
