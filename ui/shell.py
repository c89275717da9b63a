"""The shell: which engine the window shows, and the machines behind it.

``Shell`` owns the one ``EngineSession`` the pages use, and replaces it when the engine changes:
a machine starts or stops, or the user picks another engine in the switcher. At launch it
decides what to show (``launch()``):

1. ``--engine URL`` / ``--context NAME``: that engine, as before.
2. The engine the user picked last time (``ui.settings.remembered_engine``), while it still
   exists: ``machine:NAME``, ``local`` or ``context:NAME``.
3. The machine ``default`` (or the only one). Running: its engine at once. Stopped: started
   when the preference "start the machine when the app starts" is on (the default), with the
   boot progress in the status area, and the containers page fills as soon as it answers.
4. No machine at all: the Machines page with the guided create (first run).

Machine work runs on the ``TaskRunner`` with one serial queue per machine (``machine:NAME``),
so Stop can never race Start. The GUI thread never waits on a VM, SSH or the engine.

Signals:
    session_changed(object): the new ``EngineSession``, or None.
    machine_busy(str, str): machine name and what is happening ("" when idle again).
    machines_changed(): a machine was created, started, stopped or removed here.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal

from toolbox.errors import ToolboxError
from ui import settings
from ui.tasks import TaskRunner, on_gui

if TYPE_CHECKING:
    from toolbox.engine.connect import EngineConfig
    from toolbox.machine.service import MachineService
    from toolbox.progress import Progress
    from ui.main_window import MainWindow
    from ui.session import EngineSession

log = logging.getLogger(__name__)

DEFAULT_MACHINE = "default"


def engine_config(
    engine: str | None, context: str | None, environ: Mapping[str, str] = os.environ
) -> EngineConfig:
    """Resolve the engine settings like the docker CLI (``toolbox.engine.resolve``; imports
    docker-py: call it off the GUI thread)."""
    from toolbox.engine.resolve import resolve_engine as resolve

    return resolve(engine, context, environ)


def machine_config(service: MachineService, name: str) -> EngineConfig:
    """The machine's engine over its loopback forward, with its client certificate."""
    from toolbox.engine.resolve import engine_config_for_machine

    return engine_config_for_machine(service, name)


def local_engine_answers(environ: Mapping[str, str] = os.environ) -> str | None:
    """The URL of a local engine that answers (DOCKER_HOST, else the platform's socket), or
    None. Blocks up to a few seconds: call it off the GUI thread."""
    try:
        config = engine_config(None, None, environ)
    except ToolboxError:
        return None
    if environ.get("DOCKER_MACHINE_NAME"):
        return None  # that is a Toolbox machine's engine, not a local one
    try:
        client = config.connect(timeout=3)
    except Exception:
        return None
    try:
        if not client.ping():
            return None
    except Exception:
        return None
    finally:
        client.close()
    return config.url


