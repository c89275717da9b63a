"""Build a Debian 12 guest image offline from Debian packages (Linux, mmdebstrap, as root).

The result is equivalent to Debian's genericcloud image for our purposes: the cloud kernel,
cloud-init (NoCloud only), openssh-server and systemd-networkd with DHCP. It has no
partition table or boot loader: the kernel and initrd are copied out beside the qcow2 and
booted directly (``root=LABEL=root``), which QEMU does and VirtualBox cannot.

Phases: bootstrap (mmdebstrap into a folder), configure (files written from Python, units
enabled and masked), filesystem (``mkfs.ext4 -d``, no loop device), compress
(``qemu-img convert -c``), store. ``python -m toolbox.guest.build --store DIR`` runs it
with printed progress (``./dev test`` does, before pytest).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from toolbox import paths
from toolbox.errors import CommandError, ImageError, ToolboxError
from toolbox.guest.download import Cancel, is_cancelled, raise_if_cancelled
from toolbox.guest.images import (
    LOCAL_ENGINE_IMAGE_NAME,
    LOCAL_IMAGE_NAME,
    CachedImage,
    ImageStore,
    host_arch,
)
from toolbox.progress import Progress, ProgressCallback
from toolbox.provision import clock

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"
MIRROR_ENV = "TOOLBOX_DEBIAN_MIRROR"
KERNEL_CMDLINE = "root=LABEL=root rw console=ttyS0,115200"
DISK_SIZE = "6G"
RECIPE_VERSION = 2
DEBIAN_TOOLS_HINT = "Install them with: sudo apt-get install mmdebstrap e2fsprogs qemu-utils"

# What makes a working guest (measured): init, devices, sshd, the cloud kernel, networking,
# cloud-init; plus what provisioning needs (sudo, curl for Docker's repository key, gnupg
# is not needed: apt reads .asc keys) and e2fsprogs for fsck and cloud-init's resize2fs.
PACKAGES = (
    "systemd-sysv",
    "udev",
    "dbus",
    "openssh-server",
    "linux-image-cloud-{arch}",
    "ca-certificates",
    "iproute2",
    "netbase",
    "kmod",
    "procps",
    "cloud-init",
    "sudo",
    "curl",
    "e2fsprogs",
    "less",
)
# Baked in with engine=True, so a machine made from the image provisions without the network
# and in seconds (provisioning checks for them and skips the install): the engine as provisioning
# installs it from Debian (docker.io; apparmor, without which no container starts), and sshfs
# for shared folders. dockerd does not start in the chroot: mmdebstrap installs a
# policy-rc.d that refuses service starts, and systemctl only links units there.
ENGINE_PACKAGES = ("docker.io", "apparmor", "sshfs", "fuse3")
# Whether ``toolbox image build`` bakes them in by default. The stock build (without) is what
# the provisioning tests install onto; ``--engine`` builds ``debian-12-local-engine``, which the
# other VM tests use (the ``engine_guest_image`` fixture) so they skip the minutes of apt.
BAKE_ENGINE = False

# Documentation and translations are dropped from the image (copyright files are kept).
DPKG_OPTIONS = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
)

FILES: tuple[tuple[str, str], ...] = (
    ("etc/hostname", "debian\n"),
    ("etc/hosts", "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n"),
    ("etc/fstab", "LABEL=root\t/\text4\tdefaults,errors=remount-ro\t0\t1\n"),
    # bookworm's networkd writes no resolv.conf without resolved; 10.0.2.3 is the DNS of
    # both QEMU's user-mode network and VirtualBox's NAT.
    ("etc/resolv.conf", "nameserver 10.0.2.3\n"),
    # The links the engine makes (docker0, br-*, the veth of every container) are Docker's:
    # networkd must leave them alone, or it takes a container's veth off the bridge and
    # published ports answer nothing. "Type=ether" alone matches veth pairs too.
    (
        "etc/systemd/network/10-toolbox-docker-unmanaged.network",
        "[Match]\nName=docker* br-* veth*\n\n[Link]\nUnmanaged=yes\n",
    ),
    (
        "etc/systemd/network/80-toolbox-dhcp.network",
        "[Match]\nName=en* eth*\nType=ether\n\n[Network]\nDHCP=yes\n\n[DHCPv4]\nUseDomains=yes\n",
    ),
    (
        "etc/cloud/cloud.cfg.d/99-toolbox.cfg",
        "# Toolbox: the seed ISO is the only datasource; networking is systemd-networkd's;\n"
        "# the locale module fails in this minimal image, so it is off.\n"
        "datasource_list: [ NoCloud ]\n"
        "network:\n  config: disabled\n"
        "locale: false\n",
    ),
)
ENABLE_UNITS = ("systemd-networkd.service",)
# With the engine baked in: dockerd starts at boot (provisioning restarts it with TLS).
ENGINE_UNITS = ("docker.service",)
# The guest clock follows the RTC after a pause or host sleep (toolbox.provision.clock).
CLOCK_FILES = tuple((path.lstrip("/"), content) for path, content, _ in clock.FILES)
CLOCK_UNITS = (clock.TIMER_UNIT,)
MASK_UNITS = (
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
)
# Lines changed in package files. With password login already off in sshd_config,
# cloud-init's ``ssh_pwauth: false`` changes nothing and does not restart sshd just after
# it first answered (a restart there resets the first connections).
EDITS: tuple[tuple[str, str, str], ...] = (
    ("etc/ssh/sshd_config", "#PasswordAuthentication yes", "PasswordAuthentication no"),
)
# Host keys made at package install time would be shared by every VM from this image:
# the app gives each guest its own through cloud-init.
REMOVE_GLOBS = ("etc/ssh/ssh_host_*",)


@dataclass(frozen=True)
class Recipe:
    """Everything that decides what the built image contains; its hash keys caches."""

    suite: str
    arch: str
    packages: tuple[str, ...]
    dpkg_options: tuple[str, ...]
    files: tuple[tuple[str, str], ...]
    edits: tuple[tuple[str, str, str], ...]
    enable: tuple[str, ...]
    mask: tuple[str, ...]
    remove: tuple[str, ...]
    hold: tuple[str, ...]
    disk_size: str
    cmdline: str
    # Groups removed after install: docker.io makes a "docker" group, and cloud-init then
    # cannot create the machine's user "docker" (useradd refuses an existing group name), so
    # no login works. Without it, the user's own group is "docker", as on a stock image.
    remove_groups: tuple[str, ...] = ()
    version: int = RECIPE_VERSION

    def digest(self) -> str:
        data = json.dumps(dataclasses.asdict(self), sort_keys=True).encode()
        return hashlib.sha256(data).hexdigest()[:16]


def recipe(arch: str | None = None, engine: bool = BAKE_ENGINE) -> Recipe:
    """The image's recipe; ``engine`` bakes the engine and tools in (the default)."""
    arch = arch or host_arch()
    packages = (*PACKAGES, *ENGINE_PACKAGES) if engine else PACKAGES
    return Recipe(
        suite=SUITE,
        arch=arch,
        packages=tuple(p.format(arch=arch) for p in packages),
        dpkg_options=DPKG_OPTIONS,
        files=FILES + CLOCK_FILES,
        edits=EDITS,
        enable=ENABLE_UNITS + CLOCK_UNITS + (ENGINE_UNITS if engine else ()),
        mask=MASK_UNITS,
        remove=REMOVE_GLOBS,
        # The kernel boots from outside the disk: keep apt from swapping it for one whose
        # modules no longer match.
        hold=(f"linux-image-cloud-{arch}",),
        disk_size=DISK_SIZE,
        cmdline=KERNEL_CMDLINE,
        remove_groups=("docker",) if engine else (),
    )


