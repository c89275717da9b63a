"""Toolbox's bundled files (app icons, toolbar and state icons), found at run time.

Works from the source tree, from an installed wheel (package data) and from a PyInstaller
bundle, where the files sit under ``sys._MEIPASS/resources``. No Qt here: ``resources.qt``
turns these files into ``QIcon``s, and the packaging scripts use the paths alone.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path

from toolbox.errors import ToolboxError

# Toolbar icons under icons/<name>.svg; they draw in ``currentColor`` so the UI can tint them.
ACTION_ICONS: tuple[str, ...] = (
    "start",
    "stop",
    "restart",
    "pause",
    "unpause",
    "kill",
    "remove",
    "pull",
    "push",
    "run",
    "terminal",
    "logs",
    "inspect",
    "open-browser",
    "tag",
    "prune",
    "add",
    "refresh",
)
APP_ICON_SIZES: tuple[int, ...] = (16, 24, 32, 48, 64, 128, 256, 512, 1024)


class ResourceMissing(ToolboxError):
    """A file that ships with Toolbox is not where it should be."""

    def __init__(self, path: Path):
        super().__init__(
            f"Toolbox resource missing: {path}",
            hint="Reinstall Toolbox; in a source checkout, run packaging/make_icons.py.",
        )
        self.path = path


class StateTone(Enum):
    """The colour family a state is shown in; the value names ``icons/state-<value>.svg``."""

    RUNNING = "running"
    PAUSED = "paused"
    BUSY = "busy"
    STOPPED = "stopped"
    ERROR = "error"
    UNKNOWN = "unknown"


# Container states (engine), machine states (MachineState) and hypervisor states (VMState),
# by their lower-cased enum values.
_TONES: dict[str, StateTone] = {
    "running": StateTone.RUNNING,
    "paused": StateTone.PAUSED,
    "restarting": StateTone.BUSY,
    "removing": StateTone.BUSY,
    "creating": StateTone.BUSY,
    "starting": StateTone.BUSY,
    "stopping": StateTone.BUSY,
    "created": StateTone.STOPPED,
    "exited": StateTone.STOPPED,
    "stopped": StateTone.STOPPED,
    "saved": StateTone.STOPPED,
    "dead": StateTone.ERROR,
    "error": StateTone.ERROR,
    "aborted": StateTone.ERROR,
}


def root() -> Path:
    """The folder holding ``app/`` and ``icons/``."""
    bundle = getattr(sys, "_MEIPASS", None)
    if getattr(sys, "frozen", False) and bundle:
        return Path(bundle) / "resources"
    return Path(__file__).resolve().parent


def path(*parts: str) -> Path:
    """A resource file by its parts under ``root()``; raises ResourceMissing if absent."""
    found = root().joinpath(*parts)
    if not found.is_file():
        raise ResourceMissing(found)
    return found


def icon_path(name: str) -> Path:
    """A toolbar icon (one of ``ACTION_ICONS``) as SVG."""
    if name not in ACTION_ICONS:
        raise ResourceMissing(root() / "icons" / f"{name}.svg")
    return path("icons", f"{name}.svg")


def state_tone(state: Enum | str) -> StateTone:
    """The tone of a container, machine or VM state (an enum member or its value)."""
    value = state.value if isinstance(state, Enum) else state
    return _TONES.get(str(value).strip().lower(), StateTone.UNKNOWN)


def state_icon_path(state: Enum | str | StateTone) -> Path:
    """The coloured dot for a state, as SVG."""
    tone = state if isinstance(state, StateTone) else state_tone(state)
    return path("icons", f"state-{tone.value}.svg")


def app_icon_png(size: int) -> Path:
    """The app icon as a square PNG of ``size`` px (one of ``APP_ICON_SIZES``)."""
    if size not in APP_ICON_SIZES:
        raise ResourceMissing(root() / "app" / "png" / f"toolbox-{size}.png")
    return path("app", "png", f"toolbox-{size}.png")


def app_icon_file(kind: str) -> Path:
    """The app icon container for a platform: ``"icns"`` (macOS), ``"ico"`` (Windows),
    or the ``"svg"`` master."""
    if kind not in ("icns", "ico", "svg"):
        raise ValueError(f"unknown app icon kind {kind!r}")
    return path("app", f"toolbox.{kind}")


def data_files() -> list[Path]:
    """Every file a bundle must carry (what the PyInstaller spec and package data include)."""
    base = root()
    return sorted(
        p
        for sub in ("app", "icons")
        for p in (base / sub).rglob("*")
        if p.is_file() and p.suffix in (".svg", ".png", ".icns", ".ico")
    )
