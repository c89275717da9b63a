"""Parsers for what users type into forms and the CLI: ports, env, volumes, image references,
sizes; and docker's human wording for durations and sizes.

Every parser is a pure function that either returns a typed value or raises
``ValidationError(field, reason)`` with a plain-words reason. Never any other exception,
whatever the text (hypothesis tests hold them to that).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace
from enum import Enum

from toolbox.errors import ValidationError

MAX_PORT = 65535
PROTOCOLS = ("tcp", "udp", "sctp")

_DIGITS = re.compile(r"[0-9]+")
_WS = re.compile(r"\s")


class RestartPolicy(Enum):
    """When the engine restarts a container (docker run --restart)."""

    NO = "no"
    ALWAYS = "always"
    ON_FAILURE = "on-failure"
    UNLESS_STOPPED = "unless-stopped"

    @classmethod
    def from_api(cls, name: str | None) -> RestartPolicy:
        """The engine reports "" for no policy."""
        try:
            return cls(name or "no")
        except ValueError:
            return cls.NO

    @classmethod
    def parse(cls, text: str) -> RestartPolicy:
        value = text.strip().lower()
        for policy in cls:
            if policy.value == value:
                return policy
        choices = ", ".join(p.value for p in cls)
        raise ValidationError("restart", f"Unknown restart policy {text!r}: use one of {choices}")


# --------------------------------------------------------------------------------------
# Ports


@dataclass(frozen=True)
class PortSpec:
    """One published port as the user asked for it: host_port None means "any free port"."""

    container_port: int
    protocol: str = "tcp"
    host_ip: str | None = None
    host_port: int | None = None

    def __str__(self) -> str:
        inner = f"{self.container_port}/{self.protocol}"
        host = "" if self.host_port is None else str(self.host_port)
        if self.host_ip is not None:
            ip = f"[{self.host_ip}]" if ":" in self.host_ip else self.host_ip
            return f"{ip}:{host}:{inner}"
        if self.host_port is not None:
            return f"{host}:{inner}"
        return inner


def _port_range(text: str, field: str, what: str) -> tuple[int, int]:
    """``"80"`` -> (80, 80); ``"8000-8010"`` -> (8000, 8010)."""
    low_text, dash, high_text = text.partition("-")
    if not _DIGITS.fullmatch(low_text) or (dash and not _DIGITS.fullmatch(high_text)):
        raise ValidationError(field, f"{what} {text!r} is not a number or a range like 8000-8010")
    low = int(low_text)
    high = int(high_text) if dash else low
    for value in (low, high):
        if not 1 <= value <= MAX_PORT:
            raise ValidationError(field, f"{what} {value} is out of range: use 1 to {MAX_PORT}")
    if high < low:
        raise ValidationError(field, f"{what} range {text!r} goes backwards")
    return low, high


def parse_port(text: str, field: str = "ports") -> tuple[PortSpec, ...]:
    """Parse ``docker run -p`` syntax: ``[ip:]host:container[/proto]``, ``container[/proto]``,
    ``ip::container``, ``[::1]:8080:80`` and ranges like ``8000-8001:80-81``."""
    value = text.strip()
    if not value:
        raise ValidationError(field, "Port is empty: use HOST:CONTAINER, like 8080:80")
    if _WS.search(value):
        raise ValidationError(field, f"Port {text!r} contains spaces")
    body, slash, proto = value.partition("/")
    protocol = "tcp"
    if slash:
        protocol = proto.lower()
        if protocol not in PROTOCOLS:
            raise ValidationError(
                field, f"Unknown protocol {proto!r}: use tcp, udp or sctp", "For example 53:53/udp"
            )
    host_ip: str | None = None
    if body.startswith("["):
        end = body.find("]")
        if end < 0 or body[end + 1 : end + 2] != ":":
            raise ValidationError(field, f"Port {text!r}: write an IPv6 address as [::1]:8080:80")
        host_ip = body[1:end]
        rest = body[end + 2 :].split(":")
        if len(rest) != 2:
            raise ValidationError(field, f"Port {text!r}: after the address give HOST:CONTAINER")
        parts = [body[: end + 1], *rest]
    else:
        parts = body.split(":")
        if len(parts) > 3:
            raise ValidationError(
                field,
                f"Port {text!r} has too many colons",
                "Write an IPv6 address as [::1]:8080:80",
            )
        if len(parts) == 3:
            host_ip = parts[0]
    if host_ip is not None:
        try:
            host_ip = str(ipaddress.ip_address(host_ip))
        except ValueError:
            raise ValidationError(field, f"{host_ip!r} is not an IP address") from None
    container_text = parts[-1]
    host_text = parts[-2] if len(parts) >= 2 else ""
    if len(parts) == 2 and not host_text:
        raise ValidationError(field, f"Port {text!r} has no host port before the colon")
    c_low, c_high = _port_range(container_text, field, "Container port")
    count = c_high - c_low + 1
    if not host_text:
        return tuple(PortSpec(p, protocol, host_ip, None) for p in range(c_low, c_high + 1))
    h_low, h_high = _port_range(host_text, field, "Host port")
    if h_high - h_low + 1 != count:
        raise ValidationError(
            field,
            f"Port {text!r}: the host range and the container range differ in length",
            "Give ranges of the same length, like 8000-8001:80-81",
        )
    return tuple(PortSpec(c_low + i, protocol, host_ip, h_low + i) for i in range(count))


# --------------------------------------------------------------------------------------
# Environment


@dataclass(frozen=True)
class EnvVar:
    """One ``KEY=VALUE`` environment variable for a container."""

    key: str
    value: str

    def __str__(self) -> str:
        return f"{self.key}={self.value}"


def parse_env(text: str, field: str = "env") -> EnvVar:
    """Parse ``KEY=VALUE``; the value may be empty or contain ``=``."""
    key, eq, value = text.partition("=")
    key = key.strip()
    if not eq:
        raise ValidationError(field, f"{text.strip()!r} has no value: use KEY=VALUE")
    if not key:
        raise ValidationError(field, "The variable name before '=' is empty: use KEY=VALUE")
    if _WS.search(key):
        raise ValidationError(field, f"Variable name {key!r} contains spaces")
    if "\x00" in text:
        raise ValidationError(field, "Environment variables cannot contain NUL characters")
    return EnvVar(key, value)


# --------------------------------------------------------------------------------------
# Volumes

_VOLUME_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
_WINDOWS_PATH = re.compile(r"[A-Za-z]:[\\/]")


@dataclass(frozen=True)
class VolumeSpec:
    """A mount for ``docker run -v``: a host folder (bind), a named volume, or an anonymous
    volume (``source`` None)."""

    source: str | None
    target: str
    read_only: bool = False
    kind: str = "volume"  # "bind" | "volume"

    def __str__(self) -> str:
        head = self.target if self.source is None else f"{self.source}:{self.target}"
        return head + (":ro" if self.read_only else "")

    def bind_string(self) -> str:
        """The engine's HostConfig.Binds form (anonymous volumes are not binds)."""
        return f"{self.source}:{self.target}:{'ro' if self.read_only else 'rw'}"


