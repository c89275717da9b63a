"""The QEMU driver: a qcow2 overlay over the cached base image, ``qemu-system`` with a QMP
socket, user-mode networking with forwards bound to 127.0.0.1, and acceleration probed with
a verified fallback to TCG.

Files in the machine folder: ``disk.qcow2`` (the overlay), ``qemu.json`` (forwards and
settings that survive a restart), ``qemu.pid``, ``qmp.sock`` and ``qemu.log`` (QEMU's own
stderr). The guest's serial console goes to ``spec.console_log`` (appended, rotated).

Acceleration: hvf (macOS), whpx (Windows) or kvm (Linux) when present, else tcg. A faster
accelerator can exist and still hang the guest (nested KVM on this kind of CI machine), so
the first start with it watches the serial console for the kernel's first log line; without
one in ``probe_timeout`` the VM is killed and started again under tcg. The verdict is kept
per host (keyed by QEMU version, OS kernel and architecture) so later starts skip the probe.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from toolbox import paths
from toolbox.drivers.base import (
    Availability,
    BootImage,
    Capabilities,
    Driver,
    Forward,
    VMSpec,
    VMState,
    merge_forwards,
)
from toolbox.drivers.qmp import QMPAddress, QMPClient, QMPError, escape_option
from toolbox.errors import CommandError, DriverError, NotFoundError, PortTaken, ValidationError
from toolbox.process import Runner, SubprocessRunner
from toolbox.progress import Progress, ProgressCallback

MIN_VERSION = (5, 2)
NETDEV_ID = "net0"
CONFIG_SCHEMA = 1
CONSOLE_ROTATE_BYTES = 4 * 1024 * 1024
ACCEL_ENV = "TOOLBOX_QEMU_ACCEL"  # force an accelerator (kvm, hvf, whpx, tcg): no probe

# Proof that the guest kernel runs: its first log lines ("Linux version ...", a printk
# timestamp "[    0.000000]"), or, for a kernel booted with "quiet", systemd's "[  OK  ]" or a
# login prompt. Boot loaders and the kernel's real-mode setup code print before the point
# where a broken accelerator hangs, so their output does not count. The guest must log to
# the serial console (console=ttyS0), as the Debian cloud image and the local build do.
KERNEL_PROGRESS = re.compile(rb"Linux version |\[\s*\d+\.\d{6}\]|\[\s+OK\s+\]| login: ")

_HOSTFWD_ERRORS = ("could not", "invalid", "not found", "error", "failed")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------------
# Finding QEMU


def host_arch(machine: str | None = None) -> str:
    """QEMU's name for the host architecture (x86_64 or aarch64)."""
    m = (machine or platform.machine()).lower()
    if m in ("arm64", "aarch64", "armv8", "armv8l"):
        return "aarch64"
    return "x86_64"


def system_binary_name(arch: str, system: str | None = None) -> str:
    name = f"qemu-system-{arch}"
    return name + ".exe" if (system or platform.system()) == "Windows" else name


def candidate_dirs(system: str, env: Mapping[str, str]) -> list[Path]:
    """Folders to look in besides PATH: where the usual installers put QEMU."""
    if system == "Windows":
        dirs = []
        for var in ("ProgramFiles", "ProgramW6432"):
            if env.get(var):
                dirs.append(Path(env[var]) / "qemu")
        dirs.append(Path(r"C:\Program Files\qemu"))
        return dirs
    if system == "Darwin":
        return [Path("/opt/homebrew/bin"), Path("/usr/local/bin"), Path("/opt/local/bin")]
    return [Path("/usr/bin"), Path("/usr/local/bin")]


def find_binaries(
    arch: str,
    system: str | None = None,
    env: Mapping[str, str] | None = None,
    which: Callable[[str], str | None] = shutil.which,
    is_file: Callable[[Path], bool] = Path.is_file,
) -> tuple[Path | None, Path | None]:
    """Locate ``qemu-system-<arch>`` and ``qemu-img`` (PATH first, then install folders)."""
    system = system or platform.system()
    env = os.environ if env is None else env
    exe = ".exe" if system == "Windows" else ""

    def locate(name: str) -> Path | None:
        found = which(name)
        if found:
            return Path(found)
        for d in candidate_dirs(system, env):
            p = d / (name + exe)
            if is_file(p):
                return p
        return None

    return locate(f"qemu-system-{arch}"), locate("qemu-img")


_VERSION_RE = re.compile(r"QEMU emulator version (\d+)\.(\d+)(?:\.(\d+))?")


def parse_version(text: str) -> tuple[int, int, int] | None:
    m = _VERSION_RE.search(text)
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def parse_accel_help(text: str) -> tuple[str, ...]:
    """Accelerators compiled into a QEMU binary, from ``-accel help``."""
    names = []
    for line in text.splitlines():
        word = line.strip()
        if word and " " not in word and word.isalpha() and word.islower():
            names.append(word)
    return tuple(names)


def install_hint(system: str | None = None) -> str:
    system = system or platform.system()
    if system == "Darwin":
        return "Install QEMU with Homebrew: brew install qemu"
    if system == "Windows":
        return (
            "Install QEMU for Windows (qemu.org/download, the 64-bit installer) into "
            r"C:\Program Files\qemu, or put qemu-system-x86_64.exe on PATH"
        )
    return "Install QEMU: sudo apt-get install qemu-system-x86 qemu-utils (Debian/Ubuntu)"


# ---------------------------------------------------------------------------------------------
# Acceleration


