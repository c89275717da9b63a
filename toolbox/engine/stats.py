"""Live container statistics: the engine's stats JSON as typed samples, the derived points
(CPU %, memory against its limit, network and block I/O rates), a bounded history per
container, and the two ways to get samples.

``parse_stats`` reads one ``GET /containers/{id}/stats`` document (cgroup v1 or v2) the way the
Docker CLI computes ``docker stats``: memory without the inactive page cache, CPU % as the
container's share of the host's CPU time times the online CPUs. A one-shot sample carries no
previous reading, so CPU % and the I/O rates come from two consecutive samples of the same
container (``derive_point``); the ``StatsBook`` keeps the last one of each container for that.

Getting samples: ``one_shot(client, id)`` is a single reading (API >= 1.41 answers at the
engine's next collection tick, at most about a second); ``StatsSampler`` asks for many at once
from its own few threads, so the engine serves them all in one collection pass (asked one
after another, each waits for its own tick: 50 took 50 s here); ``stats_stream(client, id)``
follows one container (a sample a second) and ``close()`` from any thread ends it.

``StatsHistory`` keeps every point of the last ``fine_seconds`` and merges older ones into
buckets that double in width whenever there are more than ``coarse_capacity`` of them, so the
history since the app started is kept at bounded memory, coarser the older it is.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import requests
from docker.utils import version_lt

from toolbox.engine.records import parse_timestamp
from toolbox.engine.streams import STREAM_ERRORS, ClosableStream, JSONStreamDecoder
from toolbox.errors import EngineError, EngineUnreachable, NotFoundError, ToolboxError

if TYPE_CHECKING:
    from toolbox.engine.client import EngineClient
    from toolbox.engine.connect import EngineConfig

log = logging.getLogger(__name__)

ONE_SHOT_API = "1.41"


class StatsFormatError(EngineError):
    """The engine's stats document is not what its API describes."""


# --------------------------------------------------------------------------------------
# One reading


@dataclass(frozen=True, slots=True)
class StatsSample:
    """One stats reading of a running container, raw counters as the engine gave them.

    ``read`` is the engine-clock time of the reading (epoch seconds); CPU counters are
    nanoseconds, the rest bytes. ``pre_*`` are the previous reading's CPU counters when the
    engine sent them (a streamed or non-one-shot sample), else None.
    """

    container_id: str
    read: float
    cpu_total_ns: int
    system_cpu_ns: int | None
    online_cpus: int
    pre_cpu_total_ns: int | None
    pre_system_cpu_ns: int | None
    memory_used: int | None
    memory_limit: int | None
    net_rx: int
    net_tx: int
    block_read: int
    block_write: int
    pids: int | None


