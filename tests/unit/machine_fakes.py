"""Test doubles for the machine service's phase logic: an in-memory driver and guest.

They stand in for the hypervisor and the guest only where booting a VM for every branch
(a failure in each create phase, a taken port, a dead hypervisor) would take hours; the
end-to-end test (tests/e2e/test_machine_e2e.py) runs the same service against real QEMU,
SSH and provisioning. Everything else here is real: the store, the image cache, the TLS
files, the Docker CLI context.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from toolbox import tls
from toolbox.drivers.base import (
    Availability,
    Capabilities,
    Driver,
    Forward,
    VMSpec,
    VMState,
    merge_forwards,
)
from toolbox.errors import Cancelled, DriverError, ProvisionError, SSHError, ValidationError
from toolbox.machine.guestops import MachineFiles, ProvisionSummary, ca_dir
from toolbox.machine.model import MachineSpec
from toolbox.process import CommandResult
from toolbox.progress import Progress, ProgressCallback


@dataclass
class FakeDriver(Driver):
    """Keeps each VM's state in memory and its 'disk' as a file in the machine folder."""

    name: str = "qemu"
    capabilities: Capabilities = field(default_factory=lambda: Capabilities(True, True, True))
    usable: bool = True
    states: dict[str, VMState] = field(default_factory=dict)
    saved_forwards: dict[str, list[Forward]] = field(default_factory=dict)
    started_with: list[tuple[Forward, ...]] = field(default_factory=list)
    live: dict[str, list[Forward]] = field(default_factory=dict)
    # VirtualBox keeps controlvm forwards in the VM's settings across a stop (and lists them
    # while stopped); QEMU forgets them with the process.
    persist_live: bool = False
    calls: list[str] = field(default_factory=list)
    fail_start: int = 0
    fail_create: int = 0
    fail_modify: set[str] = field(default_factory=set)  # modify fails when given these
    # What the hypervisor holds per VM: (cpus, memory_mib, disk_gib).
    resources: dict[str, tuple[int, int, int]] = field(default_factory=dict)

    def availability(self) -> Availability:
        if self.usable:
            return Availability(True, "fake 1.0")
        return Availability(False, None, "not installed", "Install the fake hypervisor.")

    def _disk(self, spec: VMSpec) -> Path:
        return spec.directory / "fake-disk.qcow2"

    def create(self, spec: VMSpec) -> None:
        self.calls.append(f"create {spec.name}")
        self._disk(spec).write_bytes(b"overlay")
        if self.fail_create:
            self.fail_create -= 1
            raise DriverError("fake create failed", hint="try again")
        self.resources.setdefault(spec.name, (spec.cpus, spec.memory_mib, spec.disk_gib))
        self.states.setdefault(spec.name, VMState.STOPPED)
        self.saved_forwards.setdefault(spec.name, list(spec.forwards))

    def start(self, spec: VMSpec, progress: ProgressCallback | None = None) -> None:
        self.calls.append(f"start {spec.name}")
        if self.fail_start:
            self.fail_start -= 1
            raise DriverError("fake start failed", hint="try again")
        if self.states.get(spec.name, VMState.NOT_FOUND) is VMState.NOT_FOUND:
            raise DriverError("no such VM")
        forwards = merge_forwards(self.saved_forwards.get(spec.name, []), spec.forwards)
        self.saved_forwards[spec.name] = forwards
        self.started_with.append(tuple(forwards))
        spec.console_log.parent.mkdir(parents=True, exist_ok=True)
        with open(spec.console_log, "a", encoding="utf-8") as fh:
            fh.write(f"boot {spec.name}\n")
        if progress:
            progress(Progress("qemu.start", "Starting the fake VM", 1.0, done=True))
        self.states[spec.name] = VMState.RUNNING

    def stop(self, spec: VMSpec, timeout: float = 60.0) -> None:
        self.calls.append(f"stop {spec.name}")
        self.states[spec.name] = VMState.STOPPED
        if not self.persist_live:
            self.live.pop(spec.name, None)

    def kill(self, spec: VMSpec) -> None:
        self.calls.append(f"kill {spec.name}")
        if spec.name in self.states:
            self.states[spec.name] = VMState.STOPPED
        if not self.persist_live:
            self.live.pop(spec.name, None)

    def remove(self, spec: VMSpec) -> None:
        self.calls.append(f"remove {spec.name}")
        self.states.pop(spec.name, None)
        self.resources.pop(spec.name, None)
        self._disk(spec).unlink(missing_ok=True)

    def modify(
        self,
        spec: VMSpec,
        *,
        cpus: int | None = None,
        memory_mib: int | None = None,
        disk_gib: int | None = None,
    ) -> None:
        """Like the real drivers: refused while up, the disk only grows."""
        self.calls.append(f"modify {spec.name} cpus={cpus} memory={memory_mib} disk={disk_gib}")
        if self.state(spec).is_up:
            raise DriverError(f"{spec.name} is running")
        given = {k for k, v in (("cpus", cpus), ("memory_mib", memory_mib), ("disk_gib", disk_gib))
                 if v is not None}  # fmt: skip
        if given & self.fail_modify:
            raise DriverError("fake modify failed", hint="try again")
        old = self.resources[spec.name]
        if disk_gib is not None and disk_gib < old[2]:
            raise ValidationError("disk", f"cannot shrink {old[2]} GiB to {disk_gib} GiB")
        self.resources[spec.name] = (
            old[0] if cpus is None else cpus,
            old[1] if memory_mib is None else memory_mib,
            old[2] if disk_gib is None else disk_gib,
        )

    def state(self, spec: VMSpec) -> VMState:
        return self.states.get(spec.name, VMState.NOT_FOUND)

    def forwards(self, spec: VMSpec) -> list[Forward]:
        return list(self.saved_forwards.get(spec.name, spec.forwards))

    def add_forward(self, spec: VMSpec, forward: Forward) -> None:
        self.calls.append(f"add_forward {spec.name} {forward.name} {forward.host_port}")
        current = [f for f in self.saved_forwards.get(spec.name, []) if f.name != forward.name]
        self.saved_forwards[spec.name] = [*current, forward]

    def remove_forward(self, spec: VMSpec, name: str) -> None:
        self.calls.append(f"remove_forward {spec.name} {name}")
        current = self.saved_forwards.get(spec.name, [])
        self.saved_forwards[spec.name] = [f for f in current if f.name != name]

    def live_forwards(self, spec: VMSpec) -> list[Forward]:
        if self.state(spec) is not VMState.RUNNING:
            return list(self.live.get(spec.name, [])) if self.persist_live else []
        return self.forwards(spec) + list(self.live.get(spec.name, []))

    def open_forward(self, spec: VMSpec, forward: Forward) -> None:
        self.calls.append(f"open_forward {spec.name} {forward.name}")
        self.live.setdefault(spec.name, []).append(forward)

    def close_forward(self, spec: VMSpec, forward: Forward) -> None:
        self.calls.append(f"close_forward {spec.name} {forward.name}")
        self.live[spec.name] = [f for f in self.live.get(spec.name, []) if f != forward]


