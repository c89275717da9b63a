"""End to end: one real machine under QEMU (TCG here), driven through the ``toolbox`` CLI.

The locally built guest image (the ``guest_image`` fixture) is registered in this test's
fresh TOOLBOX_HOME. ``toolbox create --keep-on-failure`` runs as a subprocess and gets a real
SIGINT once the guest has booted; ``toolbox create`` again continues from the recorded phase
and provisions the engine. Then: docker-py over TLS, a container that prints (busybox
``docker import``ed through the TLS connection: no registry is reachable from the guest), the
real ``docker`` CLI from ``toolbox env`` output and from the machine's context, a client
without the client certificate refused, a changed SSH host key refused (paramiko and
OpenSSH), only loopback listeners for QEMU, re-provisioning changing nothing, ``toolbox set``
refused while running and, once stopped, giving the guest 1 CPU, less memory and a bigger
disk that its root filesystem grows into at the next boot, stop/start with a taken SSH port
re-chosen, a killed hypervisor reported Stopped and started again with everything still
there, new certificates, and ``rm`` leaving no process and no file behind.

Every wait is bounded; the whole test holds ``/tmp/toolbox-vm.lock`` because other tests
boot VMs on this small machine too. Stage times are printed (run with ``-s`` to see them).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import requests
from filelock import FileLock

from tests.harness import free_port, import_busybox, register_image_copy, wait_until
from toolbox import cli, dockercontext
from toolbox.errors import EXIT_MACHINE, EXIT_USAGE, HostKeyMismatch
from toolbox.machine.guestops import RealGuestOps
from toolbox.machine.service import MachineService, console_log_path
from toolbox.shellenv import parse_exports
from toolbox.ssh.client import GuestSSH, write_known_hosts
from toolbox.ssh.keys import generate_host_key

pytestmark = [pytest.mark.vm, pytest.mark.timeout(2400)]

NAME = "e2e"
IMAGE = "debian-12-local"
VM_LOCK = "/tmp/toolbox-vm.lock"
VM_LOCK_WAIT = 3600.0
CREATE_BOOT_WAIT = 900.0  # subprocess create until the boot phase is reported done
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def vm_lock() -> Iterator[None]:
    with FileLock(VM_LOCK, timeout=VM_LOCK_WAIT):
        yield


@pytest.fixture
def registered_image(guest_image: Any, toolbox_home: Path, tmp_path: Path) -> str:
    """The locally built image, copied into this test's own image cache."""
    return register_image_copy(guest_image, IMAGE, tmp_path / "image")


def say(text: str) -> None:
    """Print past pytest's capture (``capsys`` takes sys.stdout in this test)."""
    print(text, file=sys.__stdout__, flush=True)


class Stages:
    """Times each stage of the scenario and prints them at the end."""

    def __init__(self) -> None:
        self.times: list[tuple[str, float]] = []

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        say(f"\n== {name}")
        yield
        self.times.append((name, time.monotonic() - start))
        say(f"== {name}: {self.times[-1][1]:.1f} s")

    def summary(self) -> str:
        total = sum(t for _, t in self.times)
        rows = [f"  {name:<58} {sec:7.1f} s" for name, sec in self.times]
        return "\n".join(["stage times:", *rows, f"  {'total':<58} {total:7.1f} s"])


