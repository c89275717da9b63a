"""The Images page: a live table of images (a row per repository:tag) with build, pull, push,
tag, run, remove and prune, and a details pane (history, inspect) for the selected image.

Rows follow the session's image deltas (a re-list after each image event), diffed into the
model so selection and scroll survive; an image pulled, tagged or removed from a terminal shows
up the same way. Every action runs off the GUI thread; changes to images go through one serial
queue per engine so two removals never race; failures say what failed, why and what to do.
"""

from __future__ import annotations

from typing import Any, ClassVar

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QCheckBox, QMessageBox, QSplitter, QVBoxLayout, QWidget

from toolbox.engine.parse import format_size
from toolbox.engine.records import Container, Image, PruneResult, image_rows
from toolbox.errors import ToolboxError
from ui.images.build_dialog import BuildDialog
from ui.images.details import ImageDetails
from ui.images.model import REPOSITORY, ImagesModel, row_key, row_label, row_target
from ui.images.tag_dialog import TagDialog
from ui.images.transfer import Transfer, TransferDialog
from ui.pages import PageContext
from ui.session import Delta
from ui.widgets.list_page import BulkRun, ListPage

#: The Created column says "3 hours ago"; once a minute is fresh enough.
TICK_MS = 60_000


def users_of(images: list[Image], containers: list[Container]) -> dict[str, list[Container]]:
    """Image id -> the containers created from it (from the list records)."""
    ids = {image.id for image in images}
    users: dict[str, list[Container]] = {}
    for container in containers:
        if container.image_id in ids:
            users.setdefault(container.image_id, []).append(container)
    return users


