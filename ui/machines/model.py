"""The machines table: one row per machine from ``MachineService.statuses()`` (key: name)."""

from __future__ import annotations

from PySide6.QtCore import QObject
from PySide6.QtGui import QColor

from toolbox.machine.model import MachineState
from toolbox.machine.service import MachineStatus
from ui.models.table import Column, RecordTableModel

NAME, STATE, DRIVER, CPUS, MEMORY, DISK, ENGINE = range(7)

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
        ]
        super().__init__(columns, key=lambda s: s.name, parent=parent)
