"""App start to first paint, as a ratio to a minimal PySide6 window (target: at most 1.5x).

Both are started as fresh processes (``python -m ui`` with ``TOOLBOX_EXIT_AFTER_PAINT=1``, and
a script showing a QMainWindow with a label) and timed from launch until they print
``first-paint`` at their first paint event; runs alternate so both see the same machine load;
medians. Offscreen Qt unless a display is there. The app needs no engine to paint: it connects
only after its first paint.

    python -m benchmarks.ui_first_paint [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from benchmarks import common
from benchmarks.common import ROOT

NEEDS_ENGINE = False
TARGET = 1.5

BASELINE = """
from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QApplication, QMainWindow, QLabel
app = QApplication([])
window = QMainWindow()
window.setCentralWidget(QLabel("hello"))
window.resize(1100, 700)
class Filter(QObject):
    def eventFilter(self, obj, event):
        if event.type() == QEvent.Type.Paint:
            print("first-paint", flush=True)
            QTimer.singleShot(0, app.quit)
            window.removeEventFilter(self)
        return False
f = Filter()
window.installEventFilter(f)
window.show()
app.exec()
"""


def time_to_paint(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=ROOT
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    elapsed = time.perf_counter() - start
    proc.wait(30)
    if line.strip() != "first-paint":
        raise RuntimeError(f"{argv} did not report its first paint: {line!r}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ui_first_paint")
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args(argv)
    common.qt_platform()
    common.heading("app start to first painted window vs a minimal PySide6 window")
    runs = args.runs
    env = dict(os.environ)
    app_env = dict(env, TOOLBOX_EXIT_AFTER_PAINT="1")
    app_env["DOCKER_HOST"] = "unix:///nonexistent/docker.sock"
    baseline: list[float] = []
    app: list[float] = []
    time_to_paint([sys.executable, "-c", BASELINE], env)  # warm the file cache
    time_to_paint([sys.executable, "-m", "ui"], app_env)
    for _ in range(runs):
        baseline.append(time_to_paint([sys.executable, "-c", BASELINE], env))
        app.append(time_to_paint([sys.executable, "-m", "ui"], app_env))
    ms = 1000.0
    print(f"  app runs (ms): {', '.join(f'{t * ms:.0f}' for t in app)}")
    print(f"  minimal window runs (ms): {', '.join(f'{t * ms:.0f}' for t in baseline)}")
    value, base = statistics.median(app) * ms, statistics.median(baseline) * ms
    outcome = common.Outcome(
        benchmark="ui_first_paint",
        metric=f"python -m ui, launch to first paint (median of {runs})",
        value=value,
        unit="ms",
        baseline_name=f"minimal PySide6 window process (median of {runs})",
        baseline=base,
        target=f"ratio <= {TARGET}",
        passed=value / base <= TARGET,
    )
    outcome.report()
    return 0 if outcome.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
