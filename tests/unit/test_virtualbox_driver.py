"""VirtualBox driver, replayed: VirtualBox cannot be installed on these machines (no
kernel modules in this VM, no nested VT-x), so the driver is tested here with the exact argv
sequence it must send to VBoxManage and with recorded VBoxManage output in its documented
formats (tests/data/virtualbox/). The replaying runner fails a test on any command it did
not expect, in order, and on any expected command left unsent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from toolbox.drivers.base import BootImage, Forward, VMSpec, VMState
from toolbox.drivers.virtualbox import VBoxError, VBoxManage, VirtualBoxDriver
from toolbox.errors import DriverError, NotFoundError, ValidationError
from toolbox.process import CommandResult

DATA = Path(__file__).resolve().parents[1] / "data" / "virtualbox"
VBM = "VBoxManage"
VM = "toolbox-default"


def rec(name: str, **subst: str) -> str:
    text = (DATA / name).read_text(encoding="utf-8")
    for k, v in subst.items():
        text = text.replace("{" + k + "}", v)
    return text


@dataclass(frozen=True)
class Step:
    argv: tuple[str, ...]
    stdout: str = ""
    stderr: str = ""
    code: int = 0


def vb(*args: str, stdout: str = "", stderr: str = "", code: int = 0) -> Step:
    return Step((VBM, *args), stdout, stderr, code)


class Replay:
    """A Runner that replays recorded results and asserts the exact argv sequence."""

    def __init__(self, steps: Sequence[Step] = ()):
        self.steps = list(steps)
        self.sent: list[tuple[str, ...]] = []

    def expect(self, *steps: Step) -> None:
        self.steps.extend(steps)

    def __call__(self, argv, *, timeout=None, env=None, input=None) -> CommandResult:
        argv = tuple(str(a) for a in argv)
        self.sent.append(argv)
        assert self.steps, f"unexpected command: {argv}"
        step = self.steps.pop(0)
        assert argv == step.argv, f"\nexpected {step.argv}\n     got {argv}"
        return CommandResult(argv, step.code, step.stdout, step.stderr)

    def done(self) -> None:
        assert not self.steps, f"commands never sent: {[s.argv for s in self.steps]}"


class FakeClock:
    """sleep() advances time() so polling loops run instantly and deterministically."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s


NOT_FOUND = vb(
    "showvminfo", VM, "--machinereadable", stderr=rec("showvminfo-notfound.stderr"), code=1
)


def info(state: str) -> Step:
    names = {
        "running": "showvminfo-running-windows.txt",
        "poweroff": "showvminfo-poweroff-macos.txt",
        "saved": "showvminfo-saved.txt",
        "paused": "showvminfo-paused.txt",
    }
    return vb("showvminfo", VM, "--machinereadable", stdout=rec(names[state]))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def replay() -> Replay:
    return Replay()


def make_driver(replay: Replay, clock: FakeClock, tmp: Path, **kw) -> VirtualBoxDriver:
    kw.setdefault("qemu_img", "")
    return VirtualBoxDriver(
        replay,
        binary=VBM,
        system="Windows",
        lock_path=tmp / "vbm.lock",
        sleep=clock.sleep,
        clock=clock.time,
        **kw,
    )


@pytest.fixture
def spec(tmp_path: Path) -> VMSpec:
    # A real folder with a space (user names with spaces broke Docker Toolbox), and the
    # console log as the Windows path VirtualBox gets (the driver never opens it itself).
    d = tmp_path / "Users" / "Jane Doe" / "AppData" / "Local" / "Toolbox" / "machines" / "default"
    d.mkdir(parents=True)
    base = tmp_path / "cache" / "debian-12-generic-amd64.raw"
    base.parent.mkdir()
    base.write_bytes(b"\0" * 4096)
    return VMSpec(
        name="default",
        directory=d,
        cpus=2,
        memory_mib=2048,
        disk_gib=20,
        image=BootImage(base, "raw"),
        seed_iso=d / "seed.iso",
        forwards=(Forward("ssh", 22, 52222), Forward("engine", 2376, 52376)),
        console_log=Path(
            r"C:\Users\Jane Doe\AppData\Local\Toolbox\Toolbox\Logs\default-console.log"
        ),
    )


