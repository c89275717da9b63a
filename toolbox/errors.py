"""One exception root for everything the core raises, each carrying a one-line hint.

The GUI shows ``message``, ``hint`` and, on demand, ``details``; the CLI prints message and
hint and exits with ``exit_code``.
"""

from __future__ import annotations

from collections.abc import Sequence

# Distinct CLI exit codes, one per family of failure (documented in the README).
EXIT_GENERIC = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_ENGINE = 4
EXIT_MACHINE = 5
EXIT_DRIVER = 6
EXIT_SSH = 7
EXIT_PROVISION = 8
EXIT_IMAGE = 9
EXIT_COMMAND = 10
EXIT_INTERRUPTED = 130


class ToolboxError(Exception):
    """Base of every error the core raises on purpose.

    ``message`` says what failed, ``hint`` what to do about it, ``details`` carries long
    text (a command's output, a traceback of the cause) shown only on request.
    """

    exit_code = EXIT_GENERIC

    def __init__(self, message: str, hint: str | None = None, details: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details

    def __str__(self) -> str:
        return self.message


class Cancelled(ToolboxError):
    """The user cancelled an operation; nothing to report beyond that."""

    exit_code = EXIT_INTERRUPTED


class UsageError(ToolboxError):
    """Bad input from a form, a CLI argument or a file."""

    exit_code = EXIT_USAGE


class ValidationError(UsageError):
    """One field of user input is invalid; ``field`` names it so a form can show it beside it."""

    def __init__(self, field: str, message: str, hint: str | None = None):
        super().__init__(message, hint)
        self.field = field


class NotFoundError(ToolboxError):
    """A named thing (machine, image, container) does not exist."""

    exit_code = EXIT_NOT_FOUND


class EngineError(ToolboxError):
    """The Docker engine refused or failed a request."""

    exit_code = EXIT_ENGINE


class EngineUnreachable(EngineError):
    """The Docker engine could not be reached at all."""


class MachineError(ToolboxError):
    """A machine operation failed (store, state, lifecycle)."""

    exit_code = EXIT_MACHINE


class DriverError(ToolboxError):
    """A hypervisor refused or failed an operation."""

    exit_code = EXIT_DRIVER


class PortTaken(DriverError):
    """The host would not let the hypervisor bind a forward's port (taken, or privileged)."""


class SSHError(ToolboxError):
    """SSH to a guest failed."""

    exit_code = EXIT_SSH


class HostKeyMismatch(SSHError):
    """The guest presented an SSH host key other than the pinned one."""


class ProvisionError(ToolboxError):
    """A provisioning step failed its check, apply or verify."""

    exit_code = EXIT_PROVISION


class ImageError(ToolboxError):
    """A guest image could not be found, downloaded, verified or built."""

    exit_code = EXIT_IMAGE


def _tail(text: str, lines: int) -> str:
    rows = text.rstrip().splitlines()
    return "\n".join(rows[-lines:])


class CommandError(ToolboxError):
    """A command failed; ``str()`` shows the argv, the exit code and the tail of its output."""

    exit_code = EXIT_COMMAND
    tail_lines = 15

    def __init__(
        self,
        argv: Sequence[str],
        exit_code: int | None,
        stdout: str = "",
        stderr: str = "",
        hint: str | None = None,
        message: str | None = None,
    ):
        self.argv = list(argv)
        self.returncode = exit_code
        self.stdout = stdout
        self.stderr = stderr
        shown = " ".join(self.argv)
        code = "timed out" if exit_code is None else f"exit code {exit_code}"
        head = message or f"Command failed ({code}): {shown}"
        tail = _tail(stderr or stdout, self.tail_lines)
        super().__init__(head, hint, details=tail or None)
        self._code_text = code

    def __str__(self) -> str:
        tail = _tail(self.stderr or self.stdout, self.tail_lines)
        text = f"{self.message}\n  command: {' '.join(self.argv)}\n  {self._code_text}"
        if tail:
            text += "\n  output:\n" + "\n".join("    " + line for line in tail.splitlines())
        return text
