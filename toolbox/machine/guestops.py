"""What the machine service does inside a running guest: wait for SSH, provision, probe the
engine over TLS, run commands. ``RealGuestOps`` does it with ``toolbox.ssh``,
``toolbox.provision`` and ``toolbox.engine``; the service takes any ``GuestOps`` so its
phase logic can be exercised without a VM (the end-to-end test uses the real one).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from toolbox import paths
from toolbox.errors import Cancelled, EngineError
from toolbox.machine.model import ENGINE_GUEST_PORT, LOOPBACK, MachineSpec
from toolbox.process import CommandResult
from toolbox.progress import ProgressCallback

if TYPE_CHECKING:
    from toolbox.ssh.client import GuestSSH


@dataclass(frozen=True)
class MachineFiles:
    """Where a machine keeps its keys, seed and client certificates (its own folder)."""

    directory: Path

    @property
    def user_key(self) -> Path:
        return self.directory / "id_ed25519"

    @property
    def host_key_private(self) -> Path:
        return self.directory / "ssh_host_ed25519_key"

    @property
    def host_key_public(self) -> Path:
        return self.directory / "ssh_host_ed25519_key.pub"

    @property
    def known_hosts(self) -> Path:
        return self.directory / "known_hosts"

    @property
    def seed_iso(self) -> Path:
        return self.directory / "seed.iso"

    @property
    def cert_path(self) -> Path:
        """``DOCKER_CERT_PATH``: ca.pem, cert.pem and key.pem live in the machine folder."""
        return self.directory

    def host_key_line(self) -> str:
        return self.host_key_public.read_text(encoding="ascii").strip()


CLOUD_INIT_DISABLED = "/etc/cloud/cloud-init.disabled"


def provision_log_path(name: str) -> Path:
    """The machine's provisioning log (every provisioning step, its messages and the apt
    output), next to the console log in the user log dir."""
    return paths.log_dir() / "machines" / name / "provision.log"


def ca_dir() -> Path:
    """The per-install CA that signs every machine's server and client certificates."""
    return paths.data_dir() / "certs"


@dataclass(frozen=True)
class ProvisionSummary:
    """What a provision run did: the steps that changed something, and how long it took."""

    changed: tuple[str, ...]
    steps: tuple[tuple[str, bool, float], ...]
    seconds: float
    warnings: tuple[str, ...] = ()  # optional steps that failed, and why


class GuestOps(Protocol):
    def wait_for_ssh(
        self,
        spec: MachineSpec,
        files: MachineFiles,
        console_log: Path,
        timeout: float,
        cancel: threading.Event | None,
    ) -> None: ...

    def provision(
        self,
        spec: MachineSpec,
        files: MachineFiles,
        progress: ProgressCallback | None,
        cancel: threading.Event | None,
    ) -> ProvisionSummary: ...

    def regenerate_certs(
        self, spec: MachineSpec, files: MachineFiles, progress: ProgressCallback | None
    ) -> None: ...

    def engine_ready(
        self,
        spec: MachineSpec,
        files: MachineFiles,
        timeout: float,
        cancel: threading.Event | None,
    ) -> bool: ...

    def seal(self, spec: MachineSpec, files: MachineFiles) -> None: ...

    def guest_addresses(self, spec: MachineSpec, files: MachineFiles) -> tuple[str, ...]: ...

    def run(
        self,
        spec: MachineSpec,
        files: MachineFiles,
        command: str,
        on_output: Callable[[str], None] | None,
        timeout: float,
    ) -> CommandResult: ...


