"""The containers page's compose projects: a collapsible tree (project row with its state
summary, its services' containers under it), project actions, up/down from a compose file
through the compose CLI, and one log pane for compose's output and the project's aggregated
logs (each line prefixed with its service in that service's colour).

The tree is rebuilt from the page's list records (no engine request) and only when the
projects changed; expanded rows stay expanded. Everything slow runs through the task runner.

Signals:
    busy_changed(bool): a compose command started or ended.
    container_activated(str): a container row was double-clicked (its id).
"""

from __future__ import annotations

import html
import threading
from collections.abc import Callable, Iterable
from typing import Any

from PySide6.QtCore import QModelIndex, Qt, QUrl, Signal
from PySide6.QtGui import QAction, QColor, QDesktopServices, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QToolBar,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from toolbox.engine import compose
from toolbox.engine.compose import ComposeProject, ComposeRun, ProjectLogs, ServiceLine
from toolbox.engine.records import Container
from toolbox.errors import ToolboxError
from ui.containers.model import STATE_COLORS
from ui.session import EngineSession
from ui.tasks import on_gui
from ui.widgets.error_dialog import ErrorDialog

PROJECT_ROLE = Qt.ItemDataRole.UserRole + 1
CONTAINER_ROLE = Qt.ItemDataRole.UserRole + 2
SERVICE_COLORS = ("#1565c0", "#2e7d32", "#ad1457", "#e65100", "#6a1b9a", "#00838f", "#795548")
MAX_LOG_LINES = 5000


def service_color(services: tuple[str, ...], service: str) -> str:
    index = services.index(service) if service in services else len(services)
    return SERVICE_COLORS[index % len(SERVICE_COLORS)]


