"""The cloud-init NoCloud seed: an ISO 9660 image labelled ``cidata`` holding ``user-data``
and ``meta-data``, written in pure Python with pycdlib (no genisoimage, so it works on macOS
and Windows).

The user-data makes the ``docker`` user (the machine's key, passwordless sudo), installs the
app-generated ed25519 host key and generates no other, turns password and root login off,
and installs a boot unit that grows the root file system when the disk has grown. It is
written as JSON, which is valid YAML, so no value can break the document.
"""

from __future__ import annotations

import io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pycdlib

from toolbox.errors import ValidationError

VOLUME_LABEL = "cidata"
SSHD_DROP_IN = "/etc/ssh/sshd_config.d/10-toolbox.conf"
SSHD_CONFIG = (
    "# Written by Toolbox through cloud-init: key login only, never as root, and only the\n"
    "# host key Toolbox generated and pinned.\n"
    "PermitRootLogin no\n"
    "PasswordAuthentication no\n"
    "KbdInteractiveAuthentication no\n"
    "HostKey /etc/ssh/ssh_host_ed25519_key\n"
)

# The root filesystem follows the disk: ``toolbox set --disk`` grows a stopped machine's disk,
# and cloud-init, whose growpart and resizefs modules did this on the first boot, is turned
# off after it (guestops.seal). So a small unit does it at every boot, for the Debian cloud
# image (root on partition 1: growpart, from cloud-guest-utils, grows it first) and the local
# build (ext4 on the whole disk: resize2fs alone) alike. With nothing to grow it takes
# milliseconds. Only POSIX sh and util-linux/e2fsprogs tools that both images have.
GROWROOT_SCRIPT = "/usr/local/sbin/toolbox-growroot"
GROWROOT_UNIT = "toolbox-growroot.service"
GROWROOT_SH = """#!/bin/sh
# Written by Toolbox through cloud-init: grow the root partition and file system to fill
# the disk (it grows with `toolbox set NAME --disk SIZE`). Runs at every boot.
set -u
majmin=$(mountpoint -d /) || exit 0
sys=/sys/dev/block/$majmin
[ -e "$sys" ] || exit 0
dev=/dev/$(basename "$(readlink -f "$sys")")
if [ -e "$sys/partition" ]; then
    disk=/dev/$(basename "$(readlink -f "$sys/..")")
    if command -v growpart >/dev/null 2>&1; then
        # Exit code 1 with NOCHANGE: the partition fills the disk already.
        growpart "$disk" "$(cat "$sys/partition")" || true
    else
        echo "toolbox-growroot: no growpart; $dev is not grown" >&2
    fi
fi
case "$(findmnt -n -o FSTYPE /)" in
    ext2 | ext3 | ext4) exec resize2fs "$dev" ;;
    xfs) exec xfs_growfs / ;;
    *) echo "toolbox-growroot: cannot grow the file system of $dev" >&2 ;;
esac
"""
GROWROOT_SERVICE = f"""[Unit]
Description=Grow the root file system to fill the disk (Toolbox)
After=local-fs.target

[Service]
Type=oneshot
ExecStart={GROWROOT_SCRIPT}

[Install]
WantedBy=multi-user.target
"""

_HOSTNAME_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_USER_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_INSTANCE_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")


@dataclass(frozen=True)
class SeedConfig:
    """What the guest learns on first boot."""

    instance_id: str  # a new value makes cloud-init run its per-instance modules again
    hostname: str
    user: str  # "docker"
    authorized_key: str  # the machine's user key, "ssh-ed25519 AAAA... comment"
    host_key_private: str  # the guest's host key, OpenSSH PEM
    host_key_public: str  # "ssh-ed25519 AAAA... comment"

    def validate(self) -> SeedConfig:
        """Return self, or raise ValidationError naming the bad field."""
        if not _INSTANCE_RE.fullmatch(self.instance_id):
            raise ValidationError("instance_id", f"Invalid instance id: {self.instance_id!r}")
        if not _HOSTNAME_RE.fullmatch(self.hostname):
            raise ValidationError(
                "hostname",
                f"Invalid host name: {self.hostname!r}",
                hint="Use lower-case letters, digits and '-' (at most 63 characters).",
            )
        if not _USER_RE.fullmatch(self.user):
            raise ValidationError("user", f"Invalid user name: {self.user!r}")
        if not re.fullmatch(r"ssh-[a-z0-9-]+ [A-Za-z0-9+/=]+( [^\r\n]*)?", self.authorized_key):
            raise ValidationError(
                "authorized_key", "The authorized key is not a single OpenSSH public key line"
            )
        if not self.host_key_private.startswith("-----BEGIN OPENSSH PRIVATE KEY-----"):
            raise ValidationError("host_key_private", "The host key is not an OpenSSH private key")
        if not re.fullmatch(r"ssh-ed25519 [A-Za-z0-9+/=]+( [^\r\n]*)?", self.host_key_public):
            raise ValidationError("host_key_public", "The host key is not an ed25519 public key")
        return self


