"""The volumes table: one row per volume with the containers that mount it (key: name).

"Used by" comes from the container list records (``Container.mounts``) through
``EngineClient.volume_users``: no inspect per row. The page rebuilds the entries when either
volumes or containers change; ``set_records`` diffs them, so only rows whose users changed
are repainted.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject
from PySide6.QtGui import QColor

from toolbox.engine.parse import human_duration
from toolbox.engine.records import Volume
from ui.models.table import Column, RecordTableModel

NAME, DRIVER, USED_BY, CREATED, MOUNTPOINT = range(5)
MUTED = QColor("#757575")
UNUSED = "—"


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def ago(when: dt.datetime | None, now: dt.datetime) -> str:
    if when is None:
        return ""
    return f"{human_duration(max(0.0, (now - when).total_seconds()))} ago"


def used_by_column(users: Callable[[Any], tuple[str, ...]], width: int = 220) -> Column[Any]:
    """ "Used by": container names, "—" when none; sorts by how many, then by names."""
    return Column[Any](
        "Used by",
        lambda r: ", ".join(users(r)) or UNUSED,
        sort_key=lambda r: (len(users(r)), [n.casefold() for n in users(r)]),
        tooltip=lambda r: "\n".join(users(r)) or "No container uses it",
        foreground=lambda r: None if users(r) else MUTED,
        width=width,
    )


@dataclass(frozen=True)
class VolumeEntry:
    """A volume and the names of the containers that mount it (sorted)."""

    volume: Volume
    users: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.volume.name

    @property
    def in_use(self) -> bool:
        return bool(self.users)


def volume_entries(
    volumes: Iterable[Volume], users: Mapping[str, Sequence[str]]
) -> list[VolumeEntry]:
    return [VolumeEntry(v, tuple(sorted(users.get(v.name, ()), key=str.casefold))) for v in volumes]


class VolumesModel(RecordTableModel[VolumeEntry]):
    """Name, driver, used by, created, mount point."""

    def __init__(self, parent: QObject | None = None):
        self.now = now_utc()
        columns = [
            Column[VolumeEntry](
                "Name",
                lambda e: e.volume.name,
                tooltip=lambda e: "\n".join(
                    [e.volume.name, *(f"{k}={v}" for k, v in e.volume.labels.items())]
                ),
                width=220,
            ),
            Column[VolumeEntry]("Driver", lambda e: e.volume.driver, width=70),
            used_by_column(lambda e: e.users, width=200),
            Column[VolumeEntry](
                "Created",
                lambda e: ago(e.volume.created, self.now),
                sort_key=lambda e: e.volume.created.timestamp() if e.volume.created else 0.0,
                width=120,
                searchable=False,
            ),
            Column[VolumeEntry](
                "Mount point",
                lambda e: e.volume.mountpoint,
                tooltip=lambda e: f"{e.volume.mountpoint}\n(inside the engine's machine)",
                width=250,
            ),
        ]
        super().__init__(columns, key=lambda e: e.volume.name, parent=parent)

    def tick(self, now: dt.datetime | None = None) -> None:
        self.now = now or now_utc()
        self.refresh_column(CREATED)
