"""Peak memory of the app with 1,000 containers in its table and the 300 images loaded, against
a minimal PySide6 window with an empty table (target: at most 150 MB for the app).

Both run as fresh processes; their peak resident set (``ru_maxrss`` from ``wait4``, which the
kernel keeps for every process) is read when they exit. The app process is the real entry
point, ``ui.app.main(["--engine", URL])``; a driver inside it (a timer, so the app's own code
runs unchanged) waits until the Containers page holds every container, opens the Images page
and waits for its rows, scrolls both tables from top to bottom so every row has been painted,
then quits. The baseline shows a QMainWindow holding an empty QTableView and quits after it
painted.

    python -m benchmarks.app_memory [--runs N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from benchmarks import common

NEEDS_ENGINE = True
TARGET_MB = 150.0

BASELINE = """
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMainWindow, QTableView
app = QApplication([])
window = QMainWindow()
window.setCentralWidget(QTableView())
window.resize(1100, 700)
window.show()
QTimer.singleShot(1500, app.quit)
app.exec()
print("done", flush=True)
"""


def child_app(url: str, containers: int, images: int) -> int:
    """Runs inside the measured process: the real app, driven to the state to measure."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication(sys.argv[:1])
    common.quiet_qt()
    deadline = time.monotonic() + 120
    steps: list[str] = []

    def scroll_through(view) -> None:  # type: ignore[no-untyped-def]
        bar = view.verticalScrollBar()
        for value in range(0, bar.maximum() + bar.pageStep(), max(1, bar.pageStep())):
            bar.setValue(value)
            view.viewport().repaint()

    def drive() -> None:
        from ui.main_window import MainWindow

        if time.monotonic() > deadline:
            print(f"timed out after: {steps}", flush=True)
            app.exit(2)
            return
        window = next((w for w in app.topLevelWidgets() if isinstance(w, MainWindow)), None)
        page = window.page("containers") if window else None
        if window is None or page is None:
            return
        if not steps and page.model.rowCount() >= containers:  # type: ignore[attr-defined]
            steps.append("containers")
            scroll_through(page.view)  # type: ignore[attr-defined]
            window.select_page("images")
            return
        images_page = window.page("images")
        if (
            steps == ["containers"]
            and images_page is not None
            and images_page.model.rowCount() >= images  # type: ignore[attr-defined]
        ):
            steps.append("images")
            scroll_through(images_page.view)  # type: ignore[attr-defined]
            window.select_page("containers")
            print(
                f"loaded {page.model.rowCount()} container rows, "  # type: ignore[attr-defined]
                f"{images_page.model.rowCount()} image rows",  # type: ignore[attr-defined]
                flush=True,
            )
            QTimer.singleShot(500, app.quit)

    timer = QTimer()
    timer.timeout.connect(drive)
    timer.start(50)
    from ui.app import main as app_main

    return app_main(["--engine", url])


def peak_rss_mb(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Run ``argv`` to completion; its peak RSS in MB (``ru_maxrss``) and its output."""
    proc = subprocess.Popen(
        argv, env=env, cwd=common.ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    assert proc.stdout is not None
    output = proc.stdout.read().decode(errors="replace")
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[:3]} failed ({proc.returncode}):\n{output[-2000:]}")
    return usage.ru_maxrss / 1024, output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.app_memory")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", nargs=3, metavar=("URL", "CONTAINERS", "IMAGES"))
    args = parser.parse_args(argv)
    common.qt_platform()
    if args.child:
        url, containers, images = args.child
        return child_app(url, int(containers), int(images))
    common.heading("peak memory: the app with 1,000 containers and 300 images vs a minimal window")
    with common.bench_engine() as url:
        common.ensure_population(url)
        client = common.api_client(url)
        try:
            containers = len(client.containers(all=True))
            image_rows = sum(max(1, len(i.get("RepoTags") or ())) for i in client.images())
        finally:
            client.close()
        env = dict(os.environ)
        app_mb: list[float] = []
        base_mb: list[float] = []
        for _ in range(args.runs):
            child = [sys.executable, "-m", "benchmarks.app_memory", "--child", url]
            mb, output = peak_rss_mb([*child, str(containers), str(image_rows)], env)
            app_mb.append(mb)
            base_mb.append(peak_rss_mb([sys.executable, "-c", BASELINE], env)[0])
        print(f"  {output.strip().splitlines()[-1]}")
        print(f"  app runs (MB): {', '.join(f'{m:.0f}' for m in app_mb)}")
        print(f"  minimal window runs (MB): {', '.join(f'{m:.0f}' for m in base_mb)}")
        value, base = max(app_mb), max(base_mb)
        outcome = common.Outcome(
            benchmark="app_memory",
            metric=f"app peak RSS, {containers} containers + {image_rows} image rows loaded",
            value=value,
            unit="MB",
            baseline_name="minimal PySide6 window with an empty table, peak RSS",
            baseline=base,
            target=f"app <= {TARGET_MB:.0f} MB",
            passed=value <= TARGET_MB,
        )
        outcome.report()
        return 0 if outcome.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
