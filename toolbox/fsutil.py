"""File helpers the store, the Docker context writer and others share (no toolbox imports,
so any layer may use them)."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path


def atomic_write_text(path: Path, text: str, mode: int = 0o644) -> None:
    """Write ``text`` to a temp file beside ``path``, flush it to disk, then rename it over
    ``path``: a reader sees the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if os.name == "posix":
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
