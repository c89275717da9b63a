"""The QEMU driver booting real guests: the tiny busybox guest (tests/vm/tiny_guest.py: the
Debian cloud kernel and a busybox initramfs that serves HTTP on 8080 and powers off on the
ACPI power button), a one-sector BIOS-boot disk, and the locally built Debian image when the
``guest_image`` fixture is available.

Every test that boots holds ``/tmp/toolbox-vm.lock``: other engineers boot VMs on this
2-core machine too. Measurements are printed (run with ``-s``), never asserted as timings
beyond generous bounds.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from filelock import FileLock

from tests.harness import free_port, wait_until
from tests.vm import tiny_guest
from toolbox.drivers.base import BootImage, Forward, VMSpec, VMState
from toolbox.drivers.qemu import ACCEL_ENV, AccelCache, QemuDriver
from toolbox.errors import DriverError
from toolbox.progress import Progress

pytestmark = [
    pytest.mark.vm,
    # Waiting for the VM lock (other engineers' VM tests) counts against pytest-timeout.
    pytest.mark.timeout(2400),
    pytest.mark.skipif(
        shutil.which("qemu-system-x86_64") is None or shutil.which("qemu-img") is None,
        reason="QEMU is not installed",
    ),
]

VM_LOCK = "/tmp/toolbox-vm.lock"


@pytest.fixture(scope="session")
def tiny() -> tiny_guest.TinyGuest:
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        pytest.skip("the tiny guest's kernel comes from Debian's mirror (apt-get, dpkg-deb)")
    return tiny_guest.ensure_tiny_guest()


@pytest.fixture
def vm_lock() -> Iterator[None]:
    with FileLock(VM_LOCK, timeout=3600):
        yield


@pytest.fixture
def booted() -> Iterator[list[tuple[QemuDriver, VMSpec]]]:
    """Register (driver, spec) pairs; whatever a failing test left running is killed."""
    started: list[tuple[QemuDriver, VMSpec]] = []
    yield started
    for drv, spec in started:
        try:
            drv.kill(spec)
        except Exception as exc:  # cleanup must go on for the others
            print(f"cleanup of {spec.name} failed: {exc}")


@pytest.fixture
def tcg(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lifecycle tests skip the accelerator probe (tested on its own below)."""
    monkeypatch.setenv(ACCEL_ENV, "tcg")


def _spec(
    home: Path,
    image: BootImage,
    forwards: tuple[Forward, ...] = (),
    name: str = "tiny",
) -> VMSpec:
    d = home / "data" / "machines" / name
    d.mkdir(parents=True, exist_ok=True)
    seed = d / "seed.iso"
    seed.write_bytes(b"\0" * 2048 * 16)  # the tiny guest ignores it; QEMU needs a file
    return VMSpec(
        name=name,
        directory=d,
        cpus=1,
        memory_mib=256,
        disk_gib=1,
        image=image,
        seed_iso=seed,
        forwards=forwards,
        console_log=home / "logs" / f"{name}-console.log",
    )


def _tiny_image(tiny: tiny_guest.TinyGuest, home: Path) -> BootImage:
    base = tiny_guest.write_boot_sector_disk(home / "base.raw")
    return BootImage(base, "raw", kernel=tiny.kernel, initrd=tiny.initrd, cmdline=tiny.cmdline)


def _console(spec: VMSpec) -> str:
    try:
        return spec.console_log.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _http(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
        return r.read().decode().strip()


def _http_ok(port: int) -> bool:
    try:
        return _http(port) == tiny_guest.HTTP_BODY
    except (OSError, urllib.error.URLError):
        return False


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=3).close()
    except ConnectionRefusedError:
        return True
    return False


