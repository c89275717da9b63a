"""A view of a long, growing list of text lines that paints only the lines in sight.

Usage::

    view = LineView(source)          # source: a LineSource (count, text and highlights)
    source.append(...); view.lines_appended()
    view.scroll_to_end()             # follow
    view.set_wrap(True)
    view.select_line(1234, center=True)

A QPlainTextEdit lays out and keeps a text block per line, and appending to it costs more the
more it holds; a QListView re-lays out every row on each insert (and every row's size when rows
wrap). This view keeps nothing per line: the vertical scroll bar counts lines (its value is the
top line), appending only moves the bar's range, and a paint lays out the visible lines alone
(a QTextLayout each), wrapped or not. Selection is by whole lines (click, shift-click, drag,
arrows, Ctrl+A), which is what one copies out of a log.

Signals:
    selection_changed(): the selected lines changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from PySide6.QtCore import QEvent, QPointF, QRect, QRectF, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QFontDatabase,
    QKeyEvent,
    QKeySequence,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPalette,
    QResizeEvent,
    QTextLayout,
    QTextLine,
    QTextOption,
)
from PySide6.QtWidgets import QAbstractScrollArea, QAbstractSlider, QWidget

MARGIN = 4  # pixels left of the text
PAINT_CHARS = 10_000  # a longer line is shown cut (copy and save keep all of it)
WRAP_CACHE = 4096  # wrapped line heights remembered (cleared past this)
MATCH_COLOR = QColor(255, 230, 120)
TEXT_FLAGS = int(
    Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop | Qt.TextFlag.TextExpandTabs
)
WRAP_FLAGS = TEXT_FLAGS | int(Qt.TextFlag.TextWrapAnywhere)
CURRENT_MATCH_COLOR = QColor(255, 150, 50)


class LineSource(Protocol):
    """What a LineView shows: ``count`` lines, each as text with highlighted spans."""

    def line_count(self) -> int: ...

    def line_text(self, index: int) -> str:
        """Line ``index`` as shown."""
        ...

    def line_spans(self, index: int) -> Sequence[tuple[int, int, bool]]:
        """Highlights in line ``index``'s shown text: (start, end, is the current match)."""
        ...

    def widest_line(self) -> int:
        """Characters in the longest line (sizes the horizontal scroll bar; may overshoot)."""
        ...