def parse_volume(text: str, field: str = "volumes") -> VolumeSpec:
    """Parse ``/host/path:/ctr[:ro|:rw]``, ``name:/ctr[:ro]``, ``C:\\Users\\me\\x:/data`` or
    ``/ctr`` (an anonymous volume)."""
    value = text.strip()
    if not value:
        raise ValidationError(field, "Volume is empty: use /host/path:/container/path")
    if "\x00" in value:
        raise ValidationError(field, "Volume contains a NUL character")
    drive = ""
    rest = value
    if _WINDOWS_PATH.match(value):
        drive, rest = value[:2], value[2:]
    parts = rest.split(":")
    parts[0] = drive + parts[0]
    if len(parts) > 3:
        raise ValidationError(field, f"Volume {text!r} has too many ':'")
    read_only = False
    if len(parts) == 3 or (len(parts) == 2 and parts[1] in ("ro", "rw")):
        mode = parts.pop()
        if mode not in ("ro", "rw"):
            raise ValidationError(field, f"Unknown volume option {mode!r}: use ro or rw")
        read_only = mode == "ro"
    if len(parts) == 1:
        target = parts[0]
        if drive:
            raise ValidationError(
                field,
                f"Volume {text!r} has no container path after the host folder",
                "Use C:\\path\\on\\host:/path/in/container",
            )
        _check_target(target, text, field)
        return VolumeSpec(None, target, read_only, "volume")
    source, target = parts
    _check_target(target, text, field)
    if source.startswith("/") or _WINDOWS_PATH.match(source):
        return VolumeSpec(source, target, read_only, "bind")
    if not source:
        raise ValidationError(field, f"Volume {text!r} has nothing before ':'")
    if source.startswith((".", "~")) or "/" in source or "\\" in source:
        raise ValidationError(
            field,
            f"Host folder {source!r} is not an absolute path",
            "Give the full path, like /Users/me/site or C:\\Users\\me\\site",
        )
    if not _VOLUME_NAME.fullmatch(source):
        raise ValidationError(
            field,
            f"{source!r} is not a valid volume name: use letters, digits, '_', '.' and '-' "
            "(at least two characters)",
            "For a host folder give its absolute path",
        )
    return VolumeSpec(source, target, read_only, "volume")


