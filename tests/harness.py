"""Real components for tests and benchmarks: a private dockerd, a loopback registry, and a
busybox image made locally.

Nothing here is mocked. The dockerd is the distribution's ``docker.io`` started on its own
socket, data root and exec root, with a TLS listener on 127.0.0.1 using certificates from
``toolbox.tls``. The registry is the distribution's ``docker-registry`` on loopback.
``TOOLBOX_TEST_DOCKER_HOST`` makes the harness use an engine that is already running instead.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import docker

from toolbox import tls

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
TEST_IMAGE = "busybox:latest"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:
            last_exc = exc
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached in {timeout:g} s (last error: {last_exc})")


@dataclass
class TLSFiles:
    """Client-side files for the TLS listener (a DOCKER_CERT_PATH-style folder)."""

    cert_path: Path
    host: str  # tcp://127.0.0.1:PORT


class PrivateDockerd:
    """The distribution's dockerd on a private unix socket (and a TLS tcp port on loopback)."""

    def __init__(self, base: Path | None = None):
        # Unix socket paths are limited to about 108 bytes, so keep the base short.
        self.base = Path(base or tempfile.mkdtemp(prefix="tbxd-", dir="/tmp"))
        self.socket = self.base / "docker.sock"
        self.data_root = self.base / "data"
        self.exec_root = self.base / "exec"
        self.log_path = self.base / "dockerd.log"
        self.tls_port = free_port()
        self.tls_dir = self.base / "tls"
        self.client_dir = self.base / "client"
        self.proc: subprocess.Popen[bytes] | None = None
        self._make_certs()

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def tls(self) -> TLSFiles:
        return TLSFiles(self.client_dir, f"tcp://127.0.0.1:{self.tls_port}")

    def _make_certs(self) -> None:
        ca = tls.ensure_ca(self.tls_dir)
        tls.make_server_cert(ca, self.tls_dir, ["127.0.0.1", "localhost"])
        tls.make_client_cert(ca, self.client_dir)

    def argv(self) -> list[str]:
        dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
        return [
            dockerd,
            "--host", self.url,
            "--host", f"tcp://127.0.0.1:{self.tls_port}",
            "--tlsverify",
            "--tlscacert", str(self.tls_dir / tls.CA_FILE),
            "--tlscert", str(self.tls_dir / tls.SERVER_CERT_FILE),
            "--tlskey", str(self.tls_dir / tls.SERVER_KEY_FILE),
            "--data-root", str(self.data_root),
            "--exec-root", str(self.exec_root),
            "--pidfile", str(self.base / "docker.pid"),
            "--log-level", "warn",
        ]  # fmt: skip

    def start(self, timeout: float = 60) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            self.argv(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"dockerd exited: {self.log_tail()}")
            client = docker.DockerClient(base_url=self.url, version="auto", timeout=5)
            try:
                return bool(client.ping())
            finally:
                client.close()

        wait_until(ready, timeout, 0.2, "dockerd ping")

    def stop(self, timeout: float = 30) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = None
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def release_host_resources(self) -> None:
        """Remove containers and user-defined networks while the engine runs: dockerd leaves
        their iptables rules and ``br-*`` bridges on the host when it just stops."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            client = docker.DockerClient(base_url=self.url, version="auto", timeout=30)
        except docker.errors.DockerException:
            return
        try:
            for c in client.api.containers(all=True):
                try:
                    client.api.remove_container(c["Id"], force=True, v=True)
                except docker.errors.APIError:
                    pass
            for n in client.api.networks():
                if n["Name"] not in ("bridge", "host", "none"):
                    try:
                        client.api.remove_network(n["Id"])
                    except docker.errors.APIError:
                        pass
        finally:
            client.close()

    def cleanup(self) -> None:
        self.release_host_resources()
        self.stop()
        # dockerd unmounts its overlays on a clean exit; anything left is unmounted here.
        for mount in reversed(Path("/proc/mounts").read_text().splitlines()):
            point = mount.split()[1]
            if point.startswith(str(self.base)):
                subprocess.run(["umount", "-l", point], check=False, capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)


class LocalRegistry:
    """The distribution's docker-registry on 127.0.0.1 (loopback registries need no TLS)."""

    def __init__(self, base: Path | None = None):
        self.base = Path(base or tempfile.mkdtemp(prefix="tbxr-", dir="/tmp"))
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> None:
        config = self.base / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.base / 'storage'}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.address}\n"
        )
        binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
        log = open(self.base / "registry.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [binary, "serve", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

        def ready() -> bool:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True

        wait_until(ready, timeout, 0.1, "registry port")

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.base, ignore_errors=True)


