"""The machine service's phase logic with an in-memory hypervisor and guest (see
machine_fakes.py for why); the store, image cache, keys, seed ISO, TLS files and Docker CLI
contexts are real. tests/e2e/test_machine_e2e.py runs the same paths against real QEMU."""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import wait_until
from tests.unit.machine_fakes import FakeDriver, FakeGuest
from toolbox import dockercontext, paths
from toolbox.drivers.base import VMState
from toolbox.errors import (
    Cancelled,
    DriverError,
    MachineError,
    NotFoundError,
    ProvisionError,
    UsageError,
    ValidationError,
)
from toolbox.guest.images import ImageStore
from toolbox.machine.model import CreatePhase, MachineState, PortForward
from toolbox.machine.service import CreateOptions, MachineService, console_log_path
from toolbox.machine.store import MachineStore
from toolbox.progress import Progress

IMAGE = "test-image"


@pytest.fixture
def driver() -> FakeDriver:
    return FakeDriver()


@pytest.fixture
def guest(driver: FakeDriver) -> FakeGuest:
    return FakeGuest(driver)


@pytest.fixture
def images(toolbox_home: Path, tmp_path: Path) -> ImageStore:
    store = ImageStore()
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"\0" * 4096)
    store.add(IMAGE, disk, format="raw", arch="amd64", source="test")
    return store


@pytest.fixture
def service(driver: FakeDriver, guest: FakeGuest, images: ImageStore) -> MachineService:
    return MachineService(
        images=images,
        driver_factory=lambda name: driver,
        guest=guest,
        default_driver=lambda: "qemu",
    )


def options(name: str = "default", **kw: object) -> CreateOptions:
    return CreateOptions(name=name, image=IMAGE, **kw)  # type: ignore[arg-type]


class Recorder:
    def __init__(self, stop_at: tuple[str, bool] | None = None):
        self.reports: list[Progress] = []
        self.stop_at = stop_at

    def __call__(self, report: Progress) -> None:
        self.reports.append(report)
        if self.stop_at == (report.step, report.done):
            raise KeyboardInterrupt

    def steps(self, done: bool) -> list[str]:
        return [r.step for r in self.reports if r.done == done and r.step.startswith("create.")]


def test_create_runs_every_phase_and_records_the_machine(
    service: MachineService, driver: FakeDriver, guest: FakeGuest
) -> None:
    progress = Recorder()
    result = service.create(options(cpus=3, memory_mib=1024, disk_gib=8), progress)
    spec = result.spec
    assert (spec.cpus, spec.memory_mib, spec.disk_gib, spec.image) == (3, 1024, 8, IMAGE)
    assert spec.complete and spec.provisioned and not result.resumed
    assert [p.phase for p in result.phases] == [
        "image", "keys", "seed", "vm", "boot", "provision", "context"
    ]  # fmt: skip
    assert (
        progress.steps(done=False)
        == progress.steps(done=True)
        == [f"create.{p.phase}" for p in result.phases]
    )
    assert "provision.engine" in [r.step for r in progress.reports]
    assert driver.calls == ["create default", "start default"]
    assert guest.provisions == ["default"]
    assert spec.ssh_port != spec.engine_port
    files = service.files("default")
    assert stat.S_IMODE(files.user_key.stat().st_mode) == 0o600
    assert stat.S_IMODE(files.host_key_private.stat().st_mode) == 0o600
    assert stat.S_IMODE(files.directory.stat().st_mode) == 0o700
    assert files.seed_iso.stat().st_size > 0
    host_key = files.host_key_public.read_text().split()[1]
    assert files.known_hosts.read_text().split() == [
        f"[127.0.0.1]:{spec.ssh_port}", "ssh-ed25519", host_key
    ]  # fmt: skip
    raw = json.loads((files.directory / "machine.json").read_text())
    assert raw["create_phase"] == "done" and raw["provisioned"] is True
    ctx = dockercontext.read_context("toolbox-default")
    assert ctx is not None and ctx.host == f"tcp://127.0.0.1:{spec.engine_port}"
    assert dockercontext.current_context() is None  # never switched without asking
    assert service.status("default").state is MachineState.RUNNING


def test_create_refuses_an_existing_machine(service: MachineService) -> None:
    service.create(options())
    with pytest.raises(MachineError) as info:
        service.create(options())
    assert "toolbox start default" in (info.value.hint or "")


