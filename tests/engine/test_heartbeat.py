"""The watcher's heartbeat against a real dockerd frozen with SIGSTOP: the loss is reported
within 10 s (not after a request timeout), and once the engine runs again the watcher
reconnects, re-lists, and streams the events that follow."""

from __future__ import annotations

import os
import signal
import threading
import time

import docker
import pytest

from tests import harness
from toolbox.engine.connect import EngineConfig
from toolbox.engine.watch import ConnectionState, EngineWatcher, Snapshot

pytestmark = [pytest.mark.engine, pytest.mark.timeout(300)]


def test_a_frozen_engine_is_noticed_within_ten_seconds_and_recovered() -> None:
    daemon = harness.PrivateDockerd()  # our own: freezing the shared one would stall others
    daemon.start()
    states: list[tuple[float, ConnectionState, object]] = []
    snapshots: list[Snapshot] = []
    events: list[str] = []
    changed = threading.Condition()

    def on_state(state: ConnectionState, error: object) -> None:
        with changed:
            states.append((time.monotonic(), state, error))
            changed.notify_all()

    def on_snapshot(snap: Snapshot) -> None:
        with changed:
            snapshots.append(snap)
            changed.notify_all()

    def on_event(event: object) -> None:
        with changed:
            events.append(getattr(event, "action", ""))
            changed.notify_all()

    def wait_for(predicate, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with changed:
            while not predicate():
                left = deadline - time.monotonic()
                assert left > 0, f"timed out; states: {[s for _, s, _ in states]}"
                changed.wait(left)

    watcher = EngineWatcher(EngineConfig.from_url(daemon.url), on_snapshot, on_event, on_state)
    watcher.start()
    assert daemon.proc is not None
    pid = daemon.proc.pid
    try:
        wait_for(lambda: snapshots and states[-1][1] is ConnectionState.CONNECTED, 60)
        frozen_at = time.monotonic()
        os.kill(pid, signal.SIGSTOP)
        try:
            wait_for(lambda: states[-1][1] is ConnectionState.DISCONNECTED, 20)
            noticed = states[-1][0] - frozen_at
            error = states[-1][2]
            print(f"\nfrozen engine noticed after {noticed:.1f} s")
            assert noticed <= 10.0
            assert "stopped answering" in getattr(error, "message", str(error))
        finally:
            os.kill(pid, signal.SIGCONT)
        before = len(snapshots)
        wait_for(lambda: len(snapshots) > before and states[-1][1] is ConnectionState.CONNECTED, 90)
        client = docker.DockerClient(base_url=daemon.url, timeout=60)
        try:
            harness.import_busybox(client)
            client.containers.create("busybox:latest", ["true"], name="after-the-freeze")
        finally:
            client.close()
        wait_for(lambda: "create" in events, 30)
    finally:
        watcher.stop(5)
        daemon.cleanup()
