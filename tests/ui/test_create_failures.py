"""The first run's download failures through the window, with the real machine service and the
real QEMU driver: the default image comes from a local HTTP server standing in for Debian's
image host (``TOOLBOX_IMAGE_BASE_URL``). A 404, a truncated download (checksum mismatch) and a
cancel mid-download each end with the phase named, the cause and the hint (no hint for a
cancel, which is the user's own doing), and nothing left of the machine: no record, no folder,
no VM, no docker context. A cancelled download keeps only its ``.part`` file (and the
validator beside it) in the image cache's download folder, which the next try resumes from
(tests/unit/test_guest_download.py); a failed one keeps nothing.

The failures happen before any VM exists, so this needs no VM lock; the real QEMU binary is
found by the hypervisor probe as for a user."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from tests.unit.test_guest_download import ImageServer, payload
from toolbox import dockercontext
from toolbox.guest.download import ChecksumEntry, format_sums
from toolbox.guest.images import ImageStore, default_image
from toolbox.machine.service import MachineService
from ui.machines.create_panel import DEFAULT_IMAGE, CreatePanel

FILE = default_image("qemu").url.rsplit("/", 1)[-1]  # debian-12-genericcloud-<arch>.qcow2


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ImageServer]:
    srv = ImageServer()
    srv.start()
    monkeypatch.setenv("TOOLBOX_IMAGE_BASE_URL", srv.url(""))
    yield srv
    srv.stop()


def first_run_panel(qtbot, tasks) -> tuple[CreatePanel, MachineService]:
    service = MachineService()
    panel = CreatePanel(service, tasks, first_run=True)
    qtbot.addWidget(panel)
    panel.show()
    qtbot.waitUntil(panel.create_button.isEnabled, timeout=60_000)  # QEMU was found
    assert panel.image.currentData() == DEFAULT_IMAGE  # nothing cached: Debian's download
    return panel, service


def assert_nothing_left(service: MachineService) -> None:
    assert service.store.names() == []
    assert not service.store.dir_for("default").exists()
    assert dockercontext.read_context(dockercontext.context_name("default")) is None
    assert ImageStore().list() == []


def leftovers() -> list[str]:
    """What the failed download left in the cache's download folder, except filelock's empty
    lock file (removing it while another process waits on it would let two download at once)."""
    downloads = ImageStore().root / ".downloads"
    if not downloads.exists():
        return []
    return [p.name for p in downloads.iterdir() if not p.name.endswith(".lock")]


def test_a_404_names_the_phase_and_the_url_and_leaves_nothing(
    qtbot, tasks, toolbox_home: Path, server: ImageServer
) -> None:
    server.add(FILE, payload(4096))
    server.add_sums()
    del server.files["/" + FILE]  # listed in SHA512SUMS, gone from the server
    panel, service = first_run_panel(qtbot, tasks)
    qtbot.keyClick(panel.name_edit, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: panel.mode == "failed", timeout=60_000)
    text = panel.error_label.text()
    assert text.startswith("Guest image: "), text
    assert "404" in text and FILE in text, text
    assert "What to do:" in text
    assert "was removed" in text  # the half-made machine is gone, and the user is told
    assert panel.rows["image"].state == "failed"
    assert panel.retry_button.isVisible() and panel.delete_retry_button.isVisible()
    assert_nothing_left(service)
    assert leftovers() == []


def test_a_truncated_download_is_a_checksum_mismatch_and_keeps_no_bytes(
    qtbot, tasks, toolbox_home: Path, server: ImageServer
) -> None:
    whole = payload(3 * 1024 * 1024)
    server.add(FILE, whole)
    server.add_sums()
    server.files["/" + FILE] = whole[: len(whole) // 2]  # a complete response, half the image
    panel, service = first_run_panel(qtbot, tasks)
    qtbot.mouseClick(panel.create_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.mode == "failed", timeout=60_000)
    text = panel.error_label.text()
    assert text.startswith("Guest image: "), text
    assert "Checksum mismatch" in text, text
    assert "What to do:" in text
    assert_nothing_left(service)
    assert leftovers() == []


class SlowServer:
    """Serves one big image slowly (64 KiB every 20 ms), so a cancel lands mid-download."""

    def __init__(self, size: int):
        self.size = size
        self.block = payload(64 * 1024, seed=7)
        whole = hashlib.sha512()
        for _ in range(size // len(self.block)):
            whole.update(self.block)
        self.sums = format_sums([ChecksumEntry(FILE, whole.hexdigest())]).encode()
        self.sent = 0
        self.closed = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if self.path.endswith("SHA512SUMS"):
                    body = server.sums
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(server.size))
                self.end_headers()
                try:
                    for _ in range(server.size // len(server.block)):
                        self.wfile.write(server.block)
                        server.sent += len(server.block)
                        time.sleep(0.02)
                except (TimeoutError, BrokenPipeError, ConnectionResetError):
                    server.closed.set()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_cancel_during_the_download_stops_it_and_leaves_no_machine(
    qtbot, tasks, toolbox_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow = SlowServer(256 * 1024 * 1024)  # about 80 s at this pace: never finishes here
    monkeypatch.setenv("TOOLBOX_IMAGE_BASE_URL", slow.base_url())
    try:
        panel, service = first_run_panel(qtbot, tasks)
        qtbot.mouseClick(panel.create_button, Qt.MouseButton.LeftButton)
        # Real progress first: the bar moves, and the line says how much and how fast.
        qtbot.waitUntil(
            lambda: any(
                r.step == "download" and 0.01 < (r.fraction or 0) < 1 for r in panel.reports
            ),
            timeout=60_000,
        )
        assert panel.rows["image"].state == "running"
        assert panel.bar.value() > 0
        line = panel.detail.text()
        assert "MB/s" in line and "s left" in line, line
        qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: panel.mode == "form", timeout=30_000)
        assert panel.detail.text() == "Cancelled."
        assert panel.create_button.isEnabled()  # the form is back, ready for another try
        sent = slow.sent
        time.sleep(0.5)
        assert slow.sent - sent <= 2 * len(slow.block)  # the transfer really stopped
        assert sent < slow.size
        assert service.store.names() == []
        assert not service.store.dir_for("default").exists()
        assert ImageStore().list() == []
        # Only the partial download and its validator (URL, ETag), for the next try to resume.
        parts = sorted(leftovers())
        assert [p.rsplit(".qcow2", 1)[1] for p in parts] == [".part", ".part.json"], parts
    finally:
        slow.stop()