def test_ports_differ_between_machines(service: MachineService) -> None:
    a = service.create(options("a")).spec
    b = service.create(options("b")).spec
    assert len({a.ssh_port, a.engine_port, b.ssh_port, b.engine_port}) == 4


def test_a_failed_provision_is_resumed_by_create(
    service: MachineService, driver: FakeDriver, guest: FakeGuest
) -> None:
    guest.fail_provision = 1
    with pytest.raises(ProvisionError):
        service.create(options(keep_on_failure=True))
    spec = service.get("default")
    assert spec.create_phase is CreatePhase.BOOT and not spec.provisioned
    status = service.status("default")
    assert status.state is MachineState.ERROR
    assert "interrupted" in (status.detail or "")
    assert "toolbox create default" in (status.hint or "")
    assert "toolbox rm -f default" in (status.hint or "")
    progress = Recorder()
    result = service.create(CreateOptions(name="default"), progress)
    assert result.resumed and result.spec.complete
    skipped = {p.phase for p in result.phases if p.skipped}
    assert skipped == {"keys", "seed", "vm"}
    assert driver.calls == ["create default", "start default"]  # still running: no 2nd start
    assert guest.provisions == ["default", "default"]


def test_ctrl_c_after_the_seed_is_continued_by_start(
    service: MachineService, driver: FakeDriver, guest: FakeGuest
) -> None:
    with pytest.raises(KeyboardInterrupt):
        service.create(options(keep_on_failure=True), Recorder(stop_at=("create.seed", True)))
    assert service.get("default").create_phase is CreatePhase.SEED
    assert not service.store.is_busy("default")  # the lock went with the interrupt
    key_before = service.files("default").user_key.read_bytes()
    result = service.start("default")
    assert result.spec.complete and result.resumed
    assert service.files("default").user_key.read_bytes() == key_before
    assert driver.calls == ["create default", "start default"]


def test_a_crash_during_boot_restarts_the_vm_on_resume(
    service: MachineService, driver: FakeDriver, guest: FakeGuest
) -> None:
    def vm_dies() -> None:
        driver.states["default"] = VMState.ABORTED  # hypervisor process died mid-provision
        raise ConnectionResetError("guest went away")

    guest.on_provision = vm_dies
    with pytest.raises(ConnectionResetError):
        service.create(options(keep_on_failure=True))
    assert service.status("default").state is MachineState.ERROR
    guest.on_provision = None
    service.create(options(keep_on_failure=True))
    assert driver.calls == ["create default", "start default", "start default"]
    assert service.status("default").state is MachineState.RUNNING


def test_resume_with_another_driver_is_refused(service: MachineService, guest: FakeGuest) -> None:
    guest.fail_provision = 1
    with pytest.raises(ProvisionError):
        service.create(options(keep_on_failure=True))
    with pytest.raises(UsageError):
        service.create(options(driver="virtualbox"))


def test_unusable_driver_leaves_nothing_behind(service: MachineService, driver: FakeDriver) -> None:
    driver.usable = False
    with pytest.raises(DriverError) as info:
        service.create(options())
    assert info.value.hint == "Install the fake hypervisor."
    assert not (paths.machines_dir() / "default").exists()


def test_start_of_a_provisioned_machine_does_not_provision(
    service: MachineService, driver: FakeDriver, guest: FakeGuest
) -> None:
    service.create(options())
    service.stop("default")
    assert service.status("default").state is MachineState.STOPPED
    result = service.start("default")
    assert [p.phase for p in result.phases] == ["boot", "engine", "context"]
    assert result.provision is None
    assert guest.provisions == ["default"]


def test_start_reprovisions_when_the_engine_does_not_come_up(
    service: MachineService, driver: FakeDriver, guest: FakeGuest
) -> None:
    service.create(options())
    service.stop("default")
    guest.engine_up = False
    result = service.start("default")
    assert [p.phase for p in result.phases] == ["boot", "engine", "provision", "context"]
    assert guest.provisions == ["default", "default"]


def test_a_dead_hypervisor_reads_as_stopped_and_start_works(
    service: MachineService, driver: FakeDriver
) -> None:
    service.create(options())
    driver.states["default"] = VMState.ABORTED
    status = service.status("default")
    assert status.state is MachineState.STOPPED
    assert status.vm_state == "ABORTED"
    assert "unexpectedly" in (status.detail or "")
    service.start("default")
    assert service.status("default").state is MachineState.RUNNING


