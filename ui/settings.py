"""The app's preferences and remembered choices, stored with ``QSettings``.

Usage::

    prefs = Preferences.load()          # defaults for anything never saved
    if prefs.start_on_launch: ...
    prefs = replace(prefs, stop_on_quit=True)
    prefs.save()

``remembered_engine()``/``remember_engine()`` keep the engine switcher's last choice: a string
like ``machine:default``, ``local``, or ``context:NAME``. Tests redirect the storage with
``use_settings_file(path)`` (the ui test fixtures do it for every test), so the user's real
settings are never touched; with ``TOOLBOX_HOME`` set (tests, portable installs) they live in
``$TOOLBOX_HOME/settings.ini`` like everything else.

The window's layout (geometry, the page shown, each page's splitters and sort order) is kept
under ``layout/``: ``layout_value(key)`` / ``save_layout({key: value})``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from PySide6.QtCore import QSettings

ORGANIZATION = "Toolbox"
APPLICATION = "Toolbox"
_settings_file: Path | None = None

THEMES = ("system", "light", "dark")
NOTIFICATION_KINDS = ("container_exit", "container_unhealthy", "machine_stopped", "engine_lost")


def use_settings_file(path: Path | None) -> None:
    """Store settings in ``path`` (an INI file) instead of the platform's place; None resets."""
    global _settings_file
    _settings_file = path


def qsettings() -> QSettings:
    """The QSettings object every part of the app reads and writes through."""
    if _settings_file is not None:
        return QSettings(str(_settings_file), QSettings.Format.IniFormat)
    home = os.environ.get("TOOLBOX_HOME")
    if home:
        return QSettings(str(Path(home).expanduser() / "settings.ini"), QSettings.Format.IniFormat)
    return QSettings(ORGANIZATION, APPLICATION)


@dataclass(frozen=True)
class Preferences:
    """What the Preferences dialog edits. Field names are the QSettings keys (``prefs/NAME``)."""

    start_on_launch: bool = True
    stop_on_quit: bool = False
    terminal: str = ""  # "" means the platform's default terminal application
    theme: str = "system"
    default_driver: str = ""  # "" means automatic (VirtualBox when found, else QEMU)
    default_cpus: int = 2
    default_memory_mib: int = 2048
    default_disk_gib: int = 20
    notify_container_exit: bool = True
    notify_container_unhealthy: bool = True
    notify_machine_stopped: bool = True
    notify_engine_lost: bool = True
    tray_hint_shown: bool = False

    @classmethod
    def load(cls, settings: QSettings | None = None) -> Preferences:
        store = settings or qsettings()
        values: dict[str, object] = {}
        defaults = cls()
        for f in fields(cls):
            default = getattr(defaults, f.name)
            raw = store.value(f"prefs/{f.name}", None)
            if raw is None:
                continue
            values[f.name] = _coerce(raw, default)
        prefs = cls(**values)  # type: ignore[arg-type]
        if prefs.theme not in THEMES:
            prefs = cls(**{**values, "theme": "system"})  # type: ignore[arg-type]
        return prefs

    def save(self, settings: QSettings | None = None) -> None:
        store = settings or qsettings()
        for f in fields(self):
            store.setValue(f"prefs/{f.name}", getattr(self, f.name))
        store.sync()

    def notifies(self, kind: str) -> bool:
        """Whether notifications of ``kind`` (one of ``NOTIFICATION_KINDS``) are on."""
        return bool(getattr(self, f"notify_{kind}", False))


def _coerce(raw: object, default: object) -> object:
    """QSettings' INI backend returns strings; turn them back into the default's type."""
    if isinstance(default, bool):
        if isinstance(raw, bool):
            return raw
        return str(raw).strip().lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        try:
            return int(str(raw))
        except ValueError:
            return default
    return str(raw)


def remembered_engine(settings: QSettings | None = None) -> str:
    """The engine switcher's last choice (``machine:NAME``, ``local``, ``context:NAME``), or ""."""
    value = (settings or qsettings()).value("engine/choice", "")
    return str(value or "")


def remember_engine(choice: str, settings: QSettings | None = None) -> None:
    store = settings or qsettings()
    store.setValue("engine/choice", choice)
    store.sync()


def layout_value(key: str, settings: QSettings | None = None) -> object:
    """A remembered layout value (``layout/KEY``), or None when never saved."""
    return (settings or qsettings()).value(f"layout/{key}", None)


def save_layout(values: Mapping[str, object], settings: QSettings | None = None) -> None:
    """Remember layout values (``layout/KEY``: geometry bytes, "3,1" sort orders, page keys)."""
    store = settings or qsettings()
    for key, value in values.items():
        store.setValue(f"layout/{key}", value)
    store.sync()