def create_steps(spec: VMSpec, *, convert: Sequence[Step] | None = None) -> list[Step]:
    d = str(spec.directory)
    vdi = str(spec.directory / "disk.vdi")
    return [
        vb("createvm", "--basefolder", d, "--name", VM, "--register",
           stdout=rec("createvm.stdout", BASEFOLDER=d)),
        vb("modifyvm", VM, "--firmware", "bios", "--ostype", "Debian_64", "--cpus", "2",
           "--memory", "2048", "--acpi", "on", "--ioapic", "on", "--rtcuseutc", "on",
           "--pae", "on", "--hwvirtex", "on", "--nestedpaging", "on",
           "--paravirtprovider", "default", "--boot1", "disk", "--boot2", "dvd",
           "--boot3", "none", "--boot4", "none", "--uart1", "0x3F8", "4",
           "--uartmode1", "file",
           r"C:\Users\Jane Doe\AppData\Local\Toolbox\Toolbox\Logs\default-console.log"),
        vb("modifyvm", VM, "--nic1", "nat", "--nictype1", "virtio", "--cableconnected1", "on",
           "--natdnsproxy1", "on", "--natpf1", "ssh,tcp,127.0.0.1,52222,,22",
           "--natpf1", "engine,tcp,127.0.0.1,52376,,2376"),
        *(
            convert
            if convert is not None
            else [
                vb("convertfromraw", str(spec.image.disk), vdi, "--format", "VDI",
                   stdout=rec("convertfromraw.stdout", SRC=str(spec.image.disk), DST=vdi)),
            ]
        ),
        vb("modifymedium", "disk", vdi, "--resize", "20480"),
        vb("storagectl", VM, "--name", "virtio-scsi", "--add", "virtio-scsi", "--portcount",
           "2", "--hostiocache", "on", "--bootable", "on"),
        vb("storageattach", VM, "--storagectl", "virtio-scsi", "--port", "0", "--device", "0",
           "--type", "hdd", "--medium", vdi),
        vb("storageattach", VM, "--storagectl", "virtio-scsi", "--port", "1", "--device", "0",
           "--type", "dvddrive", "--medium", str(spec.seed_iso)),
    ]  # fmt: skip


def test_create_sends_the_exact_sequence_and_is_safe_twice(
    replay: Replay, clock: FakeClock, tmp_path: Path, spec: VMSpec
) -> None:
    drv = make_driver(replay, clock, tmp_path)
    replay.expect(NOT_FOUND, *create_steps(spec))
    drv.create(spec)
    replay.done()
    # Second create: the VM is registered and the driver's marker says create finished.
    replay.expect(info("poweroff"))
    drv.create(spec)
    replay.done()


def test_an_interrupted_create_starts_over_cleanly(
    replay: Replay, clock: FakeClock, tmp_path: Path, spec: VMSpec
) -> None:
    drv = make_driver(replay, clock, tmp_path)
    vdi = spec.directory / "disk.vdi"
    vdi.write_bytes(b"partial")
    (spec.directory / VM).mkdir()
    (spec.directory / VM / f"{VM}.vbox").write_text("<xml/>")
    steps = create_steps(spec)
    steps.insert(
        3, vb("closemedium", "disk", str(vdi), "--delete", stderr="", code=0)
    )  # the half-made VDI VirtualBox may still know
    replay.expect(info("poweroff"), vb("unregistervm", VM, "--delete"), *steps)
    drv.create(spec)
    replay.done()


def test_sata_controller_and_vmdk_clone(
    replay: Replay, clock: FakeClock, tmp_path: Path, spec: VMSpec
) -> None:
    vmdk = spec.image.disk.with_suffix(".vmdk")
    vmdk.write_bytes(b"vmdk")
    spec = VMSpec(**{**spec.__dict__, "image": BootImage(vmdk, "vmdk")})
    drv = make_driver(replay, clock, tmp_path, controller="sata")
    vdi = str(spec.directory / "disk.vdi")
    steps = create_steps(
        spec,
        convert=[
            vb("clonemedium", "disk", str(vmdk), vdi, "--format", "VDI"),
            vb("closemedium", "disk", str(vmdk)),
        ],
    )
    steps[-3] = vb("storagectl", VM, "--name", "SATA", "--add", "sata", "--portcount", "2",
                   "--controller", "IntelAhci", "--hostiocache", "on",
                   "--bootable", "on")  # fmt: skip
    steps[-2] = Step(tuple(a if a != "virtio-scsi" else "SATA" for a in steps[-2].argv))
    steps[-1] = Step(tuple(a if a != "virtio-scsi" else "SATA" for a in steps[-1].argv))
    replay.expect(NOT_FOUND, *steps)
    drv.create(spec)
    replay.done()