def _pid(spec: VMSpec) -> int:
    return int((spec.directory / "qemu.pid").read_text().strip())


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def test_lifecycle_console_forwards_stop_restart_kill_crash_remove(
    tiny: tiny_guest.TinyGuest, toolbox_home: Path, vm_lock: None, tcg: None, tmp_path: Path,
    booted: list,
) -> None:  # fmt: skip
    web, web2, web3 = free_port(), free_port(), free_port()
    spec = _spec(toolbox_home, _tiny_image(tiny, toolbox_home), (Forward("http", 8080, web),))
    drv = QemuDriver(accel_cache=AccelCache(tmp_path / "accel.json"))
    drv.create(spec)
    booted.append((drv, spec))
    drv.create(spec)
    assert drv.state(spec) is VMState.STOPPED

    t0 = time.monotonic()
    reports: list[Progress] = []
    drv.start(spec, progress=reports.append)
    returned = time.monotonic() - t0
    assert drv.state(spec) is VMState.RUNNING
    assert reports[-1].done and "tcg" in reports[-1].message
    wait_until(lambda: tiny_guest.READY_MARKER in _console(spec), 120, what="tiny guest ready")
    boot = time.monotonic() - t0
    print(f"\ntiny guest under tcg: start() returned in {returned:.2f} s, ready in {boot:.1f} s")
    drv.start(spec)  # already running: a no-op
    assert _pid(spec) > 0

    # The forward from the spec, then one added and one removed while running.
    assert wait_until(lambda: _http_ok(web), 30, what="forward from the spec")
    drv.add_forward(spec, Forward("http2", 8080, web2))
    drv.add_forward(spec, Forward("http3", 8080, web3))
    assert _http(web2) == tiny_guest.HTTP_BODY
    assert _http(web3) == tiny_guest.HTTP_BODY
    drv.remove_forward(spec, "http3")
    assert _refused(web3)
    drv.remove_forward(spec, "http")
    assert _refused(web)
    assert [f.name for f in drv.forwards(spec)] == ["http2"]

    # Nothing listens on a non-loopback address for this QEMU.
    tcp = Path("/proc/net/tcp").read_text().splitlines()[1:]
    listening = {int(line.split()[1].split(":")[1], 16): line.split()[1] for line in tcp
                 if line.split()[3] == "0A"}  # fmt: skip
    assert listening[web2].startswith("0100007F:")

    # Graceful stop: the guest sees the ACPI power button and powers itself off.
    t0 = time.monotonic()
    drv.stop(spec, timeout=60)
    stop_s = time.monotonic() - t0
    print(f"graceful stop of the tiny guest: {stop_s:.2f} s")
    assert tiny_guest.POWEROFF_MARKER in _console(spec)
    assert stop_s < 60
    assert drv.state(spec) is VMState.STOPPED
    assert not (spec.directory / "qemu.pid").exists()

    # A restart keeps the forward added live (it is in the driver's config) and the removal
    # of the live-added one; the spec's own forwards (the service's SSH and engine ports)
    # are applied again at every start.
    marker_count = _console(spec).count(tiny_guest.READY_MARKER)
    drv.start(spec)
    wait_until(
        lambda: _console(spec).count(tiny_guest.READY_MARKER) > marker_count, 120, what="reboot"
    )
    assert wait_until(lambda: _http_ok(web2), 30, what="live-added forward after restart")
    assert _refused(web3)
    assert _http(web) == tiny_guest.HTTP_BODY
    assert [f.name for f in drv.forwards(spec)] == ["http2", "http"]

    # kill: gone at once.
    pid = _pid(spec)
    t0 = time.monotonic()
    drv.kill(spec)
    print(f"kill: {time.monotonic() - t0:.2f} s")
    assert not _alive(pid)
    assert drv.state(spec) is VMState.STOPPED

    # A QEMU that dies behind our back reads STOPPED, leftovers are cleaned, start works.
    drv.start(spec)
    pid = _pid(spec)
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not _alive(pid), 20, what="QEMU to die")
    assert drv.state(spec) is VMState.STOPPED
    assert not (spec.directory / "qemu.pid").exists()
    assert not (spec.directory / "qmp.sock").exists()
    drv.start(spec)
    assert drv.state(spec) is VMState.RUNNING
    assert wait_until(lambda: _http_ok(web2), 120, what="forward after a crash and start")

    # remove: no process, no files of ours.
    pid = _pid(spec)
    drv.remove(spec)
    assert not _alive(pid)
    assert sorted(p.name for p in spec.directory.iterdir()) == ["seed.iso"]
    assert not spec.console_log.exists()
    assert drv.state(spec) is VMState.NOT_FOUND


def test_bios_boot_and_hard_power_off_when_the_guest_ignores_acpi(
    toolbox_home: Path, vm_lock: None, tcg: None, tmp_path: Path, booted: list
) -> None:
    """The boot-sector guest boots through SeaBIOS (no kernel given) and ignores the power
    button, so stop() must power it off after its timeout."""
    base = tiny_guest.write_boot_sector_disk(toolbox_home / "bootsector.raw")
    spec = _spec(toolbox_home, BootImage(base, "raw"), name="bios")
    drv = QemuDriver(accel_cache=AccelCache(tmp_path / "accel.json"))
    drv.create(spec)
    booted.append((drv, spec))
    drv.start(spec)
    wait_until(lambda: tiny_guest.BOOTSECTOR_MARKER in _console(spec), 60, what="BIOS boot")
    pid = _pid(spec)
    t0 = time.monotonic()
    drv.stop(spec, timeout=3)
    took = time.monotonic() - t0
    assert 3 <= took < 25, took
    assert not _alive(pid)
    assert drv.state(spec) is VMState.STOPPED
    drv.remove(spec)


