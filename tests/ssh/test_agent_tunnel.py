"""The host agent's SSH tunnel (direct-tcpip) against a real sshd on loopback: bytes both
ways, a half-close, a port already taken, and closing."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from collections.abc import Iterator

import pytest

from tests.harness import free_port
from tests.ssh.conftest import LocalSSHD
from toolbox.agent.tunnel import SSHTunnel
from toolbox.ssh.client import GuestSSH


@pytest.fixture
def ssh(sshd: LocalSSHD) -> Iterator[GuestSSH]:
    client = GuestSSH(
        sshd.host, sshd.port, sshd.user, sshd.user_key.private_path, sshd.host_key.public_line
    )
    with client:
        yield client


class _Sink:
    """A server on the "guest" side that answers each connection with the sha256 of all it
    received (after the client half-closes)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                digest = hashlib.sha256()
                while data := conn.recv(65536):
                    digest.update(data)
                conn.sendall(digest.hexdigest().encode())


def test_bytes_reach_the_guest_address_and_come_back(ssh: GuestSSH) -> None:
    sink = _Sink()
    port = free_port()
    tunnel = SSHTunnel("127.0.0.1", port, "127.0.0.1", sink.port, ssh.transport)
    tunnel.open()
    try:
        payload = os.urandom(8 * 1024 * 1024)
        for _ in range(2):  # two connections in a row over the same transport
            with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
                conn.sendall(payload)
                conn.shutdown(socket.SHUT_WR)
                answer = b""
                while data := conn.recv(1024):
                    answer += data
            assert answer.decode() == hashlib.sha256(payload).hexdigest()
    finally:
        tunnel.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    sink.sock.close()


def test_a_taken_port_raises_and_a_dead_guest_port_drops_the_connection(ssh: GuestSSH) -> None:
    with socket.create_server(("127.0.0.1", 0)) as held:
        tunnel = SSHTunnel("127.0.0.1", held.getsockname()[1], "127.0.0.1", 1, ssh.transport)
        with pytest.raises(OSError):
            tunnel.open()
    port = free_port()
    tunnel = SSHTunnel("127.0.0.1", port, "127.0.0.1", free_port(), ssh.transport)
    tunnel.open()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.settimeout(15)
            assert conn.recv(10) == b""  # the guest refused: the host connection just ends
    finally:
        tunnel.close()
