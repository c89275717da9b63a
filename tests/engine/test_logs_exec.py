"""Logs and exec on the real engine: big logs bounded and streamed, stdout/stderr and TTY
streams, prompt close from another thread; docker exec argv run under a real pty; an
embedded exec session."""

from __future__ import annotations

import datetime as dt
import os
import pty
import select
import shutil
import subprocess
import threading
import time
import tracemalloc

import pytest

from tests.harness import wait_until
from toolbox.engine.client import EngineClient
from toolbox.engine.connect import EngineConfig
from toolbox.engine.records import RunSpec

pytestmark = pytest.mark.engine

LINES = 300_000


@pytest.fixture(scope="module")
def chatty(engine):
    """A container that printed 300,000 numbered lines and then keeps running quietly."""
    with EngineConfig.from_url(engine.url).connect() as c:
        cid = c.run(RunSpec("busybox:latest", command=("sh", "-c", f"seq 1 {LINES}; sleep 600")))
        wait_until(
            lambda: [x.text for x in c.logs(cid, tail=1)] == [str(LINES)], 120, 0.5, "all lines"
        )
        yield cid
        c.remove(cid, force=True)


def test_logs_tail_is_bounded(client: EngineClient, chatty: str) -> None:
    lines = client.logs(chatty, tail=1000)
    assert len(lines) == 1000
    assert lines[0].text == str(LINES - 999) and lines[-1].text == str(LINES)
    assert {line.stream for line in lines} == {"stdout"}
    assert client.logs(chatty, tail=0) == []


def test_follow_logs_streams_every_line_without_holding_them(
    client: EngineClient, chatty: str
) -> None:
    stream = client.follow_logs(chatty, tail=None)
    expected = 1
    tracemalloc.start()
    try:
        for line in stream:
            assert line.text == str(expected)
            expected += 1
            if expected > LINES:
                stream.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert expected == LINES + 1
    # Holding 300,000 LogLine objects would take well over 30 MB; streaming keeps a read's worth.
    assert peak < 8 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB while following"


def test_follow_logs_reads_in_blocks_not_line_by_line(engine, chatty: str) -> None:
    """Over the engine's unix socket the stream is read in blocks of whatever has arrived
    (de-chunked by Toolbox): when the engine sends faster than the reader takes (a log
    flood, which is when it matters), a read returns hundreds of lines, not one HTTP chunk
    each; that is what keeps a flood from starving the GUI thread of the GIL.

    The reader pauses 20 ms after each read so that the engine is the faster side whatever
    the machine's load: a reader that keeps up gets one line per read by design (CI once saw
    277, 278, then 1-line reads when dockerd was the slow side)."""
    with EngineConfig.from_url(engine.url).connect() as c:
        stream = c.follow_logs(chatty, tail=20_000)
        sizes: list[int] = []
        for batch in stream.batches():
            sizes.append(len(batch))
            if sum(sizes) >= 20_000:
                stream.close()
            else:
                time.sleep(0.02)
    assert sum(sizes) == 20_000
    # One line per HTTP chunk would be 20,000 reads; 50 lines a read in 20 ms is a slow engine.
    assert len(sizes) < 20_000 / 50, f"{len(sizes)} reads for 20,000 lines"


def test_close_from_another_thread_ends_a_blocked_follow(client: EngineClient, name: str) -> None:
    cid = client.run(
        RunSpec("busybox:latest", name=name, command=("sh", "-c", "echo ready; sleep 600"))
    )
    stream = client.follow_logs(cid)
    got: list[str] = []
    first = threading.Event()

    def reader() -> None:
        for line in stream:
            got.append(line.text)
            first.set()

    thread = threading.Thread(target=reader)
    thread.start()
    assert first.wait(30)
    time.sleep(0.2)  # let the reader block on the quiet stream (not a synchronisation)
    started = time.monotonic()
    stream.close()
    thread.join(5)
    elapsed = time.monotonic() - started
    assert not thread.is_alive()
    assert got == ["ready"]
    assert elapsed < 1.0, f"reader took {elapsed:.3f} s to stop"


def test_stdout_stderr_partial_lines_and_timestamps(client: EngineClient, name: str) -> None:
    script = 'printf "par"; sleep 0.3; printf "tial\\n"; echo oops >&2; printf "no newline"'
    cid = client.run(RunSpec("busybox:latest", name=name, command=("sh", "-c", script)))
    client.wait(cid, timeout=30)
    lines = client.logs(cid, timestamps=True)
    # The engine copies stdout and stderr separately: order holds within a stream only.
    assert [x.text for x in lines if x.stream == "stdout"] == ["partial", "no newline"]
    assert [x.text for x in lines if x.stream == "stderr"] == ["oops"]
    now = dt.datetime.now(dt.UTC)
    assert all(x.timestamp and abs((now - x.timestamp).total_seconds()) < 120 for x in lines)
    since = client.logs(cid, since=now + dt.timedelta(seconds=5))
    assert since == []


