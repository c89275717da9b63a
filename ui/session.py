"""One live connection to a Docker engine for the GUI.

Usage::

    session = EngineSession(config, tasks)          # config: toolbox.engine.connect.EngineConfig
    session.containers_changed.connect(page.apply_delta)
    session.state_changed.connect(banner_slot)
    session.start()
    session.call(lambda client: client.stop(cid), on_success=..., key=f"container:{cid}")
    ...
    session.close()                                  # at exit

``EngineWatcher`` runs on its own thread (a re-list after every (re)connect, then the events
stream); snapshots and events reach the GUI thread through one ordered inbox. What an event says
itself (a container started, died, was paused, renamed or destroyed) is applied to its row at
once, so a ``docker stop`` in a terminal shows within milliseconds. Events are also coalesced for
~100 ms and then turned into engine requests: a container event re-fetches that one container
through the list API (exact start/stop times taken from the events), and image/volume/network
events re-list that kind (a container's "commit" re-lists images: an untagged commit sends no
image event). Fetches run on one serial queue per engine, and an answer older than a container's
latest event is dropped, so rows never step backwards.
Every worker thread gets its own ``EngineClient`` (docker-py clients are not shared between
threads). Nothing here polls.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from toolbox.engine.connect import EngineConfig
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
from toolbox.engine.watch import ConnectionState, EngineWatcher, Snapshot
from toolbox.errors import EngineUnreachable, NotFoundError, ToolboxError
from ui.tasks import Task, TaskRunner

T = TypeVar("T")
log = logging.getLogger(__name__)

COALESCE_MS = 100
#: Above this many changed containers in one batch, one list call beats one call per id.
PER_ID_FETCH_LIMIT = 8
CONNECT_TIMEOUT = 10.0

# Container actions that do not change what the list shows.
_QUIET_CONTAINER_ACTIONS = frozenset(
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
_IMAGE_CONTAINER_ACTIONS = frozenset({"commit"})


@dataclass(frozen=True)
class Delta:
    """A change to one kind of record. ``complete`` means ``records`` is the whole list (apply
    with ``set_records``); otherwise upsert ``records`` and remove the ``removed`` keys."""

    records: tuple[Any, ...] = ()
    removed: tuple[str, ...] = ()
    complete: bool = False


class EngineSession(QObject):
    """The GUI's view of one engine; see the module docstring.

    Signals:
        state_changed(ConnectionState, ToolboxError | None): connected, or lost with why.
        snapshot_ready(Snapshot): a full re-list arrived (after every (re)connect).
        events_received(list[Event]): raw events, coalesced ~100 ms.
        containers_changed(Delta), images_changed(Delta), volumes_changed(Delta),
        networks_changed(Delta): incremental updates (Delta.complete after a snapshot).
        info_changed(EngineInfo): engine identity, after each (re)connect.
    """

    state_changed = Signal(object, object)
    snapshot_ready = Signal(object)
    events_received = Signal(object)
    containers_changed = Signal(object)
    images_changed = Signal(object)
    volumes_changed = Signal(object)
    networks_changed = Signal(object)
    info_changed = Signal(object)

    # Watcher-thread to GUI-thread relays.
    _state_in = Signal(object, object)
    _inbox_wake = Signal()

    def __init__(self, config: EngineConfig, tasks: TaskRunner, parent: QObject | None = None):
        super().__init__(parent)
        self.config = config
        self.tasks = tasks
        self.state: ConnectionState | None = None
        self.last_error: ToolboxError | None = None
        self.info: EngineInfo | None = None
        #: While the engine does not answer: when it last did (its rows are that old).
        self.stale_since: dt.datetime | None = None
        self._containers: dict[str, Container] = {}
        self._images: list[Image] = []
        self._volumes: list[Volume] = []
        self._networks: list[Network] = []
        self._have_snapshot = False
        # Per container: the sequence number of its latest event, and the times seen in
        # start/die events (exact, where the list API only allows estimates).
        self._seq = 0
        self._touched: dict[str, int] = {}
        self._started: dict[str, dt.datetime] = {}
        self._died: dict[str, Event] = {}
        self._generation = 0  # bumped on every snapshot: older fetch answers are stale
        self._client_generation = 0  # bumped on connection changes: clients reconnect
        self._refresh_key = f"engine-refresh:{config.url}"
        # The inbox: snapshots and events from the watcher thread, in order; a snapshot replaces
        # whatever came before it (its listing already contains their effect).
        self._pending_lock = threading.Lock()
        self._pending: list[Event | Snapshot] = []
        self._batch: list[Event] = []  # events applied locally, waiting for the coalesced fetch
        self._clients_lock = threading.Lock()
        self._clients: dict[int, tuple[int, Any]] = {}  # thread id -> (generation, client)
        self._watcher: EngineWatcher | None = None
        self._flush = QTimer(self)
        self._flush.setSingleShot(True)
        self._flush.setInterval(COALESCE_MS)
        self._flush.timeout.connect(self._flush_events)
        self._state_in.connect(self._on_state)
        self._inbox_wake.connect(self._on_inbox)

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.config.name

    def describe(self) -> str:
        return self.config.describe()

    @property
    def connected(self) -> bool:
        return self.state is ConnectionState.CONNECTED

    @property
    def has_snapshot(self) -> bool:
        return self._have_snapshot

    def start(self) -> None:
        """Start watching on a dedicated thread (it blocks on the events stream)."""
        if self._watcher is not None:
            return
        self._watcher = EngineWatcher(
            self.config,
            on_snapshot=self._snapshot_from_watcher,
            on_event=self._event_from_watcher,
            on_state=self._state_in.emit,
        )
        self._watcher.start()

    def refresh(self) -> None:
        """Re-list everything now (deltas follow as for a reconnect)."""
        if self._watcher is not None:
            self._watcher.refresh()

    def retry_now(self) -> None:
        """Skip the reconnect backoff (the banner's Retry button)."""
        if self._watcher is not None:
            self._watcher.retry_now()

    def close(self, timeout: float = 2.0) -> None:
        """Stop watching and close every client. Call once, at exit."""
        self._flush.stop()
        if self._watcher is not None:
            self._watcher.stop(timeout)
        with self._clients_lock:
            clients = [client for _generation, client in self._clients.values()]
            self._clients = {}
        for client in clients:
            try:
                client.close()
            except Exception:
                log.debug("closing an engine client failed", exc_info=True)

    # -- current lists ------------------------------------------------------------------------

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

    # -- calls on worker threads --------------------------------------------------------------

    def client(self) -> Any:
        """This thread's EngineClient (made on first use, remade after a reconnect). Call it
        only from worker threads: connecting talks to the engine.

        Keyed by OS thread id, not ``threading.local``: Python forgets thread-locals of a
        Qt pool thread between two runnables, which would connect anew for every task."""
        ident = threading.get_ident()
        with self._clients_lock:
            entry = self._clients.get(ident)
        if entry is not None and entry[0] == self._client_generation:
            return entry[1]
        if entry is not None:
            self._forget(ident)
        generation = self._client_generation
        client = self.config.connect(timeout=CONNECT_TIMEOUT)
        with self._clients_lock:
            self._clients[ident] = (generation, client)
        return client

    def call(
        self,
        fn: Callable[[Any], T],
        on_success: Callable[[T], None] | None = None,
        on_error: Callable[[ToolboxError], None] | None = None,
        *,
        key: str | None = None,
        what: str = "",
        owner: QObject | None = None,
        cancel: threading.Event | None = None,
    ) -> Task[T]:
        """Run ``fn(client)`` on a worker thread with that thread's client; callbacks on the
        GUI thread (see ``TaskRunner.run``)."""

        def work() -> T:
            client = self.client()
            try:
                return fn(client)
            except EngineUnreachable:
                self._drop_thread_client()
                raise

        return self.tasks.run(
            work, on_success, on_error, key=key, what=what, owner=owner, cancel=cancel
        )

    def _drop_thread_client(self) -> None:
        self._forget(threading.get_ident())

    def _forget(self, ident: int) -> None:
        with self._clients_lock:
            entry = self._clients.pop(ident, None)
        if entry is None:
            return
        try:
            entry[1].close()
        except Exception:
            log.debug("closing a stale engine client failed", exc_info=True)

    # -- watcher callbacks (GUI thread unless noted) ------------------------------------------

    def _snapshot_from_watcher(self, snapshot: Snapshot) -> None:
        """Watcher thread: the snapshot replaces what the inbox holds (older events are in it)."""
        with self._pending_lock:
            first = not self._pending
            self._pending = [snapshot]
        if first:
            self._inbox_wake.emit()

    def _event_from_watcher(self, event: Event) -> None:
        """Watcher thread: queue the event; wake the GUI thread for the first of a batch."""
        with self._pending_lock:
            first = not self._pending
            self._pending.append(event)
        if first:
            self._inbox_wake.emit()

    @Slot()
    def _on_inbox(self) -> None:
        with self._pending_lock:
            items, self._pending = self._pending, []
        if items and isinstance(items[0], Snapshot):  # only ever first: it clears the inbox
            self._on_snapshot(items[0])
            items = items[1:]
        events = [item for item in items if isinstance(item, Event)]
        if events:
            self._apply_at_once(events)
            self._batch.extend(events)
            if not self._flush.isActive():
                self._flush.start()

    @Slot(object, object)
    def _on_state(self, state: ConnectionState, error: ToolboxError | None) -> None:
        changed = state != self.state
        if state is ConnectionState.CONNECTED:
            self.stale_since = None
        elif state is ConnectionState.DISCONNECTED and self.stale_since is None:
            # A stalled engine was silent for a while before the heartbeat gave up on it.
            stalled = getattr(self._watcher, "_stalled", None) or 0.0
            self.stale_since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=stalled)
        self.state = state
        self.last_error = error
        if changed:
            self._client_generation += 1  # worker threads reconnect their clients
        self.state_changed.emit(state, error)

    def _on_snapshot(self, snapshot: Snapshot) -> None:
        self._generation += 1  # answers to fetches begun before this are stale
        self._have_snapshot = True
        live = {c.id for c in snapshot.containers}
        self._touched = {k: v for k, v in self._touched.items() if k in live}
        self._started = {k: v for k, v in self._started.items() if k in live}
        self._died = {k: v for k, v in self._died.items() if k in live}
        containers = tuple(self._refine(c) for c in snapshot.containers)
        self._containers = {c.id: c for c in containers}
        self._images = list(snapshot.images)
        self._volumes = list(snapshot.volumes)
        self._networks = list(snapshot.networks)
        self.info = snapshot.info
        self._batch.clear()  # the snapshot already contains their effect
        self.snapshot_ready.emit(snapshot)
        self.info_changed.emit(snapshot.info)
        self.containers_changed.emit(Delta(containers, complete=True))
        self.images_changed.emit(Delta(tuple(self._images), complete=True))
        self.volumes_changed.emit(Delta(tuple(self._volumes), complete=True))
        self.networks_changed.emit(Delta(tuple(self._networks), complete=True))

    @Slot()
    def _flush_events(self) -> None:
        batch, self._batch = self._batch, []
        if not batch:
            return
        self.events_received.emit(batch)
        self._apply_events(batch)

    # -- turning events into deltas -----------------------------------------------------------

    def _apply_at_once(self, events: Sequence[Event]) -> None:
        """Apply what the events say themselves to the rows they name (no engine request), and
        mark those containers so that a fetch answer from before these events is dropped."""
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
                or event.action in _QUIET_CONTAINER_ACTIONS
                or event.action in _IMAGE_CONTAINER_ACTIONS
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
            self.containers_changed.emit(Delta(tuple(changed.values()), tuple(removed)))

    def _apply_events(self, events: Sequence[Event]) -> None:
        """The coalesced part: re-fetch the containers the events name, re-list other kinds."""
        refetch: dict[str, None] = {}
        kinds: set[EventType] = set()
        for event in events:
            if event.type is EventType.CONTAINER:
                if event.action in _IMAGE_CONTAINER_ACTIONS:
                    kinds.add(EventType.IMAGE)
                    continue
                if event.action in _QUIET_CONTAINER_ACTIONS or not event.id:
                    continue
                refetch[event.id] = None
            elif event.type is EventType.NETWORK:
                kinds.add(EventType.NETWORK)
                container_id = event.attributes.get("container")
                if event.action in ("connect", "disconnect") and container_id:
                    refetch[container_id] = None
            elif event.type in (EventType.IMAGE, EventType.VOLUME):
                kinds.add(event.type)
        if refetch:
            self._refetch_containers(list(refetch))
        for kind in kinds:
            self._relist(kind)

    def _touch(self, container_id: str) -> None:
        self._seq += 1
        self._touched[container_id] = self._seq

    def _refine(self, container: Container) -> Container:
        """Exact start/stop times and exit code from the events we saw, where the list only
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

    def _refetch_containers(self, ids: list[str]) -> None:
        """Fetch these containers again (one list call each, or one list of all when many).
        Answers are applied in order (one serial queue), and an answer for a container that
        has had events since it was asked for is dropped: a newer fetch is already queued."""
        generation = self._generation
        mark = self._seq

        def fetch(client: Any) -> tuple[list[Container], list[str], bool]:
            if len(ids) > PER_ID_FETCH_LIMIT:
                return list(client.containers(all=True)), [], True
            found: list[Container] = []
            gone: list[str] = []
            for cid in ids:
                try:
                    found.append(client.container(cid))
                except NotFoundError:
                    gone.append(cid)
            return found, gone, False

        def done(result: tuple[list[Container], list[str], bool]) -> None:
            if generation != self._generation:
                return
            found, gone, complete = result

            def current(cid: str) -> bool:
                return self._touched.get(cid, 0) <= mark

            if complete:
                fetched = {c.id: self._refine(c) for c in found}
                newer = {cid for cid in set(fetched) | set(self._containers) if not current(cid)}
                merged = {cid: c for cid, c in fetched.items() if cid not in newer}
                merged.update(
                    {cid: self._containers[cid] for cid in newer if cid in self._containers}
                )
                self._containers = merged
                self.containers_changed.emit(Delta(tuple(merged.values()), complete=True))
                return
            fresh = [self._refine(c) for c in found if current(c.id)]
            fresh = [c for c in fresh if self._containers.get(c.id) != c]
            for c in fresh:
                self._containers[c.id] = c
            gone = [
                cid for cid in gone if current(cid) and self._containers.pop(cid, None) is not None
            ]
            for cid in gone:
                self._started.pop(cid, None)
                self._died.pop(cid, None)
            if fresh or gone:
                self.containers_changed.emit(Delta(tuple(fresh), tuple(gone)))

        self.call(fetch, done, self._ignore_refresh_error, key=self._refresh_key, what="Refresh")

    def _relist(self, kind: EventType) -> None:
        generation = self._generation
        listers: dict[EventType, Callable[[Any], list[Any]]] = {
            EventType.IMAGE: lambda c: list(c.images()),
            EventType.VOLUME: lambda c: list(c.volumes()),
            EventType.NETWORK: lambda c: list(c.networks()),
        }

        def done(records: list[Any]) -> None:
            if generation != self._generation:
                return
            if kind is EventType.IMAGE:
                self._images = records
                self.images_changed.emit(Delta(tuple(records), complete=True))
            elif kind is EventType.VOLUME:
                self._volumes = records
                self.volumes_changed.emit(Delta(tuple(records), complete=True))
            else:
                self._networks = records
                self.networks_changed.emit(Delta(tuple(records), complete=True))

        self.call(
            listers[kind], done, self._ignore_refresh_error, key=self._refresh_key, what="Refresh"
        )

    def _ignore_refresh_error(self, error: ToolboxError) -> None:
        """A refresh that fails because the engine went away is the banner's business; the
        watcher re-lists everything after it reconnects."""
        log.info("refresh failed: %s", error)


def apply_delta(model: Any, delta: Delta) -> None:
    """Apply a Delta to a ``ui.models.table.RecordTableModel`` (diffed, never a reset)."""
    if delta.complete:
        model.set_records(delta.records)
        return
    if delta.removed:
        model.remove(delta.removed)
    if delta.records:
        model.upsert(delta.records)
