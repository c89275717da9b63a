"""The VirtualBox driver: everything through ``VBoxManage`` (argv lists, the injectable
``toolbox.process.Runner``), serialised across processes with a file lock.

VBoxManage is not trusted on its exit code alone: ``error:`` on stderr is a failure even at
exit 0; "The object is not ready" and "is already locked for a session" are retried a few
times; VT-x/AMD-V/Hyper-V failures are explained with what to do.

The VM is called ``toolbox-<machine>`` (Docker Toolbox users often still have a VM called
``default``), lives under the machine folder (``--basefolder``), boots the base image
converted to VDI from a virtio-scsi (default) or SATA controller, and reaches the host only
through NAT forwards bound to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath

from filelock import FileLock, Timeout

from toolbox import paths
from toolbox.drivers.base import (
    Availability,
    Capabilities,
    Driver,
    Forward,
    VMSpec,
    VMState,
)
from toolbox.errors import CommandError, DriverError, NotFoundError, UsageError, ValidationError
from toolbox.process import CommandResult, Runner, SubprocessRunner
from toolbox.progress import Progress, ProgressCallback

MIN_VERSION = (6, 1)
VM_PREFIX = "toolbox-"
OSTYPE = "Debian_64"
RETRYABLE = (
    "The object is not ready",
    "is already locked for a session",
    "is already locked by a session",
)
CONFIG_NAME = "virtualbox.json"


def vm_name(machine: str) -> str:
    return VM_PREFIX + machine


# ---------------------------------------------------------------------------------------------
# Finding VBoxManage


def read_registry_install_dir() -> str | None:  # pragma: no cover - Windows only
    """``HKLM\\SOFTWARE\\Oracle\\VirtualBox\\InstallDir``, or None."""
    if sys.platform != "win32":
        return None
    import winreg

    try:
        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, r"SOFTWARE\Oracle\VirtualBox") as key:
            value, _ = winreg.QueryValueEx(key, "InstallDir")
            return str(value)
    except OSError:
        return None


def find_vboxmanage(
    system: str | None = None,
    env: Mapping[str, str] | None = None,
    which: Callable[[str], str | None] = shutil.which,
    is_file: Callable[[str], bool] = os.path.isfile,
    registry: Callable[[], str | None] = read_registry_install_dir,
) -> str | None:
    """Where VBoxManage is: PATH, then on Windows ``VBOX_MSI_INSTALL_PATH``,
    ``VBOX_INSTALL_PATH``, ``C:\\Program Files\\Oracle\\VirtualBox`` and the registry's
    InstallDir; on macOS the app bundle."""
    system = system or platform.system()
    env = os.environ if env is None else env
    exe = "VBoxManage.exe" if system == "Windows" else "VBoxManage"
    found = which(exe)
    if found:
        return found
    candidates: list[str] = []
    if system == "Windows":
        for var in ("VBOX_MSI_INSTALL_PATH", "VBOX_INSTALL_PATH"):
            # VBOX_INSTALL_PATH may hold several folders separated by ';'.
            for part in (env.get(var) or "").split(";"):
                if part.strip():
                    candidates.append(str(PureWindowsPath(part.strip()) / exe))
        candidates.append(str(PureWindowsPath(r"C:\Program Files\Oracle\VirtualBox") / exe))
        reg = registry()
        if reg:
            candidates.append(str(PureWindowsPath(reg) / exe))
    elif system == "Darwin":
        candidates += [
            "/Applications/VirtualBox.app/Contents/MacOS/VBoxManage",
            "/usr/local/bin/VBoxManage",
        ]
    else:
        candidates += ["/usr/bin/VBoxManage", "/usr/local/bin/VBoxManage"]
    for c in candidates:
        if is_file(c):
            return c
    return None


def install_hint(system: str | None = None) -> str:
    system = system or platform.system()
    if system == "Darwin":
        return "Install VirtualBox from virtualbox.org (Intel Macs), or use QEMU: brew install qemu"
    if system == "Windows":
        return (
            "Install VirtualBox from virtualbox.org (it goes to C:\\Program Files\\Oracle\\"
            "VirtualBox), or use QEMU"
        )
    return "Install VirtualBox from virtualbox.org or your distribution, or use QEMU"


_VERSION_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)(\S*)$")


def parse_version(stdout: str) -> tuple[int, int, int] | None:
    """``7.0.14r161095`` -> (7, 0, 14); warnings printed before the version are skipped."""
    for line in reversed(stdout.strip().splitlines()):
        m = _VERSION_RE.match(line.strip())
        if m:
            return int(m.group(1)), int(m.group(2)), int(m.group(3))
    return None


# ---------------------------------------------------------------------------------------------
# Output parsing


def parse_machinereadable(text: str) -> dict[str, str]:
    """``showvminfo --machinereadable``: ``key=value`` lines, keys and values maybe quoted,
    ``\\\\`` and ``\\"`` escaped inside quotes (VirtualBox 6.1+)."""
    out: dict[str, str] = {}
    # Lines end at "\n" only: str.splitlines() would also cut at U+2028, U+0085 and the
    # like, which may appear inside a value (a VM description, a path).
    for raw in text.split("\n"):
        line = raw.rstrip("\r")
        if not line or "=" not in line:
            continue
        if line.startswith('"'):
            end = _closing_quote(line, 0)
            if end < 0 or end + 1 >= len(line) or line[end + 1] != "=":
                continue
            key = _unescape(line[1:end])
            value = line[end + 2 :]
        else:
            key, value = line.split("=", 1)
        if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
            value = _unescape(value[1:-1])
        out[key] = value
    return out


