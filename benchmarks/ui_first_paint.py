"""App start to first paint, as a ratio to a minimal PySide6 window (target: at most 1.5x).

Both are started as fresh processes and timed from launch until they print at their first
paint; runs alternate so both see the same machine load. Run with
``python -m benchmarks.ui_first_paint [runs]`` (needs a Qt platform: offscreen is used).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
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


def main(runs: int = 7) -> float:
    env = dict(os.environ)
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    app_env = dict(env, TOOLBOX_EXIT_AFTER_PAINT="1")
    app_env.setdefault("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    baseline: list[float] = []
    app: list[float] = []
    time_to_paint([sys.executable, "-c", BASELINE], env)  # warm the file cache
    time_to_paint([sys.executable, "-m", "ui"], app_env)
    for _ in range(runs):
        baseline.append(time_to_paint([sys.executable, "-c", BASELINE], env))
        app.append(time_to_paint([sys.executable, "-m", "ui"], app_env))
    b, a = statistics.median(baseline), statistics.median(app)
    ratio = a / b
    print(f"minimal PySide6 window: median {b * 1000:.0f} ms to first paint ({runs} runs)")
    print(f"toolbox-app:            median {a * 1000:.0f} ms to first paint")
    print(f"ratio app/baseline:     {ratio:.2f}x (target <= {TARGET}x)")
    return ratio


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 7)