def accel_candidates(
    system: str, compiled: Iterable[str], kvm_usable: bool, forced: str | None = None
) -> list[str]:
    """Accelerators to try, fastest first, always ending with tcg."""
    if forced:
        return [forced]
    have = set(compiled)
    order: list[str] = []
    if system == "Darwin" and "hvf" in have:
        order.append("hvf")
    elif system == "Windows" and "whpx" in have:
        order.append("whpx")
    elif system == "Linux" and "kvm" in have and kvm_usable:
        order.append("kvm")
    order.append("tcg")
    return order


def kvm_usable(dev: Path = Path("/dev/kvm")) -> bool:
    return dev.exists() and os.access(dev, os.R_OK | os.W_OK)


@dataclass(frozen=True)
class AccelVerdict:
    accel: str
    works: bool
    checked: str
    detail: str


class AccelCache:
    """Per-host verdicts on accelerators, so only the first start pays the probe.

    Keyed by QEMU version, OS, kernel release and architecture: an upgrade of either
    re-probes.
    """

    def __init__(self, path: Path | None = None):
        self.path = path or (paths.cache_dir() / "qemu-accel.json")

    @staticmethod
    def host_key(qemu_version: str, arch: str) -> str:
        return f"qemu {qemu_version}|{platform.system()} {platform.release()}|{arch}"

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def get(self, host_key: str, accel: str) -> AccelVerdict | None:
        entry = self._load().get(host_key, {}).get(accel)
        if not isinstance(entry, dict):
            return None
        return AccelVerdict(
            accel, bool(entry.get("works")), str(entry.get("checked")), str(entry.get("detail"))
        )

    def put(self, host_key: str, verdict: AccelVerdict) -> None:
        data = self._load()
        data.setdefault(host_key, {})[verdict.accel] = {
            "works": verdict.works,
            "checked": verdict.checked,
            "detail": verdict.detail,
        }
        paths.ensure_dir(self.path.parent)
        tmp = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
        tmp.replace(self.path)


# ---------------------------------------------------------------------------------------------
# The command line


@dataclass(frozen=True)
class LaunchConfig:
    """Everything that goes on QEMU's command line, resolved to absolute paths."""

    binary: Path
    arch: str
    accel: str
    name: str
    cpus: int
    memory_mib: int
    overlay: Path
    image: BootImage
    seed_iso: Path
    forwards: tuple[Forward, ...]
    console_log: Path
    qmp: QMPAddress
    pidfile: Path
    daemonize: bool = True
    firmware: Path | None = None  # UEFI code for aarch64 BIOS-style boot


def hostfwd_rule(fwd: Forward) -> str:
    """``tcp:127.0.0.1:2222-:22``: the form of ``hostfwd=`` and ``hostfwd_add``."""
    return f"{fwd.protocol}:{fwd.host_ip}:{fwd.host_port}-:{fwd.guest_port}"


def hostfwd_remove_rule(fwd: Forward) -> str:
    return f"{fwd.protocol}:{fwd.host_ip}:{fwd.host_port}"


_USERNET_FORWARD = re.compile(
    r"^\s*(TCP|UDP)\[HOST_FORWARD\]\s+-?\d+\s+(\S+)\s+(\d+)\s+(\S+)\s+(\d+)", re.MULTILINE
)


def parse_usernet(text: str) -> list[Forward]:
    """The host forwards in ``info usernet`` output (libslirp's connection table): lines like
    ``  TCP[HOST_FORWARD]  13  127.0.0.1  2222  10.0.2.15  22  0  0``; ``*`` is any address."""
    out: list[Forward] = []
    for proto, src, sport, _dst, dport in _USERNET_FORWARD.findall(text):
        protocol = proto.lower()
        host_ip = "0.0.0.0" if src in ("*", "0.0.0.0") else src
        out.append(Forward(f"live-{protocol}-{sport}", int(dport), int(sport), protocol, host_ip))
    return out


def cpu_model(arch: str, accel: str) -> str | None:
    if accel in ("kvm", "hvf"):
        return "host"
    if arch == "aarch64":
        return "max"  # the virt machine's default CPU is 32-bit
    return None


def build_argv(cfg: LaunchConfig) -> list[str]:
    """QEMU's argv for a launch: a pure function, tested as an exact list."""
    e = escape_option
    argv = [str(cfg.binary), "-name", f"toolbox-{cfg.name}"]
    if cfg.arch == "aarch64":
        argv += ["-machine", "virt,highmem=on"]
    else:
        argv += ["-machine", "q35"]
    argv += ["-accel", cfg.accel]
    cpu = cpu_model(cfg.arch, cfg.accel)
    if cpu:
        argv += ["-cpu", cpu]
    argv += [
        "-smp",
        str(cfg.cpus),
        "-m",
        str(cfg.memory_mib),
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-rtc",
        "base=utc",
        "-qmp",
        cfg.qmp.qemu_option(),
        "-pidfile",
        str(cfg.pidfile),
        "-chardev",
        f"file,id=con0,path={e(str(cfg.console_log))},append=on",
        "-serial",
        "chardev:con0",
        "-drive",
        f"if=none,id=disk0,file={e(str(cfg.overlay))},format=qcow2,discard=unmap",
        "-device",
        "virtio-blk-pci,drive=disk0,bootindex=1",
        "-drive",
        f"if=none,id=seed,file={e(str(cfg.seed_iso))},format=raw,media=cdrom,readonly=on",
        "-device",
        "virtio-scsi-pci,id=scsi0",
        "-device",
        "scsi-cd,bus=scsi0.0,drive=seed",
        "-netdev",
        ",".join([f"user,id={NETDEV_ID}"] + [f"hostfwd={hostfwd_rule(f)}" for f in cfg.forwards]),
        "-device",
        f"virtio-net-pci,netdev={NETDEV_ID}",
        "-device",
        "virtio-rng-pci",
    ]
    if cfg.firmware is not None and not cfg.image.direct_kernel_boot:
        argv += ["-bios", str(cfg.firmware)]
    if cfg.image.direct_kernel_boot:
        argv += ["-kernel", str(cfg.image.kernel)]
        if cfg.image.initrd is not None:
            argv += ["-initrd", str(cfg.image.initrd)]
        if cfg.image.cmdline:
            argv += ["-append", cfg.image.cmdline]
    if cfg.daemonize:
        argv.append("-daemonize")
    return argv


