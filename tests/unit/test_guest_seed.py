"""The NoCloud seed ISO, written with pycdlib and read back: label, names, contents."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pycdlib
import pytest
import yaml

from toolbox.errors import ValidationError
from toolbox.guest.seed import (
    GROWROOT_SCRIPT,
    GROWROOT_SERVICE,
    GROWROOT_SH,
    GROWROOT_UNIT,
    SSHD_DROP_IN,
    SeedConfig,
    user_data,
    write_seed_iso,
)
from toolbox.ssh.keys import generate_host_key, generate_user_key


@pytest.fixture
def config(tmp_path: Path) -> SeedConfig:
    user = generate_user_key(tmp_path / "id_ed25519")
    host = generate_host_key()
    return SeedConfig(
        instance_id="toolbox-default-1",
        hostname="default",
        user="docker",
        authorized_key=user.public_line,
        host_key_private=host.private_openssh,
        host_key_public=host.public_line,
    )


def read_iso(path: Path) -> tuple[pycdlib.PyCdlib, dict[str, str]]:
    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    files = {}
    for name in ("user-data", "meta-data"):
        out = io.BytesIO()
        iso.get_file_from_iso_fp(out, rr_path=f"/{name}")
        files[name] = out.getvalue().decode("utf-8")
        joliet = io.BytesIO()
        iso.get_file_from_iso_fp(joliet, joliet_path=f"/{name}")
        assert joliet.getvalue() == out.getvalue()
    return iso, files


def test_seed_iso_has_label_names_and_contents(tmp_path: Path, config: SeedConfig) -> None:
    path = write_seed_iso(tmp_path / "seed.iso", config)
    assert path.stat().st_mode & 0o777 == 0o600  # it holds the guest's private host key
    iso, files = read_iso(path)
    try:
        assert iso.pvd.volume_identifier.decode().strip() == "cidata"
        names = sorted(
            child.rock_ridge.name().decode()
            for child in iso.list_children(rr_path="/")
            if child.rock_ridge is not None and not child.is_dot() and not child.is_dotdot()
        )
        assert names == ["meta-data", "user-data"]
    finally:
        iso.close()

    assert files["user-data"].startswith("#cloud-config\n")
    cfg = yaml.safe_load(files["user-data"])  # the parser cloud-init uses
    assert cfg == json.loads(files["user-data"].split("\n", 1)[1])
    assert cfg["hostname"] == "default"
    assert cfg["ssh_pwauth"] is False
    assert cfg["disable_root"] is True
    [user] = cfg["users"]
    assert user["name"] == "docker"
    assert user["groups"] == ["sudo"]
    assert user["sudo"] == "ALL=(ALL) NOPASSWD:ALL"
    assert user["lock_passwd"] is True
    assert user["ssh_authorized_keys"] == [config.authorized_key]
    assert cfg["ssh_keys"] == {
        "ed25519_private": config.host_key_private.strip() + "\n",
        "ed25519_public": config.host_key_public,
    }
    assert "ssh_genkeytypes" not in cfg  # given ssh_keys, cloud-init generates none
    assert cfg["ssh_deletekeys"] is True
    drop_in, script, unit = cfg["write_files"]
    assert drop_in["path"] == SSHD_DROP_IN
    assert (script["path"], script["permissions"]) == (GROWROOT_SCRIPT, "0755")
    assert script["content"] == GROWROOT_SH
    assert (unit["path"], unit["content"]) == (
        f"/etc/systemd/system/{GROWROOT_UNIT}",
        GROWROOT_SERVICE,
    )
    assert f"ExecStart={GROWROOT_SCRIPT}\n" in unit["content"]
    assert "WantedBy=multi-user.target" in unit["content"]
    assert cfg["runcmd"] == [["systemctl", "enable", GROWROOT_UNIT]]
    lines = drop_in["content"].splitlines()
    for wanted in (
        "PermitRootLogin no",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "HostKey /etc/ssh/ssh_host_ed25519_key",
    ):
        assert wanted in lines

    meta = yaml.safe_load(files["meta-data"])
    assert meta == {"instance-id": "toolbox-default-1", "local-hostname": "default"}


@pytest.mark.skipif(shutil.which("blkid") is None, reason="blkid (util-linux) not installed")
def test_linux_sees_the_cidata_label(tmp_path: Path, config: SeedConfig) -> None:
    """What cloud-init's ds-identify looks for: an iso9660 file system labelled cidata."""
    path = write_seed_iso(tmp_path / "seed.iso", config)
    out = subprocess.run(
        ["blkid", "-p", "-o", "export", str(path)], capture_output=True, text=True, check=True
    ).stdout
    fields = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    assert fields["TYPE"] == "iso9660"
    assert fields["LABEL"] == "cidata"


