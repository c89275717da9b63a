"""The README screenshots: the real windows with real data, grabbed from the X server.

``./dev screenshots`` runs this under ``xvfb-run``. It starts a private dockerd (over mutual TLS
on loopback, as the app reaches a machine) and the loopback registry from ``tests/harness.py``,
fills them with a small believable project made from the busybox tar (images ``demo/web``,
``demo/api``, ``demo/db``, ``demo/worker``, a dangling image; containers running, paused,
exited, created, with published ports; volumes and a network), then opens the real main window
and dialogs and saves PNGs of their screen area (``QScreen.grabWindow(0, ...)``, what the X
server shows) to ``docs/screenshots/``:

    containers.png          the Containers page, a selected container with its logs
    images.png              the Images page
    pull.png                the Pull dialog mid-pull (the loopback registry behind a throttle)
    run-dialog.png          the Run dialog showing a validation error
    volumes.png, networks.png
    engine-unreachable.png  the banner after the engine went away
    first-run.png           the guided create a new user sees (empty TOOLBOX_HOME)
    first-run-progress.png  the same create under way on a real QEMU machine, mid-boot
    machines.png            the Machines page with that machine running
    tray-menu.png           the tray menu with the machine's Start/Stop submenu

Nothing here touches the user's folders: TOOLBOX_HOME and DOCKER_CONFIG point at a temp dir.

    python -m benchmarks.screenshots [--out DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import common

WIDTH, HEIGHT = 1280, 800
MAX_BYTES = 300_000
API_LOG = (
    'echo "$(date -u +%FT%TZ) INFO  api 2.1 starting (APP_ENV=$APP_ENV)"; '
    'echo "$(date -u +%FT%TZ) INFO  connected to postgres://db:5432/app"; '
    'echo "$(date -u +%FT%TZ) INFO  listening on :3000"; i=100; '
    "while :; do i=$((i+1)); "
    "case $((i % 7)) in 0) s=404;; 3) s=201;; *) s=200;; esac; "
    'echo "$(date -u +%FT%TZ) INFO  GET /api/orders/$i $s $((i % 37 + 4))ms"; sleep 0.4; done'
)
DB_LOG = (
    'echo "$(date -u +%FT%TZ) LOG  database system is ready to accept connections"; '
    'while :; do sleep 2; echo "$(date -u +%FT%TZ) LOG  checkpoint complete: wrote 12 buffers"; '
    "done"
)
WORKER_LOG = 'while :; do echo "$(date -u +%FT%TZ) picked job $RANDOM"; sleep 1; done'
WEB_CMD = (
    "mkdir -p /www && echo '<h1>Hello from demo/web</h1>' > /www/index.html && "
    "exec httpd -f -v -p 80 -h /www"
)


def port(preferred: int) -> int:
    """``preferred`` when it is free on 127.0.0.1 and 0.0.0.0, else any free port."""
    try:
        with socket.socket() as s:
            s.bind(("0.0.0.0", preferred))
        return preferred
    except OSError:
        from tests import harness

        return harness.free_port()


@dataclass
class Demo:
    """The project shown in the screenshots, made on a real engine."""

    url: str
    registry: str
    work: Path
    ids: dict[str, str] = field(default_factory=dict)
    pull_ref: str = ""

    def build(self) -> None:
        import docker

        from tests import harness

        client = docker.DockerClient(base_url=self.url, version="auto", timeout=120)
        api = client.api
        tar = harness.busybox_tar(self.work / "busybox.tar")

        def imported(ref: str, title: str) -> None:
            repo, tag = ref.rsplit(":", 1)
            changes = [f"LABEL org.opencontainers.image.title={title}", 'CMD ["sh"]']
            api.import_image(src=str(tar), repository=repo, tag=tag, changes=changes)

        def layered(base: str, ref: str, script: str) -> str:
            cid = api.create_container(base, ["sh", "-c", script])["Id"]
            api.start(cid)
            api.wait(cid, timeout=60)
            repo, tag = ref.rsplit(":", 1) if ref else (None, None)
            image = api.commit(cid, repository=repo, tag=tag, changes=['CMD ["sh"]'])["Id"]
            api.remove_container(cid)
            return str(image)

        imported("demo/web:1.0", "web")
        api.tag("demo/web:1.0", "demo/web", "latest")
        imported("demo/worker:0.9", "worker")
        imported("demo/db:1.4", "db")
        layered(
            "demo/worker:0.9",
            "demo/api:2.1",
            "mkdir -p /app && head -c 3000000 /dev/urandom > /app/bundle.bin && echo 2.1 > /app/V",
        )
        layered("demo/worker:0.9", "", "echo scratch > /tmp/build-cache")  # dangling

        # The image to pull: pushed to the loopback registry, then removed here.
        remote = f"{self.registry}/demo/reports:1.2"
        layered(
            "demo/worker:0.9",
            "demo/reports-stage:1",
            "mkdir -p /opt/reports && head -c 2500000 /dev/urandom > /opt/reports/engine.bin",
        )
        layered(
            "demo/reports-stage:1",
            remote,
            "head -c 2000000 /dev/urandom > /opt/reports/fonts.bin && echo 1.2 > /opt/reports/V",
        )
        for _ in api.push(remote, stream=True, decode=True):
            pass
        api.remove_image(remote)
        api.remove_image("demo/reports-stage:1")

        for name in ("demo-data", "demo-db", "demo-uploads"):
            api.create_volume(name, labels={"com.example.project": "demo"})
        api.create_network("demo-backend", driver="bridge")

        def run(
            name: str,
            image: str,
            command: str,
            ports: dict[int, Any] | None = None,
            env: list[str] | None = None,
            binds: list[str] | None = None,
            backend: bool = False,
            start: bool = True,
            restart: str | None = None,
        ) -> str:
            host = api.create_host_config(
                port_bindings=ports or {},
                binds=binds or [],
                restart_policy={"Name": restart} if restart else None,
            )
            cid = api.create_container(
                image,
                ["sh", "-c", command],
                name=name,
                ports=list(ports or {}),
                environment=env or [],
                host_config=host,
                labels={"com.example.project": "demo"},
            )["Id"]
            if backend:
                api.connect_container_to_network(cid, "demo-backend")
            if start:
                api.start(cid)
            self.ids[name] = cid
            return cid

        run("db", "demo/db:1.4", DB_LOG, {5432: ("127.0.0.1", port(5432))},
            binds=["demo-db:/var/lib/db"], backend=True, restart="unless-stopped")  # fmt: skip
        run("api", "demo/api:2.1", API_LOG, {3000: port(3000)},
            env=["APP_ENV=staging", "DATABASE_URL=postgres://db:5432/app", "LOG_LEVEL=info"],
            binds=["demo-data:/data"], backend=True, restart="unless-stopped")  # fmt: skip
        run("web", "demo/web:1.0", WEB_CMD, {80: port(8080)}, restart="always")
        run("worker", "demo/worker:0.9", WORKER_LOG)
        api.pause(self.ids["worker"])
        for name, image, command in (
            ("migrate", "demo/api:2.1", "echo applying 12 migrations; echo done"),
            ("nightly-report", "demo/worker:0.9", "echo 'upstream timed out' >&2; exit 1"),
        ):
            api.wait(run(name, image, command), timeout=60)
        run("scratch", "demo/web:1.0", "sh", start=False)
        client.close()


class Forward:
    """A loopback TCP port forward to ``upstream`` that can be cut: ``close()`` shuts every
    connection down (the peers see the connection end) and refuses new ones."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self._server = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._server.getsockname()[1]}"
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
                upstream = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                return
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self._server.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the pumps; the peers see the end
            except OSError:
                pass
            sock.close()


