"""Live container stats in the GUI: where the readings come from (``StatsMonitor``) and the
Stats tab's graphs (``StatsPanel`` of ``LineGraph`` widgets, painted with QPainter: QtCharts is
not part of PySide6-Essentials).

``StatsMonitor`` feeds one ``StatsBook`` (history per container, kept while the app runs) from
two sources, both off the GUI thread and only while the Containers page is visible:

- the selected running container, while the Stats tab shows it: a stats stream (a reading a
  second);
- the CPU % and Memory columns: one-shot readings of the visible running rows, every
  ``SCHEDULE_MS``, asked all at once (``StatsSampler``) so the engine answers them in one
  collection pass; not at all while the columns are off.

A container that pauses or stops keeps its history; the graphs and labels show its last values.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPalette, QPen
from PySide6.QtWidgets import (
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from toolbox.engine.parse import format_size
from toolbox.engine.records import Container, ContainerState
from toolbox.engine.stats import StatsBook, StatsPoint, StatsSample, StatsSampler, stats_stream
from toolbox.errors import ToolboxError
from ui.tasks import on_gui

if TYPE_CHECKING:
    from ui.session import EngineSession

log = logging.getLogger(__name__)

# One-shot readings of the visible running rows this often. Each reading costs dockerd about
# 1-1.5 ms of CPU (benchmarks/stats_overhead.py), against about 33 ms a minute that the open
# page costs it anyway (the session's heartbeat): with 13 visible rows, 10 s measured 4x that
# idle figure (+100 ms a minute, 0.17 % of one CPU) and 30 s 1.4x; 1.2x allows only about
# five readings a minute, which no live column gets by with.
SCHEDULE_MS = 10_000
SAMPLER_WORKERS = 10
RANGES: tuple[tuple[str, float | None], ...] = (
    ("Last 5 minutes", 5 * 60.0),
    ("Last 15 minutes", 15 * 60.0),
    ("All (since the app started)", None),
)
STREAM_RETRY_MS = 5_000  # a broken stream of the selected container is opened again after
GAP_S = 25.0  # readings further apart than this (plus what a merged point spans) are a gap


def format_memory(size: float) -> str:
    """Memory as ``docker stats`` writes it: binary units ("324KiB", "64MiB", "1.5GiB")."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)}{unit}" if unit == "B" else f"{value:.3g}{unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def format_percent(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}%"


def format_rate(value: float | None) -> str:
    return "" if value is None else f"{format_size(value)}/s"


def memory_text(point: StatsPoint) -> str:
    if point.memory_used is None:
        return ""
    return format_memory(point.memory_used)


def memory_tooltip(point: StatsPoint) -> str | None:
    if point.memory_used is None:
        return None
    limit = point.memory_limit
    if not limit:
        return f"{format_memory(point.memory_used)} used"
    return (
        f"{format_memory(point.memory_used)} of {format_memory(limit)} "
        f"({format_percent(point.memory_percent)})"
    )


# --------------------------------------------------------------------------------------
# Where readings come from


class _Follow:
    """One stats stream: the reader loop on a worker thread, ``close()`` from the GUI."""

    def __init__(self, container_id: str, deliver: Callable[[StatsSample], None]):
        self.container_id = container_id
        self.deliver = deliver
        self.cancel = threading.Event()
        self._stream: Any = None
        self._lock = threading.Lock()

    def run(self, client: Any) -> int:
        stream = stats_stream(client, self.container_id)
        with self._lock:
            self._stream = stream
            if self.cancel.is_set():
                stream.close()
        count = 0
        try:
            for sample in stream:
                if self.cancel.is_set():
                    break
                self.deliver(sample)
                count += 1
        finally:
            stream.close()
        return count

    def close(self) -> None:
        self.cancel.set()
        with self._lock:
            if self._stream is not None:
                self._stream.close()