def _closing_quote(s: str, start: int) -> int:
    i = start + 1
    while i < len(s):
        if s[i] == "\\":
            i += 2
            continue
        if s[i] == '"':
            return i
        i += 1
    return -1


def _unescape(s: str) -> str:
    if "\\" not in s:
        return s
    out = []
    i = 0
    while i < len(s):
        if s[i] == "\\" and i + 1 < len(s) and s[i + 1] in ('"', "\\"):
            out.append(s[i + 1])
            i += 2
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def parse_forwards(info: Mapping[str, str]) -> list[Forward]:
    """``Forwarding(n)="name,tcp,127.0.0.1,2222,,22"`` lines (VirtualBox lists NIC 1's rules
    as ``Forwarding(n)``)."""
    keys = sorted(
        (k for k in info if re.fullmatch(r"Forwarding\(\d+\)", k)),
        key=lambda k: int(k[len("Forwarding(") : -1]),
    )
    out = []
    for k in keys:
        parts = info[k].split(",")
        if len(parts) != 6:
            continue
        name, proto, host_ip, host_port, _guest_ip, guest_port = parts
        try:
            out.append(
                Forward(
                    name=name,
                    guest_port=int(guest_port),
                    host_port=int(host_port),
                    protocol=proto,
                    host_ip=host_ip or "0.0.0.0",
                )
            )
        except (ValueError, UsageError):  # a rule Toolbox would not have made
            continue
    return out


_STATES = {
    "running": VMState.RUNNING,
    "poweroff": VMState.STOPPED,
    "aborted": VMState.ABORTED,
    "aborted-saved": VMState.SAVED,
    "saved": VMState.SAVED,
    "paused": VMState.PAUSED,
    "starting": VMState.STARTING,
    "restoring": VMState.STARTING,
    "stopping": VMState.STOPPING,
    "saving": VMState.STOPPING,
    "stuck": VMState.ERROR,
    "gurumeditation": VMState.ERROR,
    "teleporting": VMState.RUNNING,
    "livesnapshotting": VMState.RUNNING,
    "teleported": VMState.STOPPED,
    "settingup": VMState.STARTING,
    "deletingsnapshot": VMState.STOPPED,
    "deletingsnapshotlive": VMState.RUNNING,
    "deletingsnapshotpaused": VMState.PAUSED,
    "onlinesnapshotting": VMState.RUNNING,
    "restoringsnapshot": VMState.STOPPED,
    "snapshotting": VMState.STOPPED,
}


def parse_state(info: Mapping[str, str]) -> VMState:
    return _STATES.get(info.get("VMState", "").lower(), VMState.ERROR)


def parse_list_vms(text: str) -> dict[str, str]:
    """``list vms``: ``"name" {uuid}`` lines -> {name: uuid}."""
    out = {}
    for line in text.splitlines():
        m = re.match(r'^"(.*)" \{([0-9a-fA-F-]+)\}\s*$', line.strip())
        if m:
            out[m.group(1)] = m.group(2)
    return out


