"""What an engine page shows while there is no engine: why, and the one button that helps.

Signals:
    action_requested(str): the button was clicked; the string is the placeholder's action key
    ("start" a stopped machine, "machines" to open the Machines page, "retry").
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QLabel, QPushButton, QVBoxLayout, QWidget


class EnginePlaceholder(QWidget):
    """A centred message with an optional button."""

    action_requested = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("enginePlaceholder")
        self.title = QLabel()
        self.title.setObjectName("placeholderTitle")
        self.title.setStyleSheet("font-size: 15pt; font-weight: 600;")
        self.title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.detail = QLabel()
        self.detail.setWordWrap(True)
        self.detail.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.action = ""
        self.button = QPushButton()
        self.button.setObjectName("placeholderButton")
        self.button.clicked.connect(self._clicked)
        layout = QVBoxLayout(self)
        layout.addStretch(1)
        layout.addWidget(self.title)
        layout.addWidget(self.detail)
        layout.addWidget(self.button, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addStretch(2)
        self.show_message("Connecting to the Docker engine…")

    def _clicked(self) -> None:
        self.action_requested.emit(self.action)

    def show_message(
        self, title: str, detail: str = "", button: str = "", action: str = ""
    ) -> None:
        self.title.setText(title)
        self.detail.setText(detail)
        self.detail.setVisible(bool(detail))
        self.button.setText(button)
        self.button.setVisible(bool(button))
        self.action = action