def recipe_hash(arch: str | None = None, engine: bool = BAKE_ENGINE) -> str:
    """The current recipe's hash for ``arch``: a cached build with another hash is stale."""
    return recipe(arch, engine).digest()


def source_lines(mirror: str, suite: str = SUITE) -> list[str]:
    """APT sources for the image; security updates only come with the default mirror."""
    mirror = mirror.rstrip("/")
    lines = [f"deb {mirror} {suite} main", f"deb {mirror} {suite}-updates main"]
    if mirror == DEFAULT_MIRROR:
        lines.append(f"deb {SECURITY_MIRROR} {suite}-security main")
    return lines


def mmdebstrap_argv(r: Recipe, rootfs: Path, mirror: str) -> list[str]:
    """The bootstrap command (root mode into a folder, so ownership is right for mkfs)."""
    return [
        "mmdebstrap",
        "--mode=root",
        "--variant=apt",
        f"--architectures={r.arch}",
        "--include=" + ",".join(r.packages),
        *[f"--dpkgopt={opt}" for opt in r.dpkg_options],
        '--aptopt=Acquire::Retries "3"',
        r.suite,
        str(rootfs),
        *source_lines(mirror, r.suite),
    ]


def mkfs_argv(r: Recipe, rootfs: Path, raw: Path) -> list[str]:
    return ["mkfs.ext4", "-q", "-F", "-L", "root", "-d", str(rootfs), str(raw), r.disk_size]


