"""The event cache without Qt or an engine: snapshot, events applied at once, what a batch
asks the engine for, and stale answers dropped so rows never step backwards. Records are
built from list-API and events-API entries shaped as dockerd 20.10 sends them."""

from __future__ import annotations

import datetime as dt

from toolbox.engine.cache import (
    ContainerFetch,
    Delta,
    EngineCache,
    Refresh,
    refresh_for,
)
from toolbox.engine.records import (
    Container,
    ContainerState,
    EngineInfo,
    Event,
    EventType,
    Image,
)
from toolbox.engine.watch import Snapshot

NOW = dt.datetime(2026, 12, 7, 1, 0, 0, tzinfo=dt.UTC)
WEB, DB, NEW = "a" * 64, "b" * 64, "c" * 64
INFO = EngineInfo("20.10.24", "1.41", "linux", "x86_64", 2, 1, "engine")


def row(cid: str, name: str, state: str = "running", status: str = "Up About a minute") -> dict:
    return {
        "Id": cid,
        "Names": [f"/{name}"],
        "Image": "busybox:latest",
        "ImageID": "sha256:" + "1" * 64,
        "Command": "sh",
        "Created": int(NOW.timestamp()) - 600,
        "State": state,
        "Status": status,
        "Ports": [],
        "Labels": {},
        "Mounts": [],
        "NetworkSettings": {"Networks": {"bridge": {}}},
    }


def container(cid: str, name: str, state: str = "running", status: str = "Up 2 minutes"):
    return Container.from_api(row(cid, name, state, status), now=NOW)


def event(kind: str, action: str, actor: str, seconds: float = 0, **attributes: str) -> Event:
    when = NOW + dt.timedelta(seconds=seconds)
    return Event.from_api(
        {
            "Type": kind,
            "Action": action,
            "Actor": {"ID": actor, "Attributes": attributes},
            "time": int(when.timestamp()),
            "timeNano": int(when.timestamp() * 1e9),
        }
    )


def snapshot(*containers: Container, images: tuple[Image, ...] = ()) -> Snapshot:
    return Snapshot(tuple(containers), images, (), (), INFO, NOW)


def cache_with(*containers: Container) -> EngineCache:
    cache = EngineCache()
    cache.apply_snapshot(snapshot(*containers))
    return cache


def test_snapshot_replaces_everything() -> None:
    cache = EngineCache()
    assert not cache.has_snapshot and cache.containers() == []
    cache.apply_snapshot(snapshot(container(WEB, "web"), container(DB, "db")))
    assert cache.has_snapshot and cache.info == INFO
    assert [c.name for c in cache.containers()] == ["web", "db"]
    cache.apply_snapshot(snapshot(container(DB, "db")))
    assert [c.name for c in cache.containers()] == ["db"]
    assert cache.container(WEB) is None


def test_events_apply_at_once_with_exact_times() -> None:
    cache = cache_with(container(WEB, "web"), container(DB, "db", "exited", "Exited (0) 1 hour"))
    delta = cache.apply_events(
        [
            event("container", "die", WEB, 1, exitCode="137", name="web"),
            event("container", "rename", DB, 2, name="db-old", oldName="/db"),
        ]
    )
    assert delta is not None and not delta.complete and delta.removed == ()
    by_id = {c.id: c for c in delta.records}
    web = by_id[WEB]
    assert web.state is ContainerState.EXITED and web.exit_code == 137
    assert web.finished_at == NOW + dt.timedelta(seconds=1)
    assert by_id[DB].name == "db-old"
    assert cache.container(WEB) == web


def test_quiet_and_unknown_containers_change_nothing() -> None:
    cache = cache_with(container(WEB, "web"))
    assert cache.apply_events([event("container", "exec_start: sh", WEB)]) is None
    assert cache.apply_events([event("container", "create", NEW, name="new")]) is None
    assert cache.apply_events([event("image", "pull", "busybox:latest")]) is None


def test_destroy_removes_the_row() -> None:
    cache = cache_with(container(WEB, "web"), container(DB, "db"))
    delta = cache.apply_events([event("container", "destroy", WEB, name="web")])
    assert delta == Delta((), (WEB,))
    assert [c.id for c in cache.containers()] == [DB]