def test_qcow2_goes_through_qemu_img_or_fails_with_a_hint(
    replay: Replay, clock: FakeClock, tmp_path: Path, spec: VMSpec
) -> None:
    qcow = spec.image.disk.with_suffix(".qcow2")
    qcow.write_bytes(b"QFI\xfb")
    spec = VMSpec(**{**spec.__dict__, "image": BootImage(qcow, "qcow2")})
    vdi = str(spec.directory / "disk.vdi")
    img = r"C:\Program Files\qemu\qemu-img.exe"
    drv = make_driver(replay, clock, tmp_path, qemu_img=img)
    convert = [Step((img, "convert", "-f", "qcow2", "-O", "vdi", str(qcow), vdi))]
    replay.expect(NOT_FOUND, *create_steps(spec, convert=convert))
    drv.create(spec)
    replay.done()

    (spec.directory / "virtualbox.json").unlink()
    (spec.directory / "disk.vdi").unlink(missing_ok=True)
    no_img = make_driver(replay, clock, tmp_path)  # qemu_img="": none on this host
    replay.expect(NOT_FOUND, *create_steps(spec)[:3])
    with pytest.raises(DriverError) as exc:
        no_img.create(spec)
    assert "qemu-img" in (exc.value.hint or "")
    replay.done()


def test_direct_kernel_boot_images_are_refused(
    replay: Replay, clock: FakeClock, tmp_path: Path, spec: VMSpec
) -> None:
    local = BootImage(spec.image.disk, "qcow2", kernel=tmp_path / "vmlinuz")
    with pytest.raises(DriverError) as exc:
        make_driver(replay, clock, tmp_path).create(VMSpec(**{**spec.__dict__, "image": local}))
    assert "QEMU" in (exc.value.hint or "")
    assert replay.sent == []


@pytest.mark.parametrize(
    ("recording", "state"),
    [
        ("showvminfo-running-windows.txt", VMState.RUNNING),
        ("showvminfo-poweroff-macos.txt", VMState.STOPPED),
        ("showvminfo-saved.txt", VMState.SAVED),
        ("showvminfo-paused.txt", VMState.PAUSED),
        ("showvminfo-aborted.txt", VMState.ABORTED),
    ],
)
def test_state_from_recorded_showvminfo(
    recording: str, state: VMState, replay: Replay, clock: FakeClock, tmp_path: Path, spec: VMSpec
) -> None:
    replay.expect(vb("showvminfo", VM, "--machinereadable", stdout=rec(recording, LOG_FOLDER="x")))
    assert make_driver(replay, clock, tmp_path).state(spec) is state
    replay.done()


def test_not_registered_is_not_found(
    replay: Replay, clock: FakeClock, tmp_path: Path, spec: VMSpec
) -> None:
    replay.expect(NOT_FOUND)
    assert make_driver(replay, clock, tmp_path).state(spec) is VMState.NOT_FOUND
    replay.done()


def test_object_not_ready_and_session_lock_are_retried(
    replay: Replay, clock: FakeClock, tmp_path: Path, spec: VMSpec
) -> None:
    show = ("showvminfo", VM, "--machinereadable")
    replay.expect(
        vb(*show, stderr=rec("object-not-ready.stderr"), code=1),
        vb(*show, stderr=rec("already-locked.stderr"), code=1),
        info("running"),
    )
    assert make_driver(replay, clock, tmp_path).state(spec) is VMState.RUNNING
    replay.done()
    assert len(clock.sleeps) == 2


def test_retries_are_bounded(
    replay: Replay, clock: FakeClock, tmp_path: Path, spec: VMSpec
) -> None:
    show = ("showvminfo", VM, "--machinereadable")
    replay.expect(*[vb(*show, stderr=rec("object-not-ready.stderr"), code=1)] * VBoxManage.retries)
    with pytest.raises(VBoxError) as exc:
        make_driver(replay, clock, tmp_path).state(spec)
    assert "The object is not ready" in exc.value.message
    assert "E_ACCESSDENIED" in (exc.value.details or "")
    replay.done()


