"""The log view under a flood: 300,000 lines arriving from a reader thread, shown the way
``LogView`` does it (bounded buffer, batched appends on a timer, capped line count) against
appending line by line on the GUI thread. Measures the total time and the longest stall of the
event loop (how long the window would freeze).

Run with ``python -m benchmarks.ui_logs [lines]``; prints times and ratios (offscreen Qt).
"""

from __future__ import annotations

import os
import sys
import threading
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QPlainTextEdit

from ui.containers.logs import MAX_LINES, LogView


class _NoSession:
    """LogView only talks to the session to start a stream; this benchmark feeds it directly."""

    def call(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("not used")


def stall_probe(app: QApplication) -> tuple[QTimer, list[float]]:
    gaps: list[float] = []
    last = [time.perf_counter()]

    def ping() -> None:
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.timeout.connect(ping)
    timer.start(5)
    return timer, gaps


def batched(app: QApplication, lines: list[str]) -> tuple[float, float, int]:
    view = LogView(_NoSession())  # type: ignore[arg-type]
    view.resize(900, 500)
    view.show()
    timer, gaps = stall_probe(app)
    start = time.perf_counter()

    def reader() -> None:
        push = view.buffer.push
        for line in lines:
            push(line)

    thread = threading.Thread(target=reader)
    thread.start()
    view._drain.start()
    last = lines[-1]
    while thread.is_alive() or len(view.buffer):
        app.processEvents()
        time.sleep(0.001)
    view._drain_buffer()
    app.processEvents()
    elapsed = time.perf_counter() - start
    assert view.text.toPlainText().endswith(last)
    timer.stop()
    return elapsed, max(gaps, default=0.0), view.text.blockCount()


def line_by_line(app: QApplication, lines: list[str]) -> tuple[float, float, int]:
    text = QPlainTextEdit()
    text.setReadOnly(True)
    text.resize(900, 500)
    text.show()
    timer, gaps = stall_probe(app)
    start = time.perf_counter()
    chunk = 2000  # give the event loop a turn every 2,000 lines, or there is no probe at all
    for i in range(0, len(lines), chunk):
        for line in lines[i : i + chunk]:
            text.appendPlainText(line)
        app.processEvents()
    elapsed = time.perf_counter() - start
    timer.stop()
    return elapsed, max(gaps, default=0.0), text.blockCount()


def main(count: int = 300_000) -> dict[str, float]:
    app = QApplication.instance() or QApplication([])
    lines = [f"{i} GET /index.html 200 {i * 7 % 1000}ms" for i in range(1, count + 1)]
    b_time, b_stall, b_blocks = batched(app, lines)
    n_time, n_stall, n_blocks = line_by_line(app, lines)
    print(f"{count} lines, view capped at {MAX_LINES}")
    row = "{:<28} total {:6.2f} s, longest stall {:6.0f} ms, {} lines kept"
    print(row.format("LogView (batched, capped):", b_time, b_stall * 1000, b_blocks))
    print(row.format("line by line, uncapped:", n_time, n_stall * 1000, n_blocks))
    print(f"time ratio line-by-line / LogView:  {n_time / b_time:5.1f}x")
    print(f"stall ratio line-by-line / LogView: {n_stall / b_stall:5.1f}x")
    return {"time_ratio": n_time / b_time, "stall_ratio": n_stall / b_stall}


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300_000)
