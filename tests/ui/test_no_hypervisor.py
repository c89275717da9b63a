"""No usable hypervisor: the first run shows what to install on this OS, why, with links, and
checks again (on a worker) when the app becomes active; once a driver is usable the create
form takes its place."""

from __future__ import annotations

import argparse
import platform
import threading
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication

from tests.unit.machine_fakes import FakeDriver, FakeGuest
from toolbox.drivers.base import Availability
from toolbox.machine.service import MachineService
from ui.machines.no_hypervisor import NoHypervisorPanel, advice_html, install_advice
from ui.main_window import MainWindow
from ui.shell import Shell


class CountingDriver(FakeDriver):
    """The fake hypervisor, recording on which threads it was probed."""

    def __init__(self) -> None:
        super().__init__(usable=False)
        self.probed_on: list[int] = []

    def availability(self) -> Availability:
        self.probed_on.append(threading.get_ident())
        return super().availability()


def activate() -> None:
    """What the platform does when the user comes back to the app."""
    app = QGuiApplication.instance()
    assert isinstance(app, QGuiApplication)
    app.applicationStateChanged.emit(Qt.ApplicationState.ApplicationActive)


def test_first_run_without_a_hypervisor_then_one_is_installed(
    qtbot, tasks, monkeypatch, toolbox_home: Path
) -> None:
    monkeypatch.setattr("ui.shell.local_engine_answers", lambda environ=None: None)
    driver = CountingDriver()
    service = MachineService(
        driver_factory=lambda name: driver, guest=FakeGuest(driver), default_driver=lambda: "qemu"
    )
    window = MainWindow(tasks, "")
    qtbot.addWidget(window)
    window.show()
    shell = Shell(window, tasks, service, argparse.Namespace(engine=None, context=None))
    shell.launch()
    qtbot.waitUntil(lambda: window.page_key() == "machines", timeout=20_000)
    page = window.page("machines")
    assert page is not None
    panel = page.no_hypervisor
    qtbot.waitUntil(lambda: page.stack.currentWidget() is panel, timeout=20_000)
    assert panel.usable is False
    text = panel.text.text()
    assert "needs a hypervisor" in text  # why
    for step in install_advice().steps:  # what, for this OS
        assert step.split(": ", 1)[-1] in text
    assert 'href="https://www.qemu.org/download/' in text  # where
    assert panel.text.openExternalLinks()
    assert "not installed" in panel.reasons.text()  # what the probe found
    assert threading.get_ident() not in driver.probed_on  # probed off the GUI thread
    window.select_page("containers")
    assert window.waiting.title.text() == "No hypervisor installed"
    window.select_page("machines")

    # Nothing installed yet: coming back re-checks and the page stays.
    checks = panel.checks
    activate()
    qtbot.waitUntil(lambda: panel.checks > checks, timeout=10_000)
    assert page.stack.currentWidget() is panel

    driver.usable = True  # the user installed QEMU and comes back to the window
    with qtbot.waitSignal(panel.checked, timeout=10_000) as checked:
        activate()
    assert checked.args == [True]
    assert page.stack.currentWidget() is page.create_panel
    window.close()
    shell.shutdown()


def test_the_check_again_button_and_no_check_while_hidden(qtbot, tasks) -> None:
    found = [("qemu", Availability(False, None, "qemu-system-x86_64 was not found", "Install"))]
    calls: list[int] = []

    def probe() -> list[tuple[str, Availability]]:
        calls.append(1)
        return list(found)

    panel = NoHypervisorPanel(probe, tasks, system="Linux")
    qtbot.addWidget(panel)
    activate()  # hidden: nothing to re-check for
    qtbot.wait(50)
    assert calls == []
    panel.show()
    with qtbot.waitSignal(panel.checked, timeout=10_000) as checked:
        qtbot.mouseClick(panel.check_button, Qt.MouseButton.LeftButton)
    assert checked.args == [False]
    assert "qemu-system-x86_64 was not found" in panel.reasons.text()
    assert panel.status.text().startswith("Checked at ")
    found[0] = ("qemu", Availability(True, "8.2"))
    with qtbot.waitSignal(panel.checked, timeout=10_000) as checked:
        activate()
    assert checked.args == [True]
    assert len(calls) == 2


@pytest.mark.parametrize(
    ("system", "wanted"),
    [
        ("Darwin", ["brew install qemu", "virtualbox.org", "https://brew.sh"]),
        ("Windows", ["virtualbox.org", "qemu.org/download/#windows", "Hypervisor Platform"]),
        ("Linux", ["apt-get install qemu-system-x86 qemu-utils", "dnf install qemu-system-x86"]),
    ],
)
def test_install_advice_per_os(system: str, wanted: list[str]) -> None:
    text = advice_html(install_advice(system))
    for piece in wanted:
        assert piece in text
    assert install_advice(system).links  # every OS gets somewhere to download from


def test_advice_follows_this_computer() -> None:
    names = {"Darwin": "macOS", "Windows": "Windows"}
    assert install_advice().system == names.get(platform.system(), "Linux")
