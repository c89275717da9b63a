"""The containers table with 1,000 rows behind a sort proxy and a visible view: an incremental
update (what an event causes) against a model reset (what a naive re-list does), and the
local status refresh of the visible rows. Records are made in memory (no engine); no target,
the figures are for information.

    python -m benchmarks.ui_table
"""

from __future__ import annotations

import datetime as dt
import statistics
import time
from dataclasses import replace

from benchmarks import common

NEEDS_ENGINE = False
ROWS = 1000


def make(i: int, now: dt.datetime):  # type: ignore[no-untyped-def]
    from toolbox.engine.records import Container, ContainerState, PortBinding

    return Container(
        id=f"{i:064x}",
        name=f"app-{i:04}",
        image="nginx:1.25",
        image_id="sha256:" + "a" * 64,
        command="nginx -g 'daemon off;'",
        created=now - dt.timedelta(hours=i),
        state=ContainerState.RUNNING if i % 3 else ContainerState.EXITED,
        status="Up 2 hours",
        ports=(PortBinding(80, "tcp", "0.0.0.0", 8000 + i),),
        started_at=now - dt.timedelta(minutes=i),
        finished_at=None,
        exit_code=None,
    )


def timed(fn, repeat: int = 5) -> float:  # type: ignore[no-untyped-def]
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        app.processEvents()  # the view repaints: part of the cost
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    common.qt_platform()
    common.heading("containers table, 1,000 rows: one-row update vs model reset")
    from PySide6.QtCore import QAbstractTableModel
    from PySide6.QtWidgets import QApplication, QTableView

    from toolbox.engine.records import ContainerState
    from ui.containers.model import NAME, ContainersModel
    from ui.models.table import RecordSortProxy

    app = QApplication.instance() or QApplication([])
    common.quiet_qt()
    now = dt.datetime.now(dt.UTC)
    records = [make(i, now) for i in range(ROWS)]
    model = ContainersModel()
    proxy = RecordSortProxy(model)
    view = QTableView()
    view.setModel(proxy)
    view.setSortingEnabled(True)
    view.sortByColumn(NAME, view.horizontalHeader().sortIndicatorOrder())
    view.resize(1000, 700)
    view.show()

    start = time.perf_counter()
    model.set_records(records)
    app.processEvents()
    populate = time.perf_counter() - start

    toggle = [False]

    def one_event() -> None:
        toggle[0] = not toggle[0]
        state = ContainerState.EXITED if toggle[0] else ContainerState.RUNNING
        model.upsert([replace(records[500], state=state)])

    def reset() -> None:
        QAbstractTableModel.beginResetModel(model)
        model._rows = list(records)  # what a naive "re-list and reset" does
        QAbstractTableModel.endResetModel(model)

    changed = [
        replace(r, status="Up 3 hours") if i % 100 == 0 else r for i, r in enumerate(records)
    ]
    flip = [False]

    def snapshot_diff() -> None:
        flip[0] = not flip[0]
        model.set_records(changed if flip[0] else records)

    def tick() -> None:
        rows = [proxy.mapToSource(proxy.index(r, 0)).row() for r in range(40)]
        model.tick(rows)

    incremental = timed(one_event, 20)
    diffed = timed(snapshot_diff, 10)
    resets = timed(reset, 10)
    ticking = timed(tick, 20)
    print(f"  populate {ROWS} rows (sorted, shown):      {populate * 1000:7.1f} ms")
    print(f"  snapshot diff, 10 of {ROWS} rows changed:  {diffed * 1000:7.2f} ms")
    print(f"  status refresh of 40 visible rows:         {ticking * 1000:7.2f} ms")
    print(f"  reset / snapshot diff:                     {resets / diffed:7.1f}x")
    outcome = common.Outcome(
        benchmark="ui_table",
        metric=f"one row changed by an event (upsert), {ROWS} rows shown, median",
        value=incremental * 1000,
        unit="ms",
        baseline_name=f"model reset of {ROWS} rows (what a naive re-list does), median",
        baseline=resets * 1000,
        target="none (information)",
        passed=None,
    )
    outcome.report()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
