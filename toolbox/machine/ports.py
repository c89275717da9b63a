"""Host ports for a machine's forwards: free ones on 127.0.0.1, chosen once and kept.

Ports are picked from ``PORT_RANGE``, below the ephemeral ranges the OSes hand to outgoing
connections (Linux 32768-60999, macOS and Windows 49152-65535): a port from the ephemeral
range can be taken by any program's outgoing connection while the machine is stopped, and
the machine would then need a new port (and every shell its new ``DOCKER_HOST``).
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

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


@dataclass(frozen=True)
class PortHolder:
    """The process that holds a host port, for a conflict message ("held by nginx, pid 812")."""

    pid: int
    command: str

    def __str__(self) -> str:
        return f"{self.command} (pid {self.pid})"


# /proc/net/* socket states: 0A is TCP LISTEN; UDP sockets bound to a port show 07 (CLOSE).
_PROC_STATES = {"tcp": "0A", "udp": "07"}


def _proc_inodes(port: int, protocol: str, proc: Path) -> set[str]:
    inodes: set[str] = set()
    for table in (protocol, protocol + "6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10:
                continue
            local, state, inode = fields[1], fields[3], fields[9]
            if state == _PROC_STATES[protocol] and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    return inodes


def _holder_from_proc(port: int, protocol: str, proc: Path) -> PortHolder | None:
    inodes = {f"socket:[{i}]" for i in _proc_inodes(port, protocol, proc) if i != "0"}
    if not inodes:
        return None
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue  # another user's process, or gone
        for fd in fds:
            try:
                if os.readlink(fd) in inodes:
                    command = (entry / "comm").read_text().strip()
                    return PortHolder(int(entry.name), command)
            except OSError:
                continue
    return None


def _holder_from_lsof(port: int, protocol: str) -> PortHolder | None:
    lsof = shutil.which("lsof")
    if lsof is None:
        return None
    argv = [lsof, "-nP", f"-i{protocol.upper()}:{port}", "-Fpc"]
    if protocol == "tcp":
        argv.append("-sTCP:LISTEN")
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=5, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    pid, command = None, None
    for line in out.splitlines():
        if line.startswith("p") and line[1:].isdigit():
            pid = int(line[1:])
        elif line.startswith("c") and pid is not None:
            command = line[1:]
            return PortHolder(pid, command)
    return None


def parse_netstat_pid(text: str, port: int, protocol: str) -> int | None:
    """The pid holding ``port`` in ``netstat -ano`` output (Windows): a LISTENING TCP row, or
    any UDP row (UDP has no state column), on any local address."""
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0].lower() != protocol:
            continue
        if protocol == "tcp" and (len(fields) < 5 or fields[3].upper() != "LISTENING"):
            continue
        local = fields[1]
        if not local.rsplit(":", 1)[-1].isdigit() or int(local.rsplit(":", 1)[1]) != port:
            continue
        pid = fields[-1]
        if pid.isdigit() and int(pid) > 0:
            return int(pid)
    return None


def parse_tasklist_name(text: str) -> str | None:
    """The image name in ``tasklist /FO CSV /NH`` output: ``"nginx.exe","812",...``."""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith('"'):
            return line.split('","', 1)[0].strip('"')
    return None


def _holder_from_netstat(port: int, protocol: str) -> PortHolder | None:  # pragma: no cover
    try:
        out = subprocess.run(
            ["netstat", "-ano", "-p", protocol.upper()],
            capture_output=True, text=True, timeout=10, check=False,
        ).stdout  # fmt: skip
        pid = parse_netstat_pid(out, port, protocol)
        if pid is None:
            return None
        listing = subprocess.run(
            ["tasklist", "/FI", f"PID eq {pid}", "/FO", "CSV", "/NH"],
            capture_output=True, text=True, timeout=10, check=False,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return PortHolder(pid, parse_tasklist_name(listing) or "unknown")


def port_holder(port: int, protocol: str = "tcp", proc: Path = Path("/proc")) -> PortHolder | None:
    """Which process holds ``port`` (listening TCP, or bound UDP) where the OS tells: /proc on
    Linux, ``lsof`` on macOS, ``netstat -ano`` and ``tasklist`` on Windows; None when unknown
    (another user's process, no lsof)."""
    if protocol not in _PROC_STATES:
        raise ValueError(f"protocol must be tcp or udp, not {protocol!r}")
    if (proc / "net").is_dir():
        return _holder_from_proc(port, protocol, proc)
    if os.name == "nt":  # pragma: no cover - Windows
        return _holder_from_netstat(port, protocol)
    return _holder_from_lsof(port, protocol)
