"""What the host should forward for a machine, from the engine's container list: pure logic,
no I/O, so every rule is tested without a VM.

A port published on every guest interface (``-p 8080:80``, ``-P``, compose ``ports:``) is
reachable from QEMU's user network and VirtualBox's NAT, so the hypervisor forwards it (NAT).
A port published on one guest address (``-p 127.0.0.1:5432:5432``) is not reachable from the
NAT; TCP goes over the machine's SSH connection instead (``direct-tcpip``), UDP cannot.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from toolbox.drivers.base import Forward
from toolbox.machine.model import LOOPBACK

ANY_ADDRESSES = ("", "0.0.0.0", "::")
LIVE_PREFIX = "live-"


class BindMode(Enum):
    """Where host sides bind: loopback only (the default: a published port is not offered to
    the LAN), or what the container asked for (0.0.0.0 when it published on all interfaces)."""

    LOOPBACK = "loopback"
    PUBLISHED = "published"


class Via(Enum):
    NAT = "nat"  # the hypervisor's own forward
    SSH = "ssh"  # a listener in the agent, each connection a direct-tcpip channel


@dataclass(frozen=True)
class Published:
    """One published port of one running container, as the engine lists it."""

    container_id: str
    container_name: str
    protocol: str
    guest_ip: str
    guest_port: int
    container_port: int


@dataclass(frozen=True)
class WantedForward:
    protocol: str
    host_ip: str
    host_port: int
    guest_ip: str
    guest_port: int
    via: Via
    containers: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{LIVE_PREFIX}{self.protocol}-{self.host_port}"

    def forward(self) -> Forward:
        """The hypervisor forward for a NAT one."""
        return Forward(self.name, self.guest_port, self.host_port, self.protocol, self.host_ip)


@dataclass(frozen=True)
class Skipped:
    """A published port the host cannot get, and why (shown by ``toolbox port ls``)."""

    published: Published
    reason: str


@dataclass(frozen=True)
class Plan:
    wanted: tuple[WantedForward, ...]
    skipped: tuple[Skipped, ...]


def published_ports(rows: Iterable[Mapping[str, Any]]) -> list[Published]:
    """Published ports of running containers in ``client.api.containers()`` rows. The engine
    lists a port twice when it listens on IPv4 and IPv6 (``0.0.0.0`` and ``::``): once here."""
    out: dict[tuple[str, str, str, int], Published] = {}
    for row in rows:
        if str(row.get("State", "")) != "running":
            continue
        names = row.get("Names") or [""]
        name = str(names[0]).lstrip("/")
        for port in row.get("Ports") or ():
            public = port.get("PublicPort")
            if not public:
                continue
            ip = str(port.get("IP", ""))
            ip = "0.0.0.0" if ip in ANY_ADDRESSES else ip
            proto = str(port.get("Type", "tcp")).lower()
            key = (str(row.get("Id", "")), proto, ip, int(public))
            out.setdefault(
                key,
                Published(key[0], name, proto, ip, int(public), int(port.get("PrivatePort", 0))),
            )
    return sorted(out.values(), key=lambda p: (p.guest_port, p.protocol, p.guest_ip))


def _is_loopback(ip: str) -> bool:
    return ip.startswith("127.") or ip == "::1"


def plan_forwards(
    published: Iterable[Published],
    mode: BindMode = BindMode.LOOPBACK,
    reserved: Collection[tuple[str, int]] = (),
) -> Plan:
    """One host forward per (protocol, port): the same port number as in the guest.
    ``reserved`` holds the machine's own (protocol, host port) pairs (SSH, engine, forwards
    added with ``toolbox port add``): those are never taken over."""
    wanted: dict[tuple[str, int], WantedForward] = {}
    skipped: list[Skipped] = []
    for p in published:
        key = (p.protocol, p.guest_port)
        if key in reserved:
            skipped.append(Skipped(p, f"host port {p.guest_port} is the machine's own forward"))
            continue
        if p.guest_ip == "0.0.0.0":
            via, guest_ip = Via.NAT, "0.0.0.0"
            host_ip = LOOPBACK if mode is BindMode.LOOPBACK else "0.0.0.0"
        elif p.protocol == "udp":
            skipped.append(
                Skipped(
                    p,
                    f"UDP published on the guest address {p.guest_ip} only cannot be forwarded; "
                    "publish it on all interfaces (-p PORT:PORT/udp)",
                )
            )
            continue
        else:
            via, guest_ip = Via.SSH, p.guest_ip
            asked_loopback = _is_loopback(p.guest_ip)
            host_ip = LOOPBACK if mode is BindMode.LOOPBACK or asked_loopback else "0.0.0.0"
        existing = wanted.get(key)
        if existing is not None:
            if existing.via is Via.SSH and via is Via.NAT:
                # Published on all interfaces by one container: that wins.
                pass
            else:
                wanted[key] = _with_container(existing, p.container_name)
                continue
        containers = existing.containers if existing is not None else ()
        wanted[key] = WantedForward(
            p.protocol,
            host_ip,
            p.guest_port,
            guest_ip,
            p.guest_port,
            via,
            tuple(sorted({*containers, p.container_name})),
        )
    return Plan(tuple(wanted[k] for k in sorted(wanted)), tuple(skipped))


def _with_container(w: WantedForward, name: str) -> WantedForward:
    return WantedForward(
        w.protocol,
        w.host_ip,
        w.host_port,
        w.guest_ip,
        w.guest_port,
        w.via,
        tuple(sorted({*w.containers, name})),
    )


def nat_changes(
    wanted: Iterable[WantedForward], live: Iterable[Forward]
) -> tuple[list[Forward], list[Forward]]:
    """(to open, to close) against what the hypervisor has now: only ``live-`` forwards are
    the agent's; one that differs from the wanted one is closed and opened again."""
    want = {w.name: w.forward() for w in wanted if w.via is Via.NAT}
    have = {f.name: f for f in live if f.name.startswith(LIVE_PREFIX)}
    to_close = [f for name, f in have.items() if want.get(name) != f]
    to_open = [f for name, f in want.items() if have.get(name) != f]
    return to_open, to_close
