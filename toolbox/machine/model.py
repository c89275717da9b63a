"""The machine record: what a machine is (``MachineSpec``), what state it is in, and the
pure validators and parsers for the things users type (names, sizes, port forwards).

Everything here is plain data: frozen dataclasses and enums, no I/O.
"""

from __future__ import annotations

import datetime as dt
import ntpath
import os
import posixpath
import re
import sys
from dataclasses import dataclass, field, replace
from enum import Enum

from toolbox.errors import ValidationError

SCHEMA_VERSION = 3
NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
DEFAULT_NAME = "default"
DEFAULT_USER = "docker"
ENGINE_GUEST_PORT = 2376
SSH_GUEST_PORT = 22
LOOPBACK = "127.0.0.1"

DEFAULT_CPUS = 2
DEFAULT_MEMORY_MIB = 2048
DEFAULT_DISK_GIB = 20
MAX_CPUS = 256
MIN_MEMORY_MIB = 256
MAX_MEMORY_MIB = 1024 * 1024
MIN_DISK_GIB = 2
MAX_DISK_GIB = 64 * 1024


class MachineState(Enum):
    """What a user sees in ``toolbox ls`` and the GUI."""

    CREATING = "Creating"
    STOPPED = "Stopped"
    STARTING = "Starting"
    RUNNING = "Running"
    STOPPING = "Stopping"
    PAUSED = "Paused"
    ERROR = "Error"
    UNKNOWN = "Unknown"


class CreatePhase(Enum):
    """The phases of ``create``, in order. ``MachineSpec.create_phase`` records the last one
    finished, so an interrupted create continues from the next."""

    NEW = "new"
    IMAGE = "image"
    KEYS = "keys"
    SEED = "seed"
    VM = "vm"
    BOOT = "boot"
    PROVISION = "provision"
    CONTEXT = "context"
    DONE = "done"

    @property
    def title(self) -> str:
        return _PHASE_TITLES[self]

    @property
    def index(self) -> int:
        return list(CreatePhase).index(self)

    def after(self, other: CreatePhase) -> bool:
        return self.index > other.index


_PHASE_TITLES = {
    CreatePhase.NEW: "Record the machine",
    CreatePhase.IMAGE: "Guest image",
    CreatePhase.KEYS: "SSH keys",
    CreatePhase.SEED: "Cloud-init seed",
    CreatePhase.VM: "Create the VM",
    CreatePhase.BOOT: "Boot and wait for SSH",
    CreatePhase.PROVISION: "Install and secure the engine",
    CreatePhase.CONTEXT: "Docker CLI context",
    CreatePhase.DONE: "Done",
}

# The phases that do work, in order (NEW and DONE are markers).
WORK_PHASES = tuple(p for p in CreatePhase if p not in (CreatePhase.NEW, CreatePhase.DONE))


@dataclass(frozen=True)
class PortForward:
    """A user's extra forward from a loopback host port to a guest port (for published
    container ports, since there is no host-only network)."""

    host_port: int
    guest_port: int
    protocol: str = "tcp"
    host_ip: str = LOOPBACK

    @property
    def name(self) -> str:
        return f"user-{self.protocol}-{self.host_port}"

    def __str__(self) -> str:
        return f"{self.host_ip}:{self.host_port}->{self.guest_port}/{self.protocol}"


class PortBind(Enum):
    """Where the host agent binds published container ports on the host.

    LOOPBACK (the default) binds 127.0.0.1 only: a published port is reachable from this
    computer, not from the network. PUBLISHED binds what the container asked for, so
    ``-p 8080:80`` (all interfaces) is offered to every network the host is on, as Docker on
    Linux does; anyone who can reach the host can then reach the container."""

    LOOPBACK = "loopback"
    PUBLISHED = "published"


@dataclass(frozen=True)
class Share:
    """A host folder mounted into the guest (``guest_path`` is a POSIX path there)."""

    host_path: str
    guest_path: str
    readonly: bool = False

    def __str__(self) -> str:
        return f"{self.host_path} -> {self.guest_path}{' (read-only)' if self.readonly else ''}"


