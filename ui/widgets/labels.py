"""The error colour, and the error and hint labels the long-running dialogs show on failure."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel

ERROR_STYLE = "color: #b3261e;"


def error_and_hint_labels(prefix: str) -> tuple[QLabel, QLabel]:
    """A bold error label (``{prefix}Error``) and its hint (``{prefix}Hint``): plain text,
    wrapped, selectable, hidden until there is something to say."""
    error, hint = QLabel(), QLabel()
    error.setObjectName(f"{prefix}Error")
    error.setStyleSheet(ERROR_STYLE + " font-weight: bold;")
    hint.setObjectName(f"{prefix}Hint")
    for label in (error, hint):
        label.setWordWrap(True)
        label.setTextFormat(Qt.TextFormat.PlainText)
        label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        label.setVisible(False)
    return error, hint
