"""The Build dialog: build an image from a folder with a Dockerfile, the output streamed.

Usage::

    dialog = BuildDialog(session, parent=window)
    dialog.built.connect(lambda image_id, tag: ...)
    dialog.open()

Fields: the folder (the build context), the Dockerfile (inside the folder), the tag, build
args (``KEY=VALUE``, one a line), the target stage, no-cache and pull. Build is the default
button, so Enter starts it. The build runs on a worker (``toolbox.engine.build.build_image``);
its events are queued and drained on the GUI thread in batches, so a chatty build never floods
the event loop. Each step gets a header line in the output and moves the "Step N/M" bar.
Cancel closes the engine stream, which stops the build; closing the dialog cancels too. A
failure says which step failed, keeps its output in the pane and offers the details.

Signals:
    built(str, str): the new image's id and its tag ("" when untagged).
"""

from __future__ import annotations

import threading
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

import shiboken6
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QCloseEvent, QFontDatabase
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from toolbox.engine.build import (
    BuildEvent,
    BuildEventKind,
    BuildFailed,
    BuildResult,
    BuildSpec,
    build_image,
    check_spec,
    parse_build_args,
)
from toolbox.errors import Cancelled, ToolboxError, ValidationError
from ui.tasks import Task, on_gui
from ui.widgets.error_dialog import ErrorDialog
from ui.widgets.labels import ERROR_STYLE, error_and_hint_labels
from ui.widgets.text import readable

if TYPE_CHECKING:
    from ui.session import EngineSession