class RealGuestOps:
    """The real thing: paramiko with the pinned host key, the provisioning steps, docker-py."""

    def ssh(self, spec: MachineSpec, files: MachineFiles) -> GuestSSH:
        from toolbox.ssh.client import GuestSSH

        return GuestSSH(
            LOOPBACK, spec.ssh_port, spec.ssh_user, files.user_key, files.host_key_line()
        )

    def wait_for_ssh(
        self,
        spec: MachineSpec,
        files: MachineFiles,
        console_log: Path,
        timeout: float,
        cancel: threading.Event | None,
    ) -> None:
        from toolbox.ssh.client import wait_for_banner

        wait_for_banner(LOOPBACK, spec.ssh_port, timeout, console_log=console_log, cancel=cancel)

    def _context(
        self,
        spec: MachineSpec,
        ssh: GuestSSH,
        files: MachineFiles,
        progress: ProgressCallback | None,
        cancel: threading.Event | None = None,
    ) -> Any:
        from toolbox.provision.steps import ProvisionContext

        return ProvisionContext(
            machine=spec.name,
            ssh=ssh,
            machine_dir=files.directory,
            ca_dir=ca_dir(),
            engine_guest_port=ENGINE_GUEST_PORT,
            engine_host_port=spec.engine_port,
            san_names=(LOOPBACK, "localhost"),
            progress=progress,
            cancel=cancel,
            log_path=provision_log_path(spec.name),
        )

    def provision(
        self,
        spec: MachineSpec,
        files: MachineFiles,
        progress: ProgressCallback | None,
        cancel: threading.Event | None,
    ) -> ProvisionSummary:
        from toolbox.provision.steps import provision

        start = time.monotonic()
        with self.ssh(spec, files) as ssh:
            ssh.connect(timeout=60)
            report = provision(self._context(spec, ssh, files, progress, cancel))
        steps = tuple((s.name, bool(s.changed), float(s.seconds)) for s in report.steps)
        return ProvisionSummary(
            changed=tuple(name for name, changed, _ in steps if changed),
            steps=steps,
            seconds=time.monotonic() - start,
            warnings=tuple(s.warning for s in report.steps if s.warning),
        )

    def seal(self, spec: MachineSpec, files: MachineFiles) -> None:
        """The guest's first-boot setup is done: turn cloud-init off for later boots. Its
        per-boot stages cost 25-35 s of every start under TCG (measured: start to engine
        ready 71 s with it, 32-36 s without); what it set up (user, keys, network) stays."""
        with self.ssh(spec, files) as ssh:
            ssh.connect(timeout=60)
            ssh.run(f"touch {CLOUD_INIT_DISABLED}", timeout=60, sudo=True)

    def regenerate_certs(
        self, spec: MachineSpec, files: MachineFiles, progress: ProgressCallback | None
    ) -> None:
        from toolbox.provision.steps import regenerate_certs

        with self.ssh(spec, files) as ssh:
            ssh.connect(timeout=60)
            regenerate_certs(self._context(spec, ssh, files, progress))

    def engine_ready(
        self,
        spec: MachineSpec,
        files: MachineFiles,
        timeout: float,
        cancel: threading.Event | None,
    ) -> bool:
        """Ping the engine over TLS through the host forward until it answers or ``timeout``
        (backing off from 0.25 s to 1 s: a ping is cheap, a late answer costs start time);
        False when it did not."""
        from toolbox.provision.engine import ping_engine

        deadline = time.monotonic() + timeout
        delay = 0.25
        while True:
            if cancel is not None and cancel.is_set():
                raise Cancelled("Cancelled while waiting for the engine")
            if ping_engine(files.directory, spec.engine_port, timeout=5.0):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 1.0)

    def guest_addresses(self, spec: MachineSpec, files: MachineFiles) -> tuple[str, ...]:
        """The guest's own IPv4 addresses (``ip -4 -o addr``), loopback excluded."""
        with self.ssh(spec, files) as ssh:
            ssh.connect(timeout=15)
            result = ssh.run("ip -4 -o addr show scope global", timeout=15, check=False)
        return parse_ip_addr(result.stdout)

    def run(
        self,
        spec: MachineSpec,
        files: MachineFiles,
        command: str,
        on_output: Callable[[str], None] | None,
        timeout: float,
    ) -> CommandResult:
        with self.ssh(spec, files) as ssh:
            ssh.connect(timeout=30)
            return ssh.run(command, timeout=timeout, check=False, on_output=on_output)


# Interfaces the engine makes in the guest: not the guest's own address.
ENGINE_INTERFACES = ("docker", "br-", "veth")


def parse_ip_addr(text: str) -> tuple[str, ...]:
    """The guest's own IPv4 addresses from ``ip -4 -o addr`` lines like
    ``2: enp0s3    inet 10.0.2.15/24 brd 10.0.2.255 scope global dynamic enp0s3``
    (loopback and the engine's bridges left out)."""
    found = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4 or "inet" not in parts:
            continue
        if parts[1].startswith(ENGINE_INTERFACES):
            continue
        i = parts.index("inet")
        if i + 1 < len(parts):
            address = parts[i + 1].split("/", 1)[0]
            if not address.startswith("127."):
                found.append(address)
    return tuple(dict.fromkeys(found))


def engine_unreachable(spec: MachineSpec, console_log: Path) -> EngineError:
    return EngineError(
        f"The engine of machine {spec.name!r} does not answer on {spec.engine_url}",
        hint=f"Run `toolbox start {spec.name}` again (it re-provisions), or read the console "
        f"log at {console_log}.",
    )
