"""EngineWatcher on the real engine: snapshot then events, prompt stop, reconnect after the
engine restarts with a full re-list (nothing missed), retry_now, and the safety-net re-list.

The restart test restarts the session's dockerd; it runs last in this package's order."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import pytest

from tests import harness
from toolbox.engine.connect import EngineConfig
from toolbox.engine.records import ContainerState, Event, EventType
from toolbox.engine.watch import ConnectionState, EngineWatcher, Snapshot, SnapshotReason
from toolbox.errors import ToolboxError

pytestmark = pytest.mark.engine


@dataclass
class Recorder:
    """What a UI model would do with the callbacks: keep a live set of container ids."""

    snapshots: list[Snapshot] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    states: list[tuple[ConnectionState, ToolboxError | None]] = field(default_factory=list)
    containers: dict[str, ContainerState | None] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_snapshot(self, snapshot: Snapshot) -> None:
        with self.lock:
            self.snapshots.append(snapshot)
            self.containers = {c.id: c.state for c in snapshot.containers}

    def on_event(self, event: Event) -> None:
        with self.lock:
            self.events.append(event)
            if event.type is EventType.CONTAINER:
                if event.action == "destroy":
                    self.containers.pop(event.id, None)
                elif event.action == "create":
                    self.containers.setdefault(event.id, ContainerState.CREATED)
                elif event.action == "start":
                    self.containers[event.id] = ContainerState.RUNNING

    def on_state(self, state: ConnectionState, error: ToolboxError | None) -> None:
        with self.lock:
            self.states.append((state, error))

    def watcher(self, config: EngineConfig, **kwargs) -> EngineWatcher:
        return EngineWatcher(config, self.on_snapshot, self.on_event, self.on_state, **kwargs)

    def count(self, state: ConnectionState) -> int:
        with self.lock:
            return sum(1 for s, _ in self.states if s is state)


def _stop_promptly(watcher: EngineWatcher, thread: threading.Thread) -> float:
    started = time.monotonic()
    watcher.stop()
    elapsed = time.monotonic() - started
    thread.join(5)
    assert not thread.is_alive()
    return elapsed


def test_snapshot_then_events_then_prompt_stop(engine, docker_client) -> None:
    rec = Recorder()
    watcher = rec.watcher(EngineConfig.from_url(engine.url))
    thread = watcher.start()
    try:
        harness.wait_until(lambda: rec.count(ConnectionState.CONNECTED) == 1, 30, what="connected")
        first = rec.snapshots[0]
        assert first.reason is SnapshotReason.CONNECT
        assert any("busybox:latest" in i.repo_tags for i in first.images)
        assert {"bridge", "host", "none"} <= {n.name for n in first.networks}
        assert first.info.version
        cid = docker_client.api.create_container("busybox:latest", ["sleep", "300"])["Id"]
        docker_client.api.start(cid)
        harness.wait_until(
            lambda: rec.containers.get(cid) is ContainerState.RUNNING, 30, what="start event"
        )
        assert [s for s, _ in rec.states] == [ConnectionState.CONNECTING, ConnectionState.CONNECTED]
    finally:
        elapsed = _stop_promptly(watcher, thread)
    assert elapsed < 1.5, f"stop() took {elapsed:.2f} s"
    assert watcher.state is ConnectionState.STOPPED
    before = len(rec.events)
    docker_client.api.remove_container(cid, force=True)
    time.sleep(0.3)  # give a (wrong) late callback the chance to arrive
    assert len(rec.events) == before, "a callback ran after stop()"


def test_retry_now_skips_the_backoff(engine) -> None:
    rec = Recorder()
    closed = EngineConfig.from_url(f"tcp://127.0.0.1:{harness.free_port()}")
    watcher = rec.watcher(closed, min_backoff=30.0, max_backoff=30.0, request_timeout=2)
    thread = watcher.start()
    try:
        harness.wait_until(
            lambda: rec.count(ConnectionState.DISCONNECTED) == 1, 20, what="first failure"
        )
        _, error = rec.states[-1]
        assert error is not None and error.hint
        assert watcher.next_retry == 30.0
        watcher.retry_now()
        harness.wait_until(
            lambda: rec.count(ConnectionState.DISCONNECTED) == 2, 10, what="retried at once"
        )
    finally:
        elapsed = _stop_promptly(watcher, thread)
    assert elapsed < 1.5, f"stop() during backoff took {elapsed:.2f} s"


def test_safety_net_relists_without_disconnecting(engine) -> None:
    rec = Recorder()
    watcher = rec.watcher(EngineConfig.from_url(engine.url), safety_interval=0.3)
    thread = watcher.start()
    try:
        harness.wait_until(lambda: len(rec.snapshots) >= 3, 30, what="safety re-lists")
        watcher.refresh()
        harness.wait_until(
            lambda: any(s.reason is SnapshotReason.REQUESTED for s in rec.snapshots),
            30,
            what="refresh",
        )
    finally:
        _stop_promptly(watcher, thread)
    assert rec.snapshots[1].reason is SnapshotReason.SAFETY
    assert rec.count(ConnectionState.DISCONNECTED) == 0
    assert rec.count(ConnectionState.CONNECTED) == 1


def test_refreshes_during_concurrent_changes_miss_nothing(engine, docker_client) -> None:
    """Containers created and removed while re-lists run back to back: every change lands
    either in a snapshot or in the events replayed after it (the re-list's clock is never later
    than its container list)."""
    rec = Recorder()
    watcher = rec.watcher(EngineConfig.from_url(engine.url))
    thread = watcher.start()
    made: list[str] = []
    done = threading.Event()

    def churn() -> None:
        client = engine.client()
        try:
            for i in range(30):
                cid = client.api.create_container("busybox:latest", ["true"])["Id"]
                made.append(cid)
                if i % 3 == 2:
                    client.api.remove_container(made[-2])
        finally:
            client.close()
            done.set()

    try:
        harness.wait_until(lambda: rec.snapshots, 30, what="first snapshot")
        worker = threading.Thread(target=churn)
        worker.start()
        while not done.is_set():
            count = len(rec.snapshots)
            watcher.refresh()
            harness.wait_until(lambda c=count: len(rec.snapshots) > c, 30, what="re-list")
        worker.join(30)
        listed = {c["Id"] for c in docker_client.api.containers(all=True)}
        harness.wait_until(lambda: set(rec.containers) == listed, 10, what="same as the engine")
        assert len(rec.snapshots) > 3
    finally:
        _stop_promptly(watcher, thread)


def test_reconnects_after_engine_restart_and_misses_nothing(engine, docker_client) -> None:
    if engine.daemon is None:
        pytest.skip("cannot restart an engine the harness did not start")
    rec = Recorder()
    watcher = rec.watcher(EngineConfig.from_url(engine.url), max_backoff=2.0)
    thread = watcher.start()
    try:
        harness.wait_until(lambda: rec.count(ConnectionState.CONNECTED) == 1, 30, what="connected")
        engine.restart()
        # Made the moment the engine is back, most likely before the watcher reconnects:
        # only the re-list (or the replayed events) can tell the watcher about it.
        fresh = engine.client()
        try:
            just_after = fresh.api.create_container("busybox:latest", ["true"])["Id"]
        finally:
            fresh.close()
        harness.wait_until(
            lambda: just_after in rec.containers, 60, what="container seen after restart"
        )
        harness.wait_until(
            lambda: rec.count(ConnectionState.CONNECTED) == 2, 30, what="reconnected"
        )
        disconnected = [e for s, e in rec.states if s is ConnectionState.DISCONNECTED]
        assert disconnected and all(e is not None and e.hint for e in disconnected)
        assert rec.snapshots[-1].reason is SnapshotReason.RECONNECT
        # And the stream is live again after the reconnect.
        later = docker_client.api.create_container("busybox:latest", ["true"])["Id"]
        harness.wait_until(lambda: later in rec.containers, 30, what="event after reconnect")
    finally:
        elapsed = _stop_promptly(watcher, thread)
    assert elapsed < 1.5
