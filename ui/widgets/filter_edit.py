"""A search box that reports its text only after the user pauses typing.

Usage::

    box = FilterLineEdit(placeholder="Filter containers")
    box.filter_changed.connect(proxy.set_filter_text)

Re-filtering thousands of rows on every keystroke makes typing lag; ``filter_changed`` fires
``delay_ms`` after the last edit (Escape clears the box and fires at once).
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QLineEdit, QWidget

DEFAULT_DELAY_MS = 200


class FilterLineEdit(QLineEdit):
    """A QLineEdit with a debounced ``filter_changed`` signal.

    Signals:
        filter_changed(str): the settled text, stripped.
    """

    filter_changed = Signal(str)

    def __init__(
        self,
        placeholder: str = "Filter",
        delay_ms: int = DEFAULT_DELAY_MS,
        parent: QWidget | None = None,
    ):
        super().__init__(parent)
        self.setPlaceholderText(placeholder)
        self.setClearButtonEnabled(True)
        # Wide enough for the whole placeholder next to the clear button.
        self.setMinimumWidth(self.fontMetrics().horizontalAdvance(placeholder) + 44)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(delay_ms)
        self._timer.timeout.connect(self._emit)
        self._last = ""
        self.textChanged.connect(lambda _text: self._timer.start())

    def flush(self) -> None:
        """Emit now if the text changed since the last emission (no waiting)."""
        self._timer.stop()
        self._emit()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Escape and self.text():
            self.clear()
            self.flush()
            return
        super().keyPressEvent(event)

    def _emit(self) -> None:
        text = self.text().strip()
        if text != self._last:
            self._last = text
            self.filter_changed.emit(text)
