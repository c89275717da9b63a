"""Disk usage and VM process start times from real files and processes."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from toolbox.machine.usage import (
    MachineUsage,
    allocated_bytes,
    disk_files,
    disk_used,
    machine_usage,
    process_started_at,
    qemu_started_at,
    read_pid,
)

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc")


def sparse(path: Path, size: int, data: bytes) -> Path:
    with open(path, "wb") as fh:
        fh.truncate(size)
        fh.write(data)
    return path


def test_disk_used_counts_allocated_blocks_not_the_apparent_size(tmp_path: Path) -> None:
    overlay = sparse(tmp_path / "disk.qcow2", 1024**3, os.urandom(1024 * 1024))
    vbox = tmp_path / "default"
    vbox.mkdir()
    vdi = sparse(vbox / "disk.vdi", 512 * 1024**2, os.urandom(64 * 1024))
    (tmp_path / "seed.iso").write_bytes(b"x" * 4096)  # not a disk of the machine
    (tmp_path / "qemu.log").write_text("log")
    assert disk_files(tmp_path) == [vbox / "disk.vdi", tmp_path / "disk.qcow2"]
    used = disk_used(tmp_path)
    assert used == allocated_bytes(overlay) + allocated_bytes(vdi)
    if hasattr(os.stat(overlay), "st_blocks"):
        assert 1024 * 1024 <= used < 16 * 1024**2  # far below the 1.5 GiB the files claim
    assert disk_used(tmp_path / "default" / "nothing-here") is None
    assert disk_used(vbox) == allocated_bytes(vdi)


def test_read_pid_rejects_junk(tmp_path: Path) -> None:
    pidfile = tmp_path / "qemu.pid"
    assert read_pid(pidfile) is None
    pidfile.write_text("12345\n")
    assert read_pid(pidfile) == 12345
    for junk in ("", "abc", "-4", "0"):
        pidfile.write_text(junk)
        assert read_pid(pidfile) is None


@linux_only
def test_process_start_time_from_proc(tmp_path: Path) -> None:
    before = dt.datetime.now(dt.UTC)
    proc = subprocess.Popen(["sleep", "30"])
    after = dt.datetime.now(dt.UTC)
    try:
        started = process_started_at(proc.pid)
        assert started is not None
        # /proc/stat's boot time has whole seconds: allow one second either way.
        assert before - dt.timedelta(seconds=1.5) <= started <= after + dt.timedelta(seconds=1.5)
        (tmp_path / "qemu.pid").write_text(f"{proc.pid}\n")
        assert qemu_started_at(tmp_path) == started
        usage = machine_usage(tmp_path, "qemu", running=True)
        assert usage.started_at == started
        assert usage.uptime(started + dt.timedelta(seconds=90)) == 90.0
    finally:
        proc.kill()
        proc.wait()
    assert process_started_at(proc.pid) is None  # gone


def test_pidfile_time_when_proc_does_not_know_the_process(tmp_path: Path) -> None:
    pidfile = tmp_path / "qemu.pid"
    pidfile.write_text("4\n")
    os.utime(pidfile, (1_700_000_000, 1_700_000_000))
    empty_proc = tmp_path / "proc"
    empty_proc.mkdir()
    assert process_started_at(4, empty_proc) is None
    # QEMU writes its pid file as it starts: that time stands in (and is all macOS has).
    assert qemu_started_at(tmp_path, empty_proc) == dt.datetime.fromtimestamp(1_700_000_000, dt.UTC)


def test_only_a_running_qemu_machine_has_a_start_time(tmp_path: Path) -> None:
    (tmp_path / "qemu.pid").write_text(f"{os.getpid()}\n")
    assert machine_usage(tmp_path, "qemu", running=False).started_at is None
    assert machine_usage(tmp_path, "virtualbox", running=True).started_at is None
    assert machine_usage(tmp_path, "qemu", running=True).started_at is not None
    assert MachineUsage(None, None).uptime() is None
