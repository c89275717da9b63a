"""Which hypervisor drivers exist, which are usable here, and which one a new machine gets.

VirtualBox is the default when VBoxManage is found and usable (what Docker Toolbox users
have), QEMU otherwise; with neither, the error says what to install and where.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Sequence

from toolbox.drivers.base import Availability, Driver
from toolbox.errors import DriverError, UsageError
from toolbox.process import Runner

DRIVER_NAMES = ("virtualbox", "qemu")


def _virtualbox(runner: Runner | None) -> Driver:
    from toolbox.drivers.virtualbox import VirtualBoxDriver

    return VirtualBoxDriver(runner)


def _qemu(runner: Runner | None) -> Driver:
    from toolbox.drivers.qemu import QemuDriver

    return QemuDriver(runner)


_FACTORIES: dict[str, Callable[[Runner | None], Driver]] = {
    "virtualbox": _virtualbox,
    "qemu": _qemu,
}


def get_driver(name: str, runner: Runner | None = None) -> Driver:
    """A driver by name; ``runner`` replaces the real process runner (tests)."""
    factory = _FACTORIES.get(name)
    if factory is None:
        raise UsageError(f"Unknown driver {name!r}", hint=f"Use one of: {', '.join(DRIVER_NAMES)}.")
    return factory(runner)


def probe_all(
    runner: Runner | None = None, drivers: Sequence[Driver] | None = None
) -> list[tuple[str, Availability]]:
    """Every driver with whether it is usable here and, if not, why and what to do."""
    found = list(drivers) if drivers is not None else [get_driver(n, runner) for n in DRIVER_NAMES]
    out = []
    for drv in found:
        try:
            avail = drv.availability()
        except Exception as exc:  # availability() must not break the list of the others
            avail = Availability(False, None, f"probe failed: {exc}", None)
        out.append((drv.name, avail))
    return out


def nothing_usable_hint(system: str | None = None) -> str:
    system = system or platform.system()
    if system == "Darwin":
        return (
            "Install QEMU (brew install qemu), or VirtualBox from virtualbox.org on an Intel Mac."
        )
    if system == "Windows":
        return (
            "Install VirtualBox from virtualbox.org, or QEMU for Windows (qemu.org/download) "
            "into C:\\Program Files\\qemu."
        )
    return (
        "Install QEMU (sudo apt-get install qemu-system-x86 qemu-utils on Debian/Ubuntu) "
        "or VirtualBox."
    )


def default_driver(
    runner: Runner | None = None,
    drivers: Sequence[Driver] | None = None,
    system: str | None = None,
) -> str:
    """``virtualbox`` when VBoxManage is usable, else ``qemu``; DriverError when neither is."""
    results = dict(probe_all(runner, drivers))
    for name in DRIVER_NAMES:
        avail = results.get(name)
        if avail is not None and avail.usable:
            return name
    reasons = "; ".join(f"{n}: {a.reason}" for n, a in results.items() if a.reason)
    raise DriverError(
        f"No usable hypervisor was found ({reasons})", hint=nothing_usable_hint(system)
    )