def test_tty_logs_are_split_into_lines(client: EngineClient, name: str) -> None:
    cid = client.run(
        RunSpec("busybox:latest", name=name, command=("sh", "-c", "echo one; echo two"), tty=True)
    )
    client.wait(cid, timeout=30)
    assert [x.text for x in client.logs(cid)] == ["one", "two"]


def _lines(data: bytes) -> list[str]:
    return data.decode(errors="replace").replace("\r", "").split("\n")


def _read_until_line(session, wanted: str, timeout: float = 20) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and wanted not in _lines(data):
        data += session.recv(0.2)
    return data


def test_exec_session_over_tls(engine, client: EngineClient, name: str) -> None:
    if engine.tls is None:
        pytest.skip("no TLS listener")
    cid = client.run(RunSpec("busybox:latest", name=name, command=("sleep", "300")))
    with EngineConfig.from_url(engine.tls.host, engine.tls.cert_path).connect() as tls_client:
        session = tls_client.open_exec_socket(cid, ("sh",), tty=True)
        try:
            session.send(b"echo hi\n")
            assert "hi" in _lines(_read_until_line(session, "hi"))
            session.resize(40, 120)
            session.send(b"stty size\n")
            assert "40 120" in _lines(_read_until_line(session, "40 120"))
            session.send(b"exit 7\n")
            deadline = time.monotonic() + 20
            while not session.eof and time.monotonic() < deadline:
                session.recv(0.2)
            assert session.eof
            wait_until(lambda: session.exit_code() == 7, 10, what="exit code")
        finally:
            session.close()


def test_exec_session_without_tty_is_demultiplexed(client: EngineClient, name: str) -> None:
    cid = client.run(RunSpec("busybox:latest", name=name, command=("sleep", "300")))
    session = client.open_exec_socket(
        cid, ("sh", "-c", "read x; echo got $x; echo err >&2"), tty=False
    )
    try:
        session.send(b"value\n")
        data = b""
        deadline = time.monotonic() + 20
        while not session.eof and time.monotonic() < deadline:
            data += session.recv(0.2)
        # No frame headers left in the output; stdout and stderr may interleave either way.
        assert sorted(_lines(data)) == ["", "err", "got value"]
    finally:
        session.close()


def test_exec_shell_argv_is_exact(engine, client: EngineClient, tmp_path) -> None:
    assert client.exec_shell_argv("web") == ["docker", "-H", engine.url, "exec", "-it", "web", "sh"]
    certs = tmp_path
    tls_config = EngineConfig.from_url("tcp://127.0.0.1:2376", certs)
    assert EngineClient(tls_config, client.api).exec_shell_argv("web", "bash") == [
        "docker",
        "-H",
        "tcp://127.0.0.1:2376",
        "--tlsverify",
        "--tlscacert",
        f"{certs}/ca.pem",
        "--tlscert",
        f"{certs}/cert.pem",
        "--tlskey",
        f"{certs}/key.pem",
        "exec",
        "-it",
        "web",
        "bash",
    ]
    ctx = EngineConfig("tcp://127.0.0.1:2376", name="toolbox-default", context="toolbox-default")
    assert EngineClient(ctx, client.api).exec_shell_argv("web") == [
        "docker",
        "--context",
        "toolbox-default",
        "exec",
        "-it",
        "web",
        "sh",
    ]


def test_exec_shell_argv_runs_in_a_real_terminal(
    engine, client: EngineClient, name: str, tmp_path
) -> None:
    if engine.tls is None or shutil.which("docker") is None:
        pytest.skip("needs the TLS listener and the docker CLI")
    cid = client.run(RunSpec("busybox:latest", name=name, command=("sleep", "300")))
    tls_config = EngineConfig.from_url(engine.tls.host, engine.tls.cert_path)
    argv = EngineClient(tls_config, client.api).exec_shell_argv(name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env["DOCKER_CONFIG"] = str(tmp_path / "cli")
    main, child = pty.openpty()
    proc = subprocess.Popen(argv, stdin=child, stdout=child, stderr=child, env=env, close_fds=True)
    os.close(child)
    try:
        os.write(main, b"echo hi\n")
        data = b""
        deadline = time.monotonic() + 30
        while "hi" not in _lines(data) and time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 0.2)
            if ready:
                try:
                    data += os.read(main, 4096)
                except OSError:
                    break
        assert "hi" in _lines(data), data
        os.write(main, b"exit\n")
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        os.close(main)
    assert client.container(cid).state.is_running