def test_error_on_stderr_fails_even_at_exit_0(
    replay: Replay, clock: FakeClock, tmp_path: Path, spec: VMSpec
) -> None:
    replay.expect(
        info("running"),
        vb("controlvm", VM, "natpf1", "web,tcp,127.0.0.1,8080,,80",
           stderr=rec("natpf-exists-exit0.stderr"), code=0),
    )  # fmt: skip
    with pytest.raises(VBoxError) as exc:
        make_driver(replay, clock, tmp_path).add_forward(spec, Forward("web", 80, 8080))
    assert "A NAT rule of this name already exists" in exc.value.message
    assert "controlvm" in (exc.value.details or "")
    replay.done()


def test_start_headless(replay: Replay, clock: FakeClock, tmp_path: Path, spec: VMSpec) -> None:
    replay.expect(
        info("poweroff"),
        vb("startvm", VM, "--type", "headless", stdout=rec("startvm-ok.stdout")),
        info("running"),
    )
    seen = []
    make_driver(replay, clock, tmp_path).start(spec, progress=seen.append)
    replay.done()
    assert seen[-1].done
    # Already running: nothing but the state query.
    replay.expect(info("running"))
    make_driver(replay, clock, tmp_path).start(spec)
    replay.done()
    # Paused: resumed.
    replay.expect(info("paused"), vb("controlvm", VM, "resume"))
    make_driver(replay, clock, tmp_path).start(spec)
    replay.done()


@pytest.mark.parametrize(
    ("recording", "message", "hint_words"),
    [
        ("startvm-vtx-disabled.stderr", "VT-x is disabled", ["BIOS", "VT-x"]),
        ("startvm-hyperv.stderr", "Hyper-V", ["Windows Hypervisor Platform", "bcdedit"]),
        ("startvm-amdv-disabled.stderr", "AMD-V", ["SVM", "BIOS"]),
    ],
)
def test_start_failures_are_explained(
    recording: str,
    message: str,
    hint_words: list[str],
    replay: Replay,
    clock: FakeClock,
    tmp_path: Path,
    spec: VMSpec,
) -> None:
    replay.expect(
        info("poweroff"),
        vb("startvm", VM, "--type", "headless", stdout='Waiting for VM "toolbox-default" to '
           "power on...\n", stderr=rec(recording), code=1),
    )  # fmt: skip
    with pytest.raises(VBoxError) as exc:
        make_driver(replay, clock, tmp_path).start(spec)
    assert message in exc.value.message
    for word in hint_words:
        assert word in (exc.value.hint or "")
    replay.done()


def test_a_vm_that_aborts_right_after_startvm_is_explained_from_vbox_log(
    replay: Replay, clock: FakeClock, tmp_path: Path, spec: VMSpec
) -> None:
    logs = spec.directory / VM / "Logs"
    logs.mkdir(parents=True)
    (logs / "VBox.log").write_text(rec("vbox-log-no-vmx.txt"))
    aborted = vb(
        "showvminfo", VM, "--machinereadable",
        stdout=rec("showvminfo-aborted.txt", LOG_FOLDER=str(logs).replace("\\", "\\\\")),
    )  # fmt: skip
    replay.expect(
        info("poweroff"),
        vb("startvm", VM, "--type", "headless", stdout=rec("startvm-ok.stdout")),
        aborted,
    )
    with pytest.raises(VBoxError) as exc:
        make_driver(replay, clock, tmp_path).start(spec)
    # The log names both the missing WHP feature and VT-x: Hyper-V is the cause to fix.
    assert "Hyper-V" in exc.value.message
    assert "VERR_VMX_NO_VMX" in (exc.value.details or "")
    replay.done()


def test_stop_presses_the_power_button_and_polls(
    replay: Replay, clock: FakeClock, tmp_path: Path, spec: VMSpec
) -> None:
    replay.expect(
        info("running"),
        vb("controlvm", VM, "acpipowerbutton"),
        info("running"),
        info("running"),
        info("poweroff"),
    )
    make_driver(replay, clock, tmp_path).stop(spec, timeout=60)
    replay.done()
    assert clock.now == 3.0


def test_stop_powers_off_after_the_timeout(
    replay: Replay, clock: FakeClock, tmp_path: Path, spec: VMSpec
) -> None:
    replay.expect(info("running"), vb("controlvm", VM, "acpipowerbutton"))
    replay.expect(*[info("running")] * 5)  # polls at 1..5 s
    replay.expect(info("running"), vb("controlvm", VM, "poweroff"))  # kill()
    make_driver(replay, clock, tmp_path).stop(spec, timeout=5)
    replay.done()


