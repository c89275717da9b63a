"""Entry point of the desktop app: ``toolbox-app`` and ``python -m ui``.

``toolbox-app [--engine URL | --context NAME]``; with neither it connects to the engine the
environment names (``DOCKER_HOST``, then ``DOCKER_CONTEXT``, then the Docker CLI's current
context, then the platform's default socket: ``EngineConfig.current()``).

Start-up order keeps the first paint fast: the window is shown before docker-py is imported;
after its first paint a worker thread resolves the engine settings (importing docker-py), and
only then the session starts watching. ``TOOLBOX_EXIT_AFTER_PAINT=1`` prints ``first-paint``
and quits at the first paint (used by ``benchmarks/ui_first_paint.py``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from toolbox import __version__

if TYPE_CHECKING:
    from toolbox.engine.connect import EngineConfig
    from ui.main_window import MainWindow
    from ui.session import EngineSession
    from ui.tasks import TaskRunner


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="toolbox-app", description="Toolbox: containers and images of a Docker engine."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--engine",
        metavar="URL",
        help="engine to use, like unix:///var/run/docker.sock or tcp://127.0.0.1:2376 "
        "(TLS files from DOCKER_CERT_PATH)",
    )
    where.add_argument("--context", metavar="NAME", help="a Docker CLI context to use")
    return parser


def engine_label(engine: str | None, context: str | None, environ: Mapping[str, str]) -> str:
    """What to call the engine before its settings are resolved (title and banner)."""
    if engine:
        return engine
    if context:
        return f"context {context}"
    return environ.get("DOCKER_HOST") or (
        f"context {environ['DOCKER_CONTEXT']}" if environ.get("DOCKER_CONTEXT") else ""
    )


def engine_config(
    engine: str | None, context: str | None, environ: Mapping[str, str] = os.environ
) -> EngineConfig:
    """Resolve the engine settings (imports docker-py: call it off the GUI thread)."""
    from toolbox.engine.connect import EngineConfig

    if engine:
        cert_path = environ.get("DOCKER_CERT_PATH") or None
        verify = bool(environ.get("DOCKER_TLS_VERIFY")) or cert_path is not None
        return EngineConfig.from_url(engine, cert_path=cert_path, verify=verify)
    if context:
        return EngineConfig.from_context(context)
    return EngineConfig.current(environ)


class Launcher:
    """Connects the shown window to its engine once it has painted; tears down at exit."""

    def __init__(self, window: MainWindow, tasks: TaskRunner, args: argparse.Namespace):
        self.window = window
        self.tasks = tasks
        self.args = args
        self.session: EngineSession | None = None
        self._retry_hooked = False

    def connect(self) -> None:
        self.tasks.run(
            lambda: engine_config(self.args.engine, self.args.context),
            self._configured,
            self._failed,
            what="Find the Docker engine",
        )

    def _configured(self, config: EngineConfig) -> None:
        from ui.session import EngineSession

        if self.session is not None:
            return
        self.session = EngineSession(config, self.tasks, parent=self.window)
        self.window.attach(self.session)
        self.session.start()

    def _failed(self, error: Any) -> None:
        self.window.show_engine_problem(error.message, error.hint)
        if not self._retry_hooked:  # Retry resolves the settings again (a fixed context file)
            self._retry_hooked = True
            self.window.banner.retry_requested.connect(self.connect)

    def shutdown(self) -> None:
        if self.session is not None:
            self.session.close()
        self.tasks.shutdown(3000)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from ui.main_window import MainWindow
    from ui.tasks import TaskRunner

    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(sys.argv[:1])
    app.setApplicationName("Toolbox")
    app.setApplicationVersion(__version__)
    from resources import ResourceMissing
    from resources.qt import app_icon

    try:
        app.setWindowIcon(app_icon())
    except ResourceMissing:  # a broken install still starts, with Qt's default icon
        pass
    tasks = TaskRunner(app)
    window = MainWindow(tasks, engine_label(args.engine, args.context, os.environ))
    launcher = Launcher(window, tasks, args)
    if os.environ.get("TOOLBOX_EXIT_AFTER_PAINT"):

        def painted() -> None:
            print("first-paint", flush=True)
            QTimer.singleShot(0, app.quit)

        window.first_painted.connect(painted)
    else:
        window.first_painted.connect(lambda: QTimer.singleShot(0, launcher.connect))
    window.show()
    try:
        return int(app.exec())
    finally:
        launcher.shutdown()
