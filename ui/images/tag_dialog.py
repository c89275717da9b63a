"""The Tag dialog: give an image another name (``docker tag``).

Usage::

    dialog = TagDialog(session, row.image, source="busybox:latest", parent=window)
    dialog.tagged.connect(lambda ref: ...)
    dialog.open()

The new name is checked with ``parse_image_ref`` as it is typed (no digest; ``:latest`` when no
tag is given), the reason shown beside the field. A name that already points at another image
is allowed (the tag moves, as with ``docker tag``) but said so before it happens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from toolbox.engine.parse import ImageRef, parse_image_ref
from toolbox.engine.records import Image
from toolbox.errors import ToolboxError, ValidationError
from ui.widgets.labels import ERROR_STYLE
from ui.widgets.text import readable

if TYPE_CHECKING:
    from ui.session import EngineSession

NOTE_STYLE = "color: #8a5a00;"


def check_new_tag(text: str, image: Image, images: list[Image]) -> tuple[ImageRef, str]:
    """The new reference and a note (empty, or that the name moves from another image);
    raises ``ValidationError`` with the reason."""
    value = text.strip()
    if not value:
        raise ValidationError("tag", "Type the new name, like myapp:v2 or 127.0.0.1:5000/app:v1")
    ref = parse_image_ref(value, field="tag").with_default_tag()
    if ref.digest is not None:
        raise ValidationError("tag", "A tag cannot contain a digest: use repository:tag")
    name = str(ref)
    if name in image.repo_tags:
        raise ValidationError("tag", f"This image is already tagged {name}")
    for other in images:
        if other.id != image.id and name in other.repo_tags:
            return ref, f"{name} now names image {other.short_id}; tagging moves the name here."
    return ref, ""


class TagDialog(QDialog):
    """One field: the new ``[registry/]repository[:tag]``.

    Signals:
        tagged(str): the new reference, once the engine has applied it.
    """

    tagged = Signal(str)

    def __init__(
        self,
        session: EngineSession,
        image: Image,
        source: str = "",
        parent: QWidget | None = None,
        queue_key: str | None = None,
    ):
        super().__init__(parent)
        self.session = session
        self.image = image
        self.queue_key = queue_key
        self.running = False
        self.setObjectName("tagDialog")
        self.setWindowTitle("Tag an image")
        self.setMinimumWidth(480)

        what = source or image.short_id
        self.source_label = QLabel(f"{what}  ({image.short_id})")
        self.source_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.tag_edit = QLineEdit()
        self.tag_edit.setObjectName("tagEdit")
        repository = source.rsplit(":", 1)[0] if ":" in source.rsplit("/", 1)[-1] else source
        self.tag_edit.setText(f"{repository}:" if repository and "<none>" not in repository else "")
        self.tag_edit.setPlaceholderText("myapp:v2 or 127.0.0.1:5000/team/app:v1")
        self.tag_error = QLabel()
        self.tag_error.setObjectName("tagError")
        self.tag_error.setWordWrap(True)
        self.tag_error.setTextFormat(Qt.TextFormat.PlainText)
        self.tag_error.setStyleSheet(ERROR_STYLE)
        self.tag_error.setVisible(False)
        self.note = QLabel()
        self.note.setObjectName("tagNote")
        self.note.setWordWrap(True)
        self.note.setStyleSheet(NOTE_STYLE)
        self.note.setVisible(False)
        self.engine_error = QLabel()
        self.engine_error.setObjectName("engineError")
        self.engine_error.setWordWrap(True)
        self.engine_error.setTextFormat(Qt.TextFormat.PlainText)
        self.engine_error.setStyleSheet(ERROR_STYLE + " font-weight: bold;")
        self.engine_error.setVisible(False)

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("Image", self.source_label)
        form.addRow("New name", self.tag_edit)
        form.addRow("", self.tag_error)
        form.addRow("", self.note)

        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.submit_button = QPushButton("Tag")
        self.submit_button.setDefault(True)
        self.buttons.addButton(self.submit_button, QDialogButtonBox.ButtonRole.AcceptRole)
        self.buttons.rejected.connect(self.reject)
        self.submit_button.clicked.connect(self.submit)

        layout = QVBoxLayout(self)
        layout.addWidget(self.engine_error)
        layout.addLayout(form)
        layout.addWidget(self.buttons)
        self.tag_edit.textChanged.connect(lambda _t: self.validate(quiet_when_empty=True))

    def validate(self, quiet_when_empty: bool = False) -> ImageRef | None:
        reason = note = ""
        ref: ImageRef | None = None
        text = self.tag_edit.text()
        try:
            ref, note = check_new_tag(text, self.image, self.session.images())
        except ValidationError as exc:
            if not (quiet_when_empty and not text.strip()):
                reason = exc.message
        self.tag_error.setText(reason)
        self.tag_error.setVisible(bool(reason))
        self.note.setText(note)
        self.note.setVisible(bool(note))
        return ref

    def submit(self) -> None:
        if self.running:
            return
        ref = self.validate()
        if ref is None:
            return
        self.running = True
        self.submit_button.setEnabled(False)
        self.engine_error.setVisible(False)
        image_id, repository, tag = self.image.id, ref.name, ref.tag or "latest"

        def work(client: Any) -> None:
            client.tag(image_id, repository, tag)

        self.session.call(
            work,
            lambda _r: self._done(str(ref)),
            self._failed,
            key=self.queue_key,
            what=f"Tag {self.image.short_id} as {ref}",
            owner=self,
        )

    def _done(self, reference: str) -> None:
        self.running = False
        self.tagged.emit(reference)
        self.accept()

    def _failed(self, error: ToolboxError) -> None:
        self.running = False
        self.submit_button.setEnabled(True)
        text = error.message + (f"\n{readable(error.hint)}" if error.hint else "")
        self.engine_error.setText(text)
        self.engine_error.setVisible(True)
