"""The Pull and Push dialogs: an image reference, a real progress bar and a per-layer list.

Usage::

    dialog = TransferDialog(session, Transfer.PULL, parent=window)        # user types the name
    dialog = TransferDialog(session, Transfer.PUSH, "127.0.0.1:5000/app:v1", parent=window)
    dialog.succeeded.connect(lambda ref: ...)
    dialog.open()

The bar is the bytes-weighted fraction ``EngineClient.pull``/``push`` reports from the
engine's per-layer JSON stream (busy until a layer's size is known), never a timer. The
reference is checked with ``parse_image_ref`` as it is typed, the reason shown beside the
field. Cancel closes the stream at once and says so; closing the dialog cancels too. The
engine's refusals (unknown image, unreachable registry) show in the dialog in plain words
with what to do, and the dialog stays open to fix the name and try again.
"""

from __future__ import annotations

import threading
from enum import Enum
from functools import partial
from typing import TYPE_CHECKING, Any

import shiboken6
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from toolbox.engine.parse import ImageRef, format_size, parse_image_ref
from toolbox.engine.records import Image, LayerProgress, PullProgress
from toolbox.errors import Cancelled, ToolboxError, ValidationError
from ui.models.table import RIGHT, Column, RecordTableModel
from ui.tasks import Task, on_gui
from ui.widgets.error_dialog import ErrorDialog
from ui.widgets.labels import ERROR_STYLE, error_and_hint_labels
from ui.widgets.text import readable

if TYPE_CHECKING:
    from ui.session import EngineSession

BAR_STEPS = 1000


class Transfer(Enum):
    PULL = "Pull"
    PUSH = "Push"

    @property
    def progressive(self) -> str:
        return "Pulling" if self is Transfer.PULL else "Pushing"

    @property
    def past(self) -> str:
        return "Pulled" if self is Transfer.PULL else "Pushed"


def layer_text(layer: LayerProgress) -> str:
    """``45% · 1.2MB / 2.6MB`` while bytes are known, else nothing."""
    if layer.total <= 0:
        return ""
    current = min(layer.current, layer.total)
    percent = int(100 * current / layer.total)
    return f"{percent}% · {format_size(current)} / {format_size(layer.total)}"


class LayersModel(RecordTableModel[LayerProgress]):
    """One row per layer of a pull or push: id, last status, bytes."""

    def __init__(self, parent: Any = None):
        columns = [
            Column[LayerProgress]("Layer", lambda lp: lp.id, width=120),
            Column[LayerProgress]("Status", lambda lp: lp.status, width=150),
            Column[LayerProgress](
                "Progress",
                layer_text,
                sort_key=lambda lp: lp.current / lp.total if lp.total else -1.0,
                align=RIGHT,
                width=200,
            ),
        ]
        super().__init__(columns, key=lambda lp: lp.id, parent=parent)


def check_reference(text: str, mode: Transfer, local_tags: set[str] | None = None) -> ImageRef:
    """The reference to pull or push, with ``:latest`` added when no tag is given; raises
    ``ValidationError`` with the reason in plain words."""
    value = text.strip()
    if not value:
        example = "busybox or nginx:1.25" if mode is Transfer.PULL else "127.0.0.1:5000/app:v1"
        raise ValidationError("image", f"Type the image to {mode.value.lower()}, like {example}")
    ref = parse_image_ref(value).with_default_tag()
    if mode is Transfer.PUSH:
        if ref.digest is not None:
            raise ValidationError("image", "Push a tag, not a digest: use repository:tag")
        if local_tags is not None and str(ref) not in local_tags:
            raise ValidationError(
                "image",
                f"No image here is tagged {ref}",
                "Tag an image with that name first (Images > Tag…).",
            )
    return ref