class Shell(QObject):
    """Chooses the engine, starts machines, and swaps the window's session."""

    session_changed = Signal(object)
    machine_busy = Signal(str, str)
    machines_changed = Signal()

    def __init__(
        self,
        window: MainWindow,
        tasks: TaskRunner,
        machines: MachineService | None = None,
        args: argparse.Namespace | None = None,
    ):
        super().__init__(window)
        self.window = window
        self.tasks = tasks
        self._machines = machines
        self.args = args or argparse.Namespace(engine=None, context=None)
        self.session: EngineSession | None = None
        self.choice = ""  # "machine:NAME", "local", "context:NAME", "url:URL"
        self.local_engine: str | None = None
        self.starting: set[str] = set()
        window.shell = self
        window.placeholder_action.connect(self._placeholder_action)
        from ui.engine_switcher import EngineSwitcher

        self.switcher = EngineSwitcher(self, window)
        window.statusBar().addPermanentWidget(self.switcher)
        self._retry_hooked = False

    @property
    def machines(self) -> MachineService:
        """The machine service, made on first use (after the first paint: its import costs
        about 0.1 s)."""
        if self._machines is None:
            from toolbox.machine.service import MachineService, ProcessAgents

            self._machines = MachineService(agents=ProcessAgents())
        return self._machines

    # -- launch ---------------------------------------------------------------------------

    def launch(self) -> None:
        """Decide what to show (see the module docstring). Returns at once."""
        if self.args.engine or self.args.context:
            self.use_config_spec(self.args.engine, self.args.context)
            return
        self.tasks.run(self._survey, self._surveyed, what="Look for machines and engines")

    def _survey(self) -> tuple[list[Any], str | None, bool]:
        # A running machine whose host agent died (or was killed) gets it back: its ports and
        # shares work again without the window open.
        with contextlib.suppress(ToolboxError, OSError):
            self.machines.revive_agents()
        statuses = self.machines.statuses()
        local = local_engine_answers() if sys.platform.startswith("linux") else None
        hypervisor = True
        if not statuses:  # the first run needs one: say what to install when there is none
            from ui.machines.no_hypervisor import any_usable, service_probe

            hypervisor = any_usable(service_probe(self.machines)())
        return statuses, local, hypervisor

    def _surveyed(self, found: tuple[list[Any], str | None, bool]) -> None:
        from toolbox.machine.model import MachineState

        statuses, self.local_engine, hypervisor = found
        names = [s.name for s in statuses]
        remembered = settings.remembered_engine()
        if remembered.startswith("machine:") and remembered[8:] in names:
            target = remembered[8:]
        elif remembered == "local" and self.local_engine:
            self.use_local()
            return
        elif remembered.startswith("context:"):
            self.use_config_spec(None, remembered[8:], remember=False)
            return
        elif DEFAULT_MACHINE in names:
            target = DEFAULT_MACHINE
        elif names:
            target = names[0]
        else:
            self.show_first_run(hypervisor)
            return
        status = next(s for s in statuses if s.name == target)
        if status.state is MachineState.RUNNING:
            self.use_machine(target, remember=False)
        elif status.state is MachineState.STOPPED and settings.Preferences.load().start_on_launch:
            self.start_machine(target)
        else:
            self._show_machine_placeholder(target, status.state.value, status.detail)

    def show_first_run(self, hypervisor: bool = True) -> None:
        """No machine yet: the Machines page with its guided create, or with what to install
        when no hypervisor is usable (``hypervisor`` False)."""
        detail = "Create your Docker machine on the Machines page: it takes a few minutes."
        placeholder = ("No Docker machine yet", detail, "Create a machine…", "machines")
        if not hypervisor:
            detail = "Install QEMU or VirtualBox: the Machines page says how, for this computer."
            placeholder = ("No hypervisor installed", detail, "What to install…", "machines")
        if self.local_engine:  # Linux with a working local engine: offer it as well
            detail += f" A local Docker engine answers at {self.local_engine}: use it meanwhile?"
            placeholder = ("No Docker machine yet", detail, "Use the local engine", "local")
        self.window.set_session(None, "no machine", placeholder)
        self.window.select_page("machines")

    # -- machines -------------------------------------------------------------------------

    def use_machine(self, name: str, remember: bool = True) -> None:
        """Show the running machine ``name``'s engine."""
        self.choice = f"machine:{name}"
        if remember:
            settings.remember_engine(self.choice)
        self.tasks.run(
            lambda: machine_config(self.machines, name),
            lambda config: self._attach(config, f"machine:{name}"),
            self._config_failed,
            key=f"machine:{name}",
            what=f"Connect to machine {name}",
        )

    def start_machine(self, name: str, on_done: Callable[[], None] | None = None) -> None:
        """Start ``name`` on its queue, showing progress in the status area; then show its
        engine (when it is the one chosen, or nothing else is shown)."""
        if name in self.starting:
            return
        self.starting.add(name)
        self.machine_busy.emit(name, "starting")
        self._show_machine_placeholder(name, "Starting", None)
        report = on_gui(lambda p: self._progress(name, p), coalesce=True)

        def done(_result: object) -> None:
            self.starting.discard(name)
            self.machine_busy.emit(name, "")
            self.machines_changed.emit()
            self.window.set_status(f"Machine {name} is running")
            if self.session is None or self.choice == f"machine:{name}":
                self.use_machine(name, remember=False)
            if on_done is not None:
                on_done()

        def failed(error: ToolboxError) -> None:
            self.starting.discard(name)
            self.machine_busy.emit(name, "")
            self.machines_changed.emit()
            self.window.set_status(f"Machine {name} did not start: {error.message}")
            self._show_machine_placeholder(name, "Error", error.message, error.hint)

        self.tasks.run(
            lambda: self.machines.start(name, progress=report),
            done,
            failed,
            key=f"machine:{name}",
            what=f"Start machine {name}",
            cancel=threading.Event(),
        )

    def stop_machine(self, name: str) -> None:
        self.machine_busy.emit(name, "stopping")
        if self.choice == f"machine:{name}":
            self.machine_stopped(name)

        def done(_result: object) -> None:
            self.machine_busy.emit(name, "")
            self.machines_changed.emit()
            self.machine_stopped(name)

        def failed(error: ToolboxError) -> None:
            self.machine_busy.emit(name, "")
            self.machines_changed.emit()
            self.window.set_status(f"Stopping {name} failed: {error.message}")

        self.tasks.run(
            lambda: self.machines.stop(name),
            done,
            failed,
            key=f"machine:{name}",
            what=f"Stop machine {name}",
        )

    def machine_started(self, name: str) -> None:
        """A machine came up (the Machines page started or created it)."""
        self.machines_changed.emit()
        if self.session is None or self.choice in ("", f"machine:{name}"):
            self.use_machine(name)

    def machine_stopped(self, name: str) -> None:
        """A machine went down: its engine pages show the "stopped, Start" placeholder."""
        self.machines_changed.emit()
        if self.choice == f"machine:{name}":
            self._set_session(None)
            self._show_machine_placeholder(name, "Stopped", None)

    def _progress(self, name: str, report: Progress) -> None:
        text = report.message
        if report.fraction is not None and not report.done:
            text = f"{text} ({int(report.fraction * 100)}%)"
        self.window.set_status(f"Machine {name}: {text}")

    def _show_machine_placeholder(
        self, name: str, state: str, detail: str | None, hint: str | None = None
    ) -> None:
        if self.session is not None and self.choice != f"machine:{name}":
            return
        self.choice = f"machine:{name}"
        self._set_session(None)
        if state == "Starting":
            placeholder = (
                f"Starting machine {name}…",
                "The containers appear as soon as its engine answers.",
                "",
                "",
            )
        elif state == "Error":
            text = " ".join(x for x in (detail, hint) if x)
            placeholder = (f"Machine {name} has a problem", text, "Machines…", "machines")
        else:
            placeholder = (f"Machine {name} is {state.lower()}", detail or "", "Start", "start")
        self.window.set_session(None, f"machine {name}", placeholder)

    def _placeholder_action(self, action: str) -> None:
        if action == "start" and self.choice.startswith("machine:"):
            self.start_machine(self.choice[8:])
        elif action == "machines":
            self.window.select_page("machines")
        elif action == "local" and self.local_engine:
            self.use_local()
        elif action == "retry":
            self.launch()

    # -- other engines --------------------------------------------------------------------

    def use_local(self) -> None:
        self.choice = "local"
        settings.remember_engine("local")
        self.use_config_spec(self.local_engine, None, remember=False)

    def use_config_spec(
        self, engine: str | None, context: str | None, remember: bool = True
    ) -> None:
        """An engine by URL or Docker CLI context (resolved on a worker)."""
        choice = f"context:{context}" if context else (f"url:{engine}" if engine else "")
        if choice:
            self.choice = choice
        if remember and context:
            settings.remember_engine(choice)
        self.tasks.run(
            lambda: engine_config(engine, context),
            lambda config: self._attach(config, choice),
            self._config_failed,
            what="Find the Docker engine",
        )

    def _config_failed(self, error: ToolboxError) -> None:
        self.window.show_engine_problem(error.message, error.hint)
        if not self._retry_hooked:  # Retry resolves the settings again (a fixed context file)
            self._retry_hooked = True
            self.window.banner.retry_requested.connect(self.launch)

    # -- the session ----------------------------------------------------------------------

    def _attach(self, config: EngineConfig, choice: str) -> None:
        from ui.session import EngineSession

        if choice and self.choice and choice != self.choice:
            return  # the user picked another engine meanwhile
        session = EngineSession(config, self.tasks, parent=self.window)
        self._set_session(session)
        self.window.set_session(session)
        session.start()
        restored, self.window.restored_page = self.window.restored_page, ""
        if self.window.sidebar.currentRow() < 0 or (
            self.window.page_key() == "machines" and restored != "machines"
        ):
            self.window.select_page("containers")

    def _set_session(self, session: EngineSession | None) -> None:
        old = self.session
        if old is session:
            return
        self.session = session
        if old is not None:
            self.window.set_session(None, "", ("Switching engines…", "", "", ""))
            old.close()
        self.session_changed.emit(session)

    def shutdown(self) -> None:
        if self.session is not None:
            self.session.close()
        self.tasks.shutdown(3000)
