"""Render the Toolbox app icon to PNGs and pack them into ``toolbox.icns`` and ``toolbox.ico``.

``python packaging/make_icons.py [--out DIR]`` (default ``resources/app``). The SVG masters in
``resources/app`` are drawn by hand; this script is the only thing that turns them into
bitmaps, so the committed PNG/ICNS/ICO files are reproducible. ICNS and ICO are simple
containers of PNGs, written here in pure Python; Qt (QtSvg) only renders the SVGs.

Framing: macOS expects the tile on Apple's icon grid (824 px of 1024, centred), so the ICNS
gets the master as drawn; Windows and Linux icons use the whole square, so the PNGs and
the ICO get a tighter crop. Sizes of 32 px and below come from ``toolbox-small.svg``.
"""

from __future__ import annotations

import argparse
import hashlib
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP_DIR = ROOT / "resources" / "app"
MASTER = "toolbox.svg"
SMALL = "toolbox-small.svg"
SMALL_MAX = 32  # sizes at or below this render from SMALL

# The PNGs shipped for Qt's window icon and Linux (hicolor sizes), and what ICO/ICNS hold.
PNG_SIZES = (16, 24, 32, 48, 64, 128, 256, 512, 1024)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
# ICNS element types holding PNG data, with their pixel size (the @2x types are 2x).
ICNS_TYPES = (
    ("icp4", 16),
    ("icp5", 32),
    ("ic11", 32),  # 16x16@2x
    ("ic12", 64),  # 32x32@2x
    ("ic07", 128),
    ("ic13", 256),  # 128x128@2x
    ("ic08", 256),
    ("ic14", 512),  # 256x256@2x
    ("ic09", 512),
    ("ic10", 1024),  # 512x512@2x
)
MAC_GRID = (100, 824)  # tile offset and size on the 1024 px macOS grid
FULL_CROP = (80, 864)  # viewBox of the master for full-square (Windows/Linux) icons
STAMP = "icon-sources.sha256"

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Frame(Enum):
    """How the tile sits in the bitmap."""

    MAC_GRID = "mac"  # inset on Apple's grid (ICNS)
    FULL = "full"  # filling the square (ICO, PNGs)


@dataclass(frozen=True)
class IconFile:
    """One file the script writes, relative to the output folder."""

    name: str
    data: bytes


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    if data[:8] != PNG_MAGIC or data[12:16] != b"IHDR":
        raise ValueError("not a PNG image")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def ico_bytes(images: Sequence[bytes]) -> bytes:
    """An ICO file holding the given PNG images (each at most 256 px square).

    Layout: ICONDIR (reserved 0, type 1, count), one 16-byte ICONDIRENTRY per image (a
    width/height of 0 means 256), then the PNG data. Windows reads PNG entries since Vista.
    """
    if not images:
        raise ValueError("an ICO needs at least one image")
    header = struct.pack("<HHH", 0, 1, len(images))
    entries = b""
    offset = len(header) + 16 * len(images)
    for data in images:
        width, height = png_size(data)
        if width > 256 or height > 256:
            raise ValueError(f"ICO images are at most 256 px, got {width}x{height}")
        entries += struct.pack(
            "<BBBBHHII", width % 256, height % 256, 0, 0, 1, 32, len(data), offset
        )
        offset += len(data)
    return header + entries + b"".join(images)


def icns_bytes(elements: Sequence[tuple[str, bytes]]) -> bytes:
    """An ICNS file holding PNG elements, with a table of contents first (as iconutil writes).

    Layout, big-endian: ``icns`` and the file length, then elements of a 4-character type and
    a length that counts its own 8-byte header.
    """
    if not elements:
        raise ValueError("an ICNS needs at least one element")
    body = b""
    toc = b""
    for kind, data in elements:
        code = kind.encode("ascii")
        if len(code) != 4:
            raise ValueError(f"ICNS element types are 4 characters: {kind!r}")
        body += code + struct.pack(">I", 8 + len(data)) + data
        toc += code + struct.pack(">I", 8 + len(data))
    toc_element = b"TOC " + struct.pack(">I", 8 + len(toc)) + toc
    payload = toc_element + body
    return b"icns" + struct.pack(">I", 8 + len(payload)) + payload


def sources_digest(app_dir: Path = APP_DIR) -> str:
    """Hash of what the bitmaps are made from: both SVGs and the size tables."""
    digest = hashlib.sha256()
    for name in (MASTER, SMALL):
        digest.update(name.encode() + b"\0" + (app_dir / name).read_bytes() + b"\0")
    tables = (PNG_SIZES, ICO_SIZES, ICNS_TYPES, SMALL_MAX, MAC_GRID, FULL_CROP)
    digest.update(repr(tables).encode())
    return digest.hexdigest()


def render_png(svg: Path, size: int, frame: Frame, small: bool) -> bytes:
    """Render ``svg`` to a ``size`` px square PNG with Qt's SVG renderer."""
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QRectF
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    if QGuiApplication.instance() is None:  # QImage text rendering wants an app; keep one
        _keep.append(QGuiApplication(sys.argv[:1]))
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise ValueError(f"cannot render {svg}")
    target = QRectF(0, 0, size, size)
    if small and frame is Frame.MAC_GRID:
        inset, tile = (v * size / 1024 for v in MAC_GRID)
        target = QRectF(inset, inset, tile, tile)
    elif not small and frame is Frame.FULL:
        origin, span = FULL_CROP
        renderer.setViewBox(QRectF(origin, origin, span, span))
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(0)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter, target)
    painter.end()
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    if not image.convertToFormat(QImage.Format.Format_ARGB32).save(buffer, "PNG"):
        raise RuntimeError(f"Qt could not encode a {size} px PNG")
    return bytes(QByteArray(buffer.data()).data())


_keep: list[object] = []


def build(app_dir: Path = APP_DIR) -> list[IconFile]:
    """Every file the script writes: the PNGs, ``toolbox.ico``, ``toolbox.icns``, the stamp."""
    cache: dict[tuple[int, Frame], bytes] = {}

    def png(size: int, frame: Frame) -> bytes:
        if (size, frame) not in cache:
            small = size <= SMALL_MAX
            svg = app_dir / (SMALL if small else MASTER)
            cache[size, frame] = render_png(svg, size, frame, small)
        return cache[size, frame]

    files = [IconFile(f"png/toolbox-{s}.png", png(s, Frame.FULL)) for s in PNG_SIZES]
    files.append(IconFile("toolbox.ico", ico_bytes([png(s, Frame.FULL) for s in ICO_SIZES])))
    icns = icns_bytes([(kind, png(size, Frame.MAC_GRID)) for kind, size in ICNS_TYPES])
    files.append(IconFile("toolbox.icns", icns))
    files.append(IconFile(STAMP, (sources_digest(app_dir) + "\n").encode()))
    return files


def write(files: Sequence[IconFile], out: Path) -> list[Path]:
    written = []
    for item in files:
        path = out / item.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(item.data)
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=APP_DIR, help="folder with the SVG masters")
    parser.add_argument("--out", type=Path, help="output folder (default: the --src folder)")
    args = parser.parse_args(argv)
    for path in write(build(args.src), args.out or args.src):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
