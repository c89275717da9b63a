"""A tiny bootable guest for fast QEMU driver tests: Debian's cloud kernel plus a busybox
initramfs, and a one-sector BIOS boot disk.

The busybox guest loads virtio-net, sets 10.0.2.15 (QEMU user-mode net), serves
``TINY-GUEST-HTTP-OK`` on port 8080 (so forwards are tested end to end), powers off when the
ACPI power button is pressed (so ``system_powerdown`` is tested: a small reader on the
"Power Button" input device calls ``poweroff -f``), and prints ``TINY-GUEST-READY`` on the
serial console once all that is up. It boots under TCG in a few seconds, where the Debian
image needs about a minute.

The kernel comes from the Debian mirror (``apt-get download``, the only network this machine
has) and is cached in ``$TOOLBOX_DEV_CACHE/tiny-guest/`` so a second run downloads nothing.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

READY_MARKER = "TINY-GUEST-READY"
POWEROFF_MARKER = "TINY-GUEST-POWEROFF"
HTTP_BODY = "TINY-GUEST-HTTP-OK"
HTTP_PORT = 8080
BOOTSECTOR_MARKER = "TOOLBOX-BOOTSECTOR-OK"

# Load order matters: insmod does not resolve dependencies.
MODULES = (
    "virtio_ring",
    "virtio",
    "virtio_pci_modern_dev",
    "virtio_pci_legacy_dev",
    "virtio_pci",
    "failover",
    "net_failover",
    "virtio_net",
    "button",
    "evdev",
)

INIT_SCRIPT = f"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in {" ".join(MODULES)}; do insmod /lib/modules/$m.ko; done
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
mkdir -p /www
echo {HTTP_BODY} > /www/index.html
httpd -p {HTTP_PORT} -h /www
for d in /sys/class/input/event*; do
  if [ "$(cat $d/device/name)" = "Power Button" ]; then
    ( head -c 1 /dev/input/$(basename $d) >/dev/null && echo {POWEROFF_MARKER} && poweroff -f ) &
  fi
done
echo {READY_MARKER}
while :; do sleep 3600; done
"""


@dataclass(frozen=True)
class TinyGuest:
    kernel: Path
    initrd: Path
    cmdline: str = "console=ttyS0,115200 panic=-1"


def dev_cache() -> Path:
    base = os.environ.get("TOOLBOX_DEV_CACHE") or str(Path.home() / ".cache" / "toolbox-dev")
    return Path(base) / "tiny-guest"


def _kernel_package() -> str:
    """The versioned package the ``linux-image-cloud-amd64`` meta package depends on
    (refreshing apt's lists once when a fresh machine has none yet)."""
    for attempt in range(2):
        out = subprocess.run(
            ["apt-cache", "depends", "linux-image-cloud-amd64"],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        for line in out.splitlines():
            line = line.strip()
            if line.startswith("Depends:") and "linux-image-" in line:
                return line.split(":", 1)[1].strip()
        if attempt == 0:
            subprocess.run(["apt-get", "update", "-qq"], check=False, timeout=600)
    raise RuntimeError("apt knows no linux-image-cloud-amd64 (is the Debian mirror reachable?)")


def _fetch_kernel(cache: Path) -> Path:
    """Download and unpack the Debian cloud kernel; return the unpacked root."""
    root = cache / "kernel-root"
    if (root / "boot").is_dir() and any((root / "boot").glob("vmlinuz-*")):
        return root
    cache.mkdir(parents=True, exist_ok=True)
    pkg = _kernel_package()
    subprocess.run(["apt-get", "download", pkg], cwd=cache, check=True, timeout=600)
    debs = sorted(cache.glob(f"{pkg}_*.deb"))
    if not debs:
        raise RuntimeError(f"apt-get download {pkg} left no .deb in {cache}")
    tmp = cache / "kernel-root.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(tmp)], check=True, timeout=300)
    shutil.rmtree(root, ignore_errors=True)  # an incomplete one (an interrupted unpack)
    tmp.rename(root)
    for deb in debs:
        deb.unlink()
    return root


def _newc_entry(out: io.BytesIO, name: str, mode: int, data: bytes, ino: int) -> None:
    """One entry of a ``newc`` cpio archive (what the kernel unpacks as an initramfs)."""
    encoded = name.encode() + b"\0"
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0]
    header = b"070701" + b"".join(f"{f:08X}".encode() for f in fields)
    out.write(header + encoded)
    out.write(b"\0" * (-(len(header) + len(encoded)) % 4))
    out.write(data)
    out.write(b"\0" * (-len(data) % 4))


