"""Keys made by toolbox.ssh.keys, checked against OpenSSH's own ssh-keygen."""

from __future__ import annotations

import base64
import hashlib
import stat
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from toolbox.errors import SSHError
from toolbox.ssh.client import known_hosts_name
from toolbox.ssh.keys import (
    fingerprint,
    generate_host_key,
    generate_user_key,
    load_user_key,
    parse_public_line,
)


def test_user_key_is_openssh_ed25519_and_private(tmp_path: Path) -> None:
    key = generate_user_key(tmp_path / "keys" / "id_ed25519", comment="toolbox-default")
    data = key.private_path.read_text()
    assert data.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert stat.S_IMODE(key.private_path.stat().st_mode) == 0o600
    assert key.public_line.startswith("ssh-ed25519 ")
    assert key.public_line.endswith(" toolbox-default")
    pub_file = tmp_path / "keys" / "id_ed25519.pub"
    assert pub_file.read_text() == key.public_line + "\n"
    derived = subprocess.run(
        ["ssh-keygen", "-y", "-f", str(key.private_path)], capture_output=True, text=True
    )
    assert derived.returncode == 0, derived.stderr
    assert derived.stdout.split()[:2] == key.public_line.split()[:2]


def test_load_user_key_round_trips(tmp_path: Path) -> None:
    key = generate_user_key(tmp_path / "id")
    assert load_user_key(tmp_path / "id") == key
    (tmp_path / "bad").write_text("not a key")
    with pytest.raises(SSHError):
        load_user_key(tmp_path / "bad")
    with pytest.raises(SSHError):
        load_user_key(tmp_path / "missing")


def test_host_key_is_usable_by_openssh(tmp_path: Path) -> None:
    host = generate_host_key()
    path = tmp_path / "ssh_host_ed25519_key"
    path.write_text(host.private_openssh)
    path.chmod(0o600)
    derived = subprocess.run(["ssh-keygen", "-y", "-f", str(path)], capture_output=True, text=True)
    assert derived.stdout.split()[:2] == host.public_line.split()[:2]
    assert generate_host_key().public_line != host.public_line


def test_fingerprint_matches_ssh_keygen(tmp_path: Path) -> None:
    key = generate_user_key(tmp_path / "id")
    listed = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(tmp_path / "id.pub")],
        capture_output=True,
        text=True,
    )
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split()[1] == fingerprint(key.public_line)


@given(st.binary(min_size=1, max_size=300), st.sampled_from(["", " comment", " a b c"]))
def test_fingerprint_is_sha256_of_the_blob(blob: bytes, comment: str) -> None:
    line = "ssh-ed25519 " + base64.b64encode(blob).decode() + comment
    expected = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    assert fingerprint(line) == "SHA256:" + expected
    assert parse_public_line(line) == ("ssh-ed25519", blob)


@pytest.mark.parametrize("line", ["", "ssh-ed25519", "ssh-ed25519 !!!notbase64", "ssh-ed25519 é"])
def test_bad_public_lines_are_refused(line: str) -> None:
    with pytest.raises(SSHError):
        fingerprint(line)


@given(st.integers(min_value=1, max_value=65535))
def test_known_hosts_name(port: int) -> None:
    name = known_hosts_name("127.0.0.1", port)
    assert name == ("127.0.0.1" if port == 22 else f"[127.0.0.1]:{port}")
