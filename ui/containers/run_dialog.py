"""The Run dialog (``docker run``) and, in edit mode, a container's settings.

Usage::

    dialog = RunDialog(session, image="nginx:1.25", parent=window)   # e.g. from the Images page
    dialog.ran.connect(lambda container_id: ...)
    dialog.open()

    RunDialog.for_edit(session, container_id, parent).open()          # "Edit settings…"

Every field is checked with the parsers of ``toolbox.engine.parse`` as it is typed, and the
reason shows beside the field. Ports, env and volumes take one entry per line (ports may also
be separated by commas). The engine's own refusals appear at the top of the dialog in plain
words, and the dialog stays open to fix them. In edit mode the settings come from
``EngineClient.spec_of`` and saving calls ``recreate`` after a clear warning.
"""

from __future__ import annotations

import re
import shlex
from typing import TYPE_CHECKING, Any

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

from toolbox.engine.parse import (
    EnvVar,
    PortSpec,
    RestartPolicy,
    VolumeSpec,
    parse_env,
    parse_image_ref,
    parse_port,
    parse_volume,
)
from toolbox.engine.records import RunSpec
from toolbox.errors import ToolboxError, ValidationError

if TYPE_CHECKING:
    from ui.session import EngineSession

# docker's own rule for container names (daemon/names.go).
_NAME = re.compile(r"/?[a-zA-Z0-9][a-zA-Z0-9_.-]+")
FIELDS = ("image", "name", "command", "ports", "env", "volumes", "restart")

RECREATE_WARNING = (
    "Saving replaces this container: the old one is stopped and set aside, a new one with "
    "these settings and the same name is started, then the old one is removed. Files changed "
    "inside the old container (outside its volumes) are lost. If the new one cannot start, "
    "the old one is put back as it was."
)


def _lines(text: str) -> list[tuple[int, str]]:
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def parse_form(
    image: str,
    name: str,
    command: str,
    ports: str,
    env: str,
    volumes: str,
    restart: RestartPolicy,
    max_retries: int,
    auto_remove: bool,
    interactive: bool,
) -> tuple[RunSpec | None, dict[str, str]]:
    """Validate the form's texts; returns the RunSpec (or None) and a reason per bad field."""
    errors: dict[str, str] = {}

    def check(field: str, fn: Any, prefix: str = "") -> Any:
        try:
            return fn()
        except ValidationError as exc:
            errors.setdefault(field, prefix + exc.message)
            return None

    image_text = image.strip()
    if not image_text:
        errors["image"] = "Choose an image to run, like busybox or nginx:1.25"
    else:
        check("image", lambda: parse_image_ref(image_text))

    name_text = name.strip()
    if name_text and not _NAME.fullmatch(name_text):
        errors["name"] = (
            f"{name_text!r} is not a valid name: use letters, digits, '_', '.' and '-', "
            "at least two characters, starting with a letter or digit"
        )

    argv: tuple[str, ...] | None = None
    if command.strip():
        try:
            argv = tuple(shlex.split(command))
        except ValueError as exc:
            errors["command"] = f"The command has an unclosed quote ({exc})"

    port_specs: list[PortSpec] = []
    for _n, line in _lines(ports.replace(",", "\n")):
        port_specs.extend(check("ports", lambda line=line: parse_port(line)) or ())
    seen: set[tuple[str, int, str]] = set()
    for p in port_specs:
        if p.host_port is None:
            continue
        slot = (p.host_ip or "", p.host_port, p.protocol)
        if slot in seen:
            errors.setdefault(
                "ports", f"Host port {p.host_port}/{p.protocol} is given twice: use another one"
            )
        seen.add(slot)

    env_lines = _lines(env)
    env_vars: list[EnvVar] = []
    for n, line in env_lines:
        prefix = f"Line {n}: " if len(env_lines) > 1 else ""
        var = check("env", lambda line=line: parse_env(line), prefix)
        if var is not None:
            env_vars.append(var)

    volume_lines = _lines(volumes)
    volume_specs: list[VolumeSpec] = []
    for n, line in volume_lines:
        prefix = f"Line {n}: " if len(volume_lines) > 1 else ""
        spec = check("volumes", lambda line=line: parse_volume(line), prefix)
        if spec is not None:
            volume_specs.append(spec)
    targets = [v.target.rstrip("/") for v in volume_specs]
    duplicates = sorted({t for t in targets if targets.count(t) > 1})
    if duplicates:
        errors.setdefault("volumes", f"{duplicates[0]} is mounted twice: keep one")

    if auto_remove and restart is not RestartPolicy.NO:
        errors["restart"] = (
            "A container removed when it exits cannot also be restarted: choose 'no' or "
            "untick “Remove when it exits”"
        )

    if errors:
        return None, errors
    spec = RunSpec(
        image=image_text,
        name=name_text.lstrip("/") or None,
        command=argv,
        ports=tuple(port_specs),
        env=tuple(env_vars),
        volumes=tuple(volume_specs),
        restart=restart,
        restart_max_retries=max_retries if restart is RestartPolicy.ON_FAILURE else 0,
        auto_remove=auto_remove,
        tty=interactive,
        stdin_open=interactive,
    )
    return spec, {}


class RunDialog(QDialog):
    """Form for a new container (or, with ``edit_id``, an existing one's settings).

    Signals:
        ran(str): the container is running (its id; for an edit, the new container's id).
    """

    ran = Signal(str)

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
            spec = _keep_hidden_settings(spec, self._edited_spec)
        for field, label in self.errors.items():
            reason = errors.get(field, "")
            label.setText(reason)
            label.setVisible(bool(reason))
        return spec, errors

    def set_spec(self, spec: RunSpec) -> None:
        """Fill the form from ``spec`` (edit mode)."""
        self.image_edit.setCurrentText(spec.image)
        self.name_edit.setText(spec.name or "")
        self.command_edit.setText(shlex.join(spec.command) if spec.command else "")
        self.ports_edit.setPlainText("\n".join(str(p) for p in spec.ports))
        self.env_edit.setPlainText("\n".join(str(e) for e in spec.env))
        self.volumes_edit.setPlainText("\n".join(str(v) for v in spec.volumes))
        self.restart_combo.setCurrentIndex(list(RestartPolicy).index(spec.restart))
        self.retries_spin.setValue(spec.restart_max_retries)
        self.auto_remove_box.setChecked(spec.auto_remove)
        self.interactive_box.setChecked(spec.tty and spec.stdin_open)

    def _revalidate(self, *_args: object) -> None:
        self._update_retries()
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


def _keep_hidden_settings(spec: RunSpec, original: RunSpec) -> RunSpec:
    """Settings the form does not show (labels) carry over to the recreated container."""
    from dataclasses import replace

    return replace(spec, labels=original.labels)


def _text_box(placeholder: str) -> QPlainTextEdit:
    box = QPlainTextEdit()
    box.setPlaceholderText(placeholder)
    box.setTabChangesFocus(True)
    box.setFixedHeight(64)
    return box