def busybox_binary() -> str:
    for candidate in BUSYBOX_CANDIDATES:
        if os.path.exists(candidate):
            return candidate
    raise RuntimeError("busybox not found: install the busybox-static package")


def busybox_tar(dest: Path) -> Path:
    """A root filesystem tar holding a static busybox and a link per applet."""
    root = dest.parent / (dest.name + ".root")
    shutil.rmtree(root, ignore_errors=True)
    (root / "bin").mkdir(parents=True)
    (root / "tmp").mkdir()
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\n")
    binary = busybox_binary()
    shutil.copy2(binary, root / "bin" / "busybox")
    applets = subprocess.run([binary, "--list"], capture_output=True, text=True, check=True)
    for applet in applets.stdout.split():
        link = root / "bin" / applet
        if not link.exists():
            link.symlink_to("busybox")
    subprocess.run(["tar", "-C", str(root), "-cf", str(dest), "."], check=True)
    shutil.rmtree(root, ignore_errors=True)
    return dest


def import_busybox(
    client: docker.DockerClient,
    repository: str = "busybox",
    tag: str = "latest",
    workdir: Path | None = None,
) -> str:
    """``docker import`` the busybox tar as ``repository:tag``; returns the image id."""
    workdir = Path(workdir or tempfile.mkdtemp(prefix="tbxbb-"))
    tar = busybox_tar(workdir / "busybox.tar")
    result = client.api.import_image(
        src=str(tar), repository=repository, tag=tag, changes=['CMD ["sh"]']
    )
    shutil.rmtree(workdir, ignore_errors=True)
    image = client.images.get(f"{repository}:{tag}")
    assert image.id, result
    return str(image.id)


class ThrottledProxy:
    """A real TCP proxy on loopback in front of ``upstream`` that sends the replies at
    ``rate`` bytes/s, so a pull from the loopback registry lasts long enough to watch its
    progress or cancel it midway."""

    CHUNK = 16 * 1024

    def __init__(self, upstream: tuple[str, int], rate: int):
        self.upstream = upstream
        self.rate = rate
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = [self._listener]
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream, timeout=10)
            upstream.settimeout(None)
            self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, 0), daemon=True).start()
            threading.Thread(
                target=self._pump, args=(upstream, client, self.rate), daemon=True
            ).start()

    def _pump(self, src: socket.socket, dst: socket.socket, rate: int) -> None:
        started = time.monotonic()
        sent = 0
        try:
            while True:
                data = src.recv(self.CHUNK)
                if not data:
                    break
                dst.sendall(data)
                sent += len(data)
                if rate:
                    # Pace the bytes (the proxy's job, not a test waiting on a sleep);
                    # close() interrupts the pause at once.
                    ahead = sent / rate - (time.monotonic() - started)
                    if ahead > 0 and self._closed.wait(ahead):
                        break
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._closed.set()
        for s in self._sockets:
            try:
                s.close()
            except OSError:
                pass


def register_image_copy(cached, name: str, staging: Path) -> str:
    """Copy a built guest image (a ``CachedImage``: disk, kernel, initrd) into ``staging`` and
    register it as ``name`` in the image cache of the current TOOLBOX_HOME; return ``name``."""
    from toolbox.guest.images import ImageStore

    staging.mkdir(parents=True, exist_ok=True)
    copies = {
        key: Path(shutil.copy2(src, staging / src.name))
        for key in ("path", "kernel", "initrd")
        if (src := getattr(cached, key)) is not None
    }
    ImageStore().add(
        name,
        copies["path"],
        format=cached.format,
        arch=cached.arch,
        source=f"test copy of {cached.path}",
        kernel=copies.get("kernel"),
        initrd=copies.get("initrd"),
        cmdline=cached.cmdline,
    )
    return name
