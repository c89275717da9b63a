"""Live container stats against the real engine: the Stats tab's graphs fed by a busy
container's stream, the history kept across selection changes, last values after a stop, the
CPU % and Memory columns (values for running containers, blank for the others, off when
toggled off), and many one-shot readings at once."""

from __future__ import annotations

import re

import docker
import pytest
from PySide6.QtCore import Qt

from tests.ui.conftest import unique
from toolbox.engine.connect import EngineConfig
from toolbox.engine.records import ContainerState
from toolbox.engine.stats import StatsPoint, StatsSampler
from ui.containers import model as cmodel
from ui.containers.details import STATS, SUMMARY
from ui.containers.stats import GAP_S, LineGraph, Series, format_memory, span_text
from ui.models.table import DISPLAY_ROLE, TOOLTIP_ROLE

BUSY = "while :; do :; done"
IDLE = "trap 'exit 0' TERM; while true; do sleep 0.2; done"


def run(docker_client: docker.DockerClient, name: str, command: str, **host) -> str:
    api = docker_client.api
    cid = str(
        api.create_container(
            "busybox:latest",
            ["sh", "-c", command],
            name=name,
            host_config=api.create_host_config(**host),
        )["Id"]
    )
    api.start(cid)
    return cid


def wait_row(qtbot, page, cid: str, state: ContainerState = ContainerState.RUNNING) -> None:
    def ok() -> bool:
        record = page.model.record_for(cid)
        return record is not None and record.state is state

    qtbot.waitUntil(ok, timeout=20_000)


def cell(page, cid: str, column: int, role: int = DISPLAY_ROLE):
    row = page.model.row_of(cid)
    assert row is not None
    return page.model.data(page.model.index(row, column), role)


def readings(page, cid: str) -> int:
    history = page.stats.book.history(cid)
    return len(history) if history is not None else 0


def test_graphs_follow_a_busy_container_and_keep_its_history(qtbot, containers_page, docker_client):
    page = containers_page
    busy = run(docker_client, unique("busy"), BUSY, mem_limit="64m")
    idle = run(docker_client, unique("idle"), IDLE)
    wait_row(qtbot, page, busy)
    wait_row(qtbot, page, idle)
    page.details.setCurrentIndex(STATS)
    panel = page.details.stats

    page.select_ids([busy])
    qtbot.waitUntil(lambda: page.stats.streaming == busy, timeout=5_000)

    def busy_seen() -> bool:
        history = page.stats.book.history(busy)
        if history is None or len(history) < 3:
            return False
        cpu = [p.cpu_percent for p in history.points() if p.cpu_percent is not None]
        return len(cpu) >= 2 and max(cpu) > 10

    qtbot.waitUntil(busy_seen, timeout=30_000)
    assert page.stats.streamed >= 3
    latest = page.stats.book.latest(busy)
    assert latest is not None
    assert latest.memory_limit == 64 * 1024 * 1024
    assert latest.memory_used is not None and 0 < latest.memory_used < 64 * 1024 * 1024
    # The graphs hold those readings and draw them.
    assert panel.container is not None and panel.container.id == busy
    assert len(panel.cpu.points) >= 3
    assert panel.memory.ceiling == 64 * 1024 * 1024
    panel.cpu.grab()
    assert panel.cpu.paths_drawn >= 1
    assert "CPU " in panel.summary.text() and "of 64MiB" in panel.summary.text()
    before = page.stats.book.history(busy)
    assert before is not None
    first_time, kept = before.first_time, len(before)

    # Away to the idle one: its own stream, and the busy one's history stays.
    page.select_ids([idle])
    qtbot.waitUntil(lambda: page.stats.streaming == idle, timeout=5_000)
    qtbot.waitUntil(lambda: readings(page, idle) >= 2, timeout=20_000)
    assert panel.container is not None and panel.container.id == idle
    idle_cpu = page.stats.book.latest(idle)
    assert idle_cpu is not None and idle_cpu.cpu_percent is not None
    assert idle_cpu.cpu_percent < 50
    assert readings(page, busy) >= kept

    # ... and back: the history from before is still there, and grows again.
    page.select_ids([busy])
    qtbot.waitUntil(lambda: page.stats.streaming == busy, timeout=5_000)
    qtbot.waitUntil(lambda: readings(page, busy) > kept, timeout=20_000)
    after = page.stats.book.history(busy)
    assert after is before and after.first_time == first_time
    assert panel.container is not None and panel.container.id == busy
    panel.range_box.setCurrentIndex(panel.range_box.count() - 1)  # all
    assert len(panel.cpu.points) == len(after.points())
    assert panel.cpu.points[0].time == first_time

    # Another tab: no stream; the selected row is read by the schedule like the others.
    page.details.setCurrentIndex(SUMMARY)
    assert page.stats.streaming is None
    assert busy in page.visible_running_ids()
    page.details.setCurrentIndex(STATS)
    qtbot.waitUntil(lambda: page.stats.streaming == busy, timeout=5_000)


