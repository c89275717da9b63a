"""The host agent's plan: which host forwards a machine's running containers need. Rows are
shaped as the engine lists them (``client.api.containers()`` on docker.io 20.10, which lists an
all-interfaces port once for 0.0.0.0 and once for ::)."""

from __future__ import annotations

from typing import Any

from toolbox.agent.plan import (
    BindMode,
    Via,
    nat_changes,
    plan_forwards,
    published_ports,
)
from toolbox.drivers.base import Forward


def row(name: str, state: str, *ports: dict[str, Any]) -> dict[str, Any]:
    return {"Id": name * 8, "Names": [f"/{name}"], "State": state, "Ports": list(ports)}


def port(public: int | None, private: int, ip: str = "0.0.0.0", proto: str = "tcp") -> dict:
    out: dict[str, Any] = {"PrivatePort": private, "Type": proto}
    if public is not None:
        out.update(IP=ip, PublicPort=public)
    return out


ROWS = [
    row("web", "running", port(8080, 80), port(8080, 80, "::")),  # -p 8080:80
    row("dns", "running", port(5353, 53, proto="udp"), port(5353, 53, "::", "udp")),
    row("db", "running", port(5432, 5432, "127.0.0.1")),  # -p 127.0.0.1:5432:5432
    row("picked", "running", port(49153, 80)),  # -P: the engine picked 49153
    row("exposed", "running", port(None, 9000)),  # EXPOSE only: nothing published
    row("stopped", "exited", port(8081, 80)),
    row("udp-local", "running", port(6000, 6000, "127.0.0.1", "udp")),
]


def test_published_ports_of_running_containers_once_each() -> None:
    got = [(p.container_name, p.protocol, p.guest_ip, p.guest_port) for p in published_ports(ROWS)]
    assert got == [
        ("dns", "udp", "0.0.0.0", 5353),
        ("db", "tcp", "127.0.0.1", 5432),
        ("udp-local", "udp", "127.0.0.1", 6000),
        ("web", "tcp", "0.0.0.0", 8080),
        ("picked", "tcp", "0.0.0.0", 49153),
    ]


def test_loopback_by_default_nat_for_all_interfaces_ssh_for_one_address() -> None:
    plan = plan_forwards(published_ports(ROWS))
    got = {(w.protocol, w.host_port): (w.host_ip, w.via, w.guest_ip) for w in plan.wanted}
    assert got == {
        ("tcp", 5432): ("127.0.0.1", Via.SSH, "127.0.0.1"),
        ("udp", 5353): ("127.0.0.1", Via.NAT, "0.0.0.0"),
        ("tcp", 8080): ("127.0.0.1", Via.NAT, "0.0.0.0"),
        ("tcp", 49153): ("127.0.0.1", Via.NAT, "0.0.0.0"),
    }
    # Nothing binds off loopback by default; UDP on one guest address is explained.
    assert all(w.host_ip == "127.0.0.1" for w in plan.wanted)
    [skipped] = plan.skipped
    assert skipped.published.container_name == "udp-local" and "UDP" in skipped.reason


def test_published_mode_binds_what_the_container_asked_for() -> None:
    plan = plan_forwards(published_ports(ROWS), BindMode.PUBLISHED)
    hosts = {(w.protocol, w.host_port): w.host_ip for w in plan.wanted}
    assert hosts[("tcp", 8080)] == "0.0.0.0"
    assert hosts[("tcp", 5432)] == "127.0.0.1"  # it asked for loopback


def test_the_machines_own_ports_are_never_taken_over() -> None:
    rows = [row("x", "running", port(2222, 22))]
    plan = plan_forwards(published_ports(rows), reserved={("tcp", 2222)})
    assert plan.wanted == ()
    assert "own forward" in plan.skipped[0].reason


def test_one_forward_per_port_naming_every_container() -> None:
    rows = [
        row("a", "running", port(7000, 7000, "127.0.0.1")),
        row("b", "running", port(7000, 7000, "10.0.2.15")),
    ]
    [w] = plan_forwards(published_ports(rows)).wanted
    assert w.containers == ("a", "b")
    rows.append(row("c", "running", port(7000, 7000)))
    [w] = plan_forwards(published_ports(rows)).wanted
    assert w.via is Via.NAT  # all interfaces wins: the hypervisor reaches it


def test_nat_changes_open_the_missing_and_close_the_stale_only_among_live_ones() -> None:
    plan = plan_forwards(published_ports(ROWS))
    live = [
        Forward("ssh", 22, 2222),  # the machine's own: never touched
        Forward("live-tcp-8080", 8080, 8080),  # already there
        Forward("live-tcp-9999", 9999, 9999),  # its container stopped
        Forward("live-udp-5353", 5353, 5353, "udp", "0.0.0.0"),  # bound wider than wanted
    ]
    to_open, to_close = nat_changes(plan.wanted, live)
    assert sorted(f.name for f in to_open) == ["live-tcp-49153", "live-udp-5353"]
    assert sorted(f.name for f in to_close) == ["live-tcp-9999", "live-udp-5353"]
    # SSH-carried forwards are not the hypervisor's business.
    assert all(f.host_port != 5432 for f in to_open)