class ComposePanel(QWidget):
    """Projects tree + actions + log pane; see the module docstring."""

    busy_changed = Signal(bool)
    container_activated = Signal(str)

    def __init__(self, session: EngineSession, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.projects: dict[str, ComposeProject] = {}
        self.run: ComposeRun | None = None
        self.logs: ProjectLogs | None = None
        self.logs_project: ComposeProject | None = None
        self.last_error: ErrorDialog | None = None
        self.confirm_box: QMessageBox | None = None
        self._signature: tuple[Any, ...] = ()
        self._known: set[str] = set()  # projects already shown (new ones start expanded)

        self.model = QStandardItemModel(0, 3, self)
        self.model.setHorizontalHeaderLabels(["Project / service", "State", "Folder / container"])
        self.tree = QTreeView()
        self.tree.setObjectName("composeTree")
        self.tree.setModel(self.model)
        self.tree.setUniformRowHeights(True)
        self.tree.setColumnWidth(0, 240)
        self.tree.setColumnWidth(1, 110)
        self.tree.selectionModel().selectionChanged.connect(lambda *_: self.update_actions())
        self.tree.doubleClicked.connect(self._activated)

        self.toolbar = QToolBar()
        self.toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.project_actions: dict[str, QAction] = {}
        for key, label, slot in (
            ("up", "Up…", self.choose_up),
            ("down", "Down", self.down_selected),
            ("start", "Start", lambda: self.project_action("start")),
            ("stop", "Stop", lambda: self.project_action("stop")),
            ("restart", "Restart", lambda: self.project_action("restart")),
            ("remove", "Remove", self.confirm_remove),
            ("logs", "Logs", self.follow_selected_logs),
            ("folder", "Open folder", self.open_folder),
        ):
            action = self.toolbar.addAction(label)
            action.triggered.connect(lambda _c=False, s=slot: s())
            self.project_actions[key] = action

        self.output = QPlainTextEdit()
        self.output.setObjectName("composeOutput")
        self.output.setReadOnly(True)
        self.output.setMaximumBlockCount(MAX_LOG_LINES)
        self.output_title = QLabel("Compose output and project logs")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.message = QLabel()

        log_box = QWidget()
        log_layout = QVBoxLayout(log_box)
        log_layout.setContentsMargins(0, 0, 0, 0)
        head = QHBoxLayout()
        head.addWidget(self.output_title, 1)
        head.addWidget(self.cancel_button)
        log_layout.addLayout(head)
        log_layout.addWidget(self.output, 1)
        tree_box = QWidget()
        tree_layout = QVBoxLayout(tree_box)
        tree_layout.setContentsMargins(0, 0, 0, 0)
        tree_layout.addWidget(self.toolbar)
        tree_layout.addWidget(self.tree, 1)
        tree_layout.addWidget(self.message)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(tree_box)
        splitter.addWidget(log_box)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)
        self.update_actions()

    # -- data ---------------------------------------------------------------------------------

    def set_containers(self, containers: Iterable[Container]) -> None:
        """Regroup (no request); the tree is rebuilt only when a project changed."""
        projects, _loose = compose.group_projects(containers)
        signature = tuple(
            (p.name, p.working_dir, tuple((c.id, c.name, c.state) for c in p.containers))
            for p in projects
        )
        self.projects = {p.name: p for p in projects}
        if signature == self._signature:
            return
        self._signature = signature
        expanded = {
            self.model.item(r).data(PROJECT_ROLE)
            for r in range(self.model.rowCount())
            if self.tree.isExpanded(self.model.index(r, 0))
        }
        selected = self.selected_project()
        self.model.removeRows(0, self.model.rowCount())
        for project in projects:
            row = self._project_row(project)
            self.model.appendRow(row)
            index = self.model.indexFromItem(row[0])
            self.tree.setExpanded(index, project.name in expanded or not self._seen(project))
            if selected is not None and selected.name == project.name:
                self.tree.setCurrentIndex(index)
        self._known = set(self.projects)
        self.update_actions()

    def _seen(self, project: ComposeProject) -> bool:
        return project.name in self._known

    def _project_row(self, project: ComposeProject) -> list[QStandardItem]:
        name = QStandardItem(project.name)
        name.setData(project.name, PROJECT_ROLE)
        name.setToolTip(", ".join(project.config_files) or project.name)
        state = QStandardItem(project.summary)
        state.setData(project.name, PROJECT_ROLE)
        folder = QStandardItem(project.working_dir or "")
        folder.setData(project.name, PROJECT_ROLE)
        services = project.services
        for c in project.containers:
            service = compose.service_of(c)
            child = QStandardItem(service)
            child.setForeground(QColor(service_color(services, service)))
            child_state = QStandardItem(c.state.label)
            child_state.setForeground(STATE_COLORS[c.state])
            child_name = QStandardItem(c.name)
            for item in (child, child_state, child_name):
                item.setData(project.name, PROJECT_ROLE)
                item.setData(c.id, CONTAINER_ROLE)
                item.setEditable(False)
            name.appendRow([child, child_state, child_name])
        for item in (name, state, folder):
            item.setEditable(False)
        return [name, state, folder]

    def _activated(self, index: QModelIndex) -> None:
        container_id = index.data(CONTAINER_ROLE)
        if container_id:
            self.container_activated.emit(str(container_id))

    def project_row(self, name: str) -> QModelIndex:
        for r in range(self.model.rowCount()):
            if self.model.item(r).data(PROJECT_ROLE) == name:
                return self.model.index(r, 0)
        return QModelIndex()

    def select_project(self, name: str) -> None:
        index = self.project_row(name)
        if index.isValid():
            self.tree.setCurrentIndex(index)

    def selected_project(self) -> ComposeProject | None:
        index = self.tree.currentIndex()
        if not index.isValid():
            return None
        name = index.data(PROJECT_ROLE)
        return self.projects.get(str(name)) if name else None

    def update_actions(self) -> None:
        project = self.selected_project()
        online = self.session.connected
        busy = self.run is not None
        self.project_actions["up"].setEnabled(online and not busy)
        for key in ("start", "stop", "restart", "remove", "logs"):
            self.project_actions[key].setEnabled(online and project is not None)
        self.project_actions["down"].setEnabled(
            online and not busy and project is not None and bool(project.config_files)
        )
        self.project_actions["folder"].setEnabled(project is not None and bool(project.working_dir))
        self.cancel_button.setEnabled(busy or self.logs is not None)

    # -- project actions ----------------------------------------------------------------------

    def project_action(self, key: str, name: str | None = None) -> None:
        project = self.projects.get(name) if name else self.selected_project()
        if project is None:
            return
        calls: dict[str, Callable[[Any, str], object]] = {
            "start": compose.start_project,
            "stop": compose.stop_project,
            "restart": compose.restart_project,
            "remove": compose.remove_project,
        }
        call = calls[key]
        verb = key.capitalize()
        self.message.setText(f"{verb} project {project.name}…")

        def done(_result: object) -> None:
            self.message.setText(f"{verb} project {project.name}: done.")

        self.session.call(
            lambda client: call(client, project.name),
            done,
            lambda error: self._failed(f"{verb} project {project.name} failed", error),
            key=f"compose:{project.name}",
            what=f"{verb} project {project.name}",
            owner=self,
        )

    def confirm_remove(self) -> QMessageBox | None:
        """Ask before removing the project's containers and networks."""
        project = self.selected_project()
        if project is None:
            return None
        box = QMessageBox(self.window())
        box.setIcon(QMessageBox.Icon.Warning)
        box.setWindowTitle("Remove compose project")
        box.setText(f"Remove project {project.name}?")
        box.setInformativeText(
            f"Its {len(project.containers)} containers (running ones are stopped first) and "
            "its networks are removed; named volumes are kept."
        )
        remove = box.addButton("Remove", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)

        def finished() -> None:
            if box.clickedButton() is remove:
                self.project_action("remove", project.name)
            self.confirm_box = None

        box.finished.connect(lambda _r: finished())
        self.confirm_box = box
        box.open()
        return box

    def open_folder(self, opener: Callable[[QUrl], bool] = QDesktopServices.openUrl) -> bool:
        project = self.selected_project()
        if project is None or not project.working_dir:
            return False
        if not compose.folder_on_host(project):
            self.message.setText(
                f"The folder {project.working_dir} is not on this computer: project "
                f"{project.name} was started from another host (or the folder was moved)."
            )
            return False
        return bool(opener(QUrl.fromLocalFile(project.working_dir)))

    # -- compose up/down ----------------------------------------------------------------------

    def choose_up(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Compose file", "", "Compose files (*.yml *.yaml);;All files (*)"
        )
        if path:
            self.compose("up", [path])

    def down_selected(self) -> None:
        project = self.selected_project()
        if project is not None:
            self.compose("down", list(project.config_files), project.name)

    def compose(self, action: str, files: list[str], project: str | None = None) -> None:
        """Run ``compose action`` against the session's engine, output into the log pane."""
        if self.run is not None:
            return
        self.stop_logs()
        self.output.clear()
        self.output_title.setText(f"compose {action}: {', '.join(files)}")
        try:
            run = compose.compose_run(
                self.session.config, action, files, project=project, on_line=on_gui(self._line)
            )
        except ToolboxError as error:
            self._failed(f"compose {action} failed", error)
            return
        self.run = run
        self.output.appendPlainText("$ " + " ".join(run.argv))
        self.busy_changed.emit(True)
        self.update_actions()

        def finished(result: object = None, error: ToolboxError | None = None) -> None:
            self.run = None
            self.busy_changed.emit(False)
            self.update_actions()
            if error is not None:
                self._failed(f"compose {action} failed", error)
            elif run.cancelled:
                self.output.appendPlainText("Cancelled.")
            else:
                self.output.appendPlainText(f"compose {action} finished.")

        self.session.tasks.run(
            run.run,
            lambda result: finished(result),
            lambda error: finished(None, error),
            what=f"compose {action}",
            owner=self,
        )

    def _line(self, text: str) -> None:
        self.output.appendPlainText(text)

    def cancel(self) -> None:
        """Cancel compose (its process group, off the GUI thread) or stop following logs."""
        run = self.run
        if run is not None:
            self.output.appendPlainText("Cancelling…")
            threading.Thread(target=run.cancel, daemon=True).start()
        self.stop_logs()

    # -- aggregated logs ----------------------------------------------------------------------

    def follow_selected_logs(self) -> None:
        project = self.selected_project()
        if project is not None:
            self.follow_logs(project)

    def follow_logs(self, project: ComposeProject, tail: int = 200) -> None:
        self.stop_logs()
        self.output.clear()
        self.output_title.setText(f"Logs of project {project.name}")
        logs = ProjectLogs(on_gui(self._log_lines))
        self.logs = logs
        self.logs_project = project
        self.update_actions()
        self.session.call(
            lambda client: logs.follow(client, project.containers, tail=tail),
            None,
            lambda error: self._failed(f"Logs of project {project.name} failed", error),
            what=f"Follow the logs of project {project.name}",
            owner=self,
        )

    def _log_lines(self, lines: list[ServiceLine]) -> None:
        project = self.logs_project
        if project is None:
            return
        services = project.services
        width = max((len(s) for s in services), default=0)
        for entry in lines:
            color = service_color(services, entry.service)
            prefix = html.escape(entry.service.ljust(width))
            text = html.escape(entry.line.text)
            self.output.appendHtml(
                f'<span style="color:{color}; white-space:pre">{prefix} |</span> '
                f'<span style="white-space:pre">{text}</span>'
            )

    def stop_logs(self) -> None:
        logs = self.logs
        self.logs = None
        self.logs_project = None
        if logs is not None:
            threading.Thread(target=logs.close, daemon=True).start()
        self.update_actions()

    def shutdown(self) -> None:
        if self.run is not None:
            self.run.cancel()
        if self.logs is not None:
            self.logs.close()
            self.logs = None

    def _failed(self, what: str, error: ToolboxError) -> None:
        self.message.setText(what)
        dialog = ErrorDialog(what, error.message, error.hint, error.details, self.window())
        self.last_error = dialog
        dialog.show()
