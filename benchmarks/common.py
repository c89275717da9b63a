"""What the benchmarks share: the engine they run against (a private dockerd from
``tests/harness.py``, or ``TOOLBOX_BENCH_DOCKER_HOST``), the 1,000 containers and 300 images
the issue asks for, small statistics, and one way to report a measurement.

Every benchmark prints its measurement, a named baseline measured in the same run, the ratio
and the target with PASS or MISS (``Outcome.report``). When ``TOOLBOX_BENCH_RESULT`` names a
file, the outcome is also appended there as one JSON line: ``python -m benchmarks`` reads it to
print its summary table. Nothing is cached in the checkout: the engine's data lives under /tmp
and is removed with it.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENGINE_ENV = "TOOLBOX_BENCH_DOCKER_HOST"
RESULT_ENV = "TOOLBOX_BENCH_RESULT"

CONTAINERS = 1000
IMAGES = 300
RUNNING = 30  # containers kept running (a shell waiting on sleep; exits at once on SIGTERM)
EXITED = 70  # containers that ran and exited with assorted codes; the rest are "created"
LABEL = "toolbox.bench"
IMAGE_REPO = "bench/app"
WORKERS = 6
# PID 1 of a container ignores SIGTERM unless it traps it: this one stops at once on
# `docker stop`, like a well-behaved service.
SERVICE_CMD = ["sh", "-c", "trap 'exit 0' TERM; sleep 86400 & wait"]


# -- reporting ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """One measurement against its baseline. ``passed`` is None when there is no target."""

    benchmark: str
    metric: str
    value: float
    unit: str
    baseline_name: str
    baseline: float
    target: str
    passed: bool | None

    @property
    def ratio(self) -> float:
        return self.value / self.baseline if self.baseline else math.inf

    @property
    def verdict(self) -> str:
        return "info" if self.passed is None else "PASS" if self.passed else "MISS"

    def report(self) -> None:
        """Print the standard lines and record the outcome for the runner's summary."""
        print(f"  {self.metric}: {fmt(self.value, self.unit)}")
        print(f"  baseline, {self.baseline_name}: {fmt(self.baseline, self.unit)}")
        print(f"  ratio: {self.ratio:.3g}x   target: {self.target}   {self.verdict}", flush=True)
        path = os.environ.get(RESULT_ENV)
        if path:
            with open(path, "a", encoding="utf-8") as out:
                out.write(json.dumps(asdict(self)) + "\n")


def fmt(value: float, unit: str) -> str:
    if unit == "ms":
        return (
            f"{value:.2f} ms"
            if value < 10
            else f"{value:.1f} ms"
            if value < 100
            else f"{value:.0f} ms"
        )
    if unit == "MB":
        return f"{value:.1f} MB"
    return f"{value:.3g} {unit}".strip()


def read_outcomes(path: Path) -> list[Outcome]:
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [Outcome(**row) for row in rows]


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100) by linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    pos = (len(ordered) - 1) * p / 100
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def heading(text: str) -> None:
    print(f"== {text}", flush=True)


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``predicate`` (outside Qt) until true; TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached in {timeout:g} s")
        time.sleep(0.02)


# -- the engine ---------------------------------------------------------------------------------


@contextmanager
def bench_engine() -> Iterator[str]:
    """The URL of an engine to measure: ``TOOLBOX_BENCH_DOCKER_HOST``, or a private dockerd
    started here (through ``tests/harness.py``) and removed on exit."""
    existing = os.environ.get(ENGINE_ENV)
    if existing:
        yield existing
        return
    from tests import harness

    daemon = harness.PrivateDockerd()
    print(f"starting a private dockerd in {daemon.base} ...", flush=True)
    daemon.start()
    try:
        yield daemon.url
    finally:
        daemon.cleanup()


def api_client(url: str, timeout: int = 120):  # type: ignore[no-untyped-def]
    import docker

    return docker.APIClient(base_url=url, version="auto", timeout=timeout)


def docker_cli() -> str:
    path = shutil.which("docker")
    if path is None:
        raise RuntimeError("the docker CLI is not installed (apt-get install docker.io)")
    return path


