"""What ``toolbox env`` prints: the ``DOCKER_*`` variables in each shell's syntax, plus the
line that tells the user how to apply them, like ``docker-machine env`` did.

Pure text building; shell detection takes the environment and a parent-process lookup as
arguments so every branch is testable on any host.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from toolbox.errors import UsageError

VAR_TLS_VERIFY = "DOCKER_TLS_VERIFY"
VAR_HOST = "DOCKER_HOST"
VAR_CERT_PATH = "DOCKER_CERT_PATH"
VAR_MACHINE = "DOCKER_MACHINE_NAME"
ALL_VARS = (VAR_TLS_VERIFY, VAR_HOST, VAR_CERT_PATH, VAR_MACHINE)


class Shell(Enum):
    BASH = "bash"
    ZSH = "zsh"
    FISH = "fish"
    POWERSHELL = "powershell"
    CMD = "cmd"

    @classmethod
    def parse(cls, text: str) -> Shell:
        key = text.strip().lower()
        key = _ALIASES.get(key, key)
        try:
            return cls(key)
        except ValueError:
            choices = ", ".join(s.value for s in cls)
            raise UsageError(f"Unknown shell: {text!r}", hint=f"Use one of: {choices}.") from None


_ALIASES = {
    "sh": "bash",
    "dash": "bash",
    "ksh": "bash",
    "ash": "bash",
    "pwsh": "powershell",
    "powershell.exe": "powershell",
    "pwsh.exe": "powershell",
    "cmd.exe": "cmd",
}


@dataclass(frozen=True)
class EngineEnv:
    """The settings that point a Docker client at a machine's engine."""

    machine: str
    host: str  # tcp://127.0.0.1:PORT
    cert_path: Path
    tls_verify: bool = True

    def variables(self) -> list[tuple[str, str]]:
        out = []
        if self.tls_verify:
            out.append((VAR_TLS_VERIFY, "1"))
        out += [
            (VAR_HOST, self.host),
            (VAR_CERT_PATH, str(self.cert_path)),
            (VAR_MACHINE, self.machine),
        ]
        return out

    def as_environ(self) -> dict[str, str]:
        return dict(self.variables())


def _posix_quote(value: str) -> str:
    escaped = "".join("\\" + c if c in '\\"$`' else c for c in value)
    return f'"{escaped}"'


def _fish_quote(value: str) -> str:
    escaped = "".join("\\" + c if c in '\\"$' else c for c in value)
    return f'"{escaped}"'


def _ps_quote(value: str) -> str:
    escaped = "".join("`" + c if c in '`"$' else c for c in value)
    return f'"{escaped}"'


def _cmd_escape(value: str) -> str:
    return "".join("^" + c if c in "^&|<>" else c for c in value)


def _command(program: str, machine: str | None, shell: Shell | None, unset: bool) -> str:
    parts = [program, "env"]
    if shell is not None:
        parts += ["--shell", shell.value]
    if unset:
        parts.append("-u")
    elif machine:
        parts.append(machine)
    return " ".join(parts)


def set_lines(shell: Shell, variables: Sequence[tuple[str, str]]) -> list[str]:
    """One assignment per variable, in ``shell``'s syntax."""
    if shell in (Shell.BASH, Shell.ZSH):
        return [f"export {k}={_posix_quote(v)}" for k, v in variables]
    if shell is Shell.FISH:
        return [f"set -gx {k} {_fish_quote(v)};" for k, v in variables]
    if shell is Shell.POWERSHELL:
        return [f"$Env:{k} = {_ps_quote(v)}" for k, v in variables]
    return [f"SET {k}={_cmd_escape(v)}" for k, v in variables]


def unset_lines(shell: Shell, names: Sequence[str]) -> list[str]:
    """One removal per variable, in ``shell``'s syntax."""
    if shell in (Shell.BASH, Shell.ZSH):
        return [f"unset {k}" for k in names]
    if shell is Shell.FISH:
        return [f"set -e {k};" for k in names]
    if shell is Shell.POWERSHELL:
        return [f"Remove-Item Env:\\{k}" for k in names]
    return [f"SET {k}=" for k in names]


def hint_lines(shell: Shell, command: str) -> list[str]:
    """The comment that says how to apply the output in ``shell``."""
    if shell in (Shell.BASH, Shell.ZSH):
        return ["# Run this command to configure your shell:", f"# eval $({command})"]
    if shell is Shell.FISH:
        return ["# Run this command to configure your shell:", f"# {command} | source"]
    if shell is Shell.POWERSHELL:
        return [
            "# Run this command to configure your shell:",
            f"# & {command} | Invoke-Expression",
        ]
    return [
        "REM Run this command to configure your shell:",
        f"REM     @FOR /f \"tokens=*\" %i IN ('{command}') DO @%i",
    ]


