"""The window shell with a real engine: the shell connects to the engine it is given, pages
are built on first view, hidden windows stop their timers, a bad engine setting shows in the
banner instead of crashing, and a session that goes away and comes back re-attaches the
engine pages (a placeholder in between, never a blank page)."""

from __future__ import annotations

import argparse

import pytest
from PySide6.QtCore import Qt

from toolbox.engine.connect import EngineConfig
from toolbox.machine.service import MachineService
from ui.main_window import BrokenPage, MainWindow
from ui.pages import Page, PageSpec
from ui.session import EngineSession
from ui.shell import Shell

pytestmark = pytest.mark.engine


def launch(qtbot, tasks, engine=None, context=None) -> tuple[MainWindow, Shell]:
    window = MainWindow(tasks, engine or "")
    qtbot.addWidget(window)
    window.show()
    args = argparse.Namespace(engine=engine, context=context)
    launcher = Shell(window, tasks, MachineService(), args)
    launcher.launch()
    return window, launcher


def test_connects_to_the_given_engine_and_builds_only_the_shown_page(
    qtbot, tasks, engine, monkeypatch
) -> None:
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    window, launcher = launch(qtbot, tasks, engine=engine.url)
    qtbot.waitUntil(
        lambda: launcher.session is not None and launcher.session.connected, timeout=30_000
    )
    assert window.windowTitle() == f"Toolbox — {engine.url}"
    assert list(window.pages) == ["containers"]
    page = window.page("containers")
    qtbot.waitUntil(lambda: not window.banner.isVisible(), timeout=10_000)
    qtbot.waitUntil(lambda: "Docker" in window.engine_status.text(), timeout=10_000)
    # Hidden: the status refresh stops; shown again: it resumes.
    assert page.tick_timer.isActive() or page.model.rowCount() == 0
    window.hide()
    assert not page.tick_timer.isActive()
    assert not page._visible
    window.show()
    assert page._visible
    window.close()
    launcher.shutdown()


def test_unknown_context_shows_in_the_banner(qtbot, tasks) -> None:
    window, launcher = launch(qtbot, tasks, context="no-such-context")
    qtbot.waitUntil(window.banner.isVisible, timeout=10_000)
    assert "There is no Docker context named 'no-such-context'" in window.banner.label.text()
    assert "docker context ls" in window.banner.label.text()
    assert window.banner.retry_button.isVisible()
    assert launcher.session is None
    window.close()


def test_unreachable_engine_banner_then_window_stays_usable(qtbot, tasks, tmp_path) -> None:
    window, launcher = launch(qtbot, tasks, engine=f"unix://{tmp_path}/gone.sock")
    qtbot.waitUntil(lambda: window.banner.mode == "lost", timeout=20_000)
    assert window.banner.label.text().startswith(
        f"Cannot reach the Docker engine at unix://{tmp_path}"
    )
    page = window.page("containers")
    assert page is not None
    assert not page.actions_by_key["run"].isEnabled()  # nothing to run against
    qtbot.mouseClick(window.banner.retry_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.banner.retry_button.isEnabled(), timeout=20_000)
    window.close()
    launcher.shutdown()


class ExplodingPage(Page):
    def __init__(self, context) -> None:
        raise RuntimeError("page bug")


def test_a_page_that_fails_to_build_is_reported_in_place(
    qtbot, tasks, session, monkeypatch
) -> None:
    specs = [
        PageSpec("containers", "Containers", "ui.containers.page:ContainersPage"),
        PageSpec("broken", "Broken", "tests.ui.test_main_window:ExplodingPage"),
    ]
    monkeypatch.setattr("ui.main_window.available_pages", lambda: specs)
    window = MainWindow(tasks, "x")
    qtbot.addWidget(window)
    window.show()
    window.attach(session)
    assert [window.sidebar.item(i).text() for i in range(window.sidebar.count())] == [
        "Containers",
        "Broken",
    ]
    with qtbot.waitSignal(window.page_changed, timeout=5000) as changed:
        window.sidebar.setCurrentRow(1)
    assert changed.args == ["broken"]
    page = window.page("broken")
    assert isinstance(page, BrokenPage)
    assert page.message == "The Broken page could not be shown: page bug"
    assert window.stack.currentWidget() is page
    window.select_page("containers")
    assert window.stack.currentWidget() is window.page("containers")
    window.close()


