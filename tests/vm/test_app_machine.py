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
import time
from pathlib import Path

import docker
import pytest
from PySide6.QtCore import Qt

from tests.e2e.test_machine_e2e import IMAGE
from tests.harness import import_busybox
from toolbox.machine.model import MachineState
from toolbox.machine.service import MachineService
from ui.main_window import MainWindow
from ui.shell import Shell

pytestmark = [pytest.mark.vm, pytest.mark.timeout(2400)]

CREATE_WAIT_MS = 1_500_000
START_WAIT_MS = 600_000


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
    high = docker.DockerClient(
        base_url=config.url,
        tls=docker.tls.TLSConfig(
            client_cert=(str(config.tls_cert), str(config.tls_key)),
            ca_cert=str(config.tls_ca),
            verify=True,
        ),
    )
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
