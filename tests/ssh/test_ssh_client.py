"""GuestSSH, wait_for_banner and the system-ssh argv against a real sshd on loopback."""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ssh.conftest import LocalSSHD
from toolbox.errors import Cancelled, CommandError, HostKeyMismatch, SSHError
from toolbox.ssh.client import GuestSSH, interactive_argv, wait_for_banner, write_known_hosts
from toolbox.ssh.keys import fingerprint, generate_host_key, generate_user_key


@pytest.fixture
def ssh(sshd: LocalSSHD) -> Iterator[GuestSSH]:
    client = GuestSSH(
        sshd.host, sshd.port, sshd.user, sshd.user_key.private_path, sshd.host_key.public_line
    )
    with client:
        yield client


class _Listener:
    """A TCP listener on loopback that accepts and then stays silent (or hangs up at once)."""

    def __init__(self, hang_up: bool):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.hang_up = hang_up
        self.accepted = 0
        self.held: list[socket.socket] = []
        self.relay_to: tuple[str, int] | None = None
        self.relay_after = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            if self.relay_to is not None and self.accepted > self.relay_after:
                with conn, socket.create_connection(self.relay_to, timeout=5) as upstream:
                    conn.sendall(upstream.recv(256))
            elif self.hang_up:
                conn.close()
            else:
                self.held.append(conn)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        self.sock.close()
        for conn in self.held:
            conn.close()


# -- banner ---------------------------------------------------------------------------------


def test_banner_of_a_real_sshd(sshd: LocalSSHD) -> None:
    banner = wait_for_banner(sshd.host, sshd.port, timeout=10)
    assert banner.startswith("SSH-2.0-OpenSSH_")


@pytest.mark.parametrize("hang_up", [False, True], ids=["silent", "hangs-up"])
def test_a_listener_without_banner_times_out_pointing_at_the_console_log(
    tmp_path: Path, hang_up: bool
) -> None:
    listener = _Listener(hang_up)
    console = tmp_path / "console.log"
    try:
        started = time.monotonic()
        with pytest.raises(SSHError) as info:
            wait_for_banner("127.0.0.1", listener.port, timeout=1.5, console_log=console)
        elapsed = time.monotonic() - started
    finally:
        listener.close()
    assert listener.accepted >= 1
    assert 1.4 <= elapsed < 6
    assert str(console) in (info.value.hint or "")
    assert "no banner" in info.value.message or "without a banner" in info.value.message


def test_a_closed_port_times_out_too() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connections are refused
        with pytest.raises(SSHError) as info:
            wait_for_banner("127.0.0.1", port, timeout=1.0)
    assert "console log" in (info.value.hint or "")


def test_banner_wait_retries_until_the_server_appears(sshd: LocalSSHD) -> None:
    """A banner that shows up only after a few hang-ups is still found (backoff, not give-up)."""
    listener = _Listener(hang_up=True)
    listener.relay_after = 3  # the fourth connection gets the real sshd's banner
    listener.relay_to = (sshd.host, sshd.port)
    try:
        banner = wait_for_banner("127.0.0.1", listener.port, timeout=20)
    finally:
        listener.close()
    assert banner.startswith("SSH-2.0-OpenSSH_")
    assert listener.accepted == 4


def test_banner_wait_can_be_cancelled() -> None:
    listener = _Listener(hang_up=True)
    cancel = threading.Event()
    timer = threading.Timer(0.3, cancel.set)
    timer.start()
    started = time.monotonic()
    try:
        with pytest.raises(Cancelled):
            wait_for_banner("127.0.0.1", listener.port, timeout=30, cancel=cancel)
    finally:
        listener.close()
        timer.cancel()
    assert time.monotonic() - started < 5


# -- connect and host key pinning ------------------------------------------------------------


def test_connect_with_the_pinned_key_and_run(ssh: GuestSSH) -> None:
    result = ssh.run("echo out; echo err >&2; exit 3", check=False)
    assert result.exit_code == 3
    assert result.stdout == "out\n"
    assert result.stderr == "err\n"
    assert not result.ok
    assert result.argv[-1] == "echo out; echo err >&2; exit 3"
    ok = ssh.run("id -un")
    assert ok.ok and ok.stdout.strip() == ssh.user


def test_check_raises_command_error_with_the_output(ssh: GuestSSH) -> None:
    with pytest.raises(CommandError) as info:
        ssh.run("echo boom >&2; exit 7", hint="do the thing")
    assert info.value.returncode == 7
    assert info.value.hint == "do the thing"
    assert "boom" in str(info.value)


