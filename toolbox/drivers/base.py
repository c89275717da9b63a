"""The hypervisor driver interface: typed VM specs, states and forwards, and the ABC every
driver implements.

Kept small on purpose (create, start, stop, kill, remove, state, forwards); optional
features are announced through ``Capabilities`` rather than methods that may raise.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from toolbox.errors import UsageError
from toolbox.progress import ProgressCallback


class VMState(Enum):
    """What the hypervisor says about a VM."""

    NOT_FOUND = "not_found"
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    SAVED = "saved"
    STOPPING = "stopping"
    ABORTED = "aborted"
    ERROR = "error"

    @property
    def is_up(self) -> bool:
        """The hypervisor holds the VM in memory (running, paused or on its way)."""
        return self in (VMState.STARTING, VMState.RUNNING, VMState.PAUSED, VMState.STOPPING)


_FORWARD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


@dataclass(frozen=True)
class Forward:
    """A host port forwarded to a guest port through the hypervisor's NAT.

    ``host_ip`` is 127.0.0.1 by design: nothing of ours listens on other addresses.
    """

    name: str
    guest_port: int
    host_port: int
    protocol: str = "tcp"
    host_ip: str = "127.0.0.1"

    def __post_init__(self) -> None:
        if not _FORWARD_NAME.match(self.name):
            raise UsageError(
                f"Invalid forward name {self.name!r}",
                hint="Use letters, digits, '-', '_' or '.', starting with a letter or digit.",
            )
        if self.protocol not in ("tcp", "udp"):
            raise UsageError(
                f"Invalid forward protocol {self.protocol!r}", hint="Use 'tcp' or 'udp'."
            )
        for port in (self.guest_port, self.host_port):
            if not (isinstance(port, int) and 0 < port < 65536):
                raise UsageError(f"Invalid port {port!r}", hint="Ports go from 1 to 65535.")


@dataclass(frozen=True)
class BootImage:
    """A base disk image, and for images booted by direct kernel boot, kernel and initrd."""

    disk: Path
    format: str  # qcow2, raw, vmdk, vdi, vhd
    kernel: Path | None = None
    initrd: Path | None = None
    cmdline: str | None = None

    @property
    def direct_kernel_boot(self) -> bool:
        return self.kernel is not None


@dataclass(frozen=True)
class VMSpec:
    """Everything a driver needs to know about one machine's VM.

    ``directory`` is the machine's own folder; the driver keeps its files there.
    """

    name: str
    directory: Path
    cpus: int
    memory_mib: int
    disk_gib: int
    image: BootImage
    seed_iso: Path
    forwards: tuple[Forward, ...]
    console_log: Path


@dataclass(frozen=True)
class Capabilities:
    """Optional features a driver offers."""

    live_forwards: bool
    graceful_stop: bool
    direct_kernel_boot: bool


@dataclass(frozen=True)
class Availability:
    """Whether a driver can be used on this host; when not, why and what to install where."""

    usable: bool
    version: str | None
    reason: str | None = None
    hint: str | None = None


class Driver(ABC):
    """One hypervisor. Every method takes the spec, so a driver holds no per-VM state."""

    name: str
    capabilities: Capabilities

    @abstractmethod
    def availability(self) -> Availability:
        """Is the hypervisor installed and usable here? Never raises."""

    @abstractmethod
    def create(self, spec: VMSpec) -> None:
        """Create the VM (disk, registration); calling it again for a created VM is a no-op."""

    @abstractmethod
    def start(self, spec: VMSpec, progress: ProgressCallback | None = None) -> None:
        """Start the VM; return once the hypervisor runs the guest (not waiting for SSH)."""

    @abstractmethod
    def stop(self, spec: VMSpec, timeout: float = 60.0) -> None:
        """Ask the guest to power off (ACPI), and power it off hard after ``timeout``."""

    @abstractmethod
    def kill(self, spec: VMSpec) -> None:
        """Power the VM off at once."""

    @abstractmethod
    def remove(self, spec: VMSpec) -> None:
        """Delete the VM: no process, no registration, no driver files left behind."""

    @abstractmethod
    def modify(
        self,
        spec: VMSpec,
        *,
        cpus: int | None = None,
        memory_mib: int | None = None,
        disk_gib: int | None = None,
    ) -> None:
        """Change a stopped VM's CPUs, memory or disk size (None: unchanged).

        The disk only grows: a size below the disk's current one raises ``ValidationError``
        (field ``disk``) and changes nothing; the guest grows its filesystem at its next
        boot. A VM that is up raises ``DriverError``."""

    @abstractmethod
    def state(self, spec: VMSpec) -> VMState:
        """The VM's state; a hypervisor process that died is STOPPED/ABORTED, never RUNNING."""

    @abstractmethod
    def forwards(self, spec: VMSpec) -> list[Forward]:
        """The port forwards the VM has (or will have at its next start)."""

    @abstractmethod
    def add_forward(self, spec: VMSpec, forward: Forward) -> None:
        """Add (or replace, by name) a forward; live when running and supported."""

    @abstractmethod
    def remove_forward(self, spec: VMSpec, name: str) -> None:
        """Remove a forward by name; live when running and supported."""

    # Live-only forwards: what the host agent opens for containers' published ports. They
    # live as long as the hypervisor process (never in the VM's saved configuration, so a
    # start never binds a port for a container that is not running yet).

    @abstractmethod
    def live_forwards(self, spec: VMSpec) -> list[Forward]:
        """The forwards the running hypervisor has now, saved and live-only alike (empty when
        the VM is not running). Names of live-only ones are synthetic (``live-tcp-8080``)
        where the hypervisor keeps none."""

    @abstractmethod
    def open_forward(self, spec: VMSpec, forward: Forward) -> None:
        """Add a forward to the running VM without saving it; ``PortTaken`` when the host
        refuses the port."""

    @abstractmethod
    def close_forward(self, spec: VMSpec, forward: Forward) -> None:
        """Remove a live-only forward from the running VM (gone already is fine)."""


def merge_forwards(saved: list[Forward], wanted: tuple[Forward, ...]) -> list[Forward]:
    """Forwards for a start: the saved ones, with those named in the spec taking precedence.

    The spec carries what the machine service wants now (it may have re-chosen a port);
    the saved list also holds forwards added while the VM ran.
    """
    by_name = {f.name: f for f in saved}
    for f in wanted:
        by_name[f.name] = f
    return list(by_name.values())
