"""The guided create's failure paths on real QEMU guests, through the window: SSH never
answering (the tiny busybox guest of tests/vm/tiny_guest.py boots in seconds and runs no sshd),
and Cancel pressed while the Debian guest boots and while it installs the engine. Each ends
with the phase named and nothing left: no qemu process, no machine folder, no docker context.

The download's failures (404, truncated, cancel mid-download) need no VM:
tests/ui/test_create_failures.py.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from tests.vm import tiny_guest
from toolbox import dockercontext
from toolbox.guest.images import ImageStore
from toolbox.machine.service import MachineService, console_log_path
from ui import settings
from ui.machines.create_panel import CreatePanel
from ui.tasks import TaskRunner

pytestmark = [pytest.mark.vm, pytest.mark.timeout(1800)]

TINY = "tiny-no-ssh"


@pytest.fixture
def tasks(qtbot, tmp_path: Path) -> Iterator[TaskRunner]:
    """The GUI's task runner, with preferences in this test's own INI file."""
    settings.use_settings_file(tmp_path / "settings.ini")
    runner = TaskRunner()
    yield runner
    runner.shutdown(10_000)
    settings.use_settings_file(None)


def qemu_pids(home: Path) -> list[int]:
    """qemu processes whose command line names a path under this test's TOOLBOX_HOME."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and b"qemu-system" in argv[0] and any(str(home).encode() in a for a in argv):
            found.append(int(entry))
    return found


def assert_nothing_left(service: MachineService, home: Path) -> None:
    deadline = time.monotonic() + 30
    while qemu_pids(home) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert qemu_pids(home) == []
    assert service.store.names() == []
    assert not service.store.dir_for("default").exists()
    assert dockercontext.read_context(dockercontext.context_name("default")) is None


def panel_for(qtbot, tasks, service: MachineService, image: str) -> CreatePanel:
    panel = CreatePanel(service, tasks, first_run=True)
    qtbot.addWidget(panel)
    panel.show()
    qtbot.waitUntil(panel.create_button.isEnabled, timeout=60_000)
    qtbot.waitUntil(lambda: panel.image.findData(image) >= 0, timeout=20_000)
    panel.image.setCurrentIndex(panel.image.findData(image))
    return panel


def test_ssh_never_answering_fails_the_boot_phase_with_the_console_hint(
    qtbot, tasks, vm_lock, toolbox_home: Path, tmp_path: Path
) -> None:
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        pytest.skip("the tiny guest's kernel comes from Debian's mirror (apt-get, dpkg-deb)")
    tiny = tiny_guest.ensure_tiny_guest()
    disk = tiny_guest.write_boot_sector_disk(tmp_path / "tiny.raw")
    ImageStore().add(
        TINY,
        disk,
        format="raw",
        arch="amd64",
        source="tests/vm/tiny_guest.py",
        kernel=tiny.kernel,
        initrd=tiny.initrd,
        cmdline=tiny.cmdline,
    )
    service = MachineService(boot_timeout=25.0)
    panel = panel_for(qtbot, tasks, service, TINY)
    qtbot.keyClick(panel.name_edit, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: panel.rows["boot"].state == "running", timeout=120_000)
    qtbot.waitUntil(lambda: panel.mode == "failed", timeout=120_000)
    text = panel.error_label.text()
    assert text.startswith("Boot and wait for SSH: No SSH banner from 127.0.0.1:"), text
    assert "after 25 s" in text, text
    assert "What to do:" in text and "console" in text.lower(), text
    assert panel.rows["boot"].state == "failed"
    assert [panel.rows[k].state for k in ("image", "keys", "seed", "vm")] == ["done"] * 4
    assert_nothing_left(service, toolbox_home)
    # The console log is kept for "Show log": the guest booted and said so.
    assert tiny_guest.READY_MARKER in console_log_path("default").read_text(errors="replace")


def test_cancel_while_booting_and_while_installing_leaves_nothing(
    qtbot, tasks, vm_lock, registered_image: str, toolbox_home: Path
) -> None:
    service = MachineService()
    panel = panel_for(qtbot, tasks, service, registered_image)

    # Cancel while the Debian guest boots (waiting for its SSH banner).
    qtbot.mouseClick(panel.create_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.rows["boot"].state == "running", timeout=120_000)
    qtbot.waitUntil(lambda: bool(qemu_pids(toolbox_home)), timeout=30_000)
    time.sleep(3)
    qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.mode == "form", timeout=60_000)
    assert panel.detail.text() == "Cancelled."
    assert panel.rows["boot"].state == "failed"
    assert_nothing_left(service, toolbox_home)

    # Again, and cancel while the engine installs (apt's output streaming in the panel).
    qtbot.mouseClick(panel.create_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.rows["provision"].state == "running", timeout=600_000)
    qtbot.waitUntil(lambda: panel.output.blockCount() > 3, timeout=300_000)
    cancelled_at = time.monotonic()
    qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.mode == "form", timeout=120_000)
    print(f"\ncancel during the install took {time.monotonic() - cancelled_at:.1f} s")
    assert panel.detail.text() == "Cancelled."
    assert panel.rows["provision"].state == "failed"
    assert_nothing_left(service, toolbox_home)
