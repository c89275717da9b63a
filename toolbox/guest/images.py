"""The guest image cache: named images with JSON metadata, the default image per hypervisor,
and ``--image NAME|PATH|URL`` resolution.

Layout: ``<root>/<name>/image.json`` beside ``disk.<format>`` (and ``vmlinuz`` / ``initrd.img``
for images that boot by direct kernel boot). ``root`` defaults to ``paths.images_dir()``.
A name is validated before it touches the file system, so it never becomes a path outside
the cache.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from filelock import FileLock

from toolbox import paths
from toolbox.errors import ImageError, NotFoundError, UsageError, ValidationError
from toolbox.guest.archive import extract_raw_disk
from toolbox.guest.download import Cancel, download, raise_if_cancelled
from toolbox.progress import Progress, ProgressCallback

if TYPE_CHECKING:
    from toolbox.drivers.base import BootImage

METADATA_FILE = "image.json"
METADATA_VERSION = 1
KERNEL_FILE = "vmlinuz"
INITRD_FILE = "initrd.img"
DISK_FORMATS = ("qcow2", "raw", "vmdk", "vdi", "vhd", "vhdx")

# Where Debian publishes its cloud images; TOOLBOX_IMAGE_BASE_URL points at a mirror instead.
DEBIAN_BASE_URL = "https://cloud.debian.org/images/cloud/bookworm/latest/"
BASE_URL_ENV = "TOOLBOX_IMAGE_BASE_URL"
LOCAL_IMAGE_NAME = "debian-12-local"
# The same with the engine, sshfs and AppArmor baked in (``toolbox image build --engine``).
LOCAL_ENGINE_IMAGE_NAME = "debian-12-local-engine"

_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,79}")
_COPY_CHUNK = 1024 * 1024


def validate_image_name(name: str) -> str:
    """Return ``name`` if it is a valid image name, else raise ValidationError.

    Lower-case letters, digits, ``.``, ``_`` and ``-``, starting with a letter or digit,
    at most 80 characters: no separators, so a name can never leave the cache folder.
    """
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValidationError(
            "image",
            f"Invalid image name: {name!r}",
            hint="Use lower-case letters, digits, '.', '_' and '-', starting with a letter "
            "or digit (at most 80 characters).",
        )
    return name


def name_from_filename(filename: str) -> str:
    """A valid image name derived from a file name or URL path (extensions dropped)."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1].lower()
    for ext in (
        ".tar.xz",
        ".tar.gz",
        ".tar",
        ".xz",
        ".qcow2",
        ".img",
        ".raw",
        ".vmdk",
        ".vdi",
        ".vhdx",
        ".vhd",
    ):
        if base.endswith(ext) and len(base) > len(ext):
            base = base[: -len(ext)]
            break
    cleaned = re.sub(r"[^a-z0-9._-]+", "-", base).lstrip("._-")[:80].rstrip("._-")
    return cleaned or "image"


def host_arch() -> str:
    """The host's architecture in Debian's spelling (``amd64`` or ``arm64``)."""
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64"):
        return "amd64"
    if machine in ("arm64", "aarch64"):
        return "arm64"
    raise ImageError(
        f"No guest image for this host's architecture ({platform.machine()})",
        hint="Toolbox runs on x86-64 and ARM64 hosts only; pass --image with an image for "
        "your architecture.",
    )


def detect_format(path: Path) -> str:
    """Guess a disk image's format from its magic bytes: qcow2, vdi, vmdk, vhdx, vhd, xz, raw."""
    with open(path, "rb") as fh:
        head = fh.read(512)
        if head.startswith(b"QFI\xfb"):
            return "qcow2"
        if head.startswith(b"\xfd7zXZ\x00"):
            return "xz"
        if head.startswith(b"KDMV") or head.startswith(b"# Disk DescriptorFile"):
            return "vmdk"
        if head.startswith(b"vhdxfile"):
            return "vhdx"
        if head.startswith(b"conectix"):
            return "vhd"  # dynamic VHD: footer copy at the start
        if len(head) >= 68 and head[64:68] == b"\x7f\x10\xda\xbe":
            return "vdi"
        size = os.fstat(fh.fileno()).st_size
        if size >= 512:
            fh.seek(size - 512)
            if fh.read(8) == b"conectix":
                return "vhd"  # fixed VHD: footer at the end only
    return "raw"