def test_stop_of_a_stopped_vm_does_nothing(
    replay: Replay, clock: FakeClock, tmp_path: Path, spec: VMSpec
) -> None:
    replay.expect(info("poweroff"))
    make_driver(replay, clock, tmp_path).stop(spec)
    replay.done()


def test_kill(replay: Replay, clock: FakeClock, tmp_path: Path, spec: VMSpec) -> None:
    replay.expect(info("running"), vb("controlvm", VM, "poweroff"))
    make_driver(replay, clock, tmp_path).kill(spec)
    replay.done()
    replay.expect(info("poweroff"))
    make_driver(replay, clock, tmp_path).kill(spec)
    replay.done()


def test_remove_leaves_nothing_behind(
    replay: Replay, clock: FakeClock, tmp_path: Path, spec: VMSpec
) -> None:
    vdi = spec.directory / "disk.vdi"
    vdi.write_bytes(b"vdi")
    (spec.directory / VM / "Logs").mkdir(parents=True)
    (spec.directory / VM / "Logs" / "VBox.log").write_text("log")
    (spec.directory / "virtualbox.json").write_text("{}")
    (spec.directory / "machine.json").write_text("{}")  # the machine service's file
    replay.expect(
        info("running"),
        info("running"),
        vb("controlvm", VM, "poweroff"),
        vb("unregistervm", VM, "--delete"),
        vb("closemedium", "disk", str(vdi), "--delete"),
    )
    make_driver(replay, clock, tmp_path).remove(spec)
    replay.done()
    assert sorted(p.name for p in spec.directory.iterdir()) == ["machine.json"]
    # Not registered at all: only our leftover files go.
    replay.expect(NOT_FOUND)
    make_driver(replay, clock, tmp_path).remove(spec)
    replay.done()


def test_remove_of_a_saved_vm_discards_its_state_first(
    replay: Replay, clock: FakeClock, tmp_path: Path, spec: VMSpec
) -> None:
    replay.expect(
        info("saved"),
        vb("discardstate", VM),
        vb("unregistervm", VM, "--delete"),
    )
    make_driver(replay, clock, tmp_path).remove(spec)
    replay.done()


def test_stop_of_a_paused_vm_powers_it_off(
    replay: Replay, clock: FakeClock, tmp_path: Path, spec: VMSpec
) -> None:
    replay.expect(info("paused"), info("paused"), vb("controlvm", VM, "poweroff"))
    make_driver(replay, clock, tmp_path).stop(spec)
    replay.done()


def test_a_busy_lock_is_a_driver_error_with_a_hint(tmp_path: Path) -> None:
    from filelock import FileLock

    lock = tmp_path / "vbm.lock"
    with FileLock(str(lock)):
        errors: list[BaseException] = []

        def other() -> None:
            try:
                VBoxManage(VBM, Replay([vb("list", "vms")]), lock).run("list", "vms", timeout=0.2)
            except BaseException as exc:
                errors.append(exc)

        holder = threading.Thread(target=other)
        holder.start()
        holder.join(timeout=10)
    assert len(errors) == 1 and isinstance(errors[0], VBoxError)
    assert errors[0].hint and "lock" in errors[0].hint


def test_forwards_from_showvminfo(
    replay: Replay, clock: FakeClock, tmp_path: Path, spec: VMSpec
) -> None:
    replay.expect(info("running"))
    assert make_driver(replay, clock, tmp_path).forwards(spec) == [
        Forward("engine", 2376, 52376),
        Forward("ssh", 22, 52222),
    ]
    replay.done()


