"""The pages the main window hosts, and the small base class they share.

Adding a page is one line in ``PAGES``: a key, a title, and ``"module:Class"`` of a ``Page``
subclass. Modules are imported only when the page is first shown (fast start), and a page whose
module is not in the tree yet is left out of the sidebar.

A page is built as ``PageClass(context)`` with a ``PageContext``: the ``EngineSession`` (None
while no engine is attached: a machine is stopped, or none exists yet), the ``TaskRunner``, the
``MachineService`` and the ``Shell`` (``ui.shell``), which owns the session and says when it
changes. A page declares ``needs_engine``: the window builds such a page only on a session and
rebuilds it when the session changes; while there is none it shows a placeholder that says why
and offers the way out (Start the machine, or create one). Pages with ``needs_engine = False``
(Machines) are built with whatever session there is and follow ``shell.session_changed``.
The window calls ``page_shown()``/``page_hidden()`` when the page (or the whole
window) becomes visible or hidden: pause timers there, so nothing runs while nobody looks, and
``shutdown()`` once at exit to close streams, and ``mark_stale(since)`` while the engine does
not answer (rows greyed with "last seen"; ``mark_stale(None)`` after the re-list).
"""

from __future__ import annotations

import datetime as dt
import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from PySide6.QtWidgets import QWidget

if TYPE_CHECKING:  # keeps docker-py out of the import path of the first window
    from toolbox.machine.service import MachineService
    from ui.session import EngineSession
    from ui.shell import Shell
    from ui.tasks import TaskRunner


@dataclass(frozen=True)
class PageContext:
    """What every page gets: the engine session (None without an engine), the task runner,
    the machine service and the shell (both None only in tests of a single engine page)."""

    session: EngineSession | None
    tasks: TaskRunner
    machines: MachineService | None = None
    shell: Shell | None = None


class Page(QWidget):
    """Base class of the main window's pages."""

    #: Whether the page shows an engine's data (built only on a session). Every page says.
    needs_engine: ClassVar[bool] = True

    def __init__(self, context: PageContext, parent: QWidget | None = None):
        super().__init__(parent)
        self.context = context

    @property
    def session(self) -> EngineSession:
        """The engine session; only engine pages use it, and they are built only on one."""
        session = self.context.session
        if session is None:
            raise RuntimeError(f"{type(self).__name__} was built without an engine session")
        return session

    @property
    def tasks(self) -> TaskRunner:
        return self.context.tasks

    def page_shown(self) -> None:
        """The page became visible (selected, or its window shown/restored)."""

    def page_hidden(self) -> None:
        """The page is no longer visible: stop timers and per-view streams."""

    def shutdown(self) -> None:
        """The app is quitting: close anything still open."""

    def layout_state(self) -> dict[str, object]:
        """What to remember of this page's layout, keyed relative to the page: each named,
        sortable table's sort column and order (``NAME/sort``: ``"3,1"``) and each named
        splitter's state (``NAME/splitter``)."""
        from PySide6.QtWidgets import QSplitter, QTableView

        out: dict[str, object] = {}
        for view in self.findChildren(QTableView):
            if view.objectName() and view.isSortingEnabled():
                header = view.horizontalHeader()
                order = header.sortIndicatorOrder().value
                out[f"{view.objectName()}/sort"] = f"{header.sortIndicatorSection()},{order}"
        for splitter in self.findChildren(QSplitter):
            if splitter.objectName():
                out[f"{splitter.objectName()}/splitter"] = splitter.saveState()
        return out

    def restore_layout(self, value: Callable[[str], object]) -> None:
        """Apply what ``layout_state`` saved (``value(key)``: None when never saved). A value
        that no longer fits (a column that is gone, a damaged entry) is ignored."""
        from PySide6.QtCore import QByteArray, Qt
        from PySide6.QtWidgets import QSplitter, QTableView

        for view in self.findChildren(QTableView):
            raw = value(f"{view.objectName()}/sort") if view.objectName() else None
            column, _, order = str(raw or "").partition(",")
            if not (column.isdigit() and order in ("0", "1")):
                continue
            model = view.model()
            if model is not None and int(column) < model.columnCount():
                view.sortByColumn(int(column), Qt.SortOrder(int(order)))
        for splitter in self.findChildren(QSplitter):
            raw = value(f"{splitter.objectName()}/splitter") if splitter.objectName() else None
            if isinstance(raw, QByteArray | bytes):
                splitter.restoreState(QByteArray(raw))

    def mark_stale(self, since: dt.datetime | None) -> None:
        """The engine stopped answering at ``since`` (None: it answers again and the lists
        were re-read): grey the page's rows with "last seen". The default marks ``self.model``
        when it is a ``RecordTableModel``."""
        from ui.models.table import RecordTableModel

        model = getattr(self, "model", None)
        if isinstance(model, RecordTableModel):
            model.set_stale(since)


@dataclass(frozen=True)
class PageSpec:
    """One entry of the sidebar."""

    key: str
    title: str
    factory: str  # "package.module:ClassName"
    shortcut: str = ""
    #: The page class's ``needs_engine``, known without importing it (the registry test
    #: checks that the two agree), so the first paint never waits for a page module.
    needs_engine: bool = True

    @property
    def module(self) -> str:
        return self.factory.partition(":")[0]

    def available(self) -> bool:
        """Whether the page's module exists (without importing it)."""
        try:
            return importlib.util.find_spec(self.module) is not None
        except ModuleNotFoundError:
            return False

    def page_class(self) -> type[Page]:
        module_name, _, class_name = self.factory.partition(":")
        cls = getattr(importlib.import_module(module_name), class_name)
        if not (isinstance(cls, type) and issubclass(cls, Page)):
            raise TypeError(f"{self.factory} is not a ui.pages.Page")
        return cls

    def create(self, context: PageContext) -> Page:
        page = self.page_class()(context)
        if not isinstance(page, Page):
            raise TypeError(f"{self.factory} is not a ui.pages.Page")
        return page


PAGES: list[PageSpec] = [
    PageSpec("containers", "Containers", "ui.containers.page:ContainersPage", "Ctrl+1"),
    PageSpec("images", "Images", "ui.images.page:ImagesPage", "Ctrl+2"),
    PageSpec("volumes", "Volumes", "ui.volumes.page:VolumesPage", "Ctrl+3"),
    PageSpec("networks", "Networks", "ui.networks.page:NetworksPage", "Ctrl+4"),
    PageSpec("machines", "Machines", "ui.machines.page:MachinesPage", "Ctrl+5", False),
]


def available_pages() -> list[PageSpec]:
    return [spec for spec in PAGES if spec.available()]