def test_a_vm_gone_from_the_hypervisor_says_what_to_do(
    service: MachineService, driver: FakeDriver
) -> None:
    service.create(options())
    del driver.states["default"]
    status = service.status("default")
    assert status.state is MachineState.ERROR
    assert "toolbox rm -f default" in (status.hint or "")


@pytest.fixture
def occupied() -> Iterator[list[socket.socket]]:
    held: list[socket.socket] = []
    yield held
    for sock in held:
        sock.close()


def _occupy(port: int, held: list[socket.socket]) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    sock.listen(1)
    held.append(sock)


def test_taken_ports_are_chosen_again_at_start(
    service: MachineService, driver: FakeDriver, occupied: list[socket.socket]
) -> None:
    before = service.create(options()).spec
    service.stop("default")
    _occupy(before.ssh_port, occupied)
    _occupy(before.engine_port, occupied)
    after = service.start("default").spec
    assert after.ssh_port != before.ssh_port and after.engine_port != before.engine_port
    assert service.get("default") == after
    started = {f.name: f.host_port for f in driver.started_with[-1]}
    assert started["ssh"] == after.ssh_port and started["engine"] == after.engine_port
    assert f"add_forward default ssh {after.ssh_port}" in driver.calls
    known = service.files("default").known_hosts.read_text()
    assert known.startswith(f"[127.0.0.1]:{after.ssh_port} ")
    ctx = dockercontext.read_context("toolbox-default")
    assert ctx is not None and ctx.host == after.engine_url


def test_free_ports_are_kept(service: MachineService, driver: FakeDriver) -> None:
    before = service.create(options()).spec
    service.stop("default")
    after = service.start("default").spec
    assert (after.ssh_port, after.engine_port) == (before.ssh_port, before.engine_port)
    assert not [c for c in driver.calls if c.startswith("add_forward")]


def test_remove_refuses_a_running_machine_unless_forced(
    service: MachineService, driver: FakeDriver
) -> None:
    service.create(options())
    with pytest.raises(MachineError) as info:
        service.remove("default")
    assert "toolbox rm -f default" in (info.value.hint or "")
    assert service.status("default").state is MachineState.RUNNING
    service.remove("default", force=True)
    assert "remove default" in driver.calls
    assert not (paths.machines_dir() / "default").exists()
    assert not console_log_path("default").parent.exists()
    assert dockercontext.read_context("toolbox-default") is None
    with pytest.raises(NotFoundError):
        service.status("default")


def test_remove_of_a_stopped_machine(service: MachineService) -> None:
    service.create(options())
    service.stop("default")
    dockercontext.use_context("toolbox-default")
    service.remove("default")
    assert not (paths.machines_dir() / "default").exists()
    assert dockercontext.current_context() is None  # docker goes back to its default


def test_force_remove_of_an_interrupted_create(
    service: MachineService, guest: FakeGuest, driver: FakeDriver
) -> None:
    guest.fail_provision = 1
    with pytest.raises(ProvisionError):
        service.create(options(keep_on_failure=True))
    service.remove("default", force=True)
    assert not (paths.machines_dir() / "default").exists()
    assert driver.states == {}


def test_force_remove_of_a_damaged_record(service: MachineService) -> None:
    service.create(options())
    service.stop("default")
    path = paths.machines_dir() / "default" / "machine.json"
    path.write_text("{ not json")
    with pytest.raises(MachineError):
        service.remove("default")
    assert path.read_text() == "{ not json"
    statuses = service.statuses()
    assert [(s.name, s.state) for s in statuses] == [("default", MachineState.ERROR)]
    service.remove("default", force=True)
    assert not (paths.machines_dir() / "default").exists()


def test_remove_of_an_unknown_machine(service: MachineService) -> None:
    with pytest.raises(NotFoundError):
        service.remove("ghost")
    with pytest.raises(ValidationError):
        service.remove("../etc")


def test_status_of_a_create_in_progress_elsewhere(service: MachineService) -> None:
    started, release = threading.Event(), threading.Event()
    store = MachineStore()

    def holder() -> None:
        with store.lock("default"):
            started.set()
            release.wait(30)

    guest_fail = service.guest
    assert isinstance(guest_fail, FakeGuest)
    guest_fail.fail_provision = 1
    with pytest.raises(ProvisionError):
        service.create(options(keep_on_failure=True))
    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert started.wait(10)
        status = service.status("default")
        assert status.state is MachineState.CREATING and status.busy
        with pytest.raises(MachineError) as info:
            service.start("default")
        assert "busy" in info.value.message
    finally:
        release.set()
        thread.join(10)
    wait_until(lambda: not service.store.is_busy("default"), 10, what="lock released")
    assert service.status("default").state is MachineState.ERROR