def test_a_batch_names_what_to_ask_the_engine() -> None:
    wanted = refresh_for(
        [
            event("container", "create", NEW, name="new"),
            event("container", "start", NEW, name="new"),
            event("container", "exec_die", WEB),
            event("container", "commit", WEB, comment=""),
            event("network", "connect", "n" * 64, container=DB, name="bridge"),
            event("volume", "create", "data", driver="local"),
            event("daemon", "reload", "engine"),
        ]
    )
    assert wanted == Refresh(
        (NEW, DB), frozenset({EventType.IMAGE, EventType.NETWORK, EventType.VOLUME})
    )
    assert not refresh_for([event("container", "resize", WEB, height="40", width="120")])


def test_fetch_answer_fills_in_and_removes() -> None:
    cache = cache_with(container(WEB, "web"), container(DB, "db"))
    cache.apply_events([event("container", "create", NEW, name="new")])
    mark = cache.mark()
    fetched = container(NEW, "new", "created", "Created")
    delta = cache.apply_fetch(mark, ContainerFetch((fetched,), (DB,)))
    assert delta == Delta((fetched,), (DB,))
    assert {c.id for c in cache.containers()} == {WEB, NEW}
    assert cache.apply_fetch(cache.mark(), ContainerFetch((fetched,))) is None  # no change


def test_fetch_started_before_newer_events_is_dropped_for_those_rows() -> None:
    """The fetch was asked for after "start"; a "die" came before its answer: the answer
    (still running) must not undo the die."""
    cache = cache_with(container(WEB, "web", "exited", "Exited (0) 1 minute ago"))
    cache.apply_events([event("container", "start", WEB, 1)])
    mark = cache.mark()
    cache.apply_events([event("container", "die", WEB, 2, exitCode="1")])
    stale = container(WEB, "web", "running", "Up 1 second")
    assert cache.apply_fetch(mark, ContainerFetch((stale,))) is None
    kept = cache.container(WEB)
    assert kept is not None and kept.state is ContainerState.EXITED and kept.exit_code == 1
    # The fetch asked after the die is applied, with the die's exact time.
    answer = container(WEB, "web", "exited", "Exited (1) Less than a second ago")
    delta = cache.apply_fetch(cache.mark(), ContainerFetch((answer,)))
    assert delta is not None
    assert delta.records[0].finished_at == NOW + dt.timedelta(seconds=2)


def test_answers_from_before_a_snapshot_are_dropped() -> None:
    cache = cache_with(container(WEB, "web"))
    mark = cache.mark()
    cache.apply_snapshot(snapshot(container(WEB, "web"), container(DB, "db")))
    assert cache.apply_fetch(mark, ContainerFetch((), (DB,))) is None
    assert cache.container(DB) is not None
    assert cache.apply_listing(mark, EventType.IMAGE, []) is None


def test_complete_fetch_keeps_rows_with_newer_events() -> None:
    cache = cache_with(container(WEB, "web"), container(DB, "db"))
    mark = cache.mark()
    cache.apply_events([event("container", "rename", DB, 1, name="db2")])
    listing = (container(WEB, "web", "paused", "Up 3 minutes (Paused)"), container(DB, "db"))
    delta = cache.apply_fetch(mark, ContainerFetch(listing, (), complete=True))
    assert delta is not None and delta.complete
    names = {c.id: (c.name, c.state) for c in delta.records}
    assert names == {WEB: ("web", ContainerState.PAUSED), DB: ("db2", ContainerState.RUNNING)}


def test_listing_replaces_that_kind() -> None:
    cache = cache_with()
    image = Image.from_api(
        {
            "Id": "sha256:" + "2" * 64,
            "RepoTags": ["busybox:latest"],
            "RepoDigests": [],
            "Created": int(NOW.timestamp()),
            "Size": 1_234_567,
            "Labels": None,
            "Containers": -1,
            "ParentId": "",
        }
    )
    delta = cache.apply_listing(cache.mark(), EventType.IMAGE, [image])
    assert delta == Delta((image,), complete=True)
    assert cache.images() == [image]
    assert cache.volumes() == [] and cache.networks() == []
