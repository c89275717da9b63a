"""The images table: one row per repository:tag like ``docker images`` (key: the reference).

Rows are ``ImageRow`` records (``toolbox.engine.records.image_rows``): a tagged row is keyed by
its ``repository:tag``, so moving a tag to another image updates that row in place; an
untagged row is keyed by repository and image id. Size sorts by bytes (the proxy compares
Python ints, so 3 GiB sorts above 900 MB), created by time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from PySide6.QtCore import QObject
from PySide6.QtGui import QColor

from toolbox.engine.parse import format_size, human_duration
from toolbox.engine.records import NONE, Image, ImageRow, image_rows
from ui.models.table import RIGHT, Column, RecordTableModel

# Size before Created: the last column stretches, and a right-aligned size far from its
# header read badly.
REPOSITORY, TAG, IMAGE_ID, SIZE, CREATED = range(5)
MUTED = QColor("#757575")


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def row_key(row: ImageRow) -> str:
    """``repo:tag`` for tagged rows; ``repo@<image id>`` (or the id) for untagged ones."""
    reference = row.reference
    if reference is not None:
        return reference
    if row.repository != NONE:
        return f"{row.repository}@{row.image.id}"
    return row.image.id


def row_target(row: ImageRow) -> str:
    """What to pass to the engine for this row: the reference, else the image id."""
    return row.reference or row.image.id


def row_label(row: ImageRow) -> str:
    """How a row is named to people: ``repo:tag``, else ``<none> (short id)``."""
    return row.reference or f"{row.repository}:{row.tag} ({row.image.short_id})"


def created_text(image: Image, now: dt.datetime) -> str:
    seconds = max(0.0, (now - image.created).total_seconds())
    return f"{human_duration(seconds)} ago"


class ImagesModel(RecordTableModel[ImageRow]):
    """Repository, tag, image id, size, created."""

    def __init__(self, parent: QObject | None = None):
        self.now = now_utc()
        muted = lambda r: MUTED if r.repository == NONE or r.tag == NONE else None  # noqa: E731
        columns = [
            Column[ImageRow]("Repository", lambda r: r.repository, foreground=muted, width=260),
            Column[ImageRow]("Tag", lambda r: r.tag, foreground=muted, width=120),
            Column[ImageRow](
                "Image ID",
                lambda r: r.image.short_id,
                tooltip=lambda r: "\n".join((r.image.id, *r.image.repo_digests)),
                width=120,
            ),
            Column[ImageRow](
                "Size",
                lambda r: format_size(r.image.size),
                sort_key=lambda r: r.image.size,
                tooltip=lambda r: f"{r.image.size:,} bytes",
                align=RIGHT,
                width=100,
                searchable=False,
            ),
            Column[ImageRow](
                "Created",
                lambda r: created_text(r.image, self.now),
                sort_key=lambda r: r.image.created,
                tooltip=lambda r: r.image.created.astimezone().strftime("%Y-%m-%d %H:%M:%S"),
                width=140,
                searchable=False,
            ),
        ]
        super().__init__(columns, key=row_key, parent=parent)

    def set_images(self, images: Iterable[Image]) -> None:
        """Show exactly these images (diffed against the rows held: no model reset)."""
        self.set_records(image_rows(images))

    def images(self) -> list[Image]:
        """The distinct images shown (an image with several tags once)."""
        return list({row.image.id: row.image for row in self.records()}.values())

    def total_size(self) -> int:
        return sum(image.size for image in self.images())

    def tick(self, now: dt.datetime | None = None) -> None:
        """Re-render the Created column as of ``now``."""
        self.now = now or now_utc()
        self.refresh_column(CREATED)