class Shooter:
    """Shows windows on the X server and saves what it displays."""

    def __init__(self, out: Path):
        from PySide6.QtWidgets import QApplication

        self.out = out
        self.app = QApplication.instance() or QApplication(["toolbox"])
        self.app.setApplicationName("Toolbox")
        self.saved: list[Path] = []

    def wait(self, condition: Callable[[], object], what: str, timeout: float = 60) -> None:
        common.qt_wait(condition, timeout, what, step_ms=20)

    def settle(self, seconds: float = 0.6) -> None:
        common.qt_idle(seconds)

    def grab(self, widget: Any, name: str) -> Path:
        """Save the screen area of ``widget``'s top-level window, as the X server shows it."""
        from PySide6.QtTest import QTest

        window = widget.window()
        window.raise_()
        window.activateWindow()
        QTest.qWaitForWindowExposed(window, 5000)
        self.settle()
        geometry = window.frameGeometry()
        screen = window.screen() or self.app.primaryScreen()
        pixmap = screen.grabWindow(
            0, geometry.x(), geometry.y(), geometry.width(), geometry.height()
        )
        path = self.out / name
        if not pixmap.save(str(path), "PNG", 0):
            raise RuntimeError(f"could not save {path}")
        size = path.stat().st_size
        print(f"  {path}: {pixmap.width()}x{pixmap.height()}, "
              f"{size // 1024} KB")  # fmt: skip
        if size > MAX_BYTES:
            print(f"  warning: {name} is over {MAX_BYTES // 1000} KB")
        self.saved.append(path)
        return path


