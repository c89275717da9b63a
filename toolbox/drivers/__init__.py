"""Hypervisor drivers: the interface (``base``), QEMU, VirtualBox and the registry."""

from toolbox.drivers.base import (
    Availability,
    BootImage,
    Capabilities,
    Driver,
    Forward,
    VMSpec,
    VMState,
)

__all__ = [
    "Availability",
    "BootImage",
    "Capabilities",
    "Driver",
    "Forward",
    "VMSpec",
    "VMState",
]
