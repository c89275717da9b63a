"""A container's logs: follow, search, timestamps, wrap, since, save and copy; never freezes.

Usage::

    view = LogView(session)
    view.show_container(container_id)   # streams the last TAIL lines (or since), then follows
    view.stop()                         # closes the stream (on hide, on another selection)

The worker thread that reads the stream only de-chunks the HTTP response and passes its bytes
on (a ``LineBuffer``), in reads of many lines: it takes the GIL briefly and seldom, so the GUI
thread rarely waits for a reader that the machine's scheduler put aside mid-decode. A GUI
timer decodes what waits for at most ``DRAIN_BUDGET_S`` per turn (every ``BUSY_DRAIN_MS``
during a flood) into the kept lines (``LogLines``: a list of texts and one of times, which
appending ``extend``s and the garbage collector never walks into, unlike 200,000 line
objects), and a ``LineView`` paints only the lines in sight, so the GUI thread's work per turn
does not grow with the lines kept. Every line is kept (up to ``MAX_LINES``; past it the oldest
``TRIM_LINES`` go at once).

The engine is always asked for timestamps, so the Timestamps box only changes how lines are
shown. Search runs over the kept lines (the message, not the timestamp) in slices of at most
``SEARCH_BUDGET_S`` per event-loop turn, and keeps up with new lines as they come.
"""

from __future__ import annotations

import bisect
import datetime as dt
import gc
import os
import re
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractSlider,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from toolbox.engine.records import LogLine
from toolbox.engine.streams import LogDecoder
from toolbox.errors import ToolboxError
from ui.widgets.line_view import LineView

if TYPE_CHECKING:
    from ui.session import EngineSession

TAIL = 1000
MAX_LINES = 1_000_000  # lines kept; past it the oldest TRIM_LINES are dropped at once
TRIM_LINES = 100_000
DRAIN_BUDGET_S = 0.008  # GUI time per turn for decoding what the stream brought
DECODE_BYTES = 16_384  # bytes decoded between two looks at the clock (about 1 ms)
SMALL_READ = 16_384  # a read smaller than this ...
READ_PAUSE_S = 0.005  # ... makes the reader wait this long for more to arrive
DRAIN_MS = 100  # drain interval while the stream is quiet
BUSY_DRAIN_MS = 20  # ... and while bytes are waiting
REFRESH_S = 0.05  # the view catches up at most this often while bytes are waiting
SEARCH_BUDGET_S = 0.006  # GUI time per search slice
SEARCH_SLICE = 500  # lines between two looks at the clock
SEARCH_DELAY_MS = 150  # typing pause before a search starts
COPY_SYNC_LINES = 20_000  # more lines are joined on a worker thread
STAMP_WIDTH = len("2026-01-01 12:00:00.000  ")


@dataclass(frozen=True)
class Since:
    """Where the stream starts: the last ``tail`` lines, or every line of the last
    ``seconds`` (None: from the start)."""

    label: str
    tail: int | None
    seconds: int | None = None

    def start(self, now: dt.datetime | None = None) -> dt.datetime | None:
        if self.seconds is None:
            return None
        return (now or dt.datetime.now(dt.UTC)) - dt.timedelta(seconds=self.seconds)


SINCE_CHOICES = (
    Since(f"Last {TAIL:,} lines", TAIL),
    Since("Last 5 minutes", None, 300),
    Since("Last hour", None, 3600),
    Since("All", None),
)


class LineBuffer:
    """A log stream's bytes handed from the reader thread to the GUI thread, oldest first;
    ``len()`` is the bytes waiting."""

    def __init__(self) -> None:
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._lock = threading.Lock()

    def push(self, data: bytes) -> None:
        if not data:
            return
        with self._lock:
            self._chunks.append(data)
            self._size += len(data)

    def take(self, limit: int) -> bytes:
        """Up to ``limit`` of the oldest bytes (b"" when none wait)."""
        with self._lock:
            if not self._chunks:
                return b""
            data = self._chunks.popleft()
            if len(data) > limit:
                data, rest = data[:limit], data[limit:]
                self._chunks.appendleft(rest)
            self._size -= len(data)
            return data

    def __len__(self) -> int:
        with self._lock:
            return self._size

    def clear(self) -> None:
        with self._lock:
            self._chunks.clear()
            self._size = 0