def test_ip_env_and_inspect(service: MachineService) -> None:
    spec = service.create(options()).spec
    assert service.ip("default") == "127.0.0.1"
    env = service.env("default")
    assert env.host == f"tcp://127.0.0.1:{spec.engine_port}"
    assert env.cert_path == service.files("default").directory
    assert {"ca.pem", "cert.pem", "key.pem"} <= set(os.listdir(env.cert_path))
    info = service.inspect("default")
    assert info.guest_addresses == ("10.0.2.15",)
    assert {(f.name, f.host_port, f.guest_port) for f in info.forwards} == {
        ("ssh", spec.ssh_port, 22),
        ("engine", spec.engine_port, 2376),
    }
    assert all(f.host_ip == "127.0.0.1" for f in info.forwards)
    assert info.host_key_fingerprint and info.host_key_fingerprint.startswith("SHA256:")
    assert info.docker_context == "toolbox-default"
    service.stop("default")
    with pytest.raises(MachineError):
        service.ip("default")
    assert service.inspect("default").guest_addresses == ()


def test_env_of_an_unfinished_machine_is_refused(service: MachineService, guest: FakeGuest) -> None:
    guest.fail_provision = 1
    with pytest.raises(ProvisionError):
        service.create(options(keep_on_failure=True))
    with pytest.raises(MachineError):
        service.env("default")


def test_regenerate_certs_rewrites_the_context(service: MachineService) -> None:
    service.create(options())
    cert = service.files("default").directory / "cert.pem"
    before = cert.read_bytes()
    ctx_cert = dockercontext.tls_dir("toolbox-default", dockercontext.docker_config_dir())
    service.regenerate_certs("default")
    assert cert.read_bytes() != before
    assert (ctx_cert / "docker" / "cert.pem").read_bytes() == cert.read_bytes()


def test_port_forwards(service: MachineService, driver: FakeDriver) -> None:
    spec = service.create(options()).spec
    service.add_forward("default", PortForward(18080, 80))
    assert service.get("default").forwards == (PortForward(18080, 80),)
    assert "add_forward default user-tcp-18080 18080" in driver.calls
    with pytest.raises(UsageError):
        service.add_forward("default", PortForward(spec.ssh_port, 80))
    service.remove_forward("default", 18080)
    assert service.get("default").forwards == ()
    assert "remove_forward default user-tcp-18080" in driver.calls
    with pytest.raises(NotFoundError):
        service.remove_forward("default", 18080)


def test_image_in_use_is_not_removed_without_force(
    service: MachineService, images: ImageStore
) -> None:
    service.create(options())
    assert service.image_users(IMAGE) == ["default"]
    with pytest.raises(UsageError) as info:
        service.remove_image(IMAGE)
    assert "default" in info.value.message
    assert images.exists(IMAGE)
    service.remove_image(IMAGE, force=True)
    assert not images.exists(IMAGE)
    # The machine still reports its state (and can be removed) without its base image.
    assert service.status("default").state is MachineState.RUNNING
    service.remove("default", force=True)


def test_ssh_run_and_argv(service: MachineService, guest: FakeGuest) -> None:
    spec = service.create(options()).spec
    lines: list[str] = []
    result = service.ssh_run("default", "uname -a", on_output=lines.append)
    assert result.exit_code == 3 and lines == ["out: uname -a", "warn"]
    argv = service.ssh_argv("default", ssh_binary="/usr/bin/ssh")
    files = service.files("default")
    assert argv[0] == "/usr/bin/ssh"
    assert f"UserKnownHostsFile={files.known_hosts}" in argv
    assert "StrictHostKeyChecking=yes" in argv
    assert argv[argv.index("-p") + 1] == str(spec.ssh_port)
    assert argv[argv.index("-i") + 1] == str(files.user_key)
    assert "docker@127.0.0.1" in argv
    service.stop("default")
    with pytest.raises(MachineError):
        service.ssh_run("default", "true")


