"""The QEMU driver's own cost: start to guest-ready through ``QemuDriver`` against a plain
``qemu-system-x86_64`` command booting the same tiny guest (tests/vm/tiny_guest.py) under TCG,
in the same run; and the accelerator probe's first start (with a fresh verdict cache) against
a later start that reads the cached verdict.

Holds ``/tmp/toolbox-vm.lock`` while VMs run (others boot VMs on the same machine).

    python -m benchmarks.qemu_driver [--rounds R]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from filelock import FileLock

from benchmarks.common import Outcome, heading, median, wait_for

TARGET_OVERHEAD = 1.15


def _ready(log: Path, marker: str, count: int = 1) -> bool:
    try:
        return log.read_text(errors="replace").count(marker) >= count
    except FileNotFoundError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if shutil.which("qemu-system-x86_64") is None:
        print("qemu-system-x86_64 is not installed; skipped")
        return 0

    from tests.harness import free_port
    from tests.vm import tiny_guest
    from toolbox.drivers.base import BootImage, Forward, VMSpec
    from toolbox.drivers.qemu import ACCEL_ENV, AccelCache, QemuDriver

    guest = tiny_guest.ensure_tiny_guest()
    work = Path(tempfile.mkdtemp(prefix="tbx-qbench-"))
    os.environ["TOOLBOX_HOME"] = str(work / "home")
    base = tiny_guest.write_boot_sector_disk(work / "base.raw")
    image = BootImage(base, "raw", guest.kernel, guest.initrd, guest.cmdline)
    d = work / "m"
    d.mkdir()
    seed = d / "seed.iso"
    seed.write_bytes(b"\0" * 2048 * 16)
    spec = VMSpec("bench", d, 1, 256, 1, image, seed, (Forward("http", 8080, free_port()),),
                  work / "console.log")  # fmt: skip

    with FileLock("/tmp/toolbox-vm.lock", timeout=3600):
        heading("QEMU driver: start to guest ready (tiny guest, tcg)")
        os.environ[ACCEL_ENV] = "tcg"
        drv = QemuDriver(accel_cache=AccelCache(work / "accel.json"))
        drv.create(spec)
        driver_times, plain_times = [], []
        for i in range(args.rounds):
            t0 = time.monotonic()
            drv.start(spec)
            wait_for(lambda i=i: _ready(spec.console_log, tiny_guest.READY_MARKER, i + 1), 120,
                     "guest ready")  # fmt: skip
            driver_times.append(time.monotonic() - t0)
            drv.kill(spec)

            log = work / f"plain-{i}.log"
            argv = ["qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-m", "256",
                    "-nodefaults", "-display", "none", "-serial", f"file:{log}",
                    "-kernel", str(guest.kernel), "-initrd", str(guest.initrd),
                    "-append", guest.cmdline,
                    "-netdev", f"user,id=n,hostfwd=tcp:127.0.0.1:{free_port()}-:8080",
                    "-device", "virtio-net-pci,netdev=n"]  # fmt: skip
            t0 = time.monotonic()
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_for(lambda log=log: _ready(log, tiny_guest.READY_MARKER), 120, "plain ready")
            plain_times.append(time.monotonic() - t0)
            proc.kill()
            proc.wait(timeout=30)
        Outcome(
            "qemu_driver", "QemuDriver.start to ready (median)", median(driver_times), "s",
            "plain qemu-system to ready (median)", median(plain_times),
            f"<= {TARGET_OVERHEAD}x",
            median(driver_times) / median(plain_times) <= TARGET_OVERHEAD,
        ).report()  # fmt: skip

        heading("QEMU driver: accelerator probe, first start vs cached verdict")
        os.environ.pop(ACCEL_ENV, None)
        fresh = QemuDriver(accel_cache=AccelCache(work / "probe.json"))
        fast = [a for a in fresh.accelerators() if a != "tcg"]
        if not fast:
            print("  no hardware accelerator offered here; nothing to probe")
        else:
            t0 = time.monotonic()
            fresh.start(spec)
            first = time.monotonic() - t0
            verdict = fresh.last_probe[0]
            fresh.kill(spec)
            t0 = time.monotonic()
            QemuDriver(accel_cache=AccelCache(work / "probe.json")).start(spec)
            cached = time.monotonic() - t0
            fresh.kill(spec)
            print(f"  {verdict.accel}: {'works' if verdict.works else 'hangs'} ({verdict.detail})")
            Outcome(
                "qemu_driver", "first start() with the probe", first, "s",
                "start() with the verdict cached", cached, "info", None,
            ).report()  # fmt: skip
        drv.remove(spec)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    raise SystemExit(main())
