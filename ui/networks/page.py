"""The Networks page: every network, which containers are attached, create and remove.

See ``ui.volumes.resource_page`` for the live list and the removal rules. The engine's own
networks (bridge, host, none) cannot be removed, and a network with containers attached is
refused by the engine (there is no force for it), so the page names those containers instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from PySide6.QtWidgets import QWidget

from toolbox.engine.client import EngineClient
from ui.networks.create_dialog import CreateNetworkDialog
from ui.networks.model import NetworkEntry, NetworksModel, network_entries
from ui.pages import PageContext
from ui.session import Delta
from ui.volumes.resource_page import ResourcePage, names_text


class NetworksPage(ResourcePage):
    """Networks table + Create/Remove."""

    needs_engine: ClassVar[bool] = True

    kind = "network"
    kinds = "networks"

    def __init__(self, context: PageContext, parent: QWidget | None = None):
        super().__init__(
            context,
            NetworksModel(),
            "Filter by name, driver, subnet or container",
            "networksTable",
            parent,
        )
        self.model: NetworksModel
        self.session.networks_changed.connect(self._networks_changed)
        if self.session.has_snapshot:
            self.refresh()
        self.update_actions()

    def _networks_changed(self, _delta: Delta) -> None:
        self.refresh()

    def entries(self) -> list[NetworkEntry]:
        users = EngineClient.network_users(self.session.containers())
        return network_entries(self.session.networks(), users)

    def entry_key(self, entry: NetworkEntry) -> str:
        return entry.network.id

    def entry_name(self, entry: NetworkEntry) -> str:
        return entry.network.name

    def blocker(self, entry: NetworkEntry) -> str | None:
        if entry.network.builtin:
            return f"{entry.name} is one of the engine's own networks and cannot be removed."
        if not entry.users:
            return None
        return (
            f"{entry.name} has {names_text(list(entry.users))} attached: remove "
            f"{'that container' if len(entry.users) == 1 else 'those containers'} or "
            f"disconnect {'it' if len(entry.users) == 1 else 'them'} first "
            f"(docker network disconnect {entry.name} NAME)."
        )

    def remove_call(self, entry: NetworkEntry) -> Callable[[Any], object]:
        network_id = entry.network.id
        return lambda client: client.remove_network(network_id)

    def make_create_dialog(self) -> CreateNetworkDialog:
        return CreateNetworkDialog(self.session, parent=self.window())

    def tick(self) -> None:
        self.model.tick()