def test_a_taken_host_port_is_a_clear_error_and_leaves_nothing_running(
    tiny: tiny_guest.TinyGuest, toolbox_home: Path, vm_lock: None, tcg: None, tmp_path: Path,
    booted: list,
) -> None:  # fmt: skip
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    port = blocker.getsockname()[1]
    try:
        spec = _spec(
            toolbox_home, _tiny_image(tiny, toolbox_home), (Forward("ssh", 22, port),), "busy"
        )
        drv = QemuDriver(accel_cache=AccelCache(tmp_path / "accel.json"))
        drv.create(spec)
        booted.append((drv, spec))
        with pytest.raises(DriverError) as exc:
            drv.start(spec)
        assert str(port) in exc.value.message and "taken" in exc.value.message
        assert exc.value.hint
        assert drv.state(spec) is VMState.STOPPED
    finally:
        blocker.close()


def test_accelerator_probe_falls_back_to_tcg_and_remembers_the_verdict(
    tiny: tiny_guest.TinyGuest, toolbox_home: Path, vm_lock: None, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, booted: list,
) -> None:  # fmt: skip
    """On this machine /dev/kvm opens but a KVM guest hangs: the first start must notice
    within the probe bound, fall back to tcg, and a later start must not probe again."""
    monkeypatch.delenv(ACCEL_ENV, raising=False)
    cache = AccelCache(tmp_path / "accel.json")
    drv = QemuDriver(accel_cache=cache)
    fast = [a for a in drv.accelerators() if a != "tcg"]
    if not fast:
        pytest.skip("no hardware accelerator offered here, nothing to probe")
    spec = _spec(toolbox_home, _tiny_image(tiny, toolbox_home), name="probe")
    drv.create(spec)
    booted.append((drv, spec))
    stamps: list[tuple[float, Progress]] = []
    t0 = time.monotonic()
    drv.start(spec, progress=lambda p: stamps.append((time.monotonic() - t0, p)))
    total = time.monotonic() - t0
    assert drv.state(spec) is VMState.RUNNING
    verdict = drv.last_probe[0]
    assert verdict.accel == fast[0]
    key = AccelCache.host_key(drv.version(), drv.arch)
    assert cache.get(key, fast[0]) == verdict
    for at, p in stamps:
        print(f"  {at:6.2f} s  {p.message}")
    if verdict.works:
        print(f"\n{fast[0]} works here: {verdict.detail}")
        assert f"({fast[0]})" in stamps[-1][1].message
    else:
        fell_back = next(at for at, p in stamps if "falling back" in p.message)
        print(
            f"\n{fast[0]} hang noticed after {fell_back:.1f} s; running under tcg at {total:.1f} s"
        )
        assert fell_back < drv.probe_timeout_direct + 15
        assert "(tcg)" in stamps[-1][1].message
        wait_until(lambda: tiny_guest.READY_MARKER in _console(spec), 120, what="tcg boot")
    drv.kill(spec)

    # A second driver (a later `toolbox start`) reads the verdict and does not probe again.
    again = QemuDriver(accel_cache=AccelCache(tmp_path / "accel.json"))
    booted.append((again, spec))
    t0 = time.monotonic()
    again.start(spec)
    second = time.monotonic() - t0
    print(f"second start (verdict cached): {second:.2f} s")
    assert again.last_probe == []
    if not verdict.works:
        assert fast[0] not in again.accelerators()
        assert second < drv.probe_timeout_direct
    again.remove(spec)


