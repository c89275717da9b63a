"""Boot the locally built Debian image with our seed ISO under plain QEMU (TCG) and log in.

Proves the guest side of the design end to end: the image boots by direct kernel boot,
cloud-init reads the ``cidata`` ISO, the ``docker`` user gets the machine's key and
passwordless sudo, sshd presents exactly the host key the app generated (pinned with
RejectPolicy), and password and root logins are refused. Holds ``/tmp/toolbox-vm.lock``
while the VM runs, since other tests boot VMs on this small machine too.
"""

from __future__ import annotations

import base64
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import paramiko
import pytest
from filelock import FileLock

from toolbox.guest.images import CachedImage
from toolbox.guest.seed import SeedConfig, write_seed_iso
from toolbox.ssh.keys import HostKey, UserKey, generate_host_key, generate_user_key

pytestmark = [pytest.mark.vm, pytest.mark.timeout(2400)]

VM_LOCK = "/tmp/toolbox-vm.lock"
HOSTNAME = "tbx-guest-test"
BANNER_TIMEOUT = 600.0  # measured 40-90 s under TCG; generous for a busy machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def console_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no console output)"


def wait_for_banner(port: int, proc: subprocess.Popen[bytes], console: Path) -> bytes:
    """Wait for sshd's ``SSH-2.0-`` line. QEMU's forward accepts TCP before the guest
    listens (and then closes), so an open port proves nothing; the banner does."""
    deadline = time.monotonic() + BANNER_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"QEMU exited ({proc.returncode}):\n{console_tail(console)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                conn.settimeout(10)
                data = conn.recv(256)
                if data.startswith(b"SSH-2.0-"):
                    return data.strip()
        except OSError:
            pass
        time.sleep(1)  # polling interval of a bounded wait, not synchronisation
    pytest.fail(f"No SSH banner in {BANNER_TIMEOUT:g} s:\n{console_tail(console)}")


def host_key_object(line: str) -> paramiko.PKey:
    key_type, blob = line.split()[:2]
    return paramiko.PKey.from_type_string(key_type, base64.b64decode(blob))


@dataclass
class Guest:
    port: int
    user_key: UserKey
    host_key: HostKey
    console: Path
    proc: subprocess.Popen[bytes]
    banner: bytes
    boot_seconds: float

    def client(self, host_key_line: str | None = None, user: str = "docker") -> paramiko.SSHClient:
        """A paramiko client that trusts only ``host_key_line`` (default: the pinned key)."""
        client = paramiko.SSHClient()
        key = host_key_object(host_key_line or self.host_key.public_line)
        client.get_host_keys().add(f"[127.0.0.1]:{self.port}", key.get_name(), key)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect(
            "127.0.0.1",
            port=self.port,
            username=user,
            key_filename=str(self.user_key.private_path),
            look_for_keys=False,
            allow_agent=False,
            timeout=30,
            banner_timeout=60,
            auth_timeout=60,
        )
        return client


def run(client: paramiko.SSHClient, command: str) -> str:
    """Run ``command`` in the guest, assert it succeeded, return its stdout."""
    _, stdout, stderr = client.exec_command(command, timeout=120)
    code = stdout.channel.recv_exit_status()
    out, err = stdout.read().decode(), stderr.read().decode()
    assert code == 0, f"{command!r} exited {code}: {err or out}"
    return out


