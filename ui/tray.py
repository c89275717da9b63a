"""The tray icon: machine state at a glance, Start/Stop per machine, Open Toolbox and Quit.

Usage::

    tray = TrayController(window, tasks)       # service: MachineService(agents=ProcessAgents())
    tray.start()                               # shows the icon (when there is a tray host)
    ...
    tray.quit()                                # the menu's Quit: stops machines if asked to

Machine states come from ``MachineService.statuses()`` on a worker, every ``interval_ms`` and
right after each action; Start/Stop run on the TaskRunner (one serial queue per machine). The
icon is the app icon with a dot for the overall state (error > starting/stopping > running >
stopped). When the platform has a tray, closing the main window hides it (the first time, a
message says so; ``Preferences.tray_hint_shown`` remembers); without one, closing quits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from PySide6.QtCore import QEvent, QObject, QRect, QTimer, Signal
from PySide6.QtGui import QAction, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import QApplication, QMenu, QSystemTrayIcon, QWidget

from resources import ResourceMissing, StateTone
from toolbox.machine.model import MachineState
from ui.settings import Preferences
from ui.single_instance import raise_window
from ui.tasks import TaskRunner

log = logging.getLogger(__name__)

REFRESH_MS = 3000
QUIT_STOP_WAIT_MS = 60_000

_BUSY = (MachineState.STARTING, MachineState.STOPPING, MachineState.CREATING)


def overall_tone(statuses: Sequence[Any]) -> StateTone:
    """One tone for the tray icon from every machine's state."""
    states = [s.state for s in statuses]
    if any(state is MachineState.ERROR for state in states):
        return StateTone.ERROR
    if any(state in _BUSY for state in states):
        return StateTone.BUSY
    if any(state is MachineState.RUNNING for state in states):
        return StateTone.RUNNING
    return StateTone.STOPPED


def tray_icon(tone: StateTone) -> QIcon:
    """The app icon with a state dot in its lower right corner."""
    from resources.qt import app_icon, state_icon

    size = 64
    pixmap = QPixmap(size, size)
    pixmap.fill(0)
    painter = QPainter(pixmap)
    try:
        try:
            painter.drawPixmap(0, 0, app_icon().pixmap(size, size))
        except ResourceMissing:
            pass
        dot = size * 3 // 8
        state_icon(tone).paint(painter, QRect(size - dot, size - dot, dot, dot))
    finally:
        painter.end()
    return QIcon(pixmap)