@dataclass(frozen=True)
class CachedImage:
    """An image in the cache: its disk file, and for direct kernel boot its kernel/initrd.

    ``sha512`` is the checksum of what was downloaded or built (for an image extracted from
    an archive, of the archive); ``recipe`` is the build recipe's hash for local builds.
    """

    name: str
    path: Path
    format: str
    arch: str
    size: int
    sha512: str | None
    source: str
    created: dt.datetime
    kernel: Path | None = None
    initrd: Path | None = None
    cmdline: str | None = None
    recipe: str | None = None

    def boot_image(self) -> BootImage:
        """The driver's view of this image."""
        from toolbox.drivers.base import BootImage

        return BootImage(
            disk=self.path,
            format=self.format,
            kernel=self.kernel,
            initrd=self.initrd,
            cmdline=self.cmdline,
        )

    @property
    def directory(self) -> Path:
        return self.path.parent

    def to_json(self) -> dict[str, Any]:
        """Metadata as stored in image.json; file paths relative to the image's folder."""

        def rel(p: Path | None) -> str | None:
            return None if p is None else p.name

        return {
            "schema_version": METADATA_VERSION,
            "name": self.name,
            "file": rel(self.path),
            "format": self.format,
            "arch": self.arch,
            "size": self.size,
            "sha512": self.sha512,
            "source": self.source,
            "created": self.created.astimezone(dt.UTC).isoformat(),
            "kernel": rel(self.kernel),
            "initrd": rel(self.initrd),
            "cmdline": self.cmdline,
            "recipe": self.recipe,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], directory: Path) -> CachedImage:
        """Read image.json contents; files are resolved inside ``directory`` only."""

        def inside(value: Any) -> Path | None:
            if value is None:
                return None
            name = str(value)
            if name in ("", ".", "..") or "/" in name or "\\" in name:
                raise ValueError(f"bad file name {name!r}")
            return directory / name

        version = int(data.get("schema_version", 0))
        if version > METADATA_VERSION:
            raise ValueError(f"written by a newer Toolbox (schema {version})")
        disk = inside(data["file"])
        assert disk is not None
        created = dt.datetime.fromisoformat(str(data["created"]))
        if created.tzinfo is None:
            created = created.replace(tzinfo=dt.UTC)
        fmt = str(data["format"])
        if fmt not in DISK_FORMATS:
            raise ValueError(f"unknown disk format {fmt!r}")
        return cls(
            name=validate_image_name(str(data["name"])),
            path=disk,
            format=fmt,
            arch=str(data["arch"]),
            size=int(data["size"]),
            sha512=data.get("sha512"),
            source=str(data.get("source", "")),
            created=created,
            kernel=inside(data.get("kernel")),
            initrd=inside(data.get("initrd")),
            cmdline=data.get("cmdline"),
            recipe=data.get("recipe"),
        )


@dataclass(frozen=True)
class RemoteImage:
    """A published image: where it is, how to check it, what it becomes in the cache."""

    name: str
    url: str
    sums_url: str
    format: str  # the disk format once in the cache
    archive: bool  # a .tar.xz holding disk.raw, extracted on arrival
    arch: str


def default_image(driver: str, arch: str | None = None, base_url: str | None = None) -> RemoteImage:
    """The Debian 12 cloud image for ``driver`` on ``arch``.

    QEMU gets ``genericcloud`` (the cloud kernel, virtio only) as qcow2, used as is.
    VirtualBox gets ``generic`` (the full kernel: AHCI/SATA and e1000 drivers for
    VirtualBox's default hardware) as ``.tar.xz`` holding ``disk.raw``: it is the smallest
    download that ``VBoxManage convertfromraw`` turns into a VDI without qemu-img.
    """
    arch = arch or host_arch()
    base = base_url or os.environ.get(BASE_URL_ENV) or DEBIAN_BASE_URL
    if not base.endswith("/"):
        base += "/"
    if driver == "qemu":
        stem, ext, fmt, archive = f"debian-12-genericcloud-{arch}", "qcow2", "qcow2", False
    elif driver == "virtualbox":
        stem, ext, fmt, archive = f"debian-12-generic-{arch}", "tar.xz", "raw", True
    else:
        raise UsageError(
            f"No default guest image for the driver {driver!r}",
            hint="Use the qemu or virtualbox driver, or pass --image NAME|PATH|URL.",
        )
    return RemoteImage(stem, f"{base}{stem}.{ext}", f"{base}SHA512SUMS", fmt, archive, arch)