@dataclass(frozen=True)
class MachineSpec:
    """One machine, as stored in ``machines/<name>/machine.json``."""

    name: str
    driver: str
    cpus: int
    memory_mib: int
    disk_gib: int
    image: str
    ssh_port: int
    engine_port: int
    created: dt.datetime
    schema_version: int = SCHEMA_VERSION
    provisioned: bool = False
    create_phase: CreatePhase = CreatePhase.NEW
    ssh_user: str = DEFAULT_USER
    forwards: tuple[PortForward, ...] = field(default_factory=tuple)
    port_bind: PortBind = PortBind.LOOPBACK
    shares: tuple[Share, ...] = field(default_factory=tuple)

    @property
    def complete(self) -> bool:
        return self.create_phase is CreatePhase.DONE

    @property
    def engine_url(self) -> str:
        return f"tcp://{LOOPBACK}:{self.engine_port}"

    def with_phase(self, phase: CreatePhase) -> MachineSpec:
        return replace(self, create_phase=phase)


def validate_name(name: str) -> str:
    """Return ``name`` when it is a valid machine name, else raise ``ValidationError``.

    Names are ``[a-z0-9][a-z0-9-]{0,62}``: they become folder names and hostnames, so
    nothing that could climb out of the store ("..", "/", "\\") gets through."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ValidationError(
            "name",
            f"Invalid machine name: {name!r}",
            hint="Use 1 to 63 lowercase letters, digits and dashes, starting with a letter "
            "or digit (for example: default, dev-2).",
        )
    return name


def validate_cpus(cpus: int) -> int:
    if not 1 <= cpus <= MAX_CPUS:
        raise ValidationError("cpus", f"Invalid CPU count: {cpus}", f"Use 1 to {MAX_CPUS}.")
    return cpus


_SIZE_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*", re.IGNORECASE | re.ASCII)
_UNIT_POWER = {"": None, "k": 1, "m": 2, "g": 3, "t": 4}


def _parse_size(text: str, unit_power: int, field_name: str, unit: str) -> int:
    """Parse ``2048``, ``2g``, ``2GiB``, ``1.5G`` into a whole number of ``unit``
    (binary units: 1G = 1024M); a bare number is already in ``unit``."""
    match = _SIZE_RE.fullmatch(str(text))
    if not match:
        raise ValidationError(
            field_name,
            f"Invalid size: {text!r}",
            f"Give a number of {unit}, or a size like 2G or 512M.",
        )
    number, suffix, _ = match.groups()
    power = _UNIT_POWER[suffix.lower()]
    value = float(number)
    if power is not None:
        value *= 1024 ** (power - unit_power)
    if value != int(value) or value <= 0:
        raise ValidationError(
            field_name,
            f"Invalid size: {text!r} is not a positive whole number of {unit}",
            f"Give a whole number of {unit}.",
        )
    return int(value)


def parse_memory_mib(text: str | int) -> int:
    """Memory in MiB from ``2048``, ``2g``, ``2GiB``, ``1536M``."""
    value = _parse_size(str(text), 2, "memory", "MiB")
    if not MIN_MEMORY_MIB <= value <= MAX_MEMORY_MIB:
        raise ValidationError(
            "memory",
            f"Invalid memory size: {value} MiB",
            f"Use {MIN_MEMORY_MIB} MiB to {MAX_MEMORY_MIB // 1024} GiB.",
        )
    return value


def parse_disk_gib(text: str | int) -> int:
    """Disk size in GiB from ``20``, ``20g``, ``20GiB``, ``1T``."""
    value = _parse_size(str(text), 3, "disk", "GiB")
    if not MIN_DISK_GIB <= value <= MAX_DISK_GIB:
        raise ValidationError(
            "disk",
            f"Invalid disk size: {value} GiB",
            f"Use {MIN_DISK_GIB} to {MAX_DISK_GIB} GiB.",
        )
    return value


def _port(text: str, what: str, spec: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 65535:
        raise ValidationError(
            "port",
            f"Invalid {what} port {text!r} in {spec!r}",
            "Ports are numbers from 1 to 65535, as in 8080:80 or 127.0.0.1:8080:80/tcp.",
        )
    return int(text)


def parse_forward(spec: str) -> PortForward:
    """Parse ``[127.0.0.1:]HOST:GUEST[/tcp|udp]`` (or just ``PORT`` for the same port on
    both sides). Only loopback host addresses are accepted: nothing of ours listens on
    another interface."""
    text = str(spec).strip()
    protocol = "tcp"
    if "/" in text:
        text, protocol = text.rsplit("/", 1)
        protocol = protocol.lower()
        if protocol not in ("tcp", "udp"):
            raise ValidationError(
                "port", f"Invalid protocol in {spec!r}", "Use /tcp or /udp (tcp is the default)."
            )
    parts = text.split(":")
    host_ip = LOOPBACK
    if len(parts) == 3:
        host_ip = parts[0]
        parts = parts[1:]
        if host_ip not in (LOOPBACK, "localhost"):
            raise ValidationError(
                "port",
                f"Refusing to forward on {host_ip!r}: only 127.0.0.1 is allowed",
                "Leave the address out (127.0.0.1 is used) so the port is not exposed to the "
                "network.",
            )
        host_ip = LOOPBACK
    if len(parts) == 1:
        port = _port(parts[0], "host", spec)
        return PortForward(port, port, protocol, host_ip)
    if len(parts) == 2:
        return PortForward(
            _port(parts[0], "host", spec), _port(parts[1], "guest", spec), protocol, host_ip
        )
    raise ValidationError(
        "port",
        f"Invalid port forward {spec!r}",
        "Use HOST:GUEST, for example 8080:80, or 127.0.0.1:8080:80/tcp.",
    )


def format_duration(seconds: float) -> str:
    """``0.4s``, ``12.3s``, ``3m05s``: how long a phase took, for people."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{rest:02d}s"