class StatsMonitor(QObject):
    """Collects readings into ``book`` (see the module docstring).

    Signals:
        updated(set[str]): containers with a new point.
    """

    updated = Signal(object)

    def __init__(
        self,
        session: EngineSession,
        visible_running: Callable[[], Sequence[str]] | None = None,
        parent: QObject | None = None,
    ):
        super().__init__(parent)
        self.session = session
        self.book = StatsBook()
        self.visible_running = visible_running or (lambda: [])
        self.columns = True
        self.active = False
        self.rounds = 0  # schedule rounds done (tests, benchmark)
        self.sampled = 0  # readings the schedule got
        self.streamed = 0  # readings that came from the stream
        self._follow: _Follow | None = None
        self._followed: Container | None = None  # the selected one (streamed when running)
        self.stream_wanted = True  # whether its graphs are on screen (the Stats tab)
        self._sampler: StatsSampler | None = None
        self._round_busy = False
        self._closed = False
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._round)
        self._deliver = on_gui(self._streamed)

    # -- control (GUI thread) ----------------------------------------------------------------

    @property
    def streaming(self) -> str | None:
        """The container whose stream is open, if any."""
        return self._follow.container_id if self._follow is not None else None

    def set_active(self, active: bool) -> None:
        """Page shown or hidden: nothing is read while nobody can see it."""
        self.active = active
        self._sync()

    def set_columns(self, on: bool) -> None:
        self.columns = on
        self._sync()

    def follow(self, container: Container | None) -> None:
        """The selected container (None: several or none): streamed while it runs and its
        graphs are wanted."""
        self._followed = container
        self._sync_stream()

    def set_stream_wanted(self, wanted: bool) -> None:
        """The Stats tab shown or not: without it the selected container is read by the
        schedule like the other visible rows (a stream costs the engine more than all of
        them: benchmarks/stats_overhead.py)."""
        self.stream_wanted = wanted
        self._sync_stream()

    def _sync_stream(self) -> None:
        container = self._followed
        wanted = (
            container.id
            if container is not None
            and container.state is ContainerState.RUNNING
            and self.active
            and self.stream_wanted
            and not self._closed
            else None
        )
        if wanted != self.streaming:
            self._stop_stream()
        if wanted is not None and self.streaming is None:
            self._start_stream(wanted)

    def sample_now(self) -> None:
        """Run a schedule round at once (after the visible rows changed a lot)."""
        if self.active and self.columns and not self._round_busy:
            self._timer.stop()
            self._round()

    def close(self) -> None:
        self._closed = True
        self.active = False
        self._timer.stop()
        self._stop_stream()
        sampler, self._sampler = self._sampler, None
        if sampler is not None:
            threading.Thread(target=sampler.close, name="stats-close", daemon=True).start()

    def forget(self, container_ids: Sequence[str]) -> None:
        self.book.forget(container_ids)

    def _sync(self) -> None:
        if self._closed:
            return
        if self.active and self.columns:
            if not self._timer.isActive() and not self._round_busy:
                self._timer.start(0)
        else:
            self._timer.stop()
        self._sync_stream()

    # -- the stream of the selected container ------------------------------------------------

    def _start_stream(self, container_id: str) -> None:
        follow = _Follow(container_id, self._deliver)
        self._follow = follow
        self.session.call(
            follow.run,
            lambda _n: self._stream_ended(follow),
            lambda error: self._stream_ended(follow, error),
            owner=self,
            what="Read container stats",
        )

    def _stop_stream(self) -> None:
        if self._follow is not None:
            self._follow.close()
            self._follow = None

    def _stream_ended(self, follow: _Follow, error: ToolboxError | None = None) -> None:
        if follow is not self._follow:
            return  # one we closed
        self._follow = None  # the container stopped (its history stays), or the stream broke
        if error is not None and not follow.cancel.is_set():
            log.warning("stats of %s stopped: %s", follow.container_id[:12], error)
            QTimer.singleShot(STREAM_RETRY_MS, self, self._sync_stream)

    def _streamed(self, sample: StatsSample) -> None:
        if self._closed:
            return
        if self._follow is None or sample.container_id != self._follow.container_id:
            return
        if self.book.add(sample) is not None:
            self.streamed += 1
            self.updated.emit({sample.container_id})

    # -- the schedule for the columns --------------------------------------------------------

    def _round(self) -> None:
        if self._closed or not (self.active and self.columns) or self._round_busy:
            return
        streamed = self.streaming
        ids = [cid for cid in self.visible_running() if cid != streamed]
        if not ids or not self.session.connected:
            self._timer.start(SCHEDULE_MS)
            return
        if self._sampler is None:
            self._sampler = StatsSampler(self.session.config, SAMPLER_WORKERS)
        sampler = self._sampler
        self._round_busy = True
        self.session.tasks.run(
            lambda: sampler.sample(ids),
            self._round_done,
            self._round_failed,
            key="stats:schedule",
            owner=self,
            what="Read container stats",
        )

    def _round_done(self, samples: dict[str, StatsSample]) -> None:
        self._round_busy = False
        self.rounds += 1
        self.sampled += len(samples)
        changed = {cid for cid, s in samples.items() if self.book.add(s) is not None}
        if changed:
            self.updated.emit(changed)
        self._next_round()

    def _round_failed(self, _error: ToolboxError) -> None:
        self._round_busy = False  # the engine went away: the session reports that itself
        self._next_round()

    def _next_round(self) -> None:
        if not self._closed and self.active and self.columns:
            self._timer.start(SCHEDULE_MS)


