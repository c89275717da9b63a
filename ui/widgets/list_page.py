"""The skeleton the Images, Volumes and Networks pages share: a toolbar, a filter box, a
record table with a sort proxy, a message line and a count, and one way to report failures.

Usage::

    class VolumesPage(ListPage):
        def __init__(self, context):
            super().__init__(context, VolumesModel(), "Filter volumes", "volumesTable")
            self.add_action("create", "Create…", "Ctrl+N", self.open_create_dialog)

``selected()`` returns the selected records in view order; ``select_keys`` selects rows by
model key (after a create or a pull). ``report_failures`` shows one dialog for a bulk action:
what failed, why, and what to do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtCore import QItemSelection, QItemSelectionModel, QModelIndex, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from toolbox.errors import ToolboxError
from ui.models.table import RecordSortProxy, RecordTableModel
from ui.pages import Page, PageContext
from ui.widgets.error_dialog import ErrorDialog
from ui.widgets.filter_edit import FilterLineEdit
from ui.widgets.record_view import record_table_view


class ListPage(Page):
    """A page made of a toolbar, a filter box and one live record table."""

    def __init__(
        self,
        context: PageContext,
        model: RecordTableModel[Any],
        placeholder: str,
        object_name: str,
        sort_column: int = 0,
        parent: QWidget | None = None,
    ):
        super().__init__(context, parent)
        self.model = model
        model.setParent(self)
        self.proxy = RecordSortProxy(model, self)
        self.actions_by_key: dict[str, QAction] = {}
        self.last_error: ErrorDialog | None = None
        self.visible = False

        self.view = record_table_view(self.proxy, model, object_name, sort_column)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        self.view.selectionModel().selectionChanged.connect(lambda *_: self.update_actions())

        self.filter_box = FilterLineEdit(placeholder)
        self.filter_box.filter_changed.connect(self.proxy.set_filter_text)
        focus_filter = QAction("Filter", self)
        focus_filter.setShortcut(QKeySequence.StandardKey.Find)
        focus_filter.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        focus_filter.triggered.connect(lambda: self.filter_box.setFocus())
        self.addAction(focus_filter)

        self.toolbar = QToolBar()
        self.toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.message = QLabel()
        self.message.setObjectName("pageMessage")
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.count_label = QLabel()

        top = QHBoxLayout()
        top.addWidget(self.toolbar, 1)
        top.addWidget(self.filter_box)
        bottom = QHBoxLayout()
        bottom.addWidget(self.message, 1)
        bottom.addWidget(self.count_label)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.view, 1)
        layout.addLayout(bottom)

        self.session.state_changed.connect(lambda *_: self.update_actions())

    # -- actions ------------------------------------------------------------------------------

    def add_action(
        self,
        key: str,
        label: str,
        shortcut: Any,
        slot: Callable[[], object],
        tooltip: str = "",
        in_menu: bool = True,
    ) -> QAction:
        """A toolbar button with a shortcut (active while focus is in this page), also in the
        table's context menu when ``in_menu``."""
        action = QAction(label, self)
        sequence = QKeySequence(shortcut)
        action.setShortcut(sequence)
        action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        shown = sequence.toString(QKeySequence.SequenceFormat.NativeText)
        tip = tooltip or label.rstrip("…")
        action.setToolTip(f"{tip} ({shown})" if shown else tip)
        action.triggered.connect(lambda _checked=False: slot())
        self.toolbar.addAction(action)
        self.addAction(action)
        if in_menu:
            self.view.addAction(action)
        self.actions_by_key[key] = action
        return action

    def update_actions(self) -> None:
        """Enable the actions that apply to the selection; subclasses override."""

    # -- selection ----------------------------------------------------------------------------

    def selected(self) -> list[Any]:
        rows = self.view.selectionModel().selectedRows()
        return [self.proxy.record_at(index.row()) for index in sorted(rows, key=QModelIndex.row)]

    def select_keys(self, keys: Sequence[str]) -> int:
        """Select the rows with these model keys; returns how many were found."""
        selection = QItemSelection()
        found = 0
        for key in keys:
            row = self.model.row_of(key)
            if row is None:
                continue
            index = self.proxy.mapFromSource(self.model.index(row, 0))
            if index.isValid():
                selection.select(index, index)
                found += 1
        flags = (
            QItemSelectionModel.SelectionFlag.ClearAndSelect
            | QItemSelectionModel.SelectionFlag.Rows
        )
        self.view.selectionModel().select(selection, flags)
        if found:
            self.view.scrollTo(selection.indexes()[0])
        return found

    # -- visibility ---------------------------------------------------------------------------

    def page_shown(self) -> None:
        self.visible = True

    def page_hidden(self) -> None:
        self.visible = False

    # -- errors -------------------------------------------------------------------------------

    def report_failures(
        self, verb: str, noun: str, total: int, failures: Sequence[tuple[str, ToolboxError]]
    ) -> ErrorDialog | None:
        """One dialog for what failed in a bulk action: ``failures`` are (name, error)."""
        if not failures:
            return None
        if len(failures) == 1:
            name, error = failures[0]
            what = f"{verb} {name} failed"
            dialog = ErrorDialog(what, error.message, error.hint, error.details, self.window())
        else:
            what = f"{verb} failed for {len(failures)} of {total} {noun}"
            why = "\n".join(f"{name}: {error.message}" for name, error in failures)
            hints = list(dict.fromkeys(e.hint for _, e in failures if e.hint))
            details = "\n\n".join(f"{n}:\n{e.details}" for n, e in failures if e.details)
            dialog = ErrorDialog(what, why, " ".join(hints) or None, details or None, self.window())
        self.last_error = dialog
        dialog.show()
        return dialog

    def show_error(self, what: str, error: ToolboxError) -> ErrorDialog:
        """Show one failure (non-modal): what failed, why, what to do."""
        dialog = ErrorDialog.from_error(error, self.window(), what=what)
        self.last_error = dialog
        dialog.show()
        return dialog


class BulkRun:
    """Counts the outcomes of one action over several records; calls ``done(run)`` once all
    have finished, with the failures collected."""

    def __init__(self, verb: str, noun: str, total: int, done: Callable[[BulkRun], None]):
        self.verb = verb
        self.noun = noun
        self.total = total
        self.left = total
        self.succeeded: list[str] = []
        self.failures: list[tuple[str, ToolboxError]] = []
        self._done = done

    def ok(self, name: str) -> None:
        self.succeeded.append(name)
        self._step()

    def failed(self, name: str, error: ToolboxError) -> None:
        self.failures.append((name, error))
        self._step()

    def _step(self) -> None:
        self.left -= 1
        if self.left == 0:
            self._done(self)
