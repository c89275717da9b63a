"""The app's CPU while it sits idle with its window hidden (as in the tray), with at least 50
running containers in its engine: at most 0.5% of one core over 60 s.

The app is the real entry point, ``ui.app.main(["--engine", URL])`` (the full shell: tray,
notifications, the engine session with its event stream and heartbeat, the stats schedule),
against the benchmark engine holding 1,000 containers, of which 50 are kept running here.
A timer inside it waits for the Containers page to fill, hides the window, lets 5 s settle,
then reads the process's CPU time (user + system, ``resource.getrusage``) across the measured
window and prints it. The baseline is a minimal PySide6 process idling the same time with a
hidden window: what Qt's own event loop costs here.

    python -m benchmarks.app_idle [--seconds 60]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time

from benchmarks import common

NEEDS_ENGINE = True
RUNNING = 50
TARGET_PERCENT = 0.5
SETTLE_S = 5.0
IDLE_LABEL = "toolbox.bench.idle"

BASELINE = """
import resource, sys, time
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMainWindow
seconds = float(sys.argv[1])
app = QApplication([])
window = QMainWindow()
window.show()
def measure():
    window.hide()
    def cpu():
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime
    start, wall = cpu(), time.monotonic()
    def done():
        print(f"CPU {cpu() - start:.4f} {time.monotonic() - wall:.2f}", flush=True)
        app.quit()
    QTimer.singleShot(int(seconds * 1000), done)
QTimer.singleShot(%d, measure)
app.exec()
"""


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child_app(url: str, containers: int, seconds: float) -> int:
    """Inside the measured process: the real app, filled, hidden, then measured."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication(sys.argv[:1])
    common.quiet_qt()
    deadline = time.monotonic() + 180
    state: dict[str, float] = {}

    def drive() -> None:
        from ui.main_window import MainWindow

        if time.monotonic() > deadline:
            print("timed out", flush=True)
            app.exit(2)
            return
        window = next((w for w in app.topLevelWidgets() if isinstance(w, MainWindow)), None)
        page = window.page("containers") if window is not None else None
        if window is None or page is None or page.model.rowCount() < containers:  # type: ignore[attr-defined]
            return
        timer.stop()
        window.hide()  # what closing it to the tray does
        print(f"filled with {page.model.rowCount()} rows; hidden", flush=True)  # type: ignore[attr-defined]

        def start() -> None:
            state["cpu"], state["wall"] = cpu_seconds(), time.monotonic()
            QTimer.singleShot(int(seconds * 1000), finish)

        def finish() -> None:
            cpu = cpu_seconds() - state["cpu"]
            print(f"CPU {cpu:.4f} {time.monotonic() - state['wall']:.2f}", flush=True)
            app.quit()

        QTimer.singleShot(int(SETTLE_S * 1000), start)

    timer = QTimer()
    timer.timeout.connect(drive)
    timer.start(50)
    from ui.app import main as app_main

    return app_main(["--engine", url])


def run_cpu(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    out = subprocess.run(
        argv, env=env, cwd=common.ROOT, capture_output=True, text=True, timeout=600
    )
    line = next((x for x in out.stdout.splitlines() if x.startswith("CPU ")), None)
    if out.returncode != 0 or line is None:
        raise SystemExit(f"{argv[:4]} failed ({out.returncode}):\n{out.stdout[-2000:]}")
    _, cpu, wall = line.split()
    return float(cpu), float(wall)


def ensure_running(url: str) -> list[str]:
    """Start containers until at least ``RUNNING`` run; return the ones made here."""
    client = common.api_client(url)
    made: list[str] = []
    try:
        running = len(client.containers(filters={"status": "running"}))
        image = client.containers(all=True, filters={"label": common.LABEL})[0]["Image"]
        for _ in range(max(0, RUNNING - running)):
            cid = client.create_container(image, common.SERVICE_CMD, labels={IDLE_LABEL: "1"})["Id"]
            client.start(cid)
            made.append(cid)
        return made
    finally:
        client.close()


def remove(url: str, ids: list[str]) -> None:
    client = common.api_client(url)
    try:
        for cid in ids:
            client.remove_container(cid, force=True)
    finally:
        client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.app_idle")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--child", nargs=2, metavar=("URL", "CONTAINERS"))
    args = parser.parse_args(argv)
    common.qt_platform()
    if args.child:
        return child_app(args.child[0], int(args.child[1]), args.seconds)
    common.heading(f"app_idle: CPU over {args.seconds:g} s, window hidden, {RUNNING}+ running")
    with common.bench_engine() as url:
        common.ensure_population(url)
        made = ensure_running(url)
        try:
            client = common.api_client(url)
            try:
                total = len(client.containers(all=True))
                running = len(client.containers(filters={"status": "running"}))
            finally:
                client.close()
            env = dict(os.environ)
            app = [sys.executable, "-m", "benchmarks.app_idle", "--seconds", str(args.seconds)]
            cpu, wall = run_cpu([*app, "--child", url, str(total)], env)
            script = BASELINE % int(SETTLE_S * 1000)
            base_cpu, base_wall = run_cpu([sys.executable, "-c", script, str(args.seconds)], env)
        finally:
            remove(url, made)
        percent = 100 * cpu / wall
        base_percent = 100 * base_cpu / base_wall
        print(f"  {total} containers, {running} running; app CPU {cpu:.3f} s in {wall:.1f} s")
        outcome = common.Outcome(
            benchmark="app_idle",
            metric="app CPU, idle with the window hidden (% of one core)",
            value=percent,
            unit="%",
            baseline_name="a minimal PySide6 process with a hidden window",
            baseline=base_percent,
            target=f"app <= {TARGET_PERCENT:g}% of one core",
            passed=percent <= TARGET_PERCENT,
        )
        outcome.report()
        return 0 if outcome.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
