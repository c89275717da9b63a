"""The Run dialog (``docker run``) and, in edit mode, a container's settings.

Usage::

    dialog = RunDialog(session, image="nginx:1.25", parent=window)   # e.g. from the Images page
    dialog.ran.connect(lambda container_id: ...)
    dialog.open()

    RunDialog.for_edit(session, container_id, parent).open()          # "Edit settings…"

Every field is checked by ``toolbox.engine.runform.parse_form`` as it is typed, and the
reason shows beside the field. Ports, env and volumes take one entry per line (ports may also
be separated by commas). When the engine is a Toolbox machine's, a bind-mount source that is
a folder on this computer outside every share gets a warning under Volumes with the command
that shares it (``toolbox.engine.runform.bind_warnings``); it does not block Run.
The engine's own refusals appear at the top of the dialog in plain words, and the dialog
stays open to fix them. In edit mode the settings come from ``EngineClient.spec_of`` and
saving calls ``recreate`` after a clear warning.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from toolbox.engine.parse import RestartPolicy
from toolbox.engine.records import RunSpec
from toolbox.engine.runform import (
    FIELDS,
    BindWarning,
    bind_warnings,
    form_texts,
    keep_hidden_settings,
    parse_form,
)
from toolbox.errors import ToolboxError, ValidationError

if TYPE_CHECKING:
    from toolbox.machine.model import MachineSpec
    from ui.session import EngineSession

log = logging.getLogger(__name__)

RECREATE_WARNING = (
    "Saving replaces this container: the old one is stopped and set aside, a new one with "
    "these settings and the same name is started, then the old one is removed. Files changed "
    "inside the old container (outside its volumes) are lost. If the new one cannot start, "
    "the old one is put back as it was."
)


class RunDialog(QDialog):
    """Form for a new container (or, with ``edit_id``, an existing one's settings).

    Signals:
        ran(str): the container is running (its id; for an edit, the new container's id).
        machine_loaded(): the Toolbox machine behind the engine was looked up (``machine``).
    """

    ran = Signal(str)
    machine_loaded = Signal()

    def __init__(
        self,
        session: EngineSession,
        image: str | None = None,
        parent: QWidget | None = None,
        edit_id: str | None = None,
    ):
        super().__init__(parent)
        self.session = session
        self.edit_id = edit_id
        self._edited_spec: RunSpec | None = None
        self.machine: MachineSpec | None = None  # the Toolbox machine running this engine
        self.setObjectName("runDialog")
        self.setWindowTitle("Edit container settings" if edit_id else "Run a container")
        self.setMinimumWidth(560)

        self.engine_error = QLabel()
        self.engine_error.setObjectName("engineError")
        self.engine_error.setWordWrap(True)
        self.engine_error.setTextFormat(Qt.TextFormat.PlainText)
        self.engine_error.setStyleSheet("color: #b3261e; font-weight: bold;")
        self.engine_error.setVisible(False)
        self.warning = QLabel(RECREATE_WARNING)
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet(
            "background: #fff4e5; border: 1px solid #f0c36d; border-radius: 4px; padding: 6px;"
        )
        self.warning.setVisible(bool(edit_id))

        self.image_edit = QComboBox()
        self.image_edit.setEditable(True)
        self.image_edit.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        tags = sorted({t for i in session.images() for t in i.repo_tags})
        self.image_edit.addItems(tags)
        self.image_edit.setCurrentText(image or "")
        image_line = self.image_edit.lineEdit()
        assert image_line is not None  # an editable combo box always has its line edit
        image_line.setPlaceholderText("busybox:latest")
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("Optional: a name is made up when empty")
        self.command_edit = QLineEdit()
        self.command_edit.setPlaceholderText("Optional: the image's default command when empty")
        self.ports_edit = _text_box("8080:80\n127.0.0.1:5353:53/udp")
        self.env_edit = _text_box("KEY=value")
        self.volumes_edit = _text_box("/host/folder:/data\nmy-volume:/var/lib/data:ro")
        self.restart_combo = QComboBox()
        for policy in RestartPolicy:
            self.restart_combo.addItem(policy.value)
        self.retries_spin = QSpinBox()
        self.retries_spin.setRange(0, 1000)
        self.retries_spin.setSpecialValueText("unlimited")
        self.retries_spin.setToolTip("How many times to restart after failures (on-failure only)")
        self.auto_remove_box = QCheckBox("Remove when it exits (--rm)")
        self.interactive_box = QCheckBox("Interactive with a terminal (-it)")

        self.errors: dict[str, QLabel] = {}
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        rows: list[tuple[str, str, QWidget]] = [
            ("image", "Image", self.image_edit),
            ("name", "Name", self.name_edit),
            ("command", "Command", self.command_edit),
            ("ports", "Ports", self.ports_edit),
            ("env", "Environment", self.env_edit),
            ("volumes", "Volumes", self.volumes_edit),
            ("restart", "Restart", self.restart_combo),
        ]
        for field, title, widget in rows:
            form.addRow(title, widget)
            label = QLabel()
            label.setObjectName(f"{field}Error")
            label.setWordWrap(True)
            label.setTextFormat(Qt.TextFormat.PlainText)
            label.setStyleSheet("color: #b3261e;")
            label.setVisible(False)
            self.errors[field] = label
            form.addRow("", label)
            if field == "volumes":
                form.addRow("", self._bind_warning_label())
            if field == "restart":
                form.addRow("Max retries", self.retries_spin)
        form.addRow("", self.auto_remove_box)
        form.addRow("", self.interactive_box)

        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.submit_button = QPushButton("Recreate" if edit_id else "Run")
        self.submit_button.setDefault(True)
        self.buttons.addButton(self.submit_button, QDialogButtonBox.ButtonRole.AcceptRole)
        self.buttons.rejected.connect(self.reject)
        self.submit_button.clicked.connect(self.submit)
        self.progress = QLabel()

        layout = QVBoxLayout(self)
        layout.addWidget(self.warning)
        layout.addWidget(self.engine_error)
        layout.addLayout(form)
        layout.addWidget(self.progress)
        layout.addWidget(self.buttons)

        for signal in (
            self.image_edit.currentTextChanged,
            self.name_edit.textChanged,
            self.command_edit.textChanged,
            self.ports_edit.textChanged,
            self.env_edit.textChanged,
            self.volumes_edit.textChanged,
            self.restart_combo.currentIndexChanged,
            self.auto_remove_box.toggled,
        ):
            signal.connect(self._revalidate)
        self._touched = False
        self._update_retries()
        self._load_machine()
        if edit_id:
            self._load_settings(edit_id)

    @classmethod
    def for_edit(
        cls, session: EngineSession, container_id: str, parent: QWidget | None = None
    ) -> RunDialog:
        return cls(session, parent=parent, edit_id=container_id)

    # -- form <-> spec ------------------------------------------------------------------------

    def restart_policy(self) -> RestartPolicy:
        return list(RestartPolicy)[max(0, self.restart_combo.currentIndex())]

    def validate(self) -> tuple[RunSpec | None, dict[str, str]]:
        """Check every field, show each reason beside its field, return the spec if all good."""
        spec, errors = parse_form(
            self.image_edit.currentText(),
            self.name_edit.text(),
            self.command_edit.text(),
            self.ports_edit.toPlainText(),
            self.env_edit.toPlainText(),
            self.volumes_edit.toPlainText(),
            self.restart_policy(),
            self.retries_spin.value(),
            self.auto_remove_box.isChecked(),
            self.interactive_box.isChecked(),
        )
        if spec is not None and self._edited_spec is not None:
            spec = keep_hidden_settings(spec, self._edited_spec)
        for field, label in self.errors.items():
            reason = errors.get(field, "")
            label.setText(reason)
            label.setVisible(bool(reason))
        return spec, errors

    def set_spec(self, spec: RunSpec) -> None:
        """Fill the form from ``spec`` (edit mode)."""
        texts = form_texts(spec)
        self.image_edit.setCurrentText(texts["image"])
        self.name_edit.setText(texts["name"])
        self.command_edit.setText(texts["command"])
        self.ports_edit.setPlainText(texts["ports"])
        self.env_edit.setPlainText(texts["env"])
        self.volumes_edit.setPlainText(texts["volumes"])
        self.restart_combo.setCurrentIndex(list(RestartPolicy).index(spec.restart))
        self.retries_spin.setValue(spec.restart_max_retries)
        self.auto_remove_box.setChecked(spec.auto_remove)
        self.interactive_box.setChecked(spec.tty and spec.stdin_open)

    def _revalidate(self, *_args: object) -> None:
        self._update_retries()
        self._update_bind_warnings()
        if self._touched:
            self.validate()
        else:
            # Before the first submit, only complain about fields that have text in them.
            _spec, errors = self.validate()
            for field, label in self.errors.items():
                if field == "image" and not self.image_edit.currentText().strip():
                    label.setVisible(False)
                elif field in errors:
                    label.setVisible(True)

    def _update_retries(self) -> None:
        self.retries_spin.setEnabled(self.restart_policy() is RestartPolicy.ON_FAILURE)

    # -- bind mounts outside the machine's shares ----------------------------------------------

    def _bind_warning_label(self) -> QLabel:
        self.bind_warning = QLabel()
        self.bind_warning.setObjectName("volumesWarning")
        self.bind_warning.setWordWrap(True)
        self.bind_warning.setTextFormat(Qt.TextFormat.PlainText)
        self.bind_warning.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.bind_warning.setStyleSheet(
            "background: #fff4e5; border: 1px solid #f0c36d; border-radius: 4px; padding: 4px;"
        )
        self.bind_warning.setVisible(False)
        self.bind_warnings: tuple[BindWarning, ...] = ()
        return self.bind_warning

    def _load_machine(self) -> None:
        """Find the Toolbox machine behind this engine (reads its record on a worker)."""
        from toolbox.engine.resolve import machine_for_engine

        url = self.session.config.url

        def found(machine: MachineSpec | None) -> None:
            self.machine = machine
            self._update_bind_warnings()
            self.machine_loaded.emit()

        def failed(error: ToolboxError) -> None:
            # No record, no warning: the Run itself does not depend on it.
            log.info("cannot read the machine records for %s: %s", url, error)
            self.machine_loaded.emit()

        self.session.tasks.run(
            lambda: machine_for_engine(url),
            found,
            failed,
            owner=self,
            what="Read the machine's shares",
        )

    def _update_bind_warnings(self) -> None:
        machine = self.machine
        warnings = bind_warnings(self.volumes_edit.toPlainText(), machine) if machine else ()
        self.bind_warnings = warnings
        self.bind_warning.setText("\n".join(w.message for w in warnings))
        self.bind_warning.setVisible(bool(warnings))

    # -- engine -------------------------------------------------------------------------------

    def submit(self) -> None:
        """Validate, then run (or recreate) on a worker thread."""
        self._touched = True
        spec, errors = self.validate()
        if spec is None:
            first = next(f for f in FIELDS if f in errors)
            self._field_widget(first).setFocus()
            return
        self._set_busy("Recreating…" if self.edit_id else "Starting…")
        edit_id = self.edit_id
        if edit_id:
            self.session.call(
                lambda client: client.recreate(edit_id, spec),
                self._done,
                self._failed,
                key=f"container:{edit_id}",
                owner=self,
                what="Recreate container",
            )
        else:
            self.session.call(
                lambda client: client.run(spec),
                self._done,
                self._failed,
                owner=self,
                what="Run container",
            )

    def _load_settings(self, container_id: str) -> None:
        self._set_busy("Loading the container's settings…")

        def loaded(spec: RunSpec) -> None:
            self._edited_spec = spec
            self.set_spec(spec)
            self._set_busy(None)

        self.session.call(
            lambda client: client.spec_of(container_id),
            loaded,
            self._failed,
            owner=self,
            what="Read container settings",
        )

    def _done(self, container_id: str) -> None:
        self._set_busy(None)
        self.ran.emit(container_id)
        self.accept()

    def _failed(self, error: ToolboxError) -> None:
        self._set_busy(None)
        if isinstance(error, ValidationError) and error.field in self.errors:
            label = self.errors[error.field]
            label.setText(error.message)
            label.setVisible(True)
            return
        text = error.message
        if error.hint:
            text += f"\n{error.hint}"
        self.engine_error.setText(text)
        self.engine_error.setVisible(True)

    def _set_busy(self, message: str | None) -> None:
        busy = message is not None
        self.progress.setText(message or "")
        self.submit_button.setEnabled(not busy)
        for widget in self._inputs():
            widget.setEnabled(not busy)
        if busy:
            self.engine_error.setVisible(False)
        else:
            self._update_retries()

    def _inputs(self) -> list[QWidget]:
        return [
            self.image_edit,
            self.name_edit,
            self.command_edit,
            self.ports_edit,
            self.env_edit,
            self.volumes_edit,
            self.restart_combo,
            self.retries_spin,
            self.auto_remove_box,
            self.interactive_box,
        ]

    def _field_widget(self, field: str) -> QWidget:
        return {
            "image": self.image_edit,
            "name": self.name_edit,
            "command": self.command_edit,
            "ports": self.ports_edit,
            "env": self.env_edit,
            "volumes": self.volumes_edit,
            "restart": self.restart_combo,
        }[field]


def _text_box(placeholder: str) -> QPlainTextEdit:
    box = QPlainTextEdit()
    box.setPlaceholderText(placeholder)
    box.setTabChangesFocus(True)
    box.setFixedHeight(64)
    return box
