"""Host-side TLS for a machine: SANs from `ip -4 addr`, issuing and re-issuing, a real handshake."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from toolbox import tls
from toolbox.provision.certs import (
    MachineCerts,
    client_cert_ok,
    ensure_machine_certs,
    parse_ipv4_addresses,
    parse_sha256sum,
    server_cert_ok,
    server_sans,
)

IP_O_OUTPUT = (
    "2: ens3    inet 10.0.2.15/24 metric 1024 brd 10.0.2.255 scope global dynamic ens3\\"
    "       valid_lft 86213sec preferred_lft 86213sec\n"
    "3: docker0    inet 172.17.0.1/16 brd 172.17.255.255 scope global docker0\\"
    "       valid_lft forever preferred_lft forever\n"
)

IP_LONG_OUTPUT = """1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN
    inet 127.0.0.1/8 scope host lo
       valid_lft forever preferred_lft forever
2: enp0s3: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc fq_codel state UP
    inet 10.0.2.15/24 brd 10.0.2.255 scope global dynamic enp0s3
       valid_lft 86366sec preferred_lft 86366sec
3: enp0s8: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc fq_codel state UP
    inet 192.168.56.101/24 brd 192.168.56.255 scope global enp0s8
    inet 169.254.3.4/16 scope link enp0s8
