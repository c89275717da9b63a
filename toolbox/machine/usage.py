"""What a machine uses on the host: the disk space its disk files take, and since when its
hypervisor process runs. Local reads only (``os.stat``, ``/proc``): cheap enough for a list
refreshed every few seconds, and never a network or hypervisor call.

``MachineService.usage(name)`` is the entry point; the functions here take plain paths so they
are tested on real files.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from dataclasses import dataclass
from pathlib import Path

#: Disk image files a machine folder holds: QEMU's overlay, VirtualBox's disks.
DISK_SUFFIXES = (".qcow2", ".vdi", ".vmdk", ".raw", ".img")
#: QEMU writes its pid here when it starts (``-pidfile``).
QEMU_PIDFILE = "qemu.pid"


@dataclass(frozen=True)
class MachineUsage:
    """``disk_used``: bytes allocated on the host by the machine's disk files (sparse and
    thin images count what they really take), None when there is none. ``started_at``: when
    the hypervisor process started (UTC), None when unknown or not running."""

    disk_used: int | None
    started_at: dt.datetime | None

    def uptime(self, now: dt.datetime | None = None) -> float | None:
        """Seconds since the hypervisor process started, or None."""
        if self.started_at is None:
            return None
        now = now or dt.datetime.now(dt.UTC)
        return max(0.0, (now - self.started_at).total_seconds())


def allocated_bytes(path: Path) -> int:
    """The space a file takes on disk (``st_blocks`` * 512), its size where there are no
    block counts (Windows)."""
    st = path.stat()
    blocks = getattr(st, "st_blocks", None)
    return int(blocks) * 512 if blocks is not None else int(st.st_size)


def disk_files(directory: Path) -> list[Path]:
    """The machine's disk images: in its folder and one level below (VirtualBox keeps the VM
    and its snapshots in a subfolder named after it)."""
    found: list[Path] = []
    for pattern in ("*", "*/*", "*/Snapshots/*"):
        for path in directory.glob(pattern):
            if path.suffix.lower() in DISK_SUFFIXES and path.is_file():
                found.append(path)
    return sorted(set(found))


def disk_used(directory: Path) -> int | None:
    """Bytes allocated by the disk files in ``directory``; None when it holds none."""
    files = disk_files(directory)
    total = 0
    for path in files:
        try:
            total += allocated_bytes(path)
        except OSError:  # removed meanwhile
            continue
    return total if files else None


def read_pid(pidfile: Path) -> int | None:
    try:
        text = pidfile.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def process_started_at(pid: int, proc: Path = Path("/proc")) -> dt.datetime | None:
    """When process ``pid`` started, from ``/proc/PID/stat`` (field 22, clock ticks after
    boot) and the boot time in ``/proc/stat`` (``btime``). None where there is no /proc or
    the process is gone."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
        boot = next(
            int(line.split()[1])
            for line in (proc / "stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    # The command name (field 2) is in parentheses and may hold spaces: count after it.
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        ticks = int(fields[19])  # field 22 overall; fields[0] is field 3
    except (IndexError, ValueError):
        return None
    hertz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    return dt.datetime.fromtimestamp(boot + ticks / hertz, dt.UTC)


def qemu_started_at(directory: Path, proc: Path = Path("/proc")) -> dt.datetime | None:
    """When the machine's QEMU started: the pid file's process start time on Linux, else the
    time QEMU wrote its pid file (it does so as it starts). None without a pid file."""
    pidfile = directory / QEMU_PIDFILE
    pid = read_pid(pidfile)
    if pid is None:
        return None
    if sys.platform.startswith("linux"):
        started = process_started_at(pid, proc)
        if started is not None:
            return started
    try:
        return dt.datetime.fromtimestamp(pidfile.stat().st_mtime, dt.UTC)
    except OSError:
        return None


def machine_usage(directory: Path, driver: str | None, running: bool) -> MachineUsage:
    """Disk space for any machine; the start time only for a running QEMU machine
    (VirtualBox's VM process keeps no pid file: None)."""
    started = qemu_started_at(directory) if running and driver == "qemu" else None
    return MachineUsage(disk_used(directory), started)