def cli_env(url: str) -> dict[str, str]:
    """Environment for the docker CLI against ``url`` (no TLS variables, no user config)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env["DOCKER_HOST"] = url
    config = tempfile.mkdtemp(prefix="tbx-bench-cli-")
    atexit.register(shutil.rmtree, config, True)
    env["DOCKER_CONFIG"] = config
    return env


@dataclass(frozen=True)
class Population:
    """What ``ensure_population`` left on the engine (ids in creation order)."""

    url: str
    container_ids: tuple[str, ...]
    running_ids: tuple[str, ...]
    image_refs: tuple[str, ...]


def _image_ref(i: int) -> str:
    return f"{IMAGE_REPO}-{i:03}:1.0"


def ensure_population(
    url: str, containers: int = CONTAINERS, images: int = IMAGES, log: bool = True
) -> Population:
    """Make sure the engine holds ``images`` distinct images and ``containers`` labelled
    containers (RUNNING running, EXITED exited, the rest created); creates only what is
    missing, so a reused engine is ready at once."""
    from tests import harness

    say = print if log else (lambda *_a, **_k: None)
    client = api_client(url)
    try:
        have_images = {
            tag for entry in client.images() for tag in entry.get("RepoTags") or () if tag
        }
        missing = [i for i in range(images) if _image_ref(i) not in have_images]
        if missing:
            started = time.monotonic()
            say(
                f"importing {len(missing)} distinct images (busybox + a LABEL each) ...", flush=True
            )
            work = Path(tempfile.mkdtemp(prefix="tbx-bench-img-"))
            tar = harness.busybox_tar(work / "busybox.tar")
            local = threading.local()

            def one(i: int) -> None:
                if not hasattr(local, "client"):
                    local.client = api_client(url)
                repo, tag = _image_ref(i).rsplit(":", 1)
                local.client.import_image(
                    src=str(tar),
                    repository=repo,
                    tag=tag,
                    changes=[f"LABEL {LABEL}.image={i}", 'CMD ["sh"]'],
                )

            with ThreadPoolExecutor(WORKERS) as pool:
                list(pool.map(one, missing))
            shutil.rmtree(work, ignore_errors=True)
            say(f"  done in {time.monotonic() - started:.1f} s", flush=True)

        existing = client.containers(all=True, filters={"label": LABEL})
        have = {str(c["Names"][0]).lstrip("/") for c in existing}
        todo = [i for i in range(containers) if f"bench-{i:04}" not in have]
        if todo:
            started = time.monotonic()
            say(f"creating {len(todo)} containers ({WORKERS} threads) ...", flush=True)
            local = threading.local()

            def create(i: int) -> None:
                if not hasattr(local, "client"):
                    local.client = api_client(url)
                c = local.client
                if i < RUNNING:
                    command = SERVICE_CMD
                elif i < RUNNING + EXITED:
                    command = ["sh", "-c", f"exit {(i * 7) % 4}"]
                else:
                    command = ["sh", "-c", "echo hello"]
                cid = c.create_container(
                    _image_ref(i % images),
                    command,
                    name=f"bench-{i:04}",
                    labels={LABEL: "1"},
                )["Id"]
                if i < RUNNING + EXITED:
                    c.start(cid)
                    if i >= RUNNING:
                        c.wait(cid, timeout=60)

            with ThreadPoolExecutor(WORKERS) as pool:
                list(pool.map(create, todo))
            say(f"  done in {time.monotonic() - started:.1f} s", flush=True)

        # Containers a previous benchmark stopped are running again (SERVICE_CMD ones only).
        listed = client.containers(all=True, filters={"label": LABEL})
        for entry in listed:
            name = str(entry["Names"][0]).lstrip("/")
            index = int(name.rsplit("-", 1)[1]) if name.rsplit("-", 1)[-1].isdigit() else -1
            if 0 <= index < RUNNING and entry["State"] != "running":
                client.start(entry["Id"])
        listed = client.containers(all=True, filters={"label": LABEL})
        ordered = sorted(listed, key=lambda e: str(e["Names"][0]))
        running = tuple(e["Id"] for e in ordered if e["State"] == "running")
        return Population(
            url=url,
            container_ids=tuple(e["Id"] for e in ordered),
            running_ids=running,
            image_refs=tuple(_image_ref(i) for i in range(images)),
        )
    finally:
        client.close()


def total_containers(url: str) -> int:
    client = api_client(url)
    try:
        return len(client.containers(all=True))
    finally:
        client.close()


def run_cli(argv: Sequence[str], env: dict[str, str], timeout: float = 60) -> float:
    """Run a CLI command to completion (output discarded); returns its wall time in seconds."""
    started = time.perf_counter()
    subprocess.run(
        list(argv),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=True,
        timeout=timeout,
    )
    return time.perf_counter() - started


def qt_platform() -> None:
    """Offscreen Qt unless a display (or an explicit platform) is there."""
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def qt_wait(condition: Callable[[], object], timeout: float, what: str, step_ms: int = 2) -> None:
    """Run the Qt event loop until ``condition()`` is true; TimeoutError after ``timeout`` s.
    The loop sleeps between checks (no busy spinning that would steal the GIL)."""
    from PySide6.QtCore import QEventLoop, QTimer

    deadline = time.monotonic() + timeout
    loop = QEventLoop()
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached in {timeout:g} s")
        QTimer.singleShot(step_ms, loop.quit)
        loop.exec()


def qt_idle(seconds: float) -> None:
    """Let the Qt event loop run for ``seconds`` (spacing between measured actions)."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()


def quiet_qt() -> None:
    """Drop Qt's "does not support propagateSizeHints()" notes of the offscreen platform."""
    from PySide6.QtCore import qInstallMessageHandler

    def handler(_mode, _context, message: str) -> None:  # type: ignore[no-untyped-def]
        if "propagateSizeHints" not in message:
            print(message, file=sys.stderr)

    qInstallMessageHandler(handler)


def ensure_image(url: str, ref: str) -> None:
    """Import the busybox tar as ``ref`` unless the engine has it."""
    from tests import harness

    client = api_client(url)
    try:
        tags = {tag for entry in client.images() for tag in entry.get("RepoTags") or ()}
        if ref in tags:
            return
        repo, tag = ref.rsplit(":", 1)
        work = Path(tempfile.mkdtemp(prefix="tbx-bench-img-"))
        try:
            tar = harness.busybox_tar(work / "busybox.tar")
            client.import_image(src=str(tar), repository=repo, tag=tag, changes=['CMD ["sh"]'])
        finally:
            shutil.rmtree(work, ignore_errors=True)
    finally:
        client.close()