def render(
    shell: Shell,
    env: EngineEnv | None,
    *,
    unset: bool = False,
    program: str = "toolbox",
    shell_given: bool = False,
) -> str:
    """The full text ``toolbox env`` prints (with a trailing newline)."""
    command = _command(program, env.machine if env else None, shell if shell_given else None, unset)
    if unset:
        lines = unset_lines(shell, ALL_VARS)
    else:
        if env is None:
            raise ValueError("render() needs an EngineEnv unless unset=True")
        lines = set_lines(shell, env.variables())
    lines += hint_lines(shell, command)
    return "\n".join(lines) + "\n"


def parse_exports(text: str) -> dict[str, str]:
    """Read back the ``export K="V"`` lines of the bash/zsh output, as ``eval`` would (only
    the escapes ``render`` writes), for tests and scripts that cannot run a shell."""
    out = {}
    for line in text.splitlines():
        if not line.startswith("export "):
            continue
        key, _, quoted = line[len("export ") :].partition("=")
        if len(quoted) < 2 or quoted[0] != '"' or quoted[-1] != '"':
            raise ValueError(f"not a quoted export: {line!r}")
        body, value, i = quoted[1:-1], [], 0
        while i < len(body):
            if body[i] == "\\" and i + 1 < len(body):
                i += 1
            value.append(body[i])
            i += 1
        out[key] = "".join(value)
    return out


ParentLookup = Callable[[], str | None]


def detect_shell(
    environ: Mapping[str, str] | None = None,
    platform: str | None = None,
    parent_name: ParentLookup | None = None,
) -> Shell:
    """Guess the user's shell: ``$SHELL`` on macOS/Linux; on Windows the parent process
    (cmd.exe or powershell.exe/pwsh.exe), then ``$SHELL`` (Git Bash, MSYS), then PowerShell."""
    environ = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    if platform.startswith("win"):
        lookup = parent_name or _windows_parent_name
        name = (lookup() or "").lower()
        base = name.rsplit("\\", 1)[-1]
        if base in ("cmd.exe", "cmd"):
            return Shell.CMD
        if base in ("powershell.exe", "pwsh.exe", "powershell", "pwsh"):
            return Shell.POWERSHELL
        shell_var = environ.get("SHELL", "")
        if shell_var:
            return _from_shell_var(shell_var)
        return Shell.POWERSHELL
    return _from_shell_var(environ.get("SHELL", ""))


def _from_shell_var(value: str) -> Shell:
    base = value.replace("\\", "/").rsplit("/", 1)[-1].lower()
    if base.endswith(".exe"):
        base = base[:-4]
    if base == "zsh":
        return Shell.ZSH
    if base == "fish":
        return Shell.FISH
    if base in ("pwsh", "powershell"):
        return Shell.POWERSHELL
    return Shell.BASH


def _windows_parent_name() -> str | None:  # pragma: no cover - Windows only
    """The executable name of this process's parent (the shell that ran ``toolbox``),
    found with the Toolhelp snapshot API. ``python.exe`` launchers are skipped."""
    import ctypes
    from ctypes import wintypes

    class PROCESSENTRY32W(ctypes.Structure):
        _fields_ = [
            ("dwSize", wintypes.DWORD),
            ("cntUsage", wintypes.DWORD),
            ("th32ProcessID", wintypes.DWORD),
            ("th32DefaultHeapID", ctypes.c_void_p),
            ("th32ModuleID", wintypes.DWORD),
            ("cntThreads", wintypes.DWORD),
            ("th32ParentProcessID", wintypes.DWORD),
            ("pcPriClassBase", ctypes.c_long),
            ("dwFlags", wintypes.DWORD),
            ("szExeFile", wintypes.WCHAR * 260),
        ]

    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined,unused-ignore]
    snapshot = kernel32.CreateToolhelp32Snapshot(0x2, 0)
    if snapshot == -1:
        return None
    try:
        table: dict[int, tuple[int, str]] = {}
        entry = PROCESSENTRY32W()
        entry.dwSize = ctypes.sizeof(PROCESSENTRY32W)
        ok = kernel32.Process32FirstW(snapshot, ctypes.byref(entry))
        while ok:
            table[entry.th32ProcessID] = (entry.th32ParentProcessID, entry.szExeFile)
            ok = kernel32.Process32NextW(snapshot, ctypes.byref(entry))
    finally:
        kernel32.CloseHandle(snapshot)
    pid = os.getpid()
    for _ in range(8):
        parent = table.get(pid)
        if parent is None:
            return None
        pid = parent[0]
        name = table.get(pid, (0, ""))[1]
        if name and not name.lower().startswith(("python", "py.exe", "toolbox")):
            return name
    return None


def eval_line(shell: Shell, machine: str, program: str = "toolbox") -> str:
    """The one line a user pastes into ``shell`` to point it at ``machine``'s engine."""
    if shell is Shell.FISH:
        return f"{program} env --shell fish {machine} | source"
    if shell is Shell.POWERSHELL:
        return f"{program} env --shell powershell {machine} | Invoke-Expression"
    if shell is Shell.CMD:
        return f"@FOR /f \"tokens=*\" %i IN ('{program} env --shell cmd {machine}') DO @%i"
    return f'eval "$({program} env --shell {shell.value} {machine})"'