def overlay_argv(qemu_img: Path, base: BootImage, overlay: Path, disk_gib: int) -> list[str]:
    """``qemu-img create`` for a copy-on-write overlay over the cached base image."""
    return [
        str(qemu_img),
        "create",
        "-f",
        "qcow2",
        "-F",
        base.format,
        "-b",
        str(base.disk.resolve()),
        str(overlay),
        f"{disk_gib}G",
    ]


def resize_argv(qemu_img: Path, overlay: Path, disk_gib: int) -> list[str]:
    """``qemu-img resize`` of the machine's overlay to ``disk_gib`` (never with --shrink)."""
    return [str(qemu_img), "resize", "-f", "qcow2", str(overlay), f"{disk_gib}G"]


def qmp_socket_path(directory: Path) -> Path:
    """The QMP socket path, moved under the temp dir when the machine folder is too long for
    a unix socket address (about 104 bytes on macOS, 108 on Linux)."""
    direct = directory / "qmp.sock"
    if len(os.fsencode(str(direct))) < 100:
        return direct
    digest = hashlib.sha256(os.fsencode(str(directory.resolve()))).hexdigest()[:16]
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"toolbox-{uid}" / f"{digest}.qmp"


# ---------------------------------------------------------------------------------------------
# Persisted driver config


