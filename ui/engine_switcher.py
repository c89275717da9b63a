"""The engine switcher in the status bar: which engine the window shows, and the others.

The menu lists each machine (with its state), the local engine when one answers, and the
Docker CLI's current context. It is filled on a worker when it opens (listing machines and
probing the local engine must not block the GUI thread); choosing an entry switches the
shell's session and is remembered for the next launch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from PySide6.QtWidgets import QMenu, QToolButton, QWidget

if TYPE_CHECKING:
    from ui.shell import Shell


@dataclass(frozen=True)
class EngineChoice:
    """One menu entry: ``key`` is what the shell remembers (``machine:NAME``, ``local``,
    ``context:NAME``)."""

    key: str
    label: str


def survey(shell: Shell) -> list[EngineChoice]:
    """Every engine the user can switch to (runs on a worker)."""
    from ui.shell import local_engine_answers

    out = [
        EngineChoice(f"machine:{s.name}", f"Machine {s.name} ({s.state.value})")
        for s in shell.machines.statuses()
    ]
    local = local_engine_answers()
    if local:
        out.append(EngineChoice("local", f"Local engine ({local})"))
    context = current_context()
    if context and not context.startswith("toolbox-") and context != "default":
        out.append(EngineChoice(f"context:{context}", f"Docker CLI context {context}"))
    return out


def current_context() -> str | None:
    """The Docker CLI's ``currentContext`` from its config.json, if set."""
    import json

    from toolbox.engine.connect import docker_config_dir

    try:
        raw = json.loads((docker_config_dir() / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = raw.get("currentContext") if isinstance(raw, dict) else None
    return str(value) if value else None


class EngineSwitcher(QToolButton):
    """A status-bar button showing the current engine, with the choices in its menu."""

    def __init__(self, shell: Shell, parent: QWidget | None = None):
        super().__init__(parent)
        self.shell = shell
        self.setObjectName("engineSwitcher")
        self.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.setAutoRaise(True)
        self.menu_ = QMenu(self)
        self.menu_.aboutToShow.connect(self.refresh)
        self.setMenu(self.menu_)
        self.choices: list[EngineChoice] = []
        self.setText("Engine ▾")
        self.setToolTip("Switch the Docker engine this window shows")
        shell.session_changed.connect(lambda _s: self._label())

    def _label(self) -> None:
        choice = self.shell.choice
        text = choice.split(":", 1)[1] if ":" in choice else (choice or "no engine")
        self.setText(f"Engine: {text} ▾")

    def refresh(self) -> None:
        """Fill the menu (a placeholder row until the worker answers)."""
        if not self.choices:
            self.menu_.clear()
            self.menu_.addAction("Looking for engines…").setEnabled(False)
        self.shell.tasks.run(
            lambda: survey(self.shell),
            self._fill,
            lambda _error: None,
            owner=self,
            what="List engines",
        )

    def _fill(self, choices: list[EngineChoice]) -> None:
        self.choices = choices
        self.menu_.clear()
        if not choices:
            self.menu_.addAction("No engine found").setEnabled(False)
        for choice in choices:
            action = self.menu_.addAction(choice.label)
            action.setCheckable(True)
            action.setChecked(choice.key == self.shell.choice)
            action.triggered.connect(lambda _c=False, key=choice.key: self.choose(key))

    def choose(self, key: str) -> None:
        """Switch to ``key`` and remember it."""
        from ui import settings

        settings.remember_engine(key)
        if key.startswith("machine:"):
            name = key.split(":", 1)[1]
            status = next((c for c in self.choices if c.key == key), None)
            if status is not None and "(Running)" not in status.label:
                self.shell.choice = key
                self.shell.start_machine(name)
            else:
                self.shell.use_machine(name)
        elif key == "local":
            self.shell.local_engine = self.shell.local_engine or _local_url(self.choices)
            self.shell.use_local()
        elif key.startswith("context:"):
            self.shell.use_config_spec(None, key.split(":", 1)[1])
        self._label()


def _local_url(choices: list[EngineChoice]) -> str | None:
    for choice in choices:
        if choice.key == "local":
            return choice.label.split("(", 1)[1].rstrip(")")
    return None
