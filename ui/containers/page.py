"""The Containers page: a live table of containers with actions, a filter and a details pane.

Rows come from the session's deltas (snapshot, then events), applied incrementally so the
selection and scroll position survive. Actions (toolbar, context menu, shortcuts) work on every
selected row, each container on its own serial queue (``container:<id>``) off the GUI thread;
failures are collected and shown once: what failed, why, what to do. The status and created
columns are re-rendered locally by a slow timer that only runs while the page is visible.
The CPU % and Memory columns (a toggle, remembered) show the ``StatsMonitor``'s last reading of
each running container; it reads only the visible running rows, and streams the selected one
for the Stats tab, only while the page is visible. The "Compose projects" tab groups the same
records by their compose labels (``ui/containers/compose_view.py``), with project actions.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

from PySide6.QtCore import QModelIndex, QPoint, Qt, QTimer, QUrl
from PySide6.QtGui import QAction, QDesktopServices, QKeySequence
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QMenu,
    QMessageBox,
    QSplitter,
    QTabWidget,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from toolbox.engine.records import Container, ContainerState
from toolbox.errors import ToolboxError
from ui.containers import terminal
from ui.containers.compose_view import ComposePanel
from ui.containers.console import ExecConsole
from ui.containers.details import DetailsPane
from ui.containers.model import NAME, PORTS, STATS_COLUMNS, ContainersModel
from ui.containers.run_dialog import RunDialog
from ui.containers.stats import StatsMonitor
from ui.models.table import RecordSortProxy
from ui.pages import Page, PageContext
from ui.session import Delta, apply_delta
from ui.settings import qsettings
from ui.widgets.error_dialog import ErrorDialog
from ui.widgets.filter_edit import FilterLineEdit
from ui.widgets.record_view import record_table_view

# Tick rates for the status column: every second while something changed in the last minute,
# then slower, since "Up 5 minutes" only changes once a minute and "Up 3 hours" once an hour.
TICK_FAST_MS, TICK_MINUTE_MS, TICK_SLOW_MS = 1_000, 15_000, 60_000
STATS_COLUMNS_KEY = "containers/stats_columns"
SCROLL_SAMPLE_MS = 400  # after scrolling stops, read the rows that came into view


@dataclass(frozen=True)
class ContainerAction:
    """One thing that can be done to containers, in bulk."""

    key: str
    label: str
    verb: str  # "Stop" -> "Stop web failed", "Stopping 3 containers…"
    progressive: str
    shortcut: str
    applies: Callable[[Container], bool]
    call: Callable[[Any, Container], object]


def _stoppable(c: Container) -> bool:
    return c.state.is_running


ACTIONS: tuple[ContainerAction, ...] = (
    ContainerAction(
        "start", "Start", "Start", "Starting", "Ctrl+S",
        lambda c: c.state in (ContainerState.CREATED, ContainerState.EXITED, ContainerState.DEAD),
        lambda client, c: client.start(c.id),
    ),
    ContainerAction(
        "stop", "Stop", "Stop", "Stopping", "Ctrl+Shift+S", _stoppable,
        lambda client, c: client.stop(c.id),
    ),
    ContainerAction(
        "restart", "Restart", "Restart", "Restarting", "Ctrl+R",
        lambda c: c.state is not ContainerState.REMOVING,
        lambda client, c: client.restart(c.id),
    ),
    ContainerAction(
        "pause", "Pause", "Pause", "Pausing", "Ctrl+P",
        lambda c: c.state is ContainerState.RUNNING,
        lambda client, c: client.pause(c.id),
    ),
    ContainerAction(
        "unpause", "Resume", "Resume", "Resuming", "Ctrl+Shift+P",
        lambda c: c.state is ContainerState.PAUSED,
        lambda client, c: client.unpause(c.id),
    ),
    ContainerAction(
        "kill", "Kill", "Kill", "Killing", "Ctrl+K", _stoppable,
        lambda client, c: client.kill(c.id),
    ),
)  # fmt: skip


class BulkRun:
    """Runs one action over several containers and reports the failures together."""

    def __init__(self, page: ContainersPage, verb: str, progressive: str, count: int):
        self.page = page
        self.verb = verb
        self.progressive = progressive
        self.total = count
        self.left = count
        self.failures: list[tuple[Container, ToolboxError]] = []

    def one_done(self, _result: object = None) -> None:
        self.left -= 1
        if self.left == 0:
            self.page.bulk_finished(self)

    def one_failed(self, container: Container, error: ToolboxError) -> None:
        self.failures.append((container, error))
        self.one_done()


class ContainersPage(Page):
    """Table + toolbar + details; see the module docstring."""

    needs_engine: ClassVar[bool] = True

    def __init__(self, context: PageContext, parent: QWidget | None = None):
        super().__init__(context, parent)
        self.stats = StatsMonitor(self.session, self.visible_running_ids, self)
        self.model = ContainersModel(self, stats=self.stats.book)
        self.proxy = RecordSortProxy(self.model, self)
        self.bulk_runs: list[BulkRun] = []
        self.confirm_box: QMessageBox | None = None
        self.run_dialog: RunDialog | None = None
        self.consoles: list[ExecConsole] = []
        self.terminals: list[subprocess.Popen[bytes]] = []
        self.last_error: ErrorDialog | None = None
        self._visible = False
        self._select_pending: str | None = None

        self.view = record_table_view(self.proxy, self.model, "containersTable", NAME)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._context_menu)
        self.view.clicked.connect(self._clicked)
        self.view.doubleClicked.connect(self._open_details)
        self.view.selectionModel().selectionChanged.connect(lambda *_: self._selection_changed())

        self.filter_box = FilterLineEdit("Filter by name, image or ports")
        self.filter_box.filter_changed.connect(self.proxy.set_filter_text)
        self.details = DetailsPane(self.session, stats=self.stats)
        self.message = QLabel()
        self.count_label = QLabel()

        self.actions_by_key: dict[str, QAction] = {}
        self.toolbar = QToolBar()
        self.toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self._add_action("run", "Run…", "Ctrl+N", self.open_run_dialog)
        self.toolbar.addSeparator()
        for spec in ACTIONS:
            self._add_action(spec.key, spec.label, spec.shortcut, partial(self.run_action, spec))
        self._add_action("remove", "Remove", QKeySequence.StandardKey.Delete, self.confirm_remove)
        self.toolbar.addSeparator()
        self._add_action("shell", "Shell", "Ctrl+Shift+T", self.open_shell)
        self._add_action("edit", "Edit settings…", "Ctrl+E", self.edit_settings)
        self.toolbar.addSeparator()
        columns = QAction("CPU && memory", self)
        columns.setCheckable(True)
        columns.setToolTip("Show the CPU % and memory of running containers")
        columns.setChecked(_setting_on(qsettings().value(STATS_COLUMNS_KEY, True)))
        columns.toggled.connect(self.set_stats_columns)
        self.toolbar.addAction(columns)
        self.actions_by_key["stats_columns"] = columns
        focus_filter = QAction("Filter", self)
        focus_filter.setShortcut(QKeySequence.StandardKey.Find)
        focus_filter.triggered.connect(lambda: self.filter_box.setFocus())
        self.addAction(focus_filter)

        top = QHBoxLayout()
        top.addWidget(self.toolbar, 1)
        top.addWidget(self.filter_box)
        table_holder = QWidget()
        table_layout = QVBoxLayout(table_holder)
        table_layout.setContentsMargins(0, 0, 0, 0)
        table_layout.addLayout(top)
        table_layout.addWidget(self.view, 1)
        bottom = QHBoxLayout()
        bottom.addWidget(self.message, 1)
        bottom.addWidget(self.count_label)
        table_layout.addLayout(bottom)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.setObjectName("containersSplitter")  # its sizes are remembered
        self.compose = ComposePanel(self.session)
        self.tabs = QTabWidget()
        self.tabs.setObjectName("containersTabs")
        self.tabs.addTab(table_holder, "Containers")
        self.tabs.addTab(self.compose, "Compose projects")
        self.compose.container_activated.connect(self.show_container)
        self.splitter.addWidget(self.tabs)
        self.splitter.addWidget(self.details)
        self.splitter.setSizes([420, 260])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.splitter)

        self.tick_timer = QTimer(self)
        self.tick_timer.setSingleShot(True)
        self.tick_timer.timeout.connect(self.tick)
        self.scroll_timer = QTimer(self)
        self.scroll_timer.setSingleShot(True)
        self.scroll_timer.setInterval(SCROLL_SAMPLE_MS)
        self.scroll_timer.timeout.connect(self.stats.sample_now)
        self.view.verticalScrollBar().valueChanged.connect(lambda _v: self.scroll_timer.start())
        self.stats.updated.connect(self.model.stats_changed)
        self._show_stats_columns(columns.isChecked())

        self.session.containers_changed.connect(self.apply)
        self.session.state_changed.connect(lambda *_: self._update_actions())
        self.session.state_changed.connect(lambda *_: self.compose.update_actions())
        if self.session.has_snapshot:
            self.apply(Delta(tuple(self.session.containers()), complete=True))
        self._selection_changed()

    # -- data ---------------------------------------------------------------------------------

    def apply(self, delta: Delta) -> None:
        """A change from the session: update rows in place, keep selection and scroll."""
        apply_delta(self.model, delta)
        self.compose.set_containers(self.model.records())  # from the records: no request
        if delta.complete:
            present = set(self.model.keys())
            self.stats.forget([cid for cid in self.stats.book.containers() if cid not in present])
        elif delta.removed:
            self.stats.forget(delta.removed)
        pending = self._select_pending
        if pending is not None and self.model.row_of(pending) is not None:
            self._select_pending = None
            self.select_ids([pending])
        selected = self.selected()
        if len(selected) == 1:
            self.details.show_container(selected[0])
            self.stats.follow(selected[0])  # restarts the stream when it runs again
        self._update_actions()
        running = sum(1 for c in self.model.records() if c.state.is_running)
        self.count_label.setText(f"{self.model.rowCount()} containers, {running} running")
        if self._visible and not self.tick_timer.isActive():
            self.tick_timer.start(TICK_FAST_MS)

    def selected(self) -> list[Container]:
        rows = self.view.selectionModel().selectedRows()
        return [self.proxy.record_at(index.row()) for index in sorted(rows, key=QModelIndex.row)]

    def show_container(self, container_id: str) -> None:
        """Back to the containers table with this container selected (from the projects)."""
        self.tabs.setCurrentIndex(0)
        self.select_ids([container_id])

    def select_ids(self, ids: list[str]) -> None:
        """Select the rows of these containers (used after Run, and by tests)."""
        from PySide6.QtCore import QItemSelection, QItemSelectionModel

        selection = QItemSelection()
        for cid in ids:
            row = self.model.row_of(cid)
            if row is None:
                continue
            index = self.proxy.mapFromSource(self.model.index(row, 0))
            if index.isValid():
                selection.select(index, index)
        flags = (
            QItemSelectionModel.SelectionFlag.ClearAndSelect
            | QItemSelectionModel.SelectionFlag.Rows
        )
        self.view.selectionModel().select(selection, flags)

    # -- status column refresh ----------------------------------------------------------------

    def visible_source_rows(self) -> list[int]:
        first = self.view.rowAt(0)
        if first < 0:
            return []
        last = self.view.rowAt(self.view.viewport().height() - 1)
        if last < 0:
            last = self.proxy.rowCount() - 1
        return [
            self.proxy.mapToSource(self.proxy.index(r, 0)).row() for r in range(first, last + 1)
        ]

    def visible_running_ids(self) -> list[str]:
        """Running containers in the visible rows (what the stats schedule reads)."""
        out = []
        for row in self.visible_source_rows():
            c = self.model.record(row)
            if c.state is ContainerState.RUNNING:
                out.append(c.id)
        return out

    def set_stats_columns(self, on: bool) -> None:
        """Show or hide the CPU % and Memory columns (remembered); hidden, nothing is read
        for them."""
        qsettings().setValue(STATS_COLUMNS_KEY, on)
        self._show_stats_columns(on)

    def _show_stats_columns(self, on: bool) -> None:
        for column in STATS_COLUMNS:
            self.view.setColumnHidden(column, not on)
        self.stats.set_columns(on)

    def tick(self) -> None:
        """Re-render status/created of the visible rows; schedule the next tick."""
        if not self._visible:
            return
        rows = self.visible_source_rows()
        self.model.tick(rows)
        age = self.model.youngest_age(rows)
        if age is None:
            return  # nothing to show; the next delta restarts the timer
        interval = TICK_FAST_MS if age < 60 else TICK_MINUTE_MS if age < 3600 else TICK_SLOW_MS
        self.tick_timer.start(interval)

    def page_shown(self) -> None:
        self._visible = True
        self.details.set_active(True)
        self.stats.set_active(True)
        selected = self.selected()
        self.stats.follow(selected[0] if len(selected) == 1 else None)
        self.tick()

    def page_hidden(self) -> None:
        self._visible = False
        self.tick_timer.stop()
        self.scroll_timer.stop()
        self.details.set_active(False)
        self.stats.set_active(False)

    def shutdown(self) -> None:
        self.page_hidden()
        self.stats.close()
        self.details.shutdown()
        self.compose.shutdown()
        for console in self.consoles:
            console.close_session()

    # -- actions ------------------------------------------------------------------------------

    def _open_details(self, _index: object = None) -> None:
        self.details.setCurrentIndex(1)

    def _add_action(
        self, key: str, label: str, shortcut: Any, slot: Callable[[], object]
    ) -> QAction:
        action = QAction(label, self)
        action.setShortcut(QKeySequence(shortcut))
        action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        action.setToolTip(f"{label} ({QKeySequence(shortcut).toString()})")
        action.triggered.connect(lambda _checked=False: slot())
        self.toolbar.addAction(action)
        self.addAction(action)
        self.actions_by_key[key] = action
        return action

    def _update_actions(self) -> None:
        selected = self.selected()
        online = self.session.connected
        for spec in ACTIONS:
            enabled = online and any(spec.applies(c) for c in selected)
            self.actions_by_key[spec.key].setEnabled(enabled)
        self.actions_by_key["run"].setEnabled(online)
        self.actions_by_key["remove"].setEnabled(online and bool(selected))
        single = len(selected) == 1
        self.actions_by_key["shell"].setEnabled(
            online and single and selected[0].state is ContainerState.RUNNING
        )
        self.actions_by_key["edit"].setEnabled(online and single)

    def _selection_changed(self) -> None:
        selected = self.selected()
        self.details.show_container(selected[0] if len(selected) == 1 else None)
        self.stats.follow(selected[0] if len(selected) == 1 else None)
        self._update_actions()

    def run_action(self, spec: ContainerAction, containers: list[Container] | None = None) -> None:
        """Run ``spec`` on the selected containers it applies to, each on its own queue."""
        targets = [c for c in (containers or self.selected()) if spec.applies(c)]
        if targets:
            self._bulk(spec.verb, spec.progressive, targets, spec.call)

    def _bulk(
        self,
        verb: str,
        progressive: str,
        targets: list[Container],
        call: Callable[[Any, Container], object],
    ) -> BulkRun:
        run = BulkRun(self, verb, progressive, len(targets))
        self.bulk_runs.append(run)
        noun = targets[0].name if len(targets) == 1 else f"{len(targets)} containers"
        self.message.setText(f"{progressive} {noun}…")
        for container in targets:
            self._bulk_one(run, verb, container, call)
        return run

    def _bulk_one(
        self,
        run: BulkRun,
        verb: str,
        container: Container,
        call: Callable[[Any, Container], object],
    ) -> None:
        self.session.call(
            lambda client: call(client, container),
            run.one_done,
            lambda error: run.one_failed(container, error),
            key=f"container:{container.id}",
            what=f"{verb} {container.name}",
            owner=self,
        )

    def bulk_finished(self, run: BulkRun) -> None:
        self.bulk_runs.remove(run)
        if not self.bulk_runs:
            self.message.clear()
        if not run.failures:
            return
        if len(run.failures) == 1:
            container, error = run.failures[0]
            what = f"{run.verb} {container.name} failed"
            dialog = ErrorDialog(what, error.message, error.hint, error.details, self.window())
        else:
            what = f"{run.verb} failed for {len(run.failures)} of {run.total} containers"
            why = "\n".join(f"{c.name}: {e.message}" for c, e in run.failures)
            hints = list(dict.fromkeys(e.hint for _, e in run.failures if e.hint))
            details = "\n\n".join(f"{c.name}:\n{e.details}" for c, e in run.failures if e.details)
            dialog = ErrorDialog(what, why, " ".join(hints) or None, details or None, self.window())
        self.last_error = dialog
        dialog.show()

    def confirm_remove(self) -> None:
        """Ask before removing; running containers are force-removed (stopped first)."""
        targets = self.selected()
        if not targets:
            return
        running = [c for c in targets if c.state.is_running]
        noun = targets[0].name if len(targets) == 1 else f"{len(targets)} containers"
        box = QMessageBox(self.window())
        box.setIcon(QMessageBox.Icon.Warning)
        box.setWindowTitle("Remove containers")
        box.setText(f"Remove {noun}?")
        info = "Their files are deleted; named volumes are kept."
        if running:
            names = ", ".join(c.name for c in running[:5]) + ("…" if len(running) > 5 else "")
            info = f"{len(running)} running ({names}) will be stopped first. " + info
        box.setInformativeText(info)
        volumes = QCheckBox("Also remove their anonymous volumes")
        box.setCheckBox(volumes)
        remove = box.addButton("Remove", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)

        def finished() -> None:
            if box.clickedButton() is remove:
                self.remove(targets, volumes=volumes.isChecked())
            self.confirm_box = None

        box.finished.connect(lambda _r: finished())
        self.confirm_box = box
        box.open()

    def remove(self, targets: list[Container], volumes: bool = False) -> None:
        self._bulk(
            "Remove",
            "Removing",
            targets,
            lambda client, c: client.remove(c.id, force=c.state.is_running, volumes=volumes),
        )

    def open_run_dialog(self, image: str | None = None) -> RunDialog:
        dialog = RunDialog(self.session, image=image, parent=self.window())
        dialog.ran.connect(self.select_when_listed)
        self.run_dialog = dialog
        dialog.open()
        return dialog

    def select_when_listed(self, container_id: str) -> None:
        """Select a container as soon as its row exists (it arrives through the events)."""
        if self.model.row_of(container_id) is not None:
            self.select_ids([container_id])
        else:
            self._select_pending = container_id

    def edit_settings(self) -> RunDialog | None:
        selected = self.selected()
        if len(selected) != 1:
            return None
        dialog = RunDialog.for_edit(self.session, selected[0].id, parent=self.window())
        dialog.ran.connect(self.select_when_listed)
        self.run_dialog = dialog
        dialog.open()
        return dialog

    def open_shell(self, embedded: bool = False) -> None:
        """A shell in the selected running container: the user's terminal, else embedded."""
        selected = self.selected()
        if len(selected) != 1:
            return
        container = selected[0]
        if embedded:
            self.open_console(container)
            return

        # Forget terminals that have been closed (poll() also reaps them).
        self.terminals = [proc for proc in self.terminals if proc.poll() is None]

        def launch(client: Any) -> terminal.TerminalCommand | None:
            argv = client.exec_shell_argv(container.id)
            cmd = terminal.terminal_command(
                platform.system(), argv, shutil.which, title=f"{container.name} (Toolbox)"
            )
            if cmd is not None:
                self.terminals.append(terminal.launch(cmd, client.exec_env()))
            return cmd

        def launched(cmd: terminal.TerminalCommand | None) -> None:
            if cmd is None:
                self.open_console(container)
            else:
                self.message.setText(f"Opened a shell in {container.name} in {cmd.terminal}.")

        self.session.call(launch, launched, owner=self, what=f"Open a shell in {container.name}")

    def open_console(self, container: Container) -> ExecConsole:
        console = ExecConsole(self.session, container.id, title=f"Shell in {container.name}")
        console.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        console.destroyed.connect(
            lambda *_: self.consoles.remove(console) if console in self.consoles else None
        )
        self.consoles.append(console)
        console.show()
        return console

    def open_ports(self, container: Container) -> None:
        for url in container.urls[:1]:
            QDesktopServices.openUrl(QUrl(url))

    # -- mouse --------------------------------------------------------------------------------

    def _clicked(self, index: QModelIndex) -> None:
        if index.column() == PORTS:
            self.open_ports(self.proxy.record_at(index.row()))

    def _context_menu(self, pos: QPoint) -> None:
        index = self.view.indexAt(pos)
        if index.isValid() and not self.view.selectionModel().isRowSelected(index.row()):
            self.view.selectRow(index.row())
        menu = QMenu(self)
        for key in ("start", "stop", "restart", "pause", "unpause", "kill"):
            menu.addAction(self.actions_by_key[key])
        menu.addSeparator()
        menu.addAction(self.actions_by_key["shell"])
        embedded = menu.addAction("Shell in Toolbox")
        embedded.setEnabled(self.actions_by_key["shell"].isEnabled())
        embedded.triggered.connect(lambda: self.open_shell(embedded=True))
        menu.addAction(self.actions_by_key["edit"])
        selected = self.selected()
        if len(selected) == 1:
            for url in selected[0].urls:
                menu.addAction(f"Open {url}").triggered.connect(
                    lambda _c=False, u=url: QDesktopServices.openUrl(QUrl(u))
                )
        menu.addSeparator()
        menu.addAction(self.actions_by_key["remove"])
        menu.popup(self.view.viewport().mapToGlobal(pos))


def _setting_on(value: object) -> bool:
    """A boolean from QSettings (the INI backend gives strings back)."""
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")