_CAPACITY_RE = re.compile(r"^Capacity:\s+(\d+)\s+MBytes\s*$", re.MULTILINE)


def parse_capacity_mib(text: str) -> int | None:
    """The ``Capacity:  20480 MBytes`` line of ``showmediuminfo disk PATH``, in MiB."""
    m = _CAPACITY_RE.search(text)
    return int(m.group(1)) if m else None


def natpf_rule(fwd: Forward) -> str:
    """``name,tcp,127.0.0.1,2222,,22``: the form of ``--natpf1`` and ``controlvm natpf1``."""
    return f"{fwd.name},{fwd.protocol},{fwd.host_ip},{fwd.host_port},,{fwd.guest_port}"


# ---------------------------------------------------------------------------------------------
# Errors


@dataclass(frozen=True)
class Diagnosis:
    message: str
    hint: str


_HYPERV_HINT = (
    "Hyper-V (also used by WSL 2, Windows Sandbox and Memory integrity) holds the CPU's "
    "virtualization: turn on 'Windows Hypervisor Platform' in Windows Features so VirtualBox "
    "can run on top of it, or turn Hyper-V off (as administrator: bcdedit /set "
    "hypervisorlaunchtype off, then restart), or use the QEMU driver."
)
_VTX_HINT = (
    "Enable Intel Virtualization Technology (VT-x) in the computer's BIOS/UEFI setup, then "
    "restart the computer (or use the QEMU driver, which works without it, slowly)."
)
_AMDV_HINT = (
    "Enable SVM / AMD-V in the computer's BIOS/UEFI setup, then restart the computer (or use "
    "the QEMU driver, which works without it, slowly)."
)

_NO_VMX_HINT = (
    "On Windows this usually means Hyper-V (also used by WSL 2, Windows Sandbox and Memory "
    "integrity) holds VT-x: turn Hyper-V off (as administrator: bcdedit /set "
    "hypervisorlaunchtype off, then restart) or turn on 'Windows Hypervisor Platform'. "
    "Otherwise enable VT-x in the BIOS/UEFI setup. Or use the QEMU driver."
)

# Order matters: VirtualBox often prints several codes for one failure. VT-x switched off in
# the firmware also makes the Hyper-V fallback (NEM) fail, so it is checked first; NEM codes
# next, since with Hyper-V on VT-x is also reported "not available".
_DIAGNOSES: tuple[tuple[tuple[str, ...], Diagnosis], ...] = (
    (
        ("VERR_VMX_MSR_ALL_VMX_DISABLED", "VERR_VMX_MSR_VMX_DISABLED", "VT-x is disabled"),
        Diagnosis("VT-x is disabled in the BIOS", _VTX_HINT),
    ),
    (
        ("VERR_SVM_DISABLED", "AMD-V is disabled", "VERR_SVM_NO_SVM", "AMD-V is not available"),
        Diagnosis("AMD-V is disabled or not available", _AMDV_HINT),
    ),
    (
        ("VERR_NEM_NOT_AVAILABLE", "WHvCapabilityCodeHypervisorPresent", "VERR_NEM_"),
        Diagnosis("VirtualBox cannot use Hyper-V's hypervisor platform", _HYPERV_HINT),
    ),
    (
        ("VERR_VMX_NO_VMX", "VT-x is not available"),
        Diagnosis("VT-x is not available to VirtualBox", _NO_VMX_HINT),
    ),
    (
        ("VERR_VMX_IN_VMX_ROOT_MODE", "VERR_SVM_IN_USE"),
        Diagnosis(
            "Another hypervisor (such as KVM) is using the CPU's virtualization",
            "Stop the other hypervisor's VMs (on Linux: sudo modprobe -r kvm_intel kvm_amd), "
            "or use the QEMU driver.",
        ),
    ),
    (
        ("VERR_VM_DRIVER_NOT_INSTALLED", "Kernel driver not installed", "vboxdrv"),
        Diagnosis(
            "VirtualBox's kernel driver is not loaded",
            "On macOS allow Oracle's extension in System Settings > Privacy & Security and "
            "restart; on Linux run sudo /sbin/vboxconfig; on Windows reinstall VirtualBox.",
        ),
    ),
    (
        ("VERR_VD_IMAGE_READ_ONLY", "VERR_ACCESS_DENIED", "VERR_FILE_NOT_FOUND"),
        Diagnosis(
            "VirtualBox cannot open one of the machine's files",
            "Check that the machine folder exists and is writable, or remove and recreate the "
            "machine.",
        ),
    ),
)


