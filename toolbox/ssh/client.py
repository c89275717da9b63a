"""SSH to a guest with paramiko, trusting only the host key the app generated for it.

The guest's host key is made by the app and handed to the guest through cloud-init, so the
client pins it: ``RejectPolicy``, no system known_hosts, no agent, no ``~/.ssh`` at all. The
system ``ssh`` used by ``toolbox ssh`` gets the same pinning through a per-machine known_hosts.
"""

from __future__ import annotations

import codecs
import os
import secrets
import select
import shlex
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, BinaryIO

import paramiko

from toolbox.errors import Cancelled, CommandError, HostKeyMismatch, SSHError
from toolbox.process import CommandResult
from toolbox.ssh.keys import fingerprint, parse_public_line

BANNER_PREFIX = b"SSH-"
DEFAULT_COMMAND_TIMEOUT = 600.0
_READ_CHUNK = 32768


def known_hosts_name(host: str, port: int) -> str:
    """The name OpenSSH and paramiko file a host key under: ``host`` or ``[host]:port``."""
    return host if port == 22 else f"[{host}]:{port}"


def _console_hint(console_log: Path | None) -> str:
    if console_log is not None:
        return (
            f"The guest did not start its SSH server; read its console log at {console_log} "
            "to see where the boot stopped."
        )
    return "The guest did not start its SSH server; check that the VM booted (its console log)."


def _read_banner(host: str, port: int, timeout: float) -> tuple[str | None, str]:
    """One attempt: connect and read the server's identification line.

    Returns ``(banner, "")`` on success or ``(None, what happened)``.
    """
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        return None, f"connect: {exc.strerror or exc}"
    with sock:
        sock.settimeout(timeout)
        data = b""
        try:
            # RFC 4253 lets a server send other lines before its identification line.
            while len(data) < 8192:
                chunk = sock.recv(1024)
                if not chunk:
                    return None, "the connection was accepted, then closed without a banner"
                data += chunk
                for line in data.split(b"\n")[:-1]:
                    if line.startswith(BANNER_PREFIX):
                        return line.rstrip(b"\r").decode("ascii", "replace"), ""
        except TimeoutError:
            return None, "the connection was accepted but no banner came"
        except OSError as exc:
            return None, f"read: {exc.strerror or exc}"
    return None, "no SSH banner in the first 8 KiB"


def wait_for_banner(
    host: str,
    port: int,
    timeout: float,
    console_log: Path | None = None,
    cancel: threading.Event | None = None,
) -> str:
    """Wait until ``host:port`` sends an ``SSH-2.0-`` banner; return the banner line.

    An open port is not enough: QEMU's user-mode forward accepts TCP before the guest listens.
    Retries back off from 0.25 s to 2 s; the whole wait is bounded by ``timeout``.
    """
    deadline = time.monotonic() + timeout
    delay = 0.25
    last = "no attempt made"
    while True:
        if cancel is not None and cancel.is_set():
            raise Cancelled("Cancelled while waiting for SSH")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        banner, last = _read_banner(host, port, max(0.1, min(remaining, 10.0)))
        if banner is not None:
            return banner
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        pause = min(delay, remaining)
        if cancel is not None:
            if cancel.wait(pause):
                raise Cancelled("Cancelled while waiting for SSH")
        else:
            time.sleep(pause)
        delay = min(delay * 2, 2.0)
    raise SSHError(
        f"No SSH banner from {host}:{port} after {timeout:g} s ({last})",
        hint=_console_hint(console_log),
    )


class _Lines:
    """Turns a byte stream into text lines for an ``on_output`` callback, and keeps the text."""

    def __init__(self, on_line: Callable[[str], None] | None):
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._on_line = on_line
        self._pending = ""
        self.parts: list[str] = []

    def feed(self, data: bytes, final: bool = False) -> None:
        text = self._decoder.decode(data, final)
        self.parts.append(text)
        if self._on_line is None:
            return
        text = self._pending + text
        # apt and friends redraw progress with \r; each redraw is a line of its own here.
        rows = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        self._pending = rows.pop()
        for row in rows:
            self._on_line(row)
        if final and self._pending:
            self._on_line(self._pending)
            self._pending = ""

    @property
    def text(self) -> str:
        return "".join(self.parts)