def convert_argv(raw: Path, qcow2: Path) -> list[str]:
    return ["qemu-img", "convert", "-p", "-c", "-f", "raw", "-O", "qcow2", str(raw), str(qcow2)]


# mmdebstrap's "I:" lines, in order, and how far through the bootstrap each one is.
_BOOTSTRAP_PHASES = (
    ("running apt-get update", 0.03, "Reading the package lists"),
    ("downloading packages", 0.08, "Downloading packages"),
    ("extracting archives", 0.30, "Unpacking the base system"),
    ("installing essential packages", 0.38, "Installing the base system"),
    ("installing remaining packages", 0.52, "Installing the kernel, sshd and cloud-init"),
    ("cleaning package lists", 0.96, "Cleaning up"),
)
_QEMU_IMG_PROGRESS = re.compile(r"\((\d+(?:\.\d+)?)/100%\)")


def _stream(
    argv: Sequence[str],
    on_line: Callable[[str], None],
    cancel: Cancel | None,
    log: Path,
    hint: str,
) -> None:
    """Run ``argv``, passing each output line (split on CR or LF) to ``on_line``; the full
    output goes to ``log``. Cancelling terminates the process."""
    lines: queue.Queue[str | None] = queue.Queue()
    tail: deque[str] = deque(maxlen=40)
    with open(log, "a", encoding="utf-8") as log_fh:
        log_fh.write(f"$ {' '.join(argv)}\n")
        log_fh.flush()
        try:
            proc = subprocess.Popen(
                list(argv),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "LC_ALL": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"},
            )
        except FileNotFoundError as exc:
            raise ImageError(f"{argv[0]} is not installed", hint=DEBIAN_TOOLS_HINT) from exc

        def reader() -> None:
            assert proc.stdout is not None
            buf = b""
            while chunk := os.read(proc.stdout.fileno(), 4096):
                buf += chunk
                parts = re.split(rb"[\r\n]", buf)
                buf = parts.pop()
                for part in parts:
                    lines.put(part.decode("utf-8", "replace"))
            if buf:
                lines.put(buf.decode("utf-8", "replace"))
            lines.put(None)

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        finished = False
        while not finished:
            if is_cancelled(cancel):
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
                raise_if_cancelled(cancel)
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                finished = True
                continue
            if line.strip():
                log_fh.write(line + "\n")
                tail.append(line)
                on_line(line)
        code = proc.wait()
        thread.join(5)
    if code != 0:
        raise CommandError(argv, code, stdout="\n".join(tail), hint=f"{hint} Full log: {log}")


def _chroot(rootfs: Path, *args: str, log: Path) -> None:
    argv = ["chroot", str(rootfs), *args]
    proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"$ {' '.join(argv)}\n{proc.stdout}{proc.stderr}")
    if proc.returncode != 0:
        raise CommandError(
            argv,
            proc.returncode,
            proc.stdout,
            proc.stderr,
            hint=f"Configuring the image failed; see {log}.",
        )


def configure_rootfs(r: Recipe, rootfs: Path, log: Path) -> tuple[Path, Path]:
    """Write the recipe's files and edits, enable and mask units, hold the kernel, drop
    host keys.
    Returns the kernel and initrd found under /boot."""
    for pattern in r.remove:
        for path in rootfs.glob(pattern):
            path.unlink()
    for rel, content in r.files:
        target = rootfs / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.exists():
            target.unlink()
        target.write_text(content, encoding="utf-8")
        target.chmod(0o644)
    for rel, old, new in r.edits:
        target = rootfs / rel
        lines = target.read_text(encoding="utf-8").split("\n")
        if old not in lines:
            raise ImageError(
                f"Cannot configure the image: {rel} has no line {old!r}",
                hint="The Debian package changed; update EDITS in toolbox/guest/build.py.",
            )
        target.write_text("\n".join(new if line == old else line for line in lines))
    # An empty machine-id: systemd makes a fresh one on each VM's first boot.
    (rootfs / "etc/machine-id").write_text("", encoding="ascii")
    if r.enable:
        _chroot(rootfs, "systemctl", "enable", *r.enable, log=log)
    for unit in r.mask:
        link = rootfs / "etc/systemd/system" / unit
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to("/dev/null")
    if r.hold:
        _chroot(rootfs, "apt-mark", "hold", *r.hold, log=log)
    for group in r.remove_groups:
        _chroot(rootfs, "groupdel", group, log=log)
    kernels = sorted((rootfs / "boot").glob("vmlinuz-*"))
    initrds = sorted((rootfs / "boot").glob("initrd.img-*"))
    if len(kernels) != 1 or len(initrds) != 1:
        raise ImageError(
            f"Expected one kernel and one initrd in the image, found {len(kernels)} and "
            f"{len(initrds)}",
            hint=f"See the build log {log}.",
        )
    return kernels[0], initrds[0]


