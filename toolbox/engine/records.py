"""Typed records for what the engine reports, built from the low-level API's JSON.

Each record has a ``from_api(...)`` classmethod taking one entry of the engine's JSON
(``client.api.containers()``, ``images()``, ``volumes()``, ``networks()``, ``events()``), so
list views never need an inspect per row. Records are frozen; the UI replaces them.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from types import MappingProxyType
from typing import Any

from toolbox.engine.parse import (
    EnvVar,
    ImageRef,
    PortSpec,
    RestartPolicy,
    VolumeSpec,
    human_duration,
    parse_human_duration,
)

__all__ = [
    "Container",
    "ContainerState",
    "EngineInfo",
    "EnvVar",
    "Event",
    "EventType",
    "Image",
    "ImageRef",
    "ImageRow",
    "LayerProgress",
    "LogLine",
    "MountPoint",
    "Network",
    "PortBinding",
    "PortSpec",
    "PruneResult",
    "PullProgress",
    "RestartPolicy",
    "RunSpec",
    "Volume",
    "VolumeSpec",
    "image_rows",
]

UTC = dt.UTC
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
_EMPTY: Mapping[str, str] = MappingProxyType({})


def frozen_map(value: Mapping[str, Any] | None) -> Mapping[str, str]:
    """A read-only copy of a JSON object of strings (None and null values become empty)."""
    if not value:
        return _EMPTY
    return MappingProxyType({str(k): "" if v is None else str(v) for k, v in value.items()})


def parse_timestamp(value: Any) -> dt.datetime | None:
    """The engine's times: epoch seconds (int) or RFC 3339 with nanoseconds; the zero time
    ``0001-01-01T00:00:00Z`` and empty values mean "never" (None)."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value, UTC) if value > 0 else None
    text = str(value)
    if text.startswith("0001-01-01"):
        return None
    if len(text) > 20 and text[19] == "." and text[-1] == "Z" and text[10] == "T":
        # The engine's own form (RFC 3339, nanoseconds, UTC), on every line of a log read
        # with timestamps: three times faster than the general path below.
        try:
            return dt.datetime.fromisoformat(f"{text[:-1][:26].ljust(26, '0')}+00:00")
        except ValueError:
            pass
    match = re.fullmatch(
        r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text.strip()
    )
    if not match:
        return None
    base, fraction, zone = match.groups()
    micro = (fraction or "0")[:6].ljust(6, "0")
    zone = "+00:00" if zone == "Z" else zone
    try:
        parsed = dt.datetime.fromisoformat(f"{base}.{micro}{zone}")
    except ValueError:
        return None
    return parsed.astimezone(UTC)


def _seconds(delta: dt.timedelta) -> float:
    return max(0.0, delta.total_seconds())


# --------------------------------------------------------------------------------------
# Containers


class ContainerState(Enum):
    """A container's state as the engine names it."""

    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    RESTARTING = "restarting"
    REMOVING = "removing"
    EXITED = "exited"
    DEAD = "dead"

    @classmethod
    def from_api(cls, value: str | None) -> ContainerState:
        """Map the engine's ``State`` string; an unknown state counts as exited (not running)."""
        try:
            return cls((value or "").lower())
        except ValueError:
            return cls.EXITED

    @property
    def is_running(self) -> bool:
        """True while the container has a process: running, paused or restarting (as the
        engine's own ``State.Running`` flag)."""
        return self in (ContainerState.RUNNING, ContainerState.PAUSED, ContainerState.RESTARTING)

    @property
    def label(self) -> str:
        """A word for people: "Running", "Stopped", ..."""
        return _STATE_LABELS[self]


_STATE_LABELS = {
    ContainerState.CREATED: "Created",
    ContainerState.RUNNING: "Running",
    ContainerState.PAUSED: "Paused",
    ContainerState.RESTARTING: "Restarting",
    ContainerState.REMOVING: "Removing",
    ContainerState.EXITED: "Stopped",
    ContainerState.DEAD: "Dead",
}

_ANY_ADDRESS = {"", "0.0.0.0", "::", "127.0.0.1", "::1", "localhost"}