def diagnose(text: str) -> Diagnosis | None:
    """Recognise the VirtualBox failures users meet most, from stderr or VBox.log."""
    for needles, diag in _DIAGNOSES:
        if any(n in text for n in needles):
            return diag
    return None


class VBoxError(DriverError):
    """VBoxManage failed; ``details`` carries the command and its output."""


def is_not_found(result: CommandResult) -> bool:
    return "Could not find a registered machine" in result.stderr or (
        "VBOX_E_OBJECT_NOT_FOUND" in result.stderr
    )


# ---------------------------------------------------------------------------------------------
# VBoxManage


class VBoxManage:
    """Runs VBoxManage: serialised by a file lock, retried on transient errors, and failing
    on ``error:`` in stderr whatever the exit code."""

    retries = 5

    def __init__(
        self,
        binary: str,
        runner: Runner | None = None,
        lock_path: Path | None = None,
        sleep: Callable[[float], None] = time.sleep,
        retry_delay: float = 1.0,
    ):
        self.binary = binary
        self.runner: Runner = runner or SubprocessRunner()
        self.lock_path = lock_path or (paths.data_dir() / "vboxmanage.lock")
        self.sleep = sleep
        self.retry_delay = retry_delay

    def run(self, *args: str, check: bool = True, timeout: float = 300.0) -> CommandResult:
        argv = [self.binary, *args]
        paths.ensure_dir(self.lock_path.parent)
        result: CommandResult | None = None
        for attempt in range(self.retries):
            try:
                with FileLock(str(self.lock_path), timeout=timeout):
                    result = self.runner(argv, timeout=timeout)
            except Timeout as exc:
                raise VBoxError(
                    f"Another program kept VBoxManage busy for {timeout:g} s",
                    hint=f"Wait for other Toolbox windows or commands to finish (lock: "
                    f"{self.lock_path}).",
                ) from exc
            failed = not result.ok or "error:" in result.stderr
            if not failed:
                return result
            if attempt + 1 < self.retries and any(r in result.stderr for r in RETRYABLE):
                self.sleep(self.retry_delay)
                continue
            break
        assert result is not None
        if check:
            raise self.error(result)
        return result

    @staticmethod
    def error(result: CommandResult) -> VBoxError:
        text = result.stderr or result.stdout
        diag = diagnose(text)
        first = next(
            (
                ln.split("error:", 1)[1].strip()
                for ln in text.splitlines()
                if "error:" in ln and ln.split("error:", 1)[1].strip()
            ),
            text.strip().splitlines()[-1] if text.strip() else f"exit code {result.exit_code}",
        )
        cmd = CommandError(result.argv, result.exit_code, result.stdout, result.stderr)
        if diag:
            return VBoxError(f"{diag.message}: {first}", hint=diag.hint, details=str(cmd))
        return VBoxError(
            f"VBoxManage {result.argv[1] if len(result.argv) > 1 else ''} failed: {first}",
            hint="See the details; VirtualBox's own log is in the machine folder's Logs/.",
            details=str(cmd),
        )


# ---------------------------------------------------------------------------------------------
# The driver


