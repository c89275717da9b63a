"""The app entry point and the window shell: --version, engine label, first paint before
docker-py is imported, page registry."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from toolbox import __version__
from ui.app import build_parser, engine_label
from ui.pages import PAGES, PageSpec

ROOT = Path(__file__).resolve().parents[2]


def test_version_exits_without_qt() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "import sys, ui.app; sys.exit(ui.app.main(['--version']))"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"toolbox-app {__version__}"


def test_engine_and_context_are_exclusive() -> None:
    parser = build_parser()
    assert parser.parse_args(["--engine", "tcp://127.0.0.1:2376"]).engine == "tcp://127.0.0.1:2376"
    assert parser.parse_args(["--context", "default"]).context == "default"
    proc = subprocess.run(
        [sys.executable, "-m", "ui", "--engine", "x", "--context", "y"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "not allowed with argument" in proc.stderr


def test_engine_label_before_resolution() -> None:
    assert engine_label("unix:///x.sock", None, {}) == "unix:///x.sock"
    assert engine_label(None, "prod", {}) == "context prod"
    assert engine_label(None, None, {"DOCKER_HOST": "tcp://h:2376"}) == "tcp://h:2376"
    assert engine_label(None, None, {"DOCKER_CONTEXT": "dev"}) == "context dev"
    assert engine_label(None, None, {}) == ""


def test_window_paints_before_docker_is_imported() -> None:
    """The first window must not wait for docker-py (about a quarter second to import)."""
    code = (
        "import sys\n"
        "from PySide6.QtWidgets import QApplication\n"
        "from ui.main_window import MainWindow\n"
        "from ui.tasks import TaskRunner\n"
        "app = QApplication([])\n"
        "window = MainWindow(TaskRunner(), 'unix:///nowhere.sock')\n"
        "seen = []\n"
        "def painted():\n"
        "    seen.append('docker' in sys.modules)\n"
        "    app.quit()\n"
        "window.first_painted.connect(painted)\n"
        "window.show()\n"
        "app.exec()\n"
        "print(window.windowTitle(), seen)\n"
    )
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "Toolbox — unix:///nowhere.sock [False]"


def test_exit_after_paint_hook_used_by_the_benchmark() -> None:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", TOOLBOX_EXIT_AFTER_PAINT="1")
    env["DOCKER_HOST"] = "unix:///nonexistent/docker.sock"
    proc = subprocess.run(
        [sys.executable, "-m", "ui"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "first-paint"


def test_page_registry() -> None:
    keys = [spec.key for spec in PAGES]
    assert keys == ["containers", "images", "volumes", "networks", "machines"]
    for spec in PAGES:  # every entry imports, is a Page, and says whether it needs an engine
        assert spec.available(), spec
        cls = spec.page_class()
        assert "needs_engine" in vars(cls), f"{spec.factory} does not declare needs_engine"
        assert cls.needs_engine == spec.needs_engine, spec
    assert [spec.key for spec in PAGES if not spec.needs_engine] == ["machines"]
    assert not PageSpec("x", "X", "ui.no_such_module:Page").available()