@dataclass(frozen=True)
class PortBinding:
    """A container port and where (if anywhere) it is published on the engine's host."""

    container_port: int
    protocol: str
    host_ip: str | None
    host_port: int | None

    @classmethod
    def from_api(cls, entry: Mapping[str, Any]) -> PortBinding:
        """One entry of a list record's ``Ports``."""
        public = entry.get("PublicPort")
        return cls(
            int(entry.get("PrivatePort") or 0),
            str(entry.get("Type") or "tcp"),
            entry.get("IP") if public else None,
            int(public) if public else None,
        )

    @property
    def published(self) -> bool:
        return self.host_port is not None

    @property
    def url(self) -> str | None:
        """``http://localhost:PORT`` when published on any/loopback address, ``http://IP:PORT``
        on another address, None when not published."""
        if self.host_port is None:
            return None
        ip = self.host_ip or ""
        if ip in _ANY_ADDRESS:
            return f"http://localhost:{self.host_port}"
        return f"http://{_join_host(ip)}:{self.host_port}"

    def __str__(self) -> str:
        inner = f"{self.container_port}/{self.protocol}"
        if self.host_port is None:
            return inner
        return f"{_join_host(self.host_ip or '0.0.0.0')}:{self.host_port}->{inner}"


def _join_host(ip: str) -> str:
    """Brackets around IPv6 addresses, like Go's net.JoinHostPort."""
    return f"[{ip}]" if ":" in ip else ip


@dataclass(frozen=True)
class MountPoint:
    """A mount of a container: ``type`` is "bind", "volume", "tmpfs", ..."""

    type: str
    source: str
    destination: str
    name: str | None
    read_only: bool

    @classmethod
    def from_api(cls, entry: Mapping[str, Any]) -> MountPoint:
        return cls(
            str(entry.get("Type") or ""),
            str(entry.get("Source") or ""),
            str(entry.get("Destination") or ""),
            entry.get("Name") or None,
            not entry.get("RW", True),
        )


_STATUS_UP = re.compile(r"Up (.+?)(?: \((Paused|healthy|unhealthy|health: starting)\))?")
_STATUS_EXITED = re.compile(r"(Exited|Restarting) \((-?\d+)\) (.+) ago")


