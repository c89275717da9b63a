"""The machines table: one row per machine from ``MachineService.statuses()`` (key: name)."""

from __future__ import annotations

from PySide6.QtCore import QObject
from PySide6.QtGui import QColor

from toolbox.machine.model import MachineState
from toolbox.machine.service import MachineStatus
from ui.models.table import Column, RecordTableModel

NAME, STATE, DRIVER, CPUS, MEMORY, DISK, ENGINE, PORTS, SHARES = range(9)

STATE_COLOURS = {
    MachineState.RUNNING: QColor("#2e7d32"),
    MachineState.STARTING: QColor("#f57c00"),
    MachineState.CREATING: QColor("#f57c00"),
    MachineState.STOPPING: QColor("#f57c00"),
    MachineState.ERROR: QColor("#c62828"),
    MachineState.STOPPED: QColor("#757575"),
}


def state_text(status: MachineStatus) -> str:
    text = status.state.value
    if status.busy and status.state is not MachineState.CREATING:
        text += " (busy)"
    return text


def memory_text(status: MachineStatus) -> str:
    if status.spec is None:
        return ""
    mib = status.spec.memory_mib
    return f"{mib / 1024:g} GiB" if mib % 1024 == 0 else f"{mib} MiB"


def ports_text(status: MachineStatus) -> str:
    """Published ports forwarded by the host agent: ``3`` or ``2 (1 conflict)``."""
    report = status.agent.report if status.agent else None
    if report is None:
        return ""
    active = [f for f in report.forwards if f.state == "active"]
    other = len(report.forwards) - len(active)
    return f"{len(active)}" + (f" ({other} not active)" if other else "")


def ports_tooltip(status: MachineStatus) -> str | None:
    report = status.agent.report if status.agent else None
    if report is None:
        return status.agent.health.value if status.agent else None
    lines = [
        f"{f.address() if f.host_ip else '-'} -> {f.guest_port}/{f.protocol}: {f.state}"
        + (f" ({', '.join(f.containers)})" if f.containers else "")
        + (f" — {f.reason}" if f.reason else "")
        for f in report.forwards
    ]
    return "\n".join(lines) or "No published ports"


def shares_text(status: MachineStatus) -> str:
    if status.spec is None:
        return ""
    report = status.agent.report if status.agent else None
    mounted = {s.guest_path: s.state for s in (report.shares if report else ())}
    parts = []
    for share in status.spec.shares:
        state = mounted.get(share.guest_path)
        mark = "" if state in (None, "mounted") else f" ({state})"
        parts.append(share.guest_path + (" ro" if share.readonly else "") + mark)
    return ", ".join(parts) or "none"


def shares_tooltip(status: MachineStatus) -> str | None:
    if status.spec is None:
        return None
    report = status.agent.report if status.agent else None
    live = {s.guest_path: s for s in (report.shares if report else ())}
    lines = []
    for share in status.spec.shares:
        r = live.get(share.guest_path)
        state = r.state + (f": {r.reason}" if r and r.reason else "") if r else "not mounted"
        lines.append(f"{share}: {state}")
    return "\n".join(lines) or "No host folder is shared"


class MachinesModel(RecordTableModel[MachineStatus]):
    """Machines with state, hypervisor, CPUs, memory, disk size and engine address."""

    def __init__(self, parent: QObject | None = None):
        columns = [
            Column[MachineStatus]("Name", lambda s: s.name, width=140),
            Column[MachineStatus](
                "State",
                state_text,
                tooltip=lambda s: " ".join(x for x in (s.detail, s.hint) if x) or None,
                foreground=lambda s: STATE_COLOURS.get(s.state),
                width=110,
            ),
            Column[MachineStatus]("Hypervisor", lambda s: s.driver or "", width=100),
            Column[MachineStatus](
                "CPUs",
                lambda s: str(s.spec.cpus) if s.spec else "",
                sort_key=lambda s: s.spec.cpus if s.spec else 0,
                width=60,
            ),
            Column[MachineStatus](
                "Memory",
                memory_text,
                sort_key=lambda s: s.spec.memory_mib if s.spec else 0,
                width=90,
            ),
            Column[MachineStatus](
                "Disk",
                lambda s: f"{s.spec.disk_gib} GiB" if s.spec else "",
                sort_key=lambda s: s.spec.disk_gib if s.spec else 0,
                width=80,
            ),
            Column[MachineStatus](
                "Engine",
                lambda s: s.url or (s.spec.engine_url if s.spec else ""),
                width=200,
            ),
            Column[MachineStatus]("Ports", ports_text, tooltip=ports_tooltip, width=90),
            Column[MachineStatus]("Shares", shares_text, tooltip=shares_tooltip, width=220),
        ]
        super().__init__(columns, key=lambda s: s.name, parent=parent)