def test_rewriting_a_seed_replaces_it(tmp_path: Path, config: SeedConfig) -> None:
    path = tmp_path / "seed.iso"
    write_seed_iso(path, config)
    write_seed_iso(path, replace(config, hostname="other", instance_id="i-2"))
    iso, files = read_iso(path)
    iso.close()
    assert yaml.safe_load(files["user-data"])["hostname"] == "other"
    assert not (tmp_path / "seed.iso.tmp").exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("hostname", "Bad_Host"),
        ("hostname", "-leading"),
        ("hostname", "a" * 64),
        ("user", "root;rm"),
        ("instance_id", "has space"),
        ("authorized_key", "ssh-ed25519 AAAA\nssh-rsa BBBB"),
        ("host_key_private", "not a key"),
        ("host_key_public", "ssh-rsa AAAA"),
    ],
)
def test_invalid_seed_values_are_refused(config: SeedConfig, field: str, value: str) -> None:
    with pytest.raises(ValidationError) as info:
        user_data(replace(config, **{field: value}))
    assert info.value.field == field


def test_values_cannot_inject_yaml(config: SeedConfig) -> None:
    """A comment with YAML syntax stays a plain string inside the document."""
    key = config.authorized_key.split(" ")[:2]
    tricky = replace(config, authorized_key=" ".join(key) + ' x"\n ssh_pwauth: true #')
    with pytest.raises(ValidationError):
        user_data(tricky)  # newlines are refused outright
    quoted = replace(config, authorized_key=" ".join(key) + ' me@host "}: ssh_pwauth: true')
    cfg = yaml.safe_load(user_data(quoted))
    assert cfg["ssh_pwauth"] is False
    assert cfg["users"][0]["ssh_authorized_keys"] == [quoted.authorized_key]


# -- the grow-root boot unit's script, run for real by dash over a made-up /sys ---------------


def _growroot(tmp_path: Path, partition: int | None, growpart: bool) -> list[str]:
    """Run GROWROOT_SH with /sys replaced (in a private mount namespace) by a tree where the
    root's ``/sys/dev/block/254:N`` links to the virtio disk ``vda`` or its partition N, and
    with mountpoint, findmnt, growpart and resize2fs replaced by stubs that log their
    arguments (nothing real is touched). Returns the logged calls and stderr lines."""
    sysfs = tmp_path / "sys"
    disk = sysfs / "devices" / "pci0000:00" / "virtio1" / "block" / "vda"
    root = disk
    if partition is not None:
        root = disk / f"vda{partition}"
        root.mkdir(parents=True)
        (root / "partition").write_text(f"{partition}\n")
    disk.mkdir(parents=True, exist_ok=True)
    majmin = f"254:{partition or 0}"
    (sysfs / "dev" / "block").mkdir(parents=True)
    (sysfs / "dev" / "block" / majmin).symlink_to(root)
    stubs = tmp_path / "bin"
    stubs.mkdir()
    log = tmp_path / "calls.log"
    tools = {"mountpoint": f"echo {majmin}", "findmnt": "echo ext4", "resize2fs": ""}
    if growpart:
        tools["growpart"] = "echo NOCHANGE; exit 1"
    for tool, body in tools.items():
        stub = stubs / tool
        stub.write_text(f'#!/bin/sh\necho "{tool} $*" >> {log}\n{body}\n')
        stub.chmod(0o755)
    script = tmp_path / "toolbox-growroot"
    script.write_text(GROWROOT_SH)
    inner = f"mount --bind {sysfs} /sys && PATH={stubs}:/usr/bin:/bin exec dash {script}"
    proc = subprocess.run(["unshare", "-m", "sh", "-c", inner], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return log.read_text().splitlines() + proc.stderr.splitlines()


def _can_unshare() -> bool:
    if shutil.which("unshare") is None or shutil.which("dash") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount --bind /tmp /mnt"], capture_output=True
    )
    return probe.returncode == 0


needs_unshare = pytest.mark.skipif(
    not _can_unshare(), reason="needs root for a private mount namespace (unshare -m) and dash"
)


@needs_unshare
def test_growroot_grows_the_partition_then_the_file_system(tmp_path: Path) -> None:
    # The Debian cloud image: root on /dev/vda1.
    calls = _growroot(tmp_path, 1, growpart=True)
    assert calls == [
        "mountpoint -d /",
        "growpart /dev/vda 1",
        "findmnt -n -o FSTYPE /",
        "resize2fs /dev/vda1",
    ]


@needs_unshare
def test_growroot_on_a_whole_disk_file_system_only_resizes_it(tmp_path: Path) -> None:
    # The locally built image: ext4 on the whole of /dev/vda, no partition table.
    calls = _growroot(tmp_path, None, growpart=True)
    assert calls == ["mountpoint -d /", "findmnt -n -o FSTYPE /", "resize2fs /dev/vda"]


@needs_unshare
def test_growroot_without_growpart_says_so_and_still_resizes(tmp_path: Path) -> None:
    calls = _growroot(tmp_path, 1, growpart=False)
    assert calls == [
        "mountpoint -d /",
        "findmnt -n -o FSTYPE /",
        "resize2fs /dev/vda1",
        "toolbox-growroot: no growpart; /dev/vda1 is not grown",  # stderr
    ]
