"""The machine's TLS files on the host side: which names the server certificate must cover,
whether the files in the machine dir are still good, and issuing them with ``toolbox.tls``.

The machine dir doubles as ``DOCKER_CERT_PATH``: ``ca.pem``, ``cert.pem``, ``key.pem`` (the
client) plus ``server.pem`` and ``server-key.pem`` (copied into the guest).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID

from toolbox import tls

# The guest's address under QEMU user-mode networking and VirtualBox NAT alike.
NAT_GUEST_ADDRESS = "10.0.2.15"
BASE_SANS = ("127.0.0.1", "localhost", NAT_GUEST_ADDRESS)
IP_ADDR_COMMAND = "ip -4 -o addr show scope global"

_INET = re.compile(r"\binet\s+(\d{1,3}(?:\.\d{1,3}){3})(?:/\d{1,2})?")


def parse_ipv4_addresses(text: str) -> list[str]:
    """The IPv4 addresses in ``ip -4 addr`` output (one-line ``-o`` or the long form),
    without loopback and link-local ones, in order, each once."""
    found: list[str] = []
    for match in _INET.finditer(text):
        try:
            address = ipaddress.IPv4Address(match.group(1))
        except ValueError:
            continue
        if address.is_loopback or address.is_link_local or address.is_unspecified:
            continue
        if str(address) not in found:
            found.append(str(address))
    return found


def server_sans(guest_addresses: Iterable[str] = (), extra: Iterable[str] = ()) -> tuple[str, ...]:
    """Names the server certificate is valid for: loopback first (the forward), the NAT
    address, the guest's own addresses, then any extra names; each once, in that order."""
    names: list[str] = []
    for name in (*BASE_SANS, *guest_addresses, *extra):
        name = name.strip()
        if name and name not in names:
            names.append(name)
    return tuple(names)


@dataclass(frozen=True)
class MachineCerts:
    """The TLS files of one machine on the host."""

    directory: Path

    @property
    def ca(self) -> Path:
        return self.directory / tls.CA_FILE

    @property
    def client(self) -> tls.CertPair:
        return tls.CertPair(
            self.directory / tls.CLIENT_CERT_FILE, self.directory / tls.CLIENT_KEY_FILE
        )

    @property
    def server(self) -> tls.CertPair:
        return tls.CertPair(
            self.directory / tls.SERVER_CERT_FILE, self.directory / tls.SERVER_KEY_FILE
        )


def _issued_by(cert_path: Path, key_path: Path, ca_cert: x509.Certificate, usage: object) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key_pem = key_path.read_bytes()
    except (OSError, ValueError):
        return False
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    if usage not in list(usages):
        return False
    # The key must belong to the certificate (a half-written pair is not good).
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        return False
    return bool(key.public_key() == cert.public_key())


def server_cert_ok(certs: MachineCerts, ca: tls.CertPair, wanted_sans: Sequence[str]) -> bool:
    """The server certificate exists, is signed by ``ca`` and covers every wanted name."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    pair = certs.server
    if not _issued_by(pair.cert, pair.key, ca_cert, ExtendedKeyUsageOID.SERVER_AUTH):
        return False
    have = set(tls.certificate_sans(pair.cert))
    return all(_san_text(n) in have for n in wanted_sans)


def client_cert_ok(certs: MachineCerts, ca: tls.CertPair) -> bool:
    """``ca.pem`` is the install's CA and the client certificate is signed by it."""
    try:
        if certs.ca.read_bytes() != ca.cert.read_bytes():
            return False
    except OSError:
        return False
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    pair = certs.client
    return _issued_by(pair.cert, pair.key, ca_cert, ExtendedKeyUsageOID.CLIENT_AUTH)


def _san_text(name: str) -> str:
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name


def ensure_machine_certs(
    directory: Path, ca: tls.CertPair, wanted_sans: Sequence[str], force: bool = False
) -> tuple[bool, bool]:
    """Issue what is missing or stale (all of it with ``force``).

    Returns ``(server_changed, client_changed)``.
    """
    certs = MachineCerts(directory)
    directory.mkdir(parents=True, exist_ok=True)
    server = force or not server_cert_ok(certs, ca, wanted_sans)
    if server:
        tls.make_server_cert(ca, directory, wanted_sans)
    client = force or not client_cert_ok(certs, ca)
    if client:
        tls.make_client_cert(ca, directory)
    return server, client


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def parse_sha256sum(text: str) -> dict[str, str]:
    """``sha256sum`` output as {path: hex digest}; unreadable files are simply absent."""
    sums: dict[str, str] = {}
    for line in text.splitlines():
        digest, sep, name = line.partition("  ")
        if sep and re.fullmatch(r"[0-9a-f]{64}", digest):
            sums[name.strip()] = digest
    return sums
