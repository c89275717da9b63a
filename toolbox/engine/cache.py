"""What one engine holds, kept current from snapshots, events and fetch answers, without Qt.

``EngineCache`` is the GUI session's memory (``ui.session.EngineSession`` feeds it and turns
its answers into signals), and plain logic anyone can drive: a snapshot replaces everything;
what a container event says itself (started, died, paused, renamed, destroyed) is applied at
once (``apply_events``); a batch of events then names what to ask the engine again
(``refresh_for``: containers to re-fetch, kinds to re-list), and the answers are merged back
(``apply_fetch``, ``apply_listing``) unless they are stale: an answer begun before a snapshot,
or for a container that had events since it was asked for, is dropped, so rows never step
backwards. Start and die events also give exact times where the list API only gives "Up About
a minute".

Not thread-safe: one thread owns a cache (the GUI thread for the session); only
``fetch_containers`` runs on workers, and it touches no cache.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from toolbox.engine.records import (
    Container,
    ContainerState,
    EngineInfo,
    Event,
    EventType,
    Image,
    Network,
    Volume,
)
from toolbox.engine.watch import Snapshot
from toolbox.errors import NotFoundError

#: Above this many changed containers in one batch, one list call beats one call per id.
PER_ID_FETCH_LIMIT = 8

# Container actions that do not change what the list shows.
QUIET_CONTAINER_ACTIONS = frozenset(
    {
        "exec_create",
        "exec_start",
        "exec_die",
        "exec_detach",
        "attach",
        "detach",
        "resize",
        "top",
        "copy",
        "archive-path",
        "extract-to-dir",
        "export",
    }
)
# Container actions that make or change an image: an untagged ``docker commit`` sends only the
# container's "commit" event (a tagged one adds an image "tag" event), so images re-list on it.
IMAGE_CONTAINER_ACTIONS = frozenset({"commit"})
#: The kinds ``apply_listing`` takes whole lists of.
LISTED_KINDS = (EventType.IMAGE, EventType.VOLUME, EventType.NETWORK)


@dataclass(frozen=True)
class Delta:
    """A change to one kind of record. ``complete`` means ``records`` is the whole list (apply
    with ``set_records``); otherwise upsert ``records`` and remove the ``removed`` keys."""

    records: tuple[Any, ...] = ()
    removed: tuple[str, ...] = ()
    complete: bool = False


@dataclass(frozen=True)
class Refresh:
    """What a batch of events asks the engine for: containers to fetch again (first seen
    first) and the other kinds to re-list."""

    containers: tuple[str, ...] = ()
    kinds: frozenset[EventType] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.containers or self.kinds)


@dataclass(frozen=True)
class FetchMark:
    """When a fetch was asked for: answers are checked against it (``apply_fetch``)."""

    generation: int  # snapshots seen
    seq: int  # container events seen


@dataclass(frozen=True)
class ContainerFetch:
    """A fetch's answer: the containers found, the ids the engine no longer has, and whether
    ``found`` is the whole list (many ids were asked for at once)."""

    found: tuple[Container, ...]
    gone: tuple[str, ...] = ()
    complete: bool = False


class ContainerSource(Protocol):
    """The part of ``EngineClient`` a fetch needs."""

    def containers(self, all: bool = ...) -> Iterable[Container]: ...

    def container(self, container_id: str) -> Container: ...


def fetch_containers(client: ContainerSource, ids: Sequence[str]) -> ContainerFetch:
    """Fetch these containers again: one list call each, or one list of all when many.
    Runs on a worker thread with that thread's client."""
    if len(ids) > PER_ID_FETCH_LIMIT:
        return ContainerFetch(tuple(client.containers(all=True)), (), True)
    found: list[Container] = []
    gone: list[str] = []
    for cid in ids:
        try:
            found.append(client.container(cid))
        except NotFoundError:
            gone.append(cid)
    return ContainerFetch(tuple(found), tuple(gone), False)


def refresh_for(events: Iterable[Event]) -> Refresh:
    """What a coalesced batch of events needs from the engine: a container event re-fetches
    that container; a network (dis)connect re-fetches its container and re-lists networks;
    image and volume events re-list that kind; a commit re-lists images."""
    refetch: dict[str, None] = {}
    kinds: set[EventType] = set()
    for event in events:
        if event.type is EventType.CONTAINER:
            if event.action in IMAGE_CONTAINER_ACTIONS:
                kinds.add(EventType.IMAGE)
                continue
            if event.action in QUIET_CONTAINER_ACTIONS or not event.id:
                continue
            refetch[event.id] = None
        elif event.type is EventType.NETWORK:
            kinds.add(EventType.NETWORK)
            container_id = event.attributes.get("container")
            if event.action in ("connect", "disconnect") and container_id:
                refetch[container_id] = None
        elif event.type in (EventType.IMAGE, EventType.VOLUME):
            kinds.add(event.type)
    return Refresh(tuple(refetch), frozenset(kinds))


