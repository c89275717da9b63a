"""``toolbox start`` (stopped to engine ready over TLS) against a plain ``qemu-system``
boot of the same disk until the SSH banner, as a ratio (target: at most 1.15).

One machine is created in a throw-away TOOLBOX_HOME from the locally built image (its
create phases and their times are printed), then stopped. Each round boots the baseline
(plain ``qemu-system-x86_64 -accel tcg`` on a throw-away overlay over the machine's own,
stopped disk, with its seed, until ``SSH-2.0-``) and then runs ``MachineService.start``;
rounds alternate so both see the same machine load. Holds ``/tmp/toolbox-vm.lock``.

    python -m benchmarks.machine_start [--rounds N] [--image-store DIR] [--keep]

``--image-store`` is an image cache holding ``debian-12-local`` (default: the dev cache the
tests use, built there when missing).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from filelock import FileLock

TARGET = 1.15
IMAGE = "debian-12-local"
MACHINE = "bench"
VM_LOCK = "/tmp/toolbox-vm.lock"
BANNER_TIMEOUT = 600.0


def dev_image_store() -> Path:
    cache = Path(os.environ.get("TOOLBOX_DEV_CACHE", Path.home() / ".cache" / "toolbox-dev"))
    return cache / "guest-images"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def register_image(source_root: Path) -> None:
    """Copy the built image into the (throw-away) TOOLBOX_HOME's own cache."""
    from toolbox.guest.build import ensure_built
    from toolbox.guest.images import ImageStore

    src, _ = ensure_built(ImageStore(source_root), IMAGE)
    staging = Path(tempfile.mkdtemp(prefix="bench-image-"))
    copies = {}
    for key in ("path", "kernel", "initrd"):
        path = getattr(src, key)
        if path is not None:
            copies[key] = Path(shutil.copy2(path, staging / path.name))
    ImageStore().add(
        IMAGE, copies["path"], format=src.format, arch=src.arch, source=str(src.path),
        kernel=copies.get("kernel"), initrd=copies.get("initrd"), cmdline=src.cmdline,
    )  # fmt: skip
    shutil.rmtree(staging, ignore_errors=True)


def baseline_argv(image, overlay: Path, seed: Path, port: int, console: Path) -> list[str]:  # type: ignore[no-untyped-def]
    """The plainest QEMU command that boots the guest with SSH reachable on loopback."""
    return [
        "qemu-system-x86_64", "-accel", "tcg", "-m", "2048", "-smp", "2",
        "-display", "none", "-serial", f"file:{console}",
        "-kernel", str(image.kernel), "-initrd", str(image.initrd), "-append", image.cmdline,
        "-drive", f"file={overlay},if=virtio,format=qcow2",
        "-drive", f"file={seed},media=cdrom,readonly=on",
        "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22",
        "-device", "virtio-net-pci,netdev=n0",
    ]  # fmt: skip


def boot_baseline(image, machine_dir: Path, work: Path) -> float:  # type: ignore[no-untyped-def]
    from toolbox.ssh.client import wait_for_banner

    overlay = work / "baseline.qcow2"
    overlay.unlink(missing_ok=True)
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
         "-b", str(machine_dir / "disk.qcow2"), str(overlay)],
        check=True, timeout=60,
    )  # fmt: skip
    port = free_port()
    argv = baseline_argv(image, overlay, machine_dir / "seed.iso", port, work / "console.log")
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        wait_for_banner("127.0.0.1", port, BANNER_TIMEOUT)
        return time.monotonic() - start
    finally:
        proc.kill()
        proc.wait(30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.machine_start")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--image-store", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the throw-away home")
    args = parser.parse_args(argv)

    home = Path(tempfile.mkdtemp(prefix="tbx-bench-"))
    os.environ["TOOLBOX_HOME"] = str(home)
    os.environ["DOCKER_CONFIG"] = str(home / "docker-config")

    from toolbox.cli_progress import ProgressPrinter
    from toolbox.guest.images import ImageStore
    from toolbox.machine.model import format_duration
    from toolbox.machine.service import CreateOptions, MachineService

    with FileLock(VM_LOCK, timeout=3600):
        service = MachineService()
        try:
            register_image(args.image_store or dev_image_store())
            image = ImageStore().get(IMAGE)
            created = service.create(
                CreateOptions(MACHINE, driver="qemu", image=IMAGE, disk_gib=10),
                ProgressPrinter(sys.stderr, tty=False),
            )
            print("create phases:")
            for phase in created.phases:
                print(f"  {phase.phase:<10} {format_duration(phase.seconds):>8}")
            print(f"  {'total':<10} {format_duration(created.seconds):>8}")
            service.stop(MACHINE)
            machine_dir = service.store.dir_for(MACHINE)
            starts, baselines = [], []
            for round_no in range(1, args.rounds + 1):
                baselines.append(boot_baseline(image, machine_dir, home))
                begin = time.monotonic()
                result = service.start(MACHINE)
                starts.append(time.monotonic() - begin)
                phases = ", ".join(f"{p.phase} {p.seconds:.1f}s" for p in result.phases)
                print(
                    f"round {round_no}: plain qemu to SSH banner {baselines[-1]:.1f} s; "
                    f"toolbox start to engine ready {starts[-1]:.1f} s ({phases})"
                )
                service.stop(MACHINE)
            ratio = statistics.median(starts) / statistics.median(baselines)
            print(
                f"toolbox start / plain qemu boot: {ratio:.2f}x "
                f"(median {statistics.median(starts):.1f} s vs "
                f"{statistics.median(baselines):.1f} s; target <= {TARGET})"
            )
            return 0 if ratio <= TARGET else 1
        finally:
            if service.store.exists(MACHINE):
                service.remove(MACHINE, force=True)
            if not args.keep:
                shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
