"""Desktop notifications for things that happen while the user looks elsewhere.

Usage::

    notifier = Notifier(tray_icon_or_None, fallback=window.statusBar().showMessage)
    notifier.watch_session(session)            # container crashes, unhealthy, engine lost
    notifier.machines_changed(statuses)        # from the tray's refresh; a machine that stopped
    notifier.expect_machine_stop(name)         # before a user-requested stop
    notifier.open_requested.connect(shell_slot)  # (kind, id): "container"/"machine"/"engine"

Kinds (``ui.settings.NOTIFICATION_KINDS``) can each be turned off in Preferences. A container
that died with a non-zero exit code, without a ``kill``/``stop`` event before it (which is what
a user's stop sends), is a crash. Crashes are grouped per container: the first starts a short
window (``group_ms``) and every further ``die`` in it is counted, so a crash loop gives one
notification "restarted N times"; after it, the container is quiet for ``cooldown_ms``
(crashes are counted and reported with the next notification).
``notified(Notification)`` is emitted for every notification shown: tests listen to it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QSystemTrayIcon

from toolbox.engine.records import Event, EventType
from toolbox.engine.watch import ConnectionState
from toolbox.machine.model import MachineState
from ui.settings import Preferences

log = logging.getLogger(__name__)

GROUP_MS = 3000
COOLDOWN_MS = 5 * 60 * 1000
MESSAGE_MS = 8000


class NotificationKind(Enum):
    CONTAINER_EXIT = "container_exit"
    CONTAINER_UNHEALTHY = "container_unhealthy"
    MACHINE_STOPPED = "machine_stopped"
    ENGINE_LOST = "engine_lost"


@dataclass(frozen=True)
class Notification:
    """One notification. ``target`` is ("container", id), ("machine", name) or ("engine", url);
    clicking it emits ``open_requested(*target)``."""

    kind: NotificationKind
    title: str
    message: str
    target_kind: str
    target_id: str
    count: int = 1  # how many occurrences it stands for (crash loops)


@dataclass
class _Crashes:
    name: str
    count: int = 0
    exit_code: str = ""
    timer: QTimer | None = None
    last_sent: float = field(default=-1e18)
    suppressed: int = 0


class Notifier(QObject):
    """See the module docstring. Signals: notified(Notification), open_requested(str, str)."""

    notified = Signal(object)
    open_requested = Signal(str, str)

    def __init__(
        self,
        tray: QSystemTrayIcon | None = None,
        fallback: Callable[[str], Any] | None = None,
        preferences: Callable[[], Preferences] = Preferences.load,
        parent: QObject | None = None,
        group_ms: int = GROUP_MS,
        cooldown_ms: int = COOLDOWN_MS,
    ):
        super().__init__(parent)
        self.tray = tray
        self.fallback = fallback
        self.preferences = preferences
        self.group_ms = group_ms
        self.cooldown_ms = cooldown_ms
        self.last: Notification | None = None
        self._user_stopped: set[str] = set()
        self._crashes: dict[str, _Crashes] = {}
        self._unhealthy_sent: dict[str, float] = {}
        self._engine_connected = False
        self._machines: dict[str, MachineState] = {}
        self._expected_stops: set[str] = set()
        if tray is not None:
            tray.messageClicked.connect(self._clicked)

    # -- inputs -------------------------------------------------------------------------------

    def watch_session(self, session: Any) -> None:
        """Listen to an ``EngineSession``'s raw events and connection state."""
        session.events_received.connect(self.handle_events)
        session.state_changed.connect(lambda state, error: self.engine_state(state, error, session))
        self._engine_connected = bool(getattr(session, "connected", False))

    def handle_events(self, events: Sequence[Event]) -> None:
        for event in events:
            if event.type is EventType.CONTAINER:
                self._container_event(event)

    def engine_state(
        self, state: ConnectionState, error: object = None, session: Any = None
    ) -> None:
        if state is ConnectionState.CONNECTED:
            self._engine_connected = True
            return
        if state is ConnectionState.DISCONNECTED and self._engine_connected:
            self._engine_connected = False
            name = getattr(session, "name", "") or "the engine"
            why = str(getattr(error, "message", error) or "")
            url = getattr(getattr(session, "config", None), "url", "") or ""
            self._emit(
                Notification(
                    NotificationKind.ENGINE_LOST,
                    "Engine connection lost",
                    f"Lost the connection to {name}." + (f" {why}" if why else ""),
                    "engine",
                    url,
                )
            )

    def expect_machine_stop(self, name: str) -> None:
        """The user asked to stop ``name``: its stop is not news."""
        self._expected_stops.add(name)

    def machines_changed(self, statuses: Sequence[Any]) -> None:
        """Each refresh of the machines' ``MachineStatus`` list."""
        seen: dict[str, MachineState] = {}
        for status in statuses:
            seen[status.name] = status.state
            before = self._machines.get(status.name)
            if status.state is MachineState.RUNNING:
                self._expected_stops.discard(status.name)
            if (
                before is MachineState.RUNNING
                and status.state in (MachineState.STOPPED, MachineState.ERROR)
                and status.name not in self._expected_stops
            ):
                self._emit(
                    Notification(
                        NotificationKind.MACHINE_STOPPED,
                        "Machine stopped",
                        f"Machine {status.name} stopped on its own ({status.state.value}).",
                        "machine",
                        status.name,
                    )
                )
            if status.state is MachineState.STOPPED:
                self._expected_stops.discard(status.name)
        self._machines = seen

    # -- containers ---------------------------------------------------------------------------

    def _container_event(self, event: Event) -> None:
        cid = event.id
        action = event.action
        if action in ("kill", "stop"):
            self._user_stopped.add(cid)
        elif action == "start":
            self._user_stopped.discard(cid)
        elif action == "destroy":
            self._user_stopped.discard(cid)
            self._unhealthy_sent.pop(cid, None)
        elif action == "die":
            code = str(event.attributes.get("exitCode", "0"))
            if cid in self._user_stopped or code in ("", "0"):
                return
            self._crash(cid, event.attributes.get("name", cid[:12]), code)
        elif action == "health_status" and event.detail == "unhealthy":
            now = time.monotonic()
            if now - self._unhealthy_sent.get(cid, -1e18) < self.cooldown_ms / 1000:
                return
            self._unhealthy_sent[cid] = now
            name = event.attributes.get("name", cid[:12])
            self._emit(
                Notification(
                    NotificationKind.CONTAINER_UNHEALTHY,
                    "Container unhealthy",
                    f"{name} failed its health check.",
                    "container",
                    cid,
                )
            )

    def _crash(self, cid: str, name: str, code: str) -> None:
        entry = self._crashes.setdefault(cid, _Crashes(name))
        entry.name = name
        entry.exit_code = code
        if entry.timer is not None:  # inside a group window: count it
            entry.count += 1
            return
        if (time.monotonic() - entry.last_sent) * 1000 < self.cooldown_ms:
            entry.suppressed += 1
            return
        entry.count = 1 + entry.suppressed
        entry.suppressed = 0
        timer = QTimer(self)
        timer.setSingleShot(True)
        timer.setInterval(self.group_ms)
        timer.timeout.connect(lambda: self._crash_group_done(cid))
        entry.timer = timer
        timer.start()

    def _crash_group_done(self, cid: str) -> None:
        entry = self._crashes.get(cid)
        if entry is None or entry.timer is None:
            return
        entry.timer.deleteLater()
        entry.timer = None
        entry.last_sent = time.monotonic()
        if entry.count > 1:
            message = (
                f"{entry.name} keeps crashing: restarted {entry.count - 1} times"
                f" (exit code {entry.exit_code})."
            )
        else:
            message = f"{entry.name} exited with code {entry.exit_code}."
        self._emit(
            Notification(
                NotificationKind.CONTAINER_EXIT,
                "Container crashed" if entry.count > 1 else "Container exited",
                message,
                "container",
                cid,
                entry.count,
            )
        )

    # -- output -------------------------------------------------------------------------------

    def _emit(self, note: Notification) -> None:
        if not self.preferences().notifies(note.kind.value):
            return
        self.last = note
        log.info("notification: %s: %s", note.title, note.message)
        if (
            self.tray is not None
            and self.tray.isVisible()
            and QSystemTrayIcon.isSystemTrayAvailable()
            and QSystemTrayIcon.supportsMessages()
        ):
            icon = (
                QSystemTrayIcon.MessageIcon.Warning
                if note.kind is not NotificationKind.ENGINE_LOST
                else QSystemTrayIcon.MessageIcon.Critical
            )
            self.tray.showMessage(note.title, note.message, icon, MESSAGE_MS)
        elif self.fallback is not None:
            self.fallback(f"{note.title}: {note.message}")
        self.notified.emit(note)

    def _clicked(self) -> None:
        if self.last is not None:
            self.open_requested.emit(self.last.target_kind, self.last.target_id)

    def shutdown(self) -> None:
        for entry in self._crashes.values():
            if entry.timer is not None:
                entry.timer.stop()