@dataclass(frozen=True)
class QemuConfig:
    """What the driver keeps in ``qemu.json``: forwards survive a restart."""

    forwards: tuple[Forward, ...]
    base_disk: str
    base_format: str
    created: str
    accel: str | None = None
    qmp_port: int | None = None
    schema_version: int = CONFIG_SCHEMA

    def to_json(self) -> str:
        return json.dumps(
            {
                "schema_version": self.schema_version,
                "base_disk": self.base_disk,
                "base_format": self.base_format,
                "created": self.created,
                "accel": self.accel,
                "qmp_port": self.qmp_port,
                "forwards": [
                    {
                        "name": f.name,
                        "guest_port": f.guest_port,
                        "host_port": f.host_port,
                        "protocol": f.protocol,
                        "host_ip": f.host_ip,
                    }
                    for f in self.forwards
                ],
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> QemuConfig:
        d = json.loads(text)
        return cls(
            forwards=tuple(
                Forward(
                    name=f["name"],
                    guest_port=int(f["guest_port"]),
                    host_port=int(f["host_port"]),
                    protocol=f.get("protocol", "tcp"),
                    host_ip=f.get("host_ip", "127.0.0.1"),
                )
                for f in d.get("forwards", [])
            ),
            base_disk=d.get("base_disk", ""),
            base_format=d.get("base_format", ""),
            created=d.get("created", ""),
            accel=d.get("accel"),
            qmp_port=d.get("qmp_port"),
            schema_version=int(d.get("schema_version", CONFIG_SCHEMA)),
        )


# ---------------------------------------------------------------------------------------------
# Processes


def _pid_alive(pid: int, marker: str | None = None) -> bool:
    """Is ``pid`` a live process (not a zombie) and, on Linux, the QEMU we started?"""
    if pid <= 0:
        return False
    if os.name == "nt":
        return _win_pid_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    proc = Path(f"/proc/{pid}")
    if proc.is_dir():
        try:
            stat = (proc / "stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                return False
            if marker is not None:
                cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
                return marker in cmdline
        except (OSError, IndexError):
            return False
    return True


def _win_pid_alive(pid: int) -> bool:  # pragma: no cover - Windows only
    import ctypes

    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return False
    try:
        code = ctypes.c_ulong()
        if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return False
        return code.value == 259  # STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)


def _terminate(pid: int) -> None:
    if os.name == "nt":  # pragma: no cover - Windows only
        subprocess.run(["taskkill", "/F", "/PID", str(pid)], capture_output=True, check=False)
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


Launcher = Callable[[list[str], Path], int]


def detached_launcher(argv: list[str], log_path: Path) -> int:  # pragma: no cover - Windows
    """Start QEMU detached from us where it cannot ``-daemonize`` itself (Windows)."""
    flags = 0
    for name in ("DETACHED_PROCESS", "CREATE_NEW_PROCESS_GROUP", "CREATE_NO_WINDOW"):
        flags |= int(getattr(subprocess, name, 0))
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, creationflags=flags
        )
    return proc.pid


# ---------------------------------------------------------------------------------------------
# The driver


@dataclass
class _Files:
    overlay: Path
    config: Path
    pidfile: Path
    lastpid: Path
    log: Path
    qmp_sock: Path


class QemuDriver(Driver):
    """QEMU with user-mode networking, QMP, and probed acceleration."""

    name = "qemu"
    capabilities = Capabilities(live_forwards=True, graceful_stop=True, direct_kernel_boot=True)

    # Without a kernel log line in this long, the accelerator is taken to hang the guest.
    probe_timeout_direct = 15.0
    probe_timeout_bios = 45.0
    launch_timeout = 120.0
    qmp_timeout = 10.0

    def __init__(
        self,
        runner: Runner | None = None,
        *,
        binary: Path | None = None,
        qemu_img: Path | None = None,
        arch: str | None = None,
        accel_cache: AccelCache | None = None,
        system: str | None = None,
        launcher: Launcher | None = None,
    ):
        self.runner: Runner = runner or SubprocessRunner()
        self.arch = arch or host_arch()
        self.system = system or platform.system()
        found_sys, found_img = (None, None)
        if binary is None or qemu_img is None:
            found_sys, found_img = find_binaries(self.arch, self.system)
        self.binary = binary or found_sys
        self.qemu_img = qemu_img or found_img
        self.accel_cache = accel_cache or AccelCache()
        self.launcher = launcher
        self._version: str | None = None
        self._compiled: tuple[str, ...] | None = None
        self.last_probe: list[AccelVerdict] = []  # what the last start found, for reports

    # -- discovery -----------------------------------------------------------------------

    def availability(self) -> Availability:
        if self.binary is None:
            return Availability(
                False,
                None,
                f"{system_binary_name(self.arch, self.system)} was not found",
                install_hint(self.system),
            )
        try:
            res = self.runner([str(self.binary), "--version"], timeout=30)
        except CommandError as exc:
            return Availability(
                False, None, f"{self.binary} cannot run: {exc.message}", install_hint(self.system)
            )
        ver = parse_version(res.stdout)
        if not res.ok or ver is None:
            return Availability(
                False,
                None,
                f"{self.binary} --version failed: {(res.stderr or res.stdout).strip()[:200]}",
                install_hint(self.system),
            )
        text = ".".join(map(str, ver))
        if ver[:2] < MIN_VERSION:
            return Availability(
                False,
                text,
                f"QEMU {text} is too old (Toolbox needs {MIN_VERSION[0]}.{MIN_VERSION[1]}+)",
                install_hint(self.system),
            )
        if self.qemu_img is None:
            return Availability(False, text, "qemu-img was not found", install_hint(self.system))
        self._version = text
        return Availability(True, text, None, None)

    def version(self) -> str:
        if self._version is None:
            avail = self.availability()
            if not avail.usable:
                raise DriverError(f"QEMU is not usable: {avail.reason}", hint=avail.hint)
        assert self._version is not None
        return self._version

    def compiled_accels(self) -> tuple[str, ...]:
        if self._compiled is None:
            res = self.runner([str(self._require_binary()), "-accel", "help"], timeout=30)
            self._compiled = parse_accel_help(res.stdout) if res.ok else ("tcg",)
        return self._compiled

    def accelerators(self) -> list[str]:
        """Accelerators to try for the next start, skipping ones known to hang here."""
        forced = os.environ.get(ACCEL_ENV) or None
        order = accel_candidates(self.system, self.compiled_accels(), kvm_usable(), forced)
        if forced:
            return order
        key = AccelCache.host_key(self.version(), self.arch)
        out = []
        for accel in order:
            verdict = self.accel_cache.get(key, accel)
            if accel != "tcg" and verdict is not None and not verdict.works:
                continue
            out.append(accel)
        return out

    def _require_binary(self) -> Path:
        if self.binary is None:
            raise DriverError(
                f"{system_binary_name(self.arch, self.system)} was not found",
                hint=install_hint(self.system),
            )
        return self.binary

    def _require_img(self) -> Path:
        if self.qemu_img is None:
            raise DriverError("qemu-img was not found", hint=install_hint(self.system))
        return self.qemu_img

    # -- files -----------------------------------------------------------------------------

    def _files(self, spec: VMSpec) -> _Files:
        d = spec.directory
        return _Files(
            overlay=d / "disk.qcow2",
            config=d / "qemu.json",
            pidfile=d / "qemu.pid",
            lastpid=d / "qemu.lastpid",
            log=d / "qemu.log",
            qmp_sock=qmp_socket_path(d),
        )

    def _load_config(self, spec: VMSpec) -> QemuConfig | None:
        path = self._files(spec).config
        try:
            return QemuConfig.from_json(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            raise DriverError(
                f"The QEMU settings of machine {spec.name} are damaged: {path}: {exc}",
                hint="Remove the machine and create it again.",
            ) from exc

    def _save_config(self, spec: VMSpec, cfg: QemuConfig) -> None:
        path = self._files(spec).config
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(cfg.to_json(), encoding="utf-8")
        tmp.replace(path)

    def _qmp_address(self, spec: VMSpec, cfg: QemuConfig | None) -> QMPAddress:
        if self.system == "Windows":
            port = cfg.qmp_port if cfg and cfg.qmp_port else 0
            return QMPAddress(port=port)
        return QMPAddress(path=self._files(spec).qmp_sock)

    # -- lifecycle ---------------------------------------------------------------------------

    def create(self, spec: VMSpec) -> None:
        files = self._files(spec)
        paths.ensure_dir(spec.directory)
        cfg = self._load_config(spec)
        if files.overlay.exists() and cfg is not None:
            self._grow_if_needed(spec, files.overlay)
            return
        if not spec.image.disk.is_file():
            raise DriverError(
                f"The base image {spec.image.disk} does not exist",
                hint="Fetch or build the image again (toolbox image ls / toolbox image build).",
            )
        base_size = self._virtual_size(spec.image.disk, spec.image.format)
        want = spec.disk_gib * 1024**3
        if base_size is not None and want < base_size:
            raise DriverError(
                f"A {spec.disk_gib} GiB disk is smaller than the image "
                f"({base_size / 1024**3:.1f} GiB)",
                hint=f"Create the machine with --disk {-(-base_size // 1024**3)} or more.",
            )
        tmp = files.overlay.with_name(files.overlay.name + ".tmp")
        tmp.unlink(missing_ok=True)
        argv = overlay_argv(self._require_img(), spec.image, tmp, spec.disk_gib)
        self.runner(argv, timeout=120).check(
            hint="qemu-img could not create the machine's disk; see the output above."
        )
        tmp.replace(files.overlay)
        self._save_config(
            spec,
            QemuConfig(
                forwards=tuple(spec.forwards),
                base_disk=str(spec.image.disk.resolve()),
                base_format=spec.image.format,
                created=_now(),
            ),
        )

    def _virtual_size(self, disk: Path, fmt: str) -> int | None:
        res = self.runner(
            [str(self._require_img()), "info", "--output=json", "-f", fmt, str(disk)],
            timeout=60,
        )
        if not res.ok:
            raise DriverError(
                f"qemu-img cannot read {disk} as {fmt}: {res.stderr.strip()[-300:]}",
                hint="The image is damaged or not in the format its metadata says; fetch it again.",
            )
        try:
            return int(json.loads(res.stdout)["virtual-size"])
        except (ValueError, KeyError):
            return None

    def _grow_if_needed(self, spec: VMSpec, overlay: Path) -> None:
        """A bigger ``disk_gib`` than the overlay has grows it (only while stopped)."""
        if self.state(spec).is_up:
            return
        size = self._virtual_size(overlay, "qcow2")
        want = spec.disk_gib * 1024**3
        if size is not None and want > size:
            self.runner(
                resize_argv(self._require_img(), overlay, spec.disk_gib), timeout=120
            ).check(hint="qemu-img could not grow the disk.")

    def modify(
        self,
        spec: VMSpec,
        *,
        cpus: int | None = None,
        memory_mib: int | None = None,
        disk_gib: int | None = None,
    ) -> None:
        """CPUs and memory go on QEMU's command line at every start, from the spec, so
        nothing is kept for them here; the disk is the overlay, grown with ``qemu-img
        resize`` (never shrunk)."""
        files = self._files(spec)
        if not files.overlay.exists():
            raise NotFoundError(
                f"Machine {spec.name} has no QEMU disk yet", hint="Create the machine first."
            )
        if self.state(spec).is_up:
            raise DriverError(
                f"Machine {spec.name} is running: QEMU cannot change its CPUs, memory or disk now",
                hint="Stop the machine first.",
            )
        if disk_gib is None:
            return
        size = self._virtual_size(files.overlay, "qcow2")
        want = disk_gib * 1024**3
        if size is not None and want < size:
            raise ValidationError(
                "disk",
                f"The disk of machine {spec.name} is {size / 1024**3:g} GiB; it cannot shrink "
                f"to {disk_gib} GiB",
                hint=f"Give {-(-size // 1024**3)} GiB or more (a disk only grows).",
            )
        if size == want:
            return
        self.runner(resize_argv(self._require_img(), files.overlay, disk_gib), timeout=120).check(
            hint="qemu-img could not grow the disk; it is unchanged."
        )

    def start(self, spec: VMSpec, progress: ProgressCallback | None = None) -> None:
        report = progress or (lambda _p: None)
        current = self.state(spec)
        if current is VMState.NOT_FOUND:
            raise NotFoundError(
                f"Machine {spec.name} has no QEMU disk yet", hint="Create the machine first."
            )
        if current is VMState.PAUSED:
            with self._qmp(spec) as q:
                q.execute("cont")
            return
        if current.is_up:
            return
        files = self._files(spec)
        cfg = self._load_config(spec)
        assert cfg is not None
        if cfg.base_disk and not Path(cfg.base_disk).exists():
            raise DriverError(
                f"The image machine {spec.name} was created from is gone: {cfg.base_disk}",
                hint="The machine's disk is an overlay on that image: put the image back "
                "(toolbox image ls), or remove the machine and create it again.",
            )
        forwards = tuple(merge_forwards(list(cfg.forwards), spec.forwards))
        qmp_port = _free_port() if self.system == "Windows" else None
        cfg = replace(cfg, forwards=forwards, qmp_port=qmp_port)
        self._save_config(spec, cfg)
        paths.ensure_dir(spec.console_log.parent)
        self._rotate_console(spec.console_log)
        files.qmp_sock.parent.mkdir(parents=True, exist_ok=True)

        self.last_probe = []
        accels = self.accelerators()
        key = AccelCache.host_key(self.version(), self.arch)
        forced = bool(os.environ.get(ACCEL_ENV))
        for i, accel in enumerate(accels):
            last = i == len(accels) - 1
            report(Progress("vm.start", f"Starting QEMU ({accel})"))
            offset = spec.console_log.stat().st_size if spec.console_log.exists() else 0
            try:
                self._launch(spec, cfg, accel)
            except DriverError as exc:
                verdict_now = AccelVerdict(accel, False, _now(), exc.message)
                if accel != "tcg" and _crashed(exc.message):
                    # QEMU itself died under the accelerator (kvm_buf_set_msrs assertion seen
                    # on Linux 6.18 hosts): a verdict like a hang, remembered for this host.
                    self.accel_cache.put(key, verdict_now)
                if last:
                    raise
                # Otherwise the accelerator refused to start (e.g. no WHPX, no permission):
                # not cached, it is cheap to try again and the user may fix it.
                if _crashed(exc.message):
                    report(Progress("vm.start", f"QEMU crashed under {accel}; falling back"))
                else:
                    report(Progress("vm.start", f"{accel} is not usable here, trying the next"))
                self.last_probe.append(verdict_now)
                continue
            verdict = self.accel_cache.get(key, accel)
            if accel == "tcg" or forced or (verdict is not None and verdict.works):
                self._save_config(spec, replace(cfg, accel=accel))
                report(Progress("vm.start", f"QEMU is running ({accel})", done=True))
                return
            report(Progress("vm.start", f"Checking that {accel} runs the guest"))
            ok, detail = self._watch_progress(spec, offset, files)
            v = AccelVerdict(accel, ok, _now(), detail)
            self.last_probe.append(v)
            if ok:
                self.accel_cache.put(key, v)
                self._save_config(spec, replace(cfg, accel=accel))
                report(Progress("vm.start", f"QEMU is running ({accel})", done=True))
                return
            if self._running_pid(spec) is not None or _crashed(detail):
                # Started but made no progress (it hangs on this host), or died under the
                # accelerator: remember it.
                self.accel_cache.put(key, v)
            self._hard_stop(spec)
            report(Progress("vm.start", f"{accel} {detail}; falling back to the next"))
        raise DriverError(
            f"QEMU could not start machine {spec.name}",
            hint=f"See {files.log} and {spec.console_log}.",
        )

    def _probe_timeout(self, spec: VMSpec) -> float:
        return (
            self.probe_timeout_direct if spec.image.direct_kernel_boot else self.probe_timeout_bios
        )

    def _watch_progress(self, spec: VMSpec, offset: int, files: _Files) -> tuple[bool, str]:
        """Wait for the kernel's first log line on the serial console, bounded."""
        timeout = self._probe_timeout(spec)
        start = time.monotonic()
        deadline = start + timeout
        while time.monotonic() < deadline:
            try:
                with open(spec.console_log, "rb") as fh:
                    fh.seek(offset)
                    if KERNEL_PROGRESS.search(fh.read()):
                        return True, f"guest kernel started in {time.monotonic() - start:.1f} s"
            except OSError:
                pass
            if self._running_pid(spec) is None:
                return False, "QEMU exited before the guest kernel started"
            time.sleep(0.2)
        return False, f"made no progress in {timeout:g} s (the guest hangs)"

    def _launch(self, spec: VMSpec, cfg: QemuConfig, accel: str) -> None:
        files = self._files(spec)
        self._cleanup_stale(spec)
        lc = LaunchConfig(
            binary=self._require_binary(),
            arch=self.arch,
            accel=accel,
            name=spec.name,
            cpus=spec.cpus,
            memory_mib=spec.memory_mib,
            overlay=files.overlay.resolve(),
            image=spec.image,
            seed_iso=spec.seed_iso.resolve(),
            forwards=cfg.forwards,
            console_log=spec.console_log.resolve(),
            qmp=self._qmp_address(spec, cfg),
            pidfile=files.pidfile.resolve(),
            daemonize=self.system != "Windows",
            firmware=self._firmware() if self.arch == "aarch64" else None,
        )
        argv = build_argv(lc)
        with open(files.log, "a", encoding="utf-8") as log:
            log.write(f"--- {_now()} start ({accel}): {' '.join(argv)}\n")
        if lc.daemonize:
            try:
                res = self.runner(argv, timeout=self.launch_timeout)
            except CommandError as exc:
                self._hard_stop(spec)
                raise DriverError(
                    f"QEMU did not start machine {spec.name} in time",
                    hint=f"See {files.log}.",
                    details=str(exc),
                ) from exc
            with open(files.log, "a", encoding="utf-8") as log:
                log.write(res.stderr)
            if not res.ok:
                raise self._launch_error(spec, res.stderr, accel)
        else:  # pragma: no cover - Windows
            pid = (self.launcher or detached_launcher)(argv, files.log)
            if not files.pidfile.exists():
                files.pidfile.write_text(f"{pid}\n")
        with contextlib.suppress(OSError):
            files.lastpid.write_text(files.pidfile.read_text())
        if not self._wait_for_qmp(spec, cfg):
            text = files.log.read_text(encoding="utf-8", errors="replace")[-2000:]
            self._hard_stop(spec)
            raise self._launch_error(spec, text, accel)

    def _launch_error(self, spec: VMSpec, stderr: str, accel: str) -> DriverError:
        text = stderr.strip()
        tail = "\n".join(text.splitlines()[-5:])
        m = re.search(r"Could not set up host forwarding rule '([^']*)'", text)
        if m:
            return DriverError(
                f"QEMU could not forward {m.group(1)} for machine {spec.name}: the host port is "
                "taken",
                hint="Another program uses that port; stop it or give the machine other ports.",
                details=text,
            )
        return DriverError(
            f"QEMU failed to start machine {spec.name} ({accel}): {tail}",
            hint=f"See {self._files(spec).log}.",
            details=text,
        )

    def _wait_for_qmp(self, spec: VMSpec, cfg: QemuConfig, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with QMPClient(self._qmp_address(spec, cfg), timeout=5) as q:
                    q.execute("query-status")
                    return True
            except QMPError:
                if self.system != "Windows" and self._running_pid(spec) is None:
                    return False
            time.sleep(0.1)
        return False

    def _firmware(self) -> Path | None:  # pragma: no cover - aarch64 hosts
        assert self.binary is not None
        share = self.binary.resolve().parent.parent / "share" / "qemu"
        for name in ("edk2-aarch64-code.fd", "QEMU_EFI.fd"):
            if (share / name).is_file():
                return share / name
        for p in (
            Path("/usr/share/qemu-efi-aarch64/QEMU_EFI.fd"),
            Path("/usr/share/AAVMF/AAVMF_CODE.fd"),
        ):
            if p.is_file():
                return p
        return None

    @staticmethod
    def _rotate_console(log: Path) -> None:
        try:
            if log.stat().st_size > CONSOLE_ROTATE_BYTES:
                log.replace(log.with_name(log.name + ".1"))
        except FileNotFoundError:
            pass

    # -- state -------------------------------------------------------------------------------

    def _running_pid(self, spec: VMSpec) -> int | None:
        """The pid of this machine's live QEMU, or None.

        QEMU deletes its pid file as it begins to exit, so the pid is also kept in
        ``qemu.lastpid``: a QEMU still flushing its disk is not taken for stopped.
        """
        files = self._files(spec)
        for path in (files.pidfile, files.lastpid):
            try:
                pid = int(path.read_text().strip())
            except (OSError, ValueError):
                continue
            if self._pid_alive(spec, pid):
                return pid
        return None

    def _pid_alive(self, spec: VMSpec, pid: int) -> bool:
        pidfile = self._files(spec).pidfile
        marker = str(pidfile.resolve()) if sys.platform.startswith("linux") else None
        return _pid_alive(pid, marker)

    def _cleanup_stale(self, spec: VMSpec) -> None:
        """Remove the pid file and QMP socket a dead QEMU left behind."""
        if self._running_pid(spec) is not None:
            return
        files = self._files(spec)
        files.pidfile.unlink(missing_ok=True)
        files.lastpid.unlink(missing_ok=True)
        if files.qmp_sock.exists() or files.qmp_sock.is_symlink():
            files.qmp_sock.unlink(missing_ok=True)

    def _qmp(self, spec: VMSpec) -> QMPClient:
        return QMPClient(self._qmp_address(spec, self._load_config(spec)), self.qmp_timeout)

    def state(self, spec: VMSpec) -> VMState:
        files = self._files(spec)
        if not files.overlay.exists():
            return VMState.NOT_FOUND if self._running_pid(spec) is None else VMState.ERROR
        if self._running_pid(spec) is None:
            self._cleanup_stale(spec)
            return VMState.STOPPED
        try:
            with self._qmp(spec) as q:
                status = str(q.execute("query-status").get("status", ""))
        except QMPError:
            # Alive but the monitor did not answer (busy with another client, or starting).
            return VMState.RUNNING if self._running_pid(spec) is not None else VMState.STOPPED
        return _QMP_STATES.get(status, VMState.RUNNING)

    # -- stopping ----------------------------------------------------------------------------

    def stop(self, spec: VMSpec, timeout: float = 60.0) -> None:
        pid = self._running_pid(spec)
        if pid is None:
            self._cleanup_stale(spec)
            return
        if self.state(spec) is VMState.PAUSED:
            # A paused guest cannot see the power button.
            self._hard_stop(spec)
            return
        try:
            with self._qmp(spec) as q:
                q.execute("system_powerdown")
        except QMPError:
            self._hard_stop(spec)
            return
        if not self._wait_exit(spec, pid, timeout):
            self._hard_stop(spec)
        self._cleanup_stale(spec)

    def kill(self, spec: VMSpec) -> None:
        self._hard_stop(spec)

    def _hard_stop(self, spec: VMSpec) -> None:
        """``quit`` over QMP (QEMU exits at once, flushing its files), SIGKILL if that fails."""
        pid = self._running_pid(spec)
        if pid is not None:
            try:
                with self._qmp(spec) as q:
                    q.quit()
            except QMPError:
                pass
            if not self._wait_exit(spec, pid, 10.0):
                _terminate(pid)
                self._wait_exit(spec, pid, 10.0)
        self._cleanup_stale(spec)

    def _wait_exit(self, spec: VMSpec, pid: int, timeout: float) -> bool:
        """Wait for the process itself to end (not just its pid file to go)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._pid_alive(spec, pid):
                return True
            time.sleep(0.1)
        return not self._pid_alive(spec, pid)

    def remove(self, spec: VMSpec) -> None:
        self._hard_stop(spec)
        files = self._files(spec)
        for p in (
            files.overlay,
            files.overlay.with_name(files.overlay.name + ".tmp"),
            files.config,
            files.config.with_name(files.config.name + ".tmp"),
            files.pidfile,
            files.lastpid,
            files.log,
            files.qmp_sock,
            spec.console_log,
            spec.console_log.with_name(spec.console_log.name + ".1"),
        ):
            p.unlink(missing_ok=True)

    # -- forwards ----------------------------------------------------------------------------

    def forwards(self, spec: VMSpec) -> list[Forward]:
        cfg = self._load_config(spec)
        if cfg is None:
            return list(spec.forwards)
        return list(cfg.forwards)

    def add_forward(self, spec: VMSpec, forward: Forward) -> None:
        cfg = self._require_config(spec)
        old = next((f for f in cfg.forwards if f.name == forward.name), None)
        clash = next(
            (
                f
                for f in cfg.forwards
                if f.name != forward.name
                and (f.host_port, f.protocol, f.host_ip)
                == (forward.host_port, forward.protocol, forward.host_ip)
            ),
            None,
        )
        if clash is not None:
            raise DriverError(
                f"Host port {forward.host_port} is already forwarded as {clash.name!r}",
                hint="Pick another host port, or remove that forward first.",
            )
        if self._running_pid(spec) is not None:
            with self._qmp(spec) as q:
                if old is not None and old != forward:
                    self._hmp_fwd(
                        q,
                        f"hostfwd_remove {NETDEV_ID} {hostfwd_remove_rule(old)}",
                        ok_missing=True,
                    )
                if old != forward:
                    self._hmp_fwd(q, f"hostfwd_add {NETDEV_ID} {hostfwd_rule(forward)}")
        forwards = [f for f in cfg.forwards if f.name != forward.name] + [forward]
        self._save_config(spec, replace(cfg, forwards=tuple(forwards)))

    def remove_forward(self, spec: VMSpec, name: str) -> None:
        cfg = self._require_config(spec)
        old = next((f for f in cfg.forwards if f.name == name), None)
        if old is None:
            raise NotFoundError(
                f"Machine {spec.name} has no forward named {name!r}",
                hint="List the machine's forwards to see their names.",
            )
        if self._running_pid(spec) is not None:
            with self._qmp(spec) as q:
                # "not found" means QEMU no longer has it: forgetting it is what we want.
                self._hmp_fwd(
                    q, f"hostfwd_remove {NETDEV_ID} {hostfwd_remove_rule(old)}", ok_missing=True
                )
        forwards = tuple(f for f in cfg.forwards if f.name != name)
        self._save_config(spec, replace(cfg, forwards=forwards))

    def live_forwards(self, spec: VMSpec) -> list[Forward]:
        if self._running_pid(spec) is None:
            return []
        saved = {(f.protocol, f.host_ip, f.host_port): f for f in self.forwards(spec)}
        with self._qmp(spec) as q:
            text = q.hmp("info usernet")
        return [saved.get((f.protocol, f.host_ip, f.host_port), f) for f in parse_usernet(text)]

    def open_forward(self, spec: VMSpec, forward: Forward) -> None:
        if self._running_pid(spec) is None:
            raise DriverError(f"Machine {spec.name} is not running", hint="Start it first.")
        with self._qmp(spec) as q:
            out = q.hmp(f"hostfwd_add {NETDEV_ID} {hostfwd_rule(forward)}").strip()
        if out and any(word in out.lower() for word in _HOSTFWD_ERRORS):
            # QEMU says only "Could not set up host forwarding rule": the bind failed.
            raise PortTaken(
                f"QEMU could not bind {forward.host_ip}:{forward.host_port}/{forward.protocol}: "
                f"{out}",
                hint="Another program holds the port, or the host refuses it.",
            )

    def close_forward(self, spec: VMSpec, forward: Forward) -> None:
        if self._running_pid(spec) is None:
            return
        with self._qmp(spec) as q:
            self._hmp_fwd(
                q,
                f"hostfwd_remove {NETDEV_ID} {hostfwd_remove_rule(forward)}",
                ok_missing=True,
            )

    def _require_config(self, spec: VMSpec) -> QemuConfig:
        cfg = self._load_config(spec)
        if cfg is None:
            raise NotFoundError(
                f"Machine {spec.name} has no QEMU VM", hint="Create the machine first."
            )
        return cfg

    @staticmethod
    def _hmp_fwd(q: QMPClient, command: str, ok_missing: bool = False) -> None:
        """Run hostfwd_add/remove; HMP reports failures as text, so read it."""
        out = q.hmp(command).strip()
        if ok_missing and "not found" in out.lower():
            return
        if out and any(word in out.lower() for word in _HOSTFWD_ERRORS):
            raise DriverError(
                f"QEMU refused `{command}`: {out}",
                hint="The host port may be taken by another program; pick another.",
            )


_QMP_STATES: dict[str, VMState] = {
    "running": VMState.RUNNING,
    "paused": VMState.PAUSED,
    "suspended": VMState.PAUSED,
    "prelaunch": VMState.STARTING,
    "inmigrate": VMState.STARTING,
    "restore-vm": VMState.STARTING,
    "finish-migrate": VMState.RUNNING,
    "postmigrate": VMState.PAUSED,
    "save-vm": VMState.RUNNING,
    "shutdown": VMState.STOPPING,
    "debug": VMState.PAUSED,
    "io-error": VMState.ERROR,
    "internal-error": VMState.ERROR,
    "guest-panicked": VMState.ERROR,
    "watchdog": VMState.ERROR,
    "colo": VMState.RUNNING,
}

__all__ = [
    "ACCEL_ENV",
    "AccelCache",
    "AccelVerdict",
    "LaunchConfig",
    "QemuConfig",
    "QemuDriver",
    "accel_candidates",
    "build_argv",
    "hostfwd_rule",
    "overlay_argv",
    "parse_accel_help",
    "parse_version",
]


#: What QEMU prints when it dies under an accelerator rather than refusing it.
_CRASH_MARKERS = ("Assertion", "assertion failed", "core dumped", "Aborted", "SIGABRT")


def _crashed(text: str) -> bool:
    """Whether QEMU's output says the process crashed (an abort), not a refusal."""
    return any(marker in text for marker in _CRASH_MARKERS)
