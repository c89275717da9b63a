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
from typing import TYPE_CHECKING

from toolbox import __version__

if TYPE_CHECKING:
    from toolbox.engine.connect import EngineConfig


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
    """Resolve the engine settings (see ``ui.shell.engine_config``)."""
    from ui.shell import engine_config as resolve

    return resolve(engine, context, environ)


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
    from ui.single_instance import SingleInstance, raise_window

    instance = SingleInstance()  # a second launch activates the first one and exits
    if not instance.acquire():
        return 0
    from resources import ResourceMissing
    from resources.qt import app_icon

    try:
        app.setWindowIcon(app_icon())
    except ResourceMissing:  # a broken install still starts, with Qt's default icon
        pass
    from ui.shell import Shell

    tasks = TaskRunner(app)
    window = MainWindow(tasks, engine_label(args.engine, args.context, os.environ))
    launcher = Shell(window, tasks, None, args)
    from ui.tray import install_desktop

    instance.activated.connect(lambda: raise_window(window))
    install_desktop(app, window, tasks, launcher)  # tray, notifications, preferences
    if os.environ.get("TOOLBOX_EXIT_AFTER_PAINT"):

        def painted() -> None:
            print("first-paint", flush=True)
            QTimer.singleShot(0, app.quit)

        window.first_painted.connect(painted)
    else:
        window.first_painted.connect(lambda: QTimer.singleShot(0, launcher.launch))
    window.show()
    try:
        return int(app.exec())
    finally:
        launcher.shutdown()