def test_forwards_live_when_running_and_in_the_config_when_stopped(
    replay: Replay, clock: FakeClock, tmp_path: Path, spec: VMSpec
) -> None:
    drv = make_driver(replay, clock, tmp_path)
    web = Forward("web", 80, 8080)
    replay.expect(info("running"), vb("controlvm", VM, "natpf1", "web,tcp,127.0.0.1,8080,,80"))
    drv.add_forward(spec, web)
    replay.expect(info("poweroff"), vb("modifyvm", VM, "--natpf1", "web,tcp,127.0.0.1,8080,,80"))
    drv.add_forward(spec, web)
    # Same name, new port: delete, then add.
    replay.expect(
        info("running"),
        vb("controlvm", VM, "natpf1", "delete", "ssh"),
        vb("controlvm", VM, "natpf1", "ssh,tcp,127.0.0.1,60022,,22"),
    )
    drv.add_forward(spec, Forward("ssh", 22, 60022))
    # Identical forward: nothing to do.
    replay.expect(info("running"))
    drv.add_forward(spec, Forward("ssh", 22, 52222))
    replay.expect(info("running"), vb("controlvm", VM, "natpf1", "delete", "engine"))
    drv.remove_forward(spec, "engine")
    replay.expect(info("poweroff"), vb("modifyvm", VM, "--natpf1", "delete", "engine"))
    drv.remove_forward(spec, "engine")
    replay.done()


def test_forward_errors(replay: Replay, clock: FakeClock, tmp_path: Path, spec: VMSpec) -> None:
    drv = make_driver(replay, clock, tmp_path)
    replay.expect(info("running"))
    with pytest.raises(NotFoundError):
        drv.remove_forward(spec, "web")
    replay.expect(info("running"))
    with pytest.raises(DriverError) as exc:
        drv.add_forward(spec, Forward("other", 22, 52222))  # host port used by "ssh"
    assert "ssh" in exc.value.message
    replay.expect(info("saved"))
    with pytest.raises(DriverError) as exc:
        drv.add_forward(spec, Forward("web", 80, 8080))
    assert "saved" in exc.value.message
    replay.expect(NOT_FOUND)
    with pytest.raises(NotFoundError):
        drv.add_forward(spec, Forward("web", 80, 8080))
    replay.done()


def test_list_vms(replay: Replay, clock: FakeClock, tmp_path: Path) -> None:
    replay.expect(vb("list", "vms", stdout=rec("list-vms.txt")))
    vms = make_driver(replay, clock, tmp_path).list_vms()
    assert vms == {
        "default": "698b51bc-ff9d-401e-a87f-957d613e6b60",
        "toolbox-default": "2f0a6d3c-5b1e-4c7a-9d2e-8f1a3b4c5d6e",
        "Windows 11 (work)": "0c3e9a51-77aa-4b0e-b8f1-3a2f6d9e1c44",
    }
    replay.done()


def test_vboxmanage_calls_are_serialised_by_the_file_lock(tmp_path: Path) -> None:
    """Two threads, each with its own VBoxManage wrapper (as two processes would have),
    never run VBoxManage at the same time."""
    active = 0
    peak = 0
    guard = threading.Lock()

    def slow(argv, **_kw) -> CommandResult:
        nonlocal active, peak
        with guard:
            active += 1
            peak = max(peak, active)
        time.sleep(0.05)
        with guard:
            active -= 1
        return CommandResult(tuple(argv), 0, "", "")

    def work() -> None:
        vbm = VBoxManage(VBM, slow, tmp_path / "vbm.lock")
        for _ in range(5):
            vbm.run("list", "vms")

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert peak == 1


def test_live_only_forwards_use_controlvm_and_clean_a_stopped_vm(
    replay: Replay, clock: FakeClock, tmp_path: Path, spec: VMSpec
) -> None:
    """The host agent's forwards for published container ports (VirtualBox cannot be
    installed on the CI machines: exact argv against recorded showvminfo output)."""
    drv = make_driver(replay, clock, tmp_path)
    web = Forward("live-tcp-8080", 8080, 8080)
    dns = Forward("live-udp-5353", 5353, 5353, "udp")
    replay.expect(vb("controlvm", VM, "natpf1", "live-tcp-8080,tcp,127.0.0.1,8080,,8080"))
    drv.open_forward(spec, web)
    replay.expect(vb("controlvm", VM, "natpf1", "live-udp-5353,udp,127.0.0.1,5353,,5353"))
    drv.open_forward(spec, dns)
    # Running: what the NAT has now; stopped: nothing is live.
    replay.expect(info("running"))
    assert [f.name for f in drv.live_forwards(spec)] == ["engine", "ssh"]
    replay.expect(info("poweroff"))
    assert drv.live_forwards(spec) == []
    # A rule the recorded VM does not have: nothing to delete.
    replay.expect(info("running"))
    drv.close_forward(spec, web)
    # controlvm rules are saved with the VM: a stopped VM gets them deleted from its settings.
    replay.expect(info("poweroff"), vb("modifyvm", VM, "--natpf1", "delete", "ssh"))
    drv.close_forward(spec, Forward("ssh", 22, 52222))
    replay.expect(info("running"), vb("controlvm", VM, "natpf1", "delete", "engine"))
    drv.close_forward(spec, Forward("engine", 2376, 52376))
    replay.done()


