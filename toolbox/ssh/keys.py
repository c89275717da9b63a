"""SSH keys the app generates: the machine's user key and the guest's host key (both ed25519).

The host key is made here and handed to the guest through cloud-init, so it is known before
the first connection and can be pinned; nothing is ever learned "on first use".
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from toolbox.errors import SSHError
from toolbox.tls import write_private

KEY_TYPE = "ssh-ed25519"


@dataclass(frozen=True)
class UserKey:
    """The machine's login key: a 0600 OpenSSH private key file and its public line."""

    private_path: Path
    public_line: str  # "ssh-ed25519 AAAA... comment"


@dataclass(frozen=True)
class HostKey:
    """A guest SSH host key, kept in memory until it is written into the seed."""

    private_openssh: str  # "-----BEGIN OPENSSH PRIVATE KEY-----..."
    public_line: str  # "ssh-ed25519 AAAA... comment"


def _public_line(key: ed25519.Ed25519PrivateKey, comment: str) -> str:
    blob = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    line = blob.decode("ascii")
    return f"{line} {comment}" if comment else line


def _private_openssh(key: ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )


def generate_user_key(path: Path, comment: str = "toolbox") -> UserKey:
    """Write a new ed25519 key to ``path`` (OpenSSH format, 0600) and ``path.pub`` beside it."""
    key = ed25519.Ed25519PrivateKey.generate()
    write_private(path, _private_openssh(key))
    public = _public_line(key, comment)
    path.with_name(path.name + ".pub").write_text(public + "\n", encoding="ascii")
    return UserKey(path, public)


def load_user_key(path: Path) -> UserKey:
    """Read a key written by ``generate_user_key``; the public line comes from the private key."""
    try:
        key = serialization.load_ssh_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise SSHError(
            f"Cannot read the SSH key {path}: {exc}",
            hint="The machine's key is missing or damaged; recreate the machine.",
        ) from exc
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise SSHError(
            f"The SSH key {path} is not an ed25519 key",
            hint="Recreate the machine so Toolbox generates its own key.",
        )
    comment = ""
    pub = path.with_name(path.name + ".pub")
    if pub.exists():
        parts = pub.read_text(encoding="ascii", errors="replace").split(maxsplit=2)
        comment = parts[2].strip() if len(parts) == 3 else ""
    return UserKey(path, _public_line(key, comment))


def generate_host_key(comment: str = "toolbox-guest") -> HostKey:
    """A new ed25519 host key for a guest, as cloud-init's ``ssh_keys`` wants it."""
    key = ed25519.Ed25519PrivateKey.generate()
    return HostKey(_private_openssh(key).decode("ascii"), _public_line(key, comment))


def parse_public_line(public_line: str) -> tuple[str, bytes]:
    """Split ``"TYPE BASE64 [comment]"`` into the key type and the decoded key blob."""
    parts = public_line.strip().split()
    if len(parts) < 2:
        raise SSHError(
            f"Not an SSH public key line: {public_line[:60]!r}",
            hint="Expected 'ssh-ed25519 AAAA...'; recreate the machine if its key file is damaged.",
        )
    try:
        blob = base64.b64decode(parts[1].encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise SSHError(
            f"Not an SSH public key line (bad base64): {public_line[:60]!r}",
            hint="Recreate the machine if its key file is damaged.",
        ) from exc
    return parts[0], blob


def fingerprint(public_line: str) -> str:
    """OpenSSH's SHA256 fingerprint of a public key line, e.g. ``SHA256:uNi...`` (no padding)."""
    _, blob = parse_public_line(public_line)
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii")
    return "SHA256:" + digest.rstrip("=")
