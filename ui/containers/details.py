"""The details pane under the containers table: Summary, Logs, Inspect and Stats tabs.

``show_container(container)`` switches to another container (None clears);
``container_changed(container)`` takes a fresher record of the same one. The inspect JSON is
fetched off the GUI thread once per container (and again when its state changes); logs stream
only while the Logs tab is visible. The Stats tab draws the ``StatsMonitor``'s history of the
container (the page's monitor, which streams the selected one).
"""

from __future__ import annotations

import html
import json
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices, QFontDatabase
from PySide6.QtWidgets import QPlainTextEdit, QTabWidget, QTextBrowser, QVBoxLayout, QWidget

from toolbox.engine.records import Container
from toolbox.errors import ToolboxError
from ui.containers.logs import LogView
from ui.containers.model import now_utc
from ui.containers.stats import StatsMonitor, StatsPanel

if TYPE_CHECKING:
    from ui.session import EngineSession

SUMMARY, LOGS, INSPECT, STATS = range(4)


def summary_html(container: Container, inspect: dict[str, Any] | None) -> str:
    """The Summary tab: identity, state, ports (links), env, mounts, networks."""
    esc = html.escape
    config = (inspect or {}).get("Config") or {}
    host = (inspect or {}).get("HostConfig") or {}
    rows = [
        ("Name", esc(container.name)),
        ("ID", f"<code>{esc(container.short_id)}</code>"),
        ("Image", esc(container.image)),
        ("Command", f"<code>{esc(container.command)}</code>"),
        ("State", esc(f"{container.state.label} · {container.status_text(now_utc())}")),
    ]
    restart = (host.get("RestartPolicy") or {}).get("Name")
    if restart:
        rows.append(("Restart", esc(restart)))
    parts = ["<table cellspacing='4'>"]
    parts += [f"<tr><td><b>{k}</b></td><td>{v}</td></tr>" for k, v in rows]
    parts.append("</table>")

    parts.append("<h4>Ports</h4>")
    if container.ports:
        items = []
        for port in container.ports:
            text = esc(str(port))
            items.append(
                f"<li><a href='{esc(port.url)}'>{text}</a></li>" if port.url else f"<li>{text}</li>"
            )
        parts.append("<ul>" + "".join(items) + "</ul>")
    else:
        parts.append("<p>None published.</p>")

    parts.append("<h4>Environment</h4>")
    if inspect is None:
        parts.append("<p>Loading…</p>")
    else:
        env = config.get("Env") or []
        if env:
            parts.append("<ul>" + "".join(f"<li><code>{esc(e)}</code></li>" for e in env) + "</ul>")
        else:
            parts.append("<p>No variables.</p>")

    parts.append("<h4>Mounts</h4>")
    if container.mounts:
        items = []
        for m in container.mounts:
            source = m.name or m.source
            mode = "read-only" if m.read_only else "read-write"
            items.append(
                f"<li>{esc(m.type)} <code>{esc(source)}</code> → "
                f"<code>{esc(m.destination)}</code> ({mode})</li>"
            )
        parts.append("<ul>" + "".join(items) + "</ul>")
    else:
        parts.append("<p>No mounts.</p>")

    if container.networks:
        parts.append("<h4>Networks</h4><p>" + esc(", ".join(container.networks)) + "</p>")
    return "".join(parts)


class DetailsPane(QTabWidget):
    """Summary / Logs / Inspect / Stats of the selected container."""

    def __init__(
        self,
        session: EngineSession,
        parent: QWidget | None = None,
        stats: StatsMonitor | None = None,
    ):
        super().__init__(parent)
        self.session = session
        self.stats_monitor = stats or StatsMonitor(session, parent=self)
        self.container: Container | None = None
        self.inspect: dict[str, Any] | None = None
        self._active = True

        self.summary = QTextBrowser()
        self.summary.setOpenLinks(False)
        self.summary.anchorClicked.connect(lambda url: QDesktopServices.openUrl(QUrl(url)))
        self.logs = LogView(session)
        self.inspect_view = QPlainTextEdit()
        self.inspect_view.setReadOnly(True)
        self.inspect_view.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.inspect_view.setUndoRedoEnabled(False)
        self.stats = StatsPanel(self.stats_monitor)
        for widget, title in (
            (self.summary, "Summary"),
            (self.logs, "Logs"),
            (self.inspect_view, "Inspect"),
            (self.stats, "Stats"),
        ):
            holder = QWidget()
            layout = QVBoxLayout(holder)
            layout.setContentsMargins(4, 4, 4, 4)
            layout.addWidget(widget)
            self.addTab(holder, title)
        self.currentChanged.connect(lambda _i: self._sync_logs())
        self.currentChanged.connect(lambda i: self.stats_monitor.set_stream_wanted(i == STATS))
        self.stats_monitor.set_stream_wanted(self.currentIndex() == STATS)

    def show_container(self, container: Container | None) -> None:
        same = (
            container is not None
            and self.container is not None
            and container.id == self.container.id
        )
        if same:
            assert container is not None
            self.container_changed(container)
            return
        self.container = container
        self.inspect = None
        self.inspect_view.setPlainText("")
        self.stats.show_container(container)
        self._render()
        if container is not None:
            self._load_inspect()
        self._sync_logs()

    def container_changed(self, container: Container) -> None:
        """A fresher record of the shown container."""
        old = self.container
        if old is None or old.id != container.id:
            return
        self.container = container
        self._render()
        if old.state != container.state:
            self.stats.show_container(container)
            self._load_inspect()
            if container.state.is_running and not old.state.is_running:
                self.logs.restart()  # it started again: follow the new output
            elif not self.logs.streaming:
                self._sync_logs()

    def set_active(self, active: bool) -> None:
        """Page shown/hidden: logs stream only while someone can see them."""
        self._active = active
        self._sync_logs()

    def shutdown(self) -> None:
        self.logs.stop()

    def _sync_logs(self) -> None:
        wanted = self._active and self.currentIndex() == LOGS and self.container is not None
        if wanted:
            assert self.container is not None
            self.logs.show_container(self.container.id)
        else:
            self.logs.stop()

    def _render(self) -> None:
        if self.container is None:
            self.summary.setHtml("<p>Select a container to see its details.</p>")
            return
        self.summary.setHtml(summary_html(self.container, self.inspect))

    def _load_inspect(self) -> None:
        container = self.container
        if container is None:
            return

        def loaded(data: dict[str, Any]) -> None:
            if self.container is None or self.container.id != container.id:
                return
            self.inspect = data
            self.inspect_view.setPlainText(json.dumps(data, indent=2, default=str))
            self._render()

        def failed(error: ToolboxError) -> None:
            if self.container is not None and self.container.id == container.id:
                self.inspect_view.setPlainText(f"Could not inspect: {error.message}")

        self.session.call(
            lambda client: client.inspect_container(container.id),
            loaded,
            failed,
            owner=self,
            what="Inspect container",
        )
