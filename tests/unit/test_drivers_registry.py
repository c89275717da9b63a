"""The driver registry: names, probing every driver, and the default choice.

The QEMU side is the real install on this machine; VirtualBox cannot be installed here, so
its "found and usable" case is a VirtualBoxDriver replaying a recorded ``--version``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from toolbox.drivers.base import Availability, Driver
from toolbox.drivers.qemu import QemuDriver
from toolbox.drivers.registry import (
    DRIVER_NAMES,
    default_driver,
    get_driver,
    nothing_usable_hint,
    probe_all,
)
from toolbox.drivers.virtualbox import VirtualBoxDriver
from toolbox.errors import DriverError, UsageError
from toolbox.process import CommandResult

DATA = Path(__file__).resolve().parents[1] / "data" / "virtualbox"
HAVE_QEMU = shutil.which("qemu-system-x86_64") is not None


def _vbox(stdout: str, found: bool = True) -> VirtualBoxDriver:
    def run(argv, **_kw) -> CommandResult:
        assert list(argv) == ["VBoxManage", "--version"]
        return CommandResult(tuple(argv), 0, stdout, "")

    return VirtualBoxDriver(
        run,
        binary="VBoxManage" if found else None,
        which=lambda _n: None,
        is_file=lambda _p: False,
        registry=lambda: None,
    )


def _missing_qemu() -> QemuDriver:
    drv = QemuDriver(binary=Path("/nonexistent/qemu-system-x86_64"), qemu_img=None)
    drv.binary = None
    return drv


def test_names_and_get_driver() -> None:
    assert DRIVER_NAMES == ("virtualbox", "qemu")
    assert isinstance(get_driver("qemu"), QemuDriver)
    assert isinstance(get_driver("virtualbox"), VirtualBoxDriver)
    for name in DRIVER_NAMES:
        drv = get_driver(name)
        assert isinstance(drv, Driver) and drv.name == name
    with pytest.raises(UsageError) as exc:
        get_driver("hyperkit")
    assert "virtualbox" in (exc.value.hint or "")


def test_capabilities() -> None:
    q = get_driver("qemu").capabilities
    v = get_driver("virtualbox").capabilities
    assert q.live_forwards and q.graceful_stop and q.direct_kernel_boot
    assert v.live_forwards and v.graceful_stop and not v.direct_kernel_boot


@pytest.mark.skipif(not HAVE_QEMU, reason="QEMU is not installed")
def test_probe_all_on_this_machine() -> None:
    """Real probe: QEMU is installed here, VirtualBox is not (and says what to install)."""
    results = dict(probe_all())
    assert list(results) == ["virtualbox", "qemu"]
    assert results["qemu"].usable and results["qemu"].version
    if shutil.which("VBoxManage") is None:
        vb = results["virtualbox"]
        assert not vb.usable and vb.reason == "VBoxManage was not found"
        assert vb.hint and "virtualbox.org" in vb.hint
        assert default_driver() == "qemu"


def test_virtualbox_is_the_default_when_usable() -> None:
    version = (DATA / "version.txt").read_text()
    assert default_driver(drivers=[_vbox(version), _missing_qemu()]) == "virtualbox"
    if HAVE_QEMU:
        assert default_driver(drivers=[_vbox(version), QemuDriver()]) == "virtualbox"
        # A VirtualBox too old to use does not win.
        old = (DATA / "version-5.2.txt").read_text()
        assert default_driver(drivers=[_vbox(old), QemuDriver()]) == "qemu"


def test_neither_usable_raises_with_what_to_install_where() -> None:
    with pytest.raises(DriverError) as exc:
        default_driver(drivers=[_vbox("", found=False), _missing_qemu()], system="Windows")
    assert "VBoxManage was not found" in exc.value.message
    assert "qemu-system-x86_64 was not found" in exc.value.message
    assert "C:\\Program Files\\qemu" in (exc.value.hint or "")
    assert "brew install qemu" in nothing_usable_hint("Darwin")
    assert "apt-get install qemu-system-x86" in nothing_usable_hint("Linux")


def test_a_probe_that_raises_does_not_hide_the_others() -> None:
    class Broken(QemuDriver):
        def availability(self) -> Availability:
            raise RuntimeError("boom")

    results = probe_all(drivers=[_vbox((DATA / "version.txt").read_text()), Broken()])
    assert results[0][1].usable
    assert not results[1][1].usable and "boom" in (results[1][1].reason or "")
