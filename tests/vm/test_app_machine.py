"""The app on a real machine: first run on an empty TOOLBOX_HOME creates and starts a QEMU
machine through the window, with real progress per phase; the containers page then shows its
engine; Stop on the Machines page really ends qemu and the engine pages show the "stopped,
Start" placeholder; its Start button boots it again and the containers come back.

QEMU runs under TCG here (no KVM), so this takes minutes; it holds the VM lock like the other
VM tests. The guest image is the locally built one, registered in this test's image cache, so
the create form preselects it (as it does any cached image).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import docker
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from tests.e2e.test_machine_e2e import IMAGE
from tests.harness import import_busybox, register_image_copy
from toolbox.engine.connect import EngineConfig
from toolbox.guest.images import LOCAL_ENGINE_IMAGE_NAME
from toolbox.machine.model import MachineState
from toolbox.machine.service import CreateOptions, MachineService
from ui.main_window import MainWindow
from ui.shell import Shell, machine_config

pytestmark = [pytest.mark.vm, pytest.mark.timeout(2400)]

ENGINE_IMAGE = LOCAL_ENGINE_IMAGE_NAME
CREATE_WAIT_MS = 1_500_000
START_WAIT_MS = 600_000


def docker_client_for(config: EngineConfig) -> docker.DockerClient:
    """docker-py on the machine's engine with its client certificate, verifying its CA."""
    return docker.DockerClient(
        base_url=config.url,
        tls=docker.tls.TLSConfig(
            client_cert=(str(config.tls_cert), str(config.tls_key)),
            ca_cert=str(config.tls_ca),
            verify=True,
        ),
    )


def qemu_pid(service: MachineService, name: str) -> int | None:
    path = service.store.dir_for(name) / "qemu.pid"
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except OSError:
        return None
    return pid