@dataclass(frozen=True)
class Container:
    """One row of ``docker ps -a``, from the list API (no inspect)."""

    id: str
    name: str
    image: str
    image_id: str
    command: str
    created: dt.datetime
    state: ContainerState
    status: str
    ports: tuple[PortBinding, ...] = ()
    labels: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    mounts: tuple[MountPoint, ...] = ()
    networks: tuple[str, ...] = ()
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    exit_code: int | None = None
    health: str | None = None  # "healthy", "unhealthy", "health: starting"; None: no check

    @classmethod
    def from_api(cls, entry: Mapping[str, Any], now: dt.datetime | None = None) -> Container:
        """Build from one entry of ``GET /containers/json``. ``started_at``/``finished_at``
        are estimated from the ``Status`` text (relative to ``now``)."""
        now = now or dt.datetime.now(UTC)
        names = [str(n).lstrip("/") for n in entry.get("Names") or ()]
        # Legacy links add names like "/web/db"; the container's own name has no slash.
        name = next((n for n in names if "/" not in n), names[0] if names else "")
        state = ContainerState.from_api(entry.get("State"))
        status = str(entry.get("Status") or "")
        started, finished, code, health = _estimate_times(status, now)
        networks = (entry.get("NetworkSettings") or {}).get("Networks") or {}
        return cls(
            id=str(entry.get("Id") or ""),
            name=name,
            image=str(entry.get("Image") or ""),
            image_id=str(entry.get("ImageID") or ""),
            command=str(entry.get("Command") or ""),
            created=parse_timestamp(entry.get("Created")) or EPOCH,
            state=state,
            status=status,
            ports=_sorted_ports(PortBinding.from_api(p) for p in entry.get("Ports") or ()),
            labels=frozen_map(entry.get("Labels")),
            mounts=tuple(MountPoint.from_api(m) for m in entry.get("Mounts") or ()),
            networks=tuple(sorted(networks)),
            started_at=started,
            finished_at=finished,
            exit_code=code,
            health=health,
        )

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def urls(self) -> tuple[str, ...]:
        """Distinct browser URLs of the published TCP ports."""
        seen = dict.fromkeys(p.url for p in self.ports if p.url and p.protocol == "tcp")
        return tuple(u for u in seen if u)

    @property
    def ports_text(self) -> str:
        """The PORTS column of ``docker ps``."""
        return ", ".join(str(p) for p in self.ports)

    def status_text(self, now: dt.datetime) -> str:
        """Render the status like ``docker ps`` at ``now`` ("Up 5 minutes", "Up 2 hours
        (Paused)", "Exited (0) 3 days ago", "Created"), so the UI can refresh it locally."""
        state = self.state
        if state in (ContainerState.RUNNING, ContainerState.PAUSED):
            if self.started_at is None:
                return self.status
            text = "Up " + human_duration(_seconds(now - self.started_at))
            if state is ContainerState.PAUSED:
                return text + " (Paused)"
            return f"{text} ({self.health})" if self.health else text
        if state in (ContainerState.EXITED, ContainerState.RESTARTING):
            if self.finished_at is None:
                return self.status
            word = "Exited" if state is ContainerState.EXITED else "Restarting"
            ago = human_duration(_seconds(now - self.finished_at))
            return f"{word} ({self.exit_code or 0}) {ago} ago"
        if state is ContainerState.CREATED:
            return "Created"
        if state is ContainerState.REMOVING:
            return "Removal In Progress"
        return "Dead"

    def apply_event(self, event: Event) -> Container:
        """This record updated by a container event (state and times only; a re-fetch with
        ``EngineClient.container`` gets everything else)."""
        if event.type is not EventType.CONTAINER or event.id != self.id:
            return self
        action = event.action
        if action == "start":
            return replace(self, state=ContainerState.RUNNING, started_at=event.time, health=None)
        if action == "die":
            code = event.attributes.get("exitCode", "")
            return replace(
                self,
                state=ContainerState.EXITED,
                finished_at=event.time,
                exit_code=int(code) if code.lstrip("-").isdigit() else self.exit_code,
                health=None,
            )
        if action == "pause":
            return replace(self, state=ContainerState.PAUSED)
        if action == "unpause":
            return replace(self, state=ContainerState.RUNNING)
        if action == "restart":
            return replace(self, state=ContainerState.RUNNING, started_at=event.time)
        if action == "rename" and event.attributes.get("name"):
            return replace(self, name=event.attributes["name"])
        if action == "health_status" and event.detail:
            return replace(self, health=event.detail)
        return self


def _sorted_ports(ports: Iterable[PortBinding]) -> tuple[PortBinding, ...]:
    """Order like ``docker ps``: by container port, protocol, then IPv4 before IPv6."""

    def key(p: PortBinding) -> tuple[int, str, int, int]:
        return (p.container_port, p.protocol, ":" in (p.host_ip or ""), p.host_port or 0)

    return tuple(sorted(ports, key=key))


def _estimate_times(
    status: str, now: dt.datetime
) -> tuple[dt.datetime | None, dt.datetime | None, int | None, str | None]:
    """(started_at, finished_at, exit_code, health) guessed from the engine's Status text."""
    match = _STATUS_UP.fullmatch(status)
    if match:
        seconds = parse_human_duration(match.group(1))
        extra = match.group(2)
        health = extra if extra and extra != "Paused" else None
        started = now - dt.timedelta(seconds=seconds) if seconds is not None else None
        return started, None, None, health
    match = _STATUS_EXITED.fullmatch(status)
    if match:
        seconds = parse_human_duration(match.group(3))
        finished = now - dt.timedelta(seconds=seconds) if seconds is not None else None
        return None, finished, int(match.group(2)), None
    return None, None, None, None


# --------------------------------------------------------------------------------------
# Images

NONE = "<none>"