def toolbox(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the CLI in-process, as `toolbox ARGV...` would."""
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    say(f"$ toolbox {' '.join(argv)}  -> {code}\n{out}{err}")
    return code, out, err


def root_size(capsys: pytest.CaptureFixture[str]) -> int:
    """The size of the guest's root filesystem, in bytes."""
    code, out, err = toolbox(capsys, "ssh", NAME, "--", "df -B1 --output=size / | tail -n 1")
    assert code == 0, err
    return int(out.strip())


def docker_cli(env: dict[str, str], *argv: str, check: bool = True) -> str:
    proc = subprocess.run(["docker", *argv], env=env, capture_output=True, text=True, timeout=180)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc.stdout


def tls_client(
    cert_path: Path, url: str, with_client_cert: bool = True, version: str = "auto"
) -> docker.DockerClient:
    """A plain docker-py client verifying the machine's CA (client cert optional)."""
    tls = docker.tls.TLSConfig(
        client_cert=(str(cert_path / "cert.pem"), str(cert_path / "key.pem"))
        if with_client_cert
        else None,
        ca_cert=str(cert_path / "ca.pem"),
        verify=str(cert_path / "ca.pem"),
    )
    return docker.DockerClient(
        base_url=url.replace("tcp://", "https://"), tls=tls, timeout=60, version=version
    )


def qemu_pid(machine_dir: Path) -> int:
    return int((machine_dir / "qemu.pid").read_text().strip())


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    return state != "Z"


def listening_addresses(pid: int) -> list[tuple[str, int]]:
    """TCP sockets the process listens on, from /proc (state 0A = LISTEN)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = []
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] != "0A" or fields[9] not in inodes:
                    continue
                address_hex, port_hex = fields[1].split(":")
                if width == 8:
                    raw = bytes.fromhex(address_hex)[::-1]
                    address = socket.inet_ntop(socket.AF_INET, raw)
                else:
                    words = [bytes.fromhex(address_hex[i : i + 8])[::-1] for i in range(0, 32, 8)]
                    address = socket.inet_ntop(socket.AF_INET6, b"".join(words))
                found.append((address, int(port_hex, 16)))
    return found


def processes_mentioning(text: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if text.encode() in (proc / "cmdline").read_bytes() and pid_alive(int(proc.name)):
                    pids.append(int(proc.name))
    return pids


def test_machine_end_to_end(
    vm_lock: None,
    registered_image: str,
    toolbox_home: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stages = Stages()
    service = MachineService()
    machine_dir = service.store.dir_for(NAME)
    monkeypatch.setenv("SHELL", "/bin/bash")
    for var in ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
        monkeypatch.delenv(var, raising=False)
    qemu_pids: set[int] = set()
    try:
        with stages("create (subprocess), interrupted with SIGINT after the boot phase"):
            proc = subprocess.Popen(
                [sys.executable, "-m", "toolbox", "create", NAME, "--driver", "qemu",
                 "--image", registered_image, "--cpus", "2", "--memory", "2048",
                 "--disk", "10", "--keep-on-failure"],
                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            assert proc.stderr is not None
            seen: list[str] = []
            deadline = time.monotonic() + CREATE_BOOT_WAIT
            try:
                for line in proc.stderr:
                    seen.append(line)
                    say("    " + line.rstrip())
                    if line.startswith("Boot and wait for SSH: done"):
                        proc.send_signal(signal.SIGINT)
                        break
                    assert time.monotonic() < deadline, "boot took too long:\n" + "".join(seen)
                out, err = proc.communicate(timeout=120)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(30)
            qemu_pids.add(qemu_pid(machine_dir))  # the VM keeps running: -daemonize
            assert proc.returncode == 130, "".join(seen) + err
            assert "Interrupted." in err
            assert f"`toolbox create {NAME}` continues where it stopped" in err
            assert json.loads(toolbox(capsys, "ls", "--json")[1])[0]["state"] == "Error"
            code, out, err = toolbox(capsys, "status", NAME)
            assert out == "Error\n" and "creation was interrupted after" in err

        with stages("create again: continues with provisioning"):
            code, out, err = toolbox(capsys, "create", NAME)
            assert code == 0, err
            assert out.startswith(f"Finished creating machine {NAME}")
            assert "keys (done before)" in out and "seed (done before)" in out
            assert "provision " in out
            spec = service.get(NAME)
            assert spec.complete and spec.provisioned
            assert qemu_pid(machine_dir) in qemu_pids  # the same VM, not a second boot

        with stages("ls, status, ip, inspect"):
            listing = json.loads(toolbox(capsys, "ls", "--json")[1])
            assert [(m["name"], m["state"], m["url"]) for m in listing] == [
                (NAME, "Running", spec.engine_url)
            ]
            assert toolbox(capsys, "status", NAME)[1] == "Running\n"
            assert toolbox(capsys, "ip", NAME)[1] == "127.0.0.1\n"
            info = json.loads(toolbox(capsys, "inspect", NAME, "--json")[1])
            forwards = {f["name"]: f for f in info["forwards"]}
            assert forwards["ssh"]["host_port"] == spec.ssh_port
            assert forwards["engine"]["guest_port"] == 2376
            assert all(f["host_ip"] == "127.0.0.1" for f in info["forwards"])
            assert "10.0.2.15" in info["guest_addresses"]

        cert_path = machine_dir
        with stages("docker-py over TLS: import busybox, run a container that prints"):
            # Plain docker-py must not let the host's CA bundle replace the machine's CA.
            monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
            monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
            client = tls_client(cert_path, spec.engine_url)
            try:
                assert client.ping()
                image_id = import_busybox(client, workdir=tmp_path / "bb")
                output = client.containers.run(
                    "busybox:latest", ["echo", "hello from toolbox"], name="hello"
                )
                assert output == b"hello from toolbox\n"
            finally:
                client.close()

        with stages("the docker CLI from `toolbox env` and from the context"):
            code, out, _ = toolbox(capsys, "env", NAME)
            assert code == 0 and out.splitlines()[-1] == f"# eval $(toolbox env {NAME})"
            env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
            env.update(parse_exports(out))
            assert env["DOCKER_HOST"] == spec.engine_url
            assert docker_cli(env, "run", "--rm", "busybox", "echo", "cli-ok") == "cli-ok\n"
            assert "hello" in docker_cli(env, "ps", "-a", "--format", "{{.Names}}").split()
            ctx_env = {k: v for k, v in env.items() if not k.startswith("DOCKER_")}
            ctx_env["DOCKER_CONFIG"] = os.environ["DOCKER_CONFIG"]
            version = docker_cli(
                ctx_env, "--context", f"toolbox-{NAME}", "version", "--format",
                "{{.Server.Version}}",
            )  # fmt: skip
            assert version.strip()
            assert docker_cli(ctx_env, "context", "show").strip() == "default"

        with stages("a published port answers on the host through `toolbox port add`"):
            # A container's published port must work end to end: docker-proxy in the guest,
            # the veth on docker0 (networkd must leave it alone), the loopback forward.
            web = docker_cli(
                env, "run", "-d", "--name", "web", "-p", "8080:80", "busybox",
                "httpd", "-f", "-p", "80", "-h", "/etc",
            ).strip()  # fmt: skip
            host_port = free_port()
            code, out, err = toolbox(capsys, "port", "add", NAME, f"{host_port}:8080")
            assert code == 0, err

            def fetch() -> str:
                url = f"http://127.0.0.1:{host_port}/hostname"
                with urllib.request.urlopen(url, timeout=10) as reply:
                    return reply.read().decode()

            assert wait_until(fetch, 60, 1.0, "the published port").strip() == web[:12]
            code, out, err = toolbox(capsys, "port", "rm", NAME, str(host_port))
            assert code == 0, err
            docker_cli(env, "rm", "-f", "web")

        with stages("a client without the client certificate is refused"):
            bare = tls_client(cert_path, spec.engine_url, with_client_cert=False, version="1.41")
            # The engine's TLS alert: "bad certificate" (TLS 1.2) or "certificate required".
            with pytest.raises(requests.exceptions.ConnectionError, match="certificate"):
                bare.ping()
            bare.close()
            with pytest.raises(urllib.error.HTTPError) as plain:
                urllib.request.urlopen(f"http://127.0.0.1:{spec.engine_port}/_ping", timeout=10)
            assert plain.value.code == 400  # "Client sent an HTTP request to an HTTPS server"

        files = service.files(NAME)
        with stages("a changed host key is refused (paramiko and OpenSSH)"):
            other = generate_host_key().public_line
            impostor = GuestSSH("127.0.0.1", spec.ssh_port, "docker", files.user_key, other)
            with pytest.raises(HostKeyMismatch):
                impostor.connect(timeout=30)
            assert toolbox(capsys, "ssh", NAME, "--", "hostname")[1] == f"{NAME}\n"
            argv = service.ssh_argv(NAME, "hostname", ssh_binary=shutil.which("ssh") or "ssh")
            argv[1:1] = ["-o", "BatchMode=yes"]
            good = subprocess.run(argv, capture_output=True, text=True, timeout=60)
            assert good.returncode == 0 and good.stdout == f"{NAME}\n", good.stderr
            wrong = tmp_path / "known_hosts"
            write_known_hosts(wrong, "127.0.0.1", spec.ssh_port, other)
            bad_argv = [
                f"UserKnownHostsFile={wrong}" if a.startswith("UserKnownHostsFile=") else a
                for a in argv
            ]
            bad = subprocess.run(bad_argv, capture_output=True, text=True, timeout=60)
            assert bad.returncode == 255 and "IDENTIFICATION HAS CHANGED" in bad.stderr

        with stages("QEMU listens on loopback only"):
            listeners = listening_addresses(qemu_pid(machine_dir))
            assert {spec.ssh_port, spec.engine_port} <= {port for _, port in listeners}
            assert {address for address, _ in listeners} == {"127.0.0.1"}, listeners

        with stages("re-provision: changes nothing"):
            summary = RealGuestOps().provision(spec, files, None, None)
            say(f"   re-provision took {summary.seconds:.1f} s: {summary.steps}")
            assert summary.changed == ()

        with stages("stop"):
            code, out, err = toolbox(capsys, "set", NAME, "--cpus", "1")
            assert code == EXIT_MACHINE and "is running" in err  # refused while running
            root_before = root_size(capsys)
            pid = qemu_pid(machine_dir)
            assert toolbox(capsys, "stop", NAME)[0] == 0
            wait_until(lambda: not pid_alive(pid), 30, what="QEMU exit")
            assert toolbox(capsys, "status", NAME)[1] == "Stopped\n"

        with stages("set while stopped: 1 CPU, 1536 MiB memory, a 12 GiB disk"):
            code, out, err = toolbox(
                capsys, "set", NAME, "--cpus", "1", "--memory", "1536", "--disk", "12"
            )
            assert code == 0, err
            assert "takes effect at its next start" in out
            resized = service.get(NAME)
            assert (resized.cpus, resized.memory_mib, resized.disk_gib) == (1, 1536, 12)
            assert toolbox(capsys, "set", NAME, "--disk", "11")[0] == EXIT_USAGE  # no shrink
            assert service.get(NAME) == resized

        with stages("start with the SSH port taken: port re-chosen, engine ready"):
            squatter = socket.socket()
            squatter.bind(("127.0.0.1", spec.ssh_port))
            squatter.listen(1)
            try:
                code, out, err = toolbox(capsys, "start", NAME)
                assert code == 0, err
            finally:
                squatter.close()
            restarted = service.get(NAME)
            assert restarted.ssh_port != spec.ssh_port
            assert restarted.engine_port == spec.engine_port
            assert "provision" not in out  # already provisioned: no provisioning on start
            qemu_pids.add(qemu_pid(machine_dir))
            client = tls_client(cert_path, restarted.engine_url)
            try:
                assert client.containers.get("hello").attrs["State"]["ExitCode"] == 0
                assert client.images.get("busybox:latest").id == image_id
            finally:
                client.close()
            assert toolbox(capsys, "ssh", NAME, "--", "true")[0] == 0  # new known_hosts entry
            # What `toolbox set` changed: the guest sees it, and its root filesystem grew
            # into the bigger disk at boot (toolbox-growroot.service from the seed).
            assert toolbox(capsys, "ssh", NAME, "--", "nproc")[1] == "1\n"
            meminfo = toolbox(capsys, "ssh", NAME, "--", "grep MemTotal /proc/meminfo")[1]
            assert 1024 * 1024 < int(meminfo.split()[1]) <= 1536 * 1024, meminfo
            wait_until(
                lambda: root_size(capsys) > root_before + 3 * 1024**3 // 2,
                120,
                what=f"the root filesystem to grow from {root_before} bytes",
            )

        with stages("a killed hypervisor reads as Stopped; start works again"):
            pid = qemu_pid(machine_dir)
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: not pid_alive(pid), 30, what="QEMU killed")
            assert toolbox(capsys, "status", NAME)[1] == "Stopped\n"
            code, out, err = toolbox(capsys, "start", NAME)
            assert code == 0, err
            qemu_pids.add(qemu_pid(machine_dir))
            revived = service.get(NAME)
            if "moved:" in err:  # another program took a port meanwhile: say which
                say(subprocess.run(["ss", "-tanop"], capture_output=True, text=True).stdout)
            assert revived.engine_url in out
            client = tls_client(cert_path, revived.engine_url)
            try:
                assert "hello" in [c.name for c in client.containers.list(all=True)]
            finally:
                client.close()

        with stages("regenerate-certs: the context follows"):
            old_cert = (cert_path / "cert.pem").read_bytes()
            assert toolbox(capsys, "regenerate-certs", NAME)[0] == 0
            assert (cert_path / "cert.pem").read_bytes() != old_cert
            assert "hello" in docker_cli(
                ctx_env, "--context", f"toolbox-{NAME}", "ps", "-a", "--format", "{{.Names}}"
            )

        with stages("rm -f: no process, no file left"):
            pid = qemu_pid(machine_dir)
            assert toolbox(capsys, "rm", "-f", NAME)[0] == 0
            wait_until(lambda: not pid_alive(pid), 30, what="QEMU gone")
            assert not machine_dir.exists()
            assert not console_log_path(NAME).parent.exists()
            assert dockercontext.read_context(f"toolbox-{NAME}") is None
            assert processes_mentioning(str(machine_dir)) == []
            assert json.loads(toolbox(capsys, "ls", "--json")[1]) == []
    finally:
        say(stages.summary())
        # Whatever failed, leave no VM running: remove the machine, then make sure.
        with contextlib.suppress(OSError, ValueError):
            qemu_pids.add(qemu_pid(machine_dir))
        if service.store.dir_for(NAME).exists():
            with contextlib.suppress(Exception):
                service.remove(NAME, force=True)
        for pid in qemu_pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
