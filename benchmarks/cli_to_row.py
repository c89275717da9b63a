"""A ``docker`` CLI action in a terminal to the Containers page's row showing it, with 1,000
rows on the page (target: median at most 100 ms).

While the real Containers page (``EngineSession`` + ``ContainersPage``) shows every container
of the engine, ``docker stop``, ``docker start`` and ``docker rename`` run as subprocesses
against the same engine. For each action the clock starts when the engine acknowledges it: the
``timeNano`` of the event that carries the change (``die`` for stop, ``start``, ``rename``),
stamped by the engine on this machine's clock. It stops when the model row shows the new state
(state Stopped/Running, or the new name), seen from the model's own signals.

Baseline: the same events' arrival in a ``docker events`` CLI subscriber (a subprocess whose
lines are timestamped as they arrive), measured from the same ``timeNano``. Prints the median
and p90 of both, per action and overall, and the ratio of the medians.

    python -m benchmarks.cli_to_row [--cycles N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from benchmarks import common

NEEDS_ENGINE = True
TARGET_MS = 100.0
SETTLE_S = 0.4  # quiet time between two actions, as between two commands typed by a person


@dataclass(frozen=True)
class Sample:
    action: str
    row_ms: float  # engine event -> model row shows the change
    cli_ms: float  # engine event -> line read from `docker events`


class EventsSubscriber:
    """``docker events`` as a subprocess; every line is kept with its arrival time."""

    def __init__(self, argv: list[str], env: dict[str, str]):
        self.proc = subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        self.lock = threading.Lock()
        self.seen: list[tuple[int, dict]] = []  # (arrival time_ns, event)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            arrived = time.time_ns()
            try:
                event = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                self.seen.append((arrived, event))

    def find(self, cid: str, action: str, after_ns: int) -> tuple[int, dict] | None:
        with self.lock:
            for arrived, event in self.seen:
                if (
                    event.get("id") == cid
                    and event.get("Action") == action
                    and int(event.get("timeNano", 0)) >= after_ns
                ):
                    return arrived, event
        return None

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cli_to_row")
    parser.add_argument("--cycles", type=int, default=10, help="stop/start/rename cycles")
    args = parser.parse_args(argv)
    common.qt_platform()
    common.heading("CLI action to row updated, 1,000 rows on the Containers page")
    with common.bench_engine() as url:
        population = common.ensure_population(url)
        return measure(url, population, args.cycles)


def measure(url: str, population: common.Population, cycles: int) -> int:
    from PySide6.QtWidgets import QApplication

    from toolbox.engine.connect import EngineConfig
    from toolbox.engine.records import Container, ContainerState
    from ui.containers.page import ContainersPage
    from ui.pages import PageContext
    from ui.session import EngineSession
    from ui.tasks import TaskRunner

    _app = QApplication.instance() or QApplication([])
    common.quiet_qt()
    total = common.total_containers(url)
    env = common.cli_env(url)
    docker = common.docker_cli()
    tasks = TaskRunner()
    session = EngineSession(EngineConfig.from_url(url), tasks)
    page = ContainersPage(PageContext(session, tasks))
    page.resize(1100, 700)
    page.show()
    page.page_shown()
    session.start()
    common.qt_wait(lambda: page.model.rowCount() == total, 60, f"{total} rows on the page")
    print(f"engine: {url}; the page shows {page.model.rowCount()} rows")

    # The model's own signals say when a row changed; `expect` is what the next action waits for.
    expect: dict[str, object] = {}
    changed_at: list[int] = []

    def check(*_args: object) -> None:
        cid = expect.get("id")
        if not isinstance(cid, str) or changed_at:
            return
        record = page.model.record_for(cid)
        predicate = expect["predicate"]
        assert callable(predicate)
        if record is not None and predicate(record):
            changed_at.append(time.time_ns())

    page.model.dataChanged.connect(check)
    page.model.rowsInserted.connect(check)

    events = EventsSubscriber([docker, "events", "--format", "{{json .}}"], env)
    samples: list[Sample] = []

    def act(
        label: str,
        argv: list[str],
        cid: str,
        event_action: str,
        predicate: Callable[[Container], bool],
        keep: bool = True,
    ) -> None:
        changed_at.clear()
        expect.update(id=cid, predicate=predicate)
        began = time.time_ns()
        # Popen, not run(): the GUI thread keeps its event loop going while the CLI works.
        proc = subprocess.Popen(
            [docker, *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        common.qt_wait(
            lambda: (
                proc.poll() is not None
                and (proc.returncode != 0 or (changed_at and events.find(cid, event_action, began)))
            ),
            30,
            f"{label} seen",
        )
        if proc.returncode != 0:
            assert proc.stderr is not None
            raise RuntimeError(f"docker {' '.join(argv)} failed: {proc.stderr.read()}")
        proc.stderr.close()  # type: ignore[union-attr]
        found = events.find(cid, event_action, began)
        assert found is not None
        arrived, event = found
        acked = int(event["timeNano"])
        expect.clear()
        if keep:
            samples.append(Sample(label, (changed_at[0] - acked) / 1e6, (arrived - acked) / 1e6))
        common.qt_idle(SETTLE_S)

    def running(c: Container) -> bool:
        return c.state is ContainerState.RUNNING

    def stopped(c: Container) -> bool:
        return c.state is ContainerState.EXITED

    # Warm-up (not measured): the subscriber is connected and the page's path is primed.
    first = population.running_ids[0]
    name = page.model.record_for(first).name  # type: ignore[union-attr]
    act(
        "rename",
        ["rename", name, f"{name}-x"],
        first,
        "rename",
        lambda c: c.name == f"{name}-x",
        False,
    )
    act("rename", ["rename", f"{name}-x", name], first, "rename", lambda c: c.name == name, False)

    targets = population.running_ids[1 : cycles + 1]
    for cid in targets:
        record = page.model.record_for(cid)
        assert record is not None and record.state is ContainerState.RUNNING, record
        name = record.name
        new = f"{name}-renamed"
        act("stop", ["stop", name], cid, "die", stopped)
        act("start", ["start", name], cid, "start", running)
        act("rename", ["rename", name, new], cid, "rename", lambda c, n=new: c.name == n)
        act("rename", ["rename", new, name], cid, "rename", lambda c, n=name: c.name == n)

    events.close()
    page.shutdown()
    session.close()
    tasks.shutdown(10_000)

    head = ("action", "n", "row median", "row p90", "CLI median", "CLI p90")
    print("  {:<8} {:>3} {:>11} {:>8} {:>11} {:>8}".format(*head))
    for action in ("stop", "start", "rename", "all"):
        chosen = [s for s in samples if action in ("all", s.action)]
        rows = [s.row_ms for s in chosen]
        clis = [s.cli_ms for s in chosen]
        print(
            f"  {action:<8} {len(chosen):>3} {common.median(rows):>8.1f} ms "
            f"{common.percentile(rows, 90):>5.1f} ms {common.median(clis):>8.1f} ms "
            f"{common.percentile(clis, 90):>5.1f} ms"
        )
    rows = [s.row_ms for s in samples]
    clis = [s.cli_ms for s in samples]
    value = common.median(rows)
    outcome = common.Outcome(
        benchmark="cli_to_row",
        metric=(
            f"engine event -> model row updated, {len(samples)} stop/start/rename actions, "
            f"median (p90 {common.percentile(rows, 90):.1f} ms)"
        ),
        value=value,
        unit="ms",
        baseline_name=(
            "the same events arriving in a `docker events` subscriber, median "
            f"(p90 {common.percentile(clis, 90):.1f} ms)"
        ),
        baseline=common.median(clis),
        target=f"median <= {TARGET_MS:.0f} ms",
        passed=value <= TARGET_MS,
    )
    outcome.report()
    return 0 if outcome.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
