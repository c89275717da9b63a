"""How long the app takes from launch to a filled Containers page on a real QEMU machine (the
baked engine image, a throw-away TOOLBOX_HOME, 20 containers in its engine):

* ``app_launch_running``: the machine running. Measured: the real app (``ui.app.main`` with no
  arguments, as a double-click starts it) from process spawn to the Containers page holding
  every container. Baseline: ``docker ps -a`` with the ``toolbox env`` settings, spawn to exit.
  Target: at most 3x.
* ``app_launch_stopped``: the machine stopped. Measured: the same launch, which starts the
  machine by itself ("start the machine when the app starts", on by default). Baseline:
  ``toolbox start`` then ``docker ps -a``. Target: at most 1.05x.

Medians of ``--rounds``, measured alternately so both see the same machine load. The app runs
offscreen; a timer inside it (the app's own code runs unchanged) prints when the page is
filled and quits.

    python -m benchmarks.app_launch [--only running|stopped] [--rounds N]

Holds ``/tmp/toolbox-vm.lock``. Slow (VM boots): not in the default ``./dev bench`` set.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from filelock import FileLock

from benchmarks import common
from benchmarks.machine_start import VM_LOCK
from benchmarks.vm_io import IMAGE, register_image, test_image

MACHINE = "default"  # what the app picks by itself
CONTAINERS = 20
RUNNING_TARGET = 3.0
STOPPED_TARGET = 1.05


def child_app(containers: int) -> int:
    """Inside the measured process: the real app; print FILLED once the page holds them all."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication(sys.argv[:1])
    common.quiet_qt()
    deadline = time.monotonic() + 900

    def drive() -> None:
        from ui.main_window import MainWindow

        if time.monotonic() > deadline:
            print("timed out", flush=True)
            app.exit(2)
            return
        window = next((w for w in app.topLevelWidgets() if isinstance(w, MainWindow)), None)
        page = window.page("containers") if window is not None else None
        if page is not None and page.model.rowCount() >= containers:  # type: ignore[attr-defined]
            print("FILLED", flush=True)
            timer.stop()
            QTimer.singleShot(0, app.quit)

    timer = QTimer()
    timer.timeout.connect(drive)
    timer.start(10)
    from ui.app import main as app_main

    return app_main([])


def launch_to_filled(env: dict[str, str]) -> float:
    """Spawn the app; seconds until it printed FILLED (it then quits by itself)."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.app_launch", "--child", str(CONTAINERS)],
        env=env,
        cwd=common.ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    filled: float | None = None
    tail: list[str] = []
    for line in proc.stdout:
        tail = [*tail, line.rstrip()][-20:]
        if line.strip() == "FILLED" and filled is None:
            filled = time.monotonic() - started
    proc.wait(timeout=60)
    if filled is None:
        raise SystemExit("the app never showed the containers:\n" + "\n".join(tail))
    return filled


def docker_ps(env: dict[str, str]) -> float:
    started = time.monotonic()
    out = subprocess.run(
        ["docker", "ps", "-a", "-q"], env=env, capture_output=True, text=True, timeout=120
    )
    took = time.monotonic() - started
    if out.returncode != 0 or len(out.stdout.split()) < CONTAINERS:
        raise SystemExit(f"docker ps -a failed: {out.stderr}")
    return took


def toolbox_start(env: dict[str, str]) -> float:
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "toolbox", "start", MACHINE],
        env=env,
        check=True,
        timeout=900,
        stdout=subprocess.DEVNULL,
    )
    return time.monotonic() - started


def report(state: str, apps: list[float], bases: list[float], baseline: str, target: float) -> bool:
    """Medians of the rounds against the baseline's, as the ``app_launch_STATE`` outcome."""
    value, base = statistics.median(apps), statistics.median(bases)
    outcome = common.Outcome(
        benchmark=f"app_launch_{state}",
        metric=f"app launch -> Containers page with {CONTAINERS} containers, machine {state}",
        value=value,
        unit="s",
        baseline_name=baseline,
        baseline=base,
        target=f"<= {target:g}x",
        passed=value / base <= target,
    )
    outcome.report()
    return bool(outcome.passed)


def bench_running(service: Any, env: dict[str, str], app_env: dict[str, str], rounds: int) -> bool:
    apps, bases = [], []
    for i in range(rounds):
        bases.append(docker_ps(env))
        apps.append(launch_to_filled(app_env))
        print(f"  round {i + 1}: app {apps[-1]:.2f} s, docker ps -a {bases[-1]:.2f} s")
    return report(
        "running", apps, bases, "`docker ps -a` with the `toolbox env` settings", RUNNING_TARGET
    )


def bench_stopped(service: Any, env: dict[str, str], app_env: dict[str, str], rounds: int) -> bool:
    apps, bases = [], []
    for i in range(rounds):
        service.stop(MACHINE)
        start = toolbox_start(env)
        ps = docker_ps(env)
        bases.append(start + ps)
        service.stop(MACHINE)
        apps.append(launch_to_filled(app_env))
        print(
            f"  round {i + 1}: app {apps[-1]:.1f} s, toolbox start {start:.1f} s + "
            f"docker ps -a {ps:.2f} s"
        )
    return report("stopped", apps, bases, "`toolbox start` then `docker ps -a`", STOPPED_TARGET)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.app_launch")
    parser.add_argument("--only", choices=("running", "stopped"), action="append")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    common.qt_platform()
    if args.child is not None:
        return child_app(args.child)
    only = set(args.only or ("running", "stopped"))
    home = Path(tempfile.mkdtemp(prefix="tbx-bench-"))
    os.environ["TOOLBOX_HOME"] = str(home)
    os.environ["DOCKER_CONFIG"] = str(home / "docker-config")
    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "DOCKER_HOST", "DOCKER_CONTEXT"):
        os.environ.pop(var, None)
    from toolbox.machine.service import CreateOptions, MachineService, ProcessAgents

    ok = True
    with FileLock(VM_LOCK, timeout=3600):
        register_image()
        service = MachineService(agents=ProcessAgents())
        try:
            started = time.monotonic()
            service.create(CreateOptions(name=MACHINE, driver="qemu", image=IMAGE))
            print(f"machine created in {time.monotonic() - started:.0f} s")
            env = dict(os.environ)
            env.update(dict(service.env(MACHINE).variables()))
            work = Path(tempfile.mkdtemp(prefix="bench-img-"))
            subprocess.run(
                ["docker", "import", "-c", 'CMD ["sh"]', str(test_image(work)), "tbx-bench"],
                env=env, check=True, capture_output=True, timeout=300,
            )  # fmt: skip
            shutil.rmtree(work, ignore_errors=True)
            for i in range(CONTAINERS):
                subprocess.run(
                    ["docker", "create", "--name", f"c{i}", "tbx-bench", "true"],
                    env=env, check=True, capture_output=True, timeout=120,
                )  # fmt: skip
            app_env = dict(os.environ)  # the app finds the machine itself, as after install
            app_env["QT_QPA_PLATFORM"] = "offscreen"
            if "running" in only:
                common.heading("app_launch_running")
                ok &= bench_running(service, env, app_env, args.rounds)
            if "stopped" in only:
                common.heading("app_launch_stopped")
                ok &= bench_stopped(service, env, app_env, args.rounds)
        finally:
            try:
                service.remove(MACHINE, force=True)
            finally:
                shutil.rmtree(home, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