def _check_target(target: str, text: str, field: str) -> None:
    if not target.startswith("/"):
        raise ValidationError(
            field, f"Container path {target!r} in {text!r} must be absolute (start with /)"
        )
    if target.rstrip("/") == "":
        raise ValidationError(field, "A volume cannot be mounted over the container's root '/'")


# --------------------------------------------------------------------------------------
# Image references (the grammar of github.com/distribution/reference)

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_PATH = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(
    rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
)
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")
MAX_NAME_LENGTH = 255


@dataclass(frozen=True)
class ImageRef:
    """``[registry/]repository[:tag][@digest]``; registry None means Docker Hub."""

    registry: str | None
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """Registry and repository, without tag or digest (what ``fromImage`` wants)."""
        return f"{self.registry}/{self.repository}" if self.registry else self.repository

    def __str__(self) -> str:
        text = self.name
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    def with_default_tag(self) -> ImageRef:
        """``busybox`` -> ``busybox:latest``; references with a tag or digest are unchanged."""
        if self.tag is None and self.digest is None:
            return replace(self, tag="latest")
        return self


def parse_image_ref(text: str, field: str = "image") -> ImageRef:
    """Parse an image reference like ``busybox``, ``nginx:1.25``,
    ``127.0.0.1:5000/team/app:v2`` or ``alpine@sha256:<64 hex>``."""
    value = text.strip()
    if not value:
        raise ValidationError(field, "Image name is empty")
    if _WS.search(value):
        raise ValidationError(field, f"Image name {text!r} contains spaces")
    name, at, digest_text = value.partition("@")
    digest: str | None = None
    if at:
        if not _DIGEST.fullmatch(digest_text):
            raise ValidationError(
                field, f"{digest_text!r} is not a valid digest", "Digests look like sha256:<64 hex>"
            )
        algorithm, _, hexpart = digest_text.partition(":")
        if algorithm == "sha256" and len(hexpart) != 64:
            raise ValidationError(field, "A sha256 digest has exactly 64 hex digits")
        digest = digest_text
    tag: str | None = None
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise ValidationError(
                field,
                f"Tag {tag!r} is not valid: use letters, digits, '_', '.' and '-' "
                "(up to 128, not starting with '.' or '-')",
            )
    if not name:
        raise ValidationError(field, f"{text!r} has no repository name")
    if len(name) > MAX_NAME_LENGTH:
        raise ValidationError(field, f"Image name is longer than {MAX_NAME_LENGTH} characters")
    registry: str | None = None
    first, sep, remainder = name.partition("/")
    if sep and (any(c in first for c in ".:") or first == "localhost" or first != first.lower()):
        if not _DOMAIN.fullmatch(first):
            raise ValidationError(field, f"{first!r} is not a valid registry address")
        registry, name = first, remainder
    if not _PATH.fullmatch(name):
        if name != name.lower() and _PATH.fullmatch(name.lower()):
            raise ValidationError(field, f"Repository name {name!r} must be lowercase")
        raise ValidationError(
            field,
            f"{name!r} is not a valid repository name: use lowercase letters, digits and "
            "separators ('.', '_', '-'), with '/' between path parts",
        )
    return ImageRef(registry, name, tag, digest)


# --------------------------------------------------------------------------------------
# Sizes

