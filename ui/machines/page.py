"""The Machines page: every machine with its state, and what can be done with it.

The list comes from ``MachineService.statuses()`` on a worker, every 1.5 s while the page is
shown (a local check of the hypervisor's process and the store: no network), so a
``toolbox stop`` in a terminal or a qemu killed with ``kill -9`` shows within 2 s; nothing
runs while the page is hidden. Actions run on the machine's own serial queue through the
shell (``ui.shell``), so the engine pages follow: Start attaches them to the machine's engine,
Stop turns them into the "stopped, Start" placeholder. With no machine at all, the page is the
guided first-run create.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QLabel,
    QMessageBox,
    QStackedWidget,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from toolbox.errors import ToolboxError
from toolbox.machine.model import MachineState
from toolbox.machine.service import (
    MachineService,
    MachineStatus,
    ProcessAgents,
    console_log_path,
    provision_log_path,
)
from toolbox.machine.usage import MachineUsage
from ui.machines.create_panel import CreatePanel
from ui.machines.model import NAME, MachinesModel
from ui.machines.no_hypervisor import NoHypervisorPanel, service_probe
from ui.models.table import RecordSortProxy
from ui.pages import Page, PageContext
from ui.tasks import show_error
from ui.widgets.record_view import record_table_view

REFRESH_MS = 1500
#: After a failed engine version request (the engine is still coming up), wait this long.
VERSION_RETRY_S = 30.0
VERSION_TIMEOUT_S = 3.0


def engine_version(service: MachineService, name: str) -> str:
    """The Docker version of machine ``name``'s engine (one request; call off the GUI)."""
    from toolbox.engine.resolve import engine_config_for_machine

    client = engine_config_for_machine(service, name).connect(timeout=VERSION_TIMEOUT_S)
    try:
        return str(client.info().version)
    finally:
        client.close()


@dataclass
class Survey:
    """One refresh, measured on the worker: the statuses, each machine's usage, and the
    engine versions known per start (name -> (start marker, version)), with the times of
    failed version requests (name -> monotonic)."""

    statuses: list[MachineStatus]
    usage: dict[str, MachineUsage] = field(default_factory=dict)
    versions: dict[str, tuple[object, str]] = field(default_factory=dict)
    failed: dict[str, float] = field(default_factory=dict)


def survey(
    service: MachineService,
    versions: dict[str, tuple[object, str]],
    failed: dict[str, float],
    ask_version: Callable[[MachineService, str], str] = engine_version,
    now: Callable[[], float] = time.monotonic,
) -> Survey:
    """Statuses, usage, and engine versions asked once per start of each running machine
    (a start is marked by its VM process's start time); a failed request is retried after
    ``VERSION_RETRY_S``. Runs on a worker: it reads files and may ask an engine."""
    result = Survey(service.statuses())
    for status in result.statuses:
        try:
            usage = service.usage(status)
        except (ToolboxError, OSError):
            continue
        result.usage[status.name] = usage
        if status.state is not MachineState.RUNNING:
            continue  # a stopped machine forgets its version: the next start asks again
        marker = usage.started_at
        known = versions.get(status.name)
        if known is not None and known[0] == marker:
            result.versions[status.name] = known
            continue
        last = failed.get(status.name)
        if last is not None and now() - last < VERSION_RETRY_S:
            result.failed[status.name] = last
            continue
        try:
            result.versions[status.name] = (marker, ask_version(service, status.name))
        except (ToolboxError, OSError):
            result.failed[status.name] = now()
    return result


#: key, label, shortcut, which states allow it
ACTIONS: tuple[tuple[str, str, str, tuple[MachineState, ...]], ...] = (
    ("start", "Start", "Ctrl+Shift+S", (MachineState.STOPPED, MachineState.ERROR)),
    ("stop", "Stop", "Ctrl+Shift+X", (MachineState.RUNNING, MachineState.PAUSED)),
    ("restart", "Restart", "Ctrl+Shift+R", (MachineState.RUNNING,)),
    ("kill", "Kill", "", (MachineState.RUNNING, MachineState.PAUSED, MachineState.UNKNOWN)),
    ("remove", "Delete…", "", tuple(MachineState)),
    ("log", "Console log", "Ctrl+L", tuple(MachineState)),
    ("provision_log", "Provisioning log", "", tuple(MachineState)),
    ("agent_log", "Agent log", "", tuple(MachineState)),
    ("env", "Copy env line", "Ctrl+Shift+C", (MachineState.RUNNING,)),
    ("terminal", "Open terminal", "Ctrl+T", (MachineState.RUNNING,)),
)


