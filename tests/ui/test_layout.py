"""The window remembers its size and position, the page shown, splitter sizes and each table's
sort order: close it, open a new one, and all of it is back. Settings stay in the test's own
file (the ui fixtures), or under TOOLBOX_HOME when none is set."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from PySide6.QtCore import QRect, Qt

from toolbox.machine.service import MachineService
from ui import settings
from ui.containers.model import STATUS
from ui.images.model import SIZE
from ui.main_window import MainWindow
from ui.shell import Shell
from ui.tasks import TaskRunner

pytestmark = pytest.mark.engine


def open_window(qtbot, engine) -> tuple[MainWindow, Shell]:
    tasks = TaskRunner()  # Shell.shutdown ends its runner, as at quit
    window = MainWindow(tasks, engine.url)
    qtbot.addWidget(window)
    window.show()
    shell = Shell(
        window, tasks, MachineService(), argparse.Namespace(engine=engine.url, context=None)
    )
    shell.launch()
    qtbot.waitUntil(lambda: shell.session is not None and shell.session.connected, timeout=30_000)
    return window, shell


def sort_of(page) -> tuple[int, Qt.SortOrder]:
    header = page.view.horizontalHeader()
    return header.sortIndicatorSection(), header.sortIndicatorOrder()


def test_layout_is_restored_in_a_new_window(qtbot, engine, app_settings) -> None:
    window, shell = open_window(qtbot, engine)
    screen = window.screen().availableGeometry()  # restoreGeometry keeps a window on screen
    window.setGeometry(
        QRect(screen.x() + 30, screen.y() + 40, screen.width() - 90, screen.height() - 80)
    )
    containers = window.select_page("containers")
    assert containers is not None
    qtbot.waitUntil(lambda: containers.splitter.height() > 0)
    total = sum(containers.splitter.sizes())
    containers.splitter.setSizes([total - 150, 150])
    wanted_sizes = containers.splitter.sizes()
    containers.view.sortByColumn(STATUS, Qt.SortOrder.DescendingOrder)
    images = window.select_page("images")
    assert images is not None
    images.view.sortByColumn(SIZE, Qt.SortOrder.DescendingOrder)
    wanted_geometry = window.geometry()
    window.close()
    shell.shutdown()
    assert Path(app_settings).is_file()

    again, shell2 = open_window(qtbot, engine)
    assert again.page_key() == "images"  # the attach kept the page that was shown
    images2 = again.page("images")
    assert images2 is not None
    assert sort_of(images2) == (SIZE, Qt.SortOrder.DescendingOrder)
    assert again.geometry().size() == wanted_geometry.size()
    assert again.geometry().topLeft() == wanted_geometry.topLeft()
    containers2 = again.select_page("containers")
    assert containers2 is not None
    assert sort_of(containers2) == (STATUS, Qt.SortOrder.DescendingOrder)
    qtbot.waitUntil(lambda: containers2.splitter.sizes() == wanted_sizes, timeout=5_000)
    again.close()
    shell2.shutdown()


def test_a_damaged_layout_is_ignored(qtbot, engine) -> None:
    settings.save_layout(
        {
            "window/geometry": "not bytes",
            "window/page": "no-such-page",
            "containers/containersTable/sort": "99,1",
            "containers/containersSplitter/splitter": "junk",
        }
    )
    window, shell = open_window(qtbot, engine)
    assert window.restored_page == ""
    page = window.select_page("containers")
    assert page is not None
    assert sort_of(page) == (0, Qt.SortOrder.AscendingOrder)
    window.close()
    shell.shutdown()


def test_settings_live_under_toolbox_home_without_a_test_file(toolbox_home) -> None:
    settings.use_settings_file(None)
    settings.save_layout({"window/page": "images"})
    assert (toolbox_home / "settings.ini").is_file()
    assert settings.layout_value("window/page") == "images"