class TrayController(QObject):
    """See the module docstring. Signals: statuses_changed(list[MachineStatus])."""

    statuses_changed = Signal(object)

    def __init__(
        self,
        window: QWidget,
        tasks: TaskRunner,
        service: Any = None,
        notifier: Any = None,
        preferences: Callable[[], Preferences] = Preferences.load,
        interval_ms: int = REFRESH_MS,
        on_exit: Callable[[], Any] | None = None,
        parent: QObject | None = None,
    ):
        super().__init__(parent or window)
        if service is None:
            from toolbox.machine.service import MachineService, ProcessAgents

            service = MachineService(agents=ProcessAgents())
        self.window = window
        self.tasks = tasks
        self.service = service
        self.shell: Any = None  # ui.shell.Shell when installed by install_desktop
        self.notifier = notifier
        self.preferences = preferences
        self.statuses: list[Any] = []
        self.on_exit = on_exit
        self.quitting = False
        self.available = QSystemTrayIcon.isSystemTrayAvailable()
        self.icon = QSystemTrayIcon(tray_icon(StateTone.STOPPED), self)
        self.icon.setToolTip("Toolbox")
        self.menu = QMenu(window)
        self.icon.setContextMenu(self.menu)
        self.icon.activated.connect(self._on_activated)
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.refresh)
        self._submenus: list[QMenu] = []
        self._rebuild_menu()
        window.installEventFilter(self)

    def start(self) -> None:
        if self.available:
            self.icon.show()
        self.refresh()
        self._timer.start()

    # -- machines -----------------------------------------------------------------------------

    def refresh(self) -> None:
        if self.tasks.pending("tray:statuses"):
            return
        self.tasks.run(
            self.service.statuses,
            self._apply,
            lambda error: log.info("tray: cannot list machines: %s", error),
            key="tray:statuses",
            what="List machines",
            owner=self,
        )

    def _apply(self, statuses: list[Any]) -> None:
        self.statuses = list(statuses)
        self.icon.setIcon(tray_icon(overall_tone(self.statuses)))
        running = sum(1 for s in self.statuses if s.state is MachineState.RUNNING)
        self.icon.setToolTip(f"Toolbox: {running} of {len(self.statuses)} machines running")
        self._rebuild_menu()
        if self.notifier is not None:
            self.notifier.machines_changed(self.statuses)
        self.statuses_changed.emit(self.statuses)

    def start_machine(self, name: str) -> None:
        shell = self.shell
        if shell is not None:  # through the shell, so the window follows the machine
            shell.start_machine(name, on_done=self.refresh)
            QTimer.singleShot(0, self.refresh)
            return
        self.tasks.run(
            lambda: self.service.start(name),
            lambda _spec: self.refresh(),
            self._action_failed,
            key=f"machine:{name}",
            what=f"Start {name}",
            owner=self,
        )
        QTimer.singleShot(0, self.refresh)

    def stop_machine(self, name: str) -> None:
        if self.notifier is not None:
            self.notifier.expect_machine_stop(name)
        shell = self.shell
        if shell is not None:
            shell.stop_machine(name)
            QTimer.singleShot(0, self.refresh)
            return
        self.tasks.run(
            lambda: self.service.stop(name),
            lambda _spec: self.refresh(),
            self._action_failed,
            key=f"machine:{name}",
            what=f"Stop {name}",
            owner=self,
        )
        QTimer.singleShot(0, self.refresh)

    def _action_failed(self, error: Any) -> None:
        log.warning("tray: %s", error)
        if self.available and self.icon.isVisible():
            self.icon.showMessage("Toolbox", str(getattr(error, "message", error)))
        self.refresh()

    # -- menu ---------------------------------------------------------------------------------

    def _rebuild_menu(self) -> None:
        from resources.qt import state_icon

        self.menu.clear()
        for old in self._submenus:
            old.deleteLater()
        self._submenus = []
        self._actions: dict[str, QAction] = {}
        if not self.statuses:
            none = self.menu.addAction("No machines")
            none.setEnabled(False)
        for status in self.statuses:
            sub = self.menu.addMenu(
                state_icon(status.state), f"{status.name}: {status.state.value}"
            )
            self._submenus.append(sub)
            start = sub.addAction("Start")
            start.setObjectName(f"start:{status.name}")
            start.setEnabled(status.state in (MachineState.STOPPED, MachineState.ERROR))
            start.triggered.connect(lambda _=False, n=status.name: self.start_machine(n))
            stop = sub.addAction("Stop")
            stop.setObjectName(f"stop:{status.name}")
            stop.setEnabled(status.state in (MachineState.RUNNING, MachineState.STARTING))
            stop.triggered.connect(lambda _=False, n=status.name: self.stop_machine(n))
            self._actions[start.objectName()] = start
            self._actions[stop.objectName()] = stop
        self.menu.addSeparator()
        open_action = self.menu.addAction("Open Toolbox")
        open_action.setObjectName("open")
        open_action.triggered.connect(self.open_window)
        quit_action = self.menu.addAction("Quit Toolbox")
        quit_action.setObjectName("quit")
        quit_action.triggered.connect(self.quit)
        self._actions["open"] = open_action
        self._actions["quit"] = quit_action

    def action(self, object_name: str) -> QAction | None:
        """The menu action named ``start:NAME``, ``stop:NAME``, ``open`` or ``quit``."""
        return self._actions.get(object_name)

    def open_window(self) -> None:
        raise_window(self.window)

    def _on_activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason is QSystemTrayIcon.ActivationReason.Trigger:
            self.open_window()

    # -- close to tray, quit ------------------------------------------------------------------

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.window and event.type() is QEvent.Type.Close and not self.quitting:
            if self.available and self.icon.isVisible():
                event.ignore()
                self.window.hide()
                prefs = self.preferences()
                if not prefs.tray_hint_shown:
                    self.icon.showMessage(
                        "Toolbox is still running",
                        "Toolbox keeps running in the tray. Use Quit in its menu to exit.",
                    )
                    replace(prefs, tray_hint_shown=True).save()
                return True
            # No tray host: closing the window quits the app.
            QTimer.singleShot(0, self.quit)
        return False

    def quit(self) -> None:
        """Quit the app; with ``stop_on_quit``, stop running machines first (bounded wait)."""
        if self.quitting:
            return
        self.quitting = True
        self._timer.stop()
        running = [s.name for s in self.statuses if s.state is MachineState.RUNNING]
        if not (self.preferences().stop_on_quit and running):
            self._exit()
            return
        left = set(running)
        deadline = QTimer(self)
        deadline.setSingleShot(True)
        deadline.timeout.connect(self._exit)
        deadline.start(QUIT_STOP_WAIT_MS)

        def done(name: str) -> None:
            left.discard(name)
            if not left:
                deadline.stop()
                self._exit()

        for name in running:
            if self.notifier is not None:
                self.notifier.expect_machine_stop(name)
            self._stop_for_quit(name, done)

    def _stop_for_quit(self, name: str, done: Callable[[str], None]) -> None:
        self.tasks.run(
            lambda: self.service.stop(name),
            lambda _spec: done(name),
            lambda _error: done(name),
            key=f"machine:{name}",
            what=f"Stop {name}",
        )

    def _exit(self) -> None:
        self.icon.hide()
        self.window.close()
        if self.on_exit is not None:
            self.on_exit()
            return
        app = QApplication.instance()
        if app is not None:
            app.quit()


