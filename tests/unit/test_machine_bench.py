"""The plain-QEMU baseline of benchmarks/machine_start.py, as an exact argv."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from benchmarks.machine_start import baseline_argv
from toolbox.guest.images import CachedImage


def image(kernel: bool = True) -> CachedImage:
    folder = Path("/cache/images/debian-12-local")
    return CachedImage(
        name="debian-12-local", path=folder / "disk.qcow2", format="qcow2", arch="amd64",
        size=1, sha512=None, source="test", created=dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
        kernel=folder / "vmlinuz" if kernel else None, initrd=folder / "initrd.img",
        cmdline="root=LABEL=root rw console=ttyS0,115200",
    )  # fmt: skip


def test_baseline_argv() -> None:
    argv = baseline_argv(image(), Path("/w/o.qcow2"), Path("/w/seed.iso"), 2222, Path("/w/c.log"))
    assert argv == [
        "qemu-system-x86_64", "-accel", "tcg", "-m", "2048", "-smp", "2",
        "-display", "none", "-serial", "file:/w/c.log",
        "-kernel", "/cache/images/debian-12-local/vmlinuz",
        "-initrd", "/cache/images/debian-12-local/initrd.img",
        "-append", "root=LABEL=root rw console=ttyS0,115200",
        "-drive", "file=/w/o.qcow2,if=virtio,format=qcow2",
        "-drive", "file=/w/seed.iso,media=cdrom,readonly=on",
        "-netdev", "user,id=n0,hostfwd=tcp:127.0.0.1:2222-:22",
        "-device", "virtio-net-pci,netdev=n0",
    ]  # fmt: skip


def test_baseline_needs_direct_kernel_boot() -> None:
    with pytest.raises(SystemExit):
        baseline_argv(image(kernel=False), Path("/o"), Path("/s"), 1, Path("/c"))
