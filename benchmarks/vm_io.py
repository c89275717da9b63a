"""What the host agent costs and gives, on one real QEMU machine from the baked engine image
(a throw-away TOOLBOX_HOME; the agent is the real detached process):

* ``port_forward_latency``: ``docker run -d -p P:80`` returned -> first HTTP answer on
  127.0.0.1:P, median of ``--rounds`` (10). Baseline: the same with the port forwarded before
  the container started (``toolbox port add``), i.e. the container's own start; target: the
  median at most 500 ms. Also printed: run returned -> the agent's forward opened.
* ``port_forward_throughput``: 256 MiB into a container through the forwarded port, against
  the same bytes copied over the machine's SSH connection (``cat > /dev/null``); target: at
  least 1.0x the SSH throughput.
* ``share_io``: reading 200 MiB from a share and ``find`` over 10,000 files in it, timed in the
  guest, against the same on the guest's own disk (caches dropped before each read); targets:
  at most 3x for the read, 10x for ``find``.

    python -m benchmarks.vm_io [--only latency|throughput|share] [--rounds N]

Holds ``/tmp/toolbox-vm.lock``. Slow (a VM boot): not in the default ``./dev bench`` set.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from filelock import FileLock

from benchmarks.common import Outcome
from benchmarks.machine_start import VM_LOCK, dev_image_store, free_port

IMAGE = "debian-12-local-engine"
MACHINE = "benchio"
THROUGHPUT_BYTES = 256 * 1024 * 1024
SHARE_READ_MIB = 200
FIND_FILES = 10_000


def register_image() -> None:
    from toolbox.guest.build import ensure_built
    from toolbox.guest.images import ImageStore

    src, _ = ensure_built(ImageStore(dev_image_store()), IMAGE, engine=True)
    staging = Path(tempfile.mkdtemp(prefix="bench-image-"))
    copies = {}
    for key in ("path", "kernel", "initrd"):
        path = getattr(src, key)
        if path is not None:
            copies[key] = Path(shutil.copy2(path, staging / path.name))
    ImageStore().add(
        IMAGE, copies["path"], format=src.format, arch=src.arch, source=str(src.path),
        kernel=copies.get("kernel"), initrd=copies.get("initrd"), cmdline=src.cmdline,
    )  # fmt: skip
    shutil.rmtree(staging, ignore_errors=True)


def docker(env: dict[str, str], *argv: str) -> str:
    proc = subprocess.run(["docker", *argv], env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise SystemExit(f"docker {' '.join(argv)} failed: {proc.stderr}")
    return proc.stdout


def http_ok(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as response:
            return bool(response.read())
    except OSError:
        return False


def wait_answer(port: int, timeout: float = 30.0) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if http_ok(port):
            return time.monotonic()
        time.sleep(0.005)
    raise SystemExit(f"port {port} never answered")


def forward_since(port: int) -> float | None:
    from toolbox.agent import state

    report = state.read_report(MACHINE)
    for f in report.forwards if report else ():
        if f.host_port == port and f.state == "active" and f.since:
            return dt.datetime.fromisoformat(f.since).timestamp()
    return None


def test_image(work: Path) -> Path:
    from tests.harness import busybox_tar

    root = work / "rootfs"
    root.mkdir()
    subprocess.run(["tar", "-C", str(root), "-xf", str(busybox_tar(work / "bb.tar"))], check=True)
    (root / "www").mkdir(exist_ok=True)
    (root / "www" / "index.html").write_text("ok\n")
    tar = work / "image.tar"
    subprocess.run(["tar", "-C", str(root), "-cf", str(tar), "."], check=True)
    return tar


HTTPD = ["tbx-bench:latest", "httpd", "-f", "-p", "80", "-h", "/www"]


def bench_latency(service: Any, env: dict[str, str], rounds: int) -> None:
    from toolbox.machine.model import parse_forward

    agent_times, agent_open = [], []
    for i in range(rounds):
        port = free_port()
        docker(env, "run", "-d", "--name", f"lat{i}", "-p", f"{port}:80", *HTTPD)
        returned, returned_wall = time.monotonic(), time.time()
        answered = wait_answer(port)
        agent_times.append(answered - returned)
        since = forward_since(port)
        if since is not None:
            agent_open.append(since - returned_wall)
        docker(env, "rm", "-f", f"lat{i}")
    base_times = []
    for i in range(rounds):
        port = free_port()
        service.add_forward(MACHINE, parse_forward(f"{port}:{port}"))
        docker(env, "run", "-d", "--name", f"base{i}", "-p", f"{port}:80", *HTTPD)
        returned = time.monotonic()
        base_times.append(wait_answer(port) - returned)
        docker(env, "rm", "-f", f"base{i}")
        service.remove_forward(MACHINE, port)
    value = statistics.median(agent_times) * 1000
    baseline = statistics.median(base_times) * 1000
    print("port_forward_latency")
    print(f"  rounds: {rounds}; automatic: {[round(t * 1000) for t in agent_times]} ms")
    print(f"  forwarded beforehand: {[round(t * 1000) for t in base_times]} ms")
    if agent_open:
        print(
            "  run returned -> agent's forward opened, median: "
            f"{statistics.median(agent_open) * 1000:.0f} ms (negative: before run returned)"
        )
    Outcome(
        "port_forward_latency", "run returned -> first answer, median", value, "ms",
        "the port forwarded before the container started", baseline, "<= 500 ms",
        value <= 500,
    ).report()  # fmt: skip


def bench_throughput(service: Any, env: dict[str, str]) -> None:
    port = free_port()
    docker(env, "run", "-d", "--name", "sink", "-p", f"{port}:9000", "tbx-bench:latest",
           "sh", "-c", "nc -l -p 9000 > /dev/null")  # fmt: skip
    deadline = time.monotonic() + 30
    while forward_since(port) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # nc listening
    chunk = os.urandom(1024 * 1024)
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as conn:
        sent = 0
        while sent < THROUGHPUT_BYTES:
            conn.sendall(chunk)
            sent += len(chunk)
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(120)
        while conn.recv(65536):
            pass
    forwarded = time.monotonic() - start
    docker(env, "rm", "-f", "sink")
    from toolbox.machine.guestops import RealGuestOps

    spec = service.get(MACHINE)
    with RealGuestOps().ssh(spec, service.files(MACHINE)).connect() as ssh:
        chan = ssh.transport().open_session()
        chan.exec_command("cat > /dev/null")
        start = time.monotonic()
        sent = 0
        while sent < THROUGHPUT_BYTES:
            chan.sendall(chunk)
            sent += len(chunk)
        chan.shutdown_write()
        chan.recv_exit_status()
        over_ssh = time.monotonic() - start
    mib = THROUGHPUT_BYTES / (1024 * 1024)
    value, baseline = mib / forwarded, mib / over_ssh
    print("port_forward_throughput")
    print(f"  256 MiB through the forwarded port: {forwarded:.1f} s; over SSH: {over_ssh:.1f} s")
    Outcome(
        "port_forward_throughput", "256 MiB through the forwarded port", value, "MiB/s",
        "the same bytes over the machine's SSH connection", baseline, ">= 1.0x",
        value >= baseline,
    ).report()  # fmt: skip


def guest_seconds(service: Any, command: str) -> float:
    """Run ``command`` in the guest and return how long it took there."""
    script = f'sync; echo 3 | sudo tee /proc/sys/vm/drop_caches >/dev/null; s=$(date +%s.%N); {command} >/dev/null; e=$(date +%s.%N); echo "$s $e"'  # noqa: E501
    result = service.ssh_run(MACHINE, script, timeout=1200)
    if not result.ok:
        raise SystemExit(f"{command!r} failed in the guest: {result.stderr}")
    start, end = (float(x) for x in result.stdout.split()[-2:])
    return end - start


def bench_share(service: Any, share: Path) -> None:
    big = share / "big.bin"
    with big.open("wb") as fh:
        for _ in range(SHARE_READ_MIB):
            fh.write(os.urandom(1024 * 1024))
    many = share / "many"
    many.mkdir()
    for i in range(FIND_FILES):
        (many / f"f{i:05d}").write_bytes(b"")
    prep = (
        f"mkdir -p /var/tmp/local/many && cp {share}/big.bin /var/tmp/local/big.bin && "
        f"cd /var/tmp/local/many && seq -f 'f%05g' 0 {FIND_FILES - 1} | xargs touch"
    )
    result = service.ssh_run(MACHINE, prep, timeout=1200)
    if not result.ok:
        raise SystemExit(f"preparing the guest's copy failed: {result.stderr}")
    read_share = guest_seconds(service, f"cat {share}/big.bin")
    read_disk = guest_seconds(service, "cat /var/tmp/local/big.bin")
    find_share = guest_seconds(service, f"find {share}/many")
    find_disk = guest_seconds(service, "find /var/tmp/local/many")
    print("share_io")
    print(f"  read {SHARE_READ_MIB} MiB: share {read_share:.2f} s, guest disk {read_disk:.2f} s")
    print(f"  find {FIND_FILES} files: share {find_share:.2f} s, guest disk {find_disk:.2f} s")
    Outcome(
        "share_io", f"read {SHARE_READ_MIB} MiB from a share", read_share, "s",
        "the same on the guest's own disk", read_disk, "<= 3x", read_share <= 3 * read_disk,
    ).report()  # fmt: skip
    Outcome(
        "share_io_find", f"find over {FIND_FILES} files in a share", find_share, "s",
        "the same on the guest's own disk", find_disk, "<= 10x",
        find_share <= 10 * find_disk,
    ).report()  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.vm_io")
    parser.add_argument("--only", choices=("latency", "throughput", "share"), action="append")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args(argv)
    only = set(args.only or ("latency", "throughput", "share"))
    home = Path(tempfile.mkdtemp(prefix="tbx-bench-"))
    os.environ["TOOLBOX_HOME"] = str(home)
    os.environ["DOCKER_CONFIG"] = str(home / "docker-config")
    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        os.environ.pop(var, None)
    from toolbox.machine.model import Share
    from toolbox.machine.service import CreateOptions, MachineService, ProcessAgents

    share = home / "share"
    share.mkdir()
    with FileLock(VM_LOCK, timeout=3600):
        register_image()
        service = MachineService(agents=ProcessAgents())
        try:
            started = time.monotonic()
            service.create(
                CreateOptions(
                    name=MACHINE, driver="qemu", image=IMAGE,
                    shares=(Share(str(share), str(share)),),
                )
            )  # fmt: skip
            print(f"machine created in {time.monotonic() - started:.0f} s")
            env = dict(os.environ)
            env.update(dict(service.env(MACHINE).variables()))
            work = Path(tempfile.mkdtemp(prefix="bench-img-"))
            docker(env, "import", "-c", 'CMD ["sh"]', str(test_image(work)), "tbx-bench:latest")
            shutil.rmtree(work, ignore_errors=True)
            if "latency" in only:
                bench_latency(service, env, args.rounds)
            if "throughput" in only:
                bench_throughput(service, env)
            if "share" in only:
                bench_share(service, share)
        finally:
            try:
                service.remove(MACHINE, force=True)
            finally:
                shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
