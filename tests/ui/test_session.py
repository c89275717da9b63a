"""EngineSession against the real engine: snapshot first, events coalesced into deltas, a
client per worker thread, and a clear state when the engine cannot be reached."""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from tests.ui.conftest import unique
from toolbox.engine.connect import EngineConfig
from toolbox.engine.records import (
    Container,
    ContainerState,
    EngineInfo,
    Event,
    EventType,
    parse_timestamp,
)
from toolbox.engine.watch import ConnectionState, Snapshot
from toolbox.errors import EngineUnreachable
from ui.session import Delta, EngineSession

pytestmark = pytest.mark.engine


def test_snapshot_then_container_deltas_in_batches(qtbot, session, docker_client) -> None:
    assert session.has_snapshot and session.info is not None
    assert session.info.version
    assert any("busybox:latest" in i.repo_tags for i in session.images())
    batches: list[int] = []
    deltas: list[Delta] = []
    session.events_received.connect(lambda batch: batches.append(len(batch)))
    session.containers_changed.connect(deltas.append)
    names = [unique("burst") for _ in range(6)]
    for name in names:
        docker_client.api.create_container("busybox:latest", ["true"], name=name)

    def listed() -> bool:
        return {c.name for c in session.containers()} >= set(names)

    qtbot.waitUntil(listed, timeout=10_000)
    assert sum(batches) >= len(names)
    assert len(batches) < len(names)  # coalesced, not one wake-up per event
    assert all(not d.complete for d in deltas)
    gone = names[0]
    docker_client.api.remove_container(gone)
    qtbot.waitUntil(lambda: gone not in {c.name for c in session.containers()}, timeout=10_000)
    assert any(d.removed for d in deltas)


def test_start_and_die_events_give_exact_times(qtbot, session, docker_client) -> None:
    name = unique("times")
    cid = docker_client.api.create_container("busybox:latest", ["sh", "-c", "exit 3"], name=name)[
        "Id"
    ]
    docker_client.api.start(cid)

    def exited():
        c = session.container(cid)
        return c is not None and c.state.name == "EXITED" and c.exit_code == 3

    qtbot.waitUntil(exited, timeout=10_000)
    record = session.container(cid)
    finished = parse_timestamp(docker_client.api.inspect_container(cid)["State"]["FinishedAt"])
    assert record.finished_at is not None and finished is not None
    # From the die event: within a fraction of a second (the list only says "Less than a
    # second ago", "About a minute ago", ...).
    assert abs((record.finished_at - finished).total_seconds()) < 0.5


def test_each_worker_thread_gets_its_own_client(qtbot, session) -> None:
    seen: list[tuple[int, int]] = []
    gate = threading.Barrier(2, timeout=10)

    def probe(client):
        gate.wait()  # both tasks run at once, on two threads
        assert client.ping()
        return threading.get_ident(), id(client)

    for _ in range(2):
        session.call(probe, seen.append)
    qtbot.waitUntil(lambda: len(seen) == 2, timeout=10_000)
    (t1, c1), (t2, c2) = seen
    assert t1 != t2 and c1 != c2
    again: list[tuple[int, int]] = []
    session.call(lambda client: (threading.get_ident(), id(client)), again.append)
    qtbot.waitUntil(lambda: bool(again), timeout=10_000)
    assert again[0] in seen  # a thread reuses its client


def test_unreachable_engine_reports_state_and_retries(qtbot, tasks, tmp_path) -> None:
    config = EngineConfig.from_url(f"unix://{tmp_path}/none.sock")
    session = EngineSession(config, tasks)
    states: list[tuple[ConnectionState, object]] = []
    session.state_changed.connect(lambda state, error: states.append((state, error)))
    session.start()
    try:
        qtbot.waitUntil(
            lambda: any(s is ConnectionState.DISCONNECTED for s, _ in states), timeout=10_000
        )
        error = next(e for s, e in states if s is ConnectionState.DISCONNECTED)
        assert isinstance(error, EngineUnreachable)
        assert error.hint
        assert not session.connected
        count = len(states)
        session.retry_now()
        qtbot.waitUntil(lambda: len(states) >= count + 2, timeout=10_000)  # tried again at once
        failures: list[object] = []
        session.call(lambda client: client.ping(), on_error=failures.append)
        qtbot.waitUntil(lambda: bool(failures), timeout=10_000)
        assert isinstance(failures[0], EngineUnreachable)
    finally:
        session.close()


def test_session_over_mutual_tls(qtbot, engine, tasks) -> None:
    """The engine's TLS listener with the client certificate (REQUESTS_CA_BUNDLE may be set
    here; the engine layer pins the private CA)."""
    if engine.tls is None:
        pytest.skip("engine not started by the harness")
    config = EngineConfig.from_url(engine.tls.host, cert_path=engine.tls.cert_path)
    session = EngineSession(config, tasks)
    session.start()
    try:
        qtbot.waitUntil(lambda: session.connected and session.has_snapshot, timeout=30_000)
        assert "mutual TLS" in session.describe()
        pongs: list[bool] = []
        session.call(lambda client: client.ping(), pongs.append)
        qtbot.waitUntil(lambda: pongs == [True], timeout=10_000)
    finally:
        session.close()


