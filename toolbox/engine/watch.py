"""``EngineWatcher``: keeps a live view of one engine with one event stream.

After every (re)connect it lists everything once (a ``Snapshot``), then streams events from
the engine-clock time the listing started, so nothing that happened in between is missed.
When the engine goes away it reports DISCONNECTED and reconnects with capped exponential
backoff; a slow safety-net re-list runs every ``safety_interval`` seconds.

A heartbeat (its own client, a ping every ``heartbeat_interval`` seconds with a short timeout)
notices an engine that stalls without closing the connection (dockerd frozen, the VM paused):
after ``heartbeat_misses`` unanswered pings in a row the stream is closed and the loss reported,
within about 10 s instead of a request timeout minutes later. When the engine answers again the
reconnect re-lists everything, so no event is missed.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from toolbox.engine.client import EngineClient, EventStream
from toolbox.engine.connect import EngineConfig
from toolbox.engine.records import Container, EngineInfo, Event, Image, Network, Volume
from toolbox.errors import EngineUnreachable, ToolboxError

log = logging.getLogger(__name__)


class ConnectionState(Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    STOPPED = "stopped"


class SnapshotReason(Enum):
    CONNECT = "connect"  # first connection
    RECONNECT = "reconnect"  # after the engine came back
    SAFETY = "safety"  # the periodic safety-net re-list
    REQUESTED = "requested"  # refresh() was called


@dataclass(frozen=True)
class Snapshot:
    """Everything on the engine; ``time`` is an engine-clock time no later than the moment
    listing began (events from then on are replayed after it)."""

    containers: tuple[Container, ...]
    images: tuple[Image, ...]
    volumes: tuple[Volume, ...]
    networks: tuple[Network, ...]
    info: EngineInfo
    time: dt.datetime
    reason: SnapshotReason = SnapshotReason.CONNECT


SnapshotCallback = Callable[[Snapshot], None]
EventCallback = Callable[[Event], None]
StateCallback = Callable[[ConnectionState, ToolboxError | None], None]


class EngineWatcher:
    """Watches one engine from one worker thread: ``run()`` blocks until ``stop()``.

    Callbacks run on the watcher's thread (the GUI forwards them with signals):
    ``on_snapshot(Snapshot)``, ``on_event(Event)``, ``on_state(ConnectionState, error)``.
    None is called after ``stop()``.
    """

    def __init__(
        self,
        config: EngineConfig,
        on_snapshot: SnapshotCallback,
        on_event: EventCallback,
        on_state: StateCallback,
        safety_interval: float = 300.0,
        min_backoff: float = 0.5,
        max_backoff: float = 10.0,
        request_timeout: float = 15.0,
        heartbeat_interval: float = 1.5,
        heartbeat_timeout: float = 2.0,
        heartbeat_misses: int = 2,
    ):
        self.config = config
        self.on_snapshot = on_snapshot
        self.on_event = on_event
        self.on_state = on_state
        self.safety_interval = safety_interval
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.request_timeout = request_timeout
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.heartbeat_misses = heartbeat_misses
        self._stalled: float | None = None  # seconds the engine went unanswered, when it did
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._stream: EventStream | None = None
        self._relist: SnapshotReason | None = None
        self._thread: threading.Thread | None = None
        self._had_connection = False
        self.state = ConnectionState.DISCONNECTED
        self.last_error: ToolboxError | None = None
        self.next_retry: float | None = None  # seconds to the next attempt while waiting

    # ---------------------------------------------------------------- control (any thread)

    def start(self) -> threading.Thread:
        """Run the watcher on a daemon thread of its own (``run()`` may be used instead)."""
        thread = threading.Thread(
            target=self.run, name=f"engine-watch {self.config.name}", daemon=True
        )
        self._thread = thread
        thread.start()
        return thread

    def stop(self, timeout: float = 1.0) -> None:
        """Stop watching; returns within about ``timeout`` seconds. No callback runs after."""
        self._stop.set()
        self._wake.set()
        self._close_stream()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def retry_now(self) -> None:
        """Skip the current backoff wait and try to connect at once."""
        self._wake.set()

    def refresh(self) -> None:
        """Re-list everything now (a snapshot with reason REQUESTED) without dropping state."""
        self._request_relist(SnapshotReason.REQUESTED)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    # ---------------------------------------------------------------- the loop

    def run(self) -> None:
        """Connect, snapshot, stream events; on loss reconnect with backoff; until stop()."""
        backoff = self.min_backoff
        reason = SnapshotReason.CONNECT
        try:
            while not self._stop.is_set():
                self._set_state(ConnectionState.CONNECTING, None)
                self._had_connection = False
                try:
                    with self.config.connect(timeout=self.request_timeout) as client:
                        self._session(client, reason)
                except Exception as exc:
                    if self._stop.is_set():
                        break
                    if not isinstance(exc, ToolboxError):  # a bug must not end the live view
                        log.exception("engine watcher failed")
                        exc = EngineUnreachable(f"Watching the engine failed: {exc}")
                    self._set_state(ConnectionState.DISCONNECTED, exc)
                    if self._had_connection:  # a fresh loss: start the backoff over
                        backoff = self.min_backoff
                    reason = SnapshotReason.RECONNECT
                    self._wait(backoff)
                    backoff = min(backoff * 2, self.max_backoff)
        finally:
            self.state = ConnectionState.STOPPED
            self._close_stream()

    def _session(self, client: EngineClient, reason: SnapshotReason) -> None:
        """Snapshot then stream until stop (returns) or loss (raises)."""
        side = _SideLister(self.config, self.request_timeout)
        try:
            self._stream_session(client, reason, side)
        finally:
            side.close()

    def _stream_session(
        self, client: EngineClient, reason: SnapshotReason, side: _SideLister
    ) -> None:
        while not self._stop.is_set():
            snapshot = self._snapshot(client, reason, side)
            if self._stop.is_set():
                return
            # Delivered before the stream opens (one round trip sooner on screen): the stream
            # replays everything since the snapshot's clock, so nothing falls in between.
            self._deliver(self.on_snapshot, snapshot)
            stream = client.events(since=snapshot.time)
            with self._lock:
                self._stream = stream
                self._relist = None
            if self._stop.is_set():
                stream.close()
                return
            if self.state is not ConnectionState.CONNECTED:
                self._set_state(ConnectionState.CONNECTED, None)
            self._had_connection = True
            timer = threading.Timer(
                self.safety_interval, self._request_relist, (SnapshotReason.SAFETY,)
            )
            timer.daemon = True
            timer.start()
            beat_done = threading.Event()
            self._stalled = None
            beat = threading.Thread(
                target=self._heartbeat,
                args=(stream, beat_done),
                name=f"engine-heartbeat {self.config.name}",
                daemon=True,
            )
            beat.start()
            try:
                for event in stream:
                    if self._stop.is_set():
                        return
                    self._deliver(self.on_event, event)
            finally:
                timer.cancel()
                beat_done.set()
                with self._lock:
                    self._stream = None
                    requested = self._pending_relist()  # set by another thread meanwhile
                stream.close()
            if self._stop.is_set():
                return
            if requested is None and self._stalled is not None:
                raise EngineUnreachable(
                    f"The engine at {self.config.describe()} stopped answering "
                    f"(no reply for {self._stalled:.0f} s)",
                    hint="Its VM may be paused or its dockerd frozen; Toolbox reconnects by "
                    "itself as soon as it answers.",
                )
            if requested is None:  # closed, but neither by stop() nor for a re-list
                raise EngineUnreachable(f"The event stream of {self.config.describe()} ended")
            reason = requested

    def _snapshot(
        self, client: EngineClient, reason: SnapshotReason, side: _SideLister
    ) -> Snapshot:
        # A helper thread (its own client) reads the engine's info and clock and lists images,
        # volumes and networks while this one lists the containers: a re-list takes as long as
        # its longest request, not the sum. Events are replayed from ``rest.since``, which is
        # never later than the moment the container list began (see ``_SideLister``), so a
        # change made while listing shows up as an event: never lost between list and stream.
        side.begin(time.monotonic())
        try:
            containers = tuple(client.containers())
        except BaseException:
            side.settle()  # never leave the helper's client in use by a stray thread
            raise
        rest = side.result()
        return Snapshot(
            containers=containers,
            images=rest.images,
            volumes=rest.volumes,
            networks=rest.networks,
            info=rest.info,
            time=rest.since,
            reason=reason,
        )

    # ---------------------------------------------------------------- helpers

    def _heartbeat(self, stream: EventStream, done: threading.Event) -> None:
        """Ping while the stream is open; close it when the engine stops answering."""
        misses = 0
        silent_since: float | None = None
        client: EngineClient | None = None
        try:
            while not done.wait(self.heartbeat_interval) and not self._stop.is_set():
                started = time.monotonic()
                try:
                    if client is None:
                        client = self.config.connect(timeout=self.heartbeat_timeout)
                    ok = client.ping()
                except Exception:
                    ok = False
                if ok:
                    misses, silent_since = 0, None
                    continue
                if client is not None:  # a fresh connection for the next try
                    try:
                        client.close()
                    except Exception:
                        pass
                    client = None
                misses += 1
                silent_since = silent_since or started
                if misses >= self.heartbeat_misses and not done.is_set():
                    self._stalled = time.monotonic() - silent_since + self.heartbeat_interval
                    log.warning("engine %s stopped answering pings", self.config.name)
                    stream.close()
                    return
        finally:
            if client is not None:
                try:
                    client.close()
                except Exception:
                    pass

    def _pending_relist(self) -> SnapshotReason | None:
        """The re-list another thread asked for (read under the lock by the caller)."""
        return self._relist

    def _request_relist(self, reason: SnapshotReason) -> None:
        with self._lock:
            stream = self._stream
            if stream is None:
                return
            self._relist = reason
        stream.close()

    def _close_stream(self) -> None:
        with self._lock:
            stream = self._stream
        if stream is not None:
            stream.close()

    def _wait(self, seconds: float) -> None:
        """Back off, waking early on stop() or retry_now()."""
        self.next_retry = seconds
        deadline = time.monotonic() + seconds
        self._wake.clear()
        if self._stop.is_set():
            return
        self._wake.wait(max(0.0, deadline - time.monotonic()))
        self._wake.clear()
        self.next_retry = None

    def _set_state(self, state: ConnectionState, error: ToolboxError | None) -> None:
        self.state = state
        self.last_error = error
        self._deliver(self.on_state, state, error)

    def _deliver(self, callback: Callable[..., None], *args: object) -> None:
        if self._stop.is_set():
            return
        try:
            callback(*args)
        except Exception:  # a failing callback must not stop the watcher
            log.exception("engine watcher callback %r failed", callback)


@dataclass(frozen=True)
class _Rest:
    """What the helper listed beside the containers."""

    info: EngineInfo
    since: dt.datetime
    images: tuple[Image, ...]
    volumes: tuple[Volume, ...]
    networks: tuple[Network, ...]


class _SideLister:
    """Reads the engine's info and lists images, volumes and networks on a short-lived daemon
    thread with a client of its own (never shared between threads at once), kept for one
    connection.

    The clock: ``begin(t0)`` is called (local monotonic ``t0``) before the container list
    starts; the engine reads its clock ``T`` somewhere inside the info request, which ends at
    local ``t1``. So ``T - (t1 - t0)`` is at most the engine's time at ``t0``, which is before
    the container list began, whichever request the engine served first. Events since then are
    replayed; the few that the listing already shows are harmless (applied in order, they end
    in the listed state)."""

    def __init__(self, config: EngineConfig, timeout: float):
        self.config = config
        self.timeout = timeout
        self._client: EngineClient | None = None
        self._thread: threading.Thread | None = None
        self._value: _Rest | None = None
        self._error: BaseException | None = None

    def begin(self, started: float) -> None:
        """Start; ``started`` is ``time.monotonic()`` taken before the container list begins."""
        self._value, self._error = None, None
        self._thread = threading.Thread(
            target=self._run, args=(started,), name=f"engine-list {self.config.name}", daemon=True
        )
        self._thread.start()

    def _run(self, started: float) -> None:
        try:
            if self._client is None:
                self._client = self.config.connect(timeout=self.timeout)
            client = self._client
            info, clock = client.info_and_time()
            since = clock - dt.timedelta(seconds=time.monotonic() - started)
            self._value = _Rest(
                info,
                since,
                tuple(client.images()),
                tuple(client.volumes()),
                tuple(client.networks()),
            )
        except BaseException as exc:
            self._error = exc
            self._drop()

    def result(self) -> _Rest:
        """Wait for the work begun by ``begin()``; raises what it raised."""
        thread = self._thread
        if thread is not None:
            # Each of its requests gives up after ``timeout``; this bound is never the limit.
            thread.join(self.timeout * 5 + 5)
            self._thread = None
            if thread.is_alive():
                raise EngineUnreachable(
                    f"Listing images, volumes and networks of {self.config.describe()} hung",
                    hint="The engine may be overloaded; Toolbox retries on its own.",
                )
        if self._error is not None:
            raise self._error
        assert self._value is not None
        return self._value

    def settle(self) -> None:
        """Wait for the helper, ignoring its outcome (the caller is failing already)."""
        try:
            self.result()
        except BaseException:
            log.debug("listing beside a failed container list failed too", exc_info=True)

    def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:
                log.debug("closing the listing client failed", exc_info=True)

    def close(self) -> None:
        """End of the connection: close the helper's client (once its thread is done)."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            return  # a daemon thread still in a request; it is dropped with the connection
        self._drop()