class EngineCache:
    """The records of one engine; see the module docstring."""

    def __init__(self) -> None:
        self.info: EngineInfo | None = None
        self.has_snapshot = False
        self._containers: dict[str, Container] = {}
        self._images: list[Image] = []
        self._volumes: list[Volume] = []
        self._networks: list[Network] = []
        # Per container: the sequence number of its latest event, and the times seen in
        # start/die events (exact, where the list API only allows estimates).
        self._seq = 0
        self._touched: dict[str, int] = {}
        self._started: dict[str, dt.datetime] = {}
        self._died: dict[str, Event] = {}
        self._generation = 0  # bumped on every snapshot: older fetch answers are stale

    # -- reading ---------------------------------------------------------------------------

    def containers(self) -> list[Container]:
        return list(self._containers.values())

    def container(self, container_id: str) -> Container | None:
        return self._containers.get(container_id)

    def images(self) -> list[Image]:
        return list(self._images)

    def volumes(self) -> list[Volume]:
        return list(self._volumes)

    def networks(self) -> list[Network]:
        return list(self._networks)

    def mark(self) -> FetchMark:
        """Take before asking the engine; give it back with the answer."""
        return FetchMark(self._generation, self._seq)

    # -- a snapshot ------------------------------------------------------------------------

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        """Everything anew from a full listing; answers to fetches begun before it become
        stale."""
        self._generation += 1
        self.has_snapshot = True
        live = {c.id for c in snapshot.containers}
        self._touched = {k: v for k, v in self._touched.items() if k in live}
        self._started = {k: v for k, v in self._started.items() if k in live}
        self._died = {k: v for k, v in self._died.items() if k in live}
        self._containers = {c.id: self._refine(c) for c in snapshot.containers}
        self._images = list(snapshot.images)
        self._volumes = list(snapshot.volumes)
        self._networks = list(snapshot.networks)
        self.info = snapshot.info

    # -- events ----------------------------------------------------------------------------

    def apply_events(self, events: Sequence[Event]) -> Delta | None:
        """Apply what the events say themselves to the containers they name (no engine
        request), and mark those containers so that a fetch answer from before these events
        is dropped. Returns the containers' change, or None when no row changed."""
        changed: dict[str, Container] = {}
        removed: list[str] = []
        for event in events:
            if event.type is EventType.NETWORK:
                container_id = event.attributes.get("container")
                if event.action in ("connect", "disconnect") and container_id:
                    self._touch(container_id)
                continue
            if (
                event.type is not EventType.CONTAINER
                or event.action in QUIET_CONTAINER_ACTIONS
                or event.action in IMAGE_CONTAINER_ACTIONS
                or not event.id
            ):
                continue
            self._touch(event.id)
            if event.action in ("start", "restart"):
                self._started[event.id] = event.time
            elif event.action == "die":
                self._died[event.id] = event
            current = changed.get(event.id) or self._containers.get(event.id)
            if current is None:
                continue  # not listed yet ("create"): the coalesced fetch brings it
            if event.action == "destroy":
                changed.pop(event.id, None)
                self._started.pop(event.id, None)
                self._died.pop(event.id, None)
                if self._containers.pop(event.id, None) is not None:
                    removed.append(event.id)
                continue
            updated = self._refine(current.apply_event(event))
            if updated != current:
                changed[event.id] = updated
        self._containers.update(changed)
        if changed or removed:
            return Delta(tuple(changed.values()), tuple(removed))
        return None

    # -- answers ---------------------------------------------------------------------------

    def apply_fetch(self, mark: FetchMark, fetch: ContainerFetch) -> Delta | None:
        """Merge a container fetch asked for at ``mark``. Dropped whole after a newer
        snapshot; a container that had events since ``mark`` keeps what it has (a newer
        fetch is already on its way). Returns the change, or None when nothing changed."""
        if mark.generation != self._generation:
            return None

        def current(cid: str) -> bool:
            return self._touched.get(cid, 0) <= mark.seq

        if fetch.complete:
            fetched = {c.id: self._refine(c) for c in fetch.found}
            newer = {cid for cid in set(fetched) | set(self._containers) if not current(cid)}
            merged = {cid: c for cid, c in fetched.items() if cid not in newer}
            merged.update({cid: self._containers[cid] for cid in newer if cid in self._containers})
            self._containers = merged
            return Delta(tuple(merged.values()), complete=True)
        fresh = [self._refine(c) for c in fetch.found if current(c.id)]
        fresh = [c for c in fresh if self._containers.get(c.id) != c]
        for c in fresh:
            self._containers[c.id] = c
        gone = [
            cid
            for cid in fetch.gone
            if current(cid) and self._containers.pop(cid, None) is not None
        ]
        for cid in gone:
            self._started.pop(cid, None)
            self._died.pop(cid, None)
        if fresh or gone:
            return Delta(tuple(fresh), tuple(gone))
        return None

    def apply_listing(
        self, mark: FetchMark, kind: EventType, records: Sequence[Any]
    ) -> Delta | None:
        """A fresh whole list of images, volumes or networks asked for at ``mark``; None when
        a snapshot came meanwhile (it is newer)."""
        if kind not in LISTED_KINDS:
            raise ValueError(f"{kind} is not re-listed whole")
        if mark.generation != self._generation:
            return None
        if kind is EventType.IMAGE:
            self._images = list(records)
        elif kind is EventType.VOLUME:
            self._volumes = list(records)
        else:
            self._networks = list(records)
        return Delta(tuple(records), complete=True)

    # -- internals -------------------------------------------------------------------------

    def _touch(self, container_id: str) -> None:
        self._seq += 1
        self._touched[container_id] = self._seq

    def _refine(self, container: Container) -> Container:
        """Exact start/stop times and exit code from the events seen, where the list only
        gives an estimate from its Status text ("Up About a minute")."""
        if container.state in (ContainerState.RUNNING, ContainerState.PAUSED):
            started = self._started.get(container.id)
            if started is not None:
                return replace(container, started_at=started)
        elif container.state in (ContainerState.EXITED, ContainerState.RESTARTING):
            died = self._died.get(container.id)
            if died is not None:
                code = died.attributes.get("exitCode", "")
                exit_code = int(code) if code.lstrip("-").isdigit() else container.exit_code
                return replace(container, finished_at=died.time, exit_code=exit_code)
        return container
