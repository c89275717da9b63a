"""The host agent end to end, the app closed: a real QEMU machine from the baked engine image,
driven through the ``toolbox`` CLI, used with the real ``docker`` CLI and docker-compose
through ``toolbox env``.

Ports: ``-p``, ``-P``, one-address ``-p 127.0.0.1:P:P`` (an SSH tunnel), UDP, a compose file;
reachable on 127.0.0.1 and nothing of ours bound off loopback; a taken host port reported
as a conflict naming its holder and forwarded once it frees; the agent killed with
``kill -9`` and revived by the next ``toolbox`` command, picking up a container started while
it was dead; everything closed after ``toolbox stop``; no agent after ``toolbox rm``.
Shares: host files in the container, container files on the host owned by the host user,
names with spaces and non-ASCII characters, a symlink, a host change seen without remounting,
a 100 MB file whose sha256 matches both ways, a read-only share refusing writes, ``share
add``/``rm`` on the running machine, and the warning for a bind mount outside every share.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_machine_e2e import Stages, listening_addresses, pid_alive, qemu_pid, say
from tests.harness import busybox_tar, free_port, register_image_copy, wait_until
from toolbox import cli
from toolbox.agent import state as agent_state
from toolbox.shellenv import parse_exports

pytestmark = [pytest.mark.vm, pytest.mark.timeout(1800)]

NAME = "agentvm"
IMAGE = "debian-12-local-engine"

UDP_ECHO_C = r"""
#include <arpa/inet.h>
#include <stdlib.h>
#include <sys/socket.h>
int main(int argc, char **argv) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(atoi(argv[1]));
    if (bind(s, (struct sockaddr *)&a, sizeof a) != 0) return 1;
    char buf[2048];
    for (;;) {
        struct sockaddr_in peer;
        socklen_t len = sizeof peer;
        int n = recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&peer, &len);
        if (n > 0) sendto(s, buf, n, 0, (struct sockaddr *)&peer, len);
    }
}
"""


@pytest.fixture
def engine_image(engine_guest_image: Any, toolbox_home: Path, tmp_path: Path) -> str:
    """The baked engine image, copied into this test's own image cache."""
    return register_image_copy(engine_guest_image, IMAGE, tmp_path / "image")


def toolbox(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    say(f"$ toolbox {' '.join(argv)}  -> {code}\n{out}{err}")
    return code, out, err


def http_get(port: int, timeout: float = 2.0) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=timeout) as response:
        return response.read().decode()


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return True
    return False


def udp_echo(port: int, payload: bytes) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1.0)
        sock.sendto(payload, ("127.0.0.1", port))
        try:
            return sock.recv(2048)
        except OSError:
            return None


