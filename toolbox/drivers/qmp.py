"""A small QMP (QEMU Machine Protocol) client: JSON lines over a unix socket, or over TCP on
127.0.0.1 where QEMU has no unix sockets (Windows).

Only what the QEMU driver needs: the ``qmp_capabilities`` handshake, commands with an id,
asynchronous events skipped (and kept, so a caller can wait for one), HMP passthrough for
``hostfwd_add``/``hostfwd_remove``.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolbox.errors import DriverError


class QMPError(DriverError):
    """QEMU's monitor refused a command or could not be reached."""


class QMPClosed(QMPError):
    """QEMU closed (or dropped) its monitor connection: the process is exiting or gone."""


@dataclass(frozen=True)
class QMPAddress:
    """Where a QEMU listens for QMP: a unix socket path, or a TCP port on 127.0.0.1."""

    path: Path | None = None
    port: int | None = None
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        if (self.path is None) == (self.port is None):
            raise ValueError("QMPAddress takes either a path or a port")

    def qemu_option(self) -> str:
        """The ``-qmp`` value for QEMU's command line."""
        if self.path is not None:
            return f"unix:{escape_option(str(self.path))},server=on,wait=off"
        return f"tcp:{self.host}:{self.port},server=on,wait=off"


def escape_option(value: str) -> str:
    """QEMU splits option values on commas; a literal comma is written twice."""
    return value.replace(",", ",,")


@dataclass(frozen=True)
class QMPEvent:
    name: str
    data: dict[str, Any]


class QMPClient:
    """One QMP session. Use as a context manager; every wait is bounded by ``timeout``."""

    def __init__(self, address: QMPAddress, timeout: float = 10.0):
        self.address = address
        self.timeout = timeout
        self.events: list[QMPEvent] = []
        self.greeting: dict[str, Any] = {}
        self._sock: socket.socket | None = None
        self._buf = b""
        self._next_id = 0

    def __enter__(self) -> QMPClient:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> None:
        """Connect, read the greeting and leave capabilities negotiation mode."""
        try:
            if self.address.path is not None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(self.timeout)
                sock.connect(str(self.address.path))
            else:
                sock = socket.create_connection(
                    (self.address.host, int(self.address.port or 0)), timeout=self.timeout
                )
        except OSError as exc:
            raise QMPError(
                f"Cannot reach QEMU's monitor at {self._where()}: {exc}",
                hint="The QEMU process is probably not running; check the machine's state.",
            ) from exc
        self._sock = sock
        try:
            greeting = self._read_message(time.monotonic() + self.timeout)
            if "QMP" not in greeting:
                raise QMPError(
                    f"Unexpected greeting from {self._where()}: {greeting!r}",
                    hint="Something other than QEMU's QMP listens there.",
                )
            self.greeting = greeting
            self.execute("qmp_capabilities")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def execute(
        self, command: str, arguments: dict[str, Any] | None = None, timeout: float | None = None
    ) -> Any:
        """Run one command and return its ``return`` value; an ``error`` raises QMPError."""
        if self._sock is None:
            raise QMPError("QMP client is not connected", hint="This is a bug in Toolbox.")
        self._next_id += 1
        msg_id = f"tbx-{self._next_id}"
        message: dict[str, Any] = {"execute": command, "id": msg_id}
        if arguments:
            message["arguments"] = arguments
        try:
            self._sock.sendall(json.dumps(message).encode() + b"\n")
        except OSError as exc:
            raise QMPClosed(
                f"QEMU's monitor closed the connection during {command}: {exc}",
                hint="The QEMU process probably exited; check the machine's console log.",
            ) from exc
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while True:
            reply = self._read_message(deadline)
            if "event" in reply:
                self.events.append(QMPEvent(reply["event"], reply.get("data", {})))
                continue
            if reply.get("id") not in (msg_id, None):
                continue
            if "error" in reply:
                err = reply["error"]
                raise QMPError(
                    f"QEMU refused {command}: {err.get('desc', err)}",
                    hint="See the QEMU log in the machine folder for details.",
                )
            if "return" in reply:
                return reply["return"]

    def quit(self) -> None:
        """Make QEMU exit at once. It may close the socket before its reply arrives; that
        counts as done."""
        with contextlib.suppress(QMPClosed):
            self.execute("quit")

    def hmp(self, command_line: str, timeout: float | None = None) -> str:
        """Run a human-monitor command; returns its text output (errors come back as text)."""
        out = self.execute("human-monitor-command", {"command-line": command_line}, timeout=timeout)
        return str(out or "")

    def wait_event(self, name: str, timeout: float) -> QMPEvent | None:
        """Wait for an event (or find one already received); None when ``timeout`` passes or
        QEMU closes the connection first."""
        for ev in self.events:
            if ev.name == name:
                return ev
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = self._read_message(deadline)
            except QMPError:
                return None
            if "event" in msg:
                ev = QMPEvent(msg["event"], msg.get("data", {}))
                self.events.append(ev)
                if ev.name == name:
                    return ev
        return None

    def _where(self) -> str:
        if self.address.path is not None:
            return str(self.address.path)
        return f"{self.address.host}:{self.address.port}"

    def _read_message(self, deadline: float) -> dict[str, Any]:
        assert self._sock is not None
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise QMPError(
                    f"QEMU's monitor at {self._where()} did not answer in time",
                    hint="QEMU may be hung; `toolbox kill` powers the machine off.",
                )
            self._sock.settimeout(remaining)
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError as exc:
                raise QMPClosed(
                    f"Lost the connection to QEMU's monitor: {exc}",
                    hint="The QEMU process probably exited; check the console log.",
                ) from exc
            if not chunk:
                raise QMPClosed(
                    "QEMU closed its monitor connection",
                    hint="The QEMU process exited; check the machine's console log.",
                )
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        try:
            value = json.loads(line)
        except ValueError as exc:
            raise QMPError(
                f"QEMU's monitor sent something that is not JSON: {line[:200]!r}",
                hint="Something other than QEMU's QMP listens there.",
            ) from exc
        if not isinstance(value, dict):
            raise QMPError(f"Unexpected QMP message: {value!r}", hint="This is a bug.")
        return value
