"""A frozen engine (its dockerd stopped with SIGSTOP) greys the rows of every engine page with
"last seen HH:MM:SS" within 10 s, and the banner says so; once it runs again the lists are
re-read, the rows are current again and a container made afterwards shows up."""

from __future__ import annotations

import argparse
import os
import signal
import time

import docker
import pytest
from PySide6.QtCore import Qt

from tests import harness
from toolbox.machine.service import MachineService
from ui.containers.model import NAME, STATUS
from ui.main_window import MainWindow
from ui.models.table import STALE_COLOR
from ui.shell import Shell

from .conftest import unique

pytestmark = [pytest.mark.engine, pytest.mark.timeout(300)]

FG = Qt.ItemDataRole.ForegroundRole
TIP = Qt.ItemDataRole.ToolTipRole


@pytest.fixture
def frozen_daemon():
    """A dockerd of our own: freezing the shared one would stall every other test."""
    daemon = harness.PrivateDockerd()
    daemon.start()
    client = docker.DockerClient(base_url=daemon.url, timeout=60)
    try:
        harness.import_busybox(client)
        yield daemon, client
    finally:
        client.close()
        if daemon.proc is not None:
            os.kill(daemon.proc.pid, signal.SIGCONT)  # never leave it frozen
        daemon.cleanup()


def _row(model, name: str) -> int | None:
    for row, record in enumerate(model.records()):
        if record.name == name:
            return row
    return None


def test_frozen_engine_greys_rows_then_resyncs(qtbot, tasks, frozen_daemon) -> None:
    daemon, client = frozen_daemon
    before = unique("before")
    client.containers.run("busybox:latest", ["sleep", "300"], name=before, detach=True)
    window = MainWindow(tasks, daemon.url)
    qtbot.addWidget(window)
    window.show()
    shell = Shell(
        window, tasks, MachineService(), argparse.Namespace(engine=daemon.url, context=None)
    )
    shell.launch()
    qtbot.waitUntil(lambda: shell.session is not None and shell.session.connected, timeout=30_000)
    page = window.page("containers")
    assert page is not None
    qtbot.waitUntil(lambda: _row(page.model, before) is not None, timeout=10_000)
    row = _row(page.model, before)
    assert row is not None
    status = page.model.index(row, STATUS)
    assert page.model.data(status).startswith("Up")
    assert page.model.data(status, FG) is None  # no colour of its own

    assert daemon.proc is not None
    pid = daemon.proc.pid
    frozen_at = time.monotonic()
    os.kill(pid, signal.SIGSTOP)
    try:
        qtbot.waitUntil(lambda: page.model.stale_since is not None, timeout=10_000)
        print(f"\nrows greyed {time.monotonic() - frozen_at:.1f} s after the freeze")
        assert window.banner.mode == "lost"
        name_cell = page.model.index(row, NAME)
        assert page.model.data(name_cell, FG).color() == STALE_COLOR
        assert page.model.data(status).startswith("Last seen ")
        tip = page.model.data(name_cell, TIP)
        when = page.model.stale_since.astimezone().strftime("%H:%M:%S")
        assert tip.startswith(f"Last seen {when}")
        assert before in tip  # the column's own tooltip follows
        # A page first shown while the engine is frozen comes up greyed as well.
        images = window.select_page("images")
        assert images is not None
        assert images.model.rowCount() > 0
        assert images.model.stale_since == page.model.stale_since
        assert images.model.data(images.model.index(0, 0), FG).color() == STALE_COLOR
    finally:
        os.kill(pid, signal.SIGCONT)

    qtbot.waitUntil(lambda: page.model.stale_since is None, timeout=90_000)
    assert images.model.stale_since is None
    assert page.model.data(status).startswith("Up")
    assert page.model.data(page.model.index(row, NAME), FG) is None
    after = unique("after")
    client.containers.create("busybox:latest", ["true"], name=after)
    qtbot.waitUntil(lambda: _row(page.model, after) is not None, timeout=15_000)
    window.close()
    shell.shutdown()