def test_guest_addresses_leave_out_loopback_and_engine_bridges() -> None:
    from toolbox.machine.guestops import parse_ip_addr

    text = (
        "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n"
        "2: enp0s3    inet 10.0.2.15/24 brd 10.0.2.255 scope global dynamic enp0s3\\ x\n"
        "3: docker0    inet 172.17.0.1/16 brd 172.17.255.255 scope global docker0\\ x\n"
        "4: br-1a2b3c    inet 172.18.0.1/16 scope global br-1a2b3c\n"
        "5: eth1    inet 192.168.1.7/24 scope global eth1\n"
        "garbage\n"
    )
    assert parse_ip_addr(text) == ("10.0.2.15", "192.168.1.7")
    assert parse_ip_addr("") == ()


@pytest.mark.parametrize(
    ("field", "value"), [("cpus", 0), ("memory_mib", 100), ("disk_gib", 1), ("name", "Bad")]
)
def test_create_validates_its_options(service: MachineService, field: str, value: object) -> None:
    values: dict[str, object] = {"name": "default", "image": IMAGE, field: value}
    with pytest.raises(ValidationError):
        service.create(CreateOptions(**values))  # type: ignore[arg-type]
    assert not (paths.machines_dir() / "default").exists()


# -- nothing half-made: a failed or cancelled create removes what it made ----------------------


def _assert_nothing_left(service: MachineService, driver: FakeDriver, name: str) -> None:
    assert not service.store.dir_for(name).exists()
    logs = console_log_path(name).parent  # a failed create keeps only its logs, to read
    assert not logs.exists() or all(p.suffix == ".log" for p in logs.iterdir())
    assert dockercontext.read_context(f"toolbox-{name}") is None
    assert name not in driver.states and name not in driver.resources
    assert service.statuses() == []


def test_a_failed_create_removes_the_vm_files_and_record(
    service: MachineService, driver: FakeDriver, guest: FakeGuest
) -> None:
    guest.fail_provision = 1
    with pytest.raises(ProvisionError) as info:
        service.create(options())
    hint = info.value.hint or ""
    assert hint.startswith("check the network")  # the cause's own hint comes first
    assert "was removed" in hint and "toolbox create default --keep-on-failure" in hint
    assert driver.calls == ["create default", "start default", "remove default"]
    _assert_nothing_left(service, driver, "default")
    # The name is free again: the next create starts over rather than refusing or resuming.
    result = service.create(options())
    assert result.spec.complete and not result.resumed
    assert not any(p.skipped for p in result.phases)


def test_a_missing_image_leaves_no_machine_record(
    service: MachineService, driver: FakeDriver, tmp_path: Path
) -> None:
    # The case: `toolbox create x --image /nonexistent.qcow2`, then `toolbox create x`.
    with pytest.raises(NotFoundError) as info:
        service.create(CreateOptions(name="x", image=str(tmp_path / "nonexistent.qcow2")))
    assert "--keep-on-failure" in (info.value.hint or "")
    assert driver.calls == ["remove x"]  # no VM was made; removing one is safe anyway
    _assert_nothing_left(service, driver, "x")
    assert service.create(options("x")).spec.complete


def test_a_failed_vm_create_removes_its_half_written_disk(
    service: MachineService, driver: FakeDriver
) -> None:
    driver.fail_create = 1
    with pytest.raises(DriverError):
        service.create(options())
    assert "remove default" in driver.calls
    _assert_nothing_left(service, driver, "default")


def test_ctrl_c_removes_what_the_create_made(service: MachineService, driver: FakeDriver) -> None:
    with pytest.raises(KeyboardInterrupt) as info:
        service.create(options(), Recorder(stop_at=("create.seed", True)))
    notes = getattr(info.value, "__notes__", [])
    assert len(notes) == 1 and "toolbox create default --keep-on-failure" in notes[0]
    _assert_nothing_left(service, driver, "default")
    assert service.create(options()).spec.complete


def test_a_cancelled_create_removes_the_vm_it_started(
    service: MachineService, driver: FakeDriver
) -> None:
    cancel = threading.Event()

    def progress(report: Progress) -> None:
        if (report.step, report.done) == ("create.boot", False):
            cancel.set()  # as the GUI's Cancel button does, while the VM boots

    with pytest.raises(Cancelled) as info:
        service.create(options(), progress, cancel)
    assert "--keep-on-failure" in (info.value.hint or "")
    assert driver.calls == ["create default", "start default", "remove default"]
    _assert_nothing_left(service, driver, "default")


