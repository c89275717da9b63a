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
stream); snapshots and events reach the GUI thread through one ordered inbox. The records live
in a ``toolbox.engine.cache.EngineCache`` (plain logic, tested without Qt): what an event says
itself (a container started, died, was paused, renamed or destroyed) is applied to its row at
once, so a ``docker stop`` in a terminal shows within milliseconds. Events are also coalesced for
~100 ms and then turned into engine requests (``refresh_for``): a container event re-fetches
that one container through the list API, and image/volume/network events re-list that kind.
Fetches run on one serial queue per engine, and the cache drops an answer older than a
container's latest event, so rows never step backwards. This module adds the threads, the
timer and the signals.
Every worker thread gets its own ``EngineClient`` (docker-py clients are not shared between
threads). Nothing here polls.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from toolbox.engine.cache import (
    ContainerFetch,
    Delta,
    EngineCache,
    fetch_containers,
    refresh_for,
)
from toolbox.engine.connect import EngineConfig
from toolbox.engine.records import (
    Container,
    EngineInfo,
    Event,
    EventType,
    Image,
    Network,
    Volume,
)
from toolbox.engine.watch import ConnectionState, EngineWatcher, Snapshot
from toolbox.errors import EngineUnreachable, ToolboxError
from ui.tasks import Task, TaskRunner

T = TypeVar("T")
log = logging.getLogger(__name__)

COALESCE_MS = 100
CONNECT_TIMEOUT = 10.0


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
        self.cache = EngineCache()  # the records; GUI thread only
        #: While the engine does not answer: when it last did (its rows are that old).
        self.stale_since: dt.datetime | None = None
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
        return self.cache.has_snapshot

    @property
    def info(self) -> EngineInfo | None:
        return self.cache.info

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
        return self.cache.containers()

    def container(self, container_id: str) -> Container | None:
        return self.cache.container(container_id)

    def images(self) -> list[Image]:
        return self.cache.images()

    def volumes(self) -> list[Volume]:
        return self.cache.volumes()

    def networks(self) -> list[Network]:
        return self.cache.networks()

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
            delta = self.cache.apply_events(events)
            if delta is not None:
                self.containers_changed.emit(delta)
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
        cache = self.cache
        cache.apply_snapshot(snapshot)  # answers to fetches begun before this are stale
        self._batch.clear()  # the snapshot already contains their effect
        self.snapshot_ready.emit(snapshot)
        self.info_changed.emit(snapshot.info)
        self.containers_changed.emit(Delta(tuple(cache.containers()), complete=True))
        self.images_changed.emit(Delta(tuple(cache.images()), complete=True))
        self.volumes_changed.emit(Delta(tuple(cache.volumes()), complete=True))
        self.networks_changed.emit(Delta(tuple(cache.networks()), complete=True))

    @Slot()
    def _flush_events(self) -> None:
        batch, self._batch = self._batch, []
        if not batch:
            return
        self.events_received.emit(batch)
        wanted = refresh_for(batch)
        if wanted.containers:
            self._refetch_containers(list(wanted.containers))
        for kind in sorted(wanted.kinds, key=lambda k: k.value):
            self._relist(kind)

    # -- asking the engine again ------------------------------------------------------------

    def _refetch_containers(self, ids: list[str]) -> None:
        """Fetch these containers again on the engine's serial queue; the cache merges the
        answer unless it is stale (see ``EngineCache.apply_fetch``)."""
        mark = self.cache.mark()

        def done(fetch: ContainerFetch) -> None:
            delta = self.cache.apply_fetch(mark, fetch)
            if delta is not None:
                self.containers_changed.emit(delta)

        self.call(
            lambda client: fetch_containers(client, ids),
            done,
            self._ignore_refresh_error,
            key=self._refresh_key,
            what="Refresh",
        )

    def _relist(self, kind: EventType) -> None:
        mark = self.cache.mark()
        listers: dict[EventType, Callable[[Any], list[Any]]] = {
            EventType.IMAGE: lambda c: list(c.images()),
            EventType.VOLUME: lambda c: list(c.volumes()),
            EventType.NETWORK: lambda c: list(c.networks()),
        }
        signals = {
            EventType.IMAGE: self.images_changed,
            EventType.VOLUME: self.volumes_changed,
            EventType.NETWORK: self.networks_changed,
        }

        def done(records: list[Any]) -> None:
            delta = self.cache.apply_listing(mark, kind, records)
            if delta is not None:
                signals[kind].emit(delta)

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
