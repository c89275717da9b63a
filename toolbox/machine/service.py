"""The machine lifecycle: create, start, stop, restart, kill, remove, status, ip, inspect,
env, regenerate-certs. The CLI and the GUI both call this.

Every long operation holds the machine's file lock, reports ``Progress`` (step ids
``create.<phase>``, ``start.<phase>``, plus the sub-steps of downloads and provisioning) and
returns a typed result. ``create`` records the last finished phase in machine.json. A create
that fails or is cancelled removes what it made, so the name is free again; with
``keep_on_failure`` the machine stays, and ``create`` or ``start`` continues it from the
recorded phase (as after a crash), or ``remove(force=True)`` removes it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from toolbox import dockercontext, paths
from toolbox.errors import (
    Cancelled,
    DriverError,
    MachineError,
    NotFoundError,
    ToolboxError,
    UsageError,
    ValidationError,
)
from toolbox.machine.guestops import (
    GuestOps,
    MachineFiles,
    ProvisionSummary,
    RealGuestOps,
    engine_unreachable,
)
from toolbox.machine.guestops import provision_log_path as provision_log_path
from toolbox.machine.model import (
    DEFAULT_CPUS,
    DEFAULT_DISK_GIB,
    DEFAULT_MEMORY_MIB,
    DEFAULT_NAME,
    ENGINE_GUEST_PORT,
    LOOPBACK,
    SSH_GUEST_PORT,
    CreatePhase,
    MachineSpec,
    MachineState,
    PortBind,
    PortForward,
    Share,
    default_shares,
    parse_disk_gib,
    parse_memory_mib,
    validate_cpus,
    validate_name,
    validate_share,
)
from toolbox.machine.ports import choose_ports, is_free
from toolbox.machine.store import MachineStore
from toolbox.process import CommandResult
from toolbox.progress import Progress, ProgressCallback
from toolbox.shellenv import EngineEnv

if TYPE_CHECKING:
    from toolbox.agent.state import AgentStatus
    from toolbox.drivers.base import Driver, Forward, VMSpec, VMState
    from toolbox.guest.images import CachedImage, ImageStore
    from toolbox.machine.usage import MachineUsage

# Bounds for the waits (figures measured under TCG on the CI machines, with a wide margin).
BOOT_TIMEOUT = 600.0  # boot to the SSH banner: 70-90 s measured with cloud-init under TCG
ENGINE_TIMEOUT = 90.0  # an already provisioned engine after the banner, before re-provisioning
STOP_TIMEOUT = 60.0
LOCK_TIMEOUT = 5.0

DriverFactory = Callable[[str], "Driver"]


@dataclass(frozen=True)
class CreateOptions:
    """What ``toolbox create`` was asked for. ``driver``/``image`` None mean the defaults.
    ``keep_on_failure`` keeps a failed or cancelled create's machine (to inspect it, or to
    continue it with ``create``/``start``); without it, what the create made is removed."""

    name: str = DEFAULT_NAME
    driver: str | None = None
    cpus: int = DEFAULT_CPUS
    memory_mib: int = DEFAULT_MEMORY_MIB
    disk_gib: int = DEFAULT_DISK_GIB
    image: str | None = None
    shares: tuple[Share, ...] | None = None  # None: the default share (the user's home)
    port_bind: PortBind = PortBind.LOOPBACK
    keep_on_failure: bool = False


class AgentControl:
    """Starts and stops a machine's host agent. This one does nothing: the service alone
    (tests, embedders) runs no background process; the CLI and the app pass
    ``ProcessAgents``."""

    def ensure(self, name: str) -> None:
        """Make sure an agent runs for the (running) machine."""

    def stop(self, name: str) -> None:
        """End the machine's agent, if one runs."""


class ProcessAgents(AgentControl):
    """The real thing: a detached ``toolbox agent run NAME`` process per running machine."""

    def ensure(self, name: str) -> None:
        from toolbox.agent import state

        state.spawn(name)

    def stop(self, name: str) -> None:
        from toolbox.agent import state

        state.stop(name)


@dataclass(frozen=True)
class ResourcesResult:
    """What ``set_resources`` did: the machine as recorded now, and which of ``cpus``,
    ``memory_mib``, ``disk_gib`` changed (empty when it already had those values)."""

    spec: MachineSpec
    changed: tuple[str, ...]


@dataclass(frozen=True)
class PhaseTime:
    """How long one phase took; ``skipped`` when an earlier, interrupted run had done it."""

    phase: str
    title: str
    seconds: float
    skipped: bool = False


@dataclass(frozen=True)
class OperationResult:
    """What create/start/restart/regenerate-certs did."""

    spec: MachineSpec
    phases: tuple[PhaseTime, ...]
    seconds: float
    resumed: bool = False
    provision: ProvisionSummary | None = None


@dataclass(frozen=True)
class MachineStatus:
    """One row of ``toolbox ls``: the state a user sees, and why when it is not plain."""

    name: str
    state: MachineState
    driver: str | None
    spec: MachineSpec | None
    vm_state: str | None  # the driver's VMState name, when asked
    busy: bool
    detail: str | None = None
    hint: str | None = None
    agent: AgentStatus | None = None  # the host agent, for running machines (statuses())

    @property
    def url(self) -> str | None:
        if self.spec is None or self.state is not MachineState.RUNNING:
            return None
        return self.spec.engine_url


@dataclass(frozen=True)
class ForwardInfo:
    name: str
    host_ip: str
    host_port: int
    guest_port: int
    protocol: str


@dataclass(frozen=True)
class MachineInspect:
    """Everything about one machine, for ``toolbox inspect`` and the GUI's details."""

    status: MachineStatus
    spec: MachineSpec
    directory: Path
    console_log: Path
    engine_url: str
    cert_path: Path
    docker_context: str
    ssh_user: str
    ssh_key: Path
    host_key_fingerprint: str | None
    forwards: tuple[ForwardInfo, ...]
    guest_addresses: tuple[str, ...]