def test_debian_guest_powers_off_gracefully(
    request: pytest.FixtureRequest, toolbox_home: Path, vm_lock: None, tcg: None, tmp_path: Path,
    booted: list,
) -> None:  # fmt: skip
    """The locally built Debian image (the guest_image fixture) under the driver: boots by
    direct kernel boot to a login prompt, and system_powerdown shuts it down cleanly."""
    try:
        image = request.getfixturevalue("guest_image")
    except pytest.FixtureLookupError:
        pytest.skip("the guest_image fixture is not available")
    boot = image.boot_image()
    spec = _spec(toolbox_home, boot, name="debian")
    spec = VMSpec(**{**spec.__dict__, "memory_mib": 1024, "cpus": 2, "disk_gib": 8})
    try:
        from toolbox.guest.seed import SeedConfig, write_seed_iso
        from toolbox.ssh.keys import generate_host_key

        host = generate_host_key()
        write_seed_iso(
            spec.seed_iso,
            SeedConfig(
                instance_id="debian-test",
                hostname="debian-test",
                user="docker",
                authorized_key=host.public_line,
                host_key_private=host.private_openssh,
                host_key_public=host.public_line,
            ),
        )
    except ImportError:
        pass
    drv = QemuDriver(accel_cache=AccelCache(tmp_path / "accel.json"))
    drv.create(spec)
    booted.append((drv, spec))
    t0 = time.monotonic()
    drv.start(spec)
    wait_until(lambda: "login:" in _console(spec), 300, interval=1, what="Debian login prompt")
    print(f"\nDebian guest to login prompt under tcg: {time.monotonic() - t0:.1f} s")
    pid = _pid(spec)
    t0 = time.monotonic()
    drv.stop(spec, timeout=90)
    took = time.monotonic() - t0
    print(f"Debian graceful stop (system_powerdown): {took:.1f} s")
    assert not _alive(pid)
    assert "reboot: Power down" in _console(spec)  # the guest's own shutdown, not a kill
    assert took < 90
    drv.remove(spec)


def test_windows_code_path_tcp_qmp_and_a_detached_launcher(
    tiny: tiny_guest.TinyGuest, toolbox_home: Path, vm_lock: None, tcg: None, tmp_path: Path,
    booted: list,
) -> None:  # fmt: skip
    """What Windows does (no unix sockets, no -daemonize): QMP over TCP on 127.0.0.1 and a
    launcher that starts QEMU detached, run here for real with the same QEMU."""
    import subprocess

    launched: list[list[str]] = []

    def launcher(argv: list[str], log: Path) -> int:
        launched.append(argv)
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
            )
        return proc.pid

    web = free_port()
    spec = _spec(
        toolbox_home, _tiny_image(tiny, toolbox_home), (Forward("http", 8080, web),), "win"
    )
    drv = QemuDriver(
        accel_cache=AccelCache(tmp_path / "accel.json"),
        system="Windows",
        launcher=launcher,
        binary=Path(shutil.which("qemu-system-x86_64") or ""),
        qemu_img=Path(shutil.which("qemu-img") or ""),
    )
    drv.create(spec)
    booted.append((drv, spec))
    drv.start(spec)
    argv = launched[0]
    assert "-daemonize" not in argv
    qmp = argv[argv.index("-qmp") + 1]
    assert qmp.startswith("tcp:127.0.0.1:") and qmp.endswith(",server=on,wait=off")
    assert not (spec.directory / "qmp.sock").exists()
    assert drv.state(spec) is VMState.RUNNING
    assert wait_until(lambda: _http_ok(web), 120, what="forward")
    web2 = free_port()
    drv.add_forward(spec, Forward("http2", 8080, web2))
    assert _http(web2) == tiny_guest.HTTP_BODY
    drv.stop(spec, timeout=60)
    assert tiny_guest.POWEROFF_MARKER in _console(spec)
    assert drv.state(spec) is VMState.STOPPED
    drv.remove(spec)


def test_pause_resume_and_stopping_a_paused_guest(
    tiny: tiny_guest.TinyGuest, toolbox_home: Path, vm_lock: None, tcg: None, tmp_path: Path,
    booted: list,
) -> None:  # fmt: skip
    from toolbox.drivers.qemu import qmp_socket_path
    from toolbox.drivers.qmp import QMPAddress, QMPClient

    spec = _spec(toolbox_home, _tiny_image(tiny, toolbox_home), name="pause")
    drv = QemuDriver(accel_cache=AccelCache(tmp_path / "accel.json"))
    drv.create(spec)
    booted.append((drv, spec))
    drv.start(spec)
    wait_until(lambda: tiny_guest.READY_MARKER in _console(spec), 120, what="tiny guest ready")
    with QMPClient(QMPAddress(path=qmp_socket_path(spec.directory))) as q:
        q.execute("stop")
    assert drv.state(spec) is VMState.PAUSED
    drv.start(spec)  # resumes
    assert drv.state(spec) is VMState.RUNNING
    with QMPClient(QMPAddress(path=qmp_socket_path(spec.directory))) as q:
        q.execute("stop")
    t0 = time.monotonic()
    drv.stop(spec, timeout=60)  # no waiting for a power button the guest cannot see
    assert time.monotonic() - t0 < 15
    assert drv.state(spec) is VMState.STOPPED
    drv.remove(spec)
