"""Icons in Qt: the committed ICO/ICNS/PNGs read back by Qt's own image plugins, the
rendering script reproduces them, and resources.qt tints and caches icons."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from PySide6.QtCore import QByteArray, QSize
from PySide6.QtGui import QColor, QIcon, QImage, QImageReader
from PySide6.QtSvg import QSvgRenderer

import resources
import resources.qt as rqt
from toolbox.engine.records import ContainerState

ROOT = Path(__file__).resolve().parents[2]


def _make_icons() -> ModuleType:
    path = ROOT / "packaging" / "make_icons.py"
    spec = importlib.util.spec_from_file_location("toolbox_packaging_make_icons_qt", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


icons = _make_icons()


def _frames(path: Path, fmt: bytes) -> list[QImage]:
    reader = QImageReader(str(path), QByteArray(fmt))
    assert reader.canRead(), f"Qt cannot read {path}: {reader.errorString()}"
    frames = []
    for index in range(reader.imageCount()):
        assert reader.jumpToImage(index)
        image = reader.read()
        assert not image.isNull(), reader.errorString()
        frames.append(image)
    return frames


def test_qt_reads_the_ico_with_every_size(qapp) -> None:
    frames = _frames(resources.app_icon_file("ico"), b"ico")
    assert [f.width() for f in frames] == list(icons.ICO_SIZES)
    assert all(f.width() == f.height() and f.hasAlphaChannel() for f in frames)


# Qt's ICNS reader misreads the table of contents of every file, its own included (see the
# next test), warns, and then finds every element by scanning; the warning is no fault here.
ICNS_TOC_WARNING = "QICNSHandler::scanDevice\\(\\): Warning! Table of contents"


@pytest.mark.qt_log_ignore(ICNS_TOC_WARNING)
def test_qt_reads_the_icns_up_to_1024_px(qapp) -> None:
    frames = _frames(resources.app_icon_file("icns"), b"icns")
    assert sorted({f.width() for f in frames}) == sorted({s for _, s in icons.ICNS_TYPES})
    biggest = max(frames, key=QImage.width)
    # Drawn on Apple's grid: the corner is transparent, the centre is the box.
    assert biggest.pixelColor(20, 20).alpha() == 0
    assert biggest.pixelColor(512, 600).alpha() == 255


@pytest.mark.qt_log_ignore(ICNS_TOC_WARNING)
def test_icns_layout_matches_what_qt_itself_writes(qapp, tmp_path: Path) -> None:
    image = QImage(str(resources.app_icon_png(128)))
    assert image.save(str(tmp_path / "qt.icns"), "ICNS")
    by_qt = (tmp_path / "qt.icns").read_bytes()
    png = by_qt[32:]  # Qt's PNG encoding of the image, reused so only the container differs
    assert icons.icns_bytes([("ic07", png)]) == by_qt
    assert [f.width() for f in _frames(tmp_path / "qt.icns", b"icns")] == [128]


def test_pngs_have_their_named_sizes_and_fill_the_square(qapp) -> None:
    for size in resources.APP_ICON_SIZES:
        image = QImage(str(resources.app_icon_png(size)))
        assert (image.width(), image.height()) == (size, size)
        mid_left = image.pixelColor(max(1, size * 6 // 100), size // 2)
        assert mid_left.alpha() > 200, f"{size} px: the tile should reach the edge"


def _mean_difference(a: QImage, b: QImage) -> float:
    a = a.convertToFormat(QImage.Format.Format_ARGB32)
    b = b.convertToFormat(QImage.Format.Format_ARGB32)
    assert a.size() == b.size()
    total, count = 0, 0
    step = max(1, a.width() // 64)
    for y in range(0, a.height(), step):
        for x in range(0, a.width(), step):
            ca, cb = a.pixelColor(x, y), b.pixelColor(x, y)
            total += sum(
                abs(p - q)
                for p, q in zip(ca.getRgb(), cb.getRgb(), strict=True)  # type: ignore[arg-type]
            )
            count += 4
    return total / count


def test_make_icons_reproduces_the_committed_files(qapp, tmp_path: Path) -> None:
    written = icons.write(icons.build(), tmp_path)
    committed = ROOT / "resources" / "app"
    names = sorted(p.relative_to(tmp_path).as_posix() for p in written)
    assert names == sorted(
        p.relative_to(committed).as_posix()
        for p in committed.rglob("*")
        if p.is_file() and p.suffix != ".svg"
    )
    assert (tmp_path / icons.STAMP).read_text() == (committed / icons.STAMP).read_text()
    for size in resources.APP_ICON_SIZES:
        fresh = QImage(str(tmp_path / "png" / f"toolbox-{size}.png"))
        kept = QImage(str(committed / "png" / f"toolbox-{size}.png"))
        assert _mean_difference(fresh, kept) < 1.0, f"{size} px differs: run make_icons.py"


def test_svgs_are_valid(qapp) -> None:
    for path in resources.data_files():
        if path.suffix == ".svg":
            assert QSvgRenderer(str(path)).isValid(), path


def _opaque_colors(icon: QIcon, size: int, mode: QIcon.Mode = QIcon.Mode.Normal) -> set[str]:
    image = icon.pixmap(QSize(size, size), mode).toImage()
    image = image.convertToFormat(QImage.Format.Format_ARGB32)
    return {
        image.pixelColor(x, y).name()
        for y in range(image.height())
        for x in range(image.width())
        if image.pixelColor(x, y).alpha() == 255
    }


def test_action_icons_take_the_requested_or_palette_colour(qapp) -> None:
    red = rqt.icon("stop", "#ff0000")
    assert _opaque_colors(red, 24) == {"#ff0000"}
    assert rqt.icon("stop", QColor("#ff0000")) is red  # cached
    palette_text, disabled_text = rqt._palette_colors()
    default = rqt.icon("start")
    assert _opaque_colors(default, 24) == {palette_text}
    assert _opaque_colors(default, 24, QIcon.Mode.Disabled) == {disabled_text}
    for name in resources.ACTION_ICONS:
        drawn = rqt.icon(name, "#123456")
        assert not drawn.isNull()
        assert _opaque_colors(drawn, 32) == {"#123456"}, name
    with pytest.raises(resources.ResourceMissing):
        rqt.icon("no-such-icon")


def test_state_icons_keep_their_colours(qapp) -> None:
    running = _opaque_colors(rqt.state_icon(ContainerState.RUNNING), 32)
    stopped = _opaque_colors(rqt.state_icon("exited"), 32)
    failed = _opaque_colors(rqt.state_icon(resources.StateTone.ERROR), 32)
    assert "#2da44e" in running and "#8c959f" in stopped and "#cf222e" in failed
    assert rqt.state_icon("running") is rqt.state_icon(ContainerState.RUNNING)


def test_app_icon_offers_every_size(qapp) -> None:
    icon = rqt.app_icon()
    assert {s.width() for s in icon.availableSizes()} == set(resources.APP_ICON_SIZES)
    assert icon.pixmap(QSize(64, 64)).toImage().pixelColor(32, 32).alpha() == 255


def test_the_app_window_gets_the_toolbox_icon(tmp_path: Path) -> None:
    """ui/app.py sets the app icon at start (a fresh process: main() owns its QApplication)."""
    code = (
        "from ui.app import main\n"
        "from PySide6.QtWidgets import QApplication\n"
        "assert main([]) == 0\n"
        "sizes = QApplication.instance().windowIcon().availableSizes()\n"
        "print('icon-sizes', sorted(s.width() for s in sizes))\n"
    )
    env = {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "TOOLBOX_EXIT_AFTER_PAINT": "1",
        "TOOLBOX_HOME": str(tmp_path),
    }
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"icon-sizes {sorted(resources.APP_ICON_SIZES)}" in proc.stdout.splitlines()
