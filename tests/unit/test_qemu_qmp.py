"""The QMP client against a real QEMU (``-machine none``: no guest, starts in milliseconds),
over a unix socket and over TCP on 127.0.0.1 (what Windows uses)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import free_port, wait_until
from toolbox.drivers.qmp import QMPAddress, QMPClient, QMPError

QEMU = shutil.which("qemu-system-x86_64")
pytestmark = pytest.mark.skipif(QEMU is None, reason="qemu-system-x86_64 is not installed")


def _start(address: QMPAddress, extra: list[str] | None = None) -> subprocess.Popen[bytes]:
    assert QEMU is not None
    argv = [QEMU, "-machine", "none", "-nodefaults", "-display", "none"]
    argv += ["-qmp", address.qemu_option(), *(extra or [])]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _connectable(address: QMPAddress) -> bool:
    try:
        with QMPClient(address, timeout=2):
            return True
    except QMPError:
        return False


@pytest.fixture
def qemu_unix(tmp_path: Path) -> Iterator[QMPAddress]:
    address = QMPAddress(path=tmp_path / "qmp.sock")
    proc = _start(address, ["-netdev", "user,id=net0"])
    try:
        wait_until(lambda: _connectable(address), timeout=20, what="QMP socket")
        yield address
    finally:
        proc.kill()
        proc.wait(timeout=20)


def test_handshake_status_and_events(qemu_unix: QMPAddress) -> None:
    with QMPClient(qemu_unix) as q:
        assert "QMP" in q.greeting
        assert q.greeting["QMP"]["version"]["qemu"]["major"] >= 5
        assert q.execute("query-status")["status"] in ("running", "prelaunch")
        q.execute("stop")
        assert q.execute("query-status")["status"] == "paused"
        # The STOP event arrives interleaved with replies; the client keeps it aside.
        assert q.wait_event("STOP", timeout=5) is not None
        q.execute("cont")
        assert q.wait_event("RESUME", timeout=5) is not None


def test_errors_raise_qmp_error_with_a_hint(qemu_unix: QMPAddress) -> None:
    with QMPClient(qemu_unix) as q:
        with pytest.raises(QMPError) as exc:
            q.execute("no-such-command")
        assert "no-such-command" in exc.value.message
        assert exc.value.hint
        # The session still works after an error.
        assert "status" in q.execute("query-status")


def test_hmp_hostfwd_add_and_remove_open_and_close_a_real_listener(qemu_unix: QMPAddress) -> None:
    port = free_port()
    with QMPClient(qemu_unix) as q:
        assert q.hmp(f"hostfwd_add net0 tcp:127.0.0.1:{port}-:22").strip() == ""
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        assert "removed" in q.hmp(f"hostfwd_remove net0 tcp:127.0.0.1:{port}")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        out = q.hmp(f"hostfwd_remove net0 tcp:127.0.0.1:{port}")
        assert "not found" in out.lower()


def test_tcp_qmp_on_loopback(tmp_path: Path) -> None:
    address = QMPAddress(port=free_port())
    assert address.qemu_option() == f"tcp:127.0.0.1:{address.port},server=on,wait=off"
    proc = _start(address)
    try:
        wait_until(lambda: _connectable(address), timeout=20, what="QMP over TCP")
        with QMPClient(address) as q:
            assert "status" in q.execute("query-status")
            q.quit()
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=20)


def test_unreachable_monitor_is_a_qmp_error(tmp_path: Path) -> None:
    with pytest.raises(QMPError) as exc:
        QMPClient(QMPAddress(path=tmp_path / "nothing.sock"), timeout=1).connect()
    assert "not running" in (exc.value.hint or "")


def test_something_else_on_the_port_is_refused(tmp_path: Path) -> None:
    """A listener that is not QMP (sends a non-JSON line) is reported, not trusted."""
    srv = socket.socket(socket.AF_UNIX)
    path = tmp_path / "fake.sock"
    srv.bind(str(path))
    srv.listen(1)
    try:
        client = QMPClient(QMPAddress(path=path), timeout=3)

        import threading

        def serve() -> None:
            conn, _ = srv.accept()
            conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
            time.sleep(0.5)
            conn.close()

        t = threading.Thread(target=serve)
        t.start()
        with pytest.raises(QMPError) as exc:
            client.connect()
        t.join(timeout=5)
        assert "not JSON" in exc.value.message
    finally:
        srv.close()


def test_address_needs_exactly_one_of_path_and_port() -> None:
    with pytest.raises(ValueError):
        QMPAddress()
    with pytest.raises(ValueError):
        QMPAddress(path=Path("/x"), port=1)


def test_live_forwards_are_read_back_from_info_usernet(qemu_unix: QMPAddress) -> None:
    """The host agent rebuilds what is forwarded from the hypervisor, not from memory: a
    real QEMU's ``info usernet`` after hostfwd_add, parsed; a taken port is refused."""
    from toolbox.drivers.qemu import parse_usernet

    tcp, udp = free_port(), free_port()
    with QMPClient(qemu_unix) as q:
        assert q.hmp(f"hostfwd_add net0 tcp:127.0.0.1:{tcp}-:8080").strip() == ""
        assert q.hmp(f"hostfwd_add net0 udp:127.0.0.1:{udp}-:53").strip() == ""
        # The same host port again: QEMU cannot bind it and says so as text.
        refused = q.hmp(f"hostfwd_add net0 tcp:127.0.0.1:{tcp}-:9090")
        assert "could not" in refused.lower()
        found = {
            (f.protocol, f.host_ip, f.host_port, f.guest_port)
            for f in parse_usernet(q.hmp("info usernet"))
        }
    assert found == {("tcp", "127.0.0.1", tcp, 8080), ("udp", "127.0.0.1", udp, 53)}


def test_info_usernet_recorded_output_is_parsed() -> None:
    from toolbox.drivers.qemu import parse_usernet

    text = (Path(__file__).resolve().parents[1] / "data" / "qemu" / "info-usernet.txt").read_text()
    got = [(f.name, f.protocol, f.host_ip, f.host_port, f.guest_port) for f in parse_usernet(text)]
    # A connection in progress (ESTABLISHED) is not a forward; "*" is every address.
    assert got == [
        ("live-tcp-18081", "tcp", "0.0.0.0", 18081, 18081),
        ("live-tcp-27437", "tcp", "127.0.0.1", 27437, 22),
        ("live-tcp-27008", "tcp", "127.0.0.1", 27008, 2376),
        ("live-udp-15353", "udp", "127.0.0.1", 15353, 15353),
    ]
