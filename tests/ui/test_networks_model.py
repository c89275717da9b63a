"""The networks table and create form at model level: "used by" from container list records,
built-in networks marked, and subnet checks (CIDR, host bits, overlaps)."""

from __future__ import annotations

import datetime as dt

import pytest
from PySide6.QtCore import Qt

from toolbox.engine.client import EngineClient
from toolbox.engine.records import Container, ContainerState, Network
from toolbox.errors import ValidationError
from ui.networks.create_dialog import check_subnet
from ui.networks.model import DRIVER, NAME, SUBNETS, USED_BY, NetworksModel, network_entries

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)


def network(n: int, name: str, *subnets: str, internal: bool = False) -> Network:
    return Network(str(n) * 64, name, "bridge", "local", internal, NOW, subnets)


def container(name: str, *networks: str) -> Container:
    return Container(
        id=name * 8,
        name=name,
        image="busybox",
        image_id="sha256:" + "1" * 64,
        command="sh",
        created=NOW,
        state=ContainerState.RUNNING,
        status="Up 1 minute",
        networks=networks,
    )


NETWORKS = [
    network(1, "bridge", "172.17.0.0/16"),
    network(2, "app-net", "172.30.0.0/16", internal=True),
    network(3, "host"),
]


def test_used_by_and_columns(qtbot) -> None:
    users = EngineClient.network_users(
        [container("web", "bridge", "app-net"), container("db", "app-net")]
    )
    model = NetworksModel()
    model.set_records(network_entries(NETWORKS, users))
    row = model.row_of("2" * 64)
    assert model.index(row, NAME).data() == "app-net"
    assert model.index(row, USED_BY).data() == "db, web"
    assert model.index(row, SUBNETS).data() == "172.30.0.0/16"
    assert model.index(row, DRIVER).data() == "bridge, internal"
    host = model.row_of("3" * 64)
    assert model.index(host, USED_BY).data() == "—"
    assert "cannot be removed" in model.index(host, NAME).data(Qt.ItemDataRole.ToolTipRole)


def test_subnet_check() -> None:
    assert check_subnet("", NETWORKS) is None
    assert check_subnet("10.20.0.0/16", NETWORKS) == "10.20.0.0/16"
    assert check_subnet("fd00:1::/64", NETWORKS) == "fd00:1::/64"
    with pytest.raises(ValidationError, match="needs a prefix length"):
        check_subnet("10.20.0.0", NETWORKS)
    with pytest.raises(ValidationError, match=r"host bits set: use 10\.20\.0\.0/16"):
        check_subnet("10.20.1.5/16", NETWORKS)
    with pytest.raises(ValidationError, match="not a subnet"):
        check_subnet("10.300.0.0/16", NETWORKS)
    with pytest.raises(ValidationError, match=r"overlaps 172\.30\.0\.0/16 of network app-net"):
        check_subnet("172.30.5.0/24", NETWORKS)
