"""Provisioning a real QEMU guest end to end: engine install (docker.io fallback, since Docker's
repository is unreachable here), TLS, the systemd drop-in, readiness, re-provision, new certs.

Boots the locally built Debian image (the ``guest_image`` fixture) with a cloud-init seed under
TCG, holding ``/tmp/toolbox-vm.lock`` while the VM runs. Takes several minutes: the engine
install dominates. Timings are printed and recorded as test properties.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import docker
import pytest
import requests
from filelock import FileLock

from tests.harness import busybox_tar, free_port
from toolbox.drivers.base import Forward, VMSpec
from toolbox.drivers.qemu import QemuDriver
from toolbox.errors import HostKeyMismatch, SSHError
from toolbox.guest.build import recipe
from toolbox.guest.seed import SeedConfig, write_seed_iso
from toolbox.progress import Progress
from toolbox.provision import ProvisionContext, provision, regenerate_certs
from toolbox.provision.engine import DROPIN_PATH, EngineSource
from toolbox.ssh.client import GuestSSH, wait_for_banner
from toolbox.ssh.keys import generate_host_key, generate_user_key

pytestmark = pytest.mark.vm

VM_LOCK = "/tmp/toolbox-vm.lock"
MACHINE = "provtest"
BOOT_TIMEOUT = 600.0


@dataclass
class Guest:
    ctx: ProvisionContext
    ssh: GuestSSH
    machine_dir: Path
    engine_port: int
    console_log: Path
    workdir: Path
    timings: dict[str, float] = field(default_factory=dict)
    events: list[Progress] = field(default_factory=list)


def _connect(ssh: GuestSSH, timeout: float) -> None:
    """Log in, retrying while cloud-init may still be placing the user's key."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            ssh.connect(timeout=30)
            return
        except HostKeyMismatch:
            raise
        except SSHError:
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


@pytest.fixture(scope="module")
def guest(guest_image, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guest]:
    driver = QemuDriver()
    if not driver.availability().usable:
        pytest.skip("QEMU is not installed")
    base = tmp_path_factory.mktemp("provision-vm")
    machine_dir = base / "machine"
    machine_dir.mkdir()
    user_key = generate_user_key(machine_dir / "id_ed25519")
    host_key = generate_host_key()
    seed = write_seed_iso(
        machine_dir / "seed.iso",
        SeedConfig(
            instance_id=f"{MACHINE}-{int(time.time())}",
            hostname=MACHINE,
            user="docker",
            authorized_key=user_key.public_line,
            host_key_private=host_key.private_openssh,
            host_key_public=host_key.public_line,
        ),
    )
    ssh_port, engine_port = free_port(), free_port()
    console_log = base / "console.log"
    spec = VMSpec(
        name=MACHINE,
        directory=machine_dir,
        cpus=2,
        memory_mib=2048,
        disk_gib=8,
        image=guest_image.boot_image(),
        seed_iso=seed,
        forwards=(Forward("ssh", 22, ssh_port), Forward("engine", 2376, engine_port)),
        console_log=console_log,
    )
    ssh = GuestSSH("127.0.0.1", ssh_port, "docker", user_key.private_path, host_key.public_line)
    events: list[Progress] = []
    ctx = ProvisionContext(
        MACHINE,
        ssh,
        machine_dir,
        base / "certs",
        engine_host_port=engine_port,
        progress=events.append,
    )
    lock = FileLock(VM_LOCK)
    lock.acquire(timeout=3600)
    try:
        driver.create(spec)
        started = time.monotonic()
        driver.start(spec)
        wait_for_banner("127.0.0.1", ssh_port, BOOT_TIMEOUT, console_log=console_log)
        _connect(ssh, 180)
        g = Guest(ctx, ssh, machine_dir, engine_port, console_log, base, events=events)
        g.timings["boot_to_ssh_s"] = time.monotonic() - started
        yield g
    finally:
        ssh.close()
        try:
            driver.kill(spec)
        finally:
            driver.remove(spec)
            lock.release()
            shutil.rmtree(base / "certs", ignore_errors=True)


def _tls_api(cert_dir: Path, port: int, client_cert: bool = True) -> docker.APIClient:
    """An independent docker-py client over TLS (not the app's engine layer)."""
    ca = str(cert_dir / "ca.pem")
    tls = docker.tls.TLSConfig(
        client_cert=(str(cert_dir / "cert.pem"), str(cert_dir / "key.pem"))
        if client_cert
        else None,
        ca_cert=ca,
        verify=ca,
    )
    api = docker.APIClient(
        base_url=f"https://127.0.0.1:{port}", tls=tls, version="1.41", timeout=120
    )
    # REQUESTS_CA_BUNDLE is set on this machine and would replace our CA for every request.
    api.trust_env = False
    return api


def _record(guest: Guest, record_property, name: str, seconds: float) -> None:
    guest.timings[name] = seconds
    record_property(name, round(seconds, 2))
    print(f"\n[timing] {name}: {seconds:.1f} s")


