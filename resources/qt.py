"""Qt icons from Toolbox's resources: tinted toolbar icons, state dots and the app icon.

Toolbar SVGs draw in ``currentColor``; ``icon()`` substitutes the palette's button-text
colour (and its disabled colour for the disabled mode), so they read on light and dark
themes. Icons are rendered once per name and colour and cached; call from the GUI thread.
"""

from __future__ import annotations

import sys
from enum import Enum

from PySide6.QtCore import QByteArray, QRectF, QSize
from PySide6.QtGui import QColor, QGuiApplication, QIcon, QImage, QPainter, QPalette, QPixmap

import resources
from resources import StateTone

# Pixel sizes rendered for each icon: toolbar, menu and table sizes at 1x and 2x.
RENDER_SIZES = (16, 20, 24, 32, 40, 48, 64)

_cache: dict[tuple[str, str, str], QIcon] = {}


def _palette_colors() -> tuple[str, str]:
    """The button-text colours (normal, disabled) of the running app, as #rrggbb."""
    app = QGuiApplication.instance()
    palette = QGuiApplication.palette() if app is not None else QPalette()
    normal = palette.color(QPalette.ColorGroup.Active, QPalette.ColorRole.ButtonText)
    disabled = palette.color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.ButtonText)
    return normal.name(), disabled.name()


def _render(svg: bytes, size: int) -> QPixmap:
    from PySide6.QtSvg import QSvgRenderer  # here, so app_icon() at start-up does not load it

    renderer = QSvgRenderer(QByteArray(svg))
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(0)  # transparent
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter, QRectF(0, 0, size, size))
    painter.end()
    return QPixmap.fromImage(image)


def _svg_icon(svg: str, colors: tuple[str, str] | None) -> QIcon:
    result = QIcon()
    modes = [(QIcon.Mode.Normal, colors[0] if colors else None)]
    if colors:
        modes.append((QIcon.Mode.Disabled, colors[1]))
    for mode, color in modes:
        data = (svg.replace("currentColor", color) if color else svg).encode("utf-8")
        for size in RENDER_SIZES:
            result.addPixmap(_render(data, size), mode, QIcon.State.Off)
    return result


def icon(name: str, color: QColor | str | None = None) -> QIcon:
    """A toolbar icon (``resources.ACTION_ICONS``) in ``color``, or the palette's text colour."""
    normal, disabled = _palette_colors()
    if color is not None:
        normal = QColor(color).name()
    key = (name, normal, disabled)
    if key not in _cache:
        svg = resources.icon_path(name).read_text(encoding="utf-8")
        _cache[key] = _svg_icon(svg, (normal, disabled))
    return _cache[key]


def state_icon(state: Enum | str | StateTone) -> QIcon:
    """A coloured dot for a container, machine or VM state (see ``resources.state_tone``)."""
    tone = state if isinstance(state, StateTone) else resources.state_tone(state)
    key = (f"state-{tone.value}", "", "")
    if key not in _cache:
        svg = resources.state_icon_path(tone).read_text(encoding="utf-8")
        _cache[key] = _svg_icon(svg, None)
    return _cache[key]


def app_icon() -> QIcon:
    """The Toolbox app icon for windows and the tray: the ICNS on macOS (drawn on Apple's
    icon grid, like the Dock icon of the bundle), the full-square PNGs elsewhere."""
    key = ("app", sys.platform, "")
    if key not in _cache:
        result = QIcon()
        if sys.platform == "darwin":
            result.addFile(str(resources.app_icon_file("icns")))
        else:
            for size in resources.APP_ICON_SIZES:
                result.addFile(str(resources.app_icon_png(size)), QSize(size, size))
        _cache[key] = result
    return _cache[key]