def check_build_host(arch: str) -> None:
    """Raise ImageError saying what is missing when this host cannot build images."""
    if not sys.platform.startswith("linux"):
        raise ImageError(
            "Building guest images needs Linux (mmdebstrap)",
            hint="Use the default image (downloaded) or pass --image with a file or URL.",
        )
    missing = [
        tool
        for tool in ("mmdebstrap", "mkfs.ext4", "qemu-img", "chroot")
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists()
    ]
    if missing:
        raise ImageError(
            f"Building guest images needs {', '.join(missing)}, which is not installed",
            hint=DEBIAN_TOOLS_HINT,
        )
    if os.geteuid() != 0:
        raise ImageError(
            "Building guest images needs root (mmdebstrap installs packages into a folder "
            "with their real owners)",
            hint="Run it as root, e.g. `sudo toolbox image build`.",
        )
    native = host_arch()
    if arch != native:
        raise ImageError(
            f"Cannot build an {arch} image on this {native} host",
            hint=f"Build on an {arch} machine, or omit --arch.",
        )


def build_image(
    name: str = LOCAL_IMAGE_NAME,
    arch: str | None = None,
    mirror: str | None = None,
    progress: ProgressCallback | None = None,
    *,
    store: ImageStore | None = None,
    cancel: Cancel | None = None,
    engine: bool = BAKE_ENGINE,
) -> CachedImage:
    """Build Debian 12 with cloud-init from packages and cache it as ``name``.

    ``mirror`` defaults to ``$TOOLBOX_DEBIAN_MIRROR`` or ``http://deb.debian.org/debian``.
    Takes a minute or two; reports progress by phase (``build.bootstrap`` ...).
    """
    image, _ = _build_locked(
        store or ImageStore(), name, arch, mirror, progress, cancel, False, engine
    )
    return image


def ensure_built(
    store: ImageStore,
    name: str = LOCAL_IMAGE_NAME,
    progress: ProgressCallback | None = None,
    mirror: str | None = None,
    cancel: Cancel | None = None,
    engine: bool = BAKE_ENGINE,
) -> tuple[CachedImage, bool]:
    """The cached build of the current recipe, building it when missing or stale.
    Returns the image and whether it was built now."""
    want = recipe_hash(engine=engine)
    if store.exists(name) and store.get(name).recipe == want:
        return store.get(name), False
    return _build_locked(store, name, None, mirror, progress, cancel, True, engine)


def _build_locked(
    store: ImageStore,
    name: str,
    arch: str | None,
    mirror: str | None,
    progress: ProgressCallback | None,
    cancel: Cancel | None,
    reuse: bool,
    engine: bool = BAKE_ENGINE,
) -> tuple[CachedImage, bool]:
    arch = arch or host_arch()
    mirror = mirror or os.environ.get(MIRROR_ENV) or DEFAULT_MIRROR
    report = progress or (lambda _: None)
    r = recipe(arch, engine)
    with store.lock(name):
        if reuse and store.exists(name) and store.get(name).recipe == r.digest():
            return store.get(name), False  # built by another process while we waited
        check_build_host(arch)
        log = paths.ensure_dir(store.root / ".logs") / f"build-{name}.log"
        log.write_text(f"Building {name} ({arch}, recipe {r.digest()}) from {mirror}\n")
        work = store.staging_dir(f"build-{name}")
        try:
            return _build(store, name, r, mirror, work, log, report, cancel), True
        except ToolboxError:
            raise
        except OSError as exc:
            raise ImageError(f"Building the image failed: {exc}", hint=f"See {log}.") from exc
        finally:
            shutil.rmtree(work, ignore_errors=True)