def shoot(daemon: Any, demo: Demo, out: Path) -> int:
    from tests.harness import ThrottledProxy
    from toolbox.engine.connect import EngineConfig
    from ui.containers.details import LOGS
    from ui.images.transfer import BAR_STEPS
    from ui.main_window import MainWindow
    from ui.session import EngineSession
    from ui.tasks import TaskRunner

    shots = Shooter(out)
    common.quiet_qt()
    tasks = TaskRunner()
    # The app reaches the engine the way it reaches a machine: mutual TLS on a loopback port
    # forward (here a plain TCP forwarder, closed later to show the engine going away).
    forward = Forward(("127.0.0.1", daemon.tls_port))
    config = EngineConfig.from_url(f"tcp://{forward.address}", cert_path=daemon.tls.cert_path)
    window = MainWindow(tasks, config.describe())
    window.resize(WIDTH, HEIGHT)
    window.move(40, 40)
    window.show()
    session = EngineSession(config, tasks, parent=window)
    window.attach(session)
    session.start()
    shots.wait(lambda: session.connected and session.has_snapshot, "the engine")

    # Containers: the api selected, its logs following.
    page: Any = window.select_page("containers")
    shots.wait(lambda: page.model.row_of(demo.ids["scratch"]) is not None, "every container")
    page.select_ids([demo.ids["api"]])
    page.details.setCurrentIndex(LOGS)
    logs = page.details.logs
    shots.wait(lambda: logs.store.line_count() >= 14, "a screenful of logs", timeout=30)
    page.view.setFocus()
    shots.grab(window, "containers.png")

    # Images.
    images: Any = window.select_page("images")
    shots.wait(lambda: images.model.rowCount() >= 6, "the images")
    images.view.selectRow(0)
    shots.grab(window, "images.png")

    # Pull, mid-way: the registry behind a throttle so the bar stops in the middle.
    registry_port = int(demo.registry.rsplit(":", 1)[1])
    proxy = ThrottledProxy(("127.0.0.1", registry_port), rate=600_000)
    try:
        dialog = images.open_pull_dialog(f"{proxy.address}/demo/reports:1.2")
        dialog.start()
        bar = dialog.bar
        shots.wait(
            lambda: bar.maximum() == BAR_STEPS and bar.value() >= 0.40 * BAR_STEPS,
            "the pull half-way",
            timeout=120,
        )
        shots.grab(dialog, "pull.png")
        dialog.cancel()
        shots.wait(lambda: not dialog.running, "the pull cancelled")
        dialog.close()
    finally:
        proxy.close()

    # Run, with a mistake in the ports.
    page = window.select_page("containers")
    run = page.open_run_dialog("demo/web:1.0")
    run.name_edit.setText("web-preview")
    run.ports_edit.setPlainText("8081:80\n70000:443")
    run.env_edit.setPlainText("APP_ENV=preview")
    run.restart_combo.setCurrentIndex(2)
    shots.wait(lambda: run.errors["ports"].isVisible(), "the ports error")
    shots.grab(run, "run-dialog.png")
    run.reject()

    # Volumes and networks.
    volumes: Any = window.select_page("volumes")
    shots.wait(lambda: volumes.model.rowCount() >= 3, "the volumes")
    volumes.view.selectRow(0)
    shots.grab(window, "volumes.png")
    networks: Any = window.select_page("networks")
    shots.wait(lambda: networks.model.rowCount() >= 4, "the networks")
    shots.grab(window, "networks.png")

    # The forward goes away (as when the machine is suspended or its VM crashed): the banner
    # says so and offers Retry; the list keeps the last known state.
    page = window.select_page("containers")
    logs = page.details.logs
    shots.wait(lambda: logs.store.line_count() >= 14, "the logs followed again", timeout=30)
    forward.close()
    shots.wait(  # past the first loss ("lost the event stream"), at a failed reconnect
        lambda: window.banner.mode == "lost" and "reach" in window.banner.label.text(),
        "the engine-unreachable banner",
    )
    shots.grab(window, "engine-unreachable.png")

    window.close()
    session.close()

    # First run: a fresh window and shell on this run's empty TOOLBOX_HOME, as a new user sees.
    import argparse

    from ui.shell import Shell

    first = MainWindow(tasks, "")
    first.resize(WIDTH, HEIGHT)
    first.move(40, 40)
    first.show()
    shell = Shell(first, tasks, None, argparse.Namespace(engine=None, context=None))
    shell.launch()
    shots.wait(lambda: first.page("machines") is not None, "the first-run page")
    machines: Any = first.page("machines")
    panel = machines.create_panel
    shots.wait(panel.create_button.isEnabled, "the hypervisor probe", timeout=60)
    shots.grab(first, "first-run.png")
    machine_shots(shots, first, shell, panel)
    first.close()
    shell.shutdown()
    return 0


