"""Host ports for a machine's forwards: free ones on 127.0.0.1, chosen once and kept.

Ports are picked from ``PORT_RANGE``, below the ephemeral ranges the OSes hand to outgoing
connections (Linux 32768-60999, macOS and Windows 49152-65535): a port from the ephemeral
range can be taken by any program's outgoing connection while the machine is stopped, and
the machine would then need a new port (and every shell its new ``DOCKER_HOST``).
"""

from __future__ import annotations

import os
import random
import socket
from collections.abc import Collection

from toolbox.errors import MachineError
from toolbox.machine.model import LOOPBACK

PORT_RANGE = (20000, 32000)
ATTEMPTS = 500


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


def choose_ports(
    count: int,
    exclude: Collection[int] = (),
    host: str = LOOPBACK,
    port_range: tuple[int, int] = PORT_RANGE,
    rng: random.Random | None = None,
) -> list[int]:
    """``count`` distinct ports free on ``host`` now, from ``port_range``, none in
    ``exclude`` (the ports other machines have recorded, running or not)."""
    rng = rng or random.SystemRandom()
    chosen: list[int] = []
    for _ in range(ATTEMPTS):
        if len(chosen) == count:
            return chosen
        port = rng.randrange(*port_range)
        if port in exclude or port in chosen or not is_free(port, host):
            continue
        chosen.append(port)
    if len(chosen) == count:
        return chosen
    raise MachineError(
        f"Could not find {count} free TCP ports on {host} between {port_range[0]} and "
        f"{port_range[1]}",
        hint="Close programs that hold many local ports, then retry.",
    )
