"""``toolbox start`` (stopped to engine ready over TLS) against a plain ``qemu-system``
boot until the SSH banner, as ratios (target: at most 1.15).

One machine is created in a throw-away TOOLBOX_HOME from the locally built image (its
create phases and their times are printed), then stopped. Each round times, one after the
other so all see the same machine load:

* baseline "image": plain ``qemu-system-x86_64 -accel tcg`` booting the same image (a fresh
  overlay over the cached base image, with a seed, so cloud-init runs as on any first boot)
  until ``SSH-2.0-``: the brief's baseline, "the same image booted by a plain qemu-system";
* baseline "disk": the same plain command on a throw-away overlay over the machine's own
  stopped, provisioned disk until ``SSH-2.0-``: the strict one, the same guest state;
* ``MachineService.start`` to engine ready, and its boot phase alone (to the banner).

``start / image`` is the headline ratio; ``start / disk`` shows what dockerd's own start
inside the guest adds after sshd; ``boot phase / disk`` is Toolbox's own overhead.
Holds ``/tmp/toolbox-vm.lock``.

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
from typing import TYPE_CHECKING

from filelock import FileLock

if TYPE_CHECKING:
    from toolbox.guest.images import CachedImage

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


def baseline_argv(
    image: CachedImage, overlay: Path, seed: Path, port: int, console: Path
) -> list[str]:
    """The plainest QEMU command that boots the guest with SSH reachable on loopback."""
    if image.kernel is None or image.initrd is None or image.cmdline is None:
        raise SystemExit(f"{image.name} does not boot by direct kernel boot; use the local build")
    return [
        "qemu-system-x86_64", "-accel", "tcg", "-m", "2048", "-smp", "2",
        "-display", "none", "-serial", f"file:{console}",
        "-kernel", str(image.kernel), "-initrd", str(image.initrd), "-append", image.cmdline,
        "-drive", f"file={overlay},if=virtio,format=qcow2",
        "-drive", f"file={seed},media=cdrom,readonly=on",
        "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22",
        "-device", "virtio-net-pci,netdev=n0",
    ]  # fmt: skip


def boot_plain(image: CachedImage, backing: Path, seed: Path, work: Path) -> float:
    """Boot a throw-away overlay over ``backing`` with plain QEMU; seconds to the banner."""
    from toolbox.ssh.client import wait_for_banner

    overlay = work / "baseline.qcow2"
    overlay.unlink(missing_ok=True)
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
         "-b", str(backing), str(overlay)],
        check=True, timeout=60,
    )  # fmt: skip
    port = free_port()
    argv = baseline_argv(image, overlay, seed, port, work / "baseline-console.log")
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        wait_for_banner("127.0.0.1", port, BANNER_TIMEOUT)
        return time.monotonic() - start
    finally:
        proc.kill()
        proc.wait(30)
        overlay.unlink(missing_ok=True)


def first_boot_seed(work: Path) -> Path:
    """A seed for a new instance (its own keys), as any first boot of the image has."""
    from toolbox.guest.seed import SeedConfig, write_seed_iso
    from toolbox.ssh.keys import generate_host_key, generate_user_key

    user = generate_user_key(work / "baseline-key")
    host = generate_host_key()
    config = SeedConfig(
        instance_id=f"baseline-{time.time_ns()}",
        hostname="baseline",
        user="docker",
        authorized_key=user.public_line,
        host_key_private=host.private_openssh,
        host_key_public=host.public_line,
    )
    return write_seed_iso(work / "baseline-seed.iso", config)


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
            image_boots, disk_boots, starts, start_boots = [], [], [], []
            for round_no in range(1, args.rounds + 1):
                seed = first_boot_seed(home)
                image_boots.append(boot_plain(image, image.path, seed, home))
                disk_boots.append(
                    boot_plain(image, machine_dir / "disk.qcow2", machine_dir / "seed.iso", home)
                )
                begin = time.monotonic()
                result = service.start(MACHINE)
                starts.append(time.monotonic() - begin)
                start_boots.append(next(p.seconds for p in result.phases if p.phase == "boot"))
                phases = ", ".join(f"{p.phase} {p.seconds:.1f}s" for p in result.phases)
                print(
                    f"round {round_no}: plain qemu to SSH banner: image {image_boots[-1]:.1f} s, "
                    f"disk {disk_boots[-1]:.1f} s; toolbox start to engine ready "
                    f"{starts[-1]:.1f} s ({phases})"
                )
                service.stop(MACHINE)
            med = statistics.median
            ratio = med(starts) / med(image_boots)
            print(
                f"toolbox start / plain qemu boot of the image: {ratio:.2f}x "
                f"(median {med(starts):.1f} s vs {med(image_boots):.1f} s; target <= {TARGET})"
            )
            print(
                f"toolbox start / plain qemu boot of the machine's disk: "
                f"{med(starts) / med(disk_boots):.2f}x ({med(starts):.1f} s vs "
                f"{med(disk_boots):.1f} s; the difference is dockerd starting in the guest)"
            )
            print(
                f"toolbox boot phase / plain qemu boot of the machine's disk: "
                f"{med(start_boots) / med(disk_boots):.2f}x ({med(start_boots):.1f} s vs "
                f"{med(disk_boots):.1f} s; Toolbox's own overhead to the banner)"
            )
            return 0 if ratio <= TARGET else 1
        finally:
            if service.store.exists(MACHINE):
                service.remove(MACHINE, force=True)
            if not args.keep:
                shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