_SIZE = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-zA-Z]*)")
_DECIMAL_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
_UNIT_POWERS = {"": 0, "b": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5, "e": 6}


def parse_size(text: str, field: str = "size", binary: bool = False) -> int:
    """``"1.5GB"`` -> 1500000000, ``"512m"`` -> 512000000, ``"100"`` -> 100.

    Units are decimal like docker's sizes (kB = 1000); ``KiB``/``MiB``/``GiB`` are binary.
    ``binary=True`` makes plain k/m/g binary too, like ``docker run --memory``.
    """
    value = text.strip()
    match = _SIZE.fullmatch(value)
    if not match:
        raise ValidationError(
            field, f"{text.strip()!r} is not a size: use a number like 512MB or 1.5GB"
        )
    number, unit = match.groups()
    unit_l = unit.lower()
    base = 1024 if binary else 1000
    if len(unit_l) == 3 and unit_l.endswith("ib"):
        base, unit_l = 1024, unit_l[0]
    elif len(unit_l) == 2 and unit_l.endswith("b") and unit_l != "b":
        unit_l = unit_l[0]
    if unit_l not in _UNIT_POWERS:
        raise ValidationError(field, f"Unknown size unit {unit!r}: use B, kB, MB, GB or TB")
    try:
        amount = float(number)
    except ValueError:  # pragma: no cover - the regex admits only floats
        raise ValidationError(field, f"{number!r} is not a number") from None
    result = amount * base ** _UNIT_POWERS[unit_l]
    if result > 2**63:
        raise ValidationError(field, f"Size {text.strip()!r} is too large")
    return int(result)


def format_size(size: float, precision: int = 3) -> str:
    """Bytes in docker's wording: decimal units, ``precision`` significant digits
    ("1.5GB", "512MB", "4.43MB"); exact bytes under 1 kB ("999B")."""
    value = float(size)
    if value < 1000:
        return f"{int(value)}B"
    unit = 0
    while value >= 1000 and unit < len(_DECIMAL_UNITS) - 1:
        value /= 1000
        unit += 1
    text = f"{value:.{precision}g}"
    if "e" in text and unit < len(_DECIMAL_UNITS) - 1:  # 999.96 kB rounds up to 1e+03
        value /= 1000
        unit += 1
        text = f"{value:.{precision}g}"
    return f"{text}{_DECIMAL_UNITS[unit]}"


# --------------------------------------------------------------------------------------
# Durations (docker's go-units HumanDuration, used by "Up 5 minutes", "3 days ago")


def human_duration(seconds: float) -> str:
    """Docker's wording for a duration: "Less than a second", "About a minute", "3 days"."""
    secs = int(seconds)
    if secs < 1:
        return "Less than a second"
    if secs == 1:
        return "1 second"
    if secs < 60:
        return f"{secs} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    # Docker truncates here instead of rounding, which can print "1 years" for half an hour.
    return f"{max(2, int(seconds / 3600) // 24 // 365)} years"


_DURATION_UNITS = {
    "second": 1,
    "minute": 60,
    "hour": 3600,
    "day": 86400,
    "week": 7 * 86400,
    "month": 30 * 86400,
    "year": 365 * 86400,
}
# Hours, days, weeks and months come from hours rounded to the nearest: their shortest
# duration is half an hour less than the plain product.
_ROUNDED_UNITS = ("hour", "day", "week", "month")
_DURATION = re.compile(r"(?i)(less than a second|about an? (minute|hour)|([0-9]+) ([a-z]+?)s?)")


def parse_human_duration(text: str) -> float | None:
    """The inverse of ``human_duration`` (the shortest duration with that wording), or None
    when ``text`` is not docker's wording. Used to estimate start times from "Up 5 minutes"."""
    match = _DURATION.fullmatch(text.strip())
    if not match:
        return None
    whole, about, count, unit = match.groups()
    if whole.lower() == "less than a second":
        return 0.0
    if about:
        return float(_DURATION_UNITS[about.lower()])
    unit = unit.lower()
    factor = _DURATION_UNITS.get(unit)
    if factor is None:
        return None
    value = float(int(count) * factor)
    return value - 1800.0 if unit in _ROUNDED_UNITS and value >= 1800 else value
