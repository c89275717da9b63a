"""A host TCP listener whose connections go to a guest address over the machine's SSH
connection (``direct-tcpip`` channels): for ports published on one guest address only
(``-p 127.0.0.1:5432:5432``), which the hypervisor's NAT cannot reach."""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
from collections.abc import Callable

import paramiko

log = logging.getLogger(__name__)

CHUNK = 256 * 1024


def bind_listener(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (raises ``OSError`` as the OS does)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if hasattr(socket, "SO_REUSEADDR") and not hasattr(socket, "SO_EXCLUSIVEADDRUSE"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(64)
    except OSError:
        sock.close()
        raise
    return sock


def pump(a: socket.socket, b: paramiko.Channel) -> None:
    """Copy both ways between a host socket and a channel until either side closes."""
    try:
        while True:
            readable, _, _ = select.select([a, b], [], [], 30.0)
            if b.closed:
                break
            if a in readable:
                data = a.recv(CHUNK)
                if not data:
                    b.shutdown_write()
                    # Drain what the guest still sends after our side closed.
                    while True:
                        rest = b.recv(CHUNK)
                        if not rest:
                            break
                        a.sendall(rest)
                    break
                b.sendall(data)
            if b in readable:
                data = b.recv(CHUNK)
                if not data:
                    with contextlib.suppress(OSError):
                        a.shutdown(socket.SHUT_WR)
                    while True:
                        rest = a.recv(CHUNK)
                        if not rest:
                            break
                        b.sendall(rest)
                    break
                a.sendall(data)
    except (OSError, EOFError, paramiko.SSHException) as exc:
        log.debug("tunnel connection ended: %s", exc)
    finally:
        with contextlib.suppress(Exception):
            b.close()
        with contextlib.suppress(OSError):
            a.close()


class SSHTunnel:
    """Listens on ``host_ip:host_port``; each connection becomes a channel to
    ``guest_ip:guest_port`` in the guest. ``transport`` is asked for on every connection, so
    a reconnected SSH session is used as soon as it exists."""

    def __init__(
        self,
        host_ip: str,
        host_port: int,
        guest_ip: str,
        guest_port: int,
        transport: Callable[[], paramiko.Transport],
    ):
        self.host_ip = host_ip
        self.host_port = host_port
        self.guest_ip = guest_ip
        self.guest_port = guest_port
        self._transport = transport
        self._listener: socket.socket | None = None
        self._closed = threading.Event()
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()

    def open(self) -> None:
        """Bind now (raises ``OSError`` when the port cannot be had) and serve in a thread."""
        self._listener = bind_listener(self.host_ip, self.host_port)
        threading.Thread(target=self._accept, name=f"tunnel {self.host_port}", daemon=True).start()

    def _accept(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._closed.is_set():
            try:
                conn, peer = listener.accept()
            except OSError:
                break
            threading.Thread(
                target=self._serve, args=(conn, peer), name="tunnel conn", daemon=True
            ).start()

    def _serve(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._conns.add(conn)
        try:
            chan = self._transport().open_channel(
                "direct-tcpip", (self.guest_ip, self.guest_port), peer[:2], timeout=10.0
            )
        except Exception as exc:  # the guest refused, or SSH is down: drop this connection
            log.info("forward %s -> %s:%s: %s", self.host_port, self.guest_ip, self.guest_port, exc)
            conn.close()
            with self._lock:
                self._conns.discard(conn)
            return
        try:
            pump(conn, chan)
        finally:
            with self._lock:
                self._conns.discard(conn)

    def close(self) -> None:
        self._closed.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