def test_session_gone_then_back_rebuilds_the_engine_pages(qtbot, tasks, engine) -> None:
    window = MainWindow(tasks, "")
    qtbot.addWidget(window)
    window.show()
    first = EngineSession(EngineConfig.from_url(engine.url), tasks)
    first.start()
    window.set_session(first)
    old_page = window.page("containers")
    assert old_page is not None
    qtbot.waitUntil(lambda: old_page.model.rowCount() >= 0 and first.has_snapshot, timeout=30_000)

    window.set_session(
        None, "machine default", ("Machine default is stopped", "", "Start", "start")
    )
    first.close()
    assert window.page("containers") is None  # shut down, not left on a dead session
    assert window.stack.currentWidget() is window.waiting
    assert window.waiting.title.text() == "Machine default is stopped"
    assert window.waiting.button.isVisible()
    with qtbot.waitSignal(window.placeholder_action, timeout=2000) as clicked:
        qtbot.mouseClick(window.waiting.button, Qt.MouseButton.LeftButton)
    assert clicked.args == ["start"]
    window.select_page("images")  # every engine page shows the placeholder meanwhile
    assert window.stack.currentWidget() is window.waiting

    second = EngineSession(EngineConfig.from_url(engine.url), tasks)
    second.start()
    window.set_session(second)
    window.select_page("containers")
    page = window.page("containers")
    assert page is not None and page is not old_page
    assert page.session is second
    assert window.stack.currentWidget() is page
    qtbot.waitUntil(lambda: second.has_snapshot, timeout=30_000)
    window.close()
    second.close()


def test_empty_home_shows_the_first_run(qtbot, tasks, monkeypatch) -> None:
    monkeypatch.setattr("ui.shell.local_engine_answers", lambda environ=None: None)
    window, launcher = launch(qtbot, tasks)
    qtbot.waitUntil(lambda: window.page_key() == "machines", timeout=20_000)
    page = window.page("machines")
    assert page is not None
    qtbot.waitUntil(lambda: page.stack.currentWidget() is page.create_panel, timeout=20_000)
    assert page.create_panel.name_edit.text() == "default"
    assert page.create_panel.create_button.isDefault()
    assert launcher.session is None
    window.select_page("containers")
    assert window.waiting.title.text() == "No Docker machine yet"
    window.close()


def test_first_run_offers_a_local_engine_that_answers(qtbot, tasks, engine, monkeypatch) -> None:
    monkeypatch.setattr("ui.shell.local_engine_answers", lambda environ=None: engine.url)
    window, launcher = launch(qtbot, tasks)
    qtbot.waitUntil(lambda: window.page_key() == "machines", timeout=20_000)
    window.select_page("containers")
    assert window.waiting.button.text() == "Use the local engine"
    qtbot.mouseClick(window.waiting.button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(
        lambda: launcher.session is not None and launcher.session.connected, timeout=30_000
    )
    assert launcher.session.config.url == engine.url
    qtbot.waitUntil(lambda: window.page("containers") is not None, timeout=10_000)
    from ui import settings

    assert settings.remembered_engine() == "local"
    window.close()
    launcher.shutdown()


def test_engine_switcher_lists_machines_and_the_local_engine(
    qtbot, tasks, engine, monkeypatch
) -> None:
    from ui import settings

    monkeypatch.setattr("ui.shell.local_engine_answers", lambda environ=None: engine.url)
    window, launcher = launch(qtbot, tasks)
    switcher = launcher.switcher
    switcher.refresh()
    qtbot.waitUntil(lambda: bool(switcher.choices), timeout=20_000)
    assert [c.key for c in switcher.choices] == ["local"]
    switcher.choose("local")
    qtbot.waitUntil(
        lambda: launcher.session is not None and launcher.session.connected, timeout=30_000
    )
    assert settings.remembered_engine() == "local"
    assert "Engine:" in switcher.text()
    window.close()
    launcher.shutdown()