def build_initramfs(dest: Path, modules_dir: Path, busybox: Path) -> None:
    buf = io.BytesIO()
    ino = 1
    dirs = ["bin", "dev", "proc", "sys", "etc", "lib", "lib/modules", "www"]
    for d in dirs:
        _newc_entry(buf, d, 0o040755, b"", ino)
        ino += 1
    _newc_entry(buf, "bin/busybox", 0o100755, busybox.read_bytes(), ino)
    ino += 1
    _newc_entry(buf, "init", 0o100755, INIT_SCRIPT.encode(), ino)
    ino += 1
    for mod in MODULES:
        found = sorted(modules_dir.rglob(f"{mod}.ko"))
        if not found:
            raise RuntimeError(f"kernel module {mod}.ko not found under {modules_dir}")
        _newc_entry(buf, f"lib/modules/{mod}.ko", 0o100644, found[0].read_bytes(), ino)
        ino += 1
    _newc_entry(buf, "TRAILER!!!", 0, b"", 0)
    tmp = dest.with_suffix(".tmp")
    tmp.write_bytes(gzip.compress(buf.getvalue(), compresslevel=1))
    tmp.replace(dest)


def _is_static_elf(path: Path) -> bool:
    """An ELF executable without a PT_INTERP program header needs no dynamic loader."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2:  # 64-bit only
        return False
    order = "little" if data[5] == 1 else "big"
    phoff = int.from_bytes(data[0x20:0x28], order)
    phentsize = int.from_bytes(data[0x36:0x38], order)
    phnum = int.from_bytes(data[0x38:0x3A], order)
    for i in range(phnum):
        off = phoff + i * phentsize
        if int.from_bytes(data[off : off + 4], order) == 3:  # PT_INTERP
            return False
    return True


def find_busybox() -> Path | None:
    """A statically linked busybox (Debian's busybox-static), usable inside the initramfs."""
    for candidate in ("/bin/busybox", "/usr/bin/busybox"):
        p = Path(candidate)
        if p.is_file() and _is_static_elf(p):
            return p
    return None


def ensure_tiny_guest(cache: Path | None = None) -> TinyGuest:
    """Build (once) and return the kernel + initramfs pair."""
    cache = cache or dev_cache()
    root = _fetch_kernel(cache)
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    kernel = kernels[-1]
    initrd = cache / "initrd-busybox.gz"
    stamp = cache / "initrd-busybox.recipe"
    busybox = find_busybox()
    if busybox is None:
        raise RuntimeError("a static busybox is needed: apt-get install busybox-static")
    recipe = INIT_SCRIPT + repr(MODULES) + str(busybox.stat().st_size)
    if not initrd.exists() or not stamp.exists() or stamp.read_text() != recipe:
        build_initramfs(initrd, root / "lib" / "modules", busybox)
        stamp.write_text(recipe)
    return TinyGuest(kernel=kernel, initrd=initrd)


def write_boot_sector_disk(dest: Path, marker: str = BOOTSECTOR_MARKER) -> Path:
    """A 1 MiB raw disk whose MBR prints ``marker`` on COM1 and halts: a BIOS-boot guest.

    Hand-assembled 16-bit code (QEMU's 16550 prints what is written to its data register
    without any port setup):
        mov dx,0x3F8 / mov si,msg / l: lodsb / test al,al / jz h / out dx,al / jmp l /
        h: cli / hlt / jmp h
    """
    msg = (marker + "\r\n").encode() + b"\0"
    code = bytearray()
    code += b"\xba\xf8\x03"  # mov dx, 0x3f8
    msg_addr = 0x7C00 + 3 + 3 + 1 + 2 + 2 + 1 + 2 + 4  # after the code below
    code += b"\xbe" + msg_addr.to_bytes(2, "little")  # mov si, msg
    code += b"\xac"  # l: lodsb
    code += b"\x84\xc0"  # test al, al
    code += b"\x74\x03"  # jz h (skip out + jmp)
    code += b"\xee"  # out dx, al
    code += b"\xeb\xf8"  # jmp l
    code += b"\xfa\xf4\xeb\xfd"  # h: cli; hlt; jmp h
    assert 0x7C00 + len(code) == msg_addr
    sector = bytes(code) + msg
    sector = sector + b"\0" * (510 - len(sector)) + b"\x55\xaa"
    dest.write_bytes(sector + b"\0" * (1024 * 1024 - 512))
    return dest