def wait_for_cloud_init(guest: Guest, timeout: float = 300.0) -> None:
    """Log in and wait for cloud-init's last stage. The first login may still race an
    sshd restart by cloud-init's config stage, so failures to connect are retried."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            client = guest.client()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            last = exc
            time.sleep(2)  # polling interval of a bounded wait
            continue
        try:
            assert "done" in run(client, "cloud-init status --wait")
            return
        finally:
            client.close()
    pytest.fail(f"No SSH login in {timeout:g} s ({last}):\n{console_tail(guest.console)}")


@pytest.fixture(scope="module")
def guest(guest_image: CachedImage, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guest]:
    if guest_image.arch != "amd64":
        pytest.skip("this test boots x86-64 guests only")
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None or shutil.which("qemu-img") is None:
        pytest.skip("needs qemu-system-x86 and qemu-utils")
    assert guest_image.kernel and guest_image.initrd and guest_image.cmdline
    work = tmp_path_factory.mktemp("guest-vm")
    user_key = generate_user_key(work / "id_ed25519")
    host_key = generate_host_key()
    seed = write_seed_iso(
        work / "seed.iso",
        SeedConfig(
            "tbx-guest-test-1",
            HOSTNAME,
            "docker",
            user_key.public_line,
            host_key.private_openssh,
            host_key.public_line,
        ),
    )
    overlay = work / "disk.qcow2"
    subprocess.run(
        [
            "qemu-img",
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            str(guest_image.path),
            "-F",
            "qcow2",
            str(overlay),
            "10G",
        ],
        check=True,
    )
    port = free_port()
    console = work / "console.log"
    argv = [
        qemu,
        "-accel",
        "tcg",
        "-m",
        "1024",
        "-smp",
        "1",
        "-display",
        "none",
        "-monitor",
        "none",
        "-no-reboot",
        "-serial",
        f"file:{console}",
        "-kernel",
        str(guest_image.kernel),
        "-initrd",
        str(guest_image.initrd),
        "-append",
        guest_image.cmdline,
        "-drive",
        f"file={overlay},if=virtio,format=qcow2",
        "-cdrom",
        str(seed),
        "-netdev",
        f"user,id=net0,hostfwd=tcp:127.0.0.1:{port}-:22",
        "-device",
        "virtio-net-pci,netdev=net0",
    ]
    with FileLock(VM_LOCK, timeout=1800):
        log = open(work / "qemu.log", "wb")  # noqa: SIM115 - owned by the process
        started = time.monotonic()
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        try:
            banner = wait_for_banner(port, proc, console)
            elapsed = time.monotonic() - started
            booted = Guest(port, user_key, host_key, console, proc, banner, elapsed)
            wait_for_cloud_init(booted)
            ready = time.monotonic() - started
            print(
                f"\nTCG boot: SSH banner after {elapsed:.1f} s, cloud-init done after {ready:.1f} s"
            )
            yield booted
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)


def test_guest_boots_to_the_ssh_banner(
    guest: Guest, record_property: Callable[[str, object], None]
) -> None:
    record_property("boot_to_banner_seconds", round(guest.boot_seconds, 1))
    assert guest.banner.startswith(b"SSH-2.0-OpenSSH_")


def test_login_as_docker_with_the_pinned_host_key(guest: Guest) -> None:
    client = guest.client()
    try:
        run(client, "sudo -n true")
        assert run(client, "hostname").strip() == HOSTNAME
        user, groups = run(client, "id -un; id -nG").splitlines()
        assert user == "docker" and "sudo" in groups.split()
        # Only the host key we generated: none made by the image or by cloud-init.
        assert run(client, "ls /etc/ssh/ | grep ssh_host_").split() == [
            "ssh_host_ed25519_key",
            "ssh_host_ed25519_key.pub",
        ]
        served = run(client, "sudo -n cat /etc/ssh/ssh_host_ed25519_key.pub").split()[:2]
        assert served == guest.host_key.public_line.split()[:2]
        settings = set(run(client, "sudo -n sshd -T").splitlines())
        assert {
            "passwordauthentication no",
            "permitrootlogin no",
            "kbdinteractiveauthentication no",
        } <= settings
        assert "done" in run(client, "cloud-init status")
    finally:
        client.close()


def test_the_image_is_configured_as_the_recipe_says(guest: Guest) -> None:
    client = guest.client()
    try:
        masked = run(client, "systemctl is-enabled apt-daily.timer fstrim.timer || true")
        assert masked.split() == ["masked", "masked"]
        assert "nameserver 10.0.2.3" in run(client, "cat /etc/resolv.conf")
        assert "10.0.2.15" in run(client, "ip -4 addr show")  # DHCP from QEMU's user net
        size = run(client, "df --output=size -B1G / | tail -1")
        assert int(size.strip()) >= 9  # cloud-init grew the 6G file system to the 10G disk
    finally:
        client.close()


def test_another_host_key_is_rejected(guest: Guest) -> None:
    impostor = generate_host_key()
    with pytest.raises(paramiko.BadHostKeyException):
        guest.client(host_key_line=impostor.public_line).close()


def test_password_and_root_logins_are_refused(guest: Guest) -> None:
    with socket.create_connection(("127.0.0.1", guest.port), timeout=30) as sock:
        transport = paramiko.Transport(sock)
        try:
            transport.start_client(timeout=60)
            with pytest.raises(paramiko.BadAuthenticationType) as info:
                transport.auth_password("docker", "docker")
            assert info.value.allowed_types == ["publickey"]
        finally:
            transport.close()
    with pytest.raises(paramiko.AuthenticationException):
        guest.client(user="root").close()


def test_guest_powers_off_cleanly(guest: Guest) -> None:
    client = guest.client()
    try:
        client.exec_command("sudo -n systemctl poweroff", timeout=30)
    finally:
        client.close()
    assert guest.proc.wait(120) == 0