def ports_json(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    code, out, err = toolbox(capsys, "port", "ls", NAME, "--json")
    assert code == 0, err
    return {f"{p['host']}/{p['protocol']}": p for p in json.loads(out)["ports"]}


def agent_pid() -> int | None:
    status = agent_state.status(NAME)
    return status.report.pid if status.report else None


@pytest.fixture
def test_image(tmp_path: Path) -> Path:
    """A tar of busybox, a web root and a static UDP echo server, for ``docker import``."""
    root = tmp_path / "rootfs"
    root.mkdir()
    subprocess.run(
        ["tar", "-C", str(root), "-xf", str(busybox_tar(tmp_path / "bb.tar"))], check=True
    )
    (root / "www").mkdir(exist_ok=True)
    (root / "www" / "index.html").write_text("served from the machine\n")
    source = tmp_path / "udpecho.c"
    source.write_text(UDP_ECHO_C)
    gcc = shutil.which("gcc")
    assert gcc, "gcc is needed to build the UDP echo server (./dev test installs it)"
    subprocess.run(
        [gcc, "-static", "-O2", "-o", str(root / "bin" / "udpecho"), str(source)], check=True
    )
    tar = tmp_path / "image.tar"
    subprocess.run(["tar", "-C", str(root), "-cf", str(tar), "."], check=True)
    return tar


@pytest.fixture
def docker_env(toolbox_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    # docker-compose 1.29 is Python requests: these would replace the machine's CA.
    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(var, raising=False)
    yield dict(os.environ)


def docker(env: dict[str, str], *argv: str, check: bool = True, timeout: float = 240) -> str:
    proc = subprocess.run(
        ["docker", *argv], env=env, capture_output=True, text=True, timeout=timeout
    )
    if check:
        assert proc.returncode == 0, f"docker {' '.join(argv)}: {proc.stderr}"
    return proc.stdout


def test_ports_and_shares_with_the_app_closed(
    vm_lock: None,
    engine_image: str,
    test_image: Path,
    docker_env: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stages = Stages()
    share = tmp_path / "my share ü"
    share.mkdir()
    (share / "from host.txt").write_text("hello from the host\n")
    (share / "sub dir").mkdir()
    (share / "link").symlink_to("sub dir")
    (share / "sub dir" / "inner.txt").write_text("inside\n")
    ro = tmp_path / "read only"
    ro.mkdir()
    (ro / "keep.txt").write_text("do not touch\n")
    outside = tmp_path / "not shared"
    outside.mkdir()
    try:
        with stages("create from the baked image"):
            code, _, err = toolbox(
                capsys, "create", NAME, "--driver", "qemu", "--image", engine_image,
                "--share", str(share), "--share", f"{ro}:/ro:ro",
            )  # fmt: skip
            assert code == 0, err
            status = agent_state.wait_running(NAME, 15)
            assert status.health is agent_state.Health.RUNNING, status
        code, out, err = toolbox(capsys, "env", NAME, "--shell", "bash")
        assert code == 0, err
        env = {**docker_env, **parse_exports(out)}
        docker(env, "import", "-c", 'CMD ["sh"]', str(test_image), "tbx-test:latest")

        with stages("-p: reachable on 127.0.0.1"):
            web = free_port()
            started = time.monotonic()
            docker(env, "run", "-d", "--name", "web", "-p", f"{web}:80", "tbx-test:latest",
                   "httpd", "-f", "-p", "80", "-h", "/www")  # fmt: skip
            returned = time.monotonic()
            body = wait_until(lambda: http_get(web), 20, 0.02, "the published port answering")
            say(f"[timing] docker run took {returned - started:.2f} s; port answered "
                f"{time.monotonic() - returned:.2f} s after it returned")  # fmt: skip
            assert body == "served from the machine\n"
            # The report follows the forward by a moment (the forward answers first).
            row = wait_until(
                lambda: ports_json(capsys).get(f"127.0.0.1:{web}/tcp"), 10, 0.1, "the report"
            )
            assert (row["kind"], row["state"], row["via"], row["containers"]) == (
                "auto",
                "active",
                "nat",
                ["web"],
            )

        with stages("-P, one-address -p, UDP"):
            docker(env, "run", "-d", "--name", "picked", "-P", "--expose", "80",
                   "tbx-test:latest", "httpd", "-f", "-p", "80", "-h", "/www")  # fmt: skip
            picked = int(docker(env, "port", "picked", "80/tcp").splitlines()[0].rsplit(":", 1)[1])
            assert wait_until(lambda: http_get(picked), 20, 0.05, "the -P port")
            one = free_port()
            docker(env, "run", "-d", "--name", "one", "-p", f"127.0.0.1:{one}:80",
                   "tbx-test:latest", "httpd", "-f", "-p", "80", "-h", "/www")  # fmt: skip
            assert wait_until(lambda: http_get(one), 20, 0.05, "the one-address port")
            row = wait_until(
                lambda: ports_json(capsys).get(f"127.0.0.1:{one}/tcp"), 10, 0.1, "the report"
            )
            assert row["via"] == "ssh"
            udp = free_port()
            docker(env, "run", "-d", "--name", "udp", "-p", f"{udp}:{udp}/udp",
                   "tbx-test:latest", "udpecho", str(udp))  # fmt: skip
            assert wait_until(lambda: udp_echo(udp, b"ping") == b"ping", 20, 0.1, "UDP echo")

        with stages("nothing bound off loopback"):
            qemu = qemu_pid(agent_state.machine_dir(NAME))
            listeners = listening_addresses(qemu)
            assert listeners and {addr for addr, _ in listeners} == {"127.0.0.1"}, listeners
            agent_listeners = listening_addresses(agent_pid() or 0)
            assert {addr for addr, _ in agent_listeners} == {"127.0.0.1"}, agent_listeners
            assert {port for _, port in agent_listeners} == {one}  # only the forwarded port

        with stages("a taken host port: conflict, then forwarded once free"):
            holder = socket.create_server(("127.0.0.1", 0))
            taken = holder.getsockname()[1]
            docker(env, "run", "-d", "--name", "clash", "-p", f"{taken}:80",
                   "tbx-test:latest", "httpd", "-f", "-p", "80", "-h", "/www")  # fmt: skip
            key = f"127.0.0.1:{taken}/tcp"
            row = wait_until(
                lambda: (r := ports_json(capsys).get(key)) and r["state"] == "conflict" and r,
                20, 0.2, "the conflict reported",
            )  # fmt: skip
            assert f"pid {os.getpid()}" in row["reason"], row
            assert "running" in docker(env, "inspect", "-f", "{{.State.Status}}", "clash")
            holder.close()
            assert wait_until(lambda: http_get(taken), 30, 0.2, "the freed port forwarded")

        with stages("compose"):
            project = tmp_path / "compose project"
            project.mkdir()
            cport = free_port()
            (project / "docker-compose.yml").write_text(
                "version: '3'\nservices:\n  site:\n    image: tbx-test:latest\n"
                f"    command: httpd -f -p 80 -h /www\n    ports:\n      - '{cport}:80'\n"
            )
            compose = ["docker-compose", "--project-directory", str(project), "-p", "tbxagent",
                       "-f", str(project / "docker-compose.yml")]  # fmt: skip
            proc = subprocess.run([*compose, "up", "-d"], env=env, capture_output=True,
                                  text=True, timeout=300)  # fmt: skip
            assert proc.returncode == 0, proc.stderr
            assert wait_until(lambda: http_get(cport), 30, 0.1, "the compose port")
            proc = subprocess.run([*compose, "down"], env=env, capture_output=True, text=True,
                                  timeout=300)  # fmt: skip
            assert proc.returncode == 0, proc.stderr
            assert wait_until(lambda: refused(cport), 20, 0.1, "the compose port closed")

        with stages("agent killed with -9, revived by the next command"):
            old = agent_pid()
            assert old is not None
            os.kill(old, signal.SIGKILL)
            wait_until(lambda: not pid_alive(old), 10, 0.05, "the agent gone")
            late = free_port()
            docker(env, "run", "-d", "--name", "late", "-p", f"{late}:80",
                   "tbx-test:latest", "httpd", "-f", "-p", "80", "-h", "/www")  # fmt: skip
            assert http_get(web)  # the hypervisor's forwards outlive the agent
            code, out, _ = toolbox(capsys, "ls")
            assert code == 0
            new = wait_until(lambda: (p := agent_pid()) not in (None, old) and p, 15, 0.1,
                             "a new agent")  # fmt: skip
            assert pid_alive(new)
            assert wait_until(lambda: http_get(late), 30, 0.1, "the container started meanwhile")
            assert wait_until(lambda: http_get(one), 30, 0.1, "the tunnel of the new agent")
            docker(env, "rm", "-f", "late")
            assert wait_until(lambda: refused(late), 20, 0.1, "a removed container's port closed")

        with stages("shares"):
            # The read-only share is mounted at /ro in the machine (HOSTPATH:/ro:ro).
            run = ["run", "--rm", "-v", f"{share}:/s", "-v", "/ro:/ro", "tbx-test:latest"]
            assert docker(env, *run, "cat", "/s/from host.txt") == "hello from the host\n"
            assert docker(env, *run, "cat", "/s/link/inner.txt") == "inside\n"
            docker(env, *run, "sh", "-c", "echo from the container > '/s/new ü file.txt'")
            written = share / "new ü file.txt"
            assert written.read_text() == "from the container\n"
            assert written.stat().st_uid == os.getuid()
            (share / "from host.txt").write_text("changed on the host\n")
            assert wait_until(
                lambda: docker(env, *run, "cat", "/s/from host.txt") == "changed on the host\n",
                10, 0.5, "the host change seen in the container",
            )  # fmt: skip
            big = share / "big.bin"
            with big.open("wb") as fh:
                for _ in range(100):
                    fh.write(os.urandom(1024 * 1024))
            want = hashlib.sha256(big.read_bytes()).hexdigest()
            started = time.monotonic()
            got = docker(env, *run, "sha256sum", "/s/big.bin").split()[0]
            say(f"[timing] 100 MB read through the share: {time.monotonic() - started:.1f} s")
            assert got == want
            started = time.monotonic()
            docker(env, *run, "sh", "-c",
                   "dd if=/dev/urandom of=/s/back.bin bs=1M count=100 2>/dev/null && "
                   "sha256sum /s/back.bin > /s/back.sha")  # fmt: skip
            say(f"[timing] 100 MB written through the share: {time.monotonic() - started:.1f} s")
            back = (share / "back.sha").read_text().split()[0]
            assert hashlib.sha256((share / "back.bin").read_bytes()).hexdigest() == back
            assert docker(env, *run, "cat", "/ro/keep.txt") == "do not touch\n"
            proc = subprocess.run(["docker", *run, "sh", "-c", "echo x > /ro/keep.txt"], env=env,
                                  capture_output=True, text=True, timeout=120)  # fmt: skip
            assert proc.returncode != 0 and "Read-only" in proc.stderr, proc.stderr
            assert (ro / "keep.txt").read_text() == "do not touch\n"

        with stages("share add/rm live, and the warning outside every share"):
            (outside / "x.txt").write_text("now shared\n")
            docker(env, "run", "-d", "--name", "trap", "-v", f"{outside}:/data",
                   "tbx-test:latest", "sleep", "600")  # fmt: skip
            warned = wait_until(
                lambda: [w for w in (agent_state.read_report(NAME) or _empty()).warnings
                         if str(outside) in w],
                15, 0.2, "the warning",
            )  # fmt: skip
            assert "toolbox share add" in warned[0]
            code, _, err = toolbox(capsys, "status", NAME)
            assert str(outside) in err
            code, out, err = toolbox(capsys, "share", "add", NAME, f"{outside}:/extra")
            assert code == 0 and "Mount: mounted" in out, out + err
            assert docker(env, "run", "--rm", "-v", "/extra:/e", "tbx-test:latest",
                          "cat", "/e/x.txt") == "now shared\n"  # fmt: skip
            code, out, err = toolbox(capsys, "share", "rm", NAME, "/extra")
            assert code == 0, err
            rows = json.loads(toolbox(capsys, "share", "ls", NAME, "--json")[1])
            assert [r["guest_path"] for r in rows] == [str(share), "/ro"]
            assert all(r["state"] == "mounted" for r in rows), rows

        with stages("stop: every forward closed, the agent gone"):
            ports = [web, picked, one, taken]
            code, _, err = toolbox(capsys, "stop", NAME)
            assert code == 0, err
            assert all(refused(p) for p in ports)
            assert udp_echo(udp, b"ping") is None
            assert agent_state.status(NAME).health is agent_state.Health.NOT_RUNNING
            assert not [p for p in ports_json(capsys).values() if p["kind"] == "auto"]
    finally:
        pid = agent_pid()
        toolbox(capsys, "rm", "-f", "-y", NAME)
        assert pid is None or not pid_alive(pid)
        say(stages.summary())


def _empty() -> agent_state.AgentReport:
    return agent_state.AgentReport(0, "", "", "")
