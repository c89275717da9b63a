"""QEMU driver without booting anything: the overlay disk made by the real qemu-img, its
config, create twice, state of a dead QEMU (stale pid file and socket), forwards kept while
stopped, remove leaving nothing, availability."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from toolbox.drivers.base import BootImage, Forward, VMSpec, VMState
from toolbox.drivers.qemu import AccelCache, QemuDriver
from toolbox.errors import CommandError, DriverError, NotFoundError, ValidationError
from toolbox.process import CommandResult

DATA = Path(__file__).resolve().parents[1] / "data" / "qemu"
pytestmark = pytest.mark.skipif(
    shutil.which("qemu-img") is None or shutil.which("qemu-system-x86_64") is None,
    reason="QEMU is not installed",
)


def _spec(tmp: Path, base: Path, fmt: str = "raw", disk_gib: int = 2) -> VMSpec:
    d = tmp / "machines" / "m1"
    d.mkdir(parents=True, exist_ok=True)
    return VMSpec(
        name="m1",
        directory=d,
        cpus=1,
        memory_mib=256,
        disk_gib=disk_gib,
        image=BootImage(base, fmt),
        seed_iso=d / "seed.iso",
        forwards=(Forward("ssh", 22, 52222), Forward("engine", 2376, 52376)),
        console_log=tmp / "logs" / "m1-console.log",
    )


@pytest.fixture
def base(tmp_path: Path) -> Path:
    p = tmp_path / "images" / "base.raw"
    p.parent.mkdir(parents=True)
    with open(p, "wb") as f:
        f.truncate(1024 * 1024 * 1024)  # 1 GiB sparse
    return p


@pytest.fixture
def driver(tmp_path: Path) -> QemuDriver:
    return QemuDriver(accel_cache=AccelCache(tmp_path / "accel.json"))


def _qemu_img_info(path: Path) -> dict:
    out = subprocess.run(
        ["qemu-img", "info", "--output=json", "-U", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def test_create_makes_an_overlay_over_the_base_and_is_safe_twice(
    driver: QemuDriver, tmp_path: Path, base: Path
) -> None:
    spec = _spec(tmp_path, base)
    assert driver.state(spec) is VMState.NOT_FOUND
    driver.create(spec)
    overlay = spec.directory / "disk.qcow2"
    info = _qemu_img_info(overlay)
    assert info["format"] == "qcow2"
    assert info["virtual-size"] == 2 * 1024**3
    assert info["backing-filename"] == str(base.resolve())
    assert info["backing-filename-format"] == "raw"
    mtime = overlay.stat().st_mtime_ns
    driver.create(spec)  # second call: nothing changes
    assert overlay.stat().st_mtime_ns == mtime
    assert driver.state(spec) is VMState.STOPPED
    assert driver.forwards(spec) == list(spec.forwards)


def test_create_grows_the_disk_when_the_spec_asks_for_more(
    driver: QemuDriver, tmp_path: Path, base: Path
) -> None:
    driver.create(_spec(tmp_path, base, disk_gib=2))
    driver.create(_spec(tmp_path, base, disk_gib=3))
    assert (
        _qemu_img_info(tmp_path / "machines" / "m1" / "disk.qcow2")["virtual-size"] == 3 * 1024**3
    )


def test_a_disk_smaller_than_the_image_is_refused_with_a_hint(
    driver: QemuDriver, tmp_path: Path, base: Path
) -> None:
    with open(base, "r+b") as f:
        f.truncate(3 * 1024**3)
    with pytest.raises(DriverError) as exc:
        driver.create(_spec(tmp_path, base, disk_gib=2))
    assert "--disk 3" in (exc.value.hint or "")
    assert not (tmp_path / "machines" / "m1" / "disk.qcow2").exists()


def test_a_missing_base_image_is_a_driver_error(driver: QemuDriver, tmp_path: Path) -> None:
    with pytest.raises(DriverError) as exc:
        driver.create(_spec(tmp_path, tmp_path / "nope.qcow2", "qcow2"))
    assert "toolbox image" in (exc.value.hint or "")


def test_dead_qemu_reads_stopped_and_its_leftovers_are_cleaned(
    driver: QemuDriver, tmp_path: Path, base: Path
) -> None:
    spec = _spec(tmp_path, base)
    driver.create(spec)
    # A pid that surely is not a QEMU of ours, and a socket file nobody listens on.
    proc = subprocess.Popen(["true"])
    proc.wait()
    (spec.directory / "qemu.pid").write_text(f"{proc.pid}\n")
    import socket

    s = socket.socket(socket.AF_UNIX)
    s.bind(str(spec.directory / "qmp.sock"))
    s.close()
    assert driver.state(spec) is VMState.STOPPED
    assert not (spec.directory / "qemu.pid").exists()
    assert not (spec.directory / "qmp.sock").exists()
    # Our own pid is alive but not a QEMU started with this pid file: still STOPPED.
    (spec.directory / "qemu.pid").write_text(str(os.getpid()))
    assert driver.state(spec) is VMState.STOPPED


def test_forwards_are_kept_in_the_config_while_stopped(
    driver: QemuDriver, tmp_path: Path, base: Path
) -> None:
    spec = _spec(tmp_path, base)
    driver.create(spec)
    web = Forward("web", 80, 58080)
    driver.add_forward(spec, web)
    driver.add_forward(spec, Forward("web", 80, 58081))  # replace by name
    assert [f.host_port for f in driver.forwards(spec)] == [52222, 52376, 58081]
    with pytest.raises(DriverError):
        driver.add_forward(spec, Forward("other", 81, 58081))  # same host port
    driver.remove_forward(spec, "web")
    assert driver.forwards(spec) == list(spec.forwards)
    with pytest.raises(NotFoundError):
        driver.remove_forward(spec, "web")
    saved = json.loads((spec.directory / "qemu.json").read_text())
    assert [f["name"] for f in saved["forwards"]] == ["ssh", "engine"]


def test_remove_leaves_nothing_of_the_driver(
    driver: QemuDriver, tmp_path: Path, base: Path
) -> None:
    spec = _spec(tmp_path, base)
    driver.create(spec)
    spec.console_log.parent.mkdir(parents=True, exist_ok=True)
    spec.console_log.write_text("boot\n")
    (spec.directory / "machine.json").write_text("{}")  # the machine service's, not ours
    driver.remove(spec)
    assert sorted(p.name for p in spec.directory.iterdir()) == ["machine.json"]
    assert not spec.console_log.exists()
    assert driver.state(spec) is VMState.NOT_FOUND
    assert base.exists()  # the cached base image is untouched
    driver.remove(spec)  # removing twice is fine


def test_start_before_create_is_not_found(driver: QemuDriver, tmp_path: Path, base: Path) -> None:
    with pytest.raises(NotFoundError):
        driver.start(_spec(tmp_path, base))


def test_availability_real_qemu(driver: QemuDriver) -> None:
    avail = driver.availability()
    assert avail.usable, avail
    assert avail.version and avail.version[0].isdigit()
    assert "tcg" in driver.compiled_accels()


class _Recorded:
    """Replays recorded ``--version`` output for the binary it is asked about."""

    def __init__(self, stdout: str, code: int = 0):
        self.stdout = stdout
        self.code = code
        self.calls: list[list[str]] = []

    def __call__(self, argv, *, timeout=None, env=None, input=None) -> CommandResult:
        self.calls.append(list(argv))
        return CommandResult(tuple(argv), self.code, self.stdout, "")


def test_availability_from_recorded_output(tmp_path: Path) -> None:
    ok = _Recorded((DATA / "version-7.2.txt").read_text())
    drv = QemuDriver(ok, binary=Path("/x/qemu-system-x86_64"), qemu_img=Path("/x/qemu-img"))
    assert drv.availability().version == "7.2.22"
    assert ok.calls == [["/x/qemu-system-x86_64", "--version"]]
    old = QemuDriver(
        _Recorded("QEMU emulator version 4.2.1\n"),
        binary=Path("/x/qemu-system-x86_64"),
        qemu_img=Path("/x/qemu-img"),
    ).availability()
    assert not old.usable and "too old" in (old.reason or "")
    missing = QemuDriver(ok, binary=None, qemu_img=None, system="Windows", arch="x86_64")
    missing.binary = None
    avail = missing.availability()
    assert not avail.usable
    assert "qemu-system-x86_64.exe" in (avail.reason or "")
    assert "C:\\Program Files\\qemu" in (avail.hint or "")


def test_availability_when_the_binary_cannot_run() -> None:
    def broken(argv, **_kw) -> CommandResult:
        raise CommandError(argv, 127, message="Program not found: qemu")

    avail = QemuDriver(
        broken, binary=Path("/gone/qemu-system-x86_64"), qemu_img=Path("/gone/qemu-img")
    ).availability()
    assert not avail.usable and avail.hint


def test_start_after_the_base_image_vanished_says_so(
    driver: QemuDriver, tmp_path: Path, base: Path
) -> None:
    spec = _spec(tmp_path, base)
    driver.create(spec)
    base.unlink()
    with pytest.raises(DriverError) as exc:
        driver.start(spec)
    assert str(base.resolve()) in exc.value.message
    assert "toolbox image ls" in (exc.value.hint or "")
    assert driver.state(spec) is VMState.STOPPED


def test_modify_grows_the_overlay_with_qemu_img_and_never_shrinks_it(
    driver: QemuDriver, tmp_path: Path, base: Path
) -> None:
    spec = _spec(tmp_path, base, disk_gib=2)
    driver.create(spec)
    overlay = spec.directory / "disk.qcow2"
    sent: list[list[str]] = []
    real = driver.runner

    def recording(argv, **kw) -> CommandResult:  # the real qemu-img, argv kept
        sent.append([str(a) for a in argv])
        return real(argv, **kw)

    driver.runner = recording
    driver.modify(spec, disk_gib=5)
    img = str(driver.qemu_img)
    assert sent[-1] == [img, "resize", "-f", "qcow2", str(overlay), "5G"]
    info = _qemu_img_info(overlay)
    assert info["virtual-size"] == 5 * 1024**3
    assert info["backing-filename"] == str(base.resolve())  # still the same overlay
    sent.clear()
    with pytest.raises(ValidationError) as exc:
        driver.modify(spec, disk_gib=3)
    assert exc.value.field == "disk" and "5 GiB or more" in (exc.value.hint or "")
    assert not any("resize" in argv for argv in sent)
    assert _qemu_img_info(overlay)["virtual-size"] == 5 * 1024**3
    sent.clear()
    driver.modify(spec, disk_gib=5)  # the size it has: nothing to do
    driver.modify(spec, cpus=4, memory_mib=4096)  # on the command line at the next start
    assert not any("resize" in argv for argv in sent)
    assert json.loads((spec.directory / "qemu.json").read_text())["forwards"]


def test_modify_refuses_a_running_vm_and_one_never_created(
    driver: QemuDriver, tmp_path: Path, base: Path
) -> None:
    spec = _spec(tmp_path, base)
    with pytest.raises(NotFoundError):
        driver.modify(spec, cpus=2)
    driver.create(spec)
    pidfile = spec.directory / "qemu.pid"
    # A real QEMU holding this machine's pid file (no guest: -machine none, paused).
    qemu = subprocess.Popen(
        ["qemu-system-x86_64", "-machine", "none", "-nodefaults", "-display", "none", "-S",
         "-pidfile", str(pidfile)],
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not (pidfile.exists() and pidfile.read_text().strip()):
            assert time.monotonic() < deadline and qemu.poll() is None, "QEMU did not start"
            time.sleep(0.05)
        assert driver.state(spec).is_up
        with pytest.raises(DriverError) as exc:
            driver.modify(spec, disk_gib=4)
        assert "is running" in exc.value.message
    finally:
        qemu.kill()
        qemu.wait()
    assert _qemu_img_info(spec.directory / "disk.qcow2")["virtual-size"] == 2 * 1024**3
