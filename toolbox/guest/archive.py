"""Unpacking Debian's ``.tar.xz`` cloud images (a single ``disk.raw``) with the standard
library, so it works on macOS and Windows without tar or xz installed.

Runs of zeros are skipped with a seek rather than written, so the raw disk stays sparse
where the file system supports it (a 2 GiB disk takes a few hundred MB).
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path
from typing import BinaryIO

from toolbox.errors import ImageError
from toolbox.guest.download import Cancel, raise_if_cancelled
from toolbox.progress import Progress, ProgressCallback

BLOCK = 1024 * 1024


class _CountingReader:
    """A read-only file wrapper that reports how far into the compressed file we are."""

    def __init__(self, fh: BinaryIO, total: int, name: str, progress: ProgressCallback | None):
        self.fh, self.total, self.name, self.progress = fh, total, name, progress
        self.read_bytes = 0
        self._last_step = -1

    def read(self, size: int = -1) -> bytes:
        data = self.fh.read(size)
        self.read_bytes += len(data)
        step = int(self.read_bytes * 200 / self.total) if self.total else 0
        if self.progress is not None and step != self._last_step:
            self._last_step = step
            self.progress(
                Progress(
                    "extract",
                    f"Unpacking {self.name}",
                    min(1.0, self.read_bytes / self.total) if self.total else None,
                    self.read_bytes,
                    self.total,
                )
            )
        return data


def extract_raw_disk(
    archive: Path,
    dest: Path,
    progress: ProgressCallback | None = None,
    cancel: Cancel | None = None,
) -> Path:
    """Write the raw disk inside ``archive`` (a tar, optionally xz/gz-compressed) to ``dest``.

    The member is ``disk.raw`` (Debian's name) or else the only regular file ending in
    ``.raw`` or ``.img``.
    """
    total = archive.stat().st_size
    try:
        with open(archive, "rb") as raw_fh:
            reader = _CountingReader(raw_fh, total, archive.name, progress)
            with tarfile.open(fileobj=reader, mode="r|*") as tar:  # type: ignore[call-overload]
                for member in tar:
                    if not member.isfile() or not _is_disk(member.name):
                        continue
                    source = tar.extractfile(member)
                    if source is None:
                        continue
                    _copy_sparse(source, dest, member.size, cancel)
                    break
                else:
                    raise ImageError(
                        f"{archive.name} holds no raw disk (disk.raw)",
                        hint="Use Debian's .tar.xz cloud images, or a qcow2/raw/vmdk/vdi file.",
                    )
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        dest.unlink(missing_ok=True)
        raise ImageError(
            f"Cannot unpack {archive.name}: {exc}",
            hint="The archive is damaged; remove it and download it again.",
        ) from exc
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    if progress is not None:
        progress(Progress("extract", f"Unpacked {archive.name}", 1.0, total, total, done=True))
    return dest


def _is_disk(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return base == "disk.raw" or base.endswith((".raw", ".img"))


def _copy_sparse(source: BinaryIO, dest: Path, size: int, cancel: Cancel | None) -> None:
    zeros = bytes(BLOCK)
    written = 0
    with open(dest, "wb") as out:
        while written < size:
            raise_if_cancelled(cancel)
            block = source.read(min(BLOCK, size - written))
            if not block:
                raise ImageError(
                    f"The archive ended early ({written:,} of {size:,} bytes)",
                    hint="The archive is damaged; remove it and download it again.",
                )
            if block == zeros[: len(block)]:
                out.seek(len(block), os.SEEK_CUR)
            else:
                out.write(block)
            written += len(block)
        out.truncate(written)