@pytest.mark.parametrize("phase", ["image", "keys", "seed", "vm", "boot", "provision", "context"])
def test_cancel_in_each_phase_stops_there_and_leaves_nothing(
    service: MachineService, driver: FakeDriver, phase: str
) -> None:
    """The GUI's Cancel sets the event while a phase runs: the create stops with Cancelled
    before the next phase starts, and what it made is removed. (The real phases that take
    long, the download and waiting for SSH and the provisioning, are cancelled mid-phase in
    tests/ui/test_create_failures.py and tests/vm/test_app_failures.py.)"""
    cancel = threading.Event()
    started: list[str] = []

    def progress(report: Progress) -> None:
        if report.step.startswith("create.") and report.step.count(".") == 1 and not report.done:
            started.append(report.step)
            if report.step == f"create.{phase}":
                cancel.set()

    with pytest.raises(Cancelled):
        service.create(options(), progress, cancel)
    assert started[-1] == f"create.{phase}", started  # no later phase began
    _assert_nothing_left(service, driver, "default")
    assert service.create(options()).spec.complete  # and a new try starts afresh


def test_keep_on_failure_keeps_the_machine_and_start_continues_it(
    service: MachineService, driver: FakeDriver
) -> None:
    driver.fail_create = 1
    with pytest.raises(DriverError) as info:
        service.create(options(keep_on_failure=True))
    assert info.value.hint == "try again"  # nothing was removed, so nothing is said about it
    spec = service.get("default")
    assert spec.create_phase is CreatePhase.SEED
    assert service.status("default").state is MachineState.ERROR
    assert service.files("default").seed_iso.exists()  # there to inspect
    result = service.start("default")
    assert result.resumed and result.spec.complete
    assert {p.phase for p in result.phases if p.skipped} == {"keys", "seed"}


def test_a_failed_continuation_of_a_kept_machine_keeps_it(
    service: MachineService, guest: FakeGuest
) -> None:
    guest.fail_provision = 2
    with pytest.raises(ProvisionError):
        service.create(options(keep_on_failure=True))
    # Continued without the flag: the user kept this machine, a failure does not remove it.
    with pytest.raises(ProvisionError) as info:
        service.create(CreateOptions(name="default"))
    assert info.value.hint == "check the network"
    assert service.get("default").create_phase is CreatePhase.BOOT
    assert service.create(CreateOptions(name="default")).spec.complete


def test_refused_creates_never_remove_the_machine_that_is_there(
    service: MachineService, guest: FakeGuest
) -> None:
    service.create(options())
    with pytest.raises(MachineError):
        service.create(options())  # exists already
    assert service.get("default").complete
    guest.fail_provision = 1
    with pytest.raises(ProvisionError):
        service.create(options("other", keep_on_failure=True))
    store = MachineStore()
    started, release = threading.Event(), threading.Event()

    def holder() -> None:
        with store.lock("other"):
            started.set()
            release.wait(30)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert started.wait(10)
        with pytest.raises(MachineError) as info:
            service.create(options("other"))  # busy: another operation works on it
        assert "busy" in info.value.message
    finally:
        release.set()
        thread.join(10)
    assert service.get("other").create_phase is CreatePhase.BOOT


def test_a_failing_cleanup_keeps_the_create_error_and_says_what_to_do(
    service: MachineService, guest: FakeGuest, monkeypatch: pytest.MonkeyPatch
) -> None:
    def remove_fails(name: str, force: bool = False, keep_logs: bool = False) -> None:
        raise MachineError("the disk is held by another program")

    monkeypatch.setattr(service, "remove", remove_fails)
    guest.fail_provision = 1
    with pytest.raises(ProvisionError) as info:
        service.create(options())
    hint = info.value.hint or ""
    assert "failed too (the disk is held by another program)" in hint
    assert "toolbox rm -f default" in hint


# -- set_resources: CPUs, memory and disk of a stopped machine ---------------------------------