def _build(
    store: ImageStore,
    name: str,
    r: Recipe,
    mirror: str,
    work: Path,
    log: Path,
    report: ProgressCallback,
    cancel: Cancel | None,
) -> CachedImage:
    rootfs = work / "rootfs"

    def bootstrap_line(line: str) -> None:
        lowered = line.lower()
        for needle, fraction, message in _BOOTSTRAP_PHASES:
            if needle in lowered:
                report(Progress("build.bootstrap", message, fraction))

    report(Progress("build.bootstrap", f"Bootstrapping Debian {r.suite} from {mirror}", 0.0))
    _stream(
        mmdebstrap_argv(r, rootfs, mirror),
        bootstrap_line,
        cancel,
        log,
        hint=f"mmdebstrap failed; check that {mirror} is reachable.",
    )
    report(Progress("build.bootstrap", "Base system installed", 1.0, done=True))

    raise_if_cancelled(cancel)
    report(Progress("build.configure", "Configuring networking, cloud-init and sshd", 0.0))
    kernel, initrd = configure_rootfs(r, rootfs, log)
    kernel_out, initrd_out = work / "vmlinuz", work / "initrd.img"
    shutil.copyfile(kernel, kernel_out)
    shutil.copyfile(initrd, initrd_out)
    kernel_out.chmod(0o644)
    initrd_out.chmod(0o644)
    report(Progress("build.configure", "Configured", 1.0, done=True))

    raise_if_cancelled(cancel)
    raw = work / "disk.raw"
    report(Progress("build.filesystem", f"Making a {r.disk_size} ext4 file system", 0.0))
    _stream(
        mkfs_argv(r, rootfs, raw),
        lambda _: None,
        cancel,
        log,
        hint="mkfs.ext4 failed (e2fsprogs 1.43 or later is needed for -d).",
    )
    shutil.rmtree(rootfs)
    report(Progress("build.filesystem", "File system made", 1.0, done=True))

    qcow2 = work / "disk.qcow2"

    def convert_line(line: str) -> None:
        match = _QEMU_IMG_PROGRESS.search(line)
        if match:
            report(
                Progress("build.compress", "Compressing to qcow2", float(match.group(1)) / 100.0)
            )

    report(Progress("build.compress", "Compressing to qcow2", 0.0))
    _stream(convert_argv(raw, qcow2), convert_line, cancel, log, hint="qemu-img failed.")
    raw.unlink()
    report(Progress("build.compress", "Compressed", 1.0, done=True))

    report(Progress("build.store", f"Adding {name} to the image cache", 0.0))
    digest = hashlib.sha512()
    with open(qcow2, "rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
    image = store.add(
        name,
        qcow2,
        format="qcow2",
        arch=r.arch,
        source=f"mmdebstrap {r.suite} {mirror}",
        sha512=digest.hexdigest(),
        kernel=kernel_out,
        initrd=initrd_out,
        cmdline=r.cmdline,
        recipe=r.digest(),
    )
    report(Progress("build.store", f"Built {name}", 1.0, image.size, image.size, done=True))
    return image


class _Printer:
    """Prints build progress for people: each phase, and every tenth of a long one."""

    def __init__(self) -> None:
        self._last: tuple[str, int] | None = None

    def __call__(self, p: Progress) -> None:
        tenth = -1 if p.fraction is None else int(p.fraction * 10)
        if (p.step, tenth) == self._last and not p.done:
            return
        self._last = (p.step, tenth)
        pct = f"{p.fraction * 100:3.0f}%" if p.fraction is not None else "    "
        print(f"  {p.step:<17} {pct}  {p.message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m toolbox.guest.build``: build (or reuse) the local image, printing phases."""
    parser = argparse.ArgumentParser(prog="python -m toolbox.guest.build", description=__doc__)
    parser.add_argument("--store", type=Path, help="image cache folder (default: the user's)")
    parser.add_argument(
        "--name",
        default=None,
        help=f"default {LOCAL_IMAGE_NAME}, with --engine {LOCAL_ENGINE_IMAGE_NAME}",
    )
    parser.add_argument(
        "--engine", action="store_true", help="bake the engine, sshfs and AppArmor into the image"
    )
    parser.add_argument("--mirror", default=None, help=f"Debian mirror (default {DEFAULT_MIRROR})")
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    args = parser.parse_args(argv)
    args.name = args.name or (LOCAL_ENGINE_IMAGE_NAME if args.engine else LOCAL_IMAGE_NAME)
    store = ImageStore(args.store)
    started = time.monotonic()
    try:
        if args.force:
            image, built = (
                build_image(
                    args.name,
                    mirror=args.mirror,
                    progress=_Printer(),
                    store=store,
                    engine=args.engine,
                ),
                True,
            )
        else:
            image, built = ensure_built(
                store, args.name, _Printer(), args.mirror, engine=args.engine
            )
    except ToolboxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    what = f"built in {time.monotonic() - started:.0f} s" if built else "up to date"
    print(
        f"{image.name}: {image.path} ({image.size / 2**20:.0f} MiB, recipe {image.recipe}, {what})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
