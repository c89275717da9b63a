"""Stats parsing on real stats JSON recorded from the harness dockerd (tests/data/stats/), the
derived points, and the bounded history."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from toolbox.engine.stats import (
    StatsBook,
    StatsFormatError,
    StatsHistory,
    StatsPoint,
    StatsSample,
    cpu_percent,
    derive_point,
    merge_points,
    parse_stats,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "stats" / "dockerd-20.10-cgroup1.json"
RECORDED = json.loads(DATA.read_text())


def sample(name: str) -> StatsSample:
    parsed = parse_stats(RECORDED[name])
    assert parsed is not None
    return parsed


def test_busy_container_with_previous_reading():
    doc = RECORDED["busy_stream_false"]
    s = sample("busy_stream_false")
    assert s.container_id == doc["id"]
    assert s.online_cpus == 2
    assert s.cpu_total_ns == 2392330337
    assert s.pre_cpu_total_ns == 1954947022
    # docker stats: (2392330337 - 1954947022) / (385420000000 - 383420000000) * 2 * 100
    assert cpu_percent(s) == pytest.approx(43.7383315)
    # cgroup v1: usage minus total_inactive_file (0 here), against the 64 MiB limit
    assert s.memory_used == 323584
    assert s.memory_limit == 64 * 1024 * 1024
    assert s.net_rx == 806 and s.net_tx == 0
    assert (s.block_read, s.block_write) == (0, 0)
    assert s.pids == 1


def test_one_shot_has_no_previous_reading():
    s = sample("busy_one_shot")
    assert s.pre_cpu_total_ns is None and s.pre_system_cpu_ns is None
    assert cpu_percent(s) is None
    assert derive_point(s).cpu_percent is None


def test_cpu_between_two_readings_of_a_busy_loop():
    # Three streamed readings a second apart of a busy loop (on a loaded 2-CPU host: it got
    # a third to a half of a CPU while they were recorded).
    first, second, third = (parse_stats(d) for d in RECORDED["busy_stream"])
    assert first is not None and second is not None and third is not None
    assert first.pre_cpu_total_ns is None  # the stream's first reading has no previous one
    assert cpu_percent(first) is None
    between = cpu_percent(third, second)
    cpu_ns = third.cpu_total_ns - second.cpu_total_ns
    system_ns = third.system_cpu_ns - second.system_cpu_ns
    assert between == pytest.approx(cpu_ns / system_ns * 2 * 100)
    assert between is not None and 20 < between <= 200
    point = derive_point(third, second)
    assert point.cpu_percent == pytest.approx(between)
    assert point.net_rx_rate == 0.0  # nothing received during that second
    assert point.time == third.read
    assert point.memory_percent == pytest.approx(third.memory_used / third.memory_limit * 100)


def test_paused_container_still_reports_counters():
    s = sample("paused_stream_false")
    assert s.cpu_total_ns > 0
    pct = cpu_percent(s)
    assert pct is not None and pct < 5  # frozen: no CPU between the two readings


def test_idle_container_has_no_limit_of_its_own():
    s = sample("idle_one_shot")
    assert s.memory_used is not None and s.memory_used > 0
    assert s.memory_limit is not None and s.memory_limit > 64 * 1024 * 1024  # the host's


def test_stopped_container_is_no_sample():
    assert parse_stats(RECORDED["stopped_one_shot"]) is None
    assert parse_stats(RECORDED["stopped_stream_false"]) is None


def test_cgroup_v2_memory_and_block_io():
    # The cgroup v2 field names the engine uses on such hosts (this host is v1 and has no
    # block accounting, so this document is the v1 busy one with v2 fields put in).
    doc = json.loads(json.dumps(RECORDED["busy_stream_false"]))
    doc["memory_stats"]["stats"] = {"inactive_file": 1000, "anon": 4096}
    doc["memory_stats"]["usage"] = 5000
    doc["blkio_stats"]["io_service_bytes_recursive"] = [
        {"major": 8, "minor": 0, "op": "read", "value": 4096},
        {"major": 8, "minor": 0, "op": "write", "value": 16777216},
        {"major": 8, "minor": 16, "op": "Write", "value": 10},
        {"major": 8, "minor": 16, "op": "Total", "value": 99},
    ]
    s = parse_stats(doc)
    assert s is not None
    assert s.memory_used == 4000
    assert (s.block_read, s.block_write) == (4096, 16777226)


@pytest.mark.parametrize(
    "doc",
    [
        [1, 2],
        "stats",
        {"read": "2026-12-07T00:38:17Z", "cpu_stats": []},
        {"read": "2026-12-07T00:38:17Z", "cpu_stats": {"cpu_usage": {"total_usage": "lots"}}},
        {"read": "2026-12-07T00:38:17Z", "blkio_stats": {"io_service_bytes_recursive": {}}},
    ],
)
def test_bad_documents_are_a_clear_error(doc):
    with pytest.raises(StatsFormatError) as info:
        parse_stats(doc)
    assert info.value.hint


def _point(t: float, cpu: float = 10.0, used: int = 100) -> StatsPoint:
    return StatsPoint(t, cpu, used, 1000, 1.0, 2.0, 3.0, 4.0)


def test_rates_and_counter_reset():
    base = sample("busy_stream_false")
    later = StatsSample(**{
        **{f: getattr(base, f) for f in StatsSample.__slots__},
        "read": base.read + 2,
        "net_rx": base.net_rx + 2000,
        "net_tx": base.net_tx + 500,
        "block_write": 8192,
    })  # fmt: skip
    point = derive_point(later, base)
    assert point.net_rx_rate == 1000.0 and point.net_tx_rate == 250.0
    assert point.block_write_rate == 4096.0 and point.block_read_rate == 0.0
    restarted = StatsSample(**{
        **{f: getattr(later, f) for f in StatsSample.__slots__},
        "read": later.read + 1,
        "net_rx": 10,
    })  # fmt: skip
    assert derive_point(restarted, later).net_rx_rate is None


def test_book_mixes_sources_in_time_order():
    first, second, third = (parse_stats(d) for d in RECORDED["busy_stream"])
    assert first and second and third
    book = StatsBook()
    assert book.add(first) is not None
    assert book.add(third) is not None
    assert book.add(second) is None  # older than the last reading: ignored
    history = book.history(first.container_id)
    assert history is not None and len(history) == 2
    latest = book.latest(first.container_id)
    assert latest is not None and latest.cpu_percent is not None
    book.forget([first.container_id])
    assert book.latest(first.container_id) is None


def test_merge_weights_by_count():
    a = StatsPoint(10, 10.0, 100, 1000, None, 2.0, 0.0, 0.0, count=3, span=2.0)
    b = _point(11, cpu=50.0, used=500)
    m = merge_points(a, b)
    assert m.cpu_percent == pytest.approx((10 * 3 + 50) / 4)
    assert m.memory_used == 200
    assert m.net_rx_rate == 1.0  # only b knew it
    assert (m.time, m.count, m.span) == (11, 4, 3.0)


def test_history_keeps_recent_points_and_bounds_the_rest():
    history = StatsHistory(fine_seconds=60, fine_capacity=100, bucket=10, coarse_capacity=20)
    for t in range(10_000):  # one reading a second for almost three hours
        history.add(_point(float(t), cpu=float(t % 7)))
    assert len(history) <= 100 + 20
    recent = history.points(since=9_999 - 59)
    assert [p.time for p in recent] == [float(t) for t in range(9_940, 10_000)]
    everything = history.points()
    times = [p.time for p in everything]
    assert times == sorted(times)
    assert history.first_time is not None and history.first_time <= 10
    assert sum(p.count for p in everything) == 10_000  # every reading is in some point
    assert history.latest is not None and history.latest.time == 9_999
    mean = sum((p.cpu_percent or 0) * p.count for p in everything) / 10_000
    assert mean == pytest.approx(sum(t % 7 for t in range(10_000)) / 10_000)


def test_history_ignores_out_of_order_points():
    history = StatsHistory()
    history.add(_point(5))
    history.add(_point(4))
    history.add(_point(5))
    assert [p.time for p in history.points()] == [5]