@dataclass(frozen=True)
class Image:
    """One image id with all its tags (``GET /images/json``)."""

    id: str
    repo_tags: tuple[str, ...]
    repo_digests: tuple[str, ...]
    created: dt.datetime
    size: int
    labels: Mapping[str, str] = field(default_factory=lambda: _EMPTY)

    @classmethod
    def from_api(cls, entry: Mapping[str, Any]) -> Image:
        tags = tuple(t for t in entry.get("RepoTags") or () if t and t != "<none>:<none>")
        digests = tuple(d for d in entry.get("RepoDigests") or () if d and d != "<none>@<none>")
        return cls(
            id=str(entry.get("Id") or ""),
            repo_tags=tags,
            repo_digests=digests,
            created=parse_timestamp(entry.get("Created")) or EPOCH,
            size=int(entry.get("Size") or 0),
            labels=frozen_map(entry.get("Labels")),
        )

    @property
    def short_id(self) -> str:
        """The 12 hex digits ``docker images`` shows (without ``sha256:``)."""
        return self.id.split(":", 1)[-1][:12]

    @property
    def dangling(self) -> bool:
        """No tag points at it (what ``docker image prune`` removes by default)."""
        return not self.repo_tags


@dataclass(frozen=True)
class ImageRow:
    """One row of ``docker images``: a repository:tag, or ``<none>`` for untagged images."""

    repository: str
    tag: str
    image: Image

    @property
    def reference(self) -> str | None:
        """``repository:tag`` to pull, run or remove, None for an untagged row."""
        if self.repository == NONE or self.tag == NONE:
            return None
        return f"{self.repository}:{self.tag}"


def split_repo_tag(text: str) -> tuple[str, str]:
    """``127.0.0.1:5000/a/b:v1`` -> (``127.0.0.1:5000/a/b``, ``v1``); no tag -> ``<none>``."""
    slash = text.rfind("/")
    colon = text.rfind(":")
    if colon > slash:
        return text[:colon], text[colon + 1 :]
    return text, NONE


def image_rows(images: Iterable[Image]) -> list[ImageRow]:
    """One row per repo:tag like ``docker images``; an untagged image pulled by digest shows
    its repository with tag ``<none>``; a dangling one ``<none>``/``<none>``."""
    rows: list[ImageRow] = []
    for image in images:
        if image.repo_tags:
            rows.extend(ImageRow(*split_repo_tag(t), image) for t in image.repo_tags)
            continue
        repos = dict.fromkeys(d.split("@", 1)[0] for d in image.repo_digests)
        if repos:
            rows.extend(ImageRow(r, NONE, image) for r in repos)
        else:
            rows.append(ImageRow(NONE, NONE, image))
    return rows


# --------------------------------------------------------------------------------------
# Volumes and networks


@dataclass(frozen=True)
class Volume:
    """A volume (``GET /volumes``)."""

    name: str
    driver: str
    mountpoint: str
    created: dt.datetime | None
    labels: Mapping[str, str]
    scope: str

    @classmethod
    def from_api(cls, entry: Mapping[str, Any]) -> Volume:
        return cls(
            name=str(entry.get("Name") or ""),
            driver=str(entry.get("Driver") or ""),
            mountpoint=str(entry.get("Mountpoint") or ""),
            created=parse_timestamp(entry.get("CreatedAt")),
            labels=frozen_map(entry.get("Labels")),
            scope=str(entry.get("Scope") or "local"),
        )


@dataclass(frozen=True)
class Network:
    """A network (``GET /networks``)."""

    id: str
    name: str
    driver: str
    scope: str
    internal: bool
    created: dt.datetime | None
    subnets: tuple[str, ...]

    @classmethod
    def from_api(cls, entry: Mapping[str, Any]) -> Network:
        ipam = entry.get("IPAM") or {}
        subnets = tuple(str(c["Subnet"]) for c in ipam.get("Config") or () if c and c.get("Subnet"))
        return cls(
            id=str(entry.get("Id") or ""),
            name=str(entry.get("Name") or ""),
            driver=str(entry.get("Driver") or ""),
            scope=str(entry.get("Scope") or "local"),
            internal=bool(entry.get("Internal")),
            created=parse_timestamp(entry.get("Created")),
            subnets=subnets,
        )

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def builtin(self) -> bool:
        """The engine's own networks, which cannot be removed."""
        return self.name in ("bridge", "host", "none")


