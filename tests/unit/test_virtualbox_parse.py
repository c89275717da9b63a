"""VirtualBox: parsing VBoxManage output, finding VBoxManage (Windows logic with injected
environment and registry), availability and error diagnosis. VirtualBox cannot be installed
on these machines, so this runs on recorded output (tests/data/virtualbox/) and injected
lookups.
"""

from __future__ import annotations

from pathlib import Path, PureWindowsPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from toolbox.drivers.base import Forward, VMState
from toolbox.drivers.virtualbox import (
    VirtualBoxDriver,
    diagnose,
    find_vboxmanage,
    natpf_rule,
    parse_forwards,
    parse_list_vms,
    parse_machinereadable,
    parse_state,
    parse_version,
    vm_name,
)
from toolbox.process import CommandResult

DATA = Path(__file__).resolve().parents[1] / "data" / "virtualbox"


def rec(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


def test_parse_running_windows_recording() -> None:
    info = parse_machinereadable(rec("showvminfo-running-windows.txt"))
    assert info["name"] == "toolbox-default"
    assert info["memory"] == "2048"
    assert info["cpus"] == "2"
    assert parse_state(info) is VMState.RUNNING
    # Backslashes come escaped inside quotes; quoted keys are unquoted.
    assert info["virtio-scsi-0-0"] == (
        r"C:\Users\Jane Doe\AppData\Local\Toolbox\Toolbox\machines\default\disk.vdi"
    )
    assert info["LogFldr"].endswith(r"\machines\default\toolbox-default\Logs")
    assert info["uartmode1"] == (
        r"file,C:\Users\Jane Doe\AppData\Local\Toolbox\Toolbox\Logs\default-console.log"
    )
    # VirtualBox 7's stray "Encryption:     disabled" line is ignored, not misparsed.
    assert not any(k.startswith("Encryption") for k in info)
    assert parse_forwards(info) == [Forward("engine", 2376, 52376), Forward("ssh", 22, 52222)]


def test_parse_other_states() -> None:
    assert parse_state(parse_machinereadable(rec("showvminfo-poweroff-macos.txt"))) is (
        VMState.STOPPED
    )
    assert parse_state(parse_machinereadable(rec("showvminfo-saved.txt"))) is VMState.SAVED
    assert parse_state(parse_machinereadable(rec("showvminfo-aborted.txt"))) is VMState.ABORTED
    assert parse_state(parse_machinereadable(rec("showvminfo-paused.txt"))) is VMState.PAUSED
    assert parse_state({"VMState": "gurumeditation"}) is VMState.ERROR
    assert parse_state({"VMState": "aborted-saved"}) is VMState.SAVED
    assert parse_state({}) is VMState.ERROR
    mac = parse_machinereadable(rec("showvminfo-poweroff-macos.txt"))
    assert mac["CfgFile"] == (
        "/Users/jane doe/Library/Application Support/Toolbox/machines/default/"
        "toolbox-default/toolbox-default.vbox"
    )


def test_forwarding_lines_keep_their_numeric_order_and_skip_bad_ones() -> None:
    info = {
        "Forwarding(10)": "ten,tcp,127.0.0.1,1010,,10",
        "Forwarding(2)": "two,udp,,2002,,2",
        "Forwarding(3)": "broken",
    }
    assert parse_forwards(info) == [
        Forward("two", 2, 2002, "udp", "0.0.0.0"),
        Forward("ten", 10, 1010),
    ]


def test_natpf_rule_roundtrip() -> None:
    f = Forward("engine", 2376, 52376)
    assert natpf_rule(f) == "engine,tcp,127.0.0.1,52376,,2376"
    assert parse_forwards({"Forwarding(0)": natpf_rule(f)}) == [f]


_key = st.from_regex(r"[A-Za-z][A-Za-z0-9_\-()]{0,20}", fullmatch=True)
_value = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\r\n"),
    max_size=40,
)


def _render(key: str, value: str) -> str:
    """Write a pair the way VBoxManage does: odd keys quoted, values quoted and escaped."""
    esc = value.replace("\\", "\\\\").replace('"', '\\"')
    k = key if key.replace("_", "").replace("(", "").replace(")", "").isalnum() else f'"{key}"'
    return f'{k}="{esc}"'


@given(st.dictionaries(_key, _value, max_size=12))
def test_machinereadable_roundtrip(pairs: dict[str, str]) -> None:
    text = "\n".join(_render(k, v) for k, v in pairs.items()) + "\n"
    assert parse_machinereadable(text) == pairs


def test_a_line_separator_inside_a_value_stays_in_it() -> None:
    # Found by the round-trip property: U+2028 and U+0085 are line breaks to splitlines().
    text = 'description="one\u2028two\x85three"\nname="vm"\n'
    assert parse_machinereadable(text) == {"description": "one\u2028two\x85three", "name": "vm"}


@given(st.text(max_size=300))
def test_machinereadable_never_crashes(text: str) -> None:
    assert isinstance(parse_machinereadable(text), dict)


def test_list_vms() -> None:
    vms = parse_list_vms(rec("list-vms.txt"))
    assert list(vms) == ["default", "toolbox-default", "Windows 11 (work)"]


