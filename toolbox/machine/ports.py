"""Host ports for a machine's forwards: free ones on 127.0.0.1, chosen once and kept."""

from __future__ import annotations

import os
import socket
from collections.abc import Collection

from toolbox.errors import MachineError
from toolbox.machine.model import LOOPBACK


def is_free(port: int, host: str = LOOPBACK) -> bool:
    """True when ``host:port`` can be bound for listening right now (as the hypervisor's
    forward will: SO_REUSEADDR on POSIX so a port in TIME_WAIT still counts as free)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        if os.name == "posix":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        elif hasattr(socket, "SO_EXCLUSIVEADDRUSE"):  # pragma: no cover - Windows
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def choose_ports(count: int, exclude: Collection[int] = (), host: str = LOOPBACK) -> list[int]:
    """``count`` distinct free ports the OS hands out on ``host``, none in ``exclude``
    (the ports other machines have recorded, running or not)."""
    chosen: list[int] = []
    for _ in range(200):
        if len(chosen) == count:
            return chosen
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in exclude and port not in chosen:
            chosen.append(port)
    raise MachineError(
        f"Could not find {count} free TCP ports on {host}",
        hint="Close programs that hold many local ports, then retry.",
    )
