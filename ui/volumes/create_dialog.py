"""Create dialogs for volumes (here) and networks (``ui.networks.create_dialog``), on one base.

Usage::

    dialog = CreateVolumeDialog(session, parent=window)
    dialog.created.connect(lambda name: ...)
    dialog.open()

Each field is validated as it is typed, the reason shown beside it; the engine's refusal shows
at the top and the dialog stays open to fix it. The work runs off the GUI thread.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from toolbox.engine.parse import parse_env
from toolbox.errors import ToolboxError, ValidationError
from ui.widgets.labels import ERROR_STYLE
from ui.widgets.text import readable

if TYPE_CHECKING:
    from ui.session import EngineSession


# The engine's rule for local volume names (and what it accepts for container names).
NAME_RULE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")


def check_name(text: str, kind: str, existing: set[str], required: bool) -> str | None:
    """A valid, unused name (None when empty and not required); raises ``ValidationError``."""
    name = text.strip()
    if not name:
        if required:
            raise ValidationError("name", f"Give the {kind} a name, like app-data")
        return None
    if not NAME_RULE.fullmatch(name):
        raise ValidationError(
            "name",
            f"{name!r} is not a valid {kind} name: use letters, digits, '_', '.' and '-', "
            "at least two characters, starting with a letter or digit",
        )
    if name in existing:
        raise ValidationError("name", f"A {kind} named {name} already exists: pick another name")
    return name


def parse_labels(text: str) -> dict[str, str]:
    """``KEY=VALUE`` lines into labels; raises ``ValidationError`` naming the bad line."""
    labels: dict[str, str] = {}
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    for n, line in lines:
        try:
            var = parse_env(line, field="labels")
        except ValidationError as exc:
            prefix = f"Line {n}: " if len(lines) > 1 else ""
            raise ValidationError("labels", prefix + exc.message) from None
        labels[var.key] = var.value
    return labels


class ResourceDialog(QDialog):
    """A form of named fields, each with an error label under it, and a Create button.

    Signals:
        created(str): the new thing's name, once the engine made it.
    """

    created = Signal(str)

    def __init__(self, session: EngineSession, title: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.running = False
        self.setWindowTitle(title)
        self.setMinimumWidth(460)
        self.errors: dict[str, QLabel] = {}
        self.form = QFormLayout()
        self.form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.engine_error = QLabel()
        self.engine_error.setObjectName("engineError")
        self.engine_error.setWordWrap(True)
        self.engine_error.setTextFormat(Qt.TextFormat.PlainText)
        self.engine_error.setStyleSheet(ERROR_STYLE + " font-weight: bold;")
        self.engine_error.setVisible(False)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.submit_button = QPushButton("Create")
        self.submit_button.setDefault(True)
        self.buttons.addButton(self.submit_button, QDialogButtonBox.ButtonRole.AcceptRole)
        self.buttons.rejected.connect(self.reject)
        self.submit_button.clicked.connect(self.submit)
        layout = QVBoxLayout(self)
        layout.addWidget(self.engine_error)
        layout.addLayout(self.form)
        layout.addWidget(self.buttons)

    def add_field(self, field: str, title: str, widget: QWidget) -> None:
        self.form.addRow(title, widget)
        label = QLabel()
        label.setObjectName(f"{field}Error")
        label.setWordWrap(True)
        label.setTextFormat(Qt.TextFormat.PlainText)
        label.setStyleSheet(ERROR_STYLE)
        label.setVisible(False)
        self.errors[field] = label
        self.form.addRow("", label)

    # -- subclasses ---------------------------------------------------------------------------

    def parse(self) -> tuple[Any, dict[str, str]]:
        """The validated request (or None) and a reason per bad field."""
        raise NotImplementedError

    def work(self, request: Any) -> tuple[Callable[[Any], Any], str]:
        """``(fn(client) -> result, what)`` for the engine call."""
        raise NotImplementedError

    def name_of(self, result: Any) -> str:
        raise NotImplementedError

    # -- flow ---------------------------------------------------------------------------------

    def validate(self) -> Any:
        request, errors = self.parse()
        self.show_errors(errors)
        return request

    def show_errors(self, errors: Mapping[str, str]) -> None:
        for field, label in self.errors.items():
            reason = errors.get(field, "")
            label.setText(reason)
            label.setVisible(bool(reason))

    def revalidate(self, *_args: object) -> None:
        """As the user types: show the reasons at once."""
        if not self.running:
            self.validate()

    def submit(self) -> None:
        if self.running:
            return
        request = self.validate()
        if request is None:
            return
        fn, what = self.work(request)
        self.running = True
        self.submit_button.setEnabled(False)
        self.engine_error.setVisible(False)
        self.session.call(fn, self._done, self._failed, what=what, owner=self)

    def _done(self, result: Any) -> None:
        self.running = False
        self.submit_button.setEnabled(True)
        self.created.emit(self.name_of(result))
        self.accept()

    def _failed(self, error: ToolboxError) -> None:
        self.running = False
        self.submit_button.setEnabled(True)
        hint = f"\n{readable(error.hint)}" if error.hint else ""
        self.engine_error.setText(error.message + hint)
        self.engine_error.setVisible(True)


class CreateVolumeDialog(ResourceDialog):
    """Name (optional: the engine makes one up), driver and labels."""

    def __init__(self, session: EngineSession, parent: QWidget | None = None):
        super().__init__(session, "Create a volume", parent)
        self.setObjectName("createVolumeDialog")
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("Optional: a random name is made up when empty")
        self.driver_combo = QComboBox()
        self.driver_combo.setEditable(True)
        self.driver_combo.addItems(["local"])
        self.labels_edit = QPlainTextEdit()
        self.labels_edit.setPlaceholderText("Optional, one per line: KEY=value")
        self.labels_edit.setTabChangesFocus(True)
        self.labels_edit.setFixedHeight(64)
        self.add_field("name", "Name", self.name_edit)
        self.add_field("driver", "Driver", self.driver_combo)
        self.add_field("labels", "Labels", self.labels_edit)
        self.name_edit.textChanged.connect(self.revalidate)
        self.driver_combo.currentTextChanged.connect(self.revalidate)
        self.labels_edit.textChanged.connect(self.revalidate)

    def parse(self) -> tuple[Any, dict[str, str]]:
        errors: dict[str, str] = {}
        existing = {v.name for v in self.session.volumes()}
        name: str | None = None
        try:
            name = check_name(self.name_edit.text(), "volume", existing, required=False)
        except ValidationError as exc:
            errors["name"] = exc.message
        driver = self.driver_combo.currentText().strip()
        if not driver:
            errors["driver"] = "Choose a volume driver; 'local' keeps it on the machine's disk"
        elif not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.:/-]*", driver):
            errors["driver"] = f"{driver!r} is not a driver name"
        labels: dict[str, str] = {}
        try:
            labels = parse_labels(self.labels_edit.toPlainText())
        except ValidationError as exc:
            errors["labels"] = exc.message
        if errors:
            return None, errors
        return (name or "", driver, labels), {}

    def work(self, request: Any) -> tuple[Callable[[Any], Any], str]:
        name, driver, labels = request

        def create(client: Any) -> Any:
            return client.create_volume(name or None, driver=driver, labels=labels)

        return create, f"Create volume {name}" if name else "Create a volume"

    def name_of(self, result: Any) -> str:
        return str(result.name)
