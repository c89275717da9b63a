"""The tray: machine menu with Start/Stop on the real MachineService (fake hypervisor),
close-to-tray with a tray host (Xvfb + trayer), close-quits without one (offscreen)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from PySide6.QtWidgets import QMainWindow, QSystemTrayIcon

from tests.unit.machine_fakes import FakeDriver, FakeGuest
from toolbox.drivers.base import VMState
from toolbox.guest.images import ImageStore
from toolbox.machine.model import MachineState
from toolbox.machine.service import CreateOptions, MachineService
from ui.settings import Preferences
from ui.tray import TrayController

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "test-image"


def make_service(tmp_path: Path) -> tuple[MachineService, FakeDriver]:
    driver = FakeDriver()
    guest = FakeGuest(driver)
    images = ImageStore()
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"\0" * 4096)
    images.add(IMAGE, disk, format="raw", arch="amd64", source="test")
    service = MachineService(
        images=images,
        driver_factory=lambda name: driver,
        guest=guest,
        default_driver=lambda: "qemu",
    )
    return service, driver


@pytest.fixture
def machine(tmp_path):
    service, driver = make_service(tmp_path)
    service.create(CreateOptions(name="dev", image=IMAGE))
    service.stop("dev")
    return service, driver


def state_of(tray: TrayController, name: str) -> MachineState | None:
    return next((s.state for s in tray.statuses if s.name == name), None)


def test_menu_lists_machines_and_start_stop_call_the_service(qtbot, tasks, machine):
    service, driver = machine
    window = QMainWindow()
    qtbot.addWidget(window)
    exits: list[bool] = []
    tray = TrayController(
        window, tasks, service, interval_ms=60_000, on_exit=lambda: exits.append(True)
    )
    tray.start()
    qtbot.waitUntil(lambda: state_of(tray, "dev") is MachineState.STOPPED, timeout=10_000)
    start = tray.action("start:dev")
    stop = tray.action("stop:dev")
    assert start is not None and start.isEnabled()
    assert stop is not None and not stop.isEnabled()
    start.trigger()
    qtbot.waitUntil(lambda: state_of(tray, "dev") is MachineState.RUNNING, timeout=15_000)
    assert next(iter(driver.states.values())) is VMState.RUNNING
    stop = tray.action("stop:dev")
    assert stop is not None and stop.isEnabled()
    stop.trigger()
    qtbot.waitUntil(lambda: state_of(tray, "dev") is MachineState.STOPPED, timeout=15_000)


def test_without_a_tray_host_closing_the_window_quits(qtbot, tasks, machine):
    assert not QSystemTrayIcon.isSystemTrayAvailable()  # offscreen has no tray host
    service, _driver = machine
    window = QMainWindow()
    qtbot.addWidget(window)
    window.show()
    exits: list[bool] = []
    tray = TrayController(
        window, tasks, service, interval_ms=60_000, on_exit=lambda: exits.append(True)
    )
    tray.start()
    window.close()
    qtbot.waitUntil(lambda: exits == [True], timeout=5000)
    assert not window.isVisible()


def test_quit_stops_running_machines_when_asked(qtbot, tasks, machine):
    service, _driver = machine
    service.start("dev")
    prefs = replace(Preferences(), stop_on_quit=True)
    window = QMainWindow()
    qtbot.addWidget(window)
    exits: list[bool] = []
    tray = TrayController(
        window, tasks, service, preferences=lambda: prefs, interval_ms=60_000,
        on_exit=lambda: exits.append(True),
    )  # fmt: skip
    tray.start()
    qtbot.waitUntil(lambda: state_of(tray, "dev") is MachineState.RUNNING, timeout=10_000)
    tray.quit()
    qtbot.waitUntil(lambda: exits == [True], timeout=30_000)
    assert {s.name: s.state for s in service.statuses()}["dev"] is MachineState.STOPPED


TRAY_SCRIPT = r"""
import subprocess, sys, time
from PySide6.QtWidgets import QApplication, QMainWindow, QSystemTrayIcon
from tests.ui.test_tray import make_service, IMAGE
from toolbox.machine.model import MachineState
from toolbox.machine.service import CreateOptions
from ui import settings
from ui.tasks import TaskRunner
from ui.tray import TrayController
from pathlib import Path

tmp = Path(sys.argv[1])
settings.use_settings_file(tmp / "settings.ini")
trayer = subprocess.Popen(["trayer", "--edge", "top", "--widthtype", "pixel", "--width", "200"])
try:
    app = QApplication([])
    deadline = time.monotonic() + 20
    while not QSystemTrayIcon.isSystemTrayAvailable() and time.monotonic() < deadline:
        app.processEvents(); time.sleep(0.1)
    print("available", QSystemTrayIcon.isSystemTrayAvailable(), flush=True)
    service, driver = make_service(tmp)
    service.create(CreateOptions(name="dev", image=IMAGE)); service.stop("dev")
    tasks = TaskRunner()
    window = QMainWindow(); window.show()
    exits = []
    tray = TrayController(window, tasks, service, interval_ms=60_000,
                          on_exit=lambda: exits.append(1))
    tray.start()
    def wait(cond, secs=15):
        end = time.monotonic() + secs
        while not cond() and time.monotonic() < end:
            app.processEvents(); time.sleep(0.02)
        return cond()
    state = lambda: next((s.state for s in tray.statuses if s.name == "dev"), None)
    print("listed", wait(lambda: state() is MachineState.STOPPED), flush=True)
    print("icon-visible", tray.icon.isVisible(), flush=True)
    tray.action("start:dev").trigger()
    print("started", wait(lambda: state() is MachineState.RUNNING), flush=True)
    tray.action("stop:dev").trigger()
    print("stopped", wait(lambda: state() is MachineState.STOPPED), flush=True)
    window.close()
    wait(lambda: not window.isVisible(), 2)
    print("hidden-not-quit", (not window.isVisible()) and exits == [], flush=True)
    print("hint-remembered", settings.Preferences.load().tray_hint_shown, flush=True)
    tray.quit()
    print("quit", wait(lambda: exits == [1], 5), flush=True)
    tasks.shutdown(5000)
finally:
    trayer.terminate(); trayer.wait(5)
"""


@pytest.mark.skipif(
    not (shutil.which("xvfb-run") and shutil.which("trayer")),
    reason="needs xvfb-run and trayer (./dev installs them)",
)
def test_with_a_tray_host_the_menu_works_and_close_hides(tmp_path, toolbox_home):
    env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}
    env["QT_QPA_PLATFORM"] = "xcb"
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run(
        ["xvfb-run", "-a", sys.executable, "-c", TRAY_SCRIPT, str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    out = result.stdout.split("\n")
    expected = ["available True", "listed True", "icon-visible True", "started True"]
    expected += ["stopped True", "hidden-not-quit True", "hint-remembered True", "quit True"]
    for line in expected:
        assert line in out, (line, result.stdout, result.stderr[-2000:])