def test_a_changed_host_key_is_refused_naming_both_fingerprints(sshd: LocalSSHD) -> None:
    other = generate_host_key()
    client = GuestSSH(
        sshd.host,
        sshd.port,
        sshd.user,
        sshd.user_key.private_path,
        other.public_line,
        machine="default",
    )
    with pytest.raises(HostKeyMismatch) as info:
        client.connect(timeout=10)
    message = info.value.message
    assert fingerprint(other.public_line) in message
    assert fingerprint(sshd.host_key.public_line) in message
    hint = info.value.hint or ""
    assert "regenerate-certs` does not fix this" in hint
    assert "toolbox rm default" in hint
    assert not client.connected


def test_a_key_the_server_does_not_know_is_refused(sshd: LocalSSHD, tmp_path: Path) -> None:
    stranger = generate_user_key(tmp_path / "stranger")
    client = GuestSSH(
        sshd.host, sshd.port, sshd.user, stranger.private_path, sshd.host_key.public_line
    )
    with pytest.raises(SSHError) as info:
        client.connect(timeout=10)
    assert "refused the machine's SSH key" in info.value.message
    assert not isinstance(info.value, HostKeyMismatch)


def test_no_ssh_server_is_a_clear_error(tmp_path: Path, sshd: LocalSSHD) -> None:
    listener = _Listener(hang_up=True)
    client = GuestSSH(
        "127.0.0.1", listener.port, sshd.user, sshd.user_key.private_path, sshd.host_key.public_line
    )
    try:
        started = time.monotonic()
        with pytest.raises(SSHError):
            client.connect(timeout=2)
        assert time.monotonic() - started < 10
    finally:
        listener.close()


def test_running_without_a_connection_says_so(sshd: LocalSSHD) -> None:
    client = GuestSSH(
        sshd.host, sshd.port, sshd.user, sshd.user_key.private_path, sshd.host_key.public_line
    )
    with pytest.raises(SSHError, match="Not connected"):
        client.run("true")
    client.connect(timeout=10)
    client.close()
    with pytest.raises(SSHError, match="Not connected"):
        client.run("true")


# -- run: streaming, timeouts ----------------------------------------------------------------


def test_on_output_streams_lines_while_the_command_runs(ssh: GuestSSH, tmp_path: Path) -> None:
    """The command waits for a file that only the callback creates: buffered output would hang."""
    flag = tmp_path / "flag"
    seen: list[str] = []

    def on_line(line: str) -> None:
        seen.append(line)
        if line == "ready":
            flag.touch()

    script = (
        f"echo ready; i=0; while [ ! -e {flag} ] && [ $i -lt 200 ]; do "
        "sleep 0.05; i=$((i+1)); done; "
        f"[ -e {flag} ] && echo saw-flag; printf 'a\\rb\\n'; echo warn >&2; printf tail"
    )
    result = ssh.run(script, timeout=30, on_output=on_line)
    assert "saw-flag" in result.stdout
    assert seen[:2] == ["ready", "saw-flag"]
    assert {"a", "b", "warn", "tail"} <= set(seen)
    assert result.stdout.endswith("tail")


def test_a_command_over_its_timeout_is_stopped(ssh: GuestSSH) -> None:
    started = time.monotonic()
    with pytest.raises(CommandError) as info:
        ssh.run("echo begun; sleep 30", timeout=1.0)
    assert time.monotonic() - started < 6
    assert info.value.returncode is None
    assert "timed out" in info.value.message
    assert "begun" in info.value.stdout
    # The connection is still usable afterwards.
    assert ssh.run("echo again").stdout == "again\n"


def test_run_can_be_cancelled(ssh: GuestSSH) -> None:
    cancel = threading.Event()
    timer = threading.Timer(0.3, cancel.set)
    timer.start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        ssh.run("sleep 30", timeout=60, cancel=cancel)
    timer.cancel()
    assert time.monotonic() - started < 6


def test_large_output_is_read_whole(ssh: GuestSSH) -> None:
    result = ssh.run("head -c 3000000 /dev/zero | tr '\\0' x; echo")
    assert len(result.stdout) == 3_000_001


def test_sudo_wrapping() -> None:
    as_user = GuestSSH("h", 1, "docker", Path("k"), "ssh-ed25519 AAAA")
    assert as_user.sudo_wrap("echo 'a b' > /x") == "sudo -n sh -c 'echo '\"'\"'a b'\"'\"' > /x'"
    as_root = GuestSSH("h", 1, "root", Path("k"), "ssh-ed25519 AAAA")
    assert as_root.sudo_wrap("id -u") == "id -u"


def test_sudo_run_as_root_runs_as_root(ssh: GuestSSH) -> None:
    assert ssh.run("id -u", sudo=True).stdout.strip() == str(os.getuid())


# -- files ------------------------------------------------------------------------------------