# --------------------------------------------------------------------------------------
# Events and logs


class EventType(Enum):
    CONTAINER = "container"
    IMAGE = "image"
    VOLUME = "volume"
    NETWORK = "network"
    DAEMON = "daemon"
    OTHER = "other"

    @classmethod
    def from_api(cls, value: str | None) -> EventType:
        try:
            return cls((value or "").lower())
        except ValueError:
            return cls.OTHER


@dataclass(frozen=True)
class Event:
    """One engine event. ``action`` is normalised (``"exec_start: sh"`` -> ``"exec_start"``);
    what followed the colon is kept in ``detail``."""

    type: EventType
    action: str
    id: str
    attributes: Mapping[str, str]
    time: dt.datetime
    detail: str = ""

    @classmethod
    def from_api(cls, entry: Mapping[str, Any]) -> Event:
        raw_action = str(entry.get("Action") or entry.get("status") or "")
        action, _, detail = raw_action.partition(":")
        actor = entry.get("Actor") or {}
        nanos = entry.get("timeNano")
        if isinstance(nanos, int) and nanos > 0:
            when = EPOCH + dt.timedelta(microseconds=nanos // 1000)
        else:
            when = parse_timestamp(entry.get("time")) or EPOCH
        return cls(
            type=EventType.from_api(entry.get("Type")),
            action=action.strip(),
            id=str(actor.get("ID") or entry.get("id") or ""),
            attributes=frozen_map(actor.get("Attributes")),
            time=when,
            detail=detail.strip(),
        )


@dataclass(frozen=True)
class LogLine:
    """One line of a container's output, without its line ending."""

    stream: str  # "stdout" | "stderr"
    text: str
    timestamp: dt.datetime | None = None


# --------------------------------------------------------------------------------------
# Pull and push progress


@dataclass(frozen=True)
class LayerProgress:
    """One layer of a pull or push: its last status and byte counts (0 when unknown)."""

    id: str
    status: str
    current: int = 0
    total: int = 0


@dataclass(frozen=True)
class PullProgress:
    """Progress of a pull or push aggregated over layers. ``fraction`` is bytes-weighted over
    the layers whose size is known (download and extraction each count), None until some size
    is known, 1.0 when done."""

    layers: Mapping[str, LayerProgress]
    fraction: float | None
    status: str
    done: bool = False


# --------------------------------------------------------------------------------------
# Run


@dataclass(frozen=True)
class RunSpec:
    """What ``docker run`` is given: everything the Run and Settings forms edit."""

    image: str
    name: str | None = None
    command: tuple[str, ...] | None = None
    ports: tuple[PortSpec, ...] = ()
    env: tuple[EnvVar, ...] = ()
    volumes: tuple[VolumeSpec, ...] = ()
    restart: RestartPolicy = RestartPolicy.NO
    restart_max_retries: int = 0
    auto_remove: bool = False
    tty: bool = False
    stdin_open: bool = False
    labels: Mapping[str, str] = field(default_factory=lambda: _EMPTY)


# --------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class PruneResult:
    deleted: tuple[str, ...]
    space_reclaimed: int


@dataclass(frozen=True)
class EngineInfo:
    """Who the engine is (``GET /info`` and the negotiated API version)."""

    version: str
    api_version: str
    os: str
    arch: str
    containers: int
    images: int
    name: str
    running: int = 0
    os_name: str = ""  # "Debian GNU/Linux 12 (bookworm)"
    cpus: int = 0
    memory: int = 0

    @classmethod
    def from_api(cls, info: Mapping[str, Any], api_version: str) -> EngineInfo:
        return cls(
            version=str(info.get("ServerVersion") or ""),
            api_version=api_version,
            os=str(info.get("OSType") or ""),
            arch=str(info.get("Architecture") or ""),
            containers=int(info.get("Containers") or 0),
            images=int(info.get("Images") or 0),
            name=str(info.get("Name") or ""),
            running=int(info.get("ContainersRunning") or 0),
            os_name=str(info.get("OperatingSystem") or ""),
            cpus=int(info.get("NCPU") or 0),
            memory=int(info.get("MemTotal") or 0),
        )
