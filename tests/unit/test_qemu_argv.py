"""QEMU driver: the command lines as exact lists, and the pure helpers around them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from toolbox.drivers.base import BootImage, Forward, merge_forwards
from toolbox.drivers.qemu import (
    AccelCache,
    AccelVerdict,
    LaunchConfig,
    QemuConfig,
    accel_candidates,
    build_argv,
    find_binaries,
    host_arch,
    hostfwd_remove_rule,
    hostfwd_rule,
    overlay_argv,
    parse_accel_help,
    parse_version,
    qmp_socket_path,
)
from toolbox.drivers.qmp import QMPAddress, escape_option

DATA = Path(__file__).resolve().parents[1] / "data" / "qemu"

SSH = Forward("ssh", 22, 52222)
ENGINE = Forward("engine", 2376, 52376)


def _launch(tmp: Path, **kw) -> LaunchConfig:
    m = tmp / "machines" / "default"
    base = dict(
        binary=Path("/usr/bin/qemu-system-x86_64"),
        arch="x86_64",
        accel="tcg",
        name="default",
        cpus=2,
        memory_mib=2048,
        overlay=m / "disk.qcow2",
        image=BootImage(
            Path("/cache/images/debian-12-local/disk.qcow2"),
            "qcow2",
            kernel=Path("/cache/images/debian-12-local/vmlinuz"),
            initrd=Path("/cache/images/debian-12-local/initrd.img"),
            cmdline="root=LABEL=root rw console=ttyS0,115200",
        ),
        seed_iso=m / "seed.iso",
        forwards=(SSH, ENGINE),
        console_log=tmp / "logs" / "default-console.log",
        qmp=QMPAddress(path=m / "qmp.sock"),
        pidfile=m / "qemu.pid",
    )
    base.update(kw)
    return LaunchConfig(**base)  # type: ignore[arg-type]


def test_argv_direct_kernel_boot_linux_tcg() -> None:
    tmp = Path("/data")
    argv = build_argv(_launch(tmp))
    assert argv == [
        "/usr/bin/qemu-system-x86_64",
        "-name", "toolbox-default",
        "-machine", "q35",
        "-accel", "tcg",
        "-smp", "2",
        "-m", "2048",
        "-nodefaults",
        "-no-user-config",
        "-display", "none",
        "-rtc", "base=utc",
        "-qmp", "unix:/data/machines/default/qmp.sock,server=on,wait=off",
        "-pidfile", "/data/machines/default/qemu.pid",
        "-chardev", "file,id=con0,path=/data/logs/default-console.log,append=on",
        "-serial", "chardev:con0",
        "-drive",
        "if=none,id=disk0,file=/data/machines/default/disk.qcow2,format=qcow2,discard=unmap",
        "-device", "virtio-blk-pci,drive=disk0,bootindex=1",
        "-drive",
        "if=none,id=seed,file=/data/machines/default/seed.iso,format=raw,media=cdrom,readonly=on",
        "-device", "virtio-scsi-pci,id=scsi0",
        "-device", "scsi-cd,bus=scsi0.0,drive=seed",
        "-netdev", "user,id=net0,hostfwd=tcp:127.0.0.1:52222-:22,hostfwd=tcp:127.0.0.1:52376-:2376",
        "-device", "virtio-net-pci,netdev=net0",
        "-device", "virtio-rng-pci",
        "-kernel", "/cache/images/debian-12-local/vmlinuz",
        "-initrd", "/cache/images/debian-12-local/initrd.img",
        "-append", "root=LABEL=root rw console=ttyS0,115200",
        "-daemonize",
    ]  # fmt: skip


def test_argv_bios_boot_kvm_has_no_kernel_and_uses_host_cpu() -> None:
    cfg = _launch(
        Path("/d"),
        accel="kvm",
        image=BootImage(Path("/c/debian-12-genericcloud-amd64.qcow2"), "qcow2"),
        forwards=(),
    )
    argv = build_argv(cfg)
    assert argv[argv.index("-accel") : argv.index("-accel") + 4] == [
        "-accel",
        "kvm",
        "-cpu",
        "host",
    ]
    assert "-kernel" not in argv and "-initrd" not in argv and "-append" not in argv
    assert argv[argv.index("-netdev") + 1] == "user,id=net0"
    assert argv[-1] == "-daemonize"


def test_argv_windows_tcp_qmp_no_daemonize_and_paths_with_spaces() -> None:
    home = Path("/C:/Users/Jane Doe/AppData/Local/Toolbox")
    cfg = _launch(
        home,
        binary=Path("/C:/Program Files/qemu/qemu-system-x86_64.exe"),
        accel="whpx",
        qmp=QMPAddress(port=50123),
        daemonize=False,
    )
    argv = build_argv(cfg)
    assert argv[0] == "/C:/Program Files/qemu/qemu-system-x86_64.exe"
    assert "-daemonize" not in argv
    assert argv[argv.index("-qmp") + 1] == "tcp:127.0.0.1:50123,server=on,wait=off"
    # whpx takes QEMU's default CPU model: no -cpu.
    assert "-cpu" not in argv
    assert argv[argv.index("-chardev") + 1] == (
        "file,id=con0,path=/C:/Users/Jane Doe/AppData/Local/Toolbox/logs/default-console.log,"
        "append=on"
    )


def test_commas_in_paths_are_doubled_for_qemu() -> None:
    tmp = Path("/data/odd,name")
    argv = build_argv(_launch(tmp))
    assert "file=/data/odd,,name/machines/default/disk.qcow2,format=qcow2" in " ".join(argv)
    assert argv[argv.index("-qmp") + 1].startswith("unix:/data/odd,,name/machines/")
    # -pidfile and -kernel take a plain path, not an option list: no escaping there.
    assert argv[argv.index("-pidfile") + 1] == "/data/odd,name/machines/default/qemu.pid"
    assert escape_option("a,b,,c") == "a,,b,,,,c"


def test_argv_aarch64_uses_virt_max_cpu_and_uefi_firmware() -> None:
    cfg = _launch(
        Path("/d"),
        binary=Path("/opt/homebrew/bin/qemu-system-aarch64"),
        arch="aarch64",
        image=BootImage(Path("/c/debian-12-genericcloud-arm64.qcow2"), "qcow2"),
        firmware=Path("/opt/homebrew/share/qemu/edk2-aarch64-code.fd"),
    )
    argv = build_argv(cfg)
    assert argv[3:9] == ["-machine", "virt,highmem=on", "-accel", "tcg", "-cpu", "max"]
    assert argv[argv.index("-bios") + 1] == "/opt/homebrew/share/qemu/edk2-aarch64-code.fd"
    hvf = build_argv(
        _launch(Path("/d"), arch="aarch64", accel="hvf", image=cfg.image, firmware=cfg.firmware)
    )
    assert hvf[hvf.index("-cpu") + 1] == "host"


def test_overlay_argv(tmp_path: Path) -> None:
    base = tmp_path / "base.raw"
    base.write_bytes(b"")
    argv = overlay_argv(
        Path("/usr/bin/qemu-img"), BootImage(base, "raw"), Path("/m/disk.qcow2"), 20
    )
    assert argv == [
        "/usr/bin/qemu-img", "create", "-f", "qcow2", "-F", "raw", "-b", str(base.resolve()),
        "/m/disk.qcow2", "20G",
    ]  # fmt: skip


def test_hostfwd_rules() -> None:
    assert hostfwd_rule(SSH) == "tcp:127.0.0.1:52222-:22"
    assert hostfwd_remove_rule(SSH) == "tcp:127.0.0.1:52222"
    assert hostfwd_rule(Forward("dns", 53, 5353, protocol="udp")) == "udp:127.0.0.1:5353-:53"


def test_parse_version_and_accel_help_from_recorded_output() -> None:
    assert parse_version((DATA / "version-7.2.txt").read_text()) == (7, 2, 22)
    assert parse_version("QEMU emulator version 9.1.0\n") == (9, 1, 0)
    assert parse_version("QEMU emulator version 8.2\n") == (8, 2, 0)
    assert parse_version("garbage") is None
    assert parse_accel_help((DATA / "accel-help-7.2.txt").read_text()) == ("tcg", "kvm")
    assert parse_accel_help("Accelerators supported in QEMU binary:\ntcg\nhvf\n") == ("tcg", "hvf")


def test_accel_candidates_per_os() -> None:
    assert accel_candidates("Linux", ["tcg", "kvm"], kvm_usable=True) == ["kvm", "tcg"]
    assert accel_candidates("Linux", ["tcg", "kvm"], kvm_usable=False) == ["tcg"]
    assert accel_candidates("Darwin", ["tcg", "hvf"], kvm_usable=False) == ["hvf", "tcg"]
    assert accel_candidates("Windows", ["tcg", "whpx"], kvm_usable=False) == ["whpx", "tcg"]
    assert accel_candidates("Windows", ["tcg"], kvm_usable=False) == ["tcg"]
    assert accel_candidates("Linux", ["tcg", "kvm"], True, forced="tcg") == ["tcg"]


def test_host_arch_names() -> None:
    assert host_arch("x86_64") == "x86_64"
    assert host_arch("AMD64") == "x86_64"
    assert host_arch("arm64") == "aarch64"
    assert host_arch("aarch64") == "aarch64"


def test_accel_cache_roundtrip_and_key(tmp_path: Path) -> None:
    cache = AccelCache(tmp_path / "accel.json")
    key = AccelCache.host_key("7.2.22", "x86_64")
    assert key.startswith("qemu 7.2.22|") and key.endswith("|x86_64")
    assert cache.get(key, "kvm") is None
    cache.put(key, AccelVerdict("kvm", False, "2025-01-01T00:00:00+00:00", "hangs"))
    cache.put(key, AccelVerdict("tcg", True, "2025-01-01T00:00:00+00:00", "ok"))
    got = AccelCache(tmp_path / "accel.json").get(key, "kvm")
    assert got == AccelVerdict("kvm", False, "2025-01-01T00:00:00+00:00", "hangs")
    assert cache.get(AccelCache.host_key("8.0.0", "x86_64"), "kvm") is None
    (tmp_path / "accel.json").write_text("not json")
    assert cache.get(key, "kvm") is None


def test_qemu_config_roundtrip() -> None:
    cfg = QemuConfig(
        forwards=(SSH, Forward("dns", 53, 5353, "udp")),
        base_disk="/c/base.qcow2",
        base_format="qcow2",
        created="2025-01-01T00:00:00+00:00",
        accel="tcg",
        qmp_port=None,
    )
    back = QemuConfig.from_json(cfg.to_json())
    assert back == cfg
    assert json.loads(cfg.to_json())["schema_version"] == 1


def test_merge_forwards_spec_wins_by_name_and_live_added_ones_stay() -> None:
    saved = [SSH, ENGINE, Forward("web", 80, 8080)]
    wanted = (Forward("ssh", 22, 60022), ENGINE)
    assert merge_forwards(saved, wanted) == [
        Forward("ssh", 22, 60022),
        ENGINE,
        Forward("web", 80, 8080),
    ]


def test_qmp_socket_moves_to_temp_dir_when_the_path_is_too_long(tmp_path: Path) -> None:
    assert qmp_socket_path(Path("/srv/m")) == Path("/srv/m/qmp.sock")
    long_dir = tmp_path / ("x" * 120)
    moved = qmp_socket_path(long_dir)
    assert moved.suffix == ".qmp" and len(str(moved)) < 100
    assert moved == qmp_socket_path(long_dir)  # stable: state() finds it again
    assert moved != qmp_socket_path(tmp_path / ("y" * 120))


def test_find_binaries_on_windows_with_injected_lookups() -> None:
    env = {"ProgramFiles": r"C:\Program Files"}
    present = {Path(r"C:\Program Files") / "qemu" / "qemu-system-x86_64.exe",
               Path(r"C:\Program Files") / "qemu" / "qemu-img.exe"}  # fmt: skip
    sys_bin, img = find_binaries(
        "x86_64", "Windows", env, which=lambda _n: None, is_file=lambda p: p in present
    )
    assert sys_bin == Path(r"C:\Program Files") / "qemu" / "qemu-system-x86_64.exe"
    assert img == Path(r"C:\Program Files") / "qemu" / "qemu-img.exe"
    sys_bin, img = find_binaries("x86_64", "Linux", {}, which=lambda n: f"/usr/bin/{n}")
    assert sys_bin == Path("/usr/bin/qemu-system-x86_64") and img == Path("/usr/bin/qemu-img")
    assert find_binaries("x86_64", "Darwin", {}, lambda _n: None, lambda _p: False) == (None, None)


@pytest.mark.parametrize("bad", ["", "has space", "-lead", "x" * 64])
def test_forward_names_are_validated(bad: str) -> None:
    from toolbox.errors import UsageError

    with pytest.raises(UsageError):
        Forward(bad, 22, 2222)


def test_forward_ports_are_validated() -> None:
    from toolbox.errors import UsageError

    with pytest.raises(UsageError):
        Forward("ssh", 0, 2222)
    with pytest.raises(UsageError):
        Forward("ssh", 22, 70000)
    with pytest.raises(UsageError):
        Forward("ssh", 22, 2222, protocol="sctp")


def test_kernel_progress_is_told_apart_from_boot_loader_output() -> None:
    """Recorded here: a KVM guest that hangs prints only the setup code's line; a TCG boot
    prints kernel log lines at once."""
    from toolbox.drivers.qemu import KERNEL_PROGRESS

    hang = (DATA / "console-kvm-hang.txt").read_bytes()
    assert b"Probing EDD" in hang and not KERNEL_PROGRESS.search(hang)
    assert KERNEL_PROGRESS.search((DATA / "console-tcg-start.txt").read_bytes())
    grub = b"\x1b[2J\x1b[01;01H GNU GRUB  version 2.06\r\nLoading Linux 6.1.0-18-cloud-amd64 ..."
    assert not KERNEL_PROGRESS.search(grub)
    assert KERNEL_PROGRESS.search(b"[  OK  ] Reached target Multi-User System.")
