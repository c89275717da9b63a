"""The containers page's compose projects against the real engine and Debian's
docker-compose: the project row with its services under it, collapse, project actions, the
aggregated log with service-prefixed lines, and compose up/down streamed into the pane."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QUrl

from tests.engine.test_compose import needs_compose, write_project
from tests.ui.conftest import unique
from toolbox.engine import compose
from toolbox.engine.connect import EngineConfig

pytestmark = pytest.mark.engine


@pytest.fixture
def project(engine, tmp_path):
    needs_compose()
    name = unique("proj")
    file = write_project(tmp_path)
    config = EngineConfig.from_url(engine.url)
    compose.compose_run(config, "up", [str(file)], project=name).run()
    yield name, file
    try:
        compose.compose_run(config, "down", [str(file)], project=name).run()
    except Exception:
        pass


def tree_children(panel, name: str) -> list[tuple[str, str]]:
    index = panel.project_row(name)
    model = panel.model
    return [
        (model.index(r, 0, index).data(), model.index(r, 1, index).data())
        for r in range(model.rowCount(index))
    ]


def summary(panel, name: str) -> str | None:
    index = panel.project_row(name)
    return index.siblingAtColumn(1).data() if index.isValid() else None


def test_project_row_services_collapse_and_actions(qtbot, containers_page, project, tmp_path):
    name, _ = project
    panel = containers_page.compose
    containers_page.tabs.setCurrentWidget(panel)
    qtbot.waitUntil(lambda: summary(panel, name) == "running 2/2", timeout=20_000)
    assert tree_children(panel, name) == [("web", "Running"), ("worker", "Running")]
    assert panel.project_row(name).siblingAtColumn(2).data() == str(tmp_path)
    index = panel.project_row(name)
    assert panel.tree.isExpanded(index)
    panel.tree.collapse(index)
    assert not panel.tree.isExpanded(index)

    # A service's container leads to its row in the containers table.
    child = panel.model.index(1, 0, index)
    panel.tree.doubleClicked.emit(child)
    assert containers_page.tabs.currentIndex() == 0
    assert [c.name for c in containers_page.selected()] == [child.siblingAtColumn(2).data()]
    containers_page.tabs.setCurrentWidget(panel)

    panel.select_project(name)
    assert panel.project_actions["stop"].isEnabled()
    panel.project_action("stop")
    qtbot.waitUntil(lambda: summary(panel, name) == "stopped 0/2", timeout=30_000)
    assert not panel.tree.isExpanded(panel.project_row(name))  # stays collapsed on update
    panel.project_action("start")
    qtbot.waitUntil(lambda: summary(panel, name) == "running 2/2", timeout=30_000)
    panel.project_action("restart")
    qtbot.waitUntil(lambda: "Restart project" in panel.message.text() and "done" in
                    panel.message.text(), timeout=30_000)  # fmt: skip

    opened: list[QUrl] = []
    panel.select_project(name)
    assert panel.open_folder(lambda url: opened.append(url) or True)
    assert opened == [QUrl.fromLocalFile(str(tmp_path))]

    box = panel.confirm_remove()
    assert box is not None and name in box.text()
    next(b for b in box.buttons() if b.text() == "Remove").click()
    qtbot.waitUntil(lambda: not panel.project_row(name).isValid(), timeout=30_000)
    assert name not in panel.projects


def test_aggregated_log_prefixes_lines_with_their_service(qtbot, containers_page, project):
    name, _ = project
    panel = containers_page.compose
    qtbot.waitUntil(lambda: summary(panel, name) == "running 2/2", timeout=20_000)
    panel.select_project(name)
    panel.follow_selected_logs()

    def both() -> bool:
        text = panel.output.toPlainText()
        return "web    | hello-from-web" in text and "worker | hello-from-worker" in text

    qtbot.waitUntil(both, timeout=20_000)
    html = panel.output.document().toHtml()
    assert compose.service_of is not None
    from ui.containers.compose_view import service_color

    services = panel.projects[name].services
    assert service_color(services, "web") != service_color(services, "worker")
    assert service_color(services, "web") in html and service_color(services, "worker") in html
    panel.cancel()
    assert panel.logs is None


def test_up_and_down_stream_into_the_pane(qtbot, containers_page, engine, tmp_path):
    needs_compose()
    panel = containers_page.compose
    name = unique("proj")
    file = write_project(tmp_path, ("solo",))
    with qtbot.waitSignal(panel.busy_changed, timeout=5_000):
        panel.compose("up", [str(file)], name)
    assert panel.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: "compose up finished." in panel.output.toPlainText(), timeout=60_000)
    qtbot.waitUntil(lambda: summary(panel, name) == "running 1/1", timeout=20_000)
    assert panel.output.toPlainText().startswith("$ ")
    panel.select_project(name)
    assert panel.project_actions["down"].isEnabled()
    panel.down_selected()
    qtbot.waitUntil(lambda: "compose down finished." in panel.output.toPlainText(), timeout=60_000)
    qtbot.waitUntil(lambda: not panel.project_row(name).isValid(), timeout=20_000)


def test_folder_not_on_this_host_is_said(qtbot, containers_page, project, tmp_path):
    name, _ = project
    panel = containers_page.compose
    qtbot.waitUntil(lambda: summary(panel, name) == "running 2/2", timeout=20_000)
    panel.select_project(name)
    moved = Path(str(tmp_path) + "-moved")
    tmp_path.rename(moved)
    try:
        assert not panel.open_folder(lambda url: True)
        assert "is not on this computer" in panel.message.text()
    finally:
        moved.rename(tmp_path)