def user_data_dict(config: SeedConfig) -> dict[str, Any]:
    """The ``#cloud-config`` document as a dict (what ``user_data`` serialises)."""
    return {
        "hostname": config.hostname,
        "fqdn": config.hostname,
        "preserve_hostname": False,
        "manage_etc_hosts": True,
        "users": [
            {
                "name": config.user,
                "gecos": "Toolbox",
                "groups": ["sudo"],
                "shell": "/bin/bash",
                "sudo": "ALL=(ALL) NOPASSWD:ALL",
                "lock_passwd": True,
                "ssh_authorized_keys": [config.authorized_key.strip()],
            }
        ],
        "disable_root": True,
        "ssh_pwauth": False,
        # Replace any host keys the image has with ours. Given ssh_keys, cloud-init
        # generates no others (and its schema rejects an empty ssh_genkeytypes).
        "ssh_deletekeys": True,
        "ssh_keys": {
            "ed25519_private": config.host_key_private.strip() + "\n",
            "ed25519_public": config.host_key_public.strip(),
        },
        "ssh_publish_hostkeys": {"enabled": False},
        "write_files": [
            {
                "path": SSHD_DROP_IN,
                "content": SSHD_CONFIG,
                "permissions": "0644",
                "owner": "root:root",
            },
            {
                "path": GROWROOT_SCRIPT,
                "content": GROWROOT_SH,
                "permissions": "0755",
                "owner": "root:root",
            },
            {
                "path": f"/etc/systemd/system/{GROWROOT_UNIT}",
                "content": GROWROOT_SERVICE,
                "permissions": "0644",
                "owner": "root:root",
            },
        ],
        # Enabled once, on the first boot (cloud-init grows the disk itself on that one);
        # it runs at every later boot, with cloud-init off.
        "runcmd": [["systemctl", "enable", GROWROOT_UNIT]],
        "package_update": False,
        "package_upgrade": False,
    }


def user_data(config: SeedConfig) -> str:
    """The ``user-data`` file: ``#cloud-config`` followed by JSON (a subset of YAML)."""
    config.validate()
    return "#cloud-config\n" + json.dumps(user_data_dict(config), indent=2) + "\n"


def meta_data(config: SeedConfig) -> str:
    """The ``meta-data`` file."""
    config.validate()
    body = {"instance-id": config.instance_id, "local-hostname": config.hostname}
    return json.dumps(body, indent=2) + "\n"


def write_seed_iso(path: Path, config: SeedConfig) -> Path:
    """Write the NoCloud seed ISO to ``path`` (atomically; readable by the owner only,
    since it holds the guest's private host key)."""
    files = {"user-data": user_data(config), "meta-data": meta_data(config)}
    iso = pycdlib.PyCdlib()
    # Rock Ridge and Joliet carry the real lower-case names; ISO 9660 level 1 needs 8.3.
    iso.new(interchange_level=3, vol_ident=VOLUME_LABEL, joliet=3, rock_ridge="1.09")
    for name, text in files.items():
        data = text.encode("utf-8")
        iso_name = name.replace("-", "").upper()[:8] + ".;1"
        iso.add_fp(
            io.BytesIO(data),
            len(data),
            f"/{iso_name}",
            rr_name=name,
            joliet_path=f"/{name}",
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            iso.write_fp(fh)
    finally:
        iso.close()
    os.replace(tmp, path)
    if os.name == "posix":
        path.chmod(0o600)
    return path