def _file_sha512(path: Path) -> str:
    digest = hashlib.sha512()
    with open(path, "rb") as fh:
        while chunk := fh.read(_COPY_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class ImageStore:
    """The guest image cache (``paths.images_dir()`` unless ``root`` is given).

    ``base_url`` overrides where the default images are fetched from (a mirror of
    ``cloud.debian.org/images/cloud/bookworm/latest/``).
    """

    def __init__(self, root: Path | None = None, base_url: str | None = None):
        self.root = Path(root) if root is not None else paths.images_dir()
        self.base_url = base_url

    # -- reading -------------------------------------------------------------------------

    def _dir(self, name: str) -> Path:
        path = self.root / validate_image_name(name)
        # Belt and braces: a valid name has no separators, so this always holds.
        if path.resolve().parent != self.root.resolve():
            raise ValidationError("image", f"Invalid image name: {name!r}")
        return path

    def _load(self, directory: Path) -> CachedImage:
        data = json.loads((directory / METADATA_FILE).read_text(encoding="utf-8"))
        image = CachedImage.from_json(data, directory)
        if image.name != directory.name:
            raise ValueError(f"metadata names {image.name!r}, folder is {directory.name!r}")
        if not image.path.is_file():
            raise ValueError(f"disk file {image.path.name} is missing")
        return image

    def list(self) -> list[CachedImage]:
        """Every usable image in the cache, by name; damaged entries are skipped."""
        if not self.root.is_dir():
            return []
        found = []
        for entry in sorted(self.root.iterdir()):
            if not entry.is_dir() or not _NAME_RE.fullmatch(entry.name):
                continue
            try:
                found.append(self._load(entry))
            except (OSError, ValueError, KeyError, TypeError, ValidationError):
                continue
        return found

    def get(self, name: str) -> CachedImage:
        """The cached image called ``name``; NotFoundError when there is none."""
        directory = self._dir(name)
        if not (directory / METADATA_FILE).is_file():
            raise NotFoundError(
                f"No guest image named {name!r} in the cache",
                hint="`toolbox image ls` lists cached images; `toolbox image build` builds "
                f"{LOCAL_IMAGE_NAME!r} offline; --image also takes a file path or URL.",
            )
        try:
            return self._load(directory)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ImageError(
                f"The cached image {name!r} is damaged: {exc}",
                hint=f"Remove it with `toolbox image rm {name}` and fetch or build it again.",
            ) from exc

    def exists(self, name: str) -> bool:
        try:
            self.get(name)
        except (NotFoundError, ImageError):
            return False
        return True

    # -- writing -------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, name: str, timeout: float = 3600) -> Iterator[None]:
        """Hold the cross-process lock for ``name`` (one writer per image at a time)."""
        validate_image_name(name)
        lock_dir = paths.ensure_dir(self.root / ".locks")
        with FileLock(str(lock_dir / f"{name}.lock"), timeout=timeout):
            yield

    def staging_dir(self, purpose: str) -> Path:
        """A fresh folder inside the cache (same file system, so results can be renamed in)."""
        paths.ensure_dir(self.root)
        path = Path(tempfile.mkdtemp(prefix=f".{purpose}-", dir=self.root))
        path.chmod(0o755)
        return path

    def add(
        self,
        name: str,
        disk: Path,
        *,
        format: str,
        arch: str,
        source: str,
        sha512: str | None = None,
        kernel: Path | None = None,
        initrd: Path | None = None,
        cmdline: str | None = None,
        recipe: str | None = None,
    ) -> CachedImage:
        """Move ``disk`` (and kernel/initrd) into the cache as ``name``, replacing any image
        of that name atomically. The caller holds ``lock(name)`` when others may race."""
        target = self._dir(name)
        if format not in DISK_FORMATS:
            raise ImageError(
                f"Unsupported disk format {format!r}",
                hint="Use a qcow2, raw, vmdk, vdi, vhd or vhdx image.",
            )
        staging = self.staging_dir(f"add-{name}")
        try:
            disk_dst = staging / f"disk.{format}"
            shutil.move(str(disk), disk_dst)
            kernel_dst = initrd_dst = None
            if kernel is not None:
                kernel_dst = staging / KERNEL_FILE
                shutil.move(str(kernel), kernel_dst)
            if initrd is not None:
                initrd_dst = staging / INITRD_FILE
                shutil.move(str(initrd), initrd_dst)
            image = CachedImage(
                name=name,
                path=target / disk_dst.name,
                format=format,
                arch=arch,
                size=disk_dst.stat().st_size,
                sha512=sha512,
                source=source,
                created=dt.datetime.now(dt.UTC).replace(microsecond=0),
                kernel=None if kernel_dst is None else target / KERNEL_FILE,
                initrd=None if initrd_dst is None else target / INITRD_FILE,
                cmdline=cmdline,
                recipe=recipe,
            )
            meta = staging / METADATA_FILE
            meta.write_text(json.dumps(image.to_json(), indent=2) + "\n", encoding="utf-8")
            old = None
            if target.exists():
                old = self.root / f".old-{name}-{uuid.uuid4().hex[:8]}"
                os.replace(target, old)
            os.replace(staging, target)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
            return image
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def remove(self, name: str) -> None:
        """Delete the image ``name`` and its files; NotFoundError when there is none."""
        target = self._dir(name)
        if not target.exists():
            raise NotFoundError(
                f"No guest image named {name!r} in the cache",
                hint="`toolbox image ls` lists cached images.",
            )
        with self.lock(name):
            trash = self.root / f".old-{name}-{uuid.uuid4().hex[:8]}"
            os.replace(target, trash)
            shutil.rmtree(trash, ignore_errors=True)

    def import_file(
        self,
        path: Path,
        name: str | None = None,
        progress: ProgressCallback | None = None,
        cancel: Cancel | None = None,
    ) -> CachedImage:
        """Copy a disk image (qcow2, raw, vmdk, vdi, vhd, vhdx, or a .tar.xz holding a raw
        disk) into the cache as ``name`` (default: derived from the file name)."""
        path = Path(path).expanduser()
        if not path.is_file():
            raise NotFoundError(
                f"No such image file: {path}",
                hint="Give the path of a disk image (qcow2, raw, vmdk, vdi, vhd or vhdx).",
            )
        name = validate_image_name(name or name_from_filename(path.name))
        source = str(path.resolve())
        with self.lock(name):
            staging = self.staging_dir(f"import-{name}")
            try:
                copy = staging / "incoming"
                sha512 = _copy_with_hash(path, copy, progress, cancel)
                return self._add_arrived(name, copy, source, sha512, None, progress, cancel)
            finally:
                shutil.rmtree(staging, ignore_errors=True)

    def _add_arrived(
        self,
        name: str,
        file: Path,
        source: str,
        sha512: str | None,
        arch: str | None,
        progress: ProgressCallback | None,
        cancel: Cancel | None,
    ) -> CachedImage:
        """Add a file that just arrived (copied or downloaded): unpack an archive, detect the
        format, store it."""
        fmt = detect_format(file)
        if fmt == "xz":
            raw = file.with_name("disk.raw")
            extract_raw_disk(file, raw, progress=progress, cancel=cancel)
            file.unlink()
            file, fmt = raw, "raw"
        return self.add(
            name, file, format=fmt, arch=arch or host_arch(), source=source, sha512=sha512
        )

    # -- resolving --------------------------------------------------------------------------

    def resolve(
        self,
        spec: str | None,
        driver: str,
        progress: ProgressCallback | None = None,
        cancel: Cancel | None = None,
    ) -> CachedImage:
        """Turn ``--image`` into a cached image.

        None means the default Debian 12 image for ``driver`` and this host (downloaded and
        verified on first use); otherwise a cached name, a file path, or an http(s) URL.
        """
        if spec is None or spec == "":
            return self.fetch_default(driver, progress=progress, cancel=cancel)
        if spec.startswith(("http://", "https://")):
            return self.fetch_url(spec, progress=progress, cancel=cancel)
        if _NAME_RE.fullmatch(spec) and (self.root / spec / METADATA_FILE).is_file():
            return self.get(spec)
        candidate = Path(spec).expanduser()
        if candidate.is_file():
            return self._import_once(candidate, progress, cancel)
        if _NAME_RE.fullmatch(spec):
            return self.get(spec)  # raises NotFoundError with the hint
        raise NotFoundError(
            f"No guest image {spec!r}: not a cached name, an existing file or an http(s) URL",
            hint="`toolbox image ls` lists cached images; --image takes NAME, PATH or URL.",
        )

    def _import_once(
        self, path: Path, progress: ProgressCallback | None, cancel: Cancel | None
    ) -> CachedImage:
        """Import a file unless a copy of it, made after its last change, is cached."""
        source = str(path.resolve())
        name = self._name_for(name_from_filename(path.name), source)
        changed = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)
        if self.exists(name):
            image = self.get(name)
            if image.created >= changed.replace(microsecond=0):
                return image
        return self.import_file(path, name=name, progress=progress, cancel=cancel)

    def _name_for(self, name: str, source: str) -> str:
        """``name``, unless an image from another source holds it: then ``name-<hash>``,
        so resolving a path or URL never replaces an unrelated cached image."""
        if not self.exists(name) or self.get(name).source == source:
            return name
        suffix = hashlib.sha256(source.encode()).hexdigest()[:8]
        return f"{name[:71]}-{suffix}"

    def fetch_default(
        self,
        driver: str,
        arch: str | None = None,
        progress: ProgressCallback | None = None,
        cancel: Cancel | None = None,
    ) -> CachedImage:
        """The default image for ``driver``: from the cache, else downloaded and verified."""
        remote = default_image(driver, arch, self.base_url)
        if self.exists(remote.name):
            return self.get(remote.name)
        try:
            return self._fetch(
                remote.name, remote.url, remote.sums_url, remote.arch, progress, cancel
            )
        except ImageError as exc:
            hint = f"{exc.hint} {self._offline_hint()}" if exc.hint else self._offline_hint()
            raise ImageError(exc.message, hint=hint, details=exc.details) from exc

    def _offline_hint(self) -> str:
        if self.exists(LOCAL_IMAGE_NAME):
            return (
                f"Without internet, use the image built offline: --image {LOCAL_IMAGE_NAME} "
                "(`toolbox image build` makes a fresh one)."
            )
        return (
            "Without internet, `toolbox image build` (Linux) builds an equivalent image "
            f"offline; then use --image {LOCAL_IMAGE_NAME}."
        )

    def fetch_url(
        self,
        url: str,
        name: str | None = None,
        sums_url: str | None = None,
        progress: ProgressCallback | None = None,
        cancel: Cancel | None = None,
    ) -> CachedImage:
        """An image given by URL: from the cache when that URL was fetched before."""
        filename = unquote(urlparse(url).path.rsplit("/", 1)[-1])
        if name is None:
            name = self._name_for(name_from_filename(filename or "image"), url)
        validate_image_name(name)
        if self.exists(name) and self.get(name).source == url:
            return self.get(name)
        return self._fetch(name, url, sums_url, None, progress, cancel)

    def _fetch(
        self,
        name: str,
        url: str,
        sums_url: str | None,
        arch: str | None,
        progress: ProgressCallback | None,
        cancel: Cancel | None,
    ) -> CachedImage:
        with self.lock(name):
            if self.exists(name) and self.get(name).source == url:
                return self.get(name)  # another process fetched it while we waited
            filename = unquote(urlparse(url).path.rsplit("/", 1)[-1]) or name
            downloads = paths.ensure_dir(self.root / ".downloads")
            dest = downloads / f"{name}--{name_from_filename(filename)}{_suffix(filename)}"
            result = download(url, dest, sums_url=sums_url, progress=progress, cancel=cancel)
            raise_if_cancelled(cancel)
            staging = self.staging_dir(f"fetch-{name}")
            try:
                arrived = staging / "incoming"
                os.replace(result.path, arrived)
                return self._add_arrived(name, arrived, url, result.sha512, arch, progress, cancel)
            finally:
                shutil.rmtree(staging, ignore_errors=True)