@dataclass
class FakeGuest:
    """Answers like a guest would, given the fake driver's state: SSH only when running;
    provisioning writes real client certificates (so contexts and env work)."""

    driver: FakeDriver
    engine_up: bool = True
    provisions: list[str] = field(default_factory=list)
    fail_provision: int = 0
    on_provision: Callable[[], None] | None = None
    commands: list[str] = field(default_factory=list)
    sealed: list[str] = field(default_factory=list)

    def _running(self, spec: MachineSpec) -> None:
        if self.driver.states.get(spec.name) is not VMState.RUNNING:
            raise SSHError(f"No SSH banner from 127.0.0.1:{spec.ssh_port}", hint="console log")

    def wait_for_ssh(
        self,
        spec: MachineSpec,
        files: MachineFiles,
        console_log: Path,
        timeout: float,
        cancel: threading.Event | None,
    ) -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled("Cancelled while waiting for SSH")
        self._running(spec)
        assert files.known_hosts.read_text().startswith(f"[127.0.0.1]:{spec.ssh_port} ")

    def provision(
        self,
        spec: MachineSpec,
        files: MachineFiles,
        progress: ProgressCallback | None,
        cancel: threading.Event | None,
    ) -> ProvisionSummary:
        self._running(spec)
        self.provisions.append(spec.name)
        if self.on_provision:
            self.on_provision()
        if self.fail_provision:
            self.fail_provision -= 1
            raise ProvisionError("engine install failed", hint="check the network")
        if progress:
            progress(Progress("provision.engine", "Installing the engine", 0.5))
        first = not (files.directory / "cert.pem").exists()
        if first:
            ca = tls.ensure_ca(ca_dir())
            tls.make_client_cert(ca, files.directory)
        self.engine_up = True
        changed = ("engine", "tls") if first else ()
        return ProvisionSummary(changed, (("engine", first, 0.1), ("tls", first, 0.1)), 0.2)

    def seal(self, spec: MachineSpec, files: MachineFiles) -> None:
        self._running(spec)
        self.sealed.append(spec.name)

    def regenerate_certs(
        self, spec: MachineSpec, files: MachineFiles, progress: ProgressCallback | None
    ) -> None:
        self._running(spec)
        tls.make_client_cert(tls.ensure_ca(ca_dir()), files.directory)

    def engine_ready(
        self,
        spec: MachineSpec,
        files: MachineFiles,
        timeout: float,
        cancel: threading.Event | None,
    ) -> bool:
        return self.driver.states.get(spec.name) is VMState.RUNNING and self.engine_up

    def guest_addresses(self, spec: MachineSpec, files: MachineFiles) -> tuple[str, ...]:
        self._running(spec)
        return ("10.0.2.15",)

    def run(
        self,
        spec: MachineSpec,
        files: MachineFiles,
        command: str,
        on_output: Callable[[str], None] | None,
        timeout: float,
    ) -> CommandResult:
        self._running(spec)
        self.commands.append(command)
        if on_output:
            on_output("out: " + command)
            on_output("warn")
        return CommandResult(("ssh", command), 3, "out: " + command + "\n", "warn\n")