def test_stopped_container_shows_its_last_values(qtbot, containers_page, docker_client):
    page = containers_page
    busy = run(docker_client, unique("busy"), BUSY)
    wait_row(qtbot, page, busy)
    page.details.setCurrentIndex(STATS)
    page.select_ids([busy])
    qtbot.waitUntil(lambda: readings(page, busy) >= 2, timeout=20_000)
    assert cell(page, busy, cmodel.CPU) != ""
    panel = page.details.stats

    # Paused: no stream, the last values stay in the list and the tab.
    docker_client.api.pause(busy)
    wait_row(qtbot, page, busy, ContainerState.PAUSED)
    qtbot.waitUntil(lambda: page.stats.streaming is None, timeout=10_000)
    assert busy not in page.visible_running_ids()
    assert cell(page, busy, cmodel.CPU).endswith("%")
    assert cell(page, busy, cmodel.MEMORY) != ""
    assert panel.summary.text().startswith("Paused: last values")
    docker_client.api.unpause(busy)
    wait_row(qtbot, page, busy)
    qtbot.waitUntil(lambda: page.stats.streaming == busy, timeout=10_000)

    docker_client.api.kill(busy)
    wait_row(qtbot, page, busy, ContainerState.EXITED)
    qtbot.waitUntil(lambda: page.stats.streaming is None, timeout=10_000)
    history = page.stats.book.history(busy)
    assert history is not None and len(history) >= 2
    assert "last values" in panel.summary.text()
    assert panel.cpu.points and panel.cpu.points[-1] == history.latest
    assert panel.cpu.end == history.latest.time  # the graph ends at the last reading
    # The list shows blank for a stopped container, though the history is kept.
    assert cell(page, busy, cmodel.CPU) == ""
    assert cell(page, busy, cmodel.MEMORY) == ""


def test_columns_for_running_rows_blank_for_stopped(qtbot, containers_page, docker_client):
    page = containers_page
    running = run(docker_client, unique("up"), IDLE, mem_limit="32m")
    stopped = run(docker_client, unique("down"), "true")
    docker_client.api.wait(stopped, timeout=30)
    wait_row(qtbot, page, running)
    wait_row(qtbot, page, stopped, ContainerState.EXITED)
    assert not page.view.isColumnHidden(cmodel.CPU)
    assert not page.view.isColumnHidden(cmodel.MEMORY)
    assert running in page.visible_running_ids()
    assert stopped not in page.visible_running_ids()
    page.stats.sample_now()

    # Two schedule rounds give the CPU % (a one-shot reading has no previous one).
    qtbot.waitUntil(lambda: cell(page, running, cmodel.CPU) != "", timeout=40_000)
    assert cell(page, running, cmodel.CPU).endswith("%")
    memory = cell(page, running, cmodel.MEMORY)
    assert re.fullmatch(r"\d+(\.\d+)?(B|KiB|MiB)", memory), memory
    assert "of 32MiB" in cell(page, running, cmodel.MEMORY, TOOLTIP_ROLE)
    assert cell(page, stopped, cmodel.CPU) == ""
    assert cell(page, stopped, cmodel.MEMORY) == ""
    assert page.stats.book.history(stopped) is None  # never asked for
    assert page.stats.rounds >= 2

    # Off: hidden, no schedule; remembered for the next page.
    page.actions_by_key["stats_columns"].setChecked(False)
    assert page.view.isColumnHidden(cmodel.CPU) and page.view.isColumnHidden(cmodel.MEMORY)
    assert not page.stats.columns
    qtbot.waitUntil(lambda: not page.stats._round_busy, timeout=15_000)
    assert not page.stats._timer.isActive()
    from ui.containers.page import ContainersPage

    again = ContainersPage(page.context)
    qtbot.addWidget(again)
    assert not again.actions_by_key["stats_columns"].isChecked()
    assert again.view.isColumnHidden(cmodel.CPU)
    again.shutdown()
    page.actions_by_key["stats_columns"].setChecked(True)
    assert page.stats.columns and not page.view.isColumnHidden(cmodel.CPU)

    # Sorting by CPU puts rows without a reading after those with one.
    page.view.sortByColumn(cmodel.CPU, Qt.SortOrder.DescendingOrder)
    order = [page.proxy.record_at(r).id for r in range(page.proxy.rowCount())]
    assert order.index(running) < order.index(stopped)


