"""What the Volumes and Networks pages share: a live list of entries with "used by", a Create
dialog, and a removal that names the containers in the way.

Entries are rebuilt from the session's current lists whenever volumes/networks or containers
change (the session re-lists the kind after each of its events, and re-fetches containers
after theirs), and diffed into the model: only rows that changed repaint. Removal asks first;
an entry in use is refused up front with the names of its containers, since the engine refuses
it even with force. Removals run on one serial queue per engine, off the GUI thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QDialog, QMessageBox, QWidget

from toolbox.errors import ToolboxError
from ui.models.table import RecordTableModel
from ui.pages import PageContext
from ui.widgets.list_page import BulkRun, ListPage

TICK_MS = 60_000


def names_text(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


class ResourcePage(ListPage):
    """Base of the Volumes and Networks pages; subclasses fill in the hooks below."""

    kind = "volume"
    kinds = "volumes"

    def __init__(
        self,
        context: PageContext,
        model: RecordTableModel[Any],
        placeholder: str,
        object_name: str,
        parent: QWidget | None = None,
    ):
        super().__init__(context, model, placeholder, object_name, parent=parent)
        self.queue_key = f"{self.kinds}:{self.session.config.url}"
        self.confirm_box: QMessageBox | None = None
        self.create_dialog: QDialog | None = None
        self.pending_select: str | None = None  # a name to select once its row exists
        self.last_removal: BulkRun | None = None

        self.add_action(
            "create", "Create…", "Ctrl+N", self.open_create_dialog, f"Create a {self.kind}"
        )
        self.add_action(
            "remove", "Remove", QKeySequence.StandardKey.Delete, self.confirm_remove,
            f"Remove the selected {self.kinds}",
        )  # fmt: skip
        self.tick_timer = QTimer(self)
        self.tick_timer.setInterval(TICK_MS)
        self.tick_timer.timeout.connect(lambda: self.tick())
        self.session.containers_changed.connect(lambda _delta: self.refresh())

    # -- hooks --------------------------------------------------------------------------------

    def entries(self) -> list[Any]:
        """The entries to show, from the session's current lists."""
        raise NotImplementedError

    def entry_key(self, entry: Any) -> str:
        raise NotImplementedError

    def entry_name(self, entry: Any) -> str:
        raise NotImplementedError

    def blocker(self, entry: Any) -> str | None:
        """Why ``entry`` cannot be removed now (None when it can)."""
        raise NotImplementedError

    def remove_call(self, entry: Any) -> Callable[[Any], object]:
        raise NotImplementedError

    def make_create_dialog(self) -> Any:
        raise NotImplementedError

    def tick(self) -> None:
        """Re-render relative times."""

    # -- data ---------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Show the session's current entries (diffed: no model reset)."""
        entries = self.entries()
        self.model.set_records(entries)
        self._select_pending()
        used = sum(1 for e in entries if getattr(e, "users", ()))
        self.count_label.setText(f"{len(entries)} {self.kinds}, {used} in use")
        self.update_actions()

    def page_shown(self) -> None:
        super().page_shown()
        self.tick()
        self.tick_timer.start()

    def page_hidden(self) -> None:
        super().page_hidden()
        self.tick_timer.stop()

    def update_actions(self) -> None:
        online = self.session.connected
        self.actions_by_key["create"].setEnabled(online)
        self.actions_by_key["remove"].setEnabled(online and bool(self.selected()))

    # -- create -------------------------------------------------------------------------------

    def open_create_dialog(self) -> Any:
        dialog = self.make_create_dialog()
        dialog.created.connect(self._created)
        self.create_dialog = dialog
        dialog.open()
        return dialog

    def _created(self, name: str) -> None:
        """Select the new row, now or when the session's re-list brings it in."""
        self.message.setText(f"Created {self.kind} {name}.")
        self.pending_select = name
        self._select_pending()

    def _select_pending(self) -> None:
        name = self.pending_select
        if not name:
            return
        keys = [self.entry_key(e) for e in self.model.records() if self.entry_name(e) == name]
        if keys and self.select_keys(keys[:1]):
            self.pending_select = None

    # -- remove -------------------------------------------------------------------------------

    def confirm_remove(self) -> QMessageBox | None:
        """Ask first; entries in use are refused with the containers that use them."""
        targets = self.selected()
        if not targets:
            return None
        blocked = [(t, why) for t in targets if (why := self.blocker(t))]
        free = [t for t in targets if not self.blocker(t)]
        box = QMessageBox(self.window())
        box.setObjectName(f"confirmRemove{self.kinds.capitalize()}")
        box.setWindowTitle(f"Remove {self.kinds}")
        box.setTextFormat(Qt.TextFormat.PlainText)
        reasons = "\n".join(why for _t, why in blocked)
        if not free:
            box.setIcon(QMessageBox.Icon.Information)
            noun = self.entry_name(targets[0]) if len(targets) == 1 else f"these {self.kinds}"
            box.setText(f"Cannot remove {noun}")
            box.setInformativeText(reasons)
            box.addButton(QMessageBox.StandardButton.Ok)
            remove = None
        else:
            box.setIcon(QMessageBox.Icon.Warning)
            noun = self.entry_name(free[0]) if len(free) == 1 else f"{len(free)} {self.kinds}"
            box.setText(f"Remove {noun}?")
            info = (
                "Its data is deleted for good."
                if self.kind == "volume"
                else "Containers can no longer join it."
            )
            if len(free) > 1:
                info = names_text([self.entry_name(t) for t in free]) + ". " + info
            if blocked:
                info += "\n\nKept, because they are in use:\n" + reasons
            box.setInformativeText(info)
            remove = box.addButton("Remove", QMessageBox.ButtonRole.DestructiveRole)
            box.addButton(QMessageBox.StandardButton.Cancel)
            box.setDefaultButton(QMessageBox.StandardButton.Cancel)

        def finished() -> None:
            if remove is not None and box.clickedButton() is remove:
                self.remove(free)
            self.confirm_box = None

        box.finished.connect(lambda _r: finished())
        self.confirm_box = box
        box.open()
        return box

    def remove(self, targets: list[Any]) -> BulkRun:
        run = BulkRun("Remove", self.kinds, len(targets), self._removal_finished)
        self.last_removal = run
        noun = self.entry_name(targets[0]) if len(targets) == 1 else f"{len(targets)} {self.kinds}"
        self.message.setText(f"Removing {noun}…")
        for entry in targets:
            self._remove_one(run, entry)
        return run

    def _remove_one(self, run: BulkRun, entry: Any) -> None:
        name = self.entry_name(entry)
        self.session.call(
            self.remove_call(entry),
            lambda _r: run.ok(name),
            lambda error: run.failed(name, error),
            key=self.queue_key,
            what=f"Remove {self.kind} {name}",
            owner=self,
        )

    def _removal_finished(self, run: BulkRun) -> None:
        if run.succeeded:
            done = (
                f"{self.kind} {run.succeeded[0]}"
                if len(run.succeeded) == 1
                else f"{len(run.succeeded)} {self.kinds}"
            )
            self.message.setText(f"Removed {done}.")
        else:
            self.message.clear()
        self.report_failures("Remove", self.kinds, run.total, self._explain(run.failures))

    def _explain(self, failures: list[tuple[str, ToolboxError]]) -> list[tuple[str, ToolboxError]]:
        """Name the containers when the engine refused because of them (the list was stale)."""
        out = []
        current = {self.entry_name(e): e for e in self.model.records()}
        for name, error in failures:
            entry = current.get(name)
            why = self.blocker(entry) if entry is not None else None
            if why and why not in error.message:
                error = ToolboxError(f"{error.message}: {why}", error.hint, error.details)
            out.append((name, error))
        return out