def test_first_run_creates_starts_and_stops_a_machine_from_the_window(
    qtbot, vm_lock, registered_image, monkeypatch, tmp_path: Path
) -> None:
    from ui import settings
    from ui.tasks import TaskRunner

    settings.use_settings_file(tmp_path / "settings.ini")  # never the user's preferences
    tasks = TaskRunner()
    monkeypatch.setattr("ui.shell.local_engine_answers", lambda environ=None: None)
    service = MachineService()
    window = MainWindow(tasks, "")
    qtbot.addWidget(window)
    window.resize(1100, 700)
    window.show()
    shell = Shell(window, tasks, service, argparse.Namespace(engine=None, context=None))
    shell.launch()

    # First run: the guided create, defaults filled in, the local image preselected.
    qtbot.waitUntil(lambda: window.page("machines") is not None, timeout=20_000)
    page = window.page("machines")
    panel = page.create_panel
    qtbot.waitUntil(lambda: page.stack.currentWidget() is panel, timeout=20_000)
    qtbot.waitUntil(panel.create_button.isEnabled, timeout=60_000)  # hypervisor found
    qtbot.waitUntil(lambda: panel.image.currentData() == IMAGE, timeout=20_000)
    assert panel.name_edit.text() == "default"
    assert "QEMU" in panel.hypervisor_label.text()

    # Enter starts it (the primary button is the default one).
    started = time.monotonic()
    with qtbot.waitSignal(panel.created, timeout=CREATE_WAIT_MS) as created:
        qtbot.keyClick(panel.name_edit, Qt.Key.Key_Return)
        assert panel.mode == "running"
    assert created.args == ["default"]
    print(f"\ncreate through the window: {time.monotonic() - started:.0f} s")
    phases = [r.step for r in panel.reports if r.step.count(".") == 1 and r.done]
    for key in ("image", "keys", "seed", "vm", "boot", "provision", "context"):
        assert f"create.{key}" in phases, phases
    assert all(row.state in ("done", "skipped") for row in panel.rows.values())
    inner = [r.fraction for r in panel.reports if r.fraction is not None and not r.done]
    assert any(0 < f < 1 for f in inner), "no partial progress was reported"
    assert service.status("default").state is MachineState.RUNNING
    pid = qemu_pid(service, "default")
    assert pid is not None

    # The engine pages follow: the containers page on the machine's engine.
    qtbot.waitUntil(lambda: shell.session is not None and shell.session.connected, timeout=120_000)
    assert shell.session.config.url == service.get("default").engine_url
    config = shell.session.config
    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):  # they would replace the machine's CA
        monkeypatch.delenv(var, raising=False)
    high = docker_client_for(config)
    import_busybox(high, workdir=tmp_path / "busybox")
    high.containers.create("busybox:latest", ["true"], name="from-test")
    high.close()
    window.select_page("containers")
    containers = window.page("containers")
    assert containers is not None
    qtbot.waitUntil(
        lambda: any(c.name == "from-test" for c in containers.model.records()), timeout=60_000
    )

    # Stop from the Machines page: qemu really exits; engine pages show the placeholder.
    window.select_page("machines")
    qtbot.waitUntil(lambda: page.model.rowCount() == 1, timeout=10_000)
    page.view.selectRow(0)
    qtbot.waitUntil(lambda: page.actions_by_key["stop"].isEnabled(), timeout=10_000)
    page.actions_by_key["stop"].trigger()
    qtbot.waitUntil(lambda: qemu_pid(service, "default") is None, timeout=120_000)
    qtbot.waitUntil(
        lambda: page.model.record_for("default").state is MachineState.STOPPED, timeout=10_000
    )
    window.select_page("containers")
    qtbot.waitUntil(lambda: window.stack.currentWidget() is window.waiting, timeout=10_000)
    assert window.waiting.title.text() == "Machine default is stopped"

    # Start from the placeholder: the machine boots and the containers come back.
    qtbot.mouseClick(window.waiting.button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(
        lambda: shell.session is not None and shell.session.connected, timeout=START_WAIT_MS
    )
    assert qemu_pid(service, "default") not in (None, pid)
    window.select_page("containers")
    qtbot.waitUntil(lambda: window.page("containers") is not None, timeout=10_000)
    again = window.page("containers")
    qtbot.waitUntil(
        lambda: any(c.name == "from-test" for c in again.model.records()), timeout=60_000
    )
    window.close()
    shell.session.close()
    service.remove("default", force=True)
    assert qemu_pid(service, "default") is None
    tasks.shutdown(10_000)
    settings.use_settings_file(None)


@pytest.fixture
def registered_engine_image(engine_guest_image, toolbox_home: Path, tmp_path: Path) -> str:
    """The locally built image with the engine baked in, in this test's own image cache: the
    lifecycle below is about the window and the tray, not the install (the first run above and
    tests/e2e install the engine on the stock image)."""
    return register_image_copy(engine_guest_image, ENGINE_IMAGE, tmp_path / "engine-image")


def wait_seconds(qtbot, condition, timeout_s: float) -> float:
    """Wait for ``condition`` on the event loop; return how long it took."""
    started = time.monotonic()
    qtbot.waitUntil(condition, timeout=int(timeout_s * 1000))
    return time.monotonic() - started


def test_launch_starts_the_stopped_machine_and_the_tray_cli_and_kill_are_followed(
    qtbot, vm_lock, registered_engine_image, monkeypatch, tmp_path: Path
) -> None:
    """With a stopped machine, a launch starts it by itself (the preference's default) and the
    containers page fills; a `toolbox stop` in a terminal shows as Stopped on the Machines page
    within 2 s; Start in the tray menu boots qemu again and the containers come back; a
    `kill -9` of qemu shows as Stopped within 5 s; Stop in the tray menu really ends qemu."""
    from ui import settings
    from ui.tasks import TaskRunner
    from ui.tray import _install

    settings.use_settings_file(tmp_path / "settings.ini")  # never the user's preferences
    assert settings.Preferences.load().start_on_launch  # on by default
    monkeypatch.setattr("ui.shell.local_engine_answers", lambda environ=None: None)
    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(var, raising=False)
    service = MachineService()
    started = time.monotonic()
    service.create(CreateOptions(name="default", image=registered_engine_image))
    print(f"\ncreate from the engine image: {time.monotonic() - started:.0f} s")
    config = machine_config(service, "default")
    high = docker_client_for(config)
    import_busybox(high, workdir=tmp_path / "busybox")
    high.containers.create("busybox:latest", ["true"], name="kept")
    high.close()
    service.stop("default")
    assert qemu_pid(service, "default") is None

    # Launch: the stopped machine starts by itself and the containers page fills.
    tasks = TaskRunner()
    window = MainWindow(tasks, "")
    qtbot.addWidget(window)
    window.resize(1100, 700)
    window.show()
    shell = Shell(window, tasks, service, argparse.Namespace(engine=None, context=None))
    tray = _install(QApplication.instance(), window, tasks, shell)
    shell.launch()
    took = wait_seconds(
        qtbot, lambda: shell.session is not None and shell.session.connected, START_WAIT_MS / 1000
    )
    print(f"launch with the machine stopped -> engine connected: {took:.0f} s")
    first_pid = qemu_pid(service, "default")
    assert first_pid is not None
    window.select_page("containers")
    qtbot.waitUntil(lambda: window.page("containers") is not None, timeout=10_000)
    qtbot.waitUntil(
        lambda: any(c.name == "kept" for c in window.page("containers").model.records()),
        timeout=60_000,
    )

    # A stop in a terminal: the Machines page shows it within 2 s of the command returning.
    window.select_page("machines")
    page = window.page("machines")
    qtbot.waitUntil(
        lambda: (
            page.model.rowCount() == 1
            and page.model.record_for("default").state is MachineState.RUNNING
        ),
        timeout=10_000,
    )
    subprocess.run([sys.executable, "-m", "toolbox", "stop", "default"], check=True, timeout=180)
    took = wait_seconds(
        qtbot, lambda: page.model.record_for("default").state is MachineState.STOPPED, 2.0
    )
    print(f"`toolbox stop` in a terminal -> Stopped on the Machines page: {took:.2f} s")
    qtbot.waitUntil(lambda: state_in_tray(tray) is MachineState.STOPPED, timeout=15_000)

    # Start from the tray menu: qemu comes back, and so do the containers.
    action = tray.action("start:default")
    assert action is not None and action.isEnabled()
    action.trigger()
    qtbot.waitUntil(
        lambda: shell.session is not None and shell.session.connected, timeout=START_WAIT_MS
    )
    second_pid = qemu_pid(service, "default")
    assert second_pid not in (None, first_pid)
    window.select_page("containers")
    qtbot.waitUntil(
        lambda: (
            window.page("containers") is not None
            and any(c.name == "kept" for c in window.page("containers").model.records())
        ),
        timeout=60_000,
    )

    # kill -9 of qemu: Stopped on the Machines page within 5 s.
    window.select_page("machines")
    qtbot.waitUntil(
        lambda: page.model.record_for("default").state is MachineState.RUNNING, timeout=10_000
    )
    assert second_pid is not None
    os.kill(second_pid, signal.SIGKILL)
    took = wait_seconds(
        qtbot, lambda: page.model.record_for("default").state is MachineState.STOPPED, 5.0
    )
    print(f"kill -9 of qemu -> Stopped on the Machines page: {took:.2f} s")

    # Start again from the tray, then Stop from the tray: qemu really exits.
    qtbot.waitUntil(lambda: state_in_tray(tray) is MachineState.STOPPED, timeout=15_000)
    tray.action("start:default").trigger()
    qtbot.waitUntil(
        lambda: shell.session is not None and shell.session.connected, timeout=START_WAIT_MS
    )
    qtbot.waitUntil(lambda: state_in_tray(tray) is MachineState.RUNNING, timeout=15_000)
    third_pid = qemu_pid(service, "default")
    assert third_pid not in (None, second_pid)
    stop = tray.action("stop:default")
    assert stop is not None and stop.isEnabled()
    stop.trigger()
    qtbot.waitUntil(lambda: qemu_pid(service, "default") is None, timeout=120_000)
    qtbot.waitUntil(lambda: state_in_tray(tray) is MachineState.STOPPED, timeout=15_000)
    assert process_gone(third_pid)  # the process ended, not just its pid file

    window.close()
    if shell.session is not None:
        shell.session.close()
    service.remove("default", force=True)
    tasks.shutdown(10_000)
    settings.use_settings_file(None)


def state_in_tray(tray) -> MachineState | None:
    return next((s.state for s in tray.statuses if s.name == "default"), None)


def process_gone(pid: int) -> bool:
    """No such process, or only its zombie (qemu is this test process's child here)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"
