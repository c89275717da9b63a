"""The guest clock is corrected after the VM is paused: a real QEMU guest (TCG) made by the
driver from the ``guest_image`` fixture (which bakes in toolbox-clock-sync), its QEMU process
stopped with SIGSTOP for 60 s and continued; within 30 s the guest's ``date`` is within 2 s of
the host's. Holds ``/tmp/toolbox-vm.lock`` while the VM runs.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from filelock import FileLock

from tests.harness import free_port
from toolbox.drivers.base import Forward, VMSpec
from toolbox.drivers.qemu import QemuDriver
from toolbox.errors import SSHError
from toolbox.guest.seed import SeedConfig, write_seed_iso
from toolbox.provision import ProvisionContext, clock, run_steps
from toolbox.provision.steps import STEPS
from toolbox.ssh.client import GuestSSH, wait_for_banner
from toolbox.ssh.keys import generate_host_key, generate_user_key

pytestmark = [pytest.mark.vm, pytest.mark.timeout(1800)]

VM_LOCK = "/tmp/toolbox-vm.lock"
MACHINE = "clocktest"
BOOT_TIMEOUT = 600.0
PAUSE_SECONDS = 60.0
CORRECTED_WITHIN = 30.0
TOLERANCE = 2.0


@dataclass
class Guest:
    ssh: GuestSSH
    pid: int
    console_log: Path


def _connect(ssh: GuestSSH, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            ssh.connect(timeout=30)
            return
        except SSHError:
            if time.monotonic() > deadline:
                raise
            time.sleep(2)  # polling interval of a bounded wait


@pytest.fixture(scope="module")
def guest(guest_image, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guest]:
    driver = QemuDriver()
    if not driver.availability().usable:
        pytest.skip("QEMU is not installed")
    base = tmp_path_factory.mktemp("clock-vm")
    machine_dir = base / "machine"
    machine_dir.mkdir()
    user_key = generate_user_key(machine_dir / "id_ed25519")
    host_key = generate_host_key()
    seed = write_seed_iso(
        machine_dir / "seed.iso",
        SeedConfig(
            instance_id=f"{MACHINE}-{int(time.time())}",
            hostname=MACHINE,
            user="docker",
            authorized_key=user_key.public_line,
            host_key_private=host_key.private_openssh,
            host_key_public=host_key.public_line,
        ),
    )
    ssh_port = free_port()
    console_log = base / "console.log"
    spec = VMSpec(
        name=MACHINE,
        directory=machine_dir,
        cpus=1,
        memory_mib=1024,
        disk_gib=8,
        image=guest_image.boot_image(),
        seed_iso=seed,
        forwards=(Forward("ssh", 22, ssh_port),),
        console_log=console_log,
    )
    ssh = GuestSSH("127.0.0.1", ssh_port, "docker", user_key.private_path, host_key.public_line)
    lock = FileLock(VM_LOCK)
    lock.acquire(timeout=3600)
    try:
        driver.create(spec)
        driver.start(spec)
        wait_for_banner("127.0.0.1", ssh_port, BOOT_TIMEOUT, console_log=console_log)
        _connect(ssh, 180)
        pid = int((machine_dir / "qemu.pid").read_text().strip())
        yield Guest(ssh, pid, console_log)
    finally:
        ssh.close()
        try:
            driver.kill(spec)
        finally:
            driver.remove(spec)
            lock.release()
            shutil.rmtree(base, ignore_errors=True)


def _offset(ssh: GuestSSH) -> float:
    """Guest clock minus host clock, in seconds (the SSH round trip is in the error)."""
    before = time.time()
    guest_now = float(ssh.run("date +%s.%N", 60).stdout.strip())
    after = time.time()
    return guest_now - (before + after) / 2


def test_the_clock_sync_timer_runs_in_the_guest(guest: Guest) -> None:
    active = guest.ssh.run(f"systemctl is-active {clock.TIMER_UNIT}", 30, check=False)
    assert active.stdout.strip() == "active"
    assert abs(_offset(guest.ssh)) < TOLERANCE


def test_the_guest_clock_is_corrected_after_a_pause(guest: Guest) -> None:
    ssh = guest.ssh
    ssh.close()  # the connection would not survive a 60 s freeze reliably
    os.kill(guest.pid, signal.SIGSTOP)
    try:
        time.sleep(PAUSE_SECONDS)  # the pause is what is tested, not a wait for something
    finally:
        os.kill(guest.pid, signal.SIGCONT)
    resumed = time.monotonic()
    _connect(ssh, 60)
    first = _offset(ssh)
    print(f"\n[clock] offset just after SIGCONT: {first:+.2f} s")
    offset = first
    while abs(offset) >= TOLERANCE and time.monotonic() - resumed < CORRECTED_WITHIN:
        time.sleep(1)  # polling interval of a bounded wait
        offset = _offset(ssh)
    took = time.monotonic() - resumed
    print(f"[clock] offset {offset:+.2f} s, {took:.1f} s after SIGCONT")
    journal = ssh.run(
        "journalctl -u toolbox-clock-sync -n 5 --no-pager", 60, check=False, sudo=True
    )
    assert abs(offset) < TOLERANCE, f"still {offset:+.2f} s off:\n{journal.stdout}"
    assert took <= CORRECTED_WITHIN + 5
    # Measured under TCG with the driver's argv: the guest clock did not fall behind (offsets
    # just after SIGCONT of -0.3 and +0.07 s), so no step was needed here; the timer still
    # compares the clocks again after the pause (it ran at boot and again after SIGCONT),
    # which is what corrects a guest that does fall behind.
    runs = ssh.run(
        "journalctl -u toolbox-clock-sync --no-pager | grep -c Finished", 60, check=False, sudo=True
    )
    assert int(runs.stdout.strip() or 0) >= 2, journal.stdout


def test_provisioning_installs_the_clock_sync_where_it_is_missing(
    guest: Guest, tmp_path: Path
) -> None:
    """As on a stock cloud image: without the files, the provisioning step writes them and
    starts the timer; a second run changes nothing."""
    ssh = guest.ssh
    paths = " ".join(path for path, _, _ in clock.FILES)
    ssh.run(f"systemctl disable --now {clock.TIMER_UNIT} && rm -f {paths}", 60, sudo=True)
    ctx = ProvisionContext(MACHINE, ssh, tmp_path / "m", tmp_path / "ca", engine_host_port=1)
    steps = tuple(s for s in STEPS if s.name == "clock")
    assert run_steps(ctx, steps).changed_steps == ("clock",)
    active = ssh.run(f"systemctl is-active {clock.TIMER_UNIT}", 30, check=False)
    assert active.stdout.strip() == "active"
    assert ssh.read_text(clock.SCRIPT_PATH) == clock.SCRIPT
    assert not run_steps(ctx, steps).changed
