"""The host agent's files and how other processes see and control it.

Per machine, in the machine's folder: ``agent.lock`` (held by the running agent for its whole
life, so the OS releases it when the agent dies, even by ``kill -9``) and ``agent.json`` (what
it last did: pid, heartbeat, every forward and share with its state). The log is
``logs/machines/NAME/agent.log`` beside the console log.

``agent.json`` is only a report: a new agent never reads it, it rebuilds its state from the
engine and the hypervisor.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import filelock

from toolbox import paths

LOCK_FILE = "agent.lock"
STATE_FILE = "agent.json"
LOG_FILE = "agent.log"
HEARTBEAT_SECONDS = 5.0
STALE_AFTER = 20.0  # no heartbeat for this long: the agent is stuck


class ForwardState(Enum):
    ACTIVE = "active"  # the host port answers
    CONFLICT = "conflict"  # the host port is taken by something else (retried)
    REFUSED = "refused"  # the host refused the port (privileged) (retried)
    SKIPPED = "skipped"  # cannot be forwarded at all (explained)


class ShareState(Enum):
    MOUNTED = "mounted"
    MOUNTING = "mounting"
    ERROR = "error"  # (retried)


@dataclass(frozen=True)
class ForwardReport:
    protocol: str
    host_ip: str
    host_port: int
    guest_port: int
    via: str  # nat, ssh, or "" for one that is skipped
    state: str
    containers: tuple[str, ...] = ()
    reason: str = ""
    since: str = ""  # when it reached this state (ISO 8601, host clock)

    def address(self) -> str:
        return f"{self.host_ip}:{self.host_port}"


@dataclass(frozen=True)
class ShareReport:
    host_path: str
    guest_path: str
    readonly: bool
    state: str
    reason: str = ""


@dataclass(frozen=True)
class AgentReport:
    """The content of ``agent.json``."""

    pid: int
    started: str
    heartbeat: str
    engine: str  # connected / unreachable: why
    forwards: tuple[ForwardReport, ...] = ()
    shares: tuple[ShareReport, ...] = ()
    warnings: tuple[str, ...] = ()

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_raw(cls, raw: dict[str, Any]) -> AgentReport:
        return cls(
            pid=int(raw["pid"]),
            started=str(raw["started"]),
            heartbeat=str(raw["heartbeat"]),
            engine=str(raw.get("engine", "")),
            forwards=tuple(
                ForwardReport(**{**f, "containers": tuple(f.get("containers", ()))})
                for f in raw.get("forwards", ())
            ),
            shares=tuple(ShareReport(**s) for s in raw.get("shares", ())),
            warnings=tuple(str(w) for w in raw.get("warnings", ())),
        )


class Health(Enum):
    RUNNING = "running"
    STALLED = "stalled"  # holds the lock but has not written a heartbeat for a while
    NOT_RUNNING = "not running"


@dataclass(frozen=True)
class AgentStatus:
    health: Health
    report: AgentReport | None = None
    log: Path = field(default_factory=Path)

    def summary(self) -> str:
        if self.health is not Health.RUNNING or self.report is None:
            return self.health.value
        conflicts = sum(1 for f in self.report.forwards if f.state != ForwardState.ACTIVE.value)
        text = f"running (pid {self.report.pid})"
        if conflicts:
            text += f", {conflicts} forward{'s' if conflicts > 1 else ''} not active"
        return text


def machine_dir(name: str) -> Path:
    return paths.machines_dir() / name


def lock_path(name: str) -> Path:
    return machine_dir(name) / LOCK_FILE


def state_path(name: str) -> Path:
    return machine_dir(name) / STATE_FILE


def log_path(name: str) -> Path:
    return paths.log_dir() / "machines" / name / LOG_FILE


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def is_running(name: str) -> bool:
    """True while an agent process holds the machine's agent lock."""
    path = lock_path(name)
    if not path.parent.is_dir():
        return False
    probe = filelock.FileLock(str(path))
    try:
        probe.acquire(timeout=0)
    except filelock.Timeout:
        return True
    except OSError:
        return False
    probe.release()
    return False


def read_report(name: str) -> AgentReport | None:
    try:
        raw = json.loads(state_path(name).read_text(encoding="utf-8"))
        return AgentReport.from_raw(raw)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def status(name: str) -> AgentStatus:
    log = log_path(name)
    if not is_running(name):
        return AgentStatus(Health.NOT_RUNNING, None, log)
    report = read_report(name)
    if report is None:
        return AgentStatus(Health.RUNNING, None, log)
    try:
        beat = dt.datetime.fromisoformat(report.heartbeat)
        age = (dt.datetime.now(dt.UTC) - beat).total_seconds()
    except ValueError:
        age = STALE_AFTER + 1
    health = Health.RUNNING if age <= STALE_AFTER else Health.STALLED
    return AgentStatus(health, report, log)


def write_report(name: str, report: AgentReport) -> bool:
    """Replace ``agent.json`` (atomically, no fsync: it is a report, rewritten every few
    seconds). Returns False, writing nothing, when the machine's folder is gone."""
    path = state_path(name)
    if not path.parent.is_dir():
        return False
    tmp = path.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
    try:
        tmp.write_text(report.to_json(), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        return False
    return True


# -- control from other processes ---------------------------------------------------------------


def agent_argv(name: str) -> list[str]:
    """How to start the agent: this Python (or this frozen bundle) running ``toolbox agent``."""
    if getattr(sys, "frozen", False):
        # The bundle holds two executables side by side: the app and toolbox-cli.
        cli = Path(sys.executable).with_name("toolbox-cli" + (".exe" if os.name == "nt" else ""))
        return [str(cli), "agent", "run", name]
    return [sys.executable, "-m", "toolbox", "agent", "run", name]


def spawn(name: str) -> int | None:
    """Start a detached agent for ``name`` unless one runs; returns its pid. The agent takes
    its lock itself, so two racing spawns leave one agent."""
    if is_running(name) or not machine_dir(name).is_dir():
        return None
    log = log_path(name)
    log.parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {}
    if os.name == "nt":  # pragma: no cover - Windows
        kwargs["creationflags"] = (
            subprocess.DETACHED_PROCESS  # type: ignore[attr-defined]
            | subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
            | subprocess.CREATE_NO_WINDOW  # type: ignore[attr-defined]
        )
    else:
        kwargs["start_new_session"] = True
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            agent_argv(name),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            close_fds=True,
            **kwargs,
        )
    return proc.pid


def wait_running(name: str, timeout: float = 10.0) -> AgentStatus:
    """Wait until the agent has written its first report (or ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = status(name)
        if current.health is Health.RUNNING and current.report is not None:
            return current
        time.sleep(0.1)
    return status(name)


def stop(name: str, timeout: float = 5.0) -> bool:
    """Ask a running agent to end (SIGTERM, or terminate on Windows) and wait for its lock
    to be released; True when no agent runs any more."""
    if not is_running(name):
        return True
    report = read_report(name)
    if report is not None:
        with contextlib.suppress(OSError):
            os.kill(report.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_running(name):
            return True
        time.sleep(0.05)
    if report is not None and hasattr(signal, "SIGKILL"):
        with contextlib.suppress(OSError):
            os.kill(report.pid, signal.SIGKILL)
        time.sleep(0.2)
    return not is_running(name)