# --------------------------------------------------------------------------------------
# Graphs


class Series:
    """One line of a graph: a name, a colour, and how to read its value off a point."""

    def __init__(self, name: str, color: str, value: Callable[[StatsPoint], float | None]):
        self.name = name
        self.color = QColor(color)
        self.value = value


class LineGraph(QWidget):
    """A small time graph of one or more series over ``[start, end]`` (epoch seconds),
    with the largest value (or a fixed ceiling such as a memory limit) on top."""

    def __init__(
        self,
        title: str,
        series: Sequence[Series],
        format_value: Callable[[float], str],
        parent: QWidget | None = None,
    ):
        super().__init__(parent)
        self.title = title
        self.series = list(series)
        self.format_value = format_value
        self.points: list[StatsPoint] = []
        self.start = 0.0
        self.end = 0.0
        self.ceiling: float | None = None  # a fixed top (memory limit), else the data's
        self.floor_top = 1.0  # the top is never below this (so 0.1 % is not a full graph)
        self.paths_drawn = 0  # line segments drawn by the last paint (tests)
        self.setMinimumSize(220, 110)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def set_data(
        self, points: list[StatsPoint], start: float, end: float, ceiling: float | None = None
    ) -> None:
        self.points = points
        self.start, self.end = start, max(end, start + 1.0)
        self.ceiling = ceiling
        self.update()

    def top(self) -> float:
        if self.ceiling:
            return self.ceiling
        values = [v for p in self.points for s in self.series if (v := s.value(p)) is not None]
        return max(self.floor_top, max(values, default=0.0) * 1.1)

    def segments(self, series: Series) -> list[list[tuple[float, float]]]:
        """Runs of (time, value) with no gap inside (a hidden window, a stopped container)."""
        runs: list[list[tuple[float, float]]] = []
        last: StatsPoint | None = None
        for p in self.points:
            value = series.value(p)
            if value is None:
                last = None
                continue
            gap = last is None or p.time - last.time > GAP_S + p.span + last.span
            if gap:
                runs.append([])
            runs[-1].append((p.time, value))
            last = p
        return runs

    def paintEvent(self, _event: Any) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        palette = self.palette()
        text_color = palette.color(QPalette.ColorRole.WindowText)
        rect = QRectF(self.rect()).adjusted(4, 18, -4, -4)
        painter.fillRect(rect, palette.color(QPalette.ColorRole.Base))
        grid = QColor(text_color)
        grid.setAlpha(50)
        painter.setPen(QPen(grid, 1))
        painter.drawRect(rect)
        for i in (1, 2, 3):
            y = rect.top() + rect.height() * i / 4
            painter.drawLine(QPointF(rect.left(), y), QPointF(rect.right(), y))
        top = self.top()
        painter.setPen(text_color)
        painter.drawText(QPointF(6, 13), self.title)
        label = self.format_value(top)
        width = painter.fontMetrics().horizontalAdvance(label)
        painter.drawText(QPointF(rect.right() - width - 2, 13), label)
        span = self.end - self.start
        painter.setPen(grid.darker(150) if grid.lightness() > 128 else grid.lighter(250))
        painter.drawText(QPointF(rect.left() + 4, rect.bottom() - 4), span_text(span))
        drawn = 0
        for series in self.series:
            painter.setPen(QPen(series.color, 1.6))
            for run in self.segments(series):
                path = QPainterPath()
                for i, (t, v) in enumerate(run):
                    x = rect.left() + (t - self.start) / span * rect.width()
                    y = rect.bottom() - min(max(v, 0.0), top) / top * rect.height()
                    if i == 0:
                        path.moveTo(x, y)
                    else:
                        path.lineTo(x, y)
                if len(run) == 1:
                    x, y = path.currentPosition().x(), path.currentPosition().y()
                    painter.drawEllipse(QPointF(x, y), 1.5, 1.5)
                else:
                    painter.drawPath(path)
                drawn += 1
        self.paths_drawn = drawn
        painter.end()


