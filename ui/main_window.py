"""The main window: a thin shell with a sidebar of pages, the engine banner and a status bar.

Usage (what ``ui.app.main`` does)::

    window = MainWindow(tasks, engine_label="tcp://127.0.0.1:2376")
    window.show()                   # paints at once: no docker-py import, no connection yet
    window.attach(session)          # later: pages are built on first view, banner follows state

Everything else lives in the pages (``ui.pages``). The window tells the visible page when it is
shown or hidden, so pages can pause their timers while nobody looks.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QByteArray, QEvent, QObject, Qt, Signal
from PySide6.QtGui import QCloseEvent, QHideEvent, QKeySequence, QShortcut, QShowEvent
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QMainWindow,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from ui import settings
from ui.pages import Page, PageContext, PageSpec, available_pages
from ui.tasks import TaskRunner
from ui.widgets.banner import EngineBanner
from ui.widgets.placeholder import EnginePlaceholder

if TYPE_CHECKING:
    from ui.session import EngineSession

APP_TITLE = "Toolbox"
log = logging.getLogger(__name__)


class BrokenPage(Page):
    """Stands in for a page whose code failed to load, saying so."""

    def __init__(self, context: PageContext, message: str):
        super().__init__(context)
        label = QLabel(message)
        label.setWordWrap(True)
        label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout = QVBoxLayout(self)
        layout.addWidget(label)
        self.message = message


class MainWindow(QMainWindow):
    """Sidebar + stacked pages + banner.

    Signals:
        first_painted(): the window has painted once (the app connects to the engine after).
        page_changed(str): the key of the page now shown.
    """

    first_painted = Signal()
    page_changed = Signal(str)
    placeholder_action = Signal(str)

    def __init__(self, tasks: TaskRunner, engine_label: str = "", parent: QWidget | None = None):
        super().__init__(parent)
        self.tasks = tasks
        self.session: EngineSession | None = None
        self.engine_label = engine_label
        self.specs: list[PageSpec] = available_pages()
        self.pages: dict[str, Page] = {}
        self._painted = False
        self._shown_page: Page | None = None
        self.setWindowTitle(APP_TITLE)
        self.resize(1100, 700)

        self.banner = EngineBanner()
        self.sidebar = QListWidget()
        self.sidebar.setObjectName("sidebar")
        self.sidebar.setFixedWidth(150)
        self.sidebar.setStyleSheet("QListWidget#sidebar::item { padding: 6px 8px; }")
        self.sidebar.addItems([spec.title for spec in self.specs])
        self.stack = QStackedWidget()
        self.machines: Any = None  # the MachineService, set by the shell before pages are built
        self.shell: Any = None
        self.waiting = EnginePlaceholder()
        self.waiting.action_requested.connect(self.placeholder_action)
        self.stack.addWidget(self.waiting)
        self.status_area = QLabel()
        self.status_area.setObjectName("statusArea")
        self.statusBar().addWidget(self.status_area, 1)
        self.engine_status = QLabel(engine_label)
        self.statusBar().addPermanentWidget(self.engine_status)

        right = QVBoxLayout()
        right.setContentsMargins(0, 0, 0, 0)
        right.addWidget(self.banner)
        right.addWidget(self.stack, 1)
        body = QHBoxLayout()
        body.setContentsMargins(6, 6, 6, 6)
        body.addWidget(self.sidebar)
        body.addLayout(right, 1)
        central = QWidget()
        central.setLayout(body)
        self.setCentralWidget(central)

        for spec in self.specs:
            if spec.shortcut:
                shortcut = QShortcut(QKeySequence(spec.shortcut), self)
                shortcut.activated.connect(lambda key=spec.key: self.select_page(key))
        self.sidebar.currentRowChanged.connect(self._row_changed)
        self.installEventFilter(self)
        self._update_title()
        #: The page shown when the window last closed, selected again ("" when none); the
        #: shell keeps it when the engine attaches, instead of its default page.
        self.restored_page = self._restore_layout()

    # -- engine -------------------------------------------------------------------------------

    def attach(self, session: EngineSession) -> None:
        """Start showing ``session``: build the current page, follow the connection state."""
        self.set_session(session)

    def set_session(
        self,
        session: EngineSession | None,
        label: str = "",
        placeholder: tuple[str, str, str, str] | None = None,
    ) -> None:
        """Show ``session`` (None: no engine). Engine pages built on the previous session are
        shut down and rebuilt on the new one when shown; without a session they show the
        placeholder ``(title, detail, button text, action key)``."""
        if session is not self.session:
            self._detach()
            self.session = session
        if session is not None:
            self.engine_label = session.describe()
            self.banner.retry_requested.connect(session.retry_now)
            session.state_changed.connect(self._on_state)
            session.info_changed.connect(self._on_info)
            if session.state is None:
                self.banner.show_connecting(self.engine_label)
        else:
            self.engine_label = label
            self.banner.show_connected()  # hides it: the placeholder says what is wrong
            title, detail, button, action = placeholder or ("No Docker engine", "", "", "")
            self.waiting.show_message(title, detail, button, action)
        self.engine_status.setText(self.engine_label)
        self._update_title()
        self.select_page("")

    def _detach(self) -> None:
        old = self.session
        if old is None:
            return
        self.save_layout()  # the engine pages go: keep their splitters and sort orders
        for signal, slot in (
            (self.banner.retry_requested, old.retry_now),
            (old.state_changed, self._on_state),
            (old.info_changed, self._on_info),
        ):
            try:
                signal.disconnect(slot)
            except (RuntimeError, TypeError):
                pass
        for spec in self.specs:
            page = self.pages.get(spec.key)
            if page is None or not self._needs_engine(spec):
                continue
            if page is self._shown_page:
                page.page_hidden()
                self._shown_page = None
            page.shutdown()
            self.stack.removeWidget(page)
            page.deleteLater()
            del self.pages[spec.key]
        self.stack.setCurrentWidget(self.waiting)

    def _shown_spec(self) -> PageSpec | None:
        row = self.sidebar.currentRow()
        return self.specs[row] if 0 <= row < len(self.specs) else None

    def _needs_engine(self, spec: PageSpec) -> bool:
        return spec.needs_engine

    def set_status(self, text: str) -> None:
        """A line in the status area (machine boot progress and the like)."""
        self.status_area.setText(text)

    def show_engine_problem(self, why: str, hint: str | None = None) -> None:
        """The engine could not even be configured (bad --context, bad URL)."""
        self.banner.show_lost(self.engine_label or "(not set)", why, hint)

    def _on_state(self, state: Any, error: Any) -> None:
        from toolbox.engine.watch import ConnectionState  # loaded by now; kept off startup

        if state is ConnectionState.CONNECTED:
            self.banner.show_connected()
            self._mark_stale(None)  # the re-list that precedes CONNECTED is applied
        elif state is ConnectionState.DISCONNECTED:
            self._mark_stale(self.session.stale_since if self.session else None)
            self.banner.show_lost(
                self.engine_label,
                getattr(error, "message", None) or (str(error) if error else None),
                getattr(error, "hint", None),
            )
        elif state is ConnectionState.CONNECTING and self.banner.mode != "lost":
            self.banner.show_connecting(self.engine_label)
        # While reconnecting after a loss the "lost" text stays: it says what is wrong.

    def _mark_stale(self, since: Any) -> None:
        for spec in self.specs:
            page = self.pages.get(spec.key)
            if page is not None and self._needs_engine(spec):
                page.mark_stale(since)

    def _on_info(self, info: Any) -> None:
        self.engine_status.setText(f"{self.engine_label}  ·  Docker {info.version}")

    def _update_title(self) -> None:
        name = self.session.name if self.session else ""
        where = self.engine_label
        suffix = f"{name} ({where})" if name and where and name != where else (name or where)
        self.setWindowTitle(f"{APP_TITLE} — {suffix}" if suffix else APP_TITLE)

    # -- pages --------------------------------------------------------------------------------

    def select_page(self, key: str) -> Page | None:
        """Show the page ``key`` (built on first use); "" means the sidebar's current one."""
        keys = [spec.key for spec in self.specs]
        if not keys:
            return None
        index = keys.index(key) if key in keys else max(0, self.sidebar.currentRow())
        if self.sidebar.currentRow() != index:
            self.sidebar.setCurrentRow(index)  # re-enters through _row_changed
            return self.pages.get(keys[index])
        return self._show(self.specs[index])

    def page_key(self) -> str:
        """The key of the page the sidebar has selected ("" when none)."""
        spec = self._shown_spec()
        return spec.key if spec else ""

    def page(self, key: str) -> Page | None:
        return self.pages.get(key)

    def _row_changed(self, row: int) -> None:
        if 0 <= row < len(self.specs):
            self._show(self.specs[row])

    def _show(self, spec: PageSpec) -> Page | None:
        if self.session is None and self._needs_engine(spec):
            if self._shown_page is not None:
                self._shown_page.page_hidden()
                self._shown_page = None
            self.stack.setCurrentWidget(self.waiting)
            self.page_changed.emit(spec.key)
            return None
        page = self.pages.get(spec.key)
        if page is None:
            machines = self.shell.machines if self.shell is not None else self.machines
            context = PageContext(self.session, self.tasks, machines, self.shell)
            try:
                page = spec.create(context)
            except Exception as exc:  # one broken page must not take the window down
                log.exception("building the %s page failed", spec.key)
                page = BrokenPage(context, f"The {spec.title} page could not be shown: {exc}")
            self.pages[spec.key] = page
            self.stack.addWidget(page)
            self._restore_page_layout(spec.key, page)
            if self.session is not None and self._needs_engine(spec):
                page.mark_stale(self.session.stale_since)
        if self._shown_page is not page:
            if self._shown_page is not None:
                self._shown_page.page_hidden()
            self.stack.setCurrentWidget(page)
            self._shown_page = page
            if self.isVisible() and not self.isMinimized():
                page.page_shown()
            self.page_changed.emit(spec.key)
        return page

    # -- layout -------------------------------------------------------------------------------

    def save_layout(self) -> None:
        """Remember the geometry, the page shown, and each built page's splitters and sorting."""
        values: dict[str, object] = {"window/geometry": self.saveGeometry()}
        if self.page_key():
            values["window/page"] = self.page_key()
        for key, page in self.pages.items():
            values.update({f"{key}/{name}": v for name, v in page.layout_state().items()})
        settings.save_layout(values)

    def _restore_page_layout(self, key: str, page: Page) -> None:
        def value(name: str) -> object:
            return settings.layout_value(f"{key}/{name}")

        page.restore_layout(value)

    def _restore_layout(self) -> str:
        geometry = settings.layout_value("window/geometry")
        if isinstance(geometry, QByteArray | bytes):
            self.restoreGeometry(QByteArray(geometry))
        key = str(settings.layout_value("window/page") or "")
        keys = [spec.key for spec in self.specs]
        if key not in keys:
            return ""
        # Only the sidebar: the page itself is built when the shell decides what to show.
        blocked = self.sidebar.blockSignals(True)
        self.sidebar.setCurrentRow(keys.index(key))
        self.sidebar.blockSignals(blocked)
        return key

    # -- visibility ---------------------------------------------------------------------------

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if not self._painted and watched is self and event.type() == QEvent.Type.Paint:
            self._painted = True
            self.first_painted.emit()
        return False

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self._shown_page is not None:
            self._shown_page.page_shown()

    def hideEvent(self, event: QHideEvent) -> None:
        super().hideEvent(event)
        if not event.spontaneous():  # hidden to the tray or closed, not minimised by the WM
            self.save_layout()
        if self._shown_page is not None:
            self._shown_page.page_hidden()

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.WindowStateChange and self._shown_page is not None:
            if self.isMinimized():
                self._shown_page.page_hidden()
            elif self.isVisible():
                self._shown_page.page_shown()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.save_layout()
        for page in self.pages.values():
            page.shutdown()
        super().closeEvent(event)
