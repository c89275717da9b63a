"""A window that follows a log file live (a machine's console log), reading only what is new.

Reads happen on a short timer while the window is visible, from the last offset; nothing runs
while it is hidden. A file that does not exist yet shows a note until it appears.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from PySide6.QtCore import QTimer
from PySide6.QtGui import QFont, QHideEvent, QShowEvent
from PySide6.QtWidgets import QDialog, QPlainTextEdit, QVBoxLayout, QWidget

TAIL_BYTES = 256 * 1024  # what is shown of a long log when the window opens
POLL_MS = 500


class LogWindow(QDialog):
    """Follows ``path``; one window per path (``open_for`` raises an existing one)."""

    _open: ClassVar[dict[Path, LogWindow]] = {}

    def __init__(self, path: Path, title: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.path = path
        self.offset = 0
        self.setWindowTitle(title)
        self.resize(820, 520)
        self.text = QPlainTextEdit()
        self.text.setObjectName("logText")
        self.text.setReadOnly(True)
        self.text.setMaximumBlockCount(20_000)
        self.text.setFont(QFont("monospace"))
        layout = QVBoxLayout(self)
        layout.addWidget(self.text)
        self.timer = QTimer(self)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self.read_more)
        self.read_more()

    @classmethod
    def open_for(cls, path: Path, title: str, parent: QWidget | None = None) -> LogWindow:
        window = cls._open.get(path)
        if window is None:
            window = cls(path, title, parent)
            cls._open[path] = window
            window.finished.connect(lambda _r: cls._open.pop(path, None))
        window.show()
        window.raise_()
        window.activateWindow()
        return window

    def showEvent(self, event: QShowEvent) -> None:
        self.timer.start()
        super().showEvent(event)

    def hideEvent(self, event: QHideEvent) -> None:
        self.timer.stop()
        super().hideEvent(event)

    def read_more(self) -> None:
        """Append what the file gained since the last read (a local file: fast)."""
        try:
            size = self.path.stat().st_size
        except OSError:
            if self.offset == 0 and not self.text.toPlainText():
                self.text.setPlainText(f"({self.path} does not exist yet)")
            return
        if size < self.offset:  # rotated or truncated: start again
            self.offset = 0
            self.text.clear()
        if self.offset == 0:
            self.text.clear()
            self.offset = max(0, size - TAIL_BYTES)
        if size == self.offset:
            return
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            data = handle.read(size - self.offset)
        self.offset = size
        self.text.appendPlainText(data.decode("utf-8", "replace").rstrip("\n"))