class GuestSSH:
    """One SSH connection to a guest; the host key must equal ``host_key_line`` or nothing runs.

    Use as a context manager (connects on enter, closes on exit) or call ``connect``/``close``.
    """

    def __init__(
        self,
        host: str,
        port: int,
        user: str,
        key_path: Path,
        host_key_line: str,
        *,
        machine: str | None = None,
    ):
        self.host = host
        self.port = port
        self.user = user
        self.key_path = Path(key_path)
        self.host_key_line = host_key_line
        self.machine = machine
        self._client: paramiko.SSHClient | None = None

    # -- connection -------------------------------------------------------------------------

    @property
    def target(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"

    @property
    def connected(self) -> bool:
        transport = self._client.get_transport() if self._client else None
        return bool(transport and transport.is_active())

    def _pinned_key(self) -> paramiko.PKey:
        key_type, blob = parse_public_line(self.host_key_line)
        try:
            return paramiko.PKey.from_type_string(key_type, blob)
        except (paramiko.SSHException, ValueError) as exc:
            raise SSHError(
                f"The pinned host key for {self.host}:{self.port} cannot be used: {exc}",
                hint="Recreate the machine so Toolbox generates a new host key for it.",
            ) from exc

    def _user_key(self) -> paramiko.PKey:
        try:
            return paramiko.PKey.from_path(self.key_path)
        except (OSError, paramiko.SSHException, ValueError) as exc:
            raise SSHError(
                f"Cannot read the SSH key {self.key_path}: {exc}",
                hint="The machine's key is missing or damaged; recreate the machine.",
            ) from exc

    def _mismatch(self, got: paramiko.PKey) -> HostKeyMismatch:
        expected = fingerprint(self.host_key_line)
        seen = fingerprint(f"{got.get_name()} {got.get_base64()}")
        who = f"machine '{self.machine}'" if self.machine else f"{self.host}:{self.port}"
        recreate = (
            f"`toolbox rm {self.machine}` then create it again"
            if self.machine
            else "remove and create the machine again"
        )
        return HostKeyMismatch(
            f"The SSH host key of {who} changed: expected {expected}, got {seen}; "
            "refusing to connect",
            hint=(
                "`toolbox regenerate-certs` does not fix this (it only reissues TLS certificates). "
                f"If another VM or program answers on port {self.port}, stop it; if this machine's "
                f"disk was replaced, {recreate} (that makes a new pinned key)."
            ),
        )

    def connect(self, timeout: float = 30.0) -> GuestSSH:
        """Open the connection (idempotent). Only the pinned host key is accepted."""
        if self.connected:
            return self
        self.close()
        pinned = self._pinned_key()
        pkey = self._user_key()
        client = paramiko.SSHClient()
        # The pinned key is the only known host key; anything else is rejected.
        client.get_host_keys().add(
            known_hosts_name(self.host, self.port), pinned.get_name(), pinned
        )
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(
                self.host,
                port=self.port,
                username=self.user,
                pkey=pkey,
                allow_agent=False,
                look_for_keys=False,
                timeout=timeout,
                banner_timeout=timeout,
                auth_timeout=timeout,
                channel_timeout=timeout,
            )
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise self._mismatch(exc.key) from exc
        except paramiko.AuthenticationException as exc:
            client.close()
            raise SSHError(
                f"The guest at {self.host}:{self.port} refused the machine's SSH key for user "
                f"'{self.user}'",
                hint="The guest may still be applying its cloud-init seed; wait a moment. If it "
                "persists, the machine's key was replaced: recreate the machine.",
            ) from exc
        except (paramiko.SSHException, OSError, EOFError) as exc:
            client.close()
            raise SSHError(
                f"Cannot open SSH to {self.host}:{self.port}: {exc or type(exc).__name__}",
                hint="Check that the machine runs (`toolbox status`) and read its console log.",
            ) from exc
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(30)
        self._client = client
        return self

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> GuestSSH:
        return self.connect()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _transport(self) -> paramiko.Transport:
        transport = self._client.get_transport() if self._client else None
        if transport is None or not transport.is_active():
            raise SSHError(
                f"Not connected to {self.target}",
                hint="Connect first; if the connection dropped, check the machine is running.",
            )
        return transport

    def transport(self) -> paramiko.Transport:
        """The live transport, for channels of one's own (forwards, mounts); raises
        ``SSHError`` when not connected."""
        return self._transport()

    # -- commands -----------------------------------------------------------------------------

    def sudo_wrap(self, command: str) -> str:
        """``command`` run as root: through ``sudo -n`` unless we already log in as root."""
        if self.user == "root":
            return command
        return "sudo -n sh -c " + shlex.quote(command)

    def argv_of(self, command: str) -> tuple[str, ...]:
        """How a remote command is shown in results and errors."""
        return ("ssh", f"{self.user}@{self.host}", "-p", str(self.port), command)

    def run(
        self,
        command: str,
        timeout: float = DEFAULT_COMMAND_TIMEOUT,
        check: bool = True,
        on_output: Callable[[str], None] | None = None,
        sudo: bool = False,
        *,
        hint: str | None = None,
        cancel: threading.Event | None = None,
    ) -> CommandResult:
        """Run a shell command in the guest and wait for it (at most ``timeout`` seconds).

        stdout and stderr are kept apart in the result; ``on_output`` receives every line of
        both as it arrives. ``check`` raises ``CommandError`` on a non-zero exit.
        """
        remote = self.sudo_wrap(command) if sudo else command
        argv = self.argv_of(remote)
        transport = self._transport()
        try:
            chan = transport.open_session(timeout=min(timeout, 30.0))
            chan.exec_command(remote)
            chan.shutdown_write()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SSHError(
                f"Cannot start a command over SSH on {self.target}: {exc}",
                hint="The connection may have dropped; check the machine is running.",
            ) from exc
        out, err = _Lines(on_output), _Lines(on_output)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if cancel is not None and cancel.is_set():
                    raise Cancelled(f"Cancelled: {command}")
                while chan.recv_ready():
                    out.feed(chan.recv(_READ_CHUNK))
                while chan.recv_stderr_ready():
                    err.feed(chan.recv_stderr(_READ_CHUNK))
                # OpenSSH may send the exit status before the last output: the end is EOF.
                if (chan.eof_received or chan.closed) and not (
                    chan.recv_ready() or chan.recv_stderr_ready()
                ):
                    break
                if not transport.is_active():
                    raise SSHError(
                        f"The SSH connection to {self.target} dropped while running: {command}",
                        hint="The guest may have rebooted or stopped; check `toolbox status`.",
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    out.feed(b"", final=True)
                    err.feed(b"", final=True)
                    raise CommandError(
                        argv,
                        None,
                        out.text,
                        err.text,
                        hint=hint or "The command took too long; the guest may be overloaded.",
                        message=f"Command timed out after {timeout:g} s over SSH",
                    )
                select.select([chan], [], [], min(remaining, 0.5))
            # The status follows EOF; a command killed by a signal closes without one: -1.
            while not (chan.status_event.is_set() or chan.closed):
                if not transport.is_active() or time.monotonic() > deadline:
                    break
                chan.status_event.wait(0.1)
            code = chan.exit_status if chan.status_event.is_set() else -1
        finally:
            chan.close()
        out.feed(b"", final=True)
        err.feed(b"", final=True)
        result = CommandResult(argv, code, out.text, err.text)
        if check:
            result.check(hint)
        return result

    def read_text(self, path: str, sudo: bool = False) -> str | None:
        """The text of a guest file, or None when it does not exist."""
        quoted = shlex.quote(path)
        result = self.run(
            f"if [ -e {quoted} ]; then cat {quoted}; else exit 3; fi", 60, False, sudo=sudo
        )
        if result.exit_code == 3:
            return None
        result.check()
        return result.stdout

    # -- files --------------------------------------------------------------------------------

    def upload(
        self,
        data: bytes | Path,
        remote_path: str,
        mode: int = 0o644,
        sudo: bool = False,
        *,
        owner: str = "root",
    ) -> None:
        """Write ``data`` (bytes, or a local file) to ``remote_path`` with ``mode``.

        The file appears whole or not at all. With ``sudo`` it is uploaded into a private
        temporary folder, then put in place by ``sudo install -D -m MODE`` owned by ``owner``.
        """
        transport = self._transport()
        try:
            sftp = paramiko.SFTPClient.from_transport(transport)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SSHError(
                f"Cannot open SFTP on {self.target}: {exc}",
                hint="The guest's SSH server must offer the sftp subsystem.",
            ) from exc
        if sftp is None:
            raise SSHError(f"Cannot open SFTP on {self.target}", hint="Reconnect and retry.")
        try:
            if sudo:
                self._upload_sudo(sftp, data, remote_path, mode, owner)
            else:
                tmp = f"{remote_path}.toolbox-{secrets.token_hex(4)}"
                try:
                    _put(sftp, data, tmp, mode)
                    sftp.posix_rename(tmp, remote_path)
                except BaseException:
                    try:
                        sftp.remove(tmp)
                    except OSError:
                        pass
                    raise
        except OSError as exc:
            raise SSHError(
                f"Uploading to {remote_path} on {self.target} failed: {exc}",
                hint="Check that the folder exists and is writable (or upload with sudo).",
            ) from exc
        finally:
            sftp.close()

    def _upload_sudo(
        self, sftp: paramiko.SFTPClient, data: bytes | Path, remote_path: str, mode: int, owner: str
    ) -> None:
        # mktemp -d makes a 0700 folder, so a private key is never readable in transit.
        folder = self.run("mktemp -d /tmp/toolbox-upload.XXXXXXXX", 30).stdout.strip()
        try:
            staged = f"{folder}/file"
            _put(sftp, data, staged, 0o600)
            self.run(
                f"install -D -m {mode:o} -o {shlex.quote(owner)} -g {shlex.quote(owner)} "
                f"{shlex.quote(staged)} {shlex.quote(remote_path)}",
                60,
                sudo=True,
                hint="The guest user needs passwordless sudo (the seed grants it).",
            )
        finally:
            self.run(f"rm -rf {shlex.quote(folder)}", 30, check=False)


def _put(sftp: paramiko.SFTPClient, data: bytes | Path, remote: str, mode: int) -> None:
    """Create ``remote`` with ``mode`` before any byte is written, then fill it."""
    with sftp.open(remote, "wb") as fh:
        sftp.chmod(remote, mode)
        fh.set_pipelined(True)
        if isinstance(data, bytes):
            fh.write(data)
        else:
            with open(data, "rb") as src:
                _copy(src, fh)


def _copy(src: BinaryIO, dst: IO[bytes]) -> None:
    while chunk := src.read(1 << 20):
        dst.write(chunk)


def write_known_hosts(path: Path, host: str, port: int, public_line: str) -> None:
    """Write an OpenSSH known_hosts file that trusts exactly one key for ``host:port``."""
    key_type, _ = parse_public_line(public_line)
    blob = public_line.split()[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{known_hosts_name(host, port)} {key_type} {blob}\n", encoding="ascii")
    os.replace(tmp, path)


def interactive_argv(
    ssh_binary: str,
    host: str,
    port: int,
    user: str,
    key_path: Path,
    known_hosts_path: Path,
    command: str | None = None,
) -> list[str]:
    """The system ``ssh`` command line for ``toolbox ssh``.

    ``-F none`` keeps the user's ``~/.ssh/config`` out; the machine's own known_hosts with
    ``StrictHostKeyChecking=yes`` pins the host key; ``UpdateHostKeys=no`` keeps ssh from
    writing to it; ``IdentitiesOnly=yes`` offers only the machine key (no agent keys).
    """
    argv = [
        ssh_binary,
        "-F", "none",
        "-i", str(key_path),
        "-p", str(port),
        "-o", "IdentitiesOnly=yes",
        "-o", f"UserKnownHostsFile={known_hosts_path}",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "UpdateHostKeys=no",
        "-o", "PasswordAuthentication=no",
        "-o", "LogLevel=ERROR",
        f"{user}@{host}",
    ]  # fmt: skip
    if command is not None:
        argv += ["--", command]
    return argv