_VM_TO_MACHINE = {
    "NOT_FOUND": MachineState.ERROR,
    "STOPPED": MachineState.STOPPED,
    "STARTING": MachineState.STARTING,
    "RUNNING": MachineState.RUNNING,
    "PAUSED": MachineState.PAUSED,
    "SAVED": MachineState.STOPPED,
    "STOPPING": MachineState.STOPPING,
    "ABORTED": MachineState.STOPPED,
    "ERROR": MachineState.ERROR,
}


def _vm_state(name: str) -> VMState:
    from toolbox.drivers.base import VMState

    return VMState[name]


def machine_state_of(vm_state: VMState) -> MachineState:
    """Map the hypervisor's view to the user's: a dead or aborted VM is simply Stopped."""
    return _VM_TO_MACHINE.get(vm_state.name, MachineState.UNKNOWN)


def console_log_path(name: str) -> Path:
    """The machine's serial console log, in the user log dir."""
    return paths.log_dir() / "machines" / validate_name(name) / "console.log"


def _set_logs_aside(name: str) -> list[tuple[Path, Path]]:
    """Rename the machine's console logs to ``*.kept``; return (kept, original) pairs."""
    moved = []
    log = console_log_path(name)
    for original in (log, log.with_name(log.name + ".1")):
        kept = original.with_name(original.name + ".kept")
        try:
            os.replace(original, kept)
        except OSError:
            continue
        moved.append((kept, original))
    return moved


class _Phases:
    """Times each phase and reports its start and end as ``Progress``."""

    def __init__(
        self,
        prefix: str,
        progress: ProgressCallback | None,
        cancel: threading.Event | None = None,
    ):
        self.prefix = prefix
        self.progress = progress
        self.cancel = cancel
        self.times: list[PhaseTime] = []

    def check(self, title: str) -> None:
        """Stop at a phase boundary once the user cancelled: the phases that do not watch the
        event themselves (keys, seed, the VM's creation, the context) end there."""
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled(f"Cancelled during: {title}")

    def emit(self, report: Progress) -> None:
        if self.progress is not None:
            self.progress(report)

    @contextlib.contextmanager
    def phase(self, key: str, title: str) -> Iterator[None]:
        step = f"{self.prefix}.{key}"
        self.check(title)
        self.emit(Progress(step, title))
        start = time.monotonic()
        yield
        self.check(title)
        seconds = time.monotonic() - start
        self.times.append(PhaseTime(key, title, seconds))
        self.emit(Progress(step, title, fraction=1.0, done=True))

    def skipped(self, key: str, title: str) -> None:
        self.times.append(PhaseTime(key, title, 0.0, skipped=True))
        self.emit(
            Progress(f"{self.prefix}.{key}", f"{title} (done before)", 1.0, done=True, skipped=True)
        )