def install_desktop(
    app: QApplication, window: Any, tasks: TaskRunner, launcher: Any = None
) -> None:
    """Theme, tray, notifications and the Preferences action for the main window. Built after
    the window's first paint (the machine service and engine modules import docker-py); the
    TrayController is parented to the window. The launcher's ``session`` is watched once it
    exists."""
    first_painted = getattr(window, "first_painted", None)
    if first_painted is not None:
        first_painted.connect(
            lambda: QTimer.singleShot(0, lambda: _install(app, window, tasks, launcher))
        )
    else:
        _install(app, window, tasks, launcher)


def _install(app: QApplication, window: Any, tasks: TaskRunner, launcher: Any) -> TrayController:
    from ui.notifications import Notifier
    from ui.preferences import install_preferences_action
    from ui.theme import apply_theme

    if getattr(window, "_desktop_tray", None) is not None:
        tray: TrayController = window._desktop_tray
        return tray
    apply_theme(app, Preferences.load().theme)
    if hasattr(window, "menuBar"):
        install_preferences_action(window)
    status = window.statusBar() if hasattr(window, "statusBar") else None
    notifier = Notifier(
        None, fallback=(lambda text: status.showMessage(text, 10_000)) if status else None
    )
    shell = launcher if hasattr(launcher, "session_changed") else None
    service = shell.machines if shell is not None else None
    tray = TrayController(window, tasks, service=service, notifier=notifier)
    tray.shell = shell
    if shell is not None:
        shell.machines_changed.connect(tray.refresh)
    window._desktop_tray = tray
    notifier.tray = tray.icon
    tray.icon.messageClicked.connect(notifier._clicked)

    def open_requested(kind: str, _id: str) -> None:
        tray.open_window()
        if hasattr(window, "select_page"):
            window.select_page("machines" if kind.startswith("machine") else "containers")

    notifier.open_requested.connect(open_requested)
    if tray.available:
        app.setQuitOnLastWindowClosed(False)
    tray.start()
    watched: list[object] = []

    def hook_session() -> None:
        session = getattr(launcher, "session", None)
        if session is not None and session not in watched:
            watched.append(session)
            notifier.watch_session(session)

    poll = QTimer(tray)
    poll.setInterval(500)
    poll.timeout.connect(hook_session)
    poll.start()
    hook_session()
    return tray
