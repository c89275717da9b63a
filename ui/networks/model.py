"""The networks table: one row per network with the containers attached (key: network id).

"Used by" comes from the container list records (``Container.networks``) through
``EngineClient.network_users``: no inspect per row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from PySide6.QtCore import QObject

from toolbox.engine.records import Network
from ui.models.table import Column, RecordTableModel
from ui.volumes.model import MUTED, ago, now_utc, used_by_column

NAME, DRIVER, SUBNETS, USED_BY, SCOPE, CREATED, NETWORK_ID = range(7)


@dataclass(frozen=True)
class NetworkEntry:
    """A network and the names of the containers attached to it (sorted)."""

    network: Network
    users: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.network.name

    @property
    def in_use(self) -> bool:
        return bool(self.users)


def network_entries(
    networks: Iterable[Network], users: Mapping[str, Sequence[str]]
) -> list[NetworkEntry]:
    return [
        NetworkEntry(n, tuple(sorted(users.get(n.name, ()), key=str.casefold))) for n in networks
    ]


def _flags(network: Network) -> str:
    parts = [network.driver]
    if network.internal:
        parts.append("internal")
    return ", ".join(parts)


class NetworksModel(RecordTableModel[NetworkEntry]):
    """Name, driver, subnets, used by, scope, created, id."""

    def __init__(self, parent: QObject | None = None):
        self.now = now_utc()
        columns = [
            Column[NetworkEntry](
                "Name",
                lambda e: e.network.name,
                tooltip=lambda e: (
                    f"{e.network.name} (built in: cannot be removed)"
                    if e.network.builtin
                    else e.network.name
                ),
                foreground=lambda e: MUTED if e.network.builtin else None,
                width=180,
            ),
            Column[NetworkEntry]("Driver", lambda e: _flags(e.network), width=90),
            Column[NetworkEntry]("Subnet", lambda e: ", ".join(e.network.subnets), width=140),
            used_by_column(lambda e: e.users, width=200),
            Column[NetworkEntry]("Scope", lambda e: e.network.scope, width=60),
            Column[NetworkEntry](
                "Created",
                lambda e: ago(e.network.created, self.now),
                sort_key=lambda e: e.network.created.timestamp() if e.network.created else 0.0,
                width=120,
                searchable=False,
            ),
            Column[NetworkEntry](
                "ID", lambda e: e.network.short_id, tooltip=lambda e: e.network.id, width=110
            ),
        ]
        super().__init__(columns, key=lambda e: e.network.id, parent=parent)

    def tick(self, now: dt.datetime | None = None) -> None:
        self.now = now or now_utc()
        self.refresh_column(CREATED)
