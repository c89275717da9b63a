"""The containers table: columns over ``Container`` records (key: container id).

``ContainersModel.tick(now)`` re-renders only the time columns (status, created) of the rows
it is given, from the records' own timestamps (``Container.status_text``), so "Up 5 minutes"
stays fresh without asking the engine anything.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable

from PySide6.QtCore import QObject
from PySide6.QtGui import QColor

from toolbox.engine.parse import human_duration
from toolbox.engine.records import Container, ContainerState
from toolbox.engine.stats import StatsBook, StatsPoint
from ui.containers.stats import format_percent, memory_text, memory_tooltip
from ui.models.table import RIGHT, Column, RecordTableModel, _runs

NAME, IMAGE, STATE, STATUS, PORTS, CREATED, CPU, MEMORY = range(8)
STATS_COLUMNS = (CPU, MEMORY)
# States whose last reading the CPU and memory columns show (a paused container keeps its
# memory; its CPU reads 0 %); the others show blank.
STATS_STATES = (ContainerState.RUNNING, ContainerState.PAUSED)

STATE_COLORS = {
    ContainerState.RUNNING: QColor("#2e7d32"),
    ContainerState.PAUSED: QColor("#b26a00"),
    ContainerState.RESTARTING: QColor("#e65100"),
    ContainerState.CREATED: QColor("#1565c0"),
    ContainerState.REMOVING: QColor("#6d4c41"),
    ContainerState.EXITED: QColor("#757575"),
    ContainerState.DEAD: QColor("#c62828"),
}
LINK_COLOR = QColor("#1a73e8")

# Running first, then paused/restarting, then the rest: sorting by state groups live ones.
_STATE_ORDER = {
    ContainerState.RUNNING: 0,
    ContainerState.RESTARTING: 1,
    ContainerState.PAUSED: 2,
    ContainerState.CREATED: 3,
    ContainerState.REMOVING: 4,
    ContainerState.EXITED: 5,
    ContainerState.DEAD: 6,
}


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def created_text(container: Container, now: dt.datetime) -> str:
    seconds = max(0.0, (now - container.created).total_seconds())
    return f"{human_duration(seconds)} ago"


def ports_text(container: Container) -> str:
    """The Ports column: ``docker ps``'s text without the IPv6 twin of a port published on all
    addresses (``0.0.0.0:80->80/tcp, [::]:80->80/tcp`` reads ``0.0.0.0:80->80/tcp``)."""
    v4 = {
        (p.container_port, p.protocol, p.host_port)
        for p in container.ports
        if p.host_ip == "0.0.0.0"
    }
    shown = [
        p
        for p in container.ports
        if not (p.host_ip == "::" and (p.container_port, p.protocol, p.host_port) in v4)
    ]
    return ", ".join(str(p) for p in shown)


def ports_tooltip(container: Container) -> str | None:
    urls = container.urls
    if not urls:
        return container.ports_text or None
    return "Click to open " + ", ".join(urls)


def status_sort_key(container: Container) -> tuple[int, float]:
    """Group by state; within a state, the most recent start/stop first."""
    when = container.started_at or container.finished_at or container.created
    return (_STATE_ORDER[container.state], -when.timestamp())


class ContainersModel(RecordTableModel[Container]):
    """Name, image, state (coloured), status, published ports (links), created, and the
    CPU % and memory of running containers from ``stats`` (blank for the others)."""

    TIME_COLUMNS = (STATUS, CREATED)
    stale_column = STATUS  # "Last seen 12:03:04" instead of "Up 5 minutes" while stale

    def __init__(self, parent: QObject | None = None, stats: StatsBook | None = None):
        self.now = now_utc()
        self.stats = stats or StatsBook()
        columns = [
            Column[Container](
                "Name", lambda c: c.name, tooltip=lambda c: f"{c.name}\n{c.short_id}", width=200
            ),
            Column[Container]("Image", lambda c: c.image, width=180),
            Column[Container](
                "State",
                lambda c: c.state.label,
                sort_key=lambda c: _STATE_ORDER[c.state],
                foreground=lambda c: STATE_COLORS[c.state],
                width=90,
            ),
            Column[Container](
                "Status",
                lambda c: c.status_text(self.now),
                sort_key=status_sort_key,
                tooltip=lambda c: c.status,
                width=190,
                searchable=False,
            ),
            Column[Container](
                "Ports",
                ports_text,
                tooltip=ports_tooltip,
                foreground=lambda c: LINK_COLOR if c.urls else None,
                width=220,
            ),
            Column[Container](
                "Created",
                lambda c: created_text(c, self.now),
                sort_key=lambda c: c.created,
                tooltip=lambda c: c.created.astimezone().strftime("%Y-%m-%d %H:%M:%S"),
                width=130,
                searchable=False,
            ),
            Column[Container](
                "CPU %",
                lambda c: self._stat_text(c, lambda p: format_percent(p.cpu_percent)),
                sort_key=lambda c: self._stat_value(c, lambda p: p.cpu_percent),
                width=70,
                align=RIGHT,
                searchable=False,
            ),
            Column[Container](
                "Memory",
                lambda c: self._stat_text(c, memory_text),
                sort_key=lambda c: self._stat_value(c, lambda p: p.memory_used),
                tooltip=lambda c: self._stat_text(c, memory_tooltip) or None,
                width=90,
                align=RIGHT,
                searchable=False,
            ),
        ]
        super().__init__(columns, key=lambda c: c.id, parent=parent)

    def _point(self, container: Container) -> StatsPoint | None:
        if container.state not in STATS_STATES:
            return None
        return self.stats.latest(container.id)

    def _stat_text(self, container: Container, text: Callable[[StatsPoint], str | None]) -> str:
        point = self._point(container)
        return (text(point) or "") if point is not None else ""

    def _stat_value(
        self, container: Container, value: Callable[[StatsPoint], float | int | None]
    ) -> float:
        point = self._point(container)
        result = value(point) if point is not None else None
        return -1.0 if result is None else float(result)

    def stats_changed(self, container_ids: Iterable[str]) -> None:
        """New readings for these containers: re-render their CPU and memory cells."""
        rows = [row for cid in container_ids if (row := self.row_of(cid)) is not None]
        for first, last in _runs(rows):
            self.dataChanged.emit(self.index(first, CPU), self.index(last, MEMORY))

    def tick(self, rows: Iterable[int], now: dt.datetime | None = None) -> None:
        """Re-render the time columns of ``rows`` (source rows) as of ``now``."""
        self.now = now or now_utc()
        runs: list[tuple[int, int]] = []
        for row in sorted(set(rows)):
            if runs and row == runs[-1][1] + 1:
                runs[-1] = (runs[-1][0], row)
            else:
                runs.append((row, row))
        for first, last in runs:
            for column in self.TIME_COLUMNS:
                self.refresh_column(column, first, last)

    def youngest_age(self, rows: Iterable[int]) -> float | None:
        """Seconds since the most recent start/stop/create among ``rows`` (sets the tick rate)."""
        ages = []
        for row in rows:
            c = self.record(row)
            when = c.started_at or c.finished_at or c.created
            ages.append((self.now - when).total_seconds())
        return min(ages) if ages else None
