"""Running external commands: argv lists only, typed results, an injectable runner.

Drivers take a ``Runner`` so tests can swap in one that replays recorded output.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from toolbox.errors import CommandError


@dataclass(frozen=True)
class CommandResult:
    """What a finished command returned."""

    argv: tuple[str, ...]
    exit_code: int
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def check(self, hint: str | None = None) -> CommandResult:
        """Return self, or raise CommandError when the command failed."""
        if self.exit_code != 0:
            raise CommandError(self.argv, self.exit_code, self.stdout, self.stderr, hint=hint)
        return self


class Runner(Protocol):
    """Runs one command to completion. Never raises for a non-zero exit; raises
    CommandError only when the command cannot be started or times out."""

    def __call__(
        self,
        argv: Sequence[str],
        *,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        input: str | None = None,
    ) -> CommandResult: ...


@dataclass
class SubprocessRunner:
    """The real runner: ``subprocess.run`` with an argv list, never a shell."""

    extra_env: dict[str, str] = field(default_factory=dict)

    def __call__(
        self,
        argv: Sequence[str],
        *,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        input: str | None = None,
    ) -> CommandResult:
        full_env = None
        if env is not None or self.extra_env:
            full_env = dict(os.environ)
            full_env.update(self.extra_env)
            full_env.update(env or {})
        argv = [str(a) for a in argv]
        try:
            proc = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                encoding="utf-8",
                errors="replace",
                timeout=timeout,
                env=full_env,
                input=input,
                stdin=None if input is not None else subprocess.DEVNULL,
                creationflags=_no_window_flags(),
            )
        except FileNotFoundError as exc:
            raise CommandError(
                argv, 127, stderr=str(exc), message=f"Program not found: {argv[0]}"
            ) from exc
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else ""
            err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
            raise CommandError(
                argv, None, out, err, message=f"Command timed out after {timeout:g} s"
            ) from exc
        return CommandResult(tuple(argv), proc.returncode, proc.stdout, proc.stderr)


def _no_window_flags() -> int:
    """On Windows, keep console programs from flashing a window over the GUI."""
    return int(getattr(subprocess, "CREATE_NO_WINDOW", 0)) if os.name == "nt" else 0


def run(argv: Sequence[str], **kwargs: Any) -> CommandResult:
    """Run with the real runner."""
    return SubprocessRunner()(argv, **kwargs)