class TransferDialog(QDialog):
    """Pull or push one image with progress; see the module docstring.

    Signals:
        succeeded(str): the reference that was pulled or pushed.
    """

    succeeded = Signal(str)

    def __init__(
        self,
        session: EngineSession,
        mode: Transfer = Transfer.PULL,
        reference: str = "",
        parent: QWidget | None = None,
    ):
        super().__init__(parent)
        self.session = session
        self.mode = mode
        self.task: Task[Any] | None = None
        self.cancel_event: threading.Event | None = None
        self.reference: str | None = None
        self.result: Image | str | None = None  # type: ignore[assignment]
        self.last_error: ToolboxError | None = None
        self.cancelled = False
        self._generation = 0
        self.setObjectName(f"{mode.name.lower()}Dialog")
        self.setWindowTitle(f"{mode.value} an image")
        self.setMinimumWidth(560)

        self.ref_edit = QComboBox()
        self.ref_edit.setEditable(True)
        self.ref_edit.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        if mode is Transfer.PUSH:
            self.ref_edit.addItems(sorted(self.local_tags()))
        line = self.ref_edit.lineEdit()
        assert line is not None  # an editable combo box always has its line edit
        line.setPlaceholderText(
            "busybox, nginx:1.25 or 127.0.0.1:5000/team/app:v2"
            if mode is Transfer.PULL
            else "127.0.0.1:5000/team/app:v2"
        )
        line.returnPressed.connect(self.start)
        self.ref_edit.setCurrentText(reference)
        self.ref_error = QLabel()
        self.ref_error.setObjectName("imageError")
        self.ref_error.setWordWrap(True)
        self.ref_error.setTextFormat(Qt.TextFormat.PlainText)
        self.ref_error.setStyleSheet(ERROR_STYLE)
        self.ref_error.setVisible(False)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("Image", self.ref_edit)
        form.addRow("", self.ref_error)

        self.bar = QProgressBar()
        self.bar.setRange(0, BAR_STEPS)
        self.bar.setValue(0)
        self.bar.setFormat("%p%")
        self.bar.setVisible(False)
        self.status = QLabel()
        self.status.setObjectName("transferStatus")
        self.status.setWordWrap(True)
        self.status.setTextFormat(Qt.TextFormat.PlainText)
        self.layers = LayersModel(self)
        self.layers_view = QTableView()
        self.layers_view.setModel(self.layers)
        self.layers_view.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.layers_view.verticalHeader().setVisible(False)
        self.layers_view.verticalHeader().setDefaultSectionSize(22)
        self.layers_view.horizontalHeader().setStretchLastSection(True)
        self.layers_view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        for column, spec in enumerate(self.layers.columns):
            self.layers_view.setColumnWidth(column, spec.width)
        self.layers_view.setMinimumHeight(140)
        self.layers_view.setVisible(False)

        self.error_label, self.hint_label = error_and_hint_labels("transfer")

        self.buttons = QDialogButtonBox()
        self.start_button = QPushButton(mode.value)
        self.start_button.setDefault(True)
        self.details_button = QPushButton("Details…")
        self.details_button.setVisible(False)
        self.cancel_button = QPushButton("Close")
        self.buttons.addButton(self.details_button, QDialogButtonBox.ButtonRole.HelpRole)
        self.buttons.addButton(self.start_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.buttons.addButton(self.cancel_button, QDialogButtonBox.ButtonRole.RejectRole)
        self.details_button.setVisible(False)  # addButton shows it
        self.start_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self._cancel_or_close)
        self.details_button.clicked.connect(self.show_details)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.error_label)
        layout.addWidget(self.hint_label)
        layout.addWidget(self.bar)
        layout.addWidget(self.status)
        layout.addWidget(self.layers_view, 1)
        layout.addStretch(0)  # takes the room while the layer list is hidden
        layout.addWidget(self.buttons)

        self.ref_edit.currentTextChanged.connect(self._revalidate)
        if reference:
            self._revalidate()

    # -- state --------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.task is not None

    def local_tags(self) -> set[str]:
        return {tag for image in self.session.images() for tag in image.repo_tags}

    def validate(self, quiet_when_empty: bool = False) -> ImageRef | None:
        """Check the reference; show the reason beside the field."""
        text = self.ref_edit.currentText()
        reason = ""
        ref: ImageRef | None = None
        try:
            tags = self.local_tags() if self.mode is Transfer.PUSH else None
            ref = check_reference(text, self.mode, tags)
        except ValidationError as exc:
            if not (quiet_when_empty and not text.strip()):
                reason = exc.message + (f" {exc.hint}" if exc.hint else "")
        self.ref_error.setText(reason)
        self.ref_error.setVisible(bool(reason))
        return ref

    def _revalidate(self, *_args: object) -> None:
        if not self.running:
            self.validate(quiet_when_empty=True)

    # -- running ------------------------------------------------------------------------------

    def start(self) -> Task[Any] | None:
        """Validate and start the transfer (no-op while one runs)."""
        if self.running:
            return None
        ref = self.validate()
        if ref is None:
            return None
        reference = str(ref)
        self.reference = reference
        self.result = None
        self.last_error = None
        self.cancelled = False
        self._generation += 1
        self.cancel_event = threading.Event()
        self._set_running(True)
        self._clear_error()
        self.bar.setRange(0, 0)  # busy until a layer's size is known
        self.bar.setValue(0)
        self.bar.setVisible(True)
        self.layers.clear()
        self.layers_view.setVisible(True)
        self.status.setText(f"{self.mode.progressive} {reference}…")
        relay = on_gui(partial(self._on_progress, self._generation), coalesce=True)
        cancel = self.cancel_event
        if self.mode is Transfer.PULL:

            def work(client: Any) -> Any:
                return client.pull(reference, relay, cancel)
        else:

            def work(client: Any) -> Any:
                return client.push(reference, relay, cancel)

        generation = self._generation
        self.task = self.session.call(
            work,
            partial(self._succeeded, generation),
            partial(self._failed, generation),
            what=f"{self.mode.value} {reference}",
            owner=self,
            cancel=cancel,
        )
        return self.task

    def cancel(self) -> None:
        """Stop the running transfer; the engine stream is closed at once."""
        if self.cancel_event is None or not self.running:
            return
        self.cancel_event.set()
        self.cancel_button.setEnabled(False)
        self.status.setText(f"Cancelling the {self.mode.value.lower()} of {self.reference}…")

    def _cancel_or_close(self) -> None:
        if self.running:
            self.cancel()
        else:
            self.reject()

    def _on_progress(self, generation: int, progress: PullProgress) -> None:
        if not shiboken6.isValid(self) or generation != self._generation or not self.running:
            return  # a late report from a finished or cancelled transfer
        if progress.fraction is None:
            self.bar.setRange(0, 0)
        else:
            self.bar.setRange(0, BAR_STEPS)
            self.bar.setValue(round(progress.fraction * BAR_STEPS))
        if progress.status:
            self.status.setText(progress.status)
        self.layers.set_records(progress.layers.values())

    def _succeeded(self, generation: int, result: Any) -> None:
        if generation != self._generation:
            return
        self._set_running(False)
        self.result = result
        self.bar.setRange(0, BAR_STEPS)
        self.bar.setValue(BAR_STEPS)
        size = f" ({format_size(result.size)})" if isinstance(result, Image) else ""
        text = f"{self.mode.past} {self.reference}{size}."
        if self.layers.rowCount() == 0:
            self.layers_view.setVisible(False)
            where = "on the engine" if self.mode is Transfer.PULL else "in the registry"
            text += f" Every layer was already {where}."
        self.status.setText(text)
        self.cancel_button.setText("Close")
        self.cancel_button.setDefault(True)
        assert self.reference is not None
        self.succeeded.emit(self.reference)

    def _failed(self, generation: int, error: ToolboxError) -> None:
        if generation != self._generation:
            return
        self._set_running(False)
        self.bar.setRange(0, BAR_STEPS)
        if isinstance(error, Cancelled):
            self.cancelled = True
            self.bar.setValue(0)
            self.bar.setVisible(False)
            self.status.setText(
                f"{self.mode.value} of {self.reference} cancelled; nothing was "
                f"{'added' if self.mode is Transfer.PULL else 'changed'}."
            )
            return
        self.last_error = error
        self.bar.setVisible(False)
        self.layers_view.setVisible(self.layers.rowCount() > 0)
        self.status.setText(f"{self.mode.value} of {self.reference} failed.")
        self.error_label.setText(error.message)
        self.hint_label.setText(readable(error.hint))
        self.error_label.setVisible(True)
        self.hint_label.setVisible(bool(error.hint))
        self.details_button.setVisible(bool(error.details))

    def _set_running(self, running: bool) -> None:
        if not running:
            self.task = None
        self.ref_edit.setEnabled(not running)
        self.start_button.setEnabled(not running)
        self.cancel_button.setEnabled(True)
        self.cancel_button.setText("Cancel" if running else "Close")

    def _clear_error(self) -> None:
        self.error_label.setVisible(False)
        self.hint_label.setVisible(False)
        self.details_button.setVisible(False)

    def show_details(self) -> ErrorDialog | None:
        if self.last_error is None:
            return None
        dialog = ErrorDialog.from_error(
            self.last_error, self, what=f"{self.mode.value} {self.reference} failed"
        )
        dialog.show()
        return dialog

    # -- closing ------------------------------------------------------------------------------

    def reject(self) -> None:
        """Closing while a transfer runs cancels it (nothing keeps running unseen)."""
        self.cancel()
        super().reject()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.cancel()
        super().closeEvent(event)
