"""The machines page's disk, Docker version and uptime columns, over the in-memory hypervisor
and guest of tests/unit/machine_fakes.py with real files: the disk column counts the blocks
the machine's disk file takes, the uptime comes from the process in qemu.pid, and the engine
version is asked once per start (not every refresh), off the GUI thread."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.unit.machine_fakes import FakeDriver, FakeGuest
from toolbox.engine.parse import human_duration
from toolbox.errors import EngineUnreachable
from toolbox.guest.images import ImageStore
from toolbox.machine.service import CreateOptions, MachineService
from toolbox.machine.usage import allocated_bytes, process_started_at
from ui.machines.model import DISK, DOCKER, UPTIME, bytes_text
from ui.machines.page import MachinesPage
from ui.pages import PageContext

IMAGE = "test-image"


@pytest.fixture
def service(toolbox_home: Path, tmp_path: Path) -> MachineService:
    images = ImageStore()
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"\0" * 4096)
    images.add(IMAGE, disk, format="raw", arch="amd64", source="test")
    driver = FakeDriver()
    return MachineService(
        images=images,
        driver_factory=lambda name: driver,
        guest=FakeGuest(driver),
        default_driver=lambda: "qemu",
    )


class Versions:
    """Stands in for the engine's version request: counts calls, records the thread."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.threads: set[int] = set()
        self.fail = False

    def __call__(self, service: MachineService, name: str) -> str:
        self.calls.append(name)
        self.threads.add(threading.get_ident())
        if self.fail:
            raise EngineUnreachable("the engine is not up yet")
        return "27.3.1"


def refreshed(qtbot, page: MachinesPage) -> None:
    qtbot.waitUntil(lambda: not page._refreshing, timeout=10_000)
    page.refresh()
    qtbot.waitUntil(lambda: not page._refreshing, timeout=10_000)


def cell(page: MachinesPage, column: int) -> str:
    return str(page.model.data(page.model.index(page.model.row_of("m1") or 0, column)))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="qemu.pid start via /proc")
def test_disk_version_and_uptime_columns(
    qtbot, tasks, service: MachineService, monkeypatch
) -> None:
    service.create(CreateOptions(name="m1", image=IMAGE))
    folder = service.store.dir_for("m1")
    disk = folder / "fake-disk.qcow2"
    with open(disk, "wb") as fh:  # a 2 GiB sparse disk holding 3 MiB
        fh.truncate(2 * 1024**3)
        fh.write(b"\1" * 3 * 1024 * 1024)
    vm = subprocess.Popen(["sleep", "60"])  # stands in for the QEMU process
    (folder / "qemu.pid").write_text(f"{vm.pid}\n")
    versions = Versions()
    monkeypatch.setattr("ui.machines.page.engine_version", versions)
    page = MachinesPage(PageContext(None, tasks, service))
    qtbot.addWidget(page)
    try:
        qtbot.waitUntil(lambda: page.model.row_of("m1") is not None, timeout=10_000)
        for _ in range(3):
            refreshed(qtbot, page)
        assert cell(page, DISK) == f"{bytes_text(allocated_bytes(disk))} of 20 GiB"
        assert cell(page, DISK).startswith("3 MiB")  # the blocks used, not 2 GiB
        assert cell(page, DOCKER) == "27.3.1"
        usage = page.model.usage["m1"]
        assert usage.started_at == process_started_at(vm.pid)  # the "QEMU" in qemu.pid
        seconds = usage.uptime(page.model.now)
        assert seconds is not None and seconds < 60
        assert cell(page, UPTIME) == human_duration(seconds)
        assert versions.calls == ["m1"]  # once for this start, not per refresh
        assert threading.get_ident() not in versions.threads  # asked on a worker

        service.stop("m1")
        refreshed(qtbot, page)
        assert cell(page, DOCKER) == "" and cell(page, UPTIME) == ""
        assert cell(page, DISK).startswith("3 MiB")  # a stopped machine keeps its disk
        vm.kill()
        vm.wait()

        service.start("m1")
        vm = subprocess.Popen(["sleep", "60"])
        (folder / "qemu.pid").write_text(f"{vm.pid}\n")
        versions.fail = True  # the engine is still coming up: retried later, not each refresh
        refreshed(qtbot, page)
        refreshed(qtbot, page)
        assert versions.calls == ["m1", "m1"]
        assert cell(page, DOCKER) == ""
        page._version_failed = {}  # as if the retry delay had passed
        versions.fail = False
        refreshed(qtbot, page)
        assert cell(page, DOCKER) == "27.3.1"
        assert versions.calls == ["m1", "m1", "m1"]
        assert page.model.usage["m1"].started_at == process_started_at(vm.pid)  # the new start
    finally:
        page.shutdown()
        vm.kill()
        vm.wait()