def _int(value: Any, field: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise StatsFormatError(
            f"The engine's stats have a non-numeric {field}: {value!r}",
            hint="This engine's stats format is not understood; the details show it.",
        )
    return int(value)


def _mapping(value: Any, field: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise StatsFormatError(
            f"The engine's stats have an unexpected {field}: {type(value).__name__}",
            hint="This engine's stats format is not understood; the details show it.",
        )
    return value


def _memory_used(mem: Mapping[str, Any]) -> int | None:
    """Usage minus the inactive page cache, as ``docker stats`` shows it."""
    if "usage" not in mem:
        return None
    usage = _int(mem.get("usage"), "memory usage")
    detail = _mapping(mem.get("stats"), "memory stats")
    for key in ("total_inactive_file", "inactive_file"):  # cgroup v1, then v2
        if key in detail:
            inactive = _int(detail[key], key)
            return usage - inactive if inactive < usage else usage
    return usage


def _block_io(blkio: Mapping[str, Any]) -> tuple[int, int]:
    read = write = 0
    entries = blkio.get("io_service_bytes_recursive")
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise StatsFormatError(
            "The engine's stats have an unexpected block I/O list",
            hint="This engine's stats format is not understood; the details show it.",
        )
    for entry in entries:
        op = str(_mapping(entry, "block I/O entry").get("op", "")).lower()
        if op == "read":
            read += _int(entry.get("value"), "block I/O value")
        elif op == "write":
            write += _int(entry.get("value"), "block I/O value")
    return read, write


def parse_stats(data: Any, container_id: str | None = None) -> StatsSample | None:
    """One stats document as a sample; None when the container is not running (the engine
    then answers with a zero ``read`` time and empty counters). Raises ``StatsFormatError``
    for a document that is not the engine's stats."""
    doc = _mapping(data, "document")
    when = parse_timestamp(doc.get("read"))
    if when is None:
        return None
    cid = str(doc.get("id") or container_id or "")
    cpu = _mapping(doc.get("cpu_stats"), "cpu_stats")
    pre = _mapping(doc.get("precpu_stats"), "precpu_stats")
    usage = _mapping(cpu.get("cpu_usage"), "cpu_usage")
    percpu = usage.get("percpu_usage") or ()
    online = _int(cpu.get("online_cpus"), "online_cpus") or len(percpu) or 1
    system = cpu.get("system_cpu_usage")
    pre_usage = _mapping(pre.get("cpu_usage"), "precpu cpu_usage")
    pre_system = pre.get("system_cpu_usage")
    has_pre = bool(pre_system) and "total_usage" in pre_usage
    mem = _mapping(doc.get("memory_stats"), "memory_stats")
    limit = _int(mem.get("limit"), "memory limit") if mem.get("limit") else None
    rx = tx = 0
    for net in _mapping(doc.get("networks"), "networks").values():
        net = _mapping(net, "network")
        rx += _int(net.get("rx_bytes"), "rx_bytes")
        tx += _int(net.get("tx_bytes"), "tx_bytes")
    block_read, block_write = _block_io(_mapping(doc.get("blkio_stats"), "blkio_stats"))
    pids = _mapping(doc.get("pids_stats"), "pids_stats").get("current")
    return StatsSample(
        container_id=cid,
        read=when.timestamp(),
        cpu_total_ns=_int(usage.get("total_usage"), "total_usage"),
        system_cpu_ns=_int(system, "system_cpu_usage") if system is not None else None,
        online_cpus=online,
        pre_cpu_total_ns=_int(pre_usage.get("total_usage"), "total_usage") if has_pre else None,
        pre_system_cpu_ns=_int(pre_system, "system_cpu_usage") if has_pre else None,
        memory_used=_memory_used(mem),
        memory_limit=limit,
        net_rx=rx,
        net_tx=tx,
        block_read=block_read,
        block_write=block_write,
        pids=_int(pids, "pids") if pids is not None else None,
    )


def cpu_percent(cur: StatsSample, prev: StatsSample | None = None) -> float | None:
    """The container's CPU use between two readings, in percent of one CPU (200 % = two
    CPUs busy), as ``docker stats``: its CPU time over the host's, times the online CPUs.
    Uses ``prev`` when given, else the reading's own previous counters; None without either."""
    if prev is not None and prev.system_cpu_ns is not None:
        before_cpu, before_system = prev.cpu_total_ns, prev.system_cpu_ns
    elif cur.pre_cpu_total_ns is not None and cur.pre_system_cpu_ns is not None:
        before_cpu, before_system = cur.pre_cpu_total_ns, cur.pre_system_cpu_ns
    else:
        return None
    if cur.system_cpu_ns is None:
        return None
    cpu_delta = cur.cpu_total_ns - before_cpu
    system_delta = cur.system_cpu_ns - before_system
    if system_delta <= 0 or cpu_delta < 0:
        return None
    return cpu_delta / system_delta * cur.online_cpus * 100.0


# --------------------------------------------------------------------------------------
# Points and history


@dataclass(frozen=True, slots=True)
class StatsPoint:
    """What the graphs and columns show for one moment: CPU % (of one CPU), memory used and
    its limit (bytes), network and block I/O rates (bytes per second). None where it cannot
    be known yet (the first reading has no rates). ``count`` readings were merged into it,
    over ``span`` seconds (0 for a single reading)."""

    time: float
    cpu_percent: float | None
    memory_used: int | None
    memory_limit: int | None
    net_rx_rate: float | None
    net_tx_rate: float | None
    block_read_rate: float | None
    block_write_rate: float | None
    count: int = 1
    span: float = 0.0

    @property
    def memory_percent(self) -> float | None:
        if self.memory_used is None or not self.memory_limit:
            return None
        return self.memory_used / self.memory_limit * 100.0


def _rate(now: int, before: int, seconds: float) -> float | None:
    if seconds <= 0 or now < before:  # counters reset (the container restarted)
        return None
    return (now - before) / seconds


def derive_point(cur: StatsSample, prev: StatsSample | None = None) -> StatsPoint:
    """The point for ``cur``; rates need ``prev`` (the same container's previous reading)."""
    seconds = cur.read - prev.read if prev is not None else 0.0
    rates: list[float | None] = [None, None, None, None]
    if prev is not None:
        rates = [
            _rate(cur.net_rx, prev.net_rx, seconds),
            _rate(cur.net_tx, prev.net_tx, seconds),
            _rate(cur.block_read, prev.block_read, seconds),
            _rate(cur.block_write, prev.block_write, seconds),
        ]
    return StatsPoint(
        time=cur.read,
        cpu_percent=cpu_percent(cur, prev),
        memory_used=cur.memory_used,
        memory_limit=cur.memory_limit,
        net_rx_rate=rates[0],
        net_tx_rate=rates[1],
        block_read_rate=rates[2],
        block_write_rate=rates[3],
    )


def _mean(a: float | None, wa: int, b: float | None, wb: int) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return (a * wa + b * wb) / (wa + wb)


def merge_points(a: StatsPoint, b: StatsPoint) -> StatsPoint:
    """One point standing for both (``a`` older): averages weighted by the readings each
    stands for, the newer limit, timed at the newer one."""
    wa, wb = a.count, b.count
    used = _mean(a.memory_used, wa, b.memory_used, wb)
    return StatsPoint(
        time=b.time,
        cpu_percent=_mean(a.cpu_percent, wa, b.cpu_percent, wb),
        memory_used=None if used is None else round(used),
        memory_limit=b.memory_limit if b.memory_limit is not None else a.memory_limit,
        net_rx_rate=_mean(a.net_rx_rate, wa, b.net_rx_rate, wb),
        net_tx_rate=_mean(a.net_tx_rate, wa, b.net_tx_rate, wb),
        block_read_rate=_mean(a.block_read_rate, wa, b.block_read_rate, wb),
        block_write_rate=_mean(a.block_write_rate, wa, b.block_write_rate, wb),
        count=wa + wb,
        span=b.time - a.time + a.span,
    )


FINE_SECONDS = 15 * 60.0  # every reading of the last 15 minutes is kept as it came
FINE_CAPACITY = 2_000  # ... at most (a stream gives one a second)
COARSE_BUCKET = 10.0  # older readings merge into buckets this wide, at first
COARSE_CAPACITY = 1_500  # then into twice as wide ones whenever there are more buckets


class StatsHistory:
    """The points of one container since it was first sampled, in bounded memory.

    The last ``fine_seconds`` are kept point by point (at most ``fine_capacity``); older
    points are merged into buckets ``bucket`` seconds wide, and whenever there are more than
    ``coarse_capacity`` buckets, pairs are merged and the width doubles. So at most
    ``fine_capacity + coarse_capacity`` points are held however long the app runs.
    """

    def __init__(
        self,
        fine_seconds: float = FINE_SECONDS,
        fine_capacity: int = FINE_CAPACITY,
        bucket: float = COARSE_BUCKET,
        coarse_capacity: int = COARSE_CAPACITY,
    ):
        if fine_capacity < 1 or coarse_capacity < 2 or bucket <= 0:
            raise ValueError("history capacities must be positive")
        self.fine_seconds = fine_seconds
        self.bucket = bucket
        self.coarse_capacity = coarse_capacity
        self._fine: deque[StatsPoint] = deque()
        self._fine_capacity = fine_capacity
        self._coarse: list[StatsPoint] = []
        self._coarse_bucket_index: int | None = None

    def __len__(self) -> int:
        return len(self._fine) + len(self._coarse)

    @property
    def latest(self) -> StatsPoint | None:
        if self._fine:
            return self._fine[-1]
        return self._coarse[-1] if self._coarse else None

    @property
    def first_time(self) -> float | None:
        if self._coarse:
            return self._coarse[0].time - self._coarse[0].span
        return self._fine[0].time if self._fine else None

    def add(self, point: StatsPoint) -> None:
        """Append a point (newer than the last one; older ones are ignored)."""
        latest = self.latest
        if latest is not None and point.time <= latest.time:
            return
        self._fine.append(point)
        horizon = point.time - self.fine_seconds
        while self._fine and (
            self._fine[0].time < horizon or len(self._fine) > self._fine_capacity
        ):
            self._age(self._fine.popleft())

    def points(self, since: float | None = None) -> list[StatsPoint]:
        """The points at or after ``since`` (all of them for None), oldest first."""
        out = [p for p in self._coarse if since is None or p.time >= since]
        out.extend(p for p in self._fine if since is None or p.time >= since)
        return out

    def _age(self, point: StatsPoint) -> None:
        index = math.floor(point.time / self.bucket)
        if self._coarse and index == self._coarse_bucket_index:
            self._coarse[-1] = merge_points(self._coarse[-1], point)
        else:
            self._coarse.append(point)
            self._coarse_bucket_index = index
        if len(self._coarse) > self.coarse_capacity:
            self._halve()

    def _halve(self) -> None:
        """Twice as wide buckets: merge the points that now share one."""
        self.bucket *= 2
        merged: list[StatsPoint] = []
        last_index: int | None = None
        for point in self._coarse:
            index = math.floor(point.time / self.bucket)
            if merged and index == last_index:
                merged[-1] = merge_points(merged[-1], point)
            else:
                merged.append(point)
                last_index = index
        self._coarse = merged
        self._coarse_bucket_index = last_index


class StatsBook:
    """Every container's history and last reading (one thread's object; the GUI's).

    ``add(sample)`` derives the point from the container's previous reading and records it;
    samples from a one-shot schedule and a stream of the same container mix in time order.
    """

    def __init__(self, history: Callable[[], StatsHistory] = StatsHistory):
        self._new_history = history
        self._histories: dict[str, StatsHistory] = {}
        self._last: dict[str, StatsSample] = {}

    def add(self, sample: StatsSample) -> StatsPoint | None:
        """Record ``sample``; the new point, or None for a reading older than the last."""
        prev = self._last.get(sample.container_id)
        if prev is not None and sample.read <= prev.read:
            return None
        point = derive_point(sample, prev)
        self._last[sample.container_id] = sample
        history = self._histories.get(sample.container_id)
        if history is None:
            history = self._histories[sample.container_id] = self._new_history()
        history.add(point)
        return point

    def latest(self, container_id: str) -> StatsPoint | None:
        history = self._histories.get(container_id)
        return history.latest if history is not None else None

    def history(self, container_id: str) -> StatsHistory | None:
        return self._histories.get(container_id)

    def containers(self) -> list[str]:
        return list(self._histories)

    def forget(self, container_ids: Iterable[str]) -> None:
        """Drop removed containers."""
        for cid in container_ids:
            self._histories.pop(cid, None)
            self._last.pop(cid, None)


# --------------------------------------------------------------------------------------
# Reading from the engine


def _document(response: Any, container_id: str) -> StatsSample | None:
    try:
        return parse_stats(response, container_id)
    except StatsFormatError as exc:
        exc.details = repr(response)[:4000]
        raise


def one_shot(client: EngineClient, container_id: str) -> StatsSample | None:
    """One reading of a container (None when it is not running). On engines older than API
    1.41 this is a plain non-streamed read, which takes two collection ticks."""
    api = client.api
    kwargs: dict[str, Any] = {"stream": False}
    if not version_lt(api._version, ONE_SHOT_API):
        kwargs["one_shot"] = True
    data = client._call("read the stats of", container_id, api.stats, container_id, **kwargs)
    return _document(data, container_id)


class StatsStream(ClosableStream):
    """A container's readings as the engine sends them (one a second); ``close()`` from any
    thread ends the iteration. Ends when the container stops (the engine itself goes on
    sending empty readings of a stopped container)."""

    def __init__(self, response: requests.Response, container_id: str, config: EngineConfig):
        super().__init__(response)
        self.container_id = container_id
        self._config = config

    def __iter__(self) -> Iterator[StatsSample]:
        decoder = JSONStreamDecoder()
        try:
            for chunk in self._chunks():
                for doc in decoder.feed(chunk):
                    sample = _document(doc, self.container_id)
                    if sample is None:  # it stopped: the engine would send zeros forever
                        self.close()
                        return
                    yield sample
        except STREAM_ERRORS as exc:
            raise EngineUnreachable(
                f"Lost the stats stream from {self._config.describe()}",
                hint="The engine stopped or the connection dropped.",
                details=str(exc),
            ) from exc


def stats_stream(client: EngineClient, container_id: str) -> StatsStream:
    """Follow a container's readings; iterate on a worker thread, ``close()`` from anywhere."""
    api = client.api

    def request() -> requests.Response:
        response = api._get(
            api._url("/containers/{0}/stats", container_id),
            params={"stream": True},
            stream=True,
            timeout=None,
        )
        api._raise_for_status(response)
        return response

    return StatsStream(
        client._call("follow the stats of", container_id, request), container_id, client.config
    )


class StatsSampler:
    """One-shot readings of many containers at once, from its own ``workers`` threads (a
    client each), so the engine answers them in one collection pass.

    ``sample(ids)`` blocks (call it on a worker thread) and returns a reading per container
    that answered; a container that is gone or not running is left out. Raises
    ``EngineUnreachable`` when the engine cannot be reached at all.
    """

    def __init__(self, config: EngineConfig, workers: int = 10):
        self.config = config
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="stats")
        self._local = threading.local()
        self._clients: list[EngineClient] = []
        self._lock = threading.Lock()
        self._closed = False

    def _client(self) -> EngineClient:
        client: EngineClient | None = getattr(self._local, "client", None)
        if client is None:
            client = self.config.connect()
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def _drop_client(self) -> None:
        client: EngineClient | None = getattr(self._local, "client", None)
        self._local.client = None
        if client is not None:
            with self._lock:
                if client in self._clients:
                    self._clients.remove(client)
            client.close()

    def _one(self, container_id: str) -> StatsSample | ToolboxError | None:
        try:
            return one_shot(self._client(), container_id)
        except NotFoundError:
            return None
        except EngineUnreachable as exc:
            self._drop_client()
            return exc
        except ToolboxError as exc:
            return exc

    def sample(self, container_ids: Sequence[str]) -> dict[str, StatsSample]:
        if self._closed:
            return {}
        try:
            results = list(self._pool.map(self._one, container_ids))
        except RuntimeError:  # the pool was shut down meanwhile (close()): nothing to report
            return {}
        out: dict[str, StatsSample] = {}
        unreachable: EngineUnreachable | None = None
        for cid, result in zip(container_ids, results, strict=True):
            if isinstance(result, StatsSample):
                out[cid] = result
            elif isinstance(result, EngineUnreachable):
                unreachable = result
            elif isinstance(result, ToolboxError):
                log.debug("stats of %s: %s", cid[:12], result)
        if unreachable is not None and not out:
            raise unreachable
        return out

    def close(self) -> None:
        """Stop the threads and close their clients (waits for readings in flight)."""
        self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            try:
                client.close()
            except Exception:
                log.debug("closing a stats client failed", exc_info=True)
