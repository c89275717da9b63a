"""The machines table's ports and shares columns, from the host agent's report."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from PySide6.QtCore import Qt

from toolbox.agent.state import AgentReport, AgentStatus, ForwardReport, Health, ShareReport
from toolbox.machine.model import CreatePhase, MachineSpec, MachineState, Share
from toolbox.machine.service import MachineStatus
from ui.machines.model import PORTS, SHARES, MachinesModel


def _status(agent: AgentStatus | None, shares: tuple[Share, ...]) -> MachineStatus:
    spec = MachineSpec(
        name="m", driver="qemu", cpus=2, memory_mib=2048, disk_gib=20, image="img",
        ssh_port=1, engine_port=2, created=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        create_phase=CreatePhase.DONE, shares=shares,
    )  # fmt: skip
    return MachineStatus("m", MachineState.RUNNING, "qemu", spec, "RUNNING", False, agent=agent)


def test_ports_and_shares_columns(qtbot: object) -> None:
    shares = (Share("/home/u", "/home/u"), Share("/data", "/ro", True))
    report = AgentReport(
        pid=1, started="", heartbeat="", engine="connected",
        forwards=(
            ForwardReport("tcp", "127.0.0.1", 8080, 8080, "nat", "active", ("web",)),
            ForwardReport("tcp", "127.0.0.1", 5432, 5432, "nat", "conflict", ("db",),
                          "host port 5432/tcp is already in use by postgres (pid 7)"),
        ),
        shares=(ShareReport("/home/u", "/home/u", False, "mounted"),
                ShareReport("/data", "/ro", True, "error", "no such folder")),
    )  # fmt: skip
    model = MachinesModel()
    model.set_records([_status(AgentStatus(Health.RUNNING, report, Path("x")), shares)])
    ports = model.index(0, PORTS)
    assert model.data(ports) == "1 (1 not active)"
    tip = model.data(ports, Qt.ItemDataRole.ToolTipRole)
    assert "127.0.0.1:8080 -> 8080/tcp: active (web)" in tip
    assert "postgres (pid 7)" in tip
    share_cell = model.index(0, SHARES)
    assert model.data(share_cell) == "/home/u, /ro ro (error)"
    assert "no such folder" in model.data(share_cell, Qt.ItemDataRole.ToolTipRole)
    model.set_records([_status(AgentStatus(Health.NOT_RUNNING), ())])
    assert model.data(model.index(0, PORTS)) == ""
    assert model.data(model.index(0, PORTS), Qt.ItemDataRole.ToolTipRole) == "not running"
    assert model.data(model.index(0, SHARES)) == "none"
