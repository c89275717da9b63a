"""A container's logs: follow, search (next/previous), timestamps, copy; never freezes.

Usage::

    view = LogView(session)
    view.show_container(container_id)   # streams the last TAIL lines, then follows
    view.stop()                         # closes the stream (on hide, on another selection)

The stream is read on a worker thread into a bounded ``LineBuffer``; a GUI timer drains it in
chunks (one ``appendPlainText`` per chunk of lines, never one per line) for at most
``DRAIN_BUDGET_S`` per turn, at most every ``BUSY_DRAIN_MS`` while lines wait, and the view
keeps at most ``MAX_LINES`` lines. Appending past the cap costs about 10 µs a line (4,000 lines
at once froze the window for 100-180 ms), so during a flood the GUI thread spends at most about
a fifth of its time on logs; lines it cannot show in time are skipped (the buffer keeps the
newest ``BACKLOG_LINES``) and the view says how many, so it stays current and never freezes.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QTimer, Signal
from PySide6.QtGui import QFontDatabase, QGuiApplication, QTextCursor, QTextDocument
from PySide6.QtWidgets import (
    QAbstractSlider,
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from toolbox.engine.records import LogLine
from toolbox.errors import ToolboxError

if TYPE_CHECKING:
    from ui.session import EngineSession

TAIL = 1000
MAX_LINES = 20_000  # lines the view keeps
BACKLOG_LINES = 5_000  # lines waiting for the view; older ones are skipped in a flood
CHUNK_LINES = 250  # lines per appendPlainText: 2-3 ms of layout and trimming
DRAIN_BUDGET_S = 0.008  # GUI time per drain turn
DRAIN_MS = 100  # drain interval while the stream is quiet
BUSY_DRAIN_MS = 30  # ... and while lines are waiting (about a fifth of the GUI's time)


class LineBuffer:
    """Lines handed from the reader thread to the GUI; keeps only the newest ``capacity``
    (older ones would be scrolled out of the view anyway) and counts what it dropped."""

    def __init__(self, capacity: int = MAX_LINES):
        self._lines: deque[str] = deque(maxlen=capacity)
        self._lock = threading.Lock()
        self._dropped = 0

    def push(self, line: str) -> None:
        with self._lock:
            if len(self._lines) == self._lines.maxlen:
                self._dropped += 1
            self._lines.append(line)

    def push_many(self, lines: Iterable[str]) -> None:
        batch = lines if isinstance(lines, list) else list(lines)
        with self._lock:
            capacity = self._lines.maxlen or 0
            self._dropped += max(0, len(self._lines) + len(batch) - capacity)
            self._lines.extend(batch)

    def drain(self, limit: int) -> tuple[list[str], int]:
        """Up to ``limit`` oldest lines and the count dropped since the last drain."""
        with self._lock:
            count = min(limit, len(self._lines))
            out = [self._lines.popleft() for _ in range(count)]
            dropped, self._dropped = self._dropped, 0
        return out, dropped

    def __len__(self) -> int:
        with self._lock:
            return len(self._lines)

    def clear(self) -> None:
        with self._lock:
            self._lines.clear()
            self._dropped = 0


def format_line(line: LogLine, timestamps: bool) -> str:
    if timestamps and line.timestamp is not None:
        stamp = line.timestamp.astimezone().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        return f"{stamp}  {line.text}"
    return line.text


class _Follow:
    """One running stream: the reader loop and a way to close it from the GUI thread."""

    def __init__(self, buffer: LineBuffer, timestamps: bool):
        self.buffer = buffer
        self.timestamps = timestamps
        self.cancel = threading.Event()
        self._stream: Any = None
        self._lock = threading.Lock()

    def run(self, client: Any, container_id: str) -> int:
        """Worker thread: read until the stream ends or ``close`` is called; returns lines read."""
        stream = client.follow_logs(container_id, tail=TAIL, timestamps=self.timestamps)
        with self._lock:
            self._stream = stream
            if self.cancel.is_set():
                stream.close()
        total = 0
        ts = self.timestamps
        push_many = self.buffer.push_many
        try:
            # A batch is everything one read of the stream brought, so nothing is held back
            # when the stream goes quiet, and a flood costs one push per read, not per line.
            for batch in stream.batches():
                push_many([format_line(line, ts) for line in batch])
                total += len(batch)
                if self.cancel.is_set():
                    break
        finally:
            stream.close()
        return total

    def close(self) -> None:
        self.cancel.set()
        with self._lock:
            if self._stream is not None:
                self._stream.close()


class LogView(QWidget):
    """Logs of one container, with follow, search, timestamps and copy.

    Signals:
        stream_ended(): the engine closed the stream (the container stopped) or it failed.
    """

    stream_ended = Signal()

    def __init__(self, session: EngineSession, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.container_id: str | None = None
        self.buffer = LineBuffer(BACKLOG_LINES)
        self.appends = 0  # appendPlainText calls (one per chunk of up to CHUNK_LINES lines)
        self._follow: _Follow | None = None

        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.text.setMaximumBlockCount(MAX_LINES)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.text.setUndoRedoEnabled(False)
        self.text.verticalScrollBar().actionTriggered.connect(self._user_scrolled)

        self.follow_box = QCheckBox("Follow")
        self.follow_box.setChecked(True)
        self.follow_box.setToolTip("Keep the newest lines in view")
        self.follow_box.toggled.connect(self._follow_toggled)
        self.timestamps_box = QCheckBox("Timestamps")
        self.timestamps_box.toggled.connect(lambda _on: self.restart())
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search logs")
        self.search.setClearButtonEnabled(True)
        self.search.returnPressed.connect(self.find_next)
        self.prev_button = QPushButton("Previous")
        self.prev_button.clicked.connect(self.find_previous)
        self.next_button = QPushButton("Next")
        self.next_button.clicked.connect(self.find_next)
        self.match_label = QLabel()
        self.copy_button = QPushButton("Copy")
        self.copy_button.setToolTip("Copy the selection, or all lines when nothing is selected")
        self.copy_button.clicked.connect(self.copy)
        self.status = QLabel()
        self.status.setVisible(False)  # shown only when there is something to say

        bar = QHBoxLayout()
        bar.addWidget(self.follow_box)
        bar.addWidget(self.timestamps_box)
        bar.addSpacing(12)
        bar.addWidget(self.search, 1)
        bar.addWidget(self.prev_button)
        bar.addWidget(self.next_button)
        bar.addWidget(self.match_label)
        bar.addWidget(self.copy_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(self.text, 1)
        layout.addWidget(self.status)

        self._drain = QTimer(self)
        self._drain.setInterval(DRAIN_MS)
        self._drain.timeout.connect(self._drain_buffer)

    # -- streaming ----------------------------------------------------------------------------

    @property
    def streaming(self) -> bool:
        return self._follow is not None

    def show_container(self, container_id: str | None) -> None:
        """Show (and follow) another container's logs; None empties the view."""
        if container_id == self.container_id and self.streaming:
            return
        self.container_id = container_id
        self.restart()

    def restart(self) -> None:
        """Drop what is shown and stream again (after a toggle or a container restart)."""
        self.stop()
        self.text.clear()
        self.buffer.clear()
        self.status.clear()
        self.status.setVisible(False)
        if self.container_id is None:
            return
        follow = _Follow(self.buffer, self.timestamps_box.isChecked())
        self._follow = follow
        container_id = self.container_id
        self.session.call(
            lambda client: follow.run(client, container_id),
            lambda _n: self._ended(follow, None),
            lambda error: self._ended(follow, error),
            owner=self,
            what="Read logs",
        )
        self._drain.start()

    def stop(self) -> None:
        """Close the stream (returns at once; the reader ends promptly)."""
        if self._follow is not None:
            self._follow.close()
            self._follow = None

    def _ended(self, follow: _Follow, error: ToolboxError | None) -> None:
        if follow is not self._follow:
            return  # an old stream we closed ourselves
        self._follow = None
        self._drain_buffer()
        if error is not None and not follow.cancel.is_set():
            self.show_status(f"Logs stopped: {error.message}")
        self.stream_ended.emit()

    def _drain_buffer(self) -> None:
        """Append waiting lines in chunks until the turn's time budget is spent; come back
        soon while lines are left, at the quiet pace otherwise."""
        deadline = time.perf_counter() + DRAIN_BUDGET_S
        appended = False
        while True:
            lines, dropped = self.buffer.drain(CHUNK_LINES)
            if dropped:
                self.text.appendPlainText(f"… {dropped} lines skipped (too many to show) …")
            if lines:
                self.text.appendPlainText("\n".join(lines))
                self.appends += 1
                appended = True
            if len(lines) < CHUNK_LINES or time.perf_counter() >= deadline:
                break
        if appended and self.follow_box.isChecked():
            bar = self.text.verticalScrollBar()
            bar.setValue(bar.maximum())
        waiting = len(self.buffer)
        if self._follow is None and not waiting:
            self._drain.stop()
        else:
            self._drain.start(BUSY_DRAIN_MS if waiting else DRAIN_MS)

    # -- follow / search / copy ---------------------------------------------------------------

    def show_status(self, text: str) -> None:
        """A line under the logs (why they stopped); the view stays at the bottom while
        following, though it gets shorter (a Python slot on every range change would cost a
        GIL round trip inside every append, so this re-pins once, after the layout)."""
        self.status.setText(text)
        self.status.setVisible(True)
        if self.follow_box.isChecked():
            QTimer.singleShot(0, self, self._pin_to_bottom)

    def _pin_to_bottom(self) -> None:
        if self.follow_box.isChecked():
            bar = self.text.verticalScrollBar()
            bar.setValue(bar.maximum())

    def _follow_toggled(self, on: bool) -> None:
        if on:
            bar = self.text.verticalScrollBar()
            bar.setValue(bar.maximum())

    def _user_scrolled(self, action: int) -> None:
        if action == QAbstractSlider.SliderAction.SliderNoAction.value:
            return
        bar = self.text.verticalScrollBar()
        QTimer.singleShot(0, lambda: self.follow_box.setChecked(bar.value() >= bar.maximum()))

    def find_next(self) -> bool:
        return self._find(QTextDocument.FindFlag(0))

    def find_previous(self) -> bool:
        return self._find(QTextDocument.FindFlag.FindBackward)

    def _find(self, flags: QTextDocument.FindFlag) -> bool:
        needle = self.search.text()
        if not needle:
            self.match_label.clear()
            return False
        self.follow_box.setChecked(False)
        found = self.text.find(needle, flags)
        if not found:  # wrap around
            cursor = self.text.textCursor()
            backward = bool(flags & QTextDocument.FindFlag.FindBackward)
            cursor.movePosition(
                QTextCursor.MoveOperation.End if backward else QTextCursor.MoveOperation.Start
            )
            self.text.setTextCursor(cursor)
            found = self.text.find(needle, flags)
        self.match_label.setText("" if found else "Not found")
        return found

    def selected_or_all_text(self) -> str:
        selected = self.text.textCursor().selectedText()
        if selected:
            return selected.replace("\u2029", "\n")
        return self.text.toPlainText()

    def copy(self) -> None:
        QGuiApplication.clipboard().setText(self.selected_or_all_text())