def test_first_provision_installs_and_secures_the_engine(guest: Guest, record_property) -> None:
    print(f"\n[timing] boot_to_ssh_s: {guest.timings['boot_to_ssh_s']:.1f} s")
    started = time.monotonic()
    report = provision(guest.ctx)
    _record(guest, record_property, "first_provision_s", time.monotonic() - started)
    steps = {s.name: s for s in report.steps}
    assert [s.name for s in report.steps] == [
        "hostname",
        "clock",
        "engine",
        "shares",
        "tls",
        "dropin",
        "service",
        "ready",
    ]
    _record(guest, record_property, "engine_install_s", steps["engine"].seconds)
    # The guest_image fixture bakes the engine in (the install step finds it and is skipped);
    # on a stock cloud image the step installs it.
    baked = "docker.io" in recipe().packages
    assert steps["engine"].changed is not baked
    assert steps["shares"].changed is not baked  # sshfs is baked with the engine
    for name in ("tls", "dropin", "service"):
        assert steps[name].changed, name
    ssh = guest.ssh
    assert ssh.run("hostname").stdout.strip() == MACHINE
    # Docker's repository is unreachable here, so the distribution's engine is what got in.
    installed = ssh.run("dpkg-query -W -f='${Package} ${Status}\\n' docker.io apparmor").stdout
    assert "docker.io install ok installed" in installed
    assert "apparmor install ok installed" in installed
    dropin = ssh.read_text(DROPIN_PATH) or ""
    assert "ExecStart=\nExecStart=/usr/sbin/dockerd -H fd:// -H tcp://0.0.0.0:2376" in dropin
    assert "--tlsverify" in dropin
    mode = ssh.run("stat -c %a /etc/docker/toolbox/server-key.pem", sudo=True).stdout.strip()
    assert mode == "600"
    for name in ("ca.pem", "cert.pem", "key.pem", "server.pem", "server-key.pem"):
        assert (guest.machine_dir / name).exists(), name
    # apt's own progress came through as real fractions (when it ran).
    engine_reports = [e for e in guest.events if e.step == "provision.engine"]
    fractions = [e.fraction for e in engine_reports if e.fraction is not None]
    if not baked:
        assert any("unreachable; using docker.io" in e.message for e in engine_reports)
        assert any(e.message.startswith("Installing docker.io: ") for e in engine_reports)
        assert len({round(f, 2) for f in fractions}) > 10
    assert fractions == sorted(fractions)  # a bar that never goes back


def test_engine_answers_over_tls_and_runs_a_container(guest: Guest) -> None:
    api = _tls_api(guest.machine_dir, guest.engine_port)
    try:
        assert api.ping()
        assert api.version()["Os"] == "linux"
        # No registry is reachable from the guest: import a busybox made on the host.
        tar = busybox_tar(guest.workdir / "busybox.tar")
        api.import_image(src=str(tar), repository="busybox", tag="latest")
        container = api.create_container("busybox:latest", ["echo", "hello-from-the-guest"])
        api.start(container)
        assert api.wait(container, timeout=120)["StatusCode"] == 0
        assert api.logs(container) == b"hello-from-the-guest\n"
        api.remove_container(container)
    finally:
        api.close()


def _raw_ping(cert_dir: Path, port: int, client_cert: bool) -> bytes:
    """GET /_ping over TLS by hand; with TLS 1.3 a refused client cert shows on the read."""
    ctx = ssl.create_default_context(cafile=str(cert_dir / "ca.pem"))
    if client_cert:
        ctx.load_cert_chain(cert_dir / "cert.pem", cert_dir / "key.pem")
    with (
        socket.create_connection(("127.0.0.1", port), timeout=30) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as conn,
    ):
        conn.sendall(b"GET /_ping HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := conn.recv(4096):
            data += chunk
        return data


def test_a_client_without_the_client_certificate_is_refused(guest: Guest) -> None:
    assert _raw_ping(guest.machine_dir, guest.engine_port, client_cert=True).endswith(b"OK")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _raw_ping(guest.machine_dir, guest.engine_port, client_cert=False)
    api = _tls_api(guest.machine_dir, guest.engine_port, client_cert=False)
    try:
        with pytest.raises(requests.exceptions.SSLError, match="certificate"):
            api.version()
    finally:
        api.close()


def test_second_provision_changes_nothing(guest: Guest, record_property) -> None:
    started = time.monotonic()
    report = provision(guest.ctx)
    _record(guest, record_property, "reprovision_s", time.monotonic() - started)
    assert report.changed_steps == ()
    assert [s.name for s in report.steps][-1] == "ready"


def test_asking_for_docker_io_again_is_still_a_no_op(guest: Guest) -> None:
    ctx = ProvisionContext(
        MACHINE,
        guest.ssh,
        guest.machine_dir,
        guest.ctx.ca_dir,
        engine_host_port=guest.engine_port,
        engine_source=EngineSource.DISTRO,
    )
    assert not provision(ctx).changed


def test_regenerate_certs_and_the_engine_answers_with_the_new_ones(
    guest: Guest, record_property
) -> None:
    old_client = (guest.machine_dir / "cert.pem").read_bytes()
    old_server = (guest.machine_dir / "server.pem").read_bytes()
    started = time.monotonic()
    report = regenerate_certs(guest.ctx)
    _record(guest, record_property, "regenerate_certs_s", time.monotonic() - started)
    assert [s.name for s in report.steps] == ["tls", "service", "ready"]
    assert report.changed_steps[:2] == ("tls", "service")
    assert (guest.machine_dir / "cert.pem").read_bytes() != old_client
    assert (guest.machine_dir / "server.pem").read_bytes() != old_server
    served = guest.ssh.read_text("/etc/docker/toolbox/server.pem", sudo=True)
    assert served == (guest.machine_dir / "server.pem").read_text()
    api = _tls_api(guest.machine_dir, guest.engine_port)
    try:
        assert api.ping()
        # The server now presents the new certificate.
        pem = ssl.get_server_certificate(("127.0.0.1", guest.engine_port), timeout=30)
        assert ssl.PEM_cert_to_DER_cert(pem) == ssl.PEM_cert_to_DER_cert(
            (guest.machine_dir / "server.pem").read_text()
        )
    finally:
        api.close()
    assert not provision(guest.ctx).changed