class MachineService:
    """Machines on this host. Thread-safe per machine through the store's file locks; use
    one serial queue per machine in the GUI so the user sees operations in order."""

    def __init__(
        self,
        store: MachineStore | None = None,
        images: ImageStore | None = None,
        driver_factory: DriverFactory | None = None,
        guest: GuestOps | None = None,
        docker_config: Path | None = None,
        boot_timeout: float = BOOT_TIMEOUT,
        engine_timeout: float = ENGINE_TIMEOUT,
        default_driver: Callable[[], str] | None = None,
        agents: AgentControl | None = None,
    ):
        self.store = store or MachineStore()
        self.agents = agents or AgentControl()
        self._images = images
        self._driver_factory = driver_factory
        self.guest: GuestOps = guest or RealGuestOps()
        self.docker_config = docker_config
        self.boot_timeout = boot_timeout
        self.engine_timeout = engine_timeout
        self._default_driver = default_driver

    # -- collaborators -------------------------------------------------------------------

    @property
    def images(self) -> ImageStore:
        if self._images is None:
            from toolbox.guest.images import ImageStore

            self._images = ImageStore()
        return self._images

    def driver(self, name: str) -> Driver:
        if self._driver_factory is not None:
            return self._driver_factory(name)
        from toolbox.drivers.registry import get_driver

        return get_driver(name)

    def default_driver(self) -> str:
        """VirtualBox when it is installed and usable, else QEMU (the registry decides)."""
        if self._default_driver is not None:
            return self._default_driver()
        from toolbox.drivers.registry import default_driver

        return default_driver()

    def files(self, name: str) -> MachineFiles:
        return MachineFiles(self.store.dir_for(name))

    def _lock(self, name: str) -> contextlib.AbstractContextManager[None]:
        return self.store.lock(name, timeout=LOCK_TIMEOUT)

    # -- specs -----------------------------------------------------------------------------

    def specs(self) -> list[MachineSpec]:
        return [e.spec for e in self.store.entries() if e.spec is not None]

    def get(self, name: str) -> MachineSpec:
        return self.store.load(validate_name(name))

    def _forwards(self, spec: MachineSpec) -> tuple[Forward, ...]:
        from toolbox.drivers.base import Forward

        base = (
            Forward("ssh", SSH_GUEST_PORT, spec.ssh_port),
            Forward("engine", ENGINE_GUEST_PORT, spec.engine_port),
        )
        extra = tuple(
            Forward(f.name, f.guest_port, f.host_port, f.protocol, f.host_ip) for f in spec.forwards
        )
        return base + extra

    def vm_spec(self, spec: MachineSpec, image: CachedImage | None = None) -> VMSpec:
        """The driver's view of a machine (the image must be resolved already)."""
        from toolbox.drivers.base import VMSpec

        cached = image or self.images.get(spec.image)
        files = self.files(spec.name)
        return VMSpec(
            name=spec.name,
            directory=files.directory,
            cpus=spec.cpus,
            memory_mib=spec.memory_mib,
            disk_gib=spec.disk_gib,
            image=cached.boot_image(),
            seed_iso=files.seed_iso,
            forwards=self._forwards(spec),
            console_log=console_log_path(spec.name),
        )

    def vm_spec_of(self, spec: MachineSpec) -> VMSpec:
        """The driver's view of a machine for state, forwards, stop and remove (works when
        its image is gone)."""
        vmspec = self._vm_spec_for_state(spec)
        assert vmspec is not None
        return vmspec

    def _vm_spec_for_state(self, spec: MachineSpec) -> VMSpec | None:
        """A VMSpec good enough for state/stop/kill/remove even when the image is gone."""
        from toolbox.drivers.base import BootImage, VMSpec

        try:
            return self.vm_spec(spec)
        except ToolboxError:
            if not spec.image:
                placeholder = BootImage(self.files(spec.name).directory / "missing", "qcow2")
            else:
                placeholder = BootImage(self.images.root / spec.image / "missing", "qcow2")
            files = self.files(spec.name)
            return VMSpec(
                name=spec.name,
                directory=files.directory,
                cpus=spec.cpus,
                memory_mib=spec.memory_mib,
                disk_gib=spec.disk_gib,
                image=placeholder,
                seed_iso=files.seed_iso,
                forwards=self._forwards(spec),
                console_log=console_log_path(spec.name),
            )

    def _used_ports(self, except_name: str | None = None) -> set[int]:
        used: set[int] = set()
        for other in self.specs():
            if other.name == except_name:
                continue
            used |= {other.ssh_port, other.engine_port}
            used |= {f.host_port for f in other.forwards}
        return used

    # -- create ----------------------------------------------------------------------------

    def create(
        self,
        options: CreateOptions,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> OperationResult:
        """Create and provision a machine, or continue an interrupted create of it.

        When a new machine's create fails or is cancelled (a ``ToolboxError``, Ctrl-C, any
        exception), its VM, files, record and context are removed as ``remove(force=True)``
        does, and the error goes on with a hint saying so, unless ``keep_on_failure``. A
        machine kept that way (or left by an older version) is never removed by a failed
        continuation: the user chose to keep it."""
        name = validate_name(options.name)
        validate_cpus(options.cpus)
        parse_memory_mib(options.memory_mib)
        parse_disk_gib(options.disk_gib)
        fresh = not self.store.dir_for(name).exists()
        made = False  # this call recorded a new machine
        try:
            with self._lock(name):
                resumed = self.store.exists(name)
                if resumed:
                    spec = self.store.load(name)
                    self._check_resume(spec, options)
                else:
                    spec = self._new_spec(options)
                    self.store.save(spec)
                    made = True
                return self._create_phases(spec, resumed, progress, cancel)
        except BaseException as exc:
            if made and not options.keep_on_failure:
                self._discard_failed_create(name, exc)
            raise
        finally:
            # A create refused before anything was recorded leaves no folder behind.
            if fresh and not self.store.exists(name):
                self.store.forget_lock(name)

    def _discard_failed_create(self, name: str, error: BaseException) -> None:
        """Remove what a failed create made, and say so in ``error``'s hint (or, for an
        exception without one such as KeyboardInterrupt, in a note on it).

        It runs after the create released the machine's lock (``remove`` takes it again), so
        a Windows lock file is never deleted while held."""
        try:
            # Its logs stay: the error's hint may name the console log, and the window's
            # "Show log" opens it. A later create of that name appends to them (rotated).
            self.remove(name, force=True, keep_logs=True)
        except Exception as exc:  # the create's own error matters more: keep it, say this
            note = (
                f"Removing the half-made machine {name!r} failed too ({exc}); remove it with "
                f"`toolbox rm -f {name}`."
            )
        else:
            note = (
                f"The half-made machine {name!r} was removed; `toolbox create {name} "
                "--keep-on-failure` keeps it for inspection (and to continue it)."
            )
        if isinstance(error, ToolboxError):
            error.hint = f"{error.hint} {note}" if error.hint else note
        else:
            error.add_note(note)

    def _check_resume(self, spec: MachineSpec, options: CreateOptions) -> None:
        if spec.complete:
            raise MachineError(
                f"Machine {spec.name!r} already exists",
                hint=f"Start it with `toolbox start {spec.name}`, or remove it first with "
                f"`toolbox rm {spec.name}`.",
            )
        if options.driver and options.driver != spec.driver:
            raise UsageError(
                f"Machine {spec.name!r} was being created with the {spec.driver} driver",
                hint=f"Run `toolbox create {spec.name}` without --driver to continue, or "
                f"`toolbox rm -f {spec.name}` to start over.",
            )

    def _new_spec(self, options: CreateOptions) -> MachineSpec:
        driver_name = options.driver or self.default_driver()
        driver = self.driver(driver_name)
        availability = driver.availability()
        if not availability.usable:
            raise DriverError(
                f"The {driver_name} driver cannot be used here: {availability.reason}",
                hint=availability.hint or "Install the hypervisor, or choose another --driver.",
            )
        ssh_port, engine_port = choose_ports(2, exclude=self._used_ports())
        image = options.image or ""
        if image and Path(image).expanduser().is_file():
            image = str(Path(image).expanduser().resolve())  # a resume may run elsewhere
        shares = default_shares() if options.shares is None else options.shares
        shares = tuple(validate_share(s) for s in shares)
        _check_share_overlap(shares)
        return MachineSpec(
            name=options.name,
            driver=driver_name,
            cpus=options.cpus,
            memory_mib=options.memory_mib,
            disk_gib=options.disk_gib,
            image=image,
            ssh_port=ssh_port,
            engine_port=engine_port,
            created=dt.datetime.now(dt.UTC).replace(microsecond=0),
            create_phase=CreatePhase.NEW,
            port_bind=options.port_bind,
            shares=shares,
        )

    def _record(self, spec: MachineSpec, phase: CreatePhase, **changes: object) -> MachineSpec:
        spec = replace(spec, create_phase=phase, **changes)  # type: ignore[arg-type]
        self.store.save(spec)
        return spec

    def _create_phases(
        self,
        spec: MachineSpec,
        resumed: bool,
        progress: ProgressCallback | None,
        cancel: threading.Event | None,
    ) -> OperationResult:
        started = time.monotonic()
        phases = _Phases("create", progress, cancel)
        files = self.files(spec.name)
        driver = self.driver(spec.driver)
        done_before = spec.create_phase
        image: CachedImage | None = None
        summary: ProvisionSummary | None = None

        def run(phase: CreatePhase) -> bool:
            """Whether ``phase`` still has to run; reports it as skipped otherwise."""
            if phase.after(done_before):
                return True
            phases.skipped(phase.value, phase.title)
            return False

        # Each phase is recorded before its "done" report, so "done" means "on disk".
        # The image is resolved on every run (instant when cached): later phases need it.
        with phases.phase(CreatePhase.IMAGE.value, CreatePhase.IMAGE.title):
            image = self.images.resolve(spec.image or None, spec.driver, progress, cancel)
            if spec.image != image.name or CreatePhase.IMAGE.after(spec.create_phase):
                phase = max_phase(spec.create_phase, CreatePhase.IMAGE)
                spec = self._record(spec, phase, image=image.name)

        if run(CreatePhase.KEYS):
            with phases.phase(CreatePhase.KEYS.value, CreatePhase.KEYS.title):
                self._ensure_keys(spec, files)
                spec = self._record(spec, CreatePhase.KEYS)

        if run(CreatePhase.SEED):
            with phases.phase(CreatePhase.SEED.value, CreatePhase.SEED.title):
                self._write_seed(spec, files)
                spec = self._record(spec, CreatePhase.SEED)

        vmspec = self.vm_spec(spec, image)
        if run(CreatePhase.VM):
            with phases.phase(CreatePhase.VM.value, CreatePhase.VM.title):
                console_log_path(spec.name).parent.mkdir(parents=True, exist_ok=True)
                driver.create(vmspec)
                spec = self._record(spec, CreatePhase.VM)

        # Boot always runs: it starts the VM only when it is not up (an interrupted create
        # may have left it running, or a crash may have stopped it) and waits for SSH.
        with phases.phase(CreatePhase.BOOT.value, CreatePhase.BOOT.title):
            spec, vmspec = self._boot(spec, driver, vmspec, files, progress, cancel)
            spec = self._record(spec, max_phase(spec.create_phase, CreatePhase.BOOT))

        if not spec.provisioned:
            with phases.phase(CreatePhase.PROVISION.value, CreatePhase.PROVISION.title):
                summary = self.guest.provision(spec, files, progress, cancel)
                self.guest.seal(spec, files)
                spec = self._record(spec, CreatePhase.PROVISION, provisioned=True)
        else:
            phases.skipped(CreatePhase.PROVISION.value, CreatePhase.PROVISION.title)

        with phases.phase(CreatePhase.CONTEXT.value, CreatePhase.CONTEXT.title):
            self._write_context(spec, files)
            spec = self._record(spec, CreatePhase.DONE)
        self.agents.ensure(spec.name)
        return OperationResult(
            spec, tuple(phases.times), time.monotonic() - started, resumed, summary
        )

    def _ensure_keys(self, spec: MachineSpec, files: MachineFiles) -> None:
        from toolbox.ssh.client import write_known_hosts
        from toolbox.ssh.keys import generate_host_key, generate_user_key
        from toolbox.tls import write_private

        paths.ensure_dir(files.directory, private=True)
        if not files.user_key.exists():
            generate_user_key(files.user_key, comment=f"toolbox-{spec.name}")
        if not (files.host_key_private.exists() and files.host_key_public.exists()):
            host = generate_host_key(comment=f"toolbox-{spec.name}-host")
            write_private(files.host_key_private, host.private_openssh.encode("ascii"))
            files.host_key_public.write_text(host.public_line + "\n", encoding="ascii")
        write_known_hosts(files.known_hosts, LOOPBACK, spec.ssh_port, files.host_key_line())

    def _write_seed(self, spec: MachineSpec, files: MachineFiles) -> None:
        from toolbox.guest.seed import SeedConfig, write_seed_iso
        from toolbox.ssh.keys import load_user_key

        user = load_user_key(files.user_key)
        config = SeedConfig(
            # Stable per machine: a new instance-id would make cloud-init run again.
            instance_id=f"toolbox-{spec.name}-{int(spec.created.timestamp())}",
            hostname=spec.name,
            user=spec.ssh_user,
            authorized_key=user.public_line,
            host_key_private=files.host_key_private.read_text(encoding="ascii"),
            host_key_public=files.host_key_line(),
        )
        write_seed_iso(files.seed_iso, config)

    def _boot(
        self,
        spec: MachineSpec,
        driver: Driver,
        vmspec: VMSpec,
        files: MachineFiles,
        progress: ProgressCallback | None,
        cancel: threading.Event | None,
    ) -> tuple[MachineSpec, VMSpec]:
        """Start the VM when it is not up (re-choosing a taken host port first), then wait
        for the SSH banner."""
        state = driver.state(vmspec)
        if not state.is_up:
            spec, vmspec = self._ensure_ports(spec, driver, vmspec, files, progress)
        if state is not _vm_state("RUNNING"):
            driver.start(vmspec, progress)  # also resumes a paused VM
        self.guest.wait_for_ssh(spec, files, vmspec.console_log, self.boot_timeout, cancel)
        return spec, vmspec

    def _ensure_ports(
        self,
        spec: MachineSpec,
        driver: Driver,
        vmspec: VMSpec,
        files: MachineFiles,
        progress: ProgressCallback | None = None,
    ) -> tuple[MachineSpec, VMSpec]:
        """Keep the recorded host ports unless something else took one since; then choose
        new ones, record them, and update the driver's forwards and the known_hosts entry."""
        taken = [p for p in (spec.ssh_port, spec.engine_port) if not is_free(p)]
        if not taken:
            return spec, vmspec
        exclude = self._used_ports(spec.name) | {spec.ssh_port, spec.engine_port}
        new_ssh, new_engine = choose_ports(2, exclude=exclude)
        changes = {}
        if spec.ssh_port in taken:
            changes["ssh_port"] = new_ssh
        if spec.engine_port in taken:
            changes["engine_port"] = new_engine
        if progress is not None:
            moved = ", ".join(
                f"{getattr(spec, key)} -> {port}" for key, port in sorted(changes.items())
            )
            progress(Progress("ports", f"Host ports in use by another program moved: {moved}"))
        spec = replace(spec, **changes)  # type: ignore[arg-type]
        self.store.save(spec)
        vmspec = replace(vmspec, forwards=self._forwards(spec))
        for forward in vmspec.forwards[:2]:
            driver.add_forward(vmspec, forward)
        if "ssh_port" in changes and files.host_key_public.exists():
            from toolbox.ssh.client import write_known_hosts

            write_known_hosts(files.known_hosts, LOOPBACK, spec.ssh_port, files.host_key_line())
        return spec, vmspec

    def _write_context(self, spec: MachineSpec, files: MachineFiles) -> None:
        dockercontext.write_context(spec.name, spec.engine_url, files.cert_path, self.docker_config)

    # -- start / stop ----------------------------------------------------------------------

    def start(
        self,
        name: str,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> OperationResult:
        """Start a stopped machine and return once its engine answers over TLS; continue an
        interrupted create; re-provision only when the engine does not come up by itself."""
        name = validate_name(name)
        with self._lock(name):
            spec = self.store.load(name)
            if not spec.complete:
                return self._create_phases(spec, True, progress, cancel)
            started = time.monotonic()
            phases = _Phases("start", progress)
            files = self.files(name)
            driver = self.driver(spec.driver)
            vmspec = self.vm_spec(spec)
            self._clear_live_forwards(driver, vmspec)
            with phases.phase("boot", "Boot and wait for SSH"):
                spec, vmspec = self._boot(spec, driver, vmspec, files, progress, cancel)
            summary = None
            ready = False
            if spec.provisioned:
                with phases.phase("engine", "Wait for the engine"):
                    ready = self.guest.engine_ready(spec, files, self.engine_timeout, cancel)
            if not ready:
                with phases.phase("provision", "Provision the engine"):
                    summary = self.guest.provision(spec, files, progress, cancel)
                    self.guest.seal(spec, files)
                spec = replace(spec, provisioned=True)
                self.store.save(spec)
                if not self.guest.engine_ready(spec, files, self.engine_timeout, cancel):
                    raise engine_unreachable(spec, vmspec.console_log)
            with phases.phase("context", "Docker CLI context"):
                self._write_context(spec, files)
            self.agents.ensure(name)
            return OperationResult(
                spec, tuple(phases.times), time.monotonic() - started, provision=summary
            )

    def stop(self, name: str, timeout: float = STOP_TIMEOUT) -> MachineSpec:
        """Power the guest off cleanly (hard after ``timeout`` seconds)."""
        name = validate_name(name)
        with self._lock(name):
            spec = self.store.load(name)
            vmspec = self._vm_spec_for_state(spec)
            assert vmspec is not None
            driver = self.driver(spec.driver)
            # The agent first: it unmounts the shares while SSH still answers, so the guest's
            # shutdown does not wait on FUSE mounts whose server is going away.
            self.agents.stop(name)
            if driver.state(vmspec).is_up:
                driver.stop(vmspec, timeout=timeout)
            self._clear_live_forwards(driver, vmspec)
            return spec

    def kill(self, name: str) -> MachineSpec:
        """Power the guest off at once."""
        name = validate_name(name)
        with self._lock(name):
            spec = self.store.load(name)
            vmspec = self._vm_spec_for_state(spec)
            assert vmspec is not None
            driver = self.driver(spec.driver)
            driver.kill(vmspec)
            self.agents.stop(name)
            self._clear_live_forwards(driver, vmspec)
            return spec

    def _clear_live_forwards(self, driver: Driver, vmspec: VMSpec) -> None:
        """A stopped machine keeps none of the agent's forwards (VirtualBox saves them in
        the VM's settings; one an agent killed with -9 could not remove would bind again)."""
        from toolbox.agent.plan import LIVE_PREFIX

        with contextlib.suppress(ToolboxError):
            if driver.state(vmspec).is_up:
                return
            for fwd in driver.live_forwards(vmspec):
                if fwd.name.startswith(LIVE_PREFIX):
                    driver.close_forward(vmspec, fwd)

    def restart(
        self,
        name: str,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> OperationResult:
        self.stop(name)
        return self.start(name, progress, cancel)

    # -- resources -------------------------------------------------------------------------

    def set_resources(
        self,
        name: str,
        cpus: int | None = None,
        memory_mib: int | str | None = None,
        disk_gib: int | str | None = None,
    ) -> ResourcesResult:
        """Change a stopped machine's CPUs, memory or disk size (None: unchanged); they take
        effect at its next start. The disk only grows; the guest grows its root filesystem
        at its next boot. Each change is recorded only once the driver made it, so a failure
        leaves the record telling the truth."""
        name = validate_name(name)
        want: dict[str, int] = {}
        if cpus is not None:
            want["cpus"] = validate_cpus(cpus)
        if memory_mib is not None:
            want["memory_mib"] = parse_memory_mib(memory_mib)
        if disk_gib is not None:
            want["disk_gib"] = parse_disk_gib(disk_gib)
        if not want:
            raise UsageError(
                "Nothing to change", hint="Give the new CPUs, memory or disk size (or several)."
            )
        if not self.store.exists(name):
            self.store.load(name)  # the NotFoundError, without making a folder for a lock
        with self._lock(name):
            spec = self.store.load(name)
            if not spec.complete:
                raise MachineError(
                    f"Machine {name!r} is not fully created yet",
                    hint=f"Finish it with `toolbox create {name}` (or remove it with "
                    f"`toolbox rm -f {name}`), then change it.",
                )
            if "disk_gib" in want and want["disk_gib"] < spec.disk_gib:
                raise ValidationError(
                    "disk",
                    f"The disk of machine {name!r} is {spec.disk_gib} GiB; it cannot shrink to "
                    f"{want['disk_gib']} GiB",
                    hint=f"Give {spec.disk_gib} GiB or more: a disk only grows (shrinking "
                    "would cut off the guest's filesystem).",
                )
            vmspec = self._vm_spec_for_state(spec)
            assert vmspec is not None
            driver = self.driver(spec.driver)
            vm_state = driver.state(vmspec)
            if vm_state.is_up:
                raise MachineError(
                    f"Machine {name!r} is running ({machine_state_of(vm_state).value}): its "
                    "CPUs, memory and disk change only while it is stopped",
                    hint=f"Stop it with `toolbox stop {name}`, change it, then start it again.",
                )
            if vm_state.name == "NOT_FOUND":
                raise MachineError(
                    f"The {spec.driver} VM of machine {name!r} is gone",
                    hint=f"Remove the machine with `toolbox rm -f {name}` and create it again.",
                )
            changed: list[str] = []
            # The disk first and on its own: a grown disk cannot be undone, so it is recorded
            # before the CPUs and memory are tried.
            if want.get("disk_gib", spec.disk_gib) != spec.disk_gib:
                driver.modify(vmspec, disk_gib=want["disk_gib"])
                spec = replace(spec, disk_gib=want["disk_gib"])
                self.store.save(spec)
                changed.append("disk_gib")
            rest = {k: v for k, v in want.items() if k != "disk_gib" and getattr(spec, k) != v}
            if rest:
                driver.modify(vmspec, cpus=rest.get("cpus"), memory_mib=rest.get("memory_mib"))
                spec = replace(spec, **rest)  # type: ignore[arg-type]
                self.store.save(spec)
                changed += [k for k in ("cpus", "memory_mib") if k in rest]
            return ResourcesResult(spec, tuple(changed))

    # -- remove ----------------------------------------------------------------------------

    def remove(self, name: str, force: bool = False, keep_logs: bool = False) -> None:
        """Delete the machine: VM, files, console log and Docker context. Without ``force``
        a running machine is refused; with it the VM is killed first, and a damaged record
        or a failing driver does not stop the files from going. ``keep_logs`` keeps its logs
        folder (console, provisioning): a failed create's hint and "Show log" point there."""
        name = validate_name(name)
        directory = self.store.dir_for(name)
        if not directory.exists():
            raise NotFoundError(
                f"No machine named {name!r}", hint="`toolbox ls` lists the machines."
            )
        self.agents.stop(name)
        with self.store.lock(name, timeout=LOCK_TIMEOUT if not force else 30.0):
            # The drivers delete the console log with the VM: set it aside to keep it.
            aside = _set_logs_aside(name) if keep_logs else []
            try:
                self._remove_locked(name, force, keep_logs)
            finally:
                for kept, original in aside:
                    with contextlib.suppress(OSError):
                        os.replace(kept, original)
        self.store.forget_lock(name)

    def _remove_locked(self, name: str, force: bool, keep_logs: bool) -> None:
        spec: MachineSpec | None
        try:
            spec = self.store.load(name)
        except NotFoundError:
            spec = None
        except MachineError:
            if not force:
                raise
            spec = None
        if spec is not None:
            vmspec = self._vm_spec_for_state(spec)
            assert vmspec is not None
            try:
                driver = self.driver(spec.driver)
                if driver.state(vmspec).is_up and not force:
                    raise MachineError(
                        f"Machine {name!r} is running",
                        hint=f"Stop it first (`toolbox stop {name}`), or use "
                        f"`toolbox rm -f {name}`.",
                    )
                driver.remove(vmspec)
            except ToolboxError:
                if not force:
                    raise
        elif force:
            self._remove_unknown(name)
        dockercontext.remove_context(name, self.docker_config)
        self.store.delete(name)
        if not keep_logs:
            shutil.rmtree(console_log_path(name).parent, ignore_errors=True)

    def _remove_unknown(self, name: str) -> None:
        """A machine whose record is damaged: ask every driver to remove what it may have."""
        from toolbox.drivers.base import BootImage, VMSpec
        from toolbox.drivers.registry import DRIVER_NAMES

        files = self.files(name)
        vmspec = VMSpec(
            name=name,
            directory=files.directory,
            cpus=1,
            memory_mib=256,
            disk_gib=1,
            image=BootImage(files.directory / "missing", "qcow2"),
            seed_iso=files.seed_iso,
            forwards=(),
            console_log=console_log_path(name),
        )
        for driver_name in DRIVER_NAMES:
            with contextlib.suppress(ToolboxError):
                driver = self.driver(driver_name)
                if driver.availability().usable:
                    driver.remove(vmspec)

    # -- queries ---------------------------------------------------------------------------

    def status(self, name: str) -> MachineStatus:
        """The machine's state as a user sees it; never waits for a lock."""
        name = validate_name(name)
        busy = self.store.is_busy(name)
        try:
            spec = self.store.load(name)
        except NotFoundError:
            raise
        except MachineError as exc:
            return MachineStatus(
                name, MachineState.ERROR, None, None, None, busy, exc.message, exc.hint
            )
        return self._status_of(spec, busy)

    def _status_of(self, spec: MachineSpec, busy: bool) -> MachineStatus:
        if not spec.complete:
            if busy:
                return MachineStatus(
                    spec.name,
                    MachineState.CREATING,
                    spec.driver,
                    spec,
                    None,
                    True,
                    f"creating (done: {spec.create_phase.title})",
                )
            return MachineStatus(
                spec.name,
                MachineState.ERROR,
                spec.driver,
                spec,
                None,
                False,
                f"creation was interrupted after: {spec.create_phase.title}",
                f"Run `toolbox create {spec.name}` (or `toolbox start {spec.name}`) to continue, "
                f"or `toolbox rm -f {spec.name}` to remove it.",
            )
        vmspec = self._vm_spec_for_state(spec)
        assert vmspec is not None
        try:
            vm_state = self.driver(spec.driver).state(vmspec)
        except ToolboxError as exc:
            return MachineStatus(
                spec.name,
                MachineState.UNKNOWN,
                spec.driver,
                spec,
                None,
                busy,
                exc.message,
                exc.hint,
            )
        state = machine_state_of(vm_state)
        detail = hint = None
        if vm_state.name == "NOT_FOUND":
            detail = f"the {spec.driver} VM is gone"
            hint = f"Remove the machine with `toolbox rm -f {spec.name}` and create it again."
        elif vm_state.name == "ABORTED":
            detail = "the hypervisor process stopped unexpectedly"
        return MachineStatus(spec.name, state, spec.driver, spec, vm_state.name, busy, detail, hint)

    def statuses(self) -> list[MachineStatus]:
        """Every machine, damaged records included (as Error rows)."""
        out = []
        for entry in self.store.entries():
            busy = self.store.is_busy(entry.name)
            if entry.spec is not None:
                status = self._status_of(entry.spec, busy)
                if status.state is MachineState.RUNNING:
                    from toolbox.agent import state as agent_state

                    status = replace(status, agent=agent_state.status(entry.name))
                out.append(status)
            else:
                err = entry.error
                out.append(
                    MachineStatus(
                        entry.name,
                        MachineState.ERROR,
                        None,
                        None,
                        None,
                        busy,
                        err.message if err else None,
                        err.hint if err else None,
                    )
                )
        return out

    def usage(self, status: MachineStatus) -> MachineUsage:
        """What the machine of ``status`` takes on the host: its disk files' allocated bytes,
        and when its VM process started (running QEMU machines). Local reads only."""
        from toolbox.machine.usage import machine_usage

        running = status.state is MachineState.RUNNING
        return machine_usage(self.store.dir_for(status.name), status.driver, running)

    def ip(self, name: str) -> str:
        """The address ``docker`` uses: 127.0.0.1, since the engine is reached through a
        loopback forward (there is no host-only network)."""
        status = self.status(name)
        if status.state is not MachineState.RUNNING:
            raise MachineError(
                f"Machine {name!r} is not running ({status.state.value})",
                hint=f"Start it with `toolbox start {name}`.",
            )
        return LOOPBACK

    def env(self, name: str) -> EngineEnv:
        """The ``DOCKER_*`` settings for the machine's engine."""
        spec = self.get(name)
        if not spec.complete:
            raise MachineError(
                f"Machine {name!r} is not fully created yet",
                hint=f"Run `toolbox create {name}` to finish it.",
            )
        return EngineEnv(spec.name, spec.engine_url, self.files(name).cert_path)

    def inspect(self, name: str, live: bool = True) -> MachineInspect:
        """Details of one machine; ``live`` asks a running guest for its own addresses."""
        spec = self.get(name)
        status = self._status_of(spec, self.store.is_busy(spec.name))
        files = self.files(spec.name)
        forwards: tuple[ForwardInfo, ...] = ()
        vmspec = self._vm_spec_for_state(spec)
        assert vmspec is not None
        with contextlib.suppress(ToolboxError):
            forwards = tuple(
                ForwardInfo(f.name, f.host_ip, f.host_port, f.guest_port, f.protocol)
                for f in self.driver(spec.driver).forwards(vmspec)
            )
        if not forwards:
            forwards = tuple(
                ForwardInfo(f.name, f.host_ip, f.host_port, f.guest_port, f.protocol)
                for f in vmspec.forwards
            )
        addresses: tuple[str, ...] = ()
        if live and status.state is MachineState.RUNNING:
            with contextlib.suppress(ToolboxError, OSError):
                addresses = self.guest.guest_addresses(spec, files)
        fingerprint = None
        if files.host_key_public.exists():
            from toolbox.ssh.keys import fingerprint as ssh_fingerprint

            with contextlib.suppress(ToolboxError):
                fingerprint = ssh_fingerprint(files.host_key_line())
        return MachineInspect(
            status=status,
            spec=spec,
            directory=files.directory,
            console_log=console_log_path(spec.name),
            engine_url=spec.engine_url,
            cert_path=files.cert_path,
            docker_context=dockercontext.context_name(spec.name),
            ssh_user=spec.ssh_user,
            ssh_key=files.user_key,
            host_key_fingerprint=fingerprint,
            forwards=forwards,
            guest_addresses=addresses,
        )

    # -- guest access ----------------------------------------------------------------------

    def _require_running(self, name: str) -> MachineSpec:
        status = self.status(name)
        if status.state is not MachineState.RUNNING or status.spec is None:
            raise MachineError(
                f"Machine {name!r} is not running ({status.state.value})",
                hint=f"Start it with `toolbox start {name}`.",
            )
        return status.spec

    def ssh_argv(self, name: str, command: str | None = None, ssh_binary: str = "ssh") -> list[str]:
        """The system ``ssh`` command line for an interactive session, pinned to the
        machine's own known_hosts (never ``~/.ssh``)."""
        from toolbox.ssh.client import interactive_argv

        spec = self._require_running(name)
        files = self.files(spec.name)
        return interactive_argv(
            ssh_binary,
            LOOPBACK,
            spec.ssh_port,
            spec.ssh_user,
            files.user_key,
            files.known_hosts,
            command,
        )

    def ssh_run(
        self,
        name: str,
        command: str,
        on_output: Callable[[str], None] | None = None,
        timeout: float = 3600.0,
    ) -> CommandResult:
        """Run ``command`` in the guest over paramiko (no ssh binary needed)."""
        spec = self._require_running(name)
        return self.guest.run(spec, self.files(spec.name), command, on_output, timeout)

    def regenerate_certs(
        self, name: str, progress: ProgressCallback | None = None
    ) -> OperationResult:
        """New server and client certificates; the engine restarts; the context follows."""
        name = validate_name(name)
        with self._lock(name):
            spec = self._require_running(name)
            files = self.files(name)
            phases = _Phases("certs", progress)
            started = time.monotonic()
            with phases.phase("regenerate", "Regenerate certificates"):
                self.guest.regenerate_certs(spec, files, progress)
            with phases.phase("engine", "Wait for the engine"):
                if not self.guest.engine_ready(spec, files, self.engine_timeout, None):
                    raise engine_unreachable(spec, console_log_path(name))
            with phases.phase("context", "Docker CLI context"):
                self._write_context(spec, files)
            return OperationResult(spec, tuple(phases.times), time.monotonic() - started)

    # -- port forwards ----------------------------------------------------------------------

    def add_forward(self, name: str, forward: PortForward) -> MachineSpec:
        """Forward a loopback host port to a guest port (live when the driver can)."""
        name = validate_name(name)
        with self._lock(name):
            spec = self.store.load(name)
            clash = {spec.ssh_port, spec.engine_port} | self._used_ports(name)
            clash |= {f.host_port for f in spec.forwards if f.name != forward.name}
            if forward.host_port in clash:
                raise UsageError(
                    f"Host port {forward.host_port} is already used by a machine",
                    hint="Choose another host port.",
                )
            kept = tuple(f for f in spec.forwards if f.name != forward.name)
            spec = replace(spec, forwards=(*kept, forward))
            vmspec = self.vm_spec(spec)
            self.driver(spec.driver).add_forward(vmspec, self._forwards(spec)[-1])
            self.store.save(spec)
            return spec

    def remove_forward(self, name: str, host_port: int, protocol: str = "tcp") -> MachineSpec:
        name = validate_name(name)
        with self._lock(name):
            spec = self.store.load(name)
            match = [
                f for f in spec.forwards if f.host_port == host_port and f.protocol == protocol
            ]
            if not match:
                raise NotFoundError(
                    f"Machine {name!r} has no forward from port {host_port}/{protocol}",
                    hint=f"`toolbox port ls {name}` lists them.",
                )
            vmspec = self.vm_spec(spec)
            self.driver(spec.driver).remove_forward(vmspec, match[0].name)
            spec = replace(spec, forwards=tuple(f for f in spec.forwards if f not in match))
            self.store.save(spec)
            return spec

    # -- host agents --------------------------------------------------------------------------

    def revive_agents(self) -> list[str]:
        """Start the host agent of every running machine whose agent is not running (it
        died, or was killed); returns their names. Cheap when all is well: one lock probe per
        machine, and the hypervisor asked only about machines without an agent."""
        from toolbox.agent import state as agent_state

        revived = []
        for spec in self.specs():
            if not spec.complete or agent_state.is_running(spec.name):
                continue
            if self.store.is_busy(spec.name):  # being started or stopped: that one decides
                continue
            try:
                up = self.driver(spec.driver).state(self.vm_spec_of(spec)).is_up
            except ToolboxError:
                continue
            if up:
                self.agents.ensure(spec.name)
                revived.append(spec.name)
        return revived

    # -- shares and where ports bind -----------------------------------------------------------

    def add_share(self, name: str, share: Share) -> MachineSpec:
        """Share a host folder into the machine; a running machine's agent mounts it within
        a second or two (it follows the record), a stopped one on its next start."""
        name = validate_name(name)
        share = validate_share(share)
        with self._lock(name):
            spec = self.store.load(name)
            kept = tuple(s for s in spec.shares if s.guest_path != share.guest_path)
            shares = (*kept, share)
            _check_share_overlap(shares)
            spec = replace(spec, shares=shares)
            self.store.save(spec)
            return spec

    def remove_share(self, name: str, path: str) -> MachineSpec:
        """Stop sharing the share whose host or guest path is ``path``."""
        name = validate_name(name)
        with self._lock(name):
            spec = self.store.load(name)
            norm = str(Path(path).expanduser()) if not path.startswith("/") else path.rstrip("/")
            match = [s for s in spec.shares if norm in (s.host_path, s.guest_path)]
            if not match:
                raise NotFoundError(
                    f"Machine {name!r} has no share {path!r}",
                    hint=f"`toolbox share ls {name}` lists them.",
                )
            spec = replace(spec, shares=tuple(s for s in spec.shares if s not in match))
            self.store.save(spec)
            return spec

    def set_port_bind(self, name: str, bind: PortBind) -> MachineSpec:
        """Where published ports bind on the host; a running agent re-binds them at once."""
        name = validate_name(name)
        with self._lock(name):
            spec = replace(self.store.load(name), port_bind=bind)
            self.store.save(spec)
            return spec

    # -- images ----------------------------------------------------------------------------

    def image_users(self, image_name: str) -> list[str]:
        """Machines whose disks are overlays over ``image_name``."""
        return [s.name for s in self.specs() if s.image == image_name]

    def remove_image(self, image_name: str, force: bool = False) -> None:
        users = self.image_users(image_name)
        if users and not force:
            raise UsageError(
                f"Image {image_name!r} is the base of machine(s): {', '.join(users)}",
                hint="Remove those machines first; with -f the image goes anyway and "
                "those machines will no longer start.",
            )
        self.images.remove(image_name)


def _check_share_overlap(shares: tuple[Share, ...]) -> None:
    seen: set[str] = set()
    for share in shares:
        if share.guest_path in seen:
            raise UsageError(
                f"Two shares are mounted at {share.guest_path}",
                hint="Give one of them another guest path (HOSTPATH:GUESTPATH).",
            )
        seen.add(share.guest_path)


def max_phase(a: CreatePhase, b: CreatePhase) -> CreatePhase:
    return a if a.after(b) else b
