"""The guided create's failure path with the machine service over the in-memory hypervisor and
guest of tests/unit/machine_fakes.py (the real store, image cache and files): a failed create
leaves nothing behind, says so, and Retry or Delete and retry creates the machine afresh."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from tests.unit.machine_fakes import FakeDriver, FakeGuest
from toolbox.guest.images import ImageStore
from toolbox.machine.service import MachineService
from ui.machines.create_panel import CreatePanel

IMAGE = "test-image"


@pytest.fixture
def fakes(toolbox_home: Path, tmp_path: Path) -> tuple[FakeDriver, FakeGuest, MachineService]:
    images = ImageStore()
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"\0" * 4096)
    images.add(IMAGE, disk, format="raw", arch="amd64", source="test")
    driver = FakeDriver()
    guest = FakeGuest(driver)
    service = MachineService(
        images=images,
        driver_factory=lambda name: driver,
        guest=guest,
        default_driver=lambda: "qemu",
    )
    return driver, guest, service


@pytest.mark.parametrize("button", ["retry_button", "delete_retry_button"])
def test_a_failed_create_keeps_nothing_and_creates_afresh(
    qtbot, tasks, fakes: tuple[FakeDriver, FakeGuest, MachineService], button: str
) -> None:
    driver, guest, service = fakes
    panel = CreatePanel(service, tasks, first_run=True)
    qtbot.addWidget(panel)
    panel.show()
    qtbot.waitUntil(lambda: panel.image.currentData() == IMAGE, timeout=10_000)
    qtbot.waitUntil(panel.create_button.isEnabled, timeout=20_000)  # a hypervisor was found
    guest.fail_provision = 1
    qtbot.mouseClick(panel.create_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.mode == "failed", timeout=20_000)
    text = panel.error_label.text()
    assert "engine install failed" in text
    assert "The half-made machine 'default' was removed" in text
    assert not service.store.dir_for("default").exists()
    assert "remove default" in driver.calls
    with qtbot.waitSignal(panel.created, timeout=20_000) as created:
        qtbot.mouseClick(getattr(panel, button), Qt.MouseButton.LeftButton)
    assert created.args == ["default"]
    assert service.get("default").complete
    assert driver.calls.count("create default") == 2  # made afresh, not resumed
