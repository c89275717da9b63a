"""The strip across the top of a window that says the engine cannot be reached.

Usage::

    banner = EngineBanner()
    banner.retry_requested.connect(session.retry_now)
    session.state_changed.connect(banner.on_state)     # or call show_lost()/show_connected()

It shows what is wrong in plain words, says that Toolbox keeps trying by itself, and offers
Retry to try at once. It hides itself when the engine answers again.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QWidget

from ui.widgets.text import readable

_STYLE = (
    "QFrame#engineBanner { background: #fdecea; border: 1px solid #f5c2c0; border-radius: 4px; }"
    "QFrame#engineBanner[mode='connecting'] { background: #eef4fb; border-color: #c5d9f0; }"
    "QFrame#engineBanner QLabel { color: #5f2120; }"
    "QFrame#engineBanner[mode='connecting'] QLabel { color: #1d3b5a; }"
)


class EngineBanner(QFrame):
    """Hidden while the engine is reachable; otherwise a message with a Retry button.

    Signals:
        retry_requested(): the user pressed Retry.
    """

    retry_requested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("engineBanner")
        self.setStyleSheet(_STYLE)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextFormat(Qt.TextFormat.PlainText)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.retry_button = QPushButton("Retry")
        self.retry_button.setToolTip("Try to reach the engine now instead of waiting")
        self.retry_button.clicked.connect(self._retry)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.retry_button, 0, Qt.AlignmentFlag.AlignVCenter)
        self.setVisible(False)

    @property
    def mode(self) -> str:
        return str(self.property("mode") or "hidden")

    def show_connecting(self, engine: str) -> None:
        """First connection in progress: a quiet note, no Retry yet."""
        self._set_mode("connecting")
        self.label.setText(f"Connecting to the Docker engine at {engine}…")
        self.retry_button.setVisible(False)
        self.setVisible(True)

    def show_lost(self, engine: str, why: str | None = None, hint: str | None = None) -> None:
        """The engine is unreachable: say so, say why, and offer Retry."""
        self._set_mode("lost")
        head = f"Cannot reach the Docker engine at {engine}."
        # The engine layer's own message often says just this already; never say it twice.
        parts = [] if why and why.startswith(head.split(" at ")[0]) else [head]
        if why:
            parts.append(readable(why).rstrip(".") + ".")
        parts.append(
            readable(hint) or "Toolbox keeps trying and reconnects by itself when it is back."
        )
        self.label.setText(" ".join(parts))
        self.retry_button.setVisible(True)
        self.retry_button.setEnabled(True)
        self.setVisible(True)

    def show_connected(self) -> None:
        self._set_mode("hidden")
        self.setVisible(False)

    def _retry(self) -> None:
        self.retry_button.setEnabled(False)
        self.label.setText(self.label.text().split(" Toolbox keeps")[0] + " Retrying…")
        self.retry_requested.emit()

    def _set_mode(self, mode: str) -> None:
        self.setProperty("mode", mode)
        self.style().unpolish(self)
        self.style().polish(self)