def stamp_text(stamp: dt.datetime) -> str:
    """A timestamp as shown: local time to the millisecond."""
    local = stamp.astimezone()
    return f"{local:%Y-%m-%d %H:%M:%S}.{local.microsecond // 1000:03d}"


def format_line(text: str, stamp: dt.datetime | None, timestamps: bool) -> str:
    """A line as shown."""
    if timestamps and stamp is not None:
        return f"{stamp_text(stamp)}  {text}"
    return text


def format_lines(
    texts: Sequence[str], stamps: Sequence[dt.datetime | None], timestamps: bool
) -> str:
    """Lines as shown, one per line, with a final newline."""
    if not texts:
        return ""
    if timestamps:
        shown = [format_line(text, stamp, True) for text, stamp in zip(texts, stamps, strict=True)]
        return "\n".join(shown) + "\n"
    return "\n".join(texts) + "\n"


@dataclass(frozen=True)
class SearchQuery:
    """What to look for: plain text or a regular expression, with or without case."""

    text: str
    regex: bool = False
    case: bool = False

    def compile(self) -> re.Pattern[str]:
        """The pattern; ``re.error`` for an invalid regular expression."""
        flags = 0 if self.case else re.IGNORECASE
        return re.compile(self.text if self.regex else re.escape(self.text), flags)


class LogSearch:
    """The matches of one pattern in the kept lines, in line order, found a slice at a time
    (``advance``); ``current`` is the match the view is on."""

    def __init__(self, pattern: re.Pattern[str]):
        self.pattern = pattern
        self.lines: list[int] = []  # each match's line
        self.starts: list[int] = []  # ... and its span in the line's text
        self.ends: list[int] = []
        self.searched = 0  # lines [0, searched) are done
        self.current: int | None = None

    def __len__(self) -> int:
        return len(self.lines)

    def advance(self, texts: Sequence[str], deadline: float) -> bool:
        """Search on until ``deadline`` (perf_counter); True once every line is done."""
        search, finditer = self.pattern.search, self.pattern.finditer
        found_lines, starts, ends = self.lines, self.starts, self.ends
        index, count = self.searched, len(texts)
        while index < count:
            stop = min(count, index + SEARCH_SLICE)
            for number in range(index, stop):
                text = texts[number]
                if search(text) is None:
                    continue
                for match in finditer(text):
                    start, end = match.span()
                    if end > start:  # an empty match highlights nothing
                        found_lines.append(number)
                        starts.append(start)
                        ends.append(end)
            index = stop
            if time.perf_counter() >= deadline:
                break
        self.searched = index
        return index >= count

    @property
    def done_with(self) -> int:
        return self.searched

    def spans(self, line: int) -> range:
        """Indexes of the matches in ``line``."""
        return range(bisect.bisect_left(self.lines, line), bisect.bisect_right(self.lines, line))

    def first_from(self, line: int, forward: bool) -> int | None:
        """The first match at or after ``line`` (forward) or before it, wrapping around."""
        if not self.lines:
            return None
        if forward:
            found = bisect.bisect_left(self.lines, line)
            return found if found < len(self.lines) else 0
        found = bisect.bisect_left(self.lines, line) - 1
        return found if found >= 0 else len(self.lines) - 1

    def drop_lines(self, count: int) -> None:
        """The first ``count`` lines went away; the others moved up by ``count``."""
        cut = bisect.bisect_left(self.lines, count)
        self.lines = [line - count for line in self.lines[cut:]]
        del self.starts[:cut]
        del self.ends[:cut]
        self.searched = max(0, self.searched - count)
        if self.current is not None:
            self.current = self.current - cut if self.current >= cut else None


