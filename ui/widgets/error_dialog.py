"""The one way the GUI reports a failure: what failed, why, what to do, and details on demand.

Usage::

    ErrorDialog.from_error(exc, parent, what="Start container web").show()   # non-modal

or let ``ui.tasks.TaskRunner`` show it for a task that has no ``on_error``. ``ErrorDialog`` never
blocks the caller unless you call ``exec()`` yourself.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QStyle,
    QVBoxLayout,
    QWidget,
)

from toolbox.errors import ToolboxError
from ui.widgets.text import readable


class ErrorDialog(QDialog):
    """Shows a failure in three plain lines plus optional details (hidden until asked for)."""

    def __init__(
        self,
        what: str,
        why: str,
        hint: str | None = None,
        details: str | None = None,
        parent: QWidget | None = None,
    ):
        super().__init__(parent)
        self.setObjectName("errorDialog")
        self.setWindowTitle(what or "Error")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.setMinimumWidth(440)

        icon = QLabel()
        icon.setPixmap(
            self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxCritical).pixmap(40, 40)
        )
        icon.setAlignment(Qt.AlignmentFlag.AlignTop)

        self.what_label = QLabel(f"<b>{_escape(what or 'Something failed')}</b>")
        self.why_label = QLabel(readable(why))
        self.hint_label = QLabel(readable(hint))
        self.hint_label.setVisible(bool(hint))
        self.hint_label.setObjectName("errorHint")
        self.why_label.setTextFormat(Qt.TextFormat.PlainText)
        self.hint_label.setTextFormat(Qt.TextFormat.PlainText)
        for label in (self.what_label, self.why_label, self.hint_label):
            label.setWordWrap(True)
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        text = QVBoxLayout()
        text.addWidget(self.what_label)
        text.addWidget(self.why_label)
        text.addWidget(self.hint_label)
        head = QHBoxLayout()
        head.addWidget(icon)
        head.addLayout(text, 1)

        self.details_view = QPlainTextEdit(details or "")
        self.details_view.setReadOnly(True)
        self.details_view.setVisible(False)
        self.details_view.setMinimumHeight(160)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        buttons.accepted.connect(self.accept)
        self.details_button = QPushButton("Show details")
        self.details_button.setCheckable(True)
        self.details_button.toggled.connect(self._toggle_details)
        copy = QPushButton("Copy")
        copy.setToolTip("Copy the whole report to the clipboard")
        copy.clicked.connect(self.copy_report)
        buttons.addButton(self.details_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.addButton(copy, QDialogButtonBox.ButtonRole.ActionRole)
        self.details_button.setVisible(bool(details))  # after addButton, which shows it

        layout = QVBoxLayout(self)
        layout.addLayout(head)
        layout.addWidget(self.details_view, 1)
        layout.addWidget(buttons)
        self._report = "\n".join(p for p in (what, why, hint, details) if p)

    @classmethod
    def from_error(
        cls, error: ToolboxError, parent: QWidget | None = None, what: str | None = None
    ) -> ErrorDialog:
        return cls(what or "Something failed", error.message, error.hint, error.details, parent)

    def report(self) -> str:
        """The full text (what, why, hint, details), as copied to the clipboard."""
        return self._report

    def copy_report(self) -> None:
        QGuiApplication.clipboard().setText(self._report)

    def _toggle_details(self, shown: bool) -> None:
        self.details_view.setVisible(shown)
        self.details_button.setText("Hide details" if shown else "Show details")
        self.adjustSize()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
