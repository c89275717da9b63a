"""The Volumes page: every volume, which containers mount it, create and remove.

See ``ui.volumes.resource_page`` for the live list and the removal rules. A volume that a
container (running or stopped) mounts cannot be removed: the engine refuses even with force,
so the page says which containers to remove first instead of offering a force that fails.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from PySide6.QtWidgets import QWidget

from toolbox.engine.client import EngineClient
from ui.pages import PageContext
from ui.session import Delta
from ui.volumes.create_dialog import CreateVolumeDialog
from ui.volumes.model import VolumeEntry, VolumesModel, volume_entries
from ui.volumes.resource_page import ResourcePage, names_text


class VolumesPage(ResourcePage):
    """Volumes table + Create/Remove."""

    needs_engine: ClassVar[bool] = True

    kind = "volume"
    kinds = "volumes"

    def __init__(self, context: PageContext, parent: QWidget | None = None):
        super().__init__(
            context, VolumesModel(), "Filter by name, driver or container", "volumesTable", parent
        )
        self.model: VolumesModel
        self.session.volumes_changed.connect(self._volumes_changed)
        if self.session.has_snapshot:
            self.refresh()
        self.update_actions()

    def _volumes_changed(self, _delta: Delta) -> None:
        self.refresh()

    def entries(self) -> list[VolumeEntry]:
        users = EngineClient.volume_users(self.session.containers())
        return volume_entries(self.session.volumes(), users)

    def entry_key(self, entry: VolumeEntry) -> str:
        return entry.volume.name

    def entry_name(self, entry: VolumeEntry) -> str:
        return entry.volume.name

    def blocker(self, entry: VolumeEntry) -> str | None:
        if not entry.users:
            return None
        return (
            f"{entry.name} is used by {names_text(list(entry.users))}: remove "
            f"{'that container' if len(entry.users) == 1 else 'those containers'} first "
            "(the engine keeps a volume in use, even with force)."
        )

    def remove_call(self, entry: VolumeEntry) -> Callable[[Any], object]:
        name = entry.volume.name
        return lambda client: client.remove_volume(name)

    def make_create_dialog(self) -> CreateVolumeDialog:
        return CreateVolumeDialog(self.session, parent=self.window())

    def tick(self) -> None:
        self.model.tick()