class LineView(QAbstractScrollArea):
    """Lines from a ``LineSource``, painted lazily; see the module docstring.

    Signals:
        selection_changed(): the selected lines changed.
    """

    selection_changed = Signal()

    def __init__(self, source: LineSource, parent: QWidget | None = None):
        super().__init__(parent)
        self.source = source
        self._wrap = False
        self._anchor: int | None = None  # first end of the selection
        self._cursor: int | None = None  # the other end (moves with shift/drag/arrows)
        self._heights: dict[int, int] = {}  # wrapped lines: index -> text lines
        self.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.viewport().setCursor(Qt.CursorShape.IBeamCursor)
        self.verticalScrollBar().setSingleStep(1)
        self.horizontalScrollBar().setSingleStep(20)
        self.verticalScrollBar().valueChanged.connect(lambda _v: self.viewport().update())
        self.horizontalScrollBar().valueChanged.connect(lambda _v: self.viewport().update())
        self._update_metrics()

    # -- what the owner calls -------------------------------------------------------------------

    @property
    def wrap(self) -> bool:
        return self._wrap

    def set_wrap(self, on: bool) -> None:
        """Wrap long lines at the view's width (no horizontal scrolling) or not."""
        if on == self._wrap:
            return
        top = self.top_line()
        self._wrap = on
        self._heights.clear()
        self.horizontalScrollBar().setValue(0)
        self._update_ranges()
        self.verticalScrollBar().setValue(top)
        self.viewport().update()

    def lines_appended(self) -> None:
        """The source has more lines at its end."""
        self._update_ranges()
        self.viewport().update()

    def lines_removed(self, count: int) -> None:
        """The source dropped its first ``count`` lines (the others moved up by ``count``)."""
        if count <= 0:
            return
        self._heights.clear()

        def shift(index: int | None) -> int | None:
            return None if index is None or index < count else index - count

        top = max(0, self.top_line() - count)
        self._anchor, self._cursor = shift(self._anchor), shift(self._cursor)
        if self._anchor is None or self._cursor is None:
            self._anchor = self._cursor = None
        self._update_ranges()
        self.verticalScrollBar().setValue(top)
        self.viewport().update()
        self.selection_changed.emit()

    def reset(self) -> None:
        """Every line may have changed (new source content, another format): forget the
        selection and cached heights, go to the top."""
        self._heights.clear()
        had = self._cursor is not None
        self._anchor = self._cursor = None
        self._update_ranges()
        self.verticalScrollBar().setValue(0)
        self.horizontalScrollBar().setValue(0)
        self.viewport().update()
        if had:
            self.selection_changed.emit()

    def restyle(self) -> None:
        """The lines' text changed in place (e.g. timestamps shown): keep the place."""
        top = self.top_line()
        self._heights.clear()
        self._update_ranges()
        self.verticalScrollBar().setValue(top)
        self.viewport().update()

    def top_line(self) -> int:
        return self.verticalScrollBar().value()

    def at_end(self) -> bool:
        bar = self.verticalScrollBar()
        return bar.value() >= bar.maximum()

    def scroll_to_end(self) -> None:
        bar = self.verticalScrollBar()
        bar.setValue(bar.maximum())

    def selection(self) -> tuple[int, int] | None:
        """The first and last selected line (inclusive), or None."""
        if self._anchor is None or self._cursor is None:
            return None
        return min(self._anchor, self._cursor), max(self._anchor, self._cursor)

    def select_lines(self, first: int, last: int) -> None:
        """Select lines ``first`` to ``last`` (inclusive; the cursor ends on ``last``)."""
        count = self.source.line_count()
        if count == 0:
            self.clear_selection()
            return
        self._set_selection(_clamp(first, count), _clamp(last, count))

    def select_line(self, index: int, center: bool = False) -> None:
        """Select one line and bring it into view (in the middle when ``center``)."""
        self.select_lines(index, index)
        self.ensure_visible(index, center)

    def select_all(self) -> None:
        count = self.source.line_count()
        if count:
            self._set_selection(0, count - 1)

    def clear_selection(self) -> None:
        if self._cursor is not None:
            self._anchor = self._cursor = None
            self.viewport().update()
            self.selection_changed.emit()

    def ensure_visible(self, index: int, center: bool = False) -> None:
        """Scroll so that line ``index`` is in sight: at the edge it was beyond, or in the
        middle when ``center``."""
        bar = self.verticalScrollBar()
        top = bar.value()
        shown = self._lines_from(top)
        if not center and top <= index < top + shown:
            return
        if center:
            above = max(0, self._fit_above(index, self.viewport().height() // 2))
            bar.setValue(above)
        elif index < top:
            bar.setValue(index)
        else:
            bar.setValue(self._fit_above(index, self.viewport().height()))

    def line_at(self, y: int) -> int | None:
        """The line painted at viewport height ``y``, or None past the last line."""
        count = self.source.line_count()
        index = self.top_line()
        if y < 0:
            return max(0, index - 1) if count else None
        if not self._wrap:
            found = index + y // self._line_height
            return found if found < count else None
        top = 0
        while index < count:
            top += self.rows_of(index) * self._line_height
            if y < top:
                return index
            index += 1
        return None

    # -- geometry -------------------------------------------------------------------------------

    def _update_metrics(self) -> None:
        metrics = self.fontMetrics()
        big = QRect(0, 0, 1 << 20, 1 << 20)
        one = metrics.boundingRect(big, TEXT_FLAGS, "Ag").height()
        # The pitch a multi-line drawText uses (the paint draws runs of lines in one call).
        self._line_height = max(1, metrics.boundingRect(big, TEXT_FLAGS, "Ag\nAg").height() - one)
        self._char_width = max(1, metrics.horizontalAdvance("M"))

    def _text_width(self) -> int:
        return max(10, self.viewport().width() - 2 * MARGIN)

    def _shown(self, index: int) -> str:
        """Line ``index`` as painted: cut when very long, no characters that break lines."""
        text = self.source.line_text(index)
        if len(text) > PAINT_CHARS:
            text = text[:PAINT_CHARS] + " …"
        if "\u2028" in text or "\u2029" in text or "\n" in text:
            text = text.replace("\u2028", " ").replace("\u2029", " ").replace("\n", " ")
        return text

    def rows_of(self, index: int) -> int:
        """Text lines that line ``index`` takes (1 unless wrapping)."""
        if not self._wrap:
            return 1
        rows = self._heights.get(index)
        if rows is None:
            box = QRect(0, 0, self._text_width(), 1 << 24)
            height = self.fontMetrics().boundingRect(box, WRAP_FLAGS, self._shown(index)).height()
            rows = max(1, round(height / self._line_height))
            if len(self._heights) >= WRAP_CACHE:
                self._heights.clear()
            self._heights[index] = rows
        return rows

    def _lines_from(self, top: int) -> int:
        """How many lines from ``top`` are (at least partly) in sight."""
        count = self.source.line_count()
        height = self.viewport().height()
        if not self._wrap:
            return min(count - top, -(-height // self._line_height))
        used = shown = 0
        while top + shown < count and used < height:
            used += self.rows_of(top + shown) * self._line_height
            shown += 1
        return shown

    def _fit_above(self, index: int, height: int) -> int:
        """The top line that puts line ``index`` at the bottom of ``height`` pixels."""
        if not self._wrap:
            return max(0, index - max(1, height // self._line_height) + 1)
        used = self.rows_of(index) * self._line_height
        top = index
        while top > 0:
            above = self.rows_of(top - 1) * self._line_height
            if used + above > height:
                break
            used += above
            top -= 1
        return top

    def _update_ranges(self) -> None:
        count = self.source.line_count()
        vbar = self.verticalScrollBar()
        height = self.viewport().height()
        full = max(1, height // self._line_height)
        last_top = max(0, self._fit_above(count - 1, height)) if count else 0
        vbar.setRange(0, last_top)
        vbar.setPageStep(full)
        hbar = self.horizontalScrollBar()
        if self._wrap:
            hbar.setRange(0, 0)
        else:
            wide = self.source.widest_line() * self._char_width + 2 * MARGIN
            hbar.setRange(0, max(0, wide - self.viewport().width()))
            hbar.setPageStep(self.viewport().width())

    def _layout(self, text: str) -> QTextLayout:
        """``text`` laid out as painted (for where its matches are)."""
        layout = QTextLayout(text, self.font())
        option = QTextOption()
        option.setWrapMode(
            QTextOption.WrapMode.WrapAnywhere if self._wrap else QTextOption.WrapMode.NoWrap
        )
        option.setTabStopDistance(8 * self._char_width)
        layout.setTextOption(option)
        width = self._text_width()
        layout.beginLayout()
        y = 0.0
        while True:
            line = layout.createLine()
            if not line.isValid():
                break
            line.setLineWidth(width)
            line.setPosition(QPointF(0, y))
            y += self._line_height
        layout.endLayout()
        return layout

    # -- events ---------------------------------------------------------------------------------

    def paintEvent(self, event: QPaintEvent) -> None:
        """Paints the lines in sight with few calls into Qt: each call from Python may wait
        for the GIL (a reader thread busy decoding holds it up to the switch interval), so
        the text goes in runs of lines, one drawText each, not a call or more per line."""
        painter = QPainter(self.viewport())
        palette = self.palette()
        painter.fillRect(event.rect(), palette.color(QPalette.ColorRole.Base))
        count = self.source.line_count()
        height = self.viewport().height()
        x = MARGIN - self.horizontalScrollBar().value()
        lh = self._line_height
        shown: list[tuple[int, int, int, str]] = []  # index, y, rows, text
        y, index = 0, self.top_line()
        while index < count and y < height:
            rows = self.rows_of(index)
            shown.append((index, y, rows, self._shown(index)))
            y += rows * lh
            index += 1
        if not shown:
            painter.end()
            return
        selected = self.selection()

        def is_selected(entry: tuple[int, int, int, str]) -> bool:
            return selected is not None and selected[0] <= entry[0] <= selected[1]

        marked = [entry for entry in shown if is_selected(entry)]
        if marked:
            top, bottom = marked[0][1], marked[-1][1] + marked[-1][2] * lh
            painter.fillRect(
                QRect(0, top, self.viewport().width(), bottom - top),
                palette.color(QPalette.ColorRole.Highlight),
            )
        for line_index, line_y, _rows, text in shown:
            spans = self.source.line_spans(line_index)
            if spans:
                self._paint_spans(painter, text, spans, x, line_y)
        width = self._text_width() if self._wrap else 1 << 20
        flags = WRAP_FLAGS if self._wrap else TEXT_FLAGS
        colors = (
            palette.color(QPalette.ColorRole.Text),
            palette.color(QPalette.ColorRole.HighlightedText),
        )
        run_start = 0
        for position in range(1, len(shown) + 1):
            if position < len(shown) and is_selected(shown[position]) == is_selected(
                shown[run_start]
            ):
                continue
            run = shown[run_start:position]
            painter.setPen(colors[is_selected(run[0])])
            top = run[0][1]
            bottom = run[-1][1] + run[-1][2] * lh
            painter.drawText(
                QRect(x, top, width, bottom - top), flags, "\n".join(e[3] for e in run)
            )
            run_start = position
        painter.end()

    def _paint_spans(
        self,
        painter: QPainter,
        text: str,
        spans: Sequence[tuple[int, int, bool]],
        x: int,
        y: int,
    ) -> None:
        """Backgrounds behind the highlighted parts of one line."""
        layout = self._layout(text)
        for start, end, current in spans:
            end = min(end, len(text))
            color = CURRENT_MATCH_COLOR if current else MATCH_COLOR
            while start < end:
                line = layout.lineForTextPosition(start)
                if not line.isValid():
                    break
                stop = min(end, line.textStart() + line.textLength())
                if stop <= start:
                    break
                left, right = _x(line, start), _x(line, stop)
                painter.fillRect(
                    QRectF(x + left, y + line.y(), right - left, self._line_height), color
                )
                start = stop

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if self._wrap:
            self._heights.clear()
        end = self.at_end()
        self._update_ranges()
        if end:
            self.scroll_to_end()

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.FontChange:
            self._update_metrics()
            self._heights.clear()
            self._update_ranges()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            super().mousePressEvent(event)
            return
        index = self.line_at(int(event.position().y()))
        if index is None:
            count = self.source.line_count()
            if not count:
                return
            index = count - 1
        if event.modifiers() & Qt.KeyboardModifier.ShiftModifier and self._anchor is not None:
            self._set_selection(self._anchor, index)
        else:
            self._set_selection(index, index)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if not event.buttons() & Qt.MouseButton.LeftButton or self._anchor is None:
            return
        y = int(event.position().y())
        bar = self.verticalScrollBar()
        if y < 0:
            bar.triggerAction(QAbstractSlider.SliderAction.SliderSingleStepSub)
        elif y >= self.viewport().height():
            bar.triggerAction(QAbstractSlider.SliderAction.SliderSingleStepAdd)
        index = self.line_at(max(0, min(y, self.viewport().height() - 1)))
        if index is None:
            index = self.source.line_count() - 1
        if index >= 0:
            self._set_selection(self._anchor, index)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.matches(QKeySequence.StandardKey.SelectAll):
            self.select_all()
            return
        count = self.source.line_count()
        key = event.key()
        page = max(1, self.verticalScrollBar().pageStep())
        steps = {
            Qt.Key.Key_Up: -1,
            Qt.Key.Key_Down: 1,
            Qt.Key.Key_PageUp: -page,
            Qt.Key.Key_PageDown: page,
        }
        if count and (key in steps or key in (Qt.Key.Key_Home, Qt.Key.Key_End)):
            current = self._cursor if self._cursor is not None else self.top_line()
            if key == Qt.Key.Key_Home:
                target = 0
            elif key == Qt.Key.Key_End:
                target = count - 1
            else:
                target = _clamp(current + steps[Qt.Key(key)], count)
            extend = bool(event.modifiers() & Qt.KeyboardModifier.ShiftModifier)
            anchor = self._anchor if extend and self._anchor is not None else target
            self._set_selection(anchor, target)
            self.ensure_visible(target)
            # As a user's scroll: the owner's follow logic listens to the bar's actions.
            self.verticalScrollBar().triggerAction(QAbstractSlider.SliderAction.SliderMove)
            return
        super().keyPressEvent(event)

    def _set_selection(self, anchor: int, cursor: int) -> None:
        if (anchor, cursor) == (self._anchor, self._cursor):
            return
        self._anchor, self._cursor = anchor, cursor
        self.viewport().update()
        self.selection_changed.emit()


def _x(line: QTextLine, position: int) -> float:
    """Where ``position`` is along ``line`` (PySide returns the x with the position)."""
    found: Any = line.cursorToX(position)
    return float(found[0] if isinstance(found, tuple) else found)


def _clamp(index: int, count: int) -> int:
    return max(0, min(index, count - 1))
