"""Entry point of the desktop app: ``toolbox-app`` and ``python -m ui``.

``toolbox-app [--engine URL | --context NAME]``; the engine is chosen by
``toolbox.engine.resolve.resolve_engine``, the same rules as the CLI and the docker CLI
(``DOCKER_HOST``, then ``DOCKER_CONTEXT``, then the Docker CLI's current context, then the
platform's default socket; TLS verification only when ``DOCKER_TLS_VERIFY`` is set).

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

from toolbox import __version__


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
        "(TLS as the docker CLI: on with DOCKER_TLS_VERIFY, files from DOCKER_CERT_PATH)",
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