def test_set_resources_of_a_stopped_machine(service: MachineService, driver: FakeDriver) -> None:
    service.create(options(cpus=2, memory_mib=2048, disk_gib=20))
    service.stop("default")
    driver.calls.clear()
    result = service.set_resources("default", cpus=4, memory_mib="4G", disk_gib="40GiB")
    assert result.changed == ("disk_gib", "cpus", "memory_mib")
    assert (result.spec.cpus, result.spec.memory_mib, result.spec.disk_gib) == (4, 4096, 40)
    # The disk on its own first (it cannot be undone), then CPUs and memory together.
    assert driver.calls == [
        "modify default cpus=None memory=None disk=40",
        "modify default cpus=4 memory=4096 disk=None",
    ]
    assert driver.resources["default"] == (4, 4096, 40)
    raw = json.loads((service.files("default").directory / "machine.json").read_text())
    assert (raw["cpus"], raw["memory_mib"], raw["disk_gib"]) == (4, 4096, 40)
    # What the next start hands the driver (QEMU puts it on its command line).
    vmspec = service.vm_spec(service.get("default"))
    assert (vmspec.cpus, vmspec.memory_mib, vmspec.disk_gib) == (4, 4096, 40)
    service.start("default")
    assert service.status("default").state is MachineState.RUNNING


def test_set_resources_only_sends_what_changes(service: MachineService, driver: FakeDriver) -> None:
    service.create(options(cpus=2, memory_mib=2048, disk_gib=20))
    service.stop("default")
    driver.calls.clear()
    assert service.set_resources("default", cpus=2, disk_gib=20).changed == ()
    assert driver.calls == []
    result = service.set_resources("default", cpus=2, memory_mib=1024)
    assert result.changed == ("memory_mib",)
    assert driver.calls == ["modify default cpus=None memory=1024 disk=None"]


def test_set_resources_is_refused_while_the_machine_runs(
    service: MachineService, driver: FakeDriver
) -> None:
    before = service.create(options()).spec
    driver.calls.clear()
    with pytest.raises(MachineError) as info:
        service.set_resources("default", cpus=4)
    assert "is running" in info.value.message
    assert "toolbox stop default" in (info.value.hint or "")
    driver.states["default"] = VMState.PAUSED
    with pytest.raises(MachineError):
        service.set_resources("default", memory_mib=4096)
    assert driver.calls == []
    assert service.get("default") == before


def test_set_resources_refuses_to_shrink_the_disk(
    service: MachineService, driver: FakeDriver
) -> None:
    before = service.create(options(disk_gib=20)).spec
    service.stop("default")
    driver.calls.clear()
    with pytest.raises(ValidationError) as info:
        service.set_resources("default", cpus=4, disk_gib=10)
    assert info.value.field == "disk"
    assert "cannot shrink" in info.value.message and "20 GiB or more" in (info.value.hint or "")
    assert driver.calls == []  # nothing at all changed, CPUs neither
    assert service.get("default") == before


def test_set_resources_records_only_what_the_driver_did(
    service: MachineService, driver: FakeDriver
) -> None:
    before = service.create(options(cpus=2, disk_gib=20)).spec
    service.stop("default")
    driver.fail_modify = {"cpus"}
    with pytest.raises(DriverError):
        service.set_resources("default", cpus=4, disk_gib=30)
    # The disk grew (and is recorded); the CPUs did not change, and the record says so.
    after = service.get("default")
    assert (after.cpus, after.disk_gib) == (2, 30)
    assert driver.resources["default"][0] == 2
    driver.fail_modify = {"disk_gib"}
    with pytest.raises(DriverError):
        service.set_resources("default", disk_gib=40)
    assert service.get("default").disk_gib == 30
    assert before.created == after.created


def test_set_resources_input_and_state_errors(
    service: MachineService, guest: FakeGuest, driver: FakeDriver
) -> None:
    with pytest.raises(NotFoundError):
        service.set_resources("ghost", cpus=2)
    assert not service.store.dir_for("ghost").exists()  # no folder made for its lock
    guest.fail_provision = 1
    with pytest.raises(ProvisionError):
        service.create(options(keep_on_failure=True))
    with pytest.raises(MachineError) as info:
        service.set_resources("default", cpus=4)
    assert "not fully created" in info.value.message
    service.create(options())
    service.stop("default")
    with pytest.raises(UsageError):
        service.set_resources("default")
    for kwargs in ({"cpus": 0}, {"memory_mib": "12"}, {"disk_gib": "1"}, {"disk_gib": "x"}):
        with pytest.raises(ValidationError):
            service.set_resources("default", **kwargs)  # type: ignore[arg-type]
    del driver.states["default"]
    with pytest.raises(MachineError) as info:
        service.set_resources("default", cpus=4)
    assert "toolbox rm -f default" in (info.value.hint or "")
