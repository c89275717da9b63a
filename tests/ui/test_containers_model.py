"""The Containers model's Ports column: docker ps's text, minus the IPv6 twin of a port that
is published on every address (the engine lists both; the column has room for one)."""

from __future__ import annotations

import datetime as dt

from toolbox.engine.records import Container, ContainerState, PortBinding
from ui.containers.model import PORTS, ContainersModel, ports_text

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def container(*ports: PortBinding) -> Container:
    return Container(
        "c" * 64, "api", "demo/api:2.1", "sha256:1", "sh", NOW, ContainerState.RUNNING, "Up",
        ports=ports,
    )  # fmt: skip


def test_ports_on_every_address_show_once() -> None:
    c = container(
        PortBinding(3000, "tcp", "0.0.0.0", 3000),
        PortBinding(3000, "tcp", "::", 3000),
        PortBinding(53, "udp", "0.0.0.0", 5353),
        PortBinding(53, "udp", "::", 5353),
    )
    assert ports_text(c) == ", ".join(str(p) for p in c.ports if p.host_ip == "0.0.0.0")
    assert "[::]" not in ports_text(c)
    assert "[::]" in c.ports_text  # the record keeps both, as the engine reports them


def test_ports_on_specific_or_different_addresses_all_show() -> None:
    c = container(
        PortBinding(5432, "tcp", "127.0.0.1", 5432),
        PortBinding(80, "tcp", "::", 8080),  # IPv6 only: no IPv4 twin to stand for it
        PortBinding(443, "tcp", "0.0.0.0", 8443),
        PortBinding(443, "tcp", "::", 9443),  # another host port: not a twin
        PortBinding(9000, "tcp", None, None),  # exposed, not published
    )
    assert ports_text(c) == c.ports_text


def test_the_column_uses_it(qtbot) -> None:
    model = ContainersModel()
    c = container(PortBinding(80, "tcp", "0.0.0.0", 8080), PortBinding(80, "tcp", "::", 8080))
    model.set_records([c])
    assert model.data(model.index(0, PORTS)) == "0.0.0.0:8080->80/tcp"