"""


def test_parse_ip_o_output() -> None:
    assert parse_ipv4_addresses(IP_O_OUTPUT) == ["10.0.2.15", "172.17.0.1"]


def test_parse_ip_long_output_skips_loopback_and_link_local() -> None:
    assert parse_ipv4_addresses(IP_LONG_OUTPUT) == ["10.0.2.15", "192.168.56.101"]


def test_parse_ip_ignores_junk() -> None:
    assert parse_ipv4_addresses("") == []
    assert parse_ipv4_addresses("inet 999.1.1.1/24 scope global x\ninet6 fe80::1/64") == []


@given(st.lists(st.ip_addresses(v=4), max_size=6), st.booleans())
def test_parse_ip_finds_every_global_address(addresses: list, one_line: bool) -> None:
    lines = []
    for n, address in enumerate(addresses):
        body = f"inet {address}/24 brd 1.2.3.255 scope global eth{n}"
        lines.append(
            f"{n + 2}: eth{n}    {body}\\  valid_lft forever" if one_line else f"    {body}"
        )
    expected: list[str] = []
    for address in addresses:
        ip = ipaddress.IPv4Address(address)
        special = ip.is_loopback or ip.is_link_local or ip.is_unspecified
        if not special and str(ip) not in expected:
            expected.append(str(ip))
    assert parse_ipv4_addresses("\n".join(lines)) == expected


def test_server_sans_order_and_dedup() -> None:
    assert server_sans(["10.0.2.15", "192.168.56.101"], ["default", "localhost", " "]) == (
        "127.0.0.1",
        "localhost",
        "10.0.2.15",
        "192.168.56.101",
        "default",
    )
    assert server_sans() == ("127.0.0.1", "localhost", "10.0.2.15")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_issue_then_nothing_changes(tmp_path: Path) -> None:
    ca = tls.ensure_ca(tmp_path / "ca")
    machine = tmp_path / "machines" / "default"
    sans = server_sans(["10.0.2.15"], ["default"])
    assert ensure_machine_certs(machine, ca, sans) == (True, True)
    files = MachineCerts(machine)
    assert sorted(p.name for p in machine.iterdir()) == [
        "ca.pem",
        "cert.pem",
        "key.pem",
        "server-key.pem",
        "server.pem",
    ]
    assert _mode(files.client.key) == 0o600 and _mode(files.server.key) == 0o600
    assert files.ca.read_bytes() == ca.cert.read_bytes()
    assert set(tls.certificate_sans(files.server.cert)) == {
        "127.0.0.1",
        "localhost",
        "10.0.2.15",
        "default",
    }
    before = {p.name: p.read_bytes() for p in machine.iterdir()}
    assert ensure_machine_certs(machine, ca, sans) == (False, False)
    assert {p.name: p.read_bytes() for p in machine.iterdir()} == before


def test_a_new_guest_address_reissues_only_the_server_cert(tmp_path: Path) -> None:
    ca = tls.ensure_ca(tmp_path / "ca")
    machine = tmp_path / "m"
    ensure_machine_certs(machine, ca, server_sans(["10.0.2.15"]))
    client_before = (machine / "cert.pem").read_bytes()
    wanted = server_sans(["10.0.2.15", "192.168.56.101"])
    assert not server_cert_ok(MachineCerts(machine), ca, wanted)
    assert ensure_machine_certs(machine, ca, wanted) == (True, False)
    assert "192.168.56.101" in tls.certificate_sans(machine / "server.pem")
    assert (machine / "cert.pem").read_bytes() == client_before


def test_another_ca_or_damage_reissues(tmp_path: Path) -> None:
    ca = tls.ensure_ca(tmp_path / "ca")
    machine = tmp_path / "m"
    sans = server_sans()
    ensure_machine_certs(machine, ca, sans)
    other = tls.ensure_ca(tmp_path / "other")
    files = MachineCerts(machine)
    assert not server_cert_ok(files, other, sans)
    assert not client_cert_ok(files, other)
    assert ensure_machine_certs(machine, other, sans) == (True, True)
    assert files.ca.read_bytes() == other.cert.read_bytes()
    # A key that does not belong to its certificate is not good.
    files.client.key.write_bytes((machine / "server-key.pem").read_bytes())
    assert not client_cert_ok(files, other)
    assert ensure_machine_certs(machine, other, sans, force=False) == (False, True)
    assert ensure_machine_certs(machine, other, sans, force=True) == (True, True)


def _serve_once(server_ctx: ssl.SSLContext, listener: socket.socket, errors: list) -> None:
    conn, _ = listener.accept()
    try:
        with server_ctx.wrap_socket(conn, server_side=True) as tls_conn:
            tls_conn.sendall(b"ok")
    except (ssl.SSLError, OSError) as exc:
        errors.append(exc)


@pytest.mark.parametrize("server_name", ["127.0.0.1", "localhost"])
def test_the_certs_make_a_mutual_tls_connection(tmp_path: Path, server_name: str) -> None:
    """A real handshake: the server requires the client cert; the client checks the SANs."""
    ca = tls.ensure_ca(tmp_path / "ca")
    machine = tmp_path / "m"
    ensure_machine_certs(machine, ca, server_sans())
    files = MachineCerts(machine)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(files.ca))
    server_ctx.load_cert_chain(files.server.cert, files.server.key)
    server_ctx.verify_mode = ssl.CERT_REQUIRED

    def attempt(with_client_cert: bool) -> tuple[bytes | None, list]:
        errors: list = []
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            thread = threading.Thread(target=_serve_once, args=(server_ctx, listener, errors))
            thread.start()
            client_ctx = ssl.create_default_context(cafile=str(files.ca))
            if with_client_cert:
                client_ctx.load_cert_chain(files.client.cert, files.client.key)
            data = None
            try:
                with (
                    socket.create_connection(listener.getsockname(), timeout=10) as raw,
                    client_ctx.wrap_socket(raw, server_hostname=server_name) as conn,
                ):
                    data = conn.recv(2)
            except (ssl.SSLError, OSError) as exc:
                errors.append(exc)
            thread.join(10)
        return data, errors

    data, errors = attempt(with_client_cert=True)
    assert data == b"ok", errors
    data, errors = attempt(with_client_cert=False)
    assert data != b"ok" and errors  # no client certificate, no service


def test_parse_sha256sum() -> None:
    digest = "a" * 64
    text = (
        f"{digest}  /etc/docker/toolbox/ca.pem\n"
        "sha256sum: /etc/docker/toolbox/server.pem: No such file or directory\n"
        f"{'b' * 64}  /etc/x y.pem\n"
    )
    assert parse_sha256sum(text) == {
        "/etc/docker/toolbox/ca.pem": digest,
        "/etc/x y.pem": "b" * 64,
    }
