"""A full re-list of 1,000 containers into the Containers page's model, against
``docker ps -a --no-trunc`` on the same engine (target: ratio at most 1.0).

Measured path (the one the UI uses): ``EngineSession.refresh()`` on a connected session whose
Containers page shows 1,000 rows -> the watcher closes its event stream, lists everything again
(info and clock, containers, images, volumes, networks) and reopens the stream -> the snapshot
crosses to the GUI thread -> ``Delta(complete=True)`` -> ``ContainersPage.apply`` diffs it into
the model behind the sort proxy. Timed from the ``refresh()`` call until the page has applied
the delta with 1,000 rows. Also printed (not the headline): the cold path, a new session and page
from ``start()`` (connect included) to 1,000 rows.

Baseline: ``docker ps -a --no-trunc`` as a subprocess against the same engine (a fresh process
each time: connect, list, format 1,000 rows), median of the same number of runs, alternating.

    python -m benchmarks.list_refresh [--runs N]
"""

from __future__ import annotations

import argparse
import time

from benchmarks import common

NEEDS_ENGINE = True
TARGET = 1.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.list_refresh")
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args(argv)
    common.qt_platform()
    common.heading("list refresh: 1,000 containers into the Containers model vs docker ps -a")
    with common.bench_engine() as url:
        population = common.ensure_population(url)
        return measure(url, len(population.container_ids), args.runs)


def measure(url: str, expected_bench: int, runs: int) -> int:
    from PySide6.QtWidgets import QApplication

    from toolbox.engine.connect import EngineConfig
    from ui.containers.page import ContainersPage
    from ui.pages import PageContext
    from ui.session import Delta, EngineSession
    from ui.tasks import TaskRunner

    app = QApplication.instance() or QApplication([])
    common.quiet_qt()
    total = common.total_containers(url)
    print(f"engine: {url}, {total} containers ({expected_bench} from the benchmark)")
    config = EngineConfig.from_url(url)
    tasks = TaskRunner()
    env = common.cli_env(url)
    cli = [common.docker_cli(), "ps", "-a", "--no-trunc"]

    def open_page() -> tuple[EngineSession, ContainersPage]:
        session = EngineSession(config, tasks)
        page = ContainersPage(PageContext(session, tasks))
        page.resize(1100, 700)
        page.show()
        page.page_shown()
        return session, page

    def close(session: EngineSession, page: ContainersPage) -> None:
        page.shutdown()
        page.close()
        page.deleteLater()
        session.close()
        session.deleteLater()
        app.processEvents()

    # Warm path: one connected session and page, refreshed again and again.
    session, page = open_page()
    applied: list[float] = []

    def on_delta(delta: Delta) -> None:  # connected after the page's slot: runs after it
        if delta.complete and page.model.rowCount() == total:
            applied.append(time.perf_counter())

    session.containers_changed.connect(on_delta)
    session.start()
    common.qt_wait(lambda: bool(applied), 60, "first snapshot")
    common.run_cli(cli, env)  # warm the CLI's file cache
    refresh_s: list[float] = []
    cli_s: list[float] = []
    for _ in range(runs):
        cli_s.append(common.run_cli(cli, env))
        before = len(applied)
        started = time.perf_counter()
        session.refresh()
        common.qt_wait(lambda before=before: len(applied) > before, 60, "refreshed model")
        refresh_s.append(applied[-1] - started)
        common.qt_wait(lambda: session.connected and not tasks.busy, 30, "idle session")
    close(session, page)

    # Cold path: new session and page, connect included.
    cold_s: list[float] = []
    for _ in range(max(3, runs // 2)):
        session, page = open_page()
        started = time.perf_counter()
        session.start()
        common.qt_wait(lambda page=page: page.model.rowCount() == total, 60, "first snapshot")
        cold_s.append(time.perf_counter() - started)
        close(session, page)
    tasks.shutdown(10_000)

    ms = 1000.0
    value, baseline = common.median(refresh_s) * ms, common.median(cli_s) * ms
    print(
        f"  refresh runs (ms): {', '.join(f'{t * ms:.0f}' for t in refresh_s)}\n"
        f"  docker ps runs (ms): {', '.join(f'{t * ms:.0f}' for t in cli_s)}\n"
        f"  cold start of a session + page to {total} rows: median "
        f"{common.median(cold_s) * ms:.0f} ms "
        f"({common.median(cold_s) / common.median(cli_s):.2f}x docker ps)"
    )
    outcome = common.Outcome(
        benchmark="list_refresh",
        metric=f"EngineSession.refresh() to the model holding {total} rows (median of {runs})",
        value=value,
        unit="ms",
        baseline_name=f"docker ps -a --no-trunc subprocess (median of {runs})",
        baseline=baseline,
        target=f"ratio <= {TARGET}",
        passed=value / baseline <= TARGET,
    )
    outcome.report()
    return 0 if outcome.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
