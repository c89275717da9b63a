"""The pages the main window hosts, and the small base class they share.

Adding a page is one line in ``PAGES``: a key, a title, and ``"module:Class"`` of a ``Page``
subclass. Modules are imported only when the page is first shown (fast start), and a page whose
module is not in the tree yet is left out of the sidebar.

A page is built as ``PageClass(context)`` with a ``PageContext`` (the ``EngineSession`` and the
``TaskRunner``). The window calls ``page_shown()``/``page_hidden()`` when the page (or the whole
window) becomes visible or hidden: pause timers there, so nothing runs while nobody looks, and
``shutdown()`` once at exit to close streams.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PySide6.QtWidgets import QWidget

if TYPE_CHECKING:  # keeps docker-py out of the import path of the first window
    from ui.session import EngineSession
    from ui.tasks import TaskRunner


@dataclass(frozen=True)
class PageContext:
    """What every page gets: the engine session and the task runner."""

    session: EngineSession
    tasks: TaskRunner


class Page(QWidget):
    """Base class of the main window's pages."""

    def __init__(self, context: PageContext, parent: QWidget | None = None):
        super().__init__(parent)
        self.context = context

    @property
    def session(self) -> EngineSession:
        return self.context.session

    @property
    def tasks(self) -> TaskRunner:
        return self.context.tasks

    def page_shown(self) -> None:
        """The page became visible (selected, or its window shown/restored)."""

    def page_hidden(self) -> None:
        """The page is no longer visible: stop timers and per-view streams."""

    def shutdown(self) -> None:
        """The app is quitting: close anything still open."""


@dataclass(frozen=True)
class PageSpec:
    """One entry of the sidebar."""

    key: str
    title: str
    factory: str  # "package.module:ClassName"
    shortcut: str = ""

    @property
    def module(self) -> str:
        return self.factory.partition(":")[0]

    def available(self) -> bool:
        """Whether the page's module exists (without importing it)."""
        try:
            return importlib.util.find_spec(self.module) is not None
        except ModuleNotFoundError:
            return False

    def create(self, context: PageContext) -> Page:
        module_name, _, class_name = self.factory.partition(":")
        cls = getattr(importlib.import_module(module_name), class_name)
        page = cls(context)
        if not isinstance(page, Page):
            raise TypeError(f"{self.factory} is not a ui.pages.Page")
        return page


PAGES: list[PageSpec] = [
    PageSpec("containers", "Containers", "ui.containers.page:ContainersPage", "Ctrl+1"),
    PageSpec("images", "Images", "ui.images.page:ImagesPage", "Ctrl+2"),
    PageSpec("volumes", "Volumes", "ui.volumes.page:VolumesPage", "Ctrl+3"),
    PageSpec("networks", "Networks", "ui.networks.page:NetworksPage", "Ctrl+4"),
]


def available_pages() -> list[PageSpec]:
    return [spec for spec in PAGES if spec.available()]
