"""A host folder mounted in the guest over the machine's SSH connection (reverse SFTP).

The guest runs ``sshfs -o passive`` in the foreground on an exec channel: it speaks SFTP on
its stdin and stdout, which the agent connects to an SFTP server on the host, OpenSSH's
``sftp-server`` (read-only shares run it with ``-R``, so the host refuses writes as well as
the guest mount). The SFTP server runs as the host user, so a file a container writes
appears on the host owned by that user. Works with every hypervisor and needs no listener
on either side.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
import subprocess
import threading
from pathlib import Path

import paramiko

from toolbox.machine.model import Share

log = logging.getLogger(__name__)

CHUNK = 256 * 1024
SFTP_SERVER_CANDIDATES = (
    "/usr/lib/openssh/sftp-server",  # Debian, Ubuntu
    "/usr/libexec/openssh/sftp-server",  # Fedora, RHEL
    "/usr/lib/ssh/sftp-server",  # Arch
    "/usr/libexec/sftp-server",  # macOS
    r"C:\Windows\System32\OpenSSH\sftp-server.exe",  # Windows with the OpenSSH server feature
)
# Attribute and name caches of one second: a file changed on the host is seen in the
# guest within about a second, without remounting.
SSHFS_OPTIONS = "passive,allow_other,attr_timeout=1,entry_timeout=1,negative_timeout=1"


def find_sftp_server() -> str | None:
    for candidate in SFTP_SERVER_CANDIDATES:
        if Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("sftp-server")


def sshfs_command(share: Share) -> str:
    options = SSHFS_OPTIONS + (",ro" if share.readonly else "")
    guest = shlex.quote(share.guest_path)
    host = shlex.quote(":" + share.host_path)
    # A mount left by an sshfs that was killed answers "Transport endpoint is not connected":
    # lazily unmount whatever is there first.
    return (
        f"sudo umount -l {guest} 2>/dev/null; "
        f"sudo mkdir -p {guest} && exec sudo sshfs -f -o {options} {host} {guest}"
    )


class ShareMount:
    """One share: ``start()`` mounts (the channel stays open for the mount's life),
    ``alive`` tells whether it still is, ``stop()`` unmounts."""

    def __init__(self, share: Share, sftp_server: str):
        self.share = share
        self.sftp_server = sftp_server
        self._chan: paramiko.Channel | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: list[str] = []
        self._ended = threading.Event()

    def start(self, transport: paramiko.Transport) -> None:
        argv = [self.sftp_server, "-e"] + (["-R"] if self.share.readonly else [])
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            bufsize=0,
        )
        chan = transport.open_session(timeout=15.0)
        chan.exec_command(sshfs_command(self.share))
        self._chan = chan
        proc = self._proc
        threading.Thread(target=self._guest_to_host, args=(chan, proc), daemon=True).start()
        threading.Thread(target=self._host_to_guest, args=(chan, proc), daemon=True).start()
        threading.Thread(target=self._stderr_reader, args=(chan,), daemon=True).start()

    def _guest_to_host(self, chan: paramiko.Channel, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdin is not None
        try:
            while True:
                data = chan.recv(CHUNK)
                if not data:
                    break
                proc.stdin.write(data)
        except (OSError, EOFError, paramiko.SSHException):
            pass
        finally:
            with contextlib.suppress(OSError):
                proc.stdin.close()
            self._ended.set()

    def _host_to_guest(self, chan: paramiko.Channel, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        try:
            while True:
                data = proc.stdout.read(CHUNK)
                if not data:
                    break
                chan.sendall(data)
        except (OSError, EOFError, paramiko.SSHException):
            pass
        finally:
            with contextlib.suppress(Exception):
                chan.shutdown_write()

    def _stderr_reader(self, chan: paramiko.Channel) -> None:
        buf = b""
        try:
            while True:
                data = chan.recv_stderr(4096)
                if not data:
                    break
                buf += data
        except (OSError, EOFError, paramiko.SSHException):
            pass
        text = buf.decode("utf-8", "replace").strip()
        if text:
            self._stderr.append(text)

    @property
    def alive(self) -> bool:
        chan = self._chan
        return chan is not None and not chan.closed and not self._ended.is_set()

    @property
    def error(self) -> str:
        """What the guest said when the mount ended (sshfs's own message)."""
        text = " ".join(self._stderr).strip()
        return text or "the mount ended"

    def stop(self, transport: paramiko.Transport | None) -> None:
        """Unmount in the guest (when it can still be asked), then end both sides."""
        if transport is not None and transport.is_active() and self.alive:
            with contextlib.suppress(Exception):
                chan = transport.open_session(timeout=10.0)
                guest = shlex.quote(self.share.guest_path)
                chan.exec_command(f"sudo fusermount3 -u {guest} || sudo umount -l {guest}")
                chan.recv_exit_status()
                chan.close()
        if self._chan is not None:
            with contextlib.suppress(Exception):
                self._chan.close()
        if self._proc is not None:
            with contextlib.suppress(OSError):
                self._proc.kill()
            with contextlib.suppress(Exception):
                self._proc.wait(timeout=2)
