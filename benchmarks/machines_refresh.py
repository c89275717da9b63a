"""The Machines page's refresh (every 1.5 s while shown) with the disk, Docker version and
uptime columns, as a ratio to the plain ``MachineService.statuses()`` it ran before (target:
at most 1.5x: the new columns only stat disk files and read /proc; engine versions are cached
per start, so the steady state asks no engine).

Ten running machines over the in-memory hypervisor of tests/unit/machine_fakes.py with real
files: a store under a temporary TOOLBOX_HOME, a 2 GiB sparse ``disk.qcow2`` each, and a
``qemu.pid`` naming a live process. Alternating runs, medians.

    python -m benchmarks.machines_refresh [--runs N] [--machines N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks import common

NEEDS_ENGINE = False
TARGET = 1.5


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.machines_refresh")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--machines", type=int, default=10)
    args = parser.parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="tbx-bench-machines-"))
    os.environ["TOOLBOX_HOME"] = str(home)
    sleepers: list[subprocess.Popen[bytes]] = []
    try:
        from tests.unit.machine_fakes import FakeDriver, FakeGuest
        from toolbox.guest.images import ImageStore
        from toolbox.machine.service import CreateOptions, MachineService
        from ui.machines.page import survey

        images = ImageStore()
        base = home / "base.raw"
        base.write_bytes(b"\0" * 4096)
        images.add("bench", base, format="raw", arch="amd64", source="bench")
        driver = FakeDriver()
        service = MachineService(
            images=images,
            driver_factory=lambda _name: driver,
            guest=FakeGuest(driver),
            default_driver=lambda: "qemu",
        )
        for i in range(args.machines):
            name = f"m{i}"
            service.create(CreateOptions(name=name, image="bench"))
            folder = service.store.dir_for(name)
            with open(folder / "disk.qcow2", "wb") as fh:
                fh.truncate(2 * 1024**3)
                fh.write(os.urandom(1024 * 1024))
            sleepers.append(subprocess.Popen(["sleep", "600"]))
            (folder / "qemu.pid").write_text(f"{sleepers[-1].pid}\n")

        def ask(_service: MachineService, _name: str) -> str:
            return "27.3.1"

        steady = survey(service, {}, {}, ask)  # the first refresh of each start asks
        versions = steady.versions
        assert len(versions) == args.machines, versions
        common.heading(f"machines refresh with usage columns, {args.machines} running machines")
        plain: list[float] = []
        full: list[float] = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            service.statuses()
            t1 = time.perf_counter()
            result = survey(service, versions, {}, ask)
            t2 = time.perf_counter()
            plain.append(t1 - t0)
            full.append(t2 - t1)
            assert result.versions == versions  # cached: no engine asked
        ms = 1000.0
        value, baseline = common.median(full) * ms, common.median(plain) * ms
        outcome = common.Outcome(
            benchmark="machines_refresh",
            metric=f"survey(): statuses + disk usage + uptime + cached versions "
            f"(median of {args.runs})",
            value=value,
            unit="ms",
            baseline_name=f"MachineService.statuses() alone (median of {args.runs})",
            baseline=baseline,
            target=f"ratio <= {TARGET}",
            passed=value / baseline <= TARGET,
        )
        outcome.report()
        return 0 if outcome.passed else 1
    finally:
        for proc in sleepers:
            proc.kill()
            proc.wait()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
