"""Where Toolbox keeps its files.

platformdirs locations by default; ``TOOLBOX_HOME`` puts everything under one folder
(``data/``, ``cache/``, ``logs/``), which is what tests and portable installs use.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "Toolbox"
APP_AUTHOR = "Toolbox"


def _home() -> Path | None:
    value = os.environ.get("TOOLBOX_HOME")
    return Path(value).expanduser() if value else None


def data_dir() -> Path:
    """Machines, keys, certificates and disks."""
    home = _home()
    if home:
        return home / "data"
    return Path(platformdirs.user_data_dir(APP_NAME, APP_AUTHOR))


def cache_dir() -> Path:
    """Guest images and other things that can be fetched again."""
    home = _home()
    if home:
        return home / "cache"
    return Path(platformdirs.user_cache_dir(APP_NAME, APP_AUTHOR))


def log_dir() -> Path:
    """The app log and each machine's console log."""
    home = _home()
    if home:
        return home / "logs"
    return Path(platformdirs.user_log_dir(APP_NAME, APP_AUTHOR))


def config_dir() -> Path:
    """Preferences."""
    home = _home()
    if home:
        return home / "config"
    return Path(platformdirs.user_config_dir(APP_NAME, APP_AUTHOR))


def machines_dir() -> Path:
    return data_dir() / "machines"


def images_dir() -> Path:
    return cache_dir() / "images"


def ensure_dir(path: Path, private: bool = False) -> Path:
    """Create ``path`` (and parents); ``private`` makes it 0700 where the OS supports modes."""
    path.mkdir(parents=True, exist_ok=True)
    if private and os.name == "posix":
        path.chmod(0o700)
    return path
