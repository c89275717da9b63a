"""``machines/<name>/machine.json``: read, written atomically, locked per machine, migrated.

The file carries a ``schema_version``; older files are migrated forward one version at a
time (``MIGRATIONS``), the original kept beside it as ``machine.json.v<N>.bak``. A file that
is not valid JSON, or not a machine record, raises ``MachineError`` naming the file and is
never overwritten or deleted by reading it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import filelock

from toolbox import paths
from toolbox.errors import MachineError, NotFoundError
from toolbox.fsutil import atomic_write_text as atomic_write_text  # re-exported: was here
from toolbox.machine.model import (
    SCHEMA_VERSION,
    CreatePhase,
    MachineSpec,
    PortBind,
    PortForward,
    Share,
    default_shares,
    validate_name,
)

MACHINE_FILE = "machine.json"
LOCK_FILE = ".lock"

RawRecord = dict[str, Any]


def _v1_to_v2(raw: RawRecord) -> RawRecord:
    """v2 added user port forwards (``forwards``), empty for existing machines."""
    out = dict(raw)
    out.setdefault("forwards", [])
    out["schema_version"] = 2
    return out


def _v2_to_v3(raw: RawRecord) -> RawRecord:
    """v3 added where published ports bind (``port_bind``, loopback) and the shared host
    folders (``shares``): existing machines get the same default share as new ones."""
    out = dict(raw)
    out.setdefault("port_bind", PortBind.LOOPBACK.value)
    out.setdefault("shares", [_share_to_raw(s) for s in default_shares()])
    out["schema_version"] = 3
    return out


def _share_to_raw(share: Share) -> RawRecord:
    return {
        "host_path": share.host_path,
        "guest_path": share.guest_path,
        "readonly": share.readonly,
    }


# MIGRATIONS[n] turns a version-n record into a version-(n+1) record.
MIGRATIONS: dict[int, Callable[[RawRecord], RawRecord]] = {1: _v1_to_v2, 2: _v2_to_v3}


def migrate(raw: RawRecord, path: Path | None = None) -> RawRecord:
    """Bring a raw record up to ``SCHEMA_VERSION`` one step at a time."""
    version = raw.get("schema_version")
    where = f" in {path}" if path else ""
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise MachineError(
            f"Machine record{where} has no valid schema_version",
            hint="Fix or remove the file, or remove the machine with `toolbox rm -f`.",
        )
    if version > SCHEMA_VERSION:
        raise MachineError(
            f"Machine record{where} is schema version {version}, newer than this Toolbox "
            f"understands ({SCHEMA_VERSION})",
            hint="Upgrade Toolbox; the file was written by a newer version and is left as is.",
        )
    while raw["schema_version"] < SCHEMA_VERSION:
        step = MIGRATIONS[raw["schema_version"]]
        raw = step(raw)
    return raw


def _type_error(path: Path, key: str, want: str) -> MachineError:
    return MachineError(
        f"Machine record {path} is damaged: {key!r} should be {want}",
        hint="Fix the file by hand, or remove the machine with `toolbox rm -f NAME`.",
    )


def _get(raw: RawRecord, key: str, kind: type, path: Path) -> Any:
    value = raw.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _type_error(path, key, kind.__name__)
    return value


def spec_from_raw(raw: RawRecord, path: Path) -> MachineSpec:
    """A ``MachineSpec`` from a current-version raw record, checking every field's type."""
    try:
        created = dt.datetime.fromisoformat(_get(raw, "created", str, path))
    except ValueError as exc:
        raise _type_error(path, "created", "an ISO 8601 time") from exc
    try:
        phase = CreatePhase(_get(raw, "create_phase", str, path))
    except ValueError as exc:
        raise _type_error(path, "create_phase", "a create phase") from exc
    forwards = []
    for item in _get(raw, "forwards", list, path):
        if not isinstance(item, dict):
            raise _type_error(path, "forwards", "a list of objects")
        forwards.append(
            PortForward(
                host_port=_get(item, "host_port", int, path),
                guest_port=_get(item, "guest_port", int, path),
                protocol=_get(item, "protocol", str, path),
                host_ip=_get(item, "host_ip", str, path),
            )
        )
    shares = []
    for item in _get(raw, "shares", list, path):
        if not isinstance(item, dict):
            raise _type_error(path, "shares", "a list of objects")
        shares.append(
            Share(
                host_path=_get(item, "host_path", str, path),
                guest_path=_get(item, "guest_path", str, path),
                readonly=_get(item, "readonly", bool, path),
            )
        )
    try:
        port_bind = PortBind(_get(raw, "port_bind", str, path))
    except ValueError as exc:
        raise _type_error(path, "port_bind", "loopback or published") from exc
    name = _get(raw, "name", str, path)
    try:
        validate_name(name)
    except Exception as exc:
        raise _type_error(path, "name", "a valid machine name") from exc
    return MachineSpec(
        name=name,
        driver=_get(raw, "driver", str, path),
        cpus=_get(raw, "cpus", int, path),
        memory_mib=_get(raw, "memory_mib", int, path),
        disk_gib=_get(raw, "disk_gib", int, path),
        image=_get(raw, "image", str, path),
        ssh_port=_get(raw, "ssh_port", int, path),
        engine_port=_get(raw, "engine_port", int, path),
        created=created,
        schema_version=_get(raw, "schema_version", int, path),
        provisioned=_get(raw, "provisioned", bool, path),
        create_phase=phase,
        ssh_user=_get(raw, "ssh_user", str, path),
        forwards=tuple(forwards),
        port_bind=port_bind,
        shares=tuple(shares),
    )