def test_untagged_commit_arrives_as_an_image_change(qtbot, session, docker_client) -> None:
    """``docker commit`` without a tag sends only a container "commit" event; the new dangling
    image must still reach the session through events, not at the next full re-list."""
    name = unique("commit")
    cid = docker_client.api.create_container("busybox:latest", ["true"], name=name)["Id"]
    qtbot.waitUntil(lambda: session.container(cid) is not None, timeout=10_000)
    deltas: list[Delta] = []
    session.images_changed.connect(deltas.append)
    snapshots: list[object] = []
    session.snapshot_ready.connect(snapshots.append)
    image_id = docker_client.api.commit(cid)["Id"]
    try:
        qtbot.waitUntil(lambda: any(i.id == image_id for i in session.images()), timeout=10_000)
        image = next(i for i in session.images() if i.id == image_id)
        assert image.dangling
        assert any(any(i.id == image_id for i in d.records) for d in deltas)
        assert not snapshots  # it came from the events, not a re-list
    finally:
        docker_client.api.remove_container(cid, force=True)
        docker_client.api.remove_image(image_id, force=True)


def test_event_carried_changes_show_before_the_coalesced_fetch(
    qtbot, session, docker_client
) -> None:
    """A rename or a stop in a terminal reaches the row from the event itself, before the
    coalesced (~100 ms) batch that re-fetches the container from the engine."""
    name = unique("quick")
    cid = docker_client.api.create_container(
        "busybox:latest", ["sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait"], name=name
    )["Id"]
    docker_client.api.start(cid)
    qtbot.waitUntil(
        lambda: (c := session.container(cid)) is not None and c.state is ContainerState.RUNNING,
        timeout=10_000,
    )
    qtbot.waitUntil(lambda: not session.tasks.busy, timeout=10_000)
    log: list[tuple[str, object]] = []
    session.containers_changed.connect(lambda delta: log.append(("delta", delta)))
    session.events_received.connect(lambda batch: log.append(("batch", batch)))

    def first(kind: str, match) -> int:
        return next(i for i, (k, value) in enumerate(log) if k == kind and match(value))

    renamed = unique("renamed")
    docker_client.api.rename(cid, renamed)
    qtbot.waitUntil(
        lambda: any(k == "batch" and any(e.action == "rename" for e in v) for k, v in log),
        timeout=10_000,
    )
    shown = first("delta", lambda d: any(c.id == cid and c.name == renamed for c in d.records))
    batched = first("batch", lambda b: any(e.action == "rename" and e.id == cid for e in b))
    assert shown < batched
    assert session.container(cid).name == renamed

    log.clear()
    docker_client.api.stop(cid)
    qtbot.waitUntil(
        lambda: any(k == "batch" and any(e.action == "die" for e in v) for k, v in log),
        timeout=10_000,
    )
    stopped = first(
        "delta",
        lambda d: any(c.id == cid and c.state is ContainerState.EXITED for c in d.records),
    )
    batched = first("batch", lambda b: any(e.action == "die" and e.id == cid for e in b))
    assert stopped < batched
    record = session.container(cid)
    assert record.state is ContainerState.EXITED and record.exit_code == 0
    assert record.finished_at is not None

    log.clear()
    docker_client.api.remove_container(cid)
    qtbot.waitUntil(lambda: session.container(cid) is None, timeout=10_000)
    assert any(k == "delta" and cid in v.removed for k, v in log)


def test_snapshot_in_the_inbox_drops_older_events_and_keeps_newer(qtbot, tasks, tmp_path) -> None:
    """Snapshots and events cross to the GUI thread through one ordered inbox: events queued
    before a snapshot are dropped (the listing contains their effect), events after it are
    applied on top of it, even when all of them arrive before the GUI thread wakes up."""
    session = EngineSession(EngineConfig.from_url(f"unix://{tmp_path}/none.sock"), tasks)
    now = dt.datetime.now(dt.UTC)
    cid = "c" * 64

    def container(state: ContainerState, name: str = "web") -> Container:
        return Container(cid, name, "busybox", "sha256:1", "sh", now, state, "")

    def event(action: str, **attributes: str) -> Event:
        return Event(EventType.CONTAINER, action, cid, attributes, now)

    info = EngineInfo("20.10", "1.41", "linux", "x86_64", 1, 1, "engine")
    snapshot = Snapshot((container(ContainerState.RUNNING),), (), (), (), info, now)
    deltas: list[Delta] = []
    session.containers_changed.connect(deltas.append)

    def watcher_thread() -> None:  # what the watcher does, in this order, on its own thread
        session._event_from_watcher(event("die", exitCode="1"))  # before the listing
        session._snapshot_from_watcher(snapshot)
        session._event_from_watcher(event("rename", name="api"))  # after it

    thread = threading.Thread(target=watcher_thread)
    thread.start()
    thread.join(10)
    qtbot.waitUntil(lambda: len(deltas) >= 2, timeout=5_000)
    assert deltas[0].complete
    record = session.container(cid)
    assert record is not None
    assert record.state is ContainerState.RUNNING  # the older "die" was not applied
    assert record.name == "api"  # the newer rename was
    session.close()