# -- shares ---------------------------------------------------------------------------------

# Guest folders a share must never cover: the system, the engine's data, and the guest
# user's home (its authorized_keys is how Toolbox logs in).
PROTECTED_GUEST_PATHS = (
    "/bin", "/boot", "/dev", "/etc", "/lib", "/lib64", "/proc", "/run", "/sbin", "/sys",
    "/usr", "/var", f"/home/{DEFAULT_USER}",
)  # fmt: skip
_DRIVE_RE = re.compile(r"^([A-Za-z]):[\\/]")


def guest_path_for(host_path: str, windows: bool | None = None) -> str:
    """Where a host folder appears in the guest: the same path on macOS and Linux;
    ``C:\\Users\\me`` becomes ``/c/Users/me`` on Windows, as Docker Toolbox did."""
    windows = os.name == "nt" if windows is None else windows
    drive = _DRIVE_RE.match(host_path)
    if windows or drive:
        if drive is None:
            raise ValidationError(
                "share", f"{host_path!r} is not a full Windows path", "Use C:\\Users\\me\\project."
            )
        rest = host_path[2:].replace("\\", "/")
        return posixpath.normpath(f"/{drive.group(1).lower()}{rest}")
    return posixpath.normpath(host_path)


def default_shares(home: str | None = None, platform: str | None = None) -> tuple[Share, ...]:
    """The shares a new machine gets: the users' folders at the same path, like Docker
    Toolbox (``/Users`` on macOS, ``C:\\Users`` as ``/c/Users`` on Windows), the home folder
    on Linux."""
    platform = sys.platform if platform is None else platform
    if platform == "darwin":
        return (Share("/Users", "/Users"),)
    if platform.startswith("win"):
        drive = os.environ.get("SYSTEMDRIVE", "C:")
        host = ntpath.join(drive + "\\", "Users")
        return (Share(host, guest_path_for(host, windows=True)),)
    home = home if home is not None else os.path.expanduser("~")
    return (Share(home, posixpath.normpath(home)),)