class VirtualBoxDriver(Driver):
    """VirtualBox through VBoxManage."""

    name = "virtualbox"
    capabilities = Capabilities(live_forwards=True, graceful_stop=True, direct_kernel_boot=False)

    poll_interval = 1.0

    def __init__(
        self,
        runner: Runner | None = None,
        *,
        binary: str | None = None,
        system: str | None = None,
        env: Mapping[str, str] | None = None,
        which: Callable[[str], str | None] = shutil.which,
        is_file: Callable[[str], bool] = os.path.isfile,
        registry: Callable[[], str | None] = read_registry_install_dir,
        qemu_img: str | None = None,
        controller: str = "virtio-scsi",
        lock_path: Path | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.runner: Runner = runner or SubprocessRunner()
        self.system = system or platform.system()
        self.binary = binary or find_vboxmanage(self.system, env, which, is_file, registry)
        # qemu-img converts qcow2 images, which VirtualBox cannot read; "" means none.
        self.qemu_img = which("qemu-img") if qemu_img is None else (qemu_img or None)
        if controller not in ("virtio-scsi", "sata"):
            raise ValueError(f"unknown storage controller {controller!r}")
        self.controller = controller
        self.lock_path = lock_path
        self.sleep = sleep
        self.clock = clock
        self._vbm: VBoxManage | None = None

    # -- plumbing ----------------------------------------------------------------------------

    @property
    def vbm(self) -> VBoxManage:
        if self.binary is None:
            raise DriverError("VBoxManage was not found", hint=install_hint(self.system))
        if self._vbm is None:
            self._vbm = VBoxManage(self.binary, self.runner, self.lock_path, sleep=self.sleep)
        return self._vbm

    def availability(self) -> Availability:
        if self.binary is None:
            return Availability(False, None, "VBoxManage was not found", install_hint(self.system))
        try:
            res = self.runner([self.binary, "--version"], timeout=60)
        except CommandError as exc:
            return Availability(
                False, None, f"VBoxManage cannot run: {exc.message}", install_hint(self.system)
            )
        ver = parse_version(res.stdout)
        text = (res.stdout + res.stderr).strip()
        if ver is None or not res.ok:
            diag = diagnose(text)
            return Availability(
                False,
                None,
                f"VBoxManage --version failed: {text[-300:]}",
                diag.hint if diag else install_hint(self.system),
            )
        version = ".".join(map(str, ver))
        if ver[:2] < MIN_VERSION:
            return Availability(
                False,
                version,
                f"VirtualBox {version} is too old (Toolbox needs "
                f"{MIN_VERSION[0]}.{MIN_VERSION[1]} or newer)",
                "Update VirtualBox from virtualbox.org.",
            )
        if "WARNING" in text and "vboxdrv" in text:
            diag = diagnose("vboxdrv")
            assert diag is not None
            return Availability(False, version, diag.message, diag.hint)
        return Availability(True, version, None, None)

    def _config_path(self, spec: VMSpec) -> Path:
        return spec.directory / CONFIG_NAME

    def _vdi(self, spec: VMSpec) -> Path:
        return spec.directory / "disk.vdi"

    def _vm_folder(self, spec: VMSpec) -> Path:
        return spec.directory / vm_name(spec.name)

    def _info(self, spec: VMSpec) -> dict[str, str] | None:
        res = self.vbm.run("showvminfo", vm_name(spec.name), "--machinereadable", check=False)
        if is_not_found(res):
            return None
        if not res.ok or "error:" in res.stderr:
            raise VBoxManage.error(res)
        return parse_machinereadable(res.stdout)

    # -- create ------------------------------------------------------------------------------

    def create(self, spec: VMSpec) -> None:
        name = vm_name(spec.name)
        if spec.image.direct_kernel_boot:
            raise DriverError(
                f"The image {spec.image.disk.name} boots by direct kernel boot, which "
                "VirtualBox cannot do",
                hint="Use the Debian cloud image with VirtualBox, or the QEMU driver for "
                "locally built images.",
            )
        paths.ensure_dir(spec.directory)
        # VirtualBox writes the serial console there but does not create the folder.
        paths.ensure_dir(spec.console_log.parent)
        info = self._info(spec)
        if info is not None:
            if self._created_marker(spec):
                return
            # A create that was interrupted: start over from a clean slate.
            self._unregister(spec)
        vm_folder = self._vm_folder(spec)
        if vm_folder.exists():
            shutil.rmtree(vm_folder, ignore_errors=True)

        self.vbm.run("createvm", "--basefolder", str(spec.directory), "--name", name, "--register")
        self.vbm.run(
            "modifyvm",
            name,
            "--firmware",
            "bios",
            "--ostype",
            OSTYPE,
            "--cpus",
            str(spec.cpus),
            "--memory",
            str(spec.memory_mib),
            "--acpi",
            "on",
            "--ioapic",
            "on",
            "--rtcuseutc",
            "on",
            "--pae",
            "on",
            "--hwvirtex",
            "on",
            "--nestedpaging",
            "on",
            "--paravirtprovider",
            "default",
            "--boot1",
            "disk",
            "--boot2",
            "dvd",
            "--boot3",
            "none",
            "--boot4",
            "none",
            "--uart1",
            "0x3F8",
            "4",
            "--uartmode1",
            "file",
            str(spec.console_log),
        )
        nic = ["modifyvm", name, "--nic1", "nat", "--nictype1", "virtio", "--cableconnected1"]
        nic += ["on", "--natdnsproxy1", "on"]
        for fwd in spec.forwards:
            nic += ["--natpf1", natpf_rule(fwd)]
        self.vbm.run(*nic)

        vdi = self._make_vdi(spec)
        ctl = "virtio-scsi" if self.controller == "virtio-scsi" else "SATA"
        add = ["storagectl", name, "--name", ctl, "--add", self.controller, "--portcount", "2"]
        if self.controller == "sata":
            add += ["--controller", "IntelAhci"]
        add += ["--hostiocache", "on", "--bootable", "on"]
        self.vbm.run(*add)
        self.vbm.run(
            "storageattach", name, "--storagectl", ctl, "--port", "0", "--device", "0",
            "--type", "hdd", "--medium", str(vdi),
        )  # fmt: skip
        self.vbm.run(
            "storageattach", name, "--storagectl", ctl, "--port", "1", "--device", "0",
            "--type", "dvddrive", "--medium", str(spec.seed_iso),
        )  # fmt: skip
        self._write_marker(spec)

    def _make_vdi(self, spec: VMSpec) -> Path:
        """The base image converted to a VDI of the requested size."""
        vdi = self._vdi(spec)
        if vdi.exists():
            # Left by an interrupted create; VirtualBox may still have it registered.
            self.vbm.run("closemedium", "disk", str(vdi), "--delete", check=False)
            vdi.unlink(missing_ok=True)
        base = spec.image.disk
        fmt = spec.image.format.lower()
        if fmt in ("raw", "img"):
            self.vbm.run("convertfromraw", str(base), str(vdi), "--format", "VDI")
        elif fmt in ("vmdk", "vhd", "vdi"):
            self.vbm.run("clonemedium", "disk", str(base), str(vdi), "--format", "VDI")
            # clonemedium registers the source too; leave VirtualBox's media list as it was.
            self.vbm.run("closemedium", "disk", str(base), check=False)
        elif fmt == "qcow2":
            if not self.qemu_img:
                raise DriverError(
                    f"VirtualBox cannot read the qcow2 image {base.name}",
                    hint="Install qemu-img (it converts the image once), or use a raw or VMDK "
                    "image with VirtualBox.",
                )
            res = self.runner(
                [self.qemu_img, "convert", "-f", "qcow2", "-O", "vdi", str(base), str(vdi)],
                timeout=1800,
            )
            res.check(hint="qemu-img could not convert the image to VDI.")
        else:
            raise DriverError(
                f"VirtualBox cannot use a {spec.image.format} image",
                hint="Use a raw, VMDK, VHD, VDI or (with qemu-img) qcow2 image.",
            )
        self.vbm.run("modifymedium", "disk", str(vdi), "--resize", str(spec.disk_gib * 1024))
        return vdi

    def _created_marker(self, spec: VMSpec) -> bool:
        try:
            data = json.loads(self._config_path(spec).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return bool(data.get("created")) and data.get("vm") == vm_name(spec.name)

    def _write_marker(self, spec: VMSpec) -> None:
        path = self._config_path(spec)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(
            json.dumps({"schema_version": 1, "vm": vm_name(spec.name), "created": True}),
            encoding="utf-8",
        )
        tmp.replace(path)

    # -- lifecycle -----------------------------------------------------------------------

    def state(self, spec: VMSpec) -> VMState:
        info = self._info(spec)
        if info is None:
            return VMState.NOT_FOUND
        return parse_state(info)

    def start(self, spec: VMSpec, progress: ProgressCallback | None = None) -> None:
        report = progress or (lambda _p: None)
        name = vm_name(spec.name)
        current = self.state(spec)
        if current is VMState.NOT_FOUND:
            raise NotFoundError(f"VirtualBox has no VM {name}", hint="Create the machine first.")
        if current is VMState.PAUSED:
            self.vbm.run("controlvm", name, "resume")
            return
        if current in (VMState.RUNNING, VMState.STARTING):
            return
        report(Progress("vm.start", f"Starting VirtualBox VM {name}"))
        res = self.vbm.run("startvm", name, "--type", "headless", check=False)
        if not res.ok or "error:" in res.stderr:
            raise self._start_error(spec, res.stderr or res.stdout, VBoxManage.error(res))
        # Some failures (VT-x, Hyper-V) only show as an aborted VM and a line in VBox.log.
        info = self._info(spec)
        if info is not None and parse_state(info) in (VMState.ABORTED, VMState.STOPPED):
            log = self._vbox_log(spec, info)
            raise self._start_error(
                spec,
                log,
                VBoxError(
                    f"VirtualBox VM {name} stopped right after starting",
                    hint=f"See {self._log_path(spec, info)}.",
                ),
            )
        report(Progress("vm.start", f"VirtualBox VM {name} is running", done=True))

    def _start_error(self, spec: VMSpec, text: str, fallback: VBoxError) -> VBoxError:
        diag = diagnose(text)
        if diag is None:
            return fallback
        return VBoxError(
            f"VirtualBox could not start machine {spec.name}: {diag.message}",
            hint=diag.hint,
            details=text[-3000:],
        )

    def _log_path(self, spec: VMSpec, info: Mapping[str, str]) -> Path:
        folder = info.get("LogFldr")
        base = Path(folder) if folder else self._vm_folder(spec) / "Logs"
        return base / "VBox.log"

    def _vbox_log(self, spec: VMSpec, info: Mapping[str, str]) -> str:
        try:
            return self._log_path(spec, info).read_text(encoding="utf-8", errors="replace")[-20000:]
        except OSError:
            return ""

    def stop(self, spec: VMSpec, timeout: float = 60.0) -> None:
        name = vm_name(spec.name)
        current = self.state(spec)
        if not current.is_up:
            return
        if current is VMState.PAUSED:
            # A paused guest cannot react to the power button.
            self.kill(spec)
            return
        if current is VMState.RUNNING:
            self.vbm.run("controlvm", name, "acpipowerbutton", check=False)
        deadline = self.clock() + timeout
        while self.clock() < deadline:
            self.sleep(self.poll_interval)
            if not self.state(spec).is_up:
                return
        self.kill(spec)

    def kill(self, spec: VMSpec) -> None:
        name = vm_name(spec.name)
        current = self.state(spec)
        if current.is_up or current is VMState.ERROR:
            self.vbm.run("controlvm", name, "poweroff")

    def remove(self, spec: VMSpec) -> None:
        current = self.state(spec)
        if current is not VMState.NOT_FOUND:
            if current is VMState.SAVED:
                self.vbm.run("discardstate", vm_name(spec.name))
            else:
                self.kill(spec)
            self._unregister(spec)
        vdi = self._vdi(spec)
        if vdi.exists():
            self.vbm.run("closemedium", "disk", str(vdi), "--delete", check=False)
            vdi.unlink(missing_ok=True)
        shutil.rmtree(self._vm_folder(spec), ignore_errors=True)
        for p in (
            self._config_path(spec),
            spec.console_log,
            spec.console_log.with_name(spec.console_log.name + ".1"),
        ):
            p.unlink(missing_ok=True)

    def modify(
        self,
        spec: VMSpec,
        *,
        cpus: int | None = None,
        memory_mib: int | None = None,
        disk_gib: int | None = None,
    ) -> None:
        """``modifymedium disk VDI --resize MIB`` (grow only), then ``modifyvm --cpus N
        --memory MIB``; VirtualBox keeps both in the VM's settings."""
        name = vm_name(spec.name)
        info = self._info(spec)
        if info is None:
            raise NotFoundError(f"VirtualBox has no VM {name}", hint="Create the machine first.")
        state = parse_state(info)
        if state is VMState.SAVED:
            raise DriverError(
                f"Machine {spec.name} is saved (suspended); VirtualBox cannot change its CPUs, "
                "memory or disk now",
                hint=f"Start the machine and stop it (`toolbox start {spec.name}`, then "
                f"`toolbox stop {spec.name}`), then change it.",
            )
        if state.is_up:
            raise DriverError(
                f"Machine {spec.name} is running: VirtualBox cannot change its CPUs, memory "
                "or disk now",
                hint="Stop the machine first.",
            )
        if disk_gib is not None:
            vdi = str(self._vdi(spec))
            current = parse_capacity_mib(self.vbm.run("showmediuminfo", "disk", vdi).stdout)
            want = disk_gib * 1024
            if current is not None and want < current:
                raise ValidationError(
                    "disk",
                    f"The disk of machine {spec.name} is {current / 1024:g} GiB; it cannot "
                    f"shrink to {disk_gib} GiB",
                    hint=f"Give {-(-current // 1024)} GiB or more (a disk only grows).",
                )
            if current != want:
                self.vbm.run("modifymedium", "disk", vdi, "--resize", str(want))
        settings: list[str] = []
        if cpus is not None:
            settings += ["--cpus", str(cpus)]
        if memory_mib is not None:
            settings += ["--memory", str(memory_mib)]
        if settings:
            self.vbm.run("modifyvm", name, *settings)

    def _unregister(self, spec: VMSpec) -> None:
        name = vm_name(spec.name)
        res = self.vbm.run("unregistervm", name, "--delete", check=False)
        if not (res.ok and "error:" not in res.stderr) and not is_not_found(res):
            raise VBoxManage.error(res)
        with contextlib.suppress(OSError):
            self._config_path(spec).unlink()

    # -- forwards ----------------------------------------------------------------------------

    def forwards(self, spec: VMSpec) -> list[Forward]:
        info = self._info(spec)
        if info is None:
            return list(spec.forwards)
        return parse_forwards(info)

    def add_forward(self, spec: VMSpec, forward: Forward) -> None:
        info = self._require_info(spec)
        existing = parse_forwards(info)
        clash = next(
            (
                f
                for f in existing
                if f.name != forward.name
                and (f.host_port, f.protocol) == (forward.host_port, forward.protocol)
            ),
            None,
        )
        if clash is not None:
            raise DriverError(
                f"Host port {forward.host_port} is already forwarded as {clash.name!r}",
                hint="Pick another host port, or remove that forward first.",
            )
        old = next((f for f in existing if f.name == forward.name), None)
        if old == forward:
            return
        live = parse_state(info).is_up
        if old is not None:
            self._natpf(spec, live, "delete", forward.name)
        self._natpf(spec, live, natpf_rule(forward))

    def remove_forward(self, spec: VMSpec, name: str) -> None:
        info = self._require_info(spec)
        if not any(f.name == name for f in parse_forwards(info)):
            raise NotFoundError(
                f"Machine {spec.name} has no forward named {name!r}",
                hint="List the machine's forwards to see their names.",
            )
        self._natpf(spec, parse_state(info).is_up, "delete", name)

    def live_forwards(self, spec: VMSpec) -> list[Forward]:
        info = self._info(spec)
        if info is None or not parse_state(info).is_up:
            return []
        return parse_forwards(info)

    def open_forward(self, spec: VMSpec, forward: Forward) -> None:
        # VirtualBox's NAT binds the port later and only logs a failure in VBox.log, so the
        # caller checks that the port is free first (the host agent does).
        self.vbm.run("controlvm", vm_name(spec.name), "natpf1", natpf_rule(forward))

    def close_forward(self, spec: VMSpec, forward: Forward) -> None:
        # controlvm changes are saved with the VM too: a stopped VM gets the rule deleted
        # from its settings, so no start ever binds a container's port by itself.
        info = self._info(spec)
        if info is None or not any(f.name == forward.name for f in parse_forwards(info)):
            return
        self._natpf(spec, parse_state(info).is_up, "delete", forward.name)

    def _natpf(self, spec: VMSpec, live: bool, *rule: str) -> None:
        name = vm_name(spec.name)
        if live:
            self.vbm.run("controlvm", name, "natpf1", *rule)
        else:
            self.vbm.run("modifyvm", name, "--natpf1", *rule)

    def _require_info(self, spec: VMSpec) -> dict[str, str]:
        info = self._info(spec)
        if info is None:
            raise NotFoundError(
                f"VirtualBox has no VM {vm_name(spec.name)}", hint="Create the machine first."
            )
        if parse_state(info) is VMState.SAVED:
            raise DriverError(
                f"Machine {spec.name} is saved (suspended); VirtualBox cannot change its "
                "forwards now",
                hint="Start the machine first, then change its forwards.",
            )
        return info

    def list_vms(self) -> dict[str, str]:
        """Registered VMs, name -> UUID (to spot a docker-machine ``default`` VM, say)."""
        return parse_list_vms(self.vbm.run("list", "vms").stdout)