def test_versions() -> None:
    assert parse_version(rec("version.txt")) == (7, 0, 14)
    assert parse_version(rec("version-5.2.txt")) == (5, 2, 44)
    assert parse_version(rec("version-vboxdrv-warning.txt")) == (7, 0, 14)
    assert parse_version("6.1.50_Ubuntur161033\n") == (6, 1, 50)
    assert parse_version("nonsense") is None


def test_vm_names_never_clash_with_docker_toolbox_default() -> None:
    assert vm_name("default") == "toolbox-default"


class Version:
    def __init__(self, stdout: str, code: int = 0):
        self.stdout, self.code = stdout, code

    def __call__(self, argv, **_kw) -> CommandResult:
        assert list(argv) == ["VBoxManage", "--version"]
        return CommandResult(tuple(argv), self.code, self.stdout, "")


def test_availability_from_recorded_versions() -> None:
    ok = VirtualBoxDriver(Version(rec("version.txt")), binary="VBoxManage").availability()
    assert ok.usable and ok.version == "7.0.14"
    old = VirtualBoxDriver(Version(rec("version-5.2.txt")), binary="VBoxManage").availability()
    assert not old.usable and "too old" in (old.reason or "")
    assert "virtualbox.org" in (old.hint or "")
    drv_missing = VirtualBoxDriver(
        Version(rec("version-vboxdrv-warning.txt")), binary="VBoxManage"
    ).availability()
    assert not drv_missing.usable and "vboxconfig" in (drv_missing.hint or "")


def test_availability_without_vboxmanage_says_what_to_install_where() -> None:
    drv = VirtualBoxDriver(
        Version(""), system="Windows", env={}, which=lambda _n: None,
        is_file=lambda _p: False, registry=lambda: None,
    )  # fmt: skip
    avail = drv.availability()
    assert not avail.usable and avail.reason == "VBoxManage was not found"
    assert "C:\\Program Files\\Oracle\\VirtualBox" in (avail.hint or "")
    assert "virtualbox.org" in (avail.hint or "")


PF = r"C:\Program Files\Oracle\VirtualBox\VBoxManage.exe"


def test_find_on_path_first() -> None:
    assert (
        find_vboxmanage("Windows", {}, which=lambda n: rf"D:\bin\{n}", is_file=lambda _p: False)
        == r"D:\bin\VBoxManage.exe"
    )
    assert find_vboxmanage("Linux", {}, which=lambda n: f"/usr/bin/{n}") == "/usr/bin/VBoxManage"


def test_find_windows_msi_env_then_install_path_then_default_then_registry() -> None:
    msi = r"E:\Apps\Oracle VM VirtualBox" + "\\"
    env = {"VBOX_MSI_INSTALL_PATH": msi, "VBOX_INSTALL_PATH": r"F:\VBox"}
    present = {str(PureWindowsPath(msi) / "VBoxManage.exe"), r"F:\VBox\VBoxManage.exe", PF}
    look = dict(which=lambda _n: None, is_file=lambda p: p in present, registry=lambda: None)
    assert find_vboxmanage("Windows", env, **look) == r"E:\Apps\Oracle VM VirtualBox\VBoxManage.exe"
    present.discard(r"E:\Apps\Oracle VM VirtualBox\VBoxManage.exe")
    assert find_vboxmanage("Windows", env, **look) == r"F:\VBox\VBoxManage.exe"
    present.discard(r"F:\VBox\VBoxManage.exe")
    assert find_vboxmanage("Windows", env, **look) == PF
    present.clear()
    present.add(r"G:\Virtual Box\VBoxManage.exe")
    look["registry"] = lambda: r"G:\Virtual Box" + "\\"
    assert find_vboxmanage("Windows", env, **look) == r"G:\Virtual Box\VBoxManage.exe"
    look["registry"] = lambda: None
    assert find_vboxmanage("Windows", env, **look) is None


def test_find_windows_install_path_with_several_folders() -> None:
    env = {"VBOX_INSTALL_PATH": r"C:\Old;C:\Program Files\VBox 7"}
    present = {r"C:\Program Files\VBox 7\VBoxManage.exe"}
    found = find_vboxmanage(
        "Windows", env, which=lambda _n: None, is_file=lambda p: p in present,
        registry=lambda: None,
    )  # fmt: skip
    assert found == r"C:\Program Files\VBox 7\VBoxManage.exe"


def test_find_macos_app_bundle() -> None:
    bundle = "/Applications/VirtualBox.app/Contents/MacOS/VBoxManage"
    assert find_vboxmanage("Darwin", {}, lambda _n: None, lambda p: p == bundle) == bundle


@pytest.mark.parametrize(
    ("recording", "expect"),
    [
        ("startvm-vtx-disabled.stderr", "VT-x is disabled"),
        ("startvm-hyperv.stderr", "Hyper-V"),
        ("startvm-amdv-disabled.stderr", "AMD-V"),
        ("vbox-log-no-vmx.txt", "Hyper-V"),
    ],
)
def test_diagnose_recordings(recording: str, expect: str) -> None:
    diag = diagnose(rec(recording))
    assert diag is not None and expect in diag.message
    assert diag.hint


def test_diagnose_plain_no_vmx_points_at_hyperv_and_bios() -> None:
    diag = diagnose("VBoxManage: error: VT-x is not available (VERR_VMX_NO_VMX)")
    assert diag is not None
    assert "Hyper-V" in diag.hint and "BIOS" in diag.hint
    assert diagnose("VBoxManage: error: something else entirely") is None
