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
from toolbox.guest.seed import SSHD_DROP_IN, SeedConfig, user_data, write_seed_iso
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
    [drop_in] = cfg["write_files"]
    assert drop_in["path"] == SSHD_DROP_IN
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