class LogLines:
    """The kept lines and how they are shown (the ``LineSource`` of the view)."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.stamps: list[dt.datetime | None] = []  # the engine's time of each line
        self.timestamps = False
        self.search: LogSearch | None = None
        self._widest = 0

    def extend(self, batch: Sequence[LogLine]) -> None:
        texts = [line.text for line in batch]
        self.texts.extend(texts)
        self.stamps.extend([line.timestamp for line in batch])
        self._widest = max(self._widest, max(map(len, texts)))

    def trim(self) -> int:
        """Drop the oldest lines when past ``MAX_LINES``; how many were dropped."""
        if len(self.texts) <= MAX_LINES:
            return 0
        count = len(self.texts) - MAX_LINES + TRIM_LINES
        del self.texts[:count]
        del self.stamps[:count]
        if self.search is not None:
            self.search.drop_lines(count)
        return count

    def clear(self) -> None:
        self.texts.clear()
        self.stamps.clear()
        self._widest = 0

    # LineSource
    def line_count(self) -> int:
        return len(self.texts)

    def line_text(self, index: int) -> str:
        return format_line(self.texts[index], self.stamps[index], self.timestamps)

    def line_spans(self, index: int) -> Sequence[tuple[int, int, bool]]:
        search = self.search
        if search is None or not search.lines:
            return ()
        found = search.spans(index)
        if not found:
            return ()
        shift = STAMP_WIDTH if self.timestamps and self.stamps[index] else 0
        return [
            (search.starts[k] + shift, search.ends[k] + shift, k == search.current) for k in found
        ]

    def widest_line(self) -> int:
        return self._widest + (STAMP_WIDTH if self.timestamps else 0)


class _Follow:
    """One stream: the reader loop, a way to close it from the GUI thread, and what the GUI
    thread decodes its bytes with (``decoder``, set once the stream is open)."""

    def __init__(self, buffer: LineBuffer, since: Since):
        self.buffer = buffer
        self.since = since
        self.decoder: LogDecoder | None = None
        self.finished = False  # the GUI decoded the end (a last line without a newline)
        self.cancel = threading.Event()
        self._stream: Any = None
        self._lock = threading.Lock()

    def run(self, client: Any, container_id: str) -> int:
        """Worker thread: read until the stream ends or ``close`` is called; returns the
        bytes read."""
        stream = client.follow_logs(
            container_id, tail=self.since.tail, timestamps=True, since=self.since.start()
        )
        self.decoder = stream.decoder()
        with self._lock:
            self._stream = stream
            if self.cancel.is_set():
                stream.close()
        total = 0
        push = self.buffer.push
        try:
            # One push per read of the stream (all that had arrived), never per line. After a
            # small read the reader waits a moment for more: in a flood the engine writes a
            # line at a time, and reading as it comes woke this thread thousands of times a
            # second (a kilobyte each), each time taking the GIL from the GUI thread.
            for chunk in stream.raw():
                push(chunk)
                total += len(chunk)
                if len(chunk) < SMALL_READ:
                    self.cancel.wait(READ_PAUSE_S)
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
    """Logs of one container: follow, search (count, next/previous, regex, case),
    timestamps, wrap, since, save and copy.

    Signals:
        stream_ended(): the engine closed the stream (the container stopped) or it failed.
        search_done(int): the search went through every kept line; the number of matches.
        saved(str): the lines were written to this path.
        copied(int): this many lines went to the clipboard.
    """

    stream_ended = Signal()
    search_done = Signal(int)
    saved = Signal(str)
    copied = Signal(int)

    def __init__(self, session: EngineSession, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.container_id: str | None = None
        self.buffer = LineBuffer()
        self.store = LogLines()
        self.appends = 0  # drain turns that added lines
        self.last_error: ToolboxError | None = None  # of the last save
        self._follow: _Follow | None = None  # the stream being read
        self._feed: _Follow | None = None  # the stream whose lines are shown (read or ended)
        self._query: SearchQuery | None = None
        self._match_line: int | None = None  # the line the last next/previous selected
        self._unshown = False  # lines kept that the view does not show yet
        self._shown_at = 0.0  # perf_counter of the last time it caught up

        self.lines_view = LineView(self.store)
        self.lines_view.verticalScrollBar().actionTriggered.connect(self._user_scrolled)

        self.follow_box = QCheckBox("Follow")
        self.follow_box.setChecked(True)
        self.follow_box.setToolTip("Keep the newest lines in view")
        self.follow_box.toggled.connect(self._follow_toggled)
        self.timestamps_box = QCheckBox("Timestamps")
        self.timestamps_box.toggled.connect(self._timestamps_toggled)
        self.wrap_box = QCheckBox("Wrap")
        self.wrap_box.setToolTip("Wrap long lines at the view's width")
        self.wrap_box.toggled.connect(self._wrap_toggled)
        self.since_box = QComboBox()
        for choice in SINCE_CHOICES:
            self.since_box.addItem(choice.label)
        self.since_box.setToolTip("Which lines to read: the stream starts again")
        self.since_box.currentIndexChanged.connect(lambda _i: self.restart())
        self.save_button = QPushButton("Save…")
        self.save_button.setToolTip("Write every kept line, as shown, to a file")
        self.save_button.clicked.connect(self.save)
        self.copy_button = QPushButton("Copy")
        self.copy_button.setToolTip("Copy the selected lines, or all lines when none is selected")
        self.copy_button.clicked.connect(self.copy)

        self.search = QLineEdit()
        self.search.setPlaceholderText("Search logs")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self._search_typed)
        self.search.returnPressed.connect(self.find_next)
        self.regex_box = QCheckBox("Regex")
        self.regex_box.toggled.connect(lambda _on: self.update_search())
        self.case_box = QCheckBox("Match case")
        self.case_box.toggled.connect(lambda _on: self.update_search())
        self.prev_button = QPushButton("Previous")
        self.prev_button.clicked.connect(self.find_previous)
        self.next_button = QPushButton("Next")
        self.next_button.clicked.connect(self.find_next)
        self.match_label = QLabel()
        self.status = QLabel()
        self.status.setVisible(False)  # shown only when there is something to say

        options = QHBoxLayout()
        for box in (self.follow_box, self.timestamps_box, self.wrap_box):
            options.addWidget(box)
        options.addSpacing(12)
        options.addWidget(QLabel("Show:"))
        options.addWidget(self.since_box)
        options.addStretch(1)
        options.addWidget(self.save_button)
        options.addWidget(self.copy_button)
        finder = QHBoxLayout()
        finder.addWidget(self.search, 1)
        for widget in (self.regex_box, self.case_box, self.prev_button, self.next_button):
            finder.addWidget(widget)
        finder.addWidget(self.match_label)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(options)
        layout.addLayout(finder)
        layout.addWidget(self.lines_view, 1)
        layout.addWidget(self.status)

        context = self.lines_view
        QShortcut(QKeySequence.StandardKey.Copy, context, self.copy).setContext(
            Qt.ShortcutContext.WidgetShortcut
        )
        QShortcut(QKeySequence.StandardKey.Find, self, self._focus_search).setContext(
            Qt.ShortcutContext.WidgetWithChildrenShortcut
        )
        QShortcut(QKeySequence.StandardKey.FindNext, self, self.find_next).setContext(
            Qt.ShortcutContext.WidgetWithChildrenShortcut
        )
        QShortcut(QKeySequence.StandardKey.FindPrevious, self, self.find_previous).setContext(
            Qt.ShortcutContext.WidgetWithChildrenShortcut
        )
        QShortcut(QKeySequence("Shift+Return"), self.search, self.find_previous).setContext(
            Qt.ShortcutContext.WidgetShortcut
        )

        self._drain = QTimer(self)
        self._drain.setInterval(DRAIN_MS)
        self._drain.timeout.connect(self._drain_buffer)
        self._search_delay = QTimer(self)
        self._search_delay.setSingleShot(True)
        self._search_delay.setInterval(SEARCH_DELAY_MS)
        self._search_delay.timeout.connect(self.update_search)
        self._search_more = QTimer(self)
        self._search_more.setSingleShot(True)
        self._search_more.setInterval(0)
        self._search_more.timeout.connect(self._search_step)

    # -- what is kept -------------------------------------------------------------------------

    def line_count(self) -> int:
        return self.store.line_count()

    def line_text(self, index: int) -> str:
        """Line ``index`` as shown (negative counts from the end)."""
        return self.store.line_text(index)

    def shown_lines(self, first: int = 0, last: int | None = None) -> list[str]:
        """Lines ``first`` to ``last`` (inclusive; None: the end) as shown."""
        stop = self.line_count() if last is None else last + 1
        return [self.store.line_text(i) for i in range(first, stop)]

    # -- streaming ----------------------------------------------------------------------------

    @property
    def streaming(self) -> bool:
        return self._follow is not None

    @property
    def since(self) -> Since:
        return SINCE_CHOICES[max(0, self.since_box.currentIndex())]

    def show_container(self, container_id: str | None) -> None:
        """Show (and follow) another container's logs; None empties the view."""
        if container_id == self.container_id and self.streaming:
            return
        self.container_id = container_id
        self.restart()

    def restart(self) -> None:
        """Drop what is shown and stream again (another container, ``since`` or a restart)."""
        self.stop()
        # A buffer per stream: a closed stream's reader may still push its last read.
        self.buffer = LineBuffer()
        self._feed = None
        self._unshown = False
        self.store.clear()
        self._match_line = None
        if self.store.search is not None:
            self.store.search = LogSearch(self.store.search.pattern)
        self.lines_view.reset()
        self._show_matches()
        self.status.clear()
        self.status.setVisible(False)
        if self.container_id is None:
            return
        follow = _Follow(self.buffer, self.since)
        self._follow = self._feed = follow
        container_id = self.container_id
        self.session.call(
            lambda client: follow.run(client, container_id),
            lambda _n: self._ended(follow, None),
            lambda error: self._ended(follow, error),
            owner=self,
            what="Read logs",
        )
        self._drain.start(DRAIN_MS)

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
        """Decode what the stream brought until the turn's budget is spent, keep the lines
        (a list extend) and repaint; come back soon while bytes are left, at the quiet pace
        otherwise."""
        feed = self._feed
        added = 0
        if feed is not None and feed.decoder is not None:
            # Every line object made here is gone by the end of the loop (the store keeps
            # only texts and times), so the cyclic collector has nothing to find in them;
            # left on, their churn set off full collections of the whole heap on this thread
            # (30-50 ms each, the longest stalls a flood caused).
            collecting = gc.isenabled()
            gc.disable()
            try:
                added = self._decode(feed)
            finally:
                if collecting:
                    gc.enable()
        if added:
            self.appends += 1
            self._unshown = True
            dropped = self.store.trim()
            if dropped:
                self.lines_view.lines_removed(dropped)
                if self._match_line is not None:
                    self._match_line = (
                        self._match_line - dropped if self._match_line >= dropped else None
                    )
        waiting = len(feed.buffer) if feed is not None else 0
        now = time.perf_counter()
        if self._unshown and (not waiting or now - self._shown_at >= REFRESH_S):
            # In a flood the view moves on at most every REFRESH_S: each repaint costs a few
            # milliseconds, and a turn every BUSY_DRAIN_MS would spend that on each.
            self._unshown = False
            self._shown_at = now
            self.lines_view.lines_appended()
            if self.follow_box.isChecked():
                self.lines_view.scroll_to_end()
            if self.store.search is not None and not self._search_more.isActive():
                self._search_step()
        if self._follow is None and not waiting and not self._unshown:
            self._drain.stop()
        else:
            self._drain.start(BUSY_DRAIN_MS if waiting else DRAIN_MS)

    def _decode(self, feed: _Follow) -> int:
        """Decode waiting bytes into the store until the turn's budget is spent; the lines
        added."""
        assert feed.decoder is not None
        decode, extend, take = feed.decoder.feed, self.store.extend, feed.buffer.take
        added = 0
        deadline = time.perf_counter() + DRAIN_BUDGET_S
        while time.perf_counter() < deadline:
            chunk = take(DECODE_BYTES)
            if not chunk:
                break
            lines = decode(chunk)
            if lines:
                extend(lines)
                added += len(lines)
        if feed is not self._follow and not len(feed.buffer) and not feed.finished:
            feed.finished = True  # the stream is over: a last line without a newline
            lines = feed.decoder.finish()
            if lines:
                extend(lines)
                added += len(lines)
        return added

    # -- display options ----------------------------------------------------------------------

    def show_status(self, text: str) -> None:
        """A line under the logs (why they stopped, where they were saved); the view stays at
        the bottom while following, though it gets shorter."""
        self.status.setText(text)
        self.status.setVisible(True)
        if self.follow_box.isChecked():
            QTimer.singleShot(0, self, self._pin_to_bottom)

    def _pin_to_bottom(self) -> None:
        if self.follow_box.isChecked():
            self.lines_view.scroll_to_end()

    def _follow_toggled(self, on: bool) -> None:
        if on:
            self.lines_view.scroll_to_end()

    def _timestamps_toggled(self, on: bool) -> None:
        self.store.timestamps = on
        self.lines_view.restyle()
        if self.follow_box.isChecked():
            self.lines_view.scroll_to_end()

    def _wrap_toggled(self, on: bool) -> None:
        self.lines_view.set_wrap(on)
        if self.follow_box.isChecked():
            self.lines_view.scroll_to_end()

    def _user_scrolled(self, action: int) -> None:
        if action == QAbstractSlider.SliderAction.SliderNoAction.value:
            return
        view = self.lines_view
        QTimer.singleShot(0, self, lambda: self.follow_box.setChecked(view.at_end()))

    # -- search -------------------------------------------------------------------------------

    @property
    def searching(self) -> bool:
        """A search is still going through the kept lines."""
        search = self.store.search
        return search is not None and search.searched < self.line_count()

    @property
    def match_count(self) -> int:
        return len(self.store.search) if self.store.search is not None else 0

    def _search_typed(self, _text: str) -> None:
        self._search_delay.start()

    def update_search(self) -> None:
        """Start searching for what the search box and options say (at once)."""
        self._search_delay.stop()
        query = SearchQuery(
            self.search.text(), self.regex_box.isChecked(), self.case_box.isChecked()
        )
        if query == self._query:
            return
        self._query = query
        self._search_more.stop()
        self._match_line = None
        self.store.search = None
        self.search.setToolTip("")
        if query.text:
            try:
                self.store.search = LogSearch(query.compile())
            except re.error as exc:
                self.match_label.setText(f"Invalid regex: {exc}")
                self.search.setToolTip(f"Invalid regular expression: {exc}")
                self.lines_view.viewport().update()
                return
            self._search_step()
        else:
            self._show_matches()
        self.lines_view.viewport().update()

    def _search_step(self) -> None:
        search = self.store.search
        if search is None:
            return
        done = search.advance(self.store.texts, time.perf_counter() + SEARCH_BUDGET_S)
        self._show_matches()
        self.lines_view.viewport().update()
        if done:
            self.search_done.emit(len(search))
        else:
            self._search_more.start()

    def _show_matches(self) -> None:
        search = self.store.search
        if search is None:
            self.match_label.setText("")
            return
        total = len(search)
        if self.searching:
            self.match_label.setText(f"Searching… {total:,}")
        elif not total:
            self.match_label.setText("No matches")
        elif search.current is None:
            self.match_label.setText(f"{total:,} match{'es' if total != 1 else ''}")
        else:
            self.match_label.setText(f"{search.current + 1:,} of {total:,}")

    def find_next(self) -> bool:
        """Select the next match's line (wrapping around); False when there is none."""
        return self._step(True)

    def find_previous(self) -> bool:
        return self._step(False)

    def _step(self, forward: bool) -> bool:
        self.update_search()  # what the box says now, without waiting for the typing pause
        search = self.store.search
        if search is None:
            return False
        if not search.lines and self.searching:  # nothing yet: finish the search first
            search.advance(self.store.texts, time.perf_counter() + 0.25)
        selected = self.lines_view.selection()
        origin = selected[0] if selected else self.lines_view.top_line()
        on_match = (
            search.current is not None
            and selected is not None
            and selected[0] == selected[1] == self._match_line
        )
        if on_match and search.current is not None:
            current: int | None = (search.current + (1 if forward else -1)) % len(search)
        elif forward:
            current = search.first_from(origin + (1 if selected else 0), True)
        else:
            current = search.first_from(origin, False)
        self._show_matches()
        if current is None:
            return False
        search.current = current
        self._match_line = search.lines[current]
        self.follow_box.setChecked(False)
        self.lines_view.select_line(self._match_line)
        self.lines_view.ensure_visible(self._match_line, center=not self._line_in_sight())
        self._show_matches()
        self.lines_view.viewport().update()
        return True

    def _line_in_sight(self) -> bool:
        view = self.lines_view
        line = self._match_line
        if line is None:
            return False
        top = view.top_line()
        return top <= line < top + view.verticalScrollBar().pageStep()

    def _focus_search(self) -> None:
        self.search.setFocus()
        self.search.selectAll()

    # -- copy and save ------------------------------------------------------------------------

    def selected_range(self) -> tuple[int, int]:
        """The selected lines (first, last + 1), or all kept lines when none is selected."""
        selected = self.lines_view.selection()
        if selected is None:
            return 0, self.line_count()
        return selected[0], selected[1] + 1

    def copy(self) -> None:
        """The selected lines (all when none is), as shown, to the clipboard; a large
        selection is joined on a worker thread."""
        first, stop = self.selected_range()
        texts, stamps = self.store.texts[first:stop], self.store.stamps[first:stop]
        shown = self.store.timestamps
        if len(texts) <= COPY_SYNC_LINES:
            self._to_clipboard(format_lines(texts, stamps, shown), len(texts))
            return
        self.session.tasks.run(
            lambda: format_lines(texts, stamps, shown),
            lambda text: self._to_clipboard(text, len(texts)),
            owner=self,
            what="Copy logs",
        )

    def _to_clipboard(self, text: str, count: int) -> None:
        QGuiApplication.clipboard().setText(text.removesuffix("\n"))
        self.copied.emit(count)

    def save(self) -> None:
        """Ask where, then write every kept line there."""
        name = f"{(self.container_id or 'container')[:12]}.log"
        path, _filter = QFileDialog.getSaveFileName(
            self, "Save logs", str(Path.home() / name), "Log files (*.log *.txt);;All files (*)"
        )
        if path:
            self.save_to(Path(path))

    def save_to(self, path: Path) -> None:
        """Write every kept line, as shown (with timestamps when they are), to ``path`` on a
        worker thread; ``saved`` follows, or the status line says why it could not."""
        texts, stamps = list(self.store.texts), list(self.store.stamps)
        shown = self.store.timestamps
        self.last_error = None
        self.session.tasks.run(
            lambda: write_lines(path, texts, stamps, shown),
            lambda _n: self._saved(path, len(texts)),
            self._save_failed,
            owner=self,
            what="Save logs",
        )

    def _saved(self, path: Path, count: int) -> None:
        self.show_status(f"Saved {count:,} lines to {path}")
        self.saved.emit(str(path))

    def _save_failed(self, error: ToolboxError) -> None:
        self.last_error = error
        self.show_status(f"{error.message}. {error.hint or ''}".strip())


def write_lines(
    path: Path, texts: Sequence[str], stamps: Sequence[dt.datetime | None], timestamps: bool
) -> int:
    """Write ``lines`` as shown to ``path`` through a temporary file beside it (a failed write
    leaves an existing file as it was); the byte count."""
    data = format_lines(texts, stamps, timestamps).encode("utf-8")
    part = path.with_name(f".{path.name}.part")
    try:
        with open(part, "wb") as out:
            out.write(data)
        os.replace(part, path)
    except OSError as exc:
        try:
            part.unlink(missing_ok=True)
        except OSError:
            pass
        raise ToolboxError(
            f"Cannot save the logs to {path}: {exc.strerror or exc}",
            hint="Choose a folder that exists and that you can write to.",
        ) from exc
    return len(data)