def _names(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


class ImagesPage(ListPage):
    """Images table + toolbar; see the module docstring."""

    needs_engine: ClassVar[bool] = True

    def __init__(self, context: PageContext, parent: QWidget | None = None):
        super().__init__(
            context,
            ImagesModel(),
            "Filter by repository, tag or id",
            "imagesTable",
            sort_column=REPOSITORY,
            parent=parent,
        )
        self.model: ImagesModel
        self.queue_key = f"images:{self.session.config.url}"
        self.dialogs: list[QWidget] = []
        self.confirm_box: QMessageBox | None = None
        self.pending_select: str | None = None
        self.last_prune: PruneResult | None = None
        self.last_removal: BulkRun | None = None

        self.add_action(
            "build", "Build…", "Ctrl+B", self.open_build_dialog, "Build an image from a folder"
        )
        self.add_action("pull", "Pull…", "Ctrl+N", self.open_pull_dialog, "Pull an image")
        self.add_action(
            "push", "Push…", "Ctrl+Shift+U", self.open_push_dialog, "Push to a registry"
        )
        self.add_action("tag", "Tag…", "Ctrl+T", self.open_tag_dialog, "Give the image a new name")
        self.add_action("run", "Run…", "Ctrl+R", self.open_run_dialog, "Run a container from it")
        self.toolbar.addSeparator()
        self.add_action(
            "remove", "Remove", QKeySequence.StandardKey.Delete, self.confirm_remove,
            "Remove the selected images",
        )  # fmt: skip
        self.add_action(
            "prune", "Prune dangling…", "", self.confirm_prune,
            "Remove the untagged images nothing uses", in_menu=False,
        )  # fmt: skip
        self.view.doubleClicked.connect(lambda _index: self.open_run_dialog())

        # The table over the details pane (history, inspect) of the one selected image.
        self.details = ImageDetails(self.session)
        layout = self.layout()
        assert isinstance(layout, QVBoxLayout)
        position = layout.indexOf(self.view)
        layout.removeWidget(self.view)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.setObjectName("imagesSplitter")
        self.splitter.addWidget(self.view)
        self.splitter.addWidget(self.details)
        self.splitter.setSizes([420, 220])
        layout.insertWidget(position, self.splitter, 1)

        self.tick_timer = QTimer(self)
        self.tick_timer.setInterval(TICK_MS)
        self.tick_timer.timeout.connect(lambda: self.model.tick())

        self.session.images_changed.connect(self.apply)
        if self.session.has_snapshot:
            self.apply(Delta(tuple(self.session.images()), complete=True))
        self.update_actions()

    # -- data ---------------------------------------------------------------------------------

    def apply(self, delta: Delta) -> None:
        """A change from the session: rows diffed in place (never a model reset)."""
        if delta.complete:
            self.model.set_images(delta.records)
        else:
            gone = set(delta.removed)
            changed = {image.id for image in delta.records} | gone
            stale = [row_key(r) for r in self.model.records() if r.image.id in changed]
            fresh = image_rows(delta.records)
            keep = {row_key(r) for r in fresh}
            self.model.remove([k for k in stale if k not in keep])
            self.model.upsert(fresh)
        if self.pending_select and self.select_keys([self.pending_select]):
            self.pending_select = None
        self.update_counts()
        self.update_actions()

    def update_counts(self) -> None:
        images = self.model.images()
        dangling = sum(1 for image in images if image.dangling)
        text = f"{len(images)} images, {format_size(self.model.total_size())}"
        if dangling:
            text += f" ({dangling} dangling)"
        self.count_label.setText(text)

    def page_shown(self) -> None:
        super().page_shown()
        self.model.tick()
        self.tick_timer.start()

    def page_hidden(self) -> None:
        super().page_hidden()
        self.tick_timer.stop()

    def shutdown(self) -> None:
        self.page_hidden()
        for dialog in self.dialogs:
            if isinstance(dialog, TransferDialog | BuildDialog):
                dialog.cancel()

    # -- actions ------------------------------------------------------------------------------

    def update_actions(self) -> None:
        selected = self.selected()
        online = self.session.connected
        single = len(selected) == 1
        self.actions_by_key["build"].setEnabled(online)
        self.actions_by_key["pull"].setEnabled(online)
        self.actions_by_key["push"].setEnabled(online)
        self.actions_by_key["tag"].setEnabled(online and single)
        self.actions_by_key["run"].setEnabled(online and single)
        self.actions_by_key["remove"].setEnabled(online and bool(selected))
        self.actions_by_key["prune"].setEnabled(online)
        self.details.show_image(selected[0].image if single and online else None)

    def _keep(self, dialog: QWidget) -> None:
        self.dialogs.append(dialog)
        dialog.finished.connect(  # type: ignore[attr-defined]
            lambda _r: self.dialogs.remove(dialog) if dialog in self.dialogs else None
        )

    def open_build_dialog(self, folder: str = "") -> BuildDialog:
        dialog = BuildDialog(self.session, folder, parent=self.window())
        dialog.built.connect(self._built)
        self._keep(dialog)
        dialog.open()
        return dialog

    def _built(self, image_id: str, tag: str) -> None:
        """Select the new image (once its row arrives through the session's events)."""
        key = tag or image_id
        self.message.setText(f"Built {tag or image_id.split(':', 1)[-1][:12]}.")
        self.pending_select = key
        if self.select_keys([key]):
            self.pending_select = None

    def open_pull_dialog(self, reference: str = "") -> TransferDialog:
        dialog = TransferDialog(self.session, Transfer.PULL, reference, parent=self.window())
        dialog.succeeded.connect(self._transferred)
        self._keep(dialog)
        dialog.open()
        return dialog

    def open_push_dialog(self, reference: str | None = None) -> TransferDialog:
        if reference is None:
            selected = self.selected()
            reference = selected[0].reference or "" if len(selected) == 1 else ""
        dialog = TransferDialog(self.session, Transfer.PUSH, reference, parent=self.window())
        dialog.succeeded.connect(self._transferred)
        self._keep(dialog)
        dialog.open()
        return dialog

    def _transferred(self, reference: str) -> None:
        self.message.setText(f"{reference} is ready.")
        self.pending_select = reference
        if self.select_keys([reference]):
            self.pending_select = None

    def open_tag_dialog(self) -> TagDialog | None:
        selected = self.selected()
        if len(selected) != 1:
            return None
        row = selected[0]
        dialog = TagDialog(
            self.session,
            row.image,
            source=row.reference or "",
            parent=self.window(),
            queue_key=self.queue_key,
        )
        dialog.tagged.connect(self._tagged)
        self._keep(dialog)
        dialog.open()
        return dialog

    def _tagged(self, reference: str) -> None:
        self.message.setText(f"Tagged {reference}.")
        self.pending_select = reference
        if self.select_keys([reference]):
            self.pending_select = None

    def open_run_dialog(self) -> QWidget | None:
        """The Containers page's Run dialog, with this image filled in."""
        from ui.containers.run_dialog import RunDialog

        selected = self.selected()
        if len(selected) != 1:
            return None
        row = selected[0]
        # An untagged image runs by its short id, which the engine resolves.
        image = row.reference or row.image.short_id
        dialog = RunDialog(self.session, image=image, parent=self.window())
        dialog.ran.connect(
            lambda cid: self.message.setText(
                f"Started container {cid[:12]} from {image}; it is on the Containers page."
            )
        )
        self._keep(dialog)
        dialog.open()
        return dialog

    # -- remove -------------------------------------------------------------------------------

    def confirm_remove(self) -> QMessageBox | None:
        """Ask before removing; says which containers use the images and offers force."""
        targets = self.selected()
        if not targets:
            return None
        images = list({row.image.id: row.image for row in targets}.values())
        noun = row_label(targets[0]) if len(targets) == 1 else f"{len(targets)} images"
        box = QMessageBox(self.window())
        box.setObjectName("confirmRemoveImages")
        box.setTextFormat(Qt.TextFormat.PlainText)
        box.setIcon(QMessageBox.Icon.Warning)
        box.setWindowTitle("Remove images")
        box.setText(f"Remove {noun}?")
        lines = []
        if len(targets) > 1:
            lines.append(_names([row_label(r) for r in targets]) + ".")
        # A tag whose image keeps other names only loses that name; the rest delete images.
        chosen = {row_key(r) for r in targets}
        rows_of: dict[str, list[str]] = {}
        for row in self.model.records():
            rows_of.setdefault(row.image.id, []).append(row_key(row))
        deleted = [i for i in images if set(rows_of.get(i.id, ())) <= chosen]
        untag_only = [r for r in targets if r.image not in deleted]
        if untag_only:
            names = _names([row_label(r) for r in untag_only])
            lines.append(f"Only the name goes for {names}: the image keeps its other tags.")
        users = users_of(deleted, self.session.containers())
        if users:
            using = [c for cs in users.values() for c in cs]
            running = [c.name for c in using if c.state.is_running]
            stopped = [c.name for c in using if not c.state.is_running]
            if running:
                lines.append(
                    f"In use by running containers: {_names(running)}. The engine keeps an "
                    "image a running container uses, even with force."
                )
            if stopped:
                lines.append(
                    f"Used by stopped containers: {_names(stopped)}. Without force the "
                    "engine refuses; with force the image goes and they keep its id."
                )
        box.setInformativeText("\n\n".join(lines))
        force = QCheckBox("Force (docker rmi -f)")
        force.setObjectName("forceBox")
        box.setCheckBox(force)
        remove = box.addButton("Remove", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)

        def finished() -> None:
            if box.clickedButton() is remove:
                self.remove(targets, force=force.isChecked())
            self.confirm_box = None

        box.finished.connect(lambda _r: finished())
        self.confirm_box = box
        box.open()
        return box

    def remove(self, targets: list[Any], force: bool = False) -> BulkRun:
        """Remove each row's reference (or id), one after another on the images queue."""
        run = BulkRun("Remove", "images", len(targets), self._removal_finished)
        self.last_removal = run
        noun = row_label(targets[0]) if len(targets) == 1 else f"{len(targets)} images"
        self.message.setText(f"Removing {noun}…")
        for row in targets:
            self._remove_one(run, row, force)
        return run

    def _remove_one(self, run: BulkRun, row: Any, force: bool) -> None:
        target, label = row_target(row), row_label(row)
        self.session.call(
            lambda client: client.remove_image(target, force=force),
            lambda _r: run.ok(label),
            lambda error: run.failed(label, error),
            key=self.queue_key,
            what=f"Remove {label}",
            owner=self,
        )

    def _removal_finished(self, run: BulkRun) -> None:
        if run.succeeded:
            done = run.succeeded[0] if len(run.succeeded) == 1 else f"{len(run.succeeded)} images"
            self.message.setText(f"Removed {done}.")
        else:
            self.message.clear()
        self.report_failures("Remove", "images", run.total, run.failures)

    # -- prune --------------------------------------------------------------------------------

    def confirm_prune(self) -> QMessageBox:
        dangling = [image for image in self.model.images() if image.dangling]
        box = QMessageBox(self.window())
        box.setObjectName("confirmPrune")
        box.setTextFormat(Qt.TextFormat.PlainText)
        box.setIcon(QMessageBox.Icon.Question)
        box.setWindowTitle("Prune dangling images")
        box.setText("Remove every dangling image?")
        size = format_size(sum(image.size for image in dangling))
        count = len(dangling)
        listed = f"{count} is listed" if count == 1 else f"{count} are listed"
        box.setInformativeText(
            f"Dangling images have no name (<none> in the list); {listed} here ({size}). "
            "Those a container still uses are kept."
        )
        prune = box.addButton("Prune", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)

        def finished() -> None:
            if box.clickedButton() is prune:
                self.prune()
            self.confirm_box = None

        box.finished.connect(lambda _r: finished())
        self.confirm_box = box
        box.open()
        return box

    def prune(self) -> None:
        known = {image.id for image in self.model.images() if image.dangling}
        self.message.setText("Removing dangling images…")
        self.session.call(
            lambda client: client.prune_images(dangling_only=True),
            lambda result: self._pruned(result, known),
            self._prune_failed,
            key=self.queue_key,
            what="Prune dangling images",
            owner=self,
        )

    def _pruned(self, result: PruneResult, known: set[str] | None = None) -> None:
        """Say how many images went and how much space came back."""
        self.last_prune = result
        if not result.deleted and not result.space_reclaimed:
            self.message.setText("No dangling images to remove; nothing was reclaimed.")
            return
        # ``deleted`` lists image ids and their layer ids; count the images when we know them.
        images = len(set(result.deleted) & known) if known else 0
        count = images or len(result.deleted)
        noun = "dangling image" if images else "image or layer"
        plural = "s" if count != 1 else ""
        if plural and not images:
            noun = "images or layers"
            plural = ""
        self.message.setText(
            f"Removed {count} {noun}{plural}, reclaimed {format_size(result.space_reclaimed)}."
        )

    def _prune_failed(self, error: ToolboxError) -> None:
        self.message.clear()
        self.show_error("Prune dangling images failed", error)