# -- modify: CPUs, memory and disk of a stopped VM (exact argv; VirtualBox cannot run here) ----


def mediuminfo(vdi: str) -> Step:
    return vb("showmediuminfo", "disk", vdi, stdout=rec("showmediuminfo-disk.txt", LOCATION=vdi))


def test_modify_grows_the_vdi_then_sets_cpus_and_memory(
    replay: Replay, clock: FakeClock, tmp_path: Path, spec: VMSpec
) -> None:
    drv = make_driver(replay, clock, tmp_path)
    vdi = str(spec.directory / "disk.vdi")
    replay.expect(
        info("poweroff"), mediuminfo(vdi), vb("modifymedium", "disk", vdi, "--resize", "40960")
    )
    drv.modify(spec, disk_gib=40)
    replay.done()
    replay.expect(info("poweroff"), vb("modifyvm", VM, "--cpus", "4", "--memory", "4096"))
    drv.modify(spec, cpus=4, memory_mib=4096)
    replay.done()
    replay.expect(info("poweroff"), vb("modifyvm", VM, "--memory", "1024"))
    drv.modify(spec, memory_mib=1024)
    replay.done()
    # The size the disk has already (the recording says 20480 MBytes): no resize sent.
    replay.expect(info("poweroff"), mediuminfo(vdi), vb("modifyvm", VM, "--cpus", "1"))
    drv.modify(spec, disk_gib=20, cpus=1)
    replay.done()


def test_modify_refuses_to_shrink_the_vdi(
    replay: Replay, clock: FakeClock, tmp_path: Path, spec: VMSpec
) -> None:
    drv = make_driver(replay, clock, tmp_path)
    replay.expect(info("poweroff"), mediuminfo(str(spec.directory / "disk.vdi")))
    with pytest.raises(ValidationError) as exc:
        drv.modify(spec, disk_gib=10, cpus=4)
    assert exc.value.field == "disk"
    assert "cannot shrink to 10 GiB" in exc.value.message
    assert "20 GiB or more" in (exc.value.hint or "")
    replay.done()  # neither modifymedium nor modifyvm was sent


def test_modify_refuses_a_vm_that_is_up_saved_or_missing(
    replay: Replay, clock: FakeClock, tmp_path: Path, spec: VMSpec
) -> None:
    drv = make_driver(replay, clock, tmp_path)
    for state in ("running", "paused"):
        replay.expect(info(state))
        with pytest.raises(DriverError) as exc:
            drv.modify(spec, cpus=4)
        assert "is running" in exc.value.message and exc.value.hint == "Stop the machine first."
    replay.expect(info("saved"))
    with pytest.raises(DriverError) as exc:
        drv.modify(spec, disk_gib=40)
    assert "saved" in exc.value.message and "toolbox stop default" in (exc.value.hint or "")
    replay.expect(NOT_FOUND)
    with pytest.raises(NotFoundError):
        drv.modify(spec, cpus=4)
    replay.done()


def test_a_failed_resize_sends_nothing_more(
    replay: Replay, clock: FakeClock, tmp_path: Path, spec: VMSpec
) -> None:
    drv = make_driver(replay, clock, tmp_path)
    vdi = str(spec.directory / "disk.vdi")
    stderr = (
        "VBoxManage: error: Failed to resize medium\n"
        f"VBoxManage: error: Could not open the medium '{vdi}'.\n"
        "VBoxManage: error: VD: error VERR_ACCESS_DENIED opening image file\n"
        "VBoxManage: error: Details: code NS_ERROR_FAILURE (0x80004005), component "
        "MediumWrap, interface IMedium\n"
    )
    replay.expect(
        info("poweroff"),
        mediuminfo(vdi),
        vb("modifymedium", "disk", vdi, "--resize", "30720", stderr=stderr, code=1),
    )
    with pytest.raises(VBoxError) as exc:
        drv.modify(spec, disk_gib=30, cpus=4)
    assert "cannot open one of the machine's files" in exc.value.message
    replay.done()  # no modifyvm after the failure