def validate_share(share: Share) -> Share:
    """Refuse shares that cannot work or would break the guest."""
    guest = share.guest_path
    if not guest.startswith("/"):
        raise ValidationError(
            "share", f"The guest path {guest!r} is not absolute", "Use a path like /src."
        )
    guest = posixpath.normpath(guest)
    for protected in PROTECTED_GUEST_PATHS:
        if guest == "/" or protected == guest or protected.startswith(guest.rstrip("/") + "/"):
            raise ValidationError(
                "share",
                f"Mounting a share at {guest} would hide {protected} in the guest",
                "Choose another guest path, for example the host path itself or /mnt/NAME.",
            )
        if guest.startswith(protected + "/") and protected != f"/home/{DEFAULT_USER}":
            raise ValidationError(
                "share",
                f"{guest} is inside the guest's system folder {protected}",
                "Choose a guest path outside /etc, /usr, /var and the other system folders.",
            )
    if not (os.path.isabs(share.host_path) or _DRIVE_RE.match(share.host_path)):
        raise ValidationError(
            "share",
            f"The host path {share.host_path!r} is not absolute",
            "Give the full path of the folder.",
        )
    return Share(share.host_path, guest, share.readonly)


def parse_share(text: str, windows: bool | None = None) -> Share:
    """Parse ``HOSTPATH[:GUESTPATH][:ro|rw]`` (a Windows drive letter's colon is part of the
    host path). The host folder is made absolute; it must exist."""
    raw = str(text).strip()
    if not raw:
        raise ValidationError("share", "Empty share", "Use HOSTPATH[:GUESTPATH][:ro].")
    drive = ""
    rest = raw
    if _DRIVE_RE.match(raw):
        drive, rest = raw[:2], raw[2:]
    parts = rest.split(":")
    readonly = False
    if len(parts) > 1 and parts[-1] in ("ro", "rw"):
        readonly = parts.pop() == "ro"
    if len(parts) > 2:
        raise ValidationError(
            "share", f"Invalid share {text!r}", "Use HOSTPATH[:GUESTPATH][:ro], e.g. ~/src:/src:ro."
        )
    host = drive + parts[0]
    host = os.path.abspath(os.path.expanduser(host)) if not drive else host
    if not os.path.isdir(host):
        raise ValidationError(
            "share",
            f"{host} is not a folder on this computer",
            "Create it first or check the spelling.",
        )
    guest = parts[1] if len(parts) == 2 and parts[1] else guest_path_for(host, windows)
    return validate_share(Share(host, guest, readonly))


def share_covering(shares: tuple[Share, ...], host_path: str) -> Share | None:
    """The share whose host folder holds ``host_path`` (compared as the host spells paths)."""
    norm = os.path.normcase(os.path.abspath(host_path))
    for share in shares:
        root = os.path.normcase(os.path.abspath(share.host_path))
        if norm == root or norm.startswith(root.rstrip(os.sep) + os.sep):
            return share
    return None


def unshared_host_folder(source: str, shares: tuple[Share, ...]) -> bool:
    """True when a bind-mount source names an existing host folder or file that no share
    covers: the container gets an empty folder made in the machine instead. Guest-only paths
    (``/var/run/docker.sock``, ``/var/lib/...``) are not host folders and are left alone, and
    so are names of volumes and relative paths. ``C:\\...`` counts on a Windows host."""
    if not source or not (source.startswith("/") or os.path.isabs(source)):
        return False
    if share_covering(shares, source) is not None:
        return False
    if any(
        source == p or source.startswith(p + "/")
        for p in ("/var", "/run", "/proc", "/sys", "/dev", "/etc", "/usr")
    ):
        return False
    return os.path.exists(source)