def machine_shots(shots: Shooter, window: Any, shell: Any, panel: Any) -> None:
    """A real QEMU machine made through the first-run panel (from the locally built image
    with the engine baked in, so it takes minutes, not ten): its progress mid-boot, the
    Machines page with it running, and the tray menu. Removed afterwards."""
    from filelock import FileLock
    from PySide6.QtCore import QPoint, QRect

    from benchmarks.machine_start import VM_LOCK
    from benchmarks.vm_io import IMAGE, register_image
    from ui.tray import _install

    lock = FileLock(VM_LOCK, timeout=3600)  # one VM at a time, as the VM tests
    lock.acquire()
    register_image()  # into this run's TOOLBOX_HOME image cache
    panel._load_images()
    shots.wait(lambda: panel.image.findData(IMAGE) >= 0, "the local image in the form")
    panel.image.setCurrentIndex(panel.image.findData(IMAGE))
    tray = _install(shots.app, window, shell.tasks, shell)
    try:
        panel.start_create()
        shots.wait(lambda: panel.rows["boot"].state == "running", "the boot phase", timeout=600)
        shots.settle(8.0)  # the bar and the console's lines move on
        shots.grab(window, "first-run-progress.png")
        shots.wait(lambda: panel.mode == "form" and "running" in panel.detail.text(),
                   "the machine created", timeout=1500)  # fmt: skip
        machines: Any = window.select_page("machines")
        shots.wait(lambda: machines.model.rowCount() == 1, "the machine row")
        shots.wait(
            lambda: machines.model.versions.get("default"),
            "the engine version in the row",
            timeout=120,
        )
        # The shell shows the new machine's containers once its engine answers: come back.
        shots.wait(lambda: shell.session is not None and shell.session.connected, "the engine")
        shots.settle(2.0)
        window.select_page("machines")
        machines.view.selectRow(0)
        shots.settle(1.0)
        shots.wait(lambda: window.page_key() == "machines", "the Machines page shown")
        shots.grab(window, "machines.png")

        # The tray menu (Xvfb has no tray host, so the menu is shown where a click on the
        # icon would open it) with the machine's submenu open.
        tray.refresh()
        shots.wait(lambda: tray.action("stop:default") is not None, "the tray's machine menu")
        tray._timer.stop()  # no menu rebuild (it deletes the actions) while it is shown
        shots.wait(lambda: not shell.tasks.pending("tray:statuses"), "the tray's last refresh")
        menu = tray.menu
        menu.popup(QPoint(700, 60))
        shots.settle()
        entry = next(a for a in menu.actions() if a.menu() is not None)
        menu.setActiveAction(entry)
        entry.menu().popup(menu.geometry().topRight() + QPoint(0, menu.actionGeometry(entry).y()))
        shots.settle(1.0)
        area = QRect(menu.geometry()).united(entry.menu().geometry()).adjusted(-8, -8, 8, 8)
        screen = shots.app.primaryScreen()
        pixmap = screen.grabWindow(0, area.x(), area.y(), area.width(), area.height())
        path = shots.out / "tray-menu.png"
        pixmap.save(str(path), "PNG", 0)
        print(f"  {path}: {pixmap.width()}x{pixmap.height()}")
        shots.saved.append(path)
        entry.menu().hide()
        menu.hide()
    finally:
        with contextlib.suppress(Exception):
            shell.machines.remove("default", force=True)
        lock.release()


def demo_teardown(url: str) -> None:
    """Remove the containers and networks, so the engine leaves no port or bridge rules in
    the host's iptables when it stops (it keeps a user network's rules otherwise)."""
    client = common.api_client(url)
    try:
        for entry in client.containers(all=True):
            client.remove_container(entry["Id"], force=True, v=True)
        for network in client.networks():
            if network["Name"] not in ("bridge", "host", "none"):
                client.remove_network(network["Id"])
    finally:
        client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.screenshots")
    parser.add_argument("--out", type=Path, default=common.ROOT / "docs" / "screenshots")
    args = parser.parse_args(argv)
    if not os.environ.get("DISPLAY"):
        print("No X display: run ./dev screenshots (it uses xvfb-run).", file=sys.stderr)
        return 2
    os.environ.pop("QT_QPA_PLATFORM", None)  # the real xcb platform, not offscreen
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="tbx-shots-"))
    os.environ["TOOLBOX_HOME"] = str(work / "home")
    os.environ["DOCKER_CONFIG"] = str(work / "docker-config")
    from tests import harness
    from ui import settings

    settings.use_settings_file(work / "settings.ini")  # never the user's preferences

    common.heading("screenshots: a private engine and registry with a demo project")
    daemon = harness.PrivateDockerd()
    registry = harness.LocalRegistry()
    try:
        daemon.start()
        registry.start()
        started = time.monotonic()
        demo = Demo(daemon.url, registry.address, work)
        demo.build()
        print(f"  demo project ready in {time.monotonic() - started:.0f} s", flush=True)
        return shoot(daemon, demo, args.out)
    finally:
        if daemon.proc is not None:
            demo_teardown(daemon.url)
        registry.cleanup()
        daemon.cleanup()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