def span_text(seconds: float) -> str:
    """How much time a graph spans, for its corner ("90 s", "15 min", "2.5 h")."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _legend(series: Sequence[Series]) -> str:
    return "  ".join(f"<span style='color:{s.color.name()}'>■</span> {s.name}" for s in series)


class StatsPanel(QWidget):
    """The Stats tab: current values and CPU, memory, network and block I/O graphs of one
    container over the chosen range."""

    def __init__(self, monitor: StatsMonitor, parent: QWidget | None = None):
        super().__init__(parent)
        self.monitor = monitor
        self.container: Container | None = None

        self.range_box = QComboBox()
        for label, seconds in RANGES:
            self.range_box.addItem(label, seconds)
        self.range_box.currentIndexChanged.connect(lambda _i: self.refresh())
        self.summary = QLabel()
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.cpu = LineGraph("CPU", [Series("CPU", "#1a73e8", lambda p: p.cpu_percent)], _pct)
        self.memory = LineGraph(
            "Memory",
            [Series("Used", "#8e24aa", lambda p: _float(p.memory_used))],
            format_memory,
        )
        self.network = LineGraph(
            "Network",
            [
                Series("Received", "#2e7d32", lambda p: p.net_rx_rate),
                Series("Sent", "#e65100", lambda p: p.net_tx_rate),
            ],
            lambda v: f"{format_size(v)}/s",
        )
        self.block = LineGraph(
            "Block I/O",
            [
                Series("Read", "#00838f", lambda p: p.block_read_rate),
                Series("Written", "#c62828", lambda p: p.block_write_rate),
            ],
            lambda v: f"{format_size(v)}/s",
        )
        self.cpu.floor_top = 100.0
        self.network.floor_top = self.block.floor_top = 1024.0
        self.memory.floor_top = 1024.0 * 1024

        top = QHBoxLayout()
        top.addWidget(self.summary, 1)
        top.addWidget(QLabel("Range:"))
        top.addWidget(self.range_box)
        grid = QGridLayout()
        grid.addWidget(self.cpu, 0, 0)
        grid.addWidget(self.memory, 0, 1)
        grid.addWidget(self.network, 1, 0)
        grid.addWidget(self.block, 1, 1)
        legends = QGridLayout()
        for col, graph in enumerate((self.network, self.block)):
            legend = QLabel(_legend(graph.series))
            legends.addWidget(legend, 0, col)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addLayout(grid, 1)
        layout.addLayout(legends)
        monitor.updated.connect(self._updated)
        self.refresh()

    @property
    def graphs(self) -> tuple[LineGraph, ...]:
        return (self.cpu, self.memory, self.network, self.block)

    def range_seconds(self) -> float | None:
        value = self.range_box.currentData()
        return float(value) if value is not None else None

    def show_container(self, container: Container | None) -> None:
        self.container = container
        self.refresh()

    def _updated(self, ids: set[str]) -> None:
        if self.container is not None and self.container.id in ids and self.isVisible():
            self.refresh()

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        self.refresh()

    def refresh(self) -> None:
        container = self.container
        history = self.monitor.book.history(container.id) if container is not None else None
        latest = history.latest if history is not None else None
        if container is None or history is None or latest is None:
            for graph in self.graphs:
                graph.set_data([], 0.0, 1.0)
            self.summary.setText(
                "Select a container to see its stats."
                if container is None
                else "No readings yet: stats are read while the container runs."
            )
            return
        seconds = self.range_seconds()
        running = container.state is ContainerState.RUNNING
        # The graph ends at the last reading (the engine's clock, which may differ from this
        # host's): now for a running container, its last values for a paused or stopped one.
        end = latest.time
        start = end - seconds if seconds is not None else (history.first_time or latest.time)
        points = history.points(since=start)
        for graph in self.graphs:
            ceiling = None
            if graph is self.memory and latest.memory_limit:
                ceiling = float(latest.memory_limit)
            graph.set_data(points, start, end, ceiling)
        self.summary.setText(self.summary_text(container, latest, running))

    @staticmethod
    def summary_text(container: Container, latest: StatsPoint, running: bool) -> str:
        parts = [
            f"CPU {format_percent(latest.cpu_percent) or '–'}",
            f"Memory {memory_tooltip(latest) or '–'}",
            f"Net in {format_rate(latest.net_rx_rate) or '–'}, "
            f"out {format_rate(latest.net_tx_rate) or '–'}",
            f"Block read {format_rate(latest.block_read_rate) or '–'}, "
            f"written {format_rate(latest.block_write_rate) or '–'}",
        ]
        text = " · ".join(parts)
        if not running:
            stamp = time.strftime("%H:%M:%S", time.localtime(latest.time))
            text = f"{container.state.label}: last values, read at {stamp}. " + text
        return text


def _pct(value: float) -> str:
    return f"{value:.0f}%"


def _float(value: int | None) -> float | None:
    return None if value is None else float(value)