def _suffix(filename: str) -> str:
    lowered = filename.lower()
    for ext in (".tar.xz", ".qcow2", ".raw", ".img", ".vmdk", ".vdi", ".vhdx", ".vhd"):
        if lowered.endswith(ext):
            return ext
    return ""


def _copy_with_hash(
    src: Path, dst: Path, progress: ProgressCallback | None, cancel: Cancel | None
) -> str:
    """Copy ``src`` to ``dst`` (keeping runs of zeros sparse) and return its SHA-512."""
    total = src.stat().st_size
    digest = hashlib.sha512()
    done = 0
    zeros = bytes(_COPY_CHUNK)
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while chunk := fin.read(_COPY_CHUNK):
            raise_if_cancelled(cancel)
            digest.update(chunk)
            if chunk == zeros[: len(chunk)]:
                fout.seek(len(chunk), os.SEEK_CUR)
            else:
                fout.write(chunk)
            done += len(chunk)
            if progress is not None:
                progress(
                    Progress(
                        "import",
                        f"Copying {src.name}",
                        done / total if total else None,
                        done,
                        total,
                    )
                )
        fout.truncate(done)
    if progress is not None:
        progress(Progress("import", f"Copied {src.name}", 1.0, total, total, done=True))
    return digest.hexdigest()


__all__ = [
    "LOCAL_ENGINE_IMAGE_NAME",
    "LOCAL_IMAGE_NAME",
    "CachedImage",
    "ImageStore",
    "RemoteImage",
    "default_image",
    "detect_format",
    "host_arch",
    "name_from_filename",
    "validate_image_name",
]