class BuildDialog(QDialog):
    """See the module docstring."""

    built = Signal(str, str)

    def __init__(
        self, session: EngineSession, folder: str = "", parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.session = session
        self.setObjectName("buildDialog")
        self.setWindowTitle("Build an image")
        self.setMinimumWidth(640)
        self.task: Task[Any] | None = None
        self.cancel_event: threading.Event | None = None
        self.build_result: BuildResult | None = None
        self.last_error: ToolboxError | None = None
        self.cancelled = False
        self.step = 0
        self.total = 0
        self._generation = 0
        self._pending: deque[BuildEvent] = deque()
        self._lock = threading.Lock()

        self.folder_edit = QLineEdit(folder)
        self.folder_edit.setObjectName("folderEdit")
        self.folder_edit.setPlaceholderText("The folder with the Dockerfile (the build context)")
        folder_button = QPushButton("Choose…")
        folder_button.setAutoDefault(False)
        folder_button.clicked.connect(self.choose_folder)
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder_edit, 1)
        folder_row.addWidget(folder_button)
        self.dockerfile_edit = QLineEdit("Dockerfile")
        self.dockerfile_edit.setObjectName("dockerfileEdit")
        dockerfile_button = QPushButton("Choose…")
        dockerfile_button.setAutoDefault(False)
        dockerfile_button.clicked.connect(self.choose_dockerfile)
        dockerfile_row = QHBoxLayout()
        dockerfile_row.addWidget(self.dockerfile_edit, 1)
        dockerfile_row.addWidget(dockerfile_button)
        self.tag_edit = QLineEdit()
        self.tag_edit.setObjectName("tagEdit")
        self.tag_edit.setPlaceholderText("app:dev (optional; :latest when no tag is given)")
        self.args_edit = QPlainTextEdit()
        self.args_edit.setObjectName("argsEdit")
        self.args_edit.setPlaceholderText("KEY=VALUE, one a line")
        self.args_edit.setTabChangesFocus(True)
        self.args_edit.setFixedHeight(56)
        self.target_edit = QLineEdit()
        self.target_edit.setObjectName("targetEdit")
        self.target_edit.setPlaceholderText("A stage name from FROM … AS name (optional)")
        self.no_cache_box = QCheckBox("Do not use the cache (--no-cache)")
        self.pull_box = QCheckBox("Always pull newer base images (--pull)")
        self.field_error = QLabel()
        self.field_error.setObjectName("fieldError")
        self.field_error.setWordWrap(True)
        self.field_error.setTextFormat(Qt.TextFormat.PlainText)
        self.field_error.setStyleSheet(ERROR_STYLE)
        self.field_error.setVisible(False)

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("Folder", folder_row)
        form.addRow("Dockerfile", dockerfile_row)
        form.addRow("Tag", self.tag_edit)
        form.addRow("Build args", self.args_edit)
        form.addRow("Target", self.target_edit)
        form.addRow("", self.no_cache_box)
        form.addRow("", self.pull_box)
        form.addRow("", self.field_error)

        self.bar = QProgressBar()
        self.bar.setObjectName("buildProgress")
        self.bar.setVisible(False)
        self.status = QLabel()
        self.status.setObjectName("buildStatus")
        self.status.setWordWrap(True)
        self.status.setTextFormat(Qt.TextFormat.PlainText)
        self.output = QPlainTextEdit()
        self.output.setObjectName("buildOutput")
        self.output.setReadOnly(True)
        self.output.setMaximumBlockCount(20_000)
        self.output.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.output.setMinimumHeight(180)
        self.error_label, self.hint_label = error_and_hint_labels("build")

        self.buttons = QDialogButtonBox()
        self.build_button = QPushButton("Build")
        self.build_button.setDefault(True)
        self.details_button = QPushButton("Details…")
        self.details_button.setAutoDefault(False)
        self.close_button = QPushButton("Close")
        self.close_button.setAutoDefault(False)
        self.buttons.addButton(self.details_button, QDialogButtonBox.ButtonRole.HelpRole)
        self.buttons.addButton(self.build_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.buttons.addButton(self.close_button, QDialogButtonBox.ButtonRole.RejectRole)
        self.details_button.setVisible(False)
        self.build_button.clicked.connect(self.start)
        self.close_button.clicked.connect(self._cancel_or_close)
        self.details_button.clicked.connect(self.show_details)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.error_label)
        layout.addWidget(self.hint_label)
        layout.addWidget(self.bar)
        layout.addWidget(self.status)
        layout.addWidget(self.output, 1)
        layout.addWidget(self.buttons)
        self._inputs: list[QWidget] = [
            self.folder_edit,
            self.dockerfile_edit,
            self.tag_edit,
            self.args_edit,
            self.target_edit,
            self.no_cache_box,
            self.pull_box,
            folder_button,
            dockerfile_button,
        ]

    # -- the form -----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.task is not None

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "Build from folder", self.folder_edit.text()
        )
        if folder:
            self.folder_edit.setText(folder)

    def choose_dockerfile(self) -> None:
        start = self.folder_edit.text() or str(Path.home())
        path, _ = QFileDialog.getOpenFileName(self, "Dockerfile", start)
        if not path:
            return
        folder = Path(self.folder_edit.text()).expanduser()
        try:
            self.dockerfile_edit.setText(
                Path(path).resolve().relative_to(folder.resolve()).as_posix()
            )
        except ValueError:
            self.dockerfile_edit.setText(path)  # check_spec will say it is outside the folder

    def spec(self) -> BuildSpec:
        """The form as a spec; raises ``ValidationError`` for a bad field."""
        folder = self.folder_edit.text().strip()
        if not folder:
            raise ValidationError("context", "Choose the folder to build from")
        tag = self.tag_edit.text().strip()
        spec = BuildSpec(
            context=Path(folder).expanduser(),
            dockerfile=self.dockerfile_edit.text().strip() or "Dockerfile",
            tags=(tag,) if tag else (),
            build_args=parse_build_args(self.args_edit.toPlainText().splitlines()),
            target=self.target_edit.text().strip() or None,
            no_cache=self.no_cache_box.isChecked(),
            pull=self.pull_box.isChecked(),
        )
        check_spec(spec)  # reads the local folder only: quick
        return spec

    # -- running ------------------------------------------------------------------------------

    def start(self) -> Task[Any] | None:
        """Check the form and start the build (no-op while one runs)."""
        if self.running:
            return None
        try:
            spec = self.spec()
        except ValidationError as exc:
            self.field_error.setText(exc.message + (f" {exc.hint}" if exc.hint else ""))
            self.field_error.setVisible(True)
            return None
        self.field_error.setVisible(False)
        self._clear_error()
        self._generation += 1
        generation = self._generation
        self.build_result = None
        self.last_error = None
        self.cancelled = False
        self.step = self.total = 0
        with self._lock:
            self._pending.clear()
        self.output.clear()
        self.bar.setRange(0, 0)
        self.bar.setVisible(True)
        self.status.setText(f"Sending the folder {spec.context} to the engine…")
        self.cancel_event = threading.Event()
        cancel = self.cancel_event
        drain = on_gui(lambda: self._drain(generation), coalesce=True)

        def on_event(event: BuildEvent) -> None:
            with self._lock:
                self._pending.append(event)
            drain()

        def work(client: Any) -> BuildResult:
            return build_image(client, spec, on_event, cancel)

        self._set_running(True)
        self.task = self.session.call(
            work,
            lambda result: self._succeeded(generation, result),
            lambda error: self._failed(generation, error),
            what="Build " + (spec.tags[0] if spec.tags else str(spec.context)),
            owner=self,
            cancel=cancel,
        )
        return self.task

    def cancel(self) -> None:
        """Stop the running build; the engine stops it when the stream closes."""
        if self.cancel_event is None or not self.running:
            return
        self.cancel_event.set()
        self.close_button.setEnabled(False)
        self.status.setText("Cancelling the build…")

    def _cancel_or_close(self) -> None:
        if self.running:
            self.cancel()
        else:
            self.reject()

    def _drain(self, generation: int) -> None:
        if not shiboken6.isValid(self) or generation != self._generation:
            return
        with self._lock:
            events = list(self._pending)
            self._pending.clear()
        lines: list[str] = []
        for event in events:
            if event.kind is BuildEventKind.STEP:
                self.step, self.total = event.step or 0, event.total or 0
                lines.append(f"── Step {self.step}/{self.total}: {event.text}")
            elif event.kind is BuildEventKind.OUTPUT:
                if event.text.strip():
                    lines.append(event.text)
            elif event.kind is BuildEventKind.ERROR:
                lines.append(f"ERROR: {event.text}")
        if lines:
            self.output.appendPlainText("\n".join(lines))
        if self.total and self.running:
            self.bar.setRange(0, self.total)
            self.bar.setValue(self.step - 1)
            self.bar.setFormat(f"Step {self.step}/{self.total}")
            self.status.setText(f"Step {self.step} of {self.total}…")

    def _succeeded(self, generation: int, result: BuildResult) -> None:
        if generation != self._generation:
            return
        self._drain(generation)
        self._set_running(False)
        self.build_result = result
        total = len(result.steps) or 1
        self.bar.setRange(0, total)
        self.bar.setValue(total)
        self.bar.setFormat(f"Step {len(result.steps)}/{len(result.steps)}")
        tag = result.tags[0] if result.tags else ""
        self.status.setText(f"Built {tag or 'an untagged image'} ({result.short_id}).")
        self.close_button.setDefault(True)
        self.built.emit(result.image_id, tag)

    def _failed(self, generation: int, error: ToolboxError) -> None:
        if generation != self._generation:
            return
        self._drain(generation)
        self._set_running(False)
        self.bar.setVisible(False)
        if isinstance(error, Cancelled):
            self.cancelled = True
            self.status.setText("Build cancelled; no image was tagged.")
            return
        self.last_error = error
        if isinstance(error, BuildFailed) and error.step is not None:
            self.status.setText(
                f"The build failed at step {error.step.number} of {error.step.total}."
            )
        else:
            self.status.setText("The build failed.")
        self.error_label.setText(error.message)
        self.hint_label.setText(readable(error.hint))
        self.error_label.setVisible(True)
        self.hint_label.setVisible(bool(error.hint))
        self.details_button.setVisible(bool(error.details))

    def _set_running(self, running: bool) -> None:
        if not running:
            self.task = None
        for widget in self._inputs:
            widget.setEnabled(not running)
        self.build_button.setEnabled(not running)
        self.close_button.setEnabled(True)
        self.close_button.setText("Cancel" if running else "Close")

    def _clear_error(self) -> None:
        self.error_label.setVisible(False)
        self.hint_label.setVisible(False)
        self.details_button.setVisible(False)

    def show_details(self) -> ErrorDialog | None:
        if self.last_error is None:
            return None
        dialog = ErrorDialog.from_error(self.last_error, self, what="Build failed")
        dialog.show()
        return dialog

    # -- closing ------------------------------------------------------------------------------

    def reject(self) -> None:
        """Closing while a build runs cancels it."""
        self.cancel()
        super().reject()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.cancel()
        super().closeEvent(event)
