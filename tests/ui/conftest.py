"""Fixtures for GUI tests against the real engine: a started ``EngineSession`` and the
Containers page on it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from toolbox.engine.connect import EngineConfig
from ui.pages import PageContext
from ui.session import EngineSession
from ui.tasks import TaskRunner


def unique(prefix: str = "tbx") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(autouse=True)
def app_settings(tmp_path) -> Iterator[object]:
    """Every GUI test keeps its preferences in its own INI file, never the user's."""
    from ui import settings

    path = tmp_path / "settings.ini"
    settings.use_settings_file(path)
    yield path
    settings.use_settings_file(None)


@pytest.fixture
def tasks(qtbot) -> Iterator[TaskRunner]:
    runner = TaskRunner()
    yield runner
    runner.shutdown(10_000)


@pytest.fixture
def session(qtbot, engine, tasks) -> Iterator[EngineSession]:
    """A session on the test engine, connected and holding its first snapshot."""
    sess = EngineSession(EngineConfig.from_url(engine.url), tasks)
    sess.start()
    qtbot.waitUntil(lambda: sess.connected and sess.has_snapshot, timeout=30_000)
    yield sess
    sess.close()


@pytest.fixture
def context(session, tasks) -> PageContext:
    return PageContext(session, tasks)


@pytest.fixture
def containers_page(qtbot, context):
    from ui.containers.page import ContainersPage

    page = ContainersPage(context)
    qtbot.addWidget(page)
    page.resize(1000, 700)
    page.show()
    page.page_shown()
    yield page
    page.shutdown()