class MachinesPage(Page):
    """Machines list, actions, and the create form."""

    needs_engine: ClassVar[bool] = False

    def __init__(self, context: PageContext, parent: QWidget | None = None):
        super().__init__(context, parent)
        service = context.machines
        if service is None:
            service = MachineService(agents=ProcessAgents())
        self.service: MachineService = service
        self.loaded = False
        self.model = MachinesModel(self)
        self.proxy = RecordSortProxy(self.model, self)
        self.view = record_table_view(self.proxy, self.model, "machinesTable", NAME)
        self.view.selectionModel().selectionChanged.connect(lambda *_: self._update_actions())
        self.view.doubleClicked.connect(lambda _i: self.act("start"))
        self.message = QLabel()
        self.message.setObjectName("machinesMessage")
        self.message.setWordWrap(True)

        self.toolbar = QToolBar()
        self.toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.actions_by_key: dict[str, QAction] = {}
        create = QAction("Create…", self)
        create.setShortcut(QKeySequence("Ctrl+Shift+N"))
        create.triggered.connect(self.show_create)
        self.toolbar.addAction(create)
        self.toolbar.addSeparator()
        for key, label, shortcut, _states in ACTIONS:
            action = QAction(label, self)
            if shortcut:
                action.setShortcut(QKeySequence(shortcut))
                action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
                action.setToolTip(f"{label} ({shortcut})")
            action.triggered.connect(lambda _c=False, k=key: self.act(k))
            self.toolbar.addAction(action)
            self.actions_by_key[key] = action

        list_box = QWidget()
        list_layout = QVBoxLayout(list_box)
        list_layout.setContentsMargins(0, 0, 0, 0)
        list_layout.addWidget(self.toolbar)
        list_layout.addWidget(self.view, 1)
        list_layout.addWidget(self.message)
        self.create_panel = CreatePanel(self.service, self.tasks, first_run=True)
        self.create_panel.created.connect(self._created)
        self.create_panel.cancelled.connect(self._create_closed)
        self.no_hypervisor = NoHypervisorPanel(service_probe(self.service), self.tasks)
        self.no_hypervisor.checked.connect(self._hypervisor_checked)
        self.stack = QStackedWidget()
        self.stack.addWidget(list_box)
        self.stack.addWidget(self.create_panel)
        self.stack.addWidget(self.no_hypervisor)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.stack)

        self.timer = QTimer(self)
        self.timer.setInterval(REFRESH_MS)
        self.timer.timeout.connect(self.refresh)
        shell = context.shell
        if shell is not None:
            shell.machines_changed.connect(self.refresh)
            shell.machine_busy.connect(lambda _n, _w: self.refresh())
        self._refreshing = False
        self.versions: dict[str, tuple[object, str]] = {}
        self._version_failed: dict[str, float] = {}
        #: How the engine version is asked; None: ``engine_version``.
        self.ask_version: Callable[[MachineService, str], str] | None = None
        self._update_actions()
        self.refresh()

    # -- list -----------------------------------------------------------------------------

    def refresh(self) -> None:
        if self._refreshing:
            return
        self._refreshing = True
        versions, failed = dict(self.versions), dict(self._version_failed)
        ask = self.ask_version or engine_version
        self.tasks.run(
            lambda: survey(self.service, versions, failed, ask),
            self._refreshed,
            self._refresh_failed,
            owner=self,
            what="List machines",
        )

    def _refreshed(self, found: Survey) -> None:
        self._refreshing = False
        first = not self.loaded
        self.loaded = True
        statuses = found.statuses
        self.versions, self._version_failed = found.versions, found.failed
        self.model.set_records(statuses)
        self.model.set_extras(found.usage, {n: v for n, (_m, v) in found.versions.items()})
        if first and not statuses:
            self.show_create()
        elif first and statuses and self.view.selectionModel().selectedRows() == []:
            self.view.selectRow(0)
        self._update_actions()

    def _refresh_failed(self, error: ToolboxError) -> None:
        self._refreshing = False
        self.message.setText(f"Cannot list machines: {error.message}")

    def selected(self) -> list[MachineStatus]:
        rows = sorted({i.row() for i in self.view.selectionModel().selectedRows()})
        return [self.proxy.record_at(r) for r in rows]

    def _update_actions(self) -> None:
        chosen = self.selected()
        for key, _label, _shortcut, states in ACTIONS:
            ok = len(chosen) == 1 and chosen[0].state in states and not chosen[0].busy
            if key == "log":
                ok = len(chosen) == 1
            self.actions_by_key[key].setEnabled(ok)

    # -- actions --------------------------------------------------------------------------

    def act(self, key: str) -> None:
        chosen = self.selected()
        if len(chosen) != 1:
            return
        name = chosen[0].name
        shell = self.context.shell
        if key == "start":
            if shell is not None:
                shell.start_machine(name)
            else:
                self._run(name, "Start", lambda: self.service.start(name))
        elif key == "stop":
            if shell is not None:
                shell.stop_machine(name)
            else:
                self._run(name, "Stop", lambda: self.service.stop(name))
        elif key == "restart":
            self._run(name, "Restart", lambda: self.service.restart(name), started=True)
        elif key == "kill":
            self._run(name, "Kill", lambda: self.service.kill(name), stopped=True)
        elif key == "remove":
            self.confirm_remove(chosen[0])
        elif key == "log":
            from ui.machines.log_view import LogWindow

            LogWindow.open_for(console_log_path(name), f"Console log of {name}", self.window())
        elif key == "provision_log":
            from ui.machines.log_view import LogWindow

            LogWindow.open_for(
                provision_log_path(name), f"Provisioning log of {name}", self.window()
            )
        elif key == "agent_log":
            from toolbox.agent.state import log_path
            from ui.machines.log_view import LogWindow

            LogWindow.open_for(log_path(name), f"Host agent log of {name}", self.window())
        elif key == "env":
            self.copy_env_line(name)
        elif key == "terminal":
            self.open_terminal(name)

    def _run(
        self,
        name: str,
        verb: str,
        fn: Any,
        started: bool = False,
        stopped: bool = False,
    ) -> None:
        self.message.setText(f"{verb} {name}…")
        shell = self.context.shell

        def done(_result: object) -> None:
            self.message.setText(f"{verb} {name}: done")
            if shell is not None and started:
                shell.machine_started(name)
            if shell is not None and stopped:
                shell.machine_stopped(name)
            self.refresh()

        def failed(error: ToolboxError) -> None:
            self.message.setText(f"{verb} {name} failed: {error.message}")
            show_error(error, self, f"{verb} machine {name}")
            self.refresh()

        self.tasks.run(fn, done, failed, key=f"machine:{name}", owner=self, what=f"{verb} {name}")

    def removal_text(self, status: MachineStatus) -> str:
        """What the delete confirmation lists as lost."""
        lines = [f"Delete machine {status.name}?", "", "This removes, for good:"]
        lines.append(
            "• the VM and its disk" + (f" ({status.spec.disk_gib} GiB)" if status.spec else "")
        )
        session = self.context.session
        shell = self.context.shell
        if session is not None and shell is not None and shell.choice == f"machine:{status.name}":
            lines.append(
                f"• its {len(session.containers())} containers, {len(session.images())} images "
                f"and {len(session.volumes())} volumes"
            )
        else:
            lines.append("• every container, image and volume in it")
        lines.append("• its certificates, keys and Docker CLI context")
        return "\n".join(lines)

    def confirm_remove(self, status: MachineStatus) -> QMessageBox:
        box = QMessageBox(
            QMessageBox.Icon.Warning,
            "Delete machine",
            self.removal_text(status),
            QMessageBox.StandardButton.Cancel,
            self,
        )
        delete = box.addButton("Delete", QMessageBox.ButtonRole.DestructiveRole)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.setObjectName("removeMachineBox")
        name = status.name

        def answered(_r: int) -> None:
            if box.clickedButton() is delete:
                self._run(
                    name, "Delete", lambda: self.service.remove(name, force=True), stopped=True
                )

        box.finished.connect(answered)
        box.open()
        return box

    def env_line(self, name: str) -> str:
        from toolbox.shellenv import detect_shell, eval_line

        return eval_line(detect_shell(), name)

    def copy_env_line(self, name: str) -> None:
        line = self.env_line(name)
        clipboard = QGuiApplication.clipboard()
        if clipboard is not None:
            clipboard.setText(line)
        self.message.setText(f"Copied: {line}")

    def open_terminal(self, name: str) -> None:
        import shutil

        from ui.containers.terminal import launch, terminal_command

        def start(env: Any) -> None:
            shell_cmd = (
                ["cmd.exe"]
                if platform.system() == "Windows"
                else [env.get("SHELL_BIN", "") or "sh"]
            )
            cmd = terminal_command(platform.system(), shell_cmd, shutil.which, f"Toolbox: {name}")
            if cmd is None:
                self.message.setText("No terminal application was found.")
                return
            launch(cmd, env)
            self.message.setText(f"Opened a terminal for {name}.")

        def environment() -> dict[str, str]:
            import os

            env = self.service.env(name).as_environ()
            env["SHELL_BIN"] = os.environ.get("SHELL", "")
            return env

        self.tasks.run(environment, start, owner=self, what=f"Open a terminal for {name}")

    # -- create ---------------------------------------------------------------------------

    def show_create(self) -> None:
        """The create form; instead, what to install, when no hypervisor is usable (the
        check runs on a worker and switches the view when it answers)."""
        if self.no_hypervisor.usable is False:
            self.stack.setCurrentWidget(self.no_hypervisor)
        else:
            self.stack.setCurrentWidget(self.create_panel)
            self.create_panel.name_edit.setFocus()
        self.no_hypervisor.check()

    def _hypervisor_checked(self, usable: bool) -> None:
        current = self.stack.currentWidget()
        if not usable and current is self.create_panel and self.create_panel.mode == "form":
            self.stack.setCurrentWidget(self.no_hypervisor)
        elif usable and current is self.no_hypervisor:
            self.stack.setCurrentWidget(self.create_panel)
            self.create_panel._probe()  # its hypervisor line and Create button follow
            self.create_panel.name_edit.setFocus()

    def _created(self, name: str) -> None:
        self.stack.setCurrentIndex(0)
        self.refresh()
        shell = self.context.shell
        if shell is not None:
            shell.machine_started(name)

    def _create_closed(self) -> None:
        if self.model.rowCount() > 0:
            self.stack.setCurrentIndex(0)

    # -- visibility -----------------------------------------------------------------------

    def page_shown(self) -> None:
        self.refresh()
        self.timer.start()

    def page_hidden(self) -> None:
        self.timer.stop()

    def shutdown(self) -> None:
        self.timer.stop()
