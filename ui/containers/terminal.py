"""Open a shell in a container in the user's own terminal.

``terminal_command(system, command, which)`` is a pure function: given the platform
(``platform.system()``), the ``docker exec -it ...`` argv (``EngineClient.exec_shell_argv``) and a
way to look programs up, it returns the exact argv that opens a terminal window running it, or
None when no terminal is found (the page then offers the embedded console). ``launch`` starts it
detached. Supported: macOS Terminal (``osascript``), Windows Terminal (``wt``), PowerShell,
``cmd``, and on Linux ``x-terminal-emulator``, ``gnome-terminal``, ``konsole`` and ``xterm``.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Which = Callable[[str], str | None]


@dataclass(frozen=True)
class TerminalCommand:
    """How to open the terminal: ``argv``, and whether Windows must give it a new console."""

    argv: tuple[str, ...]
    new_console: bool = False
    terminal: str = ""


def terminal_command(
    system: str, command: Sequence[str], which: Which, title: str = "Toolbox shell"
) -> TerminalCommand | None:
    """The argv that opens a terminal window running ``command`` on ``system``
    ("Darwin", "Windows", "Linux"); None when no known terminal is available."""
    if not command:
        raise ValueError("command is empty")
    if system == "Darwin":
        return _macos(command, which)
    if system == "Windows":
        return _windows(command, which, title)
    return _linux(command, which, title)


def _macos(command: Sequence[str], which: Which) -> TerminalCommand | None:
    osascript = which("osascript")
    if osascript is None:
        return None
    # Terminal.app runs the text in a fresh login shell, so it is one shell-quoted line; the
    # AppleScript string literal then needs its backslashes and quotes escaped.
    line = shlex.join(command)
    literal = line.replace("\\", "\\\\").replace('"', '\\"')
    return TerminalCommand(
        (
            osascript,
            "-e",
            'tell application "Terminal"',
            "-e",
            f'do script "{literal}"',
            "-e",
            "activate",
            "-e",
            "end tell",
        ),
        terminal="Terminal",
    )


def _windows(command: Sequence[str], which: Which, title: str) -> TerminalCommand | None:
    wt = which("wt.exe") or which("wt")
    if wt is not None:
        # wt treats a bare ";" as its own command separator; "\;" passes a literal one.
        args = [a.replace(";", "\\;") for a in command]
        return TerminalCommand((wt, "new-tab", "--title", title, *args), terminal="wt")
    powershell = which("pwsh.exe") or which("powershell.exe")
    if powershell is not None:
        script = "& " + " ".join(_ps_quote(a) for a in command)
        return TerminalCommand(
            (powershell, "-NoExit", "-NoProfile", "-Command", script),
            new_console=True,
            terminal="PowerShell",
        )
    cmd = which("cmd.exe")
    if cmd is not None:
        return TerminalCommand((cmd, "/k", *command), new_console=True, terminal="cmd")
    return None


def _ps_quote(arg: str) -> str:
    """A PowerShell single-quoted string (a quote inside is doubled)."""
    return "'" + arg.replace("'", "''") + "'"


def _linux(command: Sequence[str], which: Which, title: str) -> TerminalCommand | None:
    path = which("x-terminal-emulator")
    if path is not None:
        return TerminalCommand((path, "-e", *command), terminal="x-terminal-emulator")
    path = which("gnome-terminal")
    if path is not None:
        return TerminalCommand((path, "--title", title, "--", *command), terminal="gnome-terminal")
    path = which("konsole")
    if path is not None:
        return TerminalCommand(
            (path, "-p", f"tabtitle={title}", "-e", *command), terminal="konsole"
        )
    path = which("xterm")
    if path is not None:
        return TerminalCommand((path, "-T", title, "-e", *command), terminal="xterm")
    return None


def launch(cmd: TerminalCommand, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start the terminal detached from Toolbox (it outlives the app); ``env`` is added to
    ours (the DOCKER_* settings that reach this engine)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    kwargs: dict[str, Any] = {}
    if os.name == "nt":
        flags = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
        if cmd.new_console:
            flags |= getattr(subprocess, "CREATE_NEW_CONSOLE", 0)
        kwargs["creationflags"] = flags
    else:
        kwargs["start_new_session"] = True
    process: subprocess.Popen[bytes] = subprocess.Popen(
        list(cmd.argv),
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        **kwargs,
    )
    return process
