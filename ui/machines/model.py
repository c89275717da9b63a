"""The machines table: one row per machine from ``MachineService.statuses()`` (key: name).

Besides the status records, the model holds what the page measures alongside them on its
worker (``set_extras``): each machine's host disk usage and VM process start time
(``MachineService.usage``) and its engine's version, asked once per start.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from PySide6.QtCore import QObject
from PySide6.QtGui import QColor

from toolbox.engine.parse import human_duration
from toolbox.machine.model import MachineState
from toolbox.machine.service import MachineStatus
from toolbox.machine.usage import MachineUsage
from ui.models.table import RIGHT, Column, RecordTableModel

NAME, STATE, DRIVER, CPUS, MEMORY, DISK, DOCKER, UPTIME, ENGINE, PORTS, SHARES = range(11)

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


def bytes_text(size: int) -> str:
    """``12 KiB``, ``812 MiB``, ``3.4 GiB`` (binary units, like the disk size it is given)."""
    if size < 1024**2:
        return f"{size / 1024:.0f} KiB"
    if size < 1024**3:
        return f"{size / 1024**2:.0f} MiB"
    return f"{size / 1024**3:.1f} GiB"


def disk_text(status: MachineStatus, usage: MachineUsage | None) -> str:
    """``3.4 GiB of 20 GiB``: what the disk files take on the host, of the disk's size."""
    size = f"{status.spec.disk_gib} GiB" if status.spec else ""
    if usage is None or usage.disk_used is None:
        return size
    used = bytes_text(usage.disk_used)
    return f"{used} of {size}" if size else used


def uptime_text(status: MachineStatus, usage: MachineUsage | None, now: dt.datetime) -> str:
    if status.state is not MachineState.RUNNING or usage is None:
        return ""
    seconds = usage.uptime(now)
    return human_duration(seconds) if seconds is not None else ""


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
    """Machines with state, hypervisor, CPUs, memory, disk (used of size), engine version,
    uptime, engine address, ports and shares."""

    def __init__(self, parent: QObject | None = None):
        self.usage: dict[str, MachineUsage] = {}
        self.versions: dict[str, str] = {}
        self.now = dt.datetime.now(dt.UTC)
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
                lambda s: disk_text(s, self.usage.get(s.name)),
                sort_key=self._disk_used,
                tooltip=self._disk_tooltip,
                width=130,
            ),
            Column[MachineStatus](
                "Docker",
                lambda s: self.versions.get(s.name, "") if s.state is MachineState.RUNNING else "",
                tooltip=lambda s: "Docker engine version" if s.name in self.versions else None,
                width=80,
            ),
            Column[MachineStatus](
                "Uptime",
                lambda s: uptime_text(s, self.usage.get(s.name), self.now),
                sort_key=self._uptime,
                tooltip=self._uptime_tooltip,
                width=110,
                align=RIGHT,
                searchable=False,
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

    def set_extras(
        self,
        usage: Mapping[str, MachineUsage],
        versions: Mapping[str, str],
        now: dt.datetime | None = None,
    ) -> None:
        """New measurements (from the page's worker): repaint the rows whose disk usage,
        start time or engine version changed, and every running row's uptime."""
        self.now = now or dt.datetime.now(dt.UTC)
        changed = [
            name
            for name in set(usage) | set(self.usage) | set(versions) | set(self.versions)
            if usage.get(name) != self.usage.get(name)
            or versions.get(name) != self.versions.get(name)
        ]
        self.usage = dict(usage)
        self.versions = dict(versions)
        last_col = len(self.columns) - 1
        for name in changed:
            row = self.row_of(name)
            if row is not None:
                self.dataChanged.emit(self.index(row, 0), self.index(row, last_col))
        self.refresh_column(UPTIME)

    def _disk_used(self, status: MachineStatus) -> int:
        usage = self.usage.get(status.name)
        return (usage.disk_used or 0) if usage is not None else 0

    def _disk_tooltip(self, status: MachineStatus) -> str | None:
        usage = self.usage.get(status.name)
        if usage is None or usage.disk_used is None:
            return None
        size = f" of the {status.spec.disk_gib} GiB disk" if status.spec else ""
        return f"The disk files take {usage.disk_used:,} bytes on this computer{size}"

    def _uptime(self, status: MachineStatus) -> float:
        usage = self.usage.get(status.name)
        seconds = usage.uptime(self.now) if usage is not None else None
        return seconds if seconds is not None and status.state is MachineState.RUNNING else -1.0

    def _uptime_tooltip(self, status: MachineStatus) -> str | None:
        usage = self.usage.get(status.name)
        if usage is None or usage.started_at is None or status.state is not MachineState.RUNNING:
            return None
        return "Running since " + usage.started_at.astimezone().strftime("%Y-%m-%d %H:%M:%S")
