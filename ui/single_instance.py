"""One running Toolbox per user (and per ``TOOLBOX_HOME``): a second launch asks the first to
show its window and exits.

Usage (at the very start of ``main()``, before the window is built)::

    instance = SingleInstance()
    if not instance.acquire():          # another Toolbox answered: it was told to activate
        return 0
    instance.activated.connect(window_raiser)

The key is a local socket named from the user and a hash of ``TOOLBOX_HOME`` (so test runs with
their own home never see the user's app). A stale socket left by a crashed process is removed.
"""

from __future__ import annotations

import getpass
import hashlib
import logging
import os

from PySide6.QtCore import QObject, Signal
from PySide6.QtNetwork import QLocalServer, QLocalSocket

log = logging.getLogger(__name__)

ACTIVATE = b"activate\n"
CONNECT_TIMEOUT_MS = 500


def server_name(home: str | None = None) -> str:
    """The local socket name for this user and Toolbox home."""
    home = home if home is not None else os.environ.get("TOOLBOX_HOME", "")
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        user = str(os.getuid()) if hasattr(os, "getuid") else "user"
    digest = hashlib.sha256(home.encode()).hexdigest()[:12]
    return f"toolbox-{user}-{digest}"


class SingleInstance(QObject):
    """Signals: activated(): another launch asked this one to show its window."""

    activated = Signal()

    def __init__(self, name: str | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.name = name or server_name()
        self.server: QLocalServer | None = None
        self.activations = 0

    def acquire(self) -> bool:
        """True when this process is the first instance (and now listens); False when another
        instance answered and was sent "activate"."""
        if self._notify_running():
            return False
        server = QLocalServer(self)
        server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        if not server.listen(self.name):
            # A stale socket file from a crashed instance: nobody answered, so remove and retry.
            QLocalServer.removeServer(self.name)
            if not server.listen(self.name):
                log.warning(
                    "single instance: cannot listen on %s: %s", self.name, server.errorString()
                )
                return True
        server.newConnection.connect(self._on_connection)
        self.server = server
        return True

    def release(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None

    def _notify_running(self) -> bool:
        socket = QLocalSocket()
        socket.connectToServer(self.name)
        if not socket.waitForConnected(CONNECT_TIMEOUT_MS):
            return False
        socket.write(ACTIVATE)
        socket.flush()
        socket.waitForBytesWritten(CONNECT_TIMEOUT_MS)
        socket.disconnectFromServer()
        socket.abort()
        return True

    def _on_connection(self) -> None:
        assert self.server is not None
        while (socket := self.server.nextPendingConnection()) is not None:
            # The message is one short line sent right after connecting: read it here (bounded)
            # instead of keeping per-socket callbacks alive.
            if not socket.bytesAvailable():
                socket.waitForReadyRead(CONNECT_TIMEOUT_MS)
            data = bytes(socket.readAll().data())
            socket.abort()
            socket.deleteLater()
            if b"activate" in data:
                self.activations += 1
                log.info("single instance: activated by another launch")
                if os.environ.get("TOOLBOX_TEST_LOG_ACTIVATE"):
                    print("activated", flush=True)
                self.activated.emit()


def raise_window(window: object) -> None:
    """Show, un-minimise and activate ``window`` (a QWidget)."""
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QWidget

    if not isinstance(window, QWidget):
        return
    window.setWindowState(window.windowState() & ~Qt.WindowState.WindowMinimized)
    window.show()
    window.raise_()
    window.activateWindow()