def spec_to_raw(spec: MachineSpec) -> RawRecord:
    return {
        "schema_version": SCHEMA_VERSION,
        "name": spec.name,
        "driver": spec.driver,
        "cpus": spec.cpus,
        "memory_mib": spec.memory_mib,
        "disk_gib": spec.disk_gib,
        "image": spec.image,
        "ssh_port": spec.ssh_port,
        "engine_port": spec.engine_port,
        "created": spec.created.isoformat(),
        "provisioned": spec.provisioned,
        "create_phase": spec.create_phase.value,
        "ssh_user": spec.ssh_user,
        "forwards": [
            {
                "host_port": f.host_port,
                "guest_port": f.guest_port,
                "protocol": f.protocol,
                "host_ip": f.host_ip,
            }
            for f in spec.forwards
        ],
        "port_bind": spec.port_bind.value,
        "shares": [_share_to_raw(s) for s in spec.shares],
    }


@dataclass(frozen=True)
class StoreEntry:
    """One folder in the store: its record, or why it could not be read."""

    name: str
    spec: MachineSpec | None
    error: MachineError | None


class MachineStore:
    """The machines folder. Reads need no lock (writes are atomic renames); every write and
    every long operation on a machine holds that machine's file lock."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else paths.machines_dir()
        self._locks: dict[str, filelock.FileLock] = {}
        self._locks_guard = threading.Lock()

    def dir_for(self, name: str) -> Path:
        """The machine's folder; the name is validated so it never leaves the store."""
        validate_name(name)
        path = self.root / name
        if path.resolve().parent != self.root.resolve():
            raise MachineError(f"Machine folder {path} is outside the store {self.root}")
        return path

    def file_for(self, name: str) -> Path:
        return self.dir_for(name) / MACHINE_FILE

    def exists(self, name: str) -> bool:
        return self.file_for(name).is_file()

    def names(self) -> list[str]:
        """Names of the folders holding a machine record, sorted."""
        if not self.root.is_dir():
            return []
        found = []
        for child in self.root.iterdir():
            try:
                validate_name(child.name)
            except Exception:
                continue
            if (child / MACHINE_FILE).is_file():
                found.append(child.name)
        return sorted(found)

    def load(self, name: str) -> MachineSpec:
        """Read (and, when older, migrate) a machine record."""
        path = self.file_for(name)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise NotFoundError(
                f"No machine named {name!r}",
                hint=f"`toolbox ls` lists the machines; `toolbox create {name}` makes this one.",
            ) from None
        except OSError as exc:
            raise MachineError(
                f"Cannot read {path}: {exc.strerror or exc}",
                hint="Check the file's permissions.",
            ) from exc
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise MachineError(
                f"Machine record {path} is not valid JSON ({exc})",
                hint=f"The file is left untouched: fix it by hand, or remove the machine with "
                f"`toolbox rm -f {name}`.",
            ) from exc
        if not isinstance(raw, dict):
            raise MachineError(
                f"Machine record {path} is not a JSON object",
                hint=f"The file is left untouched: fix it by hand, or remove the machine with "
                f"`toolbox rm -f {name}`.",
            )
        version = raw.get("schema_version")
        migrated = migrate(raw, path)
        spec = spec_from_raw(migrated, path)
        if spec.name != name:
            raise _type_error(path, "name", f"{name!r} (the folder's name)")
        if version != SCHEMA_VERSION:
            with self.lock(name):
                backup = path.with_name(f"{MACHINE_FILE}.v{version}.bak")
                if not backup.exists():
                    shutil.copy2(path, backup)
                self._write(spec)
        return spec

    def entries(self) -> list[StoreEntry]:
        """Every machine folder with its record or its error, so one bad file does not hide
        the others."""
        out = []
        for name in self.names():
            try:
                out.append(StoreEntry(name, self.load(name), None))
            except MachineError as exc:
                out.append(StoreEntry(name, None, exc))
        return out

    def save(self, spec: MachineSpec) -> None:
        with self.lock(spec.name):
            self._write(spec)

    def _write(self, spec: MachineSpec) -> None:
        directory = paths.ensure_dir(self.dir_for(spec.name), private=True)
        text = json.dumps(spec_to_raw(spec), indent=2, sort_keys=False) + "\n"
        atomic_write_text(directory / MACHINE_FILE, text)

    def _lock_object(self, name: str) -> filelock.FileLock:
        with self._locks_guard:
            lock = self._locks.get(name)
            if lock is None:
                directory = paths.ensure_dir(self.dir_for(name), private=True)
                lock = filelock.FileLock(directory / LOCK_FILE)
                self._locks[name] = lock
            return lock

    @contextlib.contextmanager
    def lock(self, name: str, timeout: float = 10.0) -> Iterator[None]:
        """Hold the machine's lock (reentrant in this thread; exclusive across threads and
        processes). Raises ``MachineError`` when another operation keeps it past ``timeout``."""
        lock = self._lock_object(name)
        try:
            lock.acquire(timeout=timeout)
        except filelock.Timeout:
            raise MachineError(
                f"Machine {name!r} is busy: another Toolbox operation is working on it",
                hint="Wait for it to finish (the app or another `toolbox` command), then retry.",
            ) from None
        try:
            yield
        finally:
            lock.release()

    def is_busy(self, name: str) -> bool:
        """True when some other thread or process holds the machine's lock right now."""
        path = self.dir_for(name) / LOCK_FILE
        if not path.exists():
            return False
        probe = filelock.FileLock(path)
        try:
            probe.acquire(timeout=0, blocking=False)
        except filelock.Timeout:
            return True
        probe.release()
        return False

    def delete(self, name: str) -> None:
        """Remove the machine's folder and everything in it (the caller holds the lock;
        the lock file goes last, after the lock is released)."""
        directory = self.dir_for(name)
        if not directory.exists():
            return
        for child in directory.iterdir():
            if child.name == LOCK_FILE:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()

    def forget_lock(self, name: str) -> None:
        """After ``delete`` and the lock's release: remove the lock file and the folder."""
        directory = self.dir_for(name)
        with self._locks_guard:
            self._locks.pop(name, None)
        with contextlib.suppress(FileNotFoundError):
            (directory / LOCK_FILE).unlink()
        with contextlib.suppress(OSError):
            directory.rmdir()
