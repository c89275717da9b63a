"""A simple embedded console for a shell in a container, used when no terminal app is found.

Usage::

    console = ExecConsole(session, container_id)   # opens ``sh`` with a tty over the API
    console.show()
    ...
    console.close_session()

It is line-based: the output pane shows what the shell prints (terminal escape sequences
stripped) and the input line sends what you type, followed by Enter. The socket is read on a
worker thread; output reaches the widget in batches on a timer, like the log view.
"""

from __future__ import annotations

import codecs
import re
import threading
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QTimer, Signal
from PySide6.QtGui import QCloseEvent, QFontDatabase, QTextCursor
from PySide6.QtWidgets import QLabel, QLineEdit, QPlainTextEdit, QVBoxLayout, QWidget

from toolbox.errors import ToolboxError
from ui.widgets.text import readable

if TYPE_CHECKING:
    from ui.session import EngineSession

MAX_LINES = 5_000
DRAIN_MS = 50
RECV_TIMEOUT = 0.2

# CSI sequences (colours, cursor moves), OSC sequences (window titles) and lone escapes.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")


def clean_output(text: str) -> str:
    """Terminal output made plain: escape sequences removed, CRLF -> LF, bells dropped."""
    text = _ANSI.sub("", text)
    return text.replace("\r\n", "\n").replace("\r", "").replace("\x07", "")


class ExecConsole(QWidget):
    """Output pane plus an input line for one exec session.

    Signals:
        ended(str): the shell exited or the connection failed (the reason, or "").
    """

    ended = Signal(str)

    def __init__(
        self,
        session: EngineSession,
        container_id: str,
        command: tuple[str, ...] = ("sh",),
        title: str | None = None,
        parent: QWidget | None = None,
    ):
        super().__init__(parent)
        self.session = session
        self.container_id = container_id
        self.setWindowTitle(title or f"Shell in {container_id[:12]}")
        self.resize(760, 460)
        self.output = QPlainTextEdit()
        self.output.setReadOnly(True)
        self.output.setMaximumBlockCount(MAX_LINES)
        self.output.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.output.setUndoRedoEnabled(False)
        self.input = QLineEdit()
        self.input.setPlaceholderText("Type a command and press Enter")
        self.input.setFont(self.output.font())
        self.input.returnPressed.connect(self._send_line)
        self.status = QLabel("Connecting…")
        layout = QVBoxLayout(self)
        layout.addWidget(self.output, 1)
        layout.addWidget(self.input)
        layout.addWidget(self.status)

        self._exec: Any = None
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._chunks: list[str] = []
        self._drain = QTimer(self)
        self._drain.setInterval(DRAIN_MS)
        self._drain.timeout.connect(self._drain_output)
        self._key = f"exec:{id(self)}"
        self.session.call(
            lambda client: self._read(client, command),
            self._on_ended,
            self._on_failed,
            owner=self,
            what="Open a shell",
        )
        self._drain.start()

    @property
    def connected(self) -> bool:
        return self._exec is not None and not self._closing.is_set()

    def send_text(self, text: str) -> None:
        """Send raw text to the shell (off the GUI thread, in order)."""
        data = text.encode()

        def send(_client: Any) -> None:
            if self._exec is not None and not self._closing.is_set():
                self._exec.send(data)

        self.session.call(send, key=self._key, owner=self, what="Send to the shell")

    def close_session(self) -> None:
        """End the exec session (returns at once)."""
        self._closing.set()
        with self._lock:
            exec_session = self._exec
        if exec_session is not None:
            threading.Thread(target=exec_session.close, daemon=True).start()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.close_session()
        super().closeEvent(event)

    # -- worker thread ------------------------------------------------------------------------

    def _read(self, client: Any, command: tuple[str, ...]) -> str:
        exec_session = client.open_exec_socket(self.container_id, cmd=command, tty=True)
        with self._lock:
            self._exec = exec_session
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        try:
            while not self._closing.is_set():
                data = exec_session.recv(RECV_TIMEOUT)  # b"" on timeout and at the end
                if data:
                    text = clean_output(decoder.decode(data))
                    if text:
                        with self._lock:
                            self._chunks.append(text)
                elif exec_session.eof:
                    break
        finally:
            exec_session.close()
        return ""

    # -- GUI thread ---------------------------------------------------------------------------

    def _send_line(self) -> None:
        line = self.input.text()
        self.input.clear()
        self.send_text(line + "\n")

    def _drain_output(self) -> None:
        with self._lock:
            chunks, self._chunks = self._chunks, []
            live = self._exec is not None
        if live and self.status.text() == "Connecting…":
            self.status.setText("Connected. The shell ends when you type exit.")
        if not chunks:
            return
        cursor = self.output.textCursor()
        cursor.movePosition(QTextCursor.MoveOperation.End)
        cursor.insertText("".join(chunks))
        self.output.setTextCursor(cursor)
        self.output.ensureCursorVisible()

    def _on_ended(self, _result: str) -> None:
        self._drain_output()
        self._drain.stop()
        self.input.setEnabled(False)
        self.status.setText("The shell has ended.")
        self.ended.emit("")

    def _on_failed(self, error: ToolboxError) -> None:
        self._drain_output()
        self._drain.stop()
        self.input.setEnabled(False)
        text = error.message + (f" {readable(error.hint)}" if error.hint else "")
        self.status.setText(f"The shell could not continue: {text}")
        self.ended.emit(error.message)

    def output_text(self) -> str:
        return self.output.toPlainText()