def test_sampler_reads_many_containers_at_once(qtbot, engine, docker_client):
    ids = [run(docker_client, unique("many"), IDLE) for _ in range(4)]
    gone = run(docker_client, unique("gone"), "true")
    docker_client.api.wait(gone, timeout=30)
    sampler = StatsSampler(EngineConfig.from_url(engine.url), workers=5)
    try:
        samples = sampler.sample([*ids, gone])
    finally:
        sampler.close()
    assert set(samples) == set(ids)  # the stopped one gives no reading
    for cid in ids:
        s = samples[cid]
        assert s.container_id == cid
        assert s.memory_used is not None and s.memory_used > 0
        assert s.system_cpu_ns is not None and s.pre_cpu_total_ns is None  # one-shot


def test_graph_breaks_lines_at_gaps(qtbot):
    graph = LineGraph("CPU", [Series("CPU", "#000000", lambda p: p.cpu_percent)], str)
    qtbot.addWidget(graph)

    def point(t: float, cpu: float | None = 5.0) -> StatsPoint:
        return StatsPoint(t, cpu, 1, 2, None, None, None, None)

    points = [point(0), point(1), point(2), point(2 + GAP_S + 5), point(8 + GAP_S, None)]
    points.append(point(10 + GAP_S))
    graph.set_data(points, 0, 20 + GAP_S)
    runs = graph.segments(graph.series[0])
    assert [[t for t, _ in r] for r in runs] == [[0, 1, 2], [2 + GAP_S + 5], [10 + GAP_S]]
    graph.resize(300, 120)
    graph.grab()
    assert graph.paths_drawn == 3
    assert graph.top() == pytest.approx(5.5)


def test_memory_in_binary_units_like_docker_stats():
    assert format_memory(999) == "999B"
    assert format_memory(331776) == "324KiB"
    assert format_memory(64 * 1024 * 1024) == "64MiB"
    assert format_memory(1.5 * 1024**3) == "1.5GiB"


def test_graph_span_label():
    assert span_text(45) == "45 s"
    assert span_text(300) == "5 min"
    assert span_text(9000) == "2.5 h"


def test_stream_closes_from_another_thread_and_ends_when_the_container_stops(engine, docker_client):
    import threading

    from toolbox.engine.stats import stats_stream

    busy = run(docker_client, unique("busy"), BUSY)
    got: list = []
    two = threading.Event()
    ended = threading.Event()

    with EngineConfig.from_url(engine.url).connect() as client:
        stream = stats_stream(client, busy)

        def read() -> None:
            for sample in stream:
                got.append(sample)
                if len(got) >= 2:
                    two.set()
            ended.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        assert two.wait(20)
        stream.close()  # from this thread, while the reader waits for the next reading
        reader.join(10)
        assert not reader.is_alive() and ended.is_set()
        assert len(got) >= 2 and all(s.container_id == busy for s in got)
        assert got[1].pre_cpu_total_ns is not None  # streamed readings carry the previous one

        # A stream of a container that stops ends by itself.
        stream = stats_stream(client, busy)
        reader = threading.Thread(target=lambda: got.extend(stream), daemon=True)
        reader.start()
        docker_client.api.kill(busy)
        reader.join(20)
        assert not reader.is_alive()
        stream.close()