def test_upload_bytes_with_mode(ssh: GuestSSH, tmp_path: Path) -> None:
    folder = tmp_path / "up"
    folder.mkdir()
    target = folder / "plain.txt"
    ssh.upload(b"hello\n", str(target), mode=0o640)
    assert target.read_bytes() == b"hello\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    ssh.upload(b"replaced\n", str(target), mode=0o600)
    assert target.read_bytes() == b"replaced\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in folder.iterdir()) == ["plain.txt"]  # no temp file left


def test_upload_a_local_file(ssh: GuestSSH, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    target = tmp_path / "copy.bin"
    ssh.upload(source, str(target))
    assert (
        hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(source.read_bytes()).digest()
    )


def test_upload_with_sudo_into_a_root_only_folder(ssh: GuestSSH, tmp_path: Path) -> None:
    private = tmp_path / "root-only"
    private.mkdir(mode=0o700)
    target = private / "nested" / "server-key.pem"
    before = set(Path("/tmp").glob("toolbox-upload.*"))
    ssh.upload(b"secret\n", str(target), mode=0o600, sudo=True)
    assert target.read_bytes() == b"secret\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.stat().st_uid == 0
    assert set(Path("/tmp").glob("toolbox-upload.*")) == before  # the staging folder is gone


def test_upload_into_a_missing_folder_without_sudo_fails_clearly(
    ssh: GuestSSH, tmp_path: Path
) -> None:
    with pytest.raises(SSHError) as info:
        ssh.upload(b"x", str(tmp_path / "missing" / "file"))
    assert "Uploading to" in info.value.message


def test_read_text(ssh: GuestSSH, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("content\n")
    assert ssh.read_text(str(tmp_path / "f")) == "content\n"
    assert ssh.read_text(str(tmp_path / "nope")) is None


# -- the system ssh for `toolbox ssh` ----------------------------------------------------------


def test_interactive_argv_is_exact(tmp_path: Path) -> None:
    argv = interactive_argv(
        "/usr/bin/ssh", "127.0.0.1", 2222, "docker", tmp_path / "id", tmp_path / "known_hosts"
    )
    assert argv == [
        "/usr/bin/ssh",
        "-F", "none",
        "-i", str(tmp_path / "id"),
        "-p", "2222",
        "-o", "IdentitiesOnly=yes",
        "-o", f"UserKnownHostsFile={tmp_path / 'known_hosts'}",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "UpdateHostKeys=no",
        "-o", "PasswordAuthentication=no",
        "-o", "LogLevel=ERROR",
        "docker@127.0.0.1",
    ]  # fmt: skip
    with_command = interactive_argv(
        "ssh", "127.0.0.1", 2222, "docker", tmp_path / "id", tmp_path / "kh", "uname -a"
    )
    assert with_command[-3:] == ["docker@127.0.0.1", "--", "uname -a"]


def test_known_hosts_format(tmp_path: Path) -> None:
    key = generate_host_key()
    path = tmp_path / "m" / "known_hosts"
    write_known_hosts(path, "127.0.0.1", 2222, key.public_line)
    blob = key.public_line.split()[1]
    assert path.read_text() == f"[127.0.0.1]:2222 ssh-ed25519 {blob}\n"
    write_known_hosts(path, "localhost", 22, key.public_line)
    assert path.read_text() == f"localhost ssh-ed25519 {blob}\n"
    found = subprocess.run(
        ["ssh-keygen", "-F", "localhost", "-f", str(path)], capture_output=True, text=True
    )
    assert found.returncode == 0 and blob in found.stdout


def _ssh_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["HOME"] = str(home)
    env.pop("SSH_AUTH_SOCK", None)
    return env


def test_system_ssh_with_the_argv_logs_in_and_leaves_home_alone(
    sshd: LocalSSHD, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    known = tmp_path / "machine" / "known_hosts"
    write_known_hosts(known, sshd.host, sshd.port, sshd.host_key.public_line)
    argv = interactive_argv(
        "ssh",
        sshd.host,
        sshd.port,
        sshd.user,
        sshd.user_key.private_path,
        known,
        "echo hi $((6*7))",
    )
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=30,
        env=_ssh_env(home),
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "hi 42\n"
    assert list(home.iterdir()) == []  # no ~/.ssh created, nothing learned
    assert known.read_text().count("\n") == 1


def test_system_ssh_refuses_a_changed_host_key(sshd: LocalSSHD, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    write_known_hosts(known, sshd.host, sshd.port, generate_host_key().public_line)
    argv = interactive_argv(
        "ssh", sshd.host, sshd.port, sshd.user, sshd.user_key.private_path, known, "true"
    )
    home = tmp_path / "home"
    home.mkdir()
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=30,
        env=_ssh_env(home),
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 255
    assert "Host key verification failed" in proc.stderr
