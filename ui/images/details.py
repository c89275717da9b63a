"""The image details pane under the Images table: a History tab (one row per layer: layer id,
created, size, the instruction that made it) and the image's inspect JSON.

Both are read on a worker thread when the selection settles on one image; a late answer for an
image no longer selected is dropped. Nothing is read while no single image is selected.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import shiboken6
from PySide6.QtCore import Qt
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from toolbox.engine.history import HistoryEntry, image_history
from toolbox.engine.parse import format_size
from toolbox.engine.records import Image
from toolbox.errors import ToolboxError
from ui.models.table import RIGHT, Column, RecordTableModel

if TYPE_CHECKING:
    from ui.session import EngineSession


@dataclass(frozen=True)
class HistoryRow:
    """A layer and its position (layer ids repeat as ``<missing>``, positions do not)."""

    position: int
    entry: HistoryEntry


class HistoryModel(RecordTableModel[HistoryRow]):
    """Layers newest first: layer, created, size, instruction."""

    def __init__(self, parent: Any = None):
        columns = [
            Column[HistoryRow]("Layer", lambda r: r.entry.short_id, width=110),
            Column[HistoryRow](
                "Created",
                lambda r: r.entry.created.astimezone().strftime("%Y-%m-%d %H:%M:%S"),
                sort_key=lambda r: r.entry.created,
                width=150,
            ),
            Column[HistoryRow](
                "Size",
                lambda r: format_size(r.entry.size),
                sort_key=lambda r: r.entry.size,
                align=RIGHT,
                width=80,
            ),
            Column[HistoryRow](
                "Instruction",
                lambda r: r.entry.created_by,
                tooltip=lambda r: (
                    r.entry.created_by + (f"\n{r.entry.comment}" if r.entry.comment else "")
                ),
                width=400,
            ),
        ]
        super().__init__(columns, key=lambda r: str(r.position), parent=parent)


class ImageDetails(QTabWidget):
    """History and inspect JSON of one image; see the module docstring."""

    def __init__(self, session: EngineSession, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("imageDetails")
        self.session = session
        self.image: Image | None = None
        self.history: list[HistoryEntry] = []
        self.inspect: dict[str, Any] | None = None
        self.last_error: ToolboxError | None = None
        self._generation = 0

        self.history_model = HistoryModel(self)
        self.history_view = QTableView()
        self.history_view.setObjectName("historyTable")
        self.history_view.setModel(self.history_model)
        self.history_view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.history_view.verticalHeader().setVisible(False)
        self.history_view.verticalHeader().setDefaultSectionSize(22)
        header = self.history_view.horizontalHeader()
        header.setStretchLastSection(True)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        for column, spec in enumerate(self.history_model.columns):
            self.history_view.setColumnWidth(column, spec.width)
        self.status = QLabel("Select an image to see its layers.")
        self.status.setObjectName("historyStatus")
        self.status.setWordWrap(True)
        self.status.setTextFormat(Qt.TextFormat.PlainText)
        history_tab = QWidget()
        box = QVBoxLayout(history_tab)
        box.setContentsMargins(4, 4, 4, 4)
        box.addWidget(self.status)
        box.addWidget(self.history_view, 1)

        self.inspect_view = QPlainTextEdit()
        self.inspect_view.setObjectName("inspectJson")
        self.inspect_view.setReadOnly(True)
        self.inspect_view.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))

        self.addTab(history_tab, "History")
        self.addTab(self.inspect_view, "Inspect")

    def show_image(self, image: Image | None) -> None:
        """Show ``image`` (None clears); reads its history and inspect off the GUI thread."""
        if image is not None and self.image is not None and image.id == self.image.id:
            return
        self._generation += 1
        self.image = image
        self.history = []
        self.inspect = None
        self.last_error = None
        self.history_model.clear()
        self.inspect_view.clear()
        if image is None:
            self.status.setText("Select an image to see its layers.")
            return
        self.status.setText(f"Reading the layers of {image.short_id}…")
        generation = self._generation
        image_id = image.id

        def work(client: Any) -> tuple[list[HistoryEntry], dict[str, Any]]:
            history = image_history(client, image_id)
            raw = client._call("inspect the image", image_id, client.api.inspect_image, image_id)
            return history, raw

        self.session.call(
            work,
            lambda result: self._loaded(generation, result),
            lambda error: self._failed(generation, error),
            what=f"Read the history of {image.short_id}",
            owner=self,
        )

    def refresh(self) -> None:
        """Read the shown image again (after a build that changed its tags, say)."""
        image, self.image = self.image, None
        self.show_image(image)

    def _loaded(self, generation: int, result: tuple[list[HistoryEntry], dict[str, Any]]) -> None:
        if not shiboken6.isValid(self) or generation != self._generation:
            return
        self.history, self.inspect = result
        self.history_model.set_records(HistoryRow(i, e) for i, e in enumerate(self.history))
        total = format_size(sum(e.size for e in self.history))
        count = len(self.history)
        self.status.setText(f"{count} layer{'s' if count != 1 else ''}, {total} (newest first).")
        self.inspect_view.setPlainText(json.dumps(self.inspect, indent=2, sort_keys=True))

    def _failed(self, generation: int, error: ToolboxError) -> None:
        if not shiboken6.isValid(self) or generation != self._generation:
            return
        self.last_error = error
        hint = f" {error.hint}" if error.hint else ""
        self.status.setText(f"Could not read the image's history: {error.message}.{hint}")
