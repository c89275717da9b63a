"""The engine's own cost of the CPU % and Memory columns: dockerd's CPU time with 50 running
containers and the Containers page open, columns on against columns off, in the same run
(target: ratio at most 1.2).

Setup: 50 busybox containers running on the engine (a shell waiting on sleep, labelled
``toolbox.bench.stats``, named ``stats-bench-NN``), the real ``ContainersPage`` on a connected
``EngineSession`` (1100x700, as the other benchmarks; the filter shows just those 50, so the
visible rows are theirs), nothing selected (no stream). Then windows of ``--window`` seconds,
alternating columns off and on (``--rounds`` of each), each after a settle time; dockerd's
user+system CPU time is read from ``/proc/PID/stat`` at both ends of each window while the Qt
event loop runs the app as usual. The baseline is the same page with the columns off: what the
app costs the engine anyway (the session's heartbeat ping every 1.5 s, its event stream).

Also printed (not the headline): the same with one container selected and the Stats tab open,
columns off (the one stream), the schedule's rounds and readings, the visible rows, and the
engine's containerd beside dockerd.

    python -m benchmarks.stats_overhead [--window S] [--rounds N] [--interval MS]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from urllib.parse import urlparse

from benchmarks import common

NEEDS_ENGINE = True
TARGET = 1.2
RUNNING = 50
LABEL = "toolbox.bench.stats"
PREFIX = "stats-bench-"
IMAGE = "bench/stats:1.0"
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def dockerd_pid(url: str) -> int:
    """The dockerd serving ``url`` (a unix socket), found by its command line."""
    parsed = urlparse(url)
    if parsed.scheme != "unix":
        raise RuntimeError(f"stats_overhead needs a local engine on a unix socket, not {url}")
    socket_path = parsed.path
    default = socket_path in ("/var/run/docker.sock", "/run/docker.sock")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not argv or not argv[0].endswith(b"dockerd"):
            continue
        args = [a.decode(errors="replace") for a in argv]
        hosts = [args[i + 1] for i, a in enumerate(args[:-1]) if a in ("-H", "--host")]
        hosts += [a.split("=", 1)[1] for a in args if a.startswith("--host=")]
        if any(urlparse(h).path == socket_path for h in hosts) or (default and not hosts):
            return int(entry.name)
    raise RuntimeError(f"no dockerd process serves {url}")


def children_named(pid: int, prefix: str) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and name.startswith(prefix):
            out.append(int(entry.name))
    return out


def ensure_running(url: str) -> list[str]:
    """Make ``RUNNING`` labelled containers run (creating what is missing); their ids."""
    common.ensure_image(url, IMAGE)
    client = common.api_client(url)
    try:
        have = {
            str(c["Names"][0]).lstrip("/"): c
            for c in client.containers(all=True, filters={"label": LABEL})
        }
        ids = []
        for i in range(RUNNING):
            name = f"{PREFIX}{i:02}"
            entry = have.get(name)
            if entry is None:
                cid = client.create_container(
                    IMAGE, common.SERVICE_CMD, name=name, labels={LABEL: "1"}
                )["Id"]
                client.start(cid)
            else:
                cid = entry["Id"]
                if entry["State"] != "running":
                    client.start(cid)
            ids.append(str(cid))
        return ids
    finally:
        client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stats_overhead")
    parser.add_argument("--window", type=float, default=40.0, help="seconds per window")
    parser.add_argument("--rounds", type=int, default=3, help="windows of each kind")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds before a window")
    parser.add_argument("--interval", type=int, default=None, help="schedule (ms) to try")
    args = parser.parse_args(argv)
    common.qt_platform()
    common.heading(f"stats overhead: dockerd CPU, {RUNNING} running, CPU/memory columns on vs off")
    with common.bench_engine() as url:
        print(f"starting {RUNNING} containers ...", flush=True)
        ids = ensure_running(url)
        return measure(url, ids, args)


def measure(url: str, ids: list[str], args: argparse.Namespace) -> int:
    from PySide6.QtWidgets import QApplication

    from toolbox.engine.connect import EngineConfig
    from ui.containers import stats as ui_stats
    from ui.containers.details import STATS
    from ui.containers.page import ContainersPage
    from ui.pages import PageContext
    from ui.session import EngineSession
    from ui.settings import use_settings_file
    from ui.tasks import TaskRunner

    if args.interval is not None:
        ui_stats.SCHEDULE_MS = args.interval
    settings_dir = Path(os.environ.get("TMPDIR", "/tmp"))
    use_settings_file(settings_dir / f"tbx-bench-stats-{os.getpid()}.ini")
    app = QApplication.instance() or QApplication([])
    common.quiet_qt()
    pid = dockerd_pid(url)
    containerd = children_named(pid, "containerd")
    print(f"engine: {url}, dockerd pid {pid}, containerd {containerd or 'separate'}")

    tasks = TaskRunner()
    session = EngineSession(EngineConfig.from_url(url), tasks)
    page = ContainersPage(PageContext(session, tasks))
    page.resize(1100, 700)
    page.show()
    page.page_shown()
    page.filter_box.setText(PREFIX)
    page.proxy.set_filter_text(PREFIX)
    session.start()
    wanted = set(ids)

    def listed() -> bool:
        return wanted <= set(page.model.keys()) and page.proxy.rowCount() == len(wanted)

    common.qt_wait(listed, 60, f"{len(wanted)} rows")
    common.qt_idle(1.0)
    visible = page.visible_running_ids()
    print(f"  visible running rows: {len(visible)} of {page.proxy.rowCount()}")
    print(f"  schedule: every {ui_stats.SCHEDULE_MS} ms, {ui_stats.SAMPLER_WORKERS} workers")

    def window(columns: bool) -> tuple[float, float, int, int]:
        page.actions_by_key["stats_columns"].setChecked(columns)
        common.qt_idle(args.settle)
        rounds, sampled = page.stats.rounds, page.stats.sampled
        streamed = page.stats.streamed
        before = cpu_seconds(pid)
        before_cd = sum(cpu_seconds(p) for p in containerd)
        common.qt_idle(args.window)
        spent = cpu_seconds(pid) - before
        spent_cd = sum(cpu_seconds(p) for p in containerd) - before_cd
        readings = page.stats.sampled - sampled + page.stats.streamed - streamed
        return spent, spent_cd, page.stats.rounds - rounds, readings

    off: list[float] = []
    on: list[float] = []
    off_cd: list[float] = []
    on_cd: list[float] = []
    rounds_on = readings_on = 0
    for i in range(args.rounds):
        for columns in (False, True) if i % 2 == 0 else (True, False):
            spent, spent_cd, rounds, got = window(columns)
            readings_on += got if columns else 0
            (on if columns else off).append(spent)
            (on_cd if columns else off_cd).append(spent_cd)
            rounds_on += rounds if columns else 0
            label = "on " if columns else "off"
            print(
                f"  window {label}: dockerd {spent * 1000:.0f} ms"
                f"{f', containerd {spent_cd * 1000:.0f} ms' if containerd else ''}"
                f"{f', {rounds} rounds' if columns else ''}",
                flush=True,
            )
    containers_read = len(page.stats.book.containers())

    # Info: one selected container streamed for the Stats tab, columns off.
    page.actions_by_key["stats_columns"].setChecked(False)
    page.select_ids([visible[0] if visible else ids[0]])
    page.details.setCurrentIndex(STATS)
    stream_spent, _, _, streamed = window(False)
    page.select_ids([])

    page.shutdown()
    page.close()
    session.close()
    tasks.shutdown(10_000)
    app.processEvents()

    per_min = 60.0 / args.window
    value = sum(on) / len(on) * per_min * 1000
    baseline = sum(off) / len(off) * per_min * 1000
    extra = value - baseline  # ms per minute
    per_reading = extra / (readings_on / len(on) * per_min) if readings_on else 0.0
    budget = (TARGET - 1) * baseline  # ms per minute the target allows
    allowed = f"{budget / per_reading:.1f}" if per_reading > 0 else "any number of"
    print(
        f"  schedule rounds with columns on: {rounds_on}, {readings_on} readings "
        f"({containers_read} containers read)\n"
        f"  dockerd per reading: {per_reading:.2f} ms; the target allows "
        f"{budget:.0f} ms/min, about {allowed} readings a minute\n"
        f"  one stream (selected, Stats tab, columns off): dockerd "
        f"{stream_spent * per_min * 1000:.0f} ms/min over {streamed} readings"
    )
    if containerd:
        print(
            f"  containerd: {sum(on_cd) / len(on_cd) * per_min * 1000:.0f} ms/min on, "
            f"{sum(off_cd) / len(off_cd) * per_min * 1000:.0f} ms/min off"
        )
    outcome = common.Outcome(
        benchmark="stats_overhead",
        metric=f"dockerd CPU with the CPU/memory columns on ({RUNNING} running, "
        f"{len(visible)} visible), ms per minute (mean of {len(on)} windows)",
        value=value,
        unit="ms",
        baseline_name=f"the same page with the columns off (mean of {len(off)} windows)",
        baseline=baseline,
        target=f"ratio <= {TARGET}",
        passed=baseline > 0 and value / baseline <= TARGET,
    )
    outcome.report()
    return 0 if outcome.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
