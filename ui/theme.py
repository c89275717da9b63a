"""Light, dark or the system's colour scheme.

Usage::

    apply_theme(app, "dark")      # "system" | "light" | "dark"

Qt 6.8+ can set the scheme (``QStyleHints.setColorScheme``); older Qt gets a palette for
light/dark (Fusion style), and "system" keeps whatever the platform gives.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette

from ui.settings import THEMES

_SCHEMES = {
    "system": Qt.ColorScheme.Unknown,
    "light": Qt.ColorScheme.Light,
    "dark": Qt.ColorScheme.Dark,
}


def current_scheme() -> Qt.ColorScheme:
    """What the app shows now (the OS's choice under "system")."""
    return QGuiApplication.styleHints().colorScheme()


def apply_theme(app: QGuiApplication, theme: str) -> Qt.ColorScheme:
    """Apply ``theme`` and return the resulting colour scheme."""
    if theme not in THEMES:
        theme = "system"
    hints = app.styleHints()
    if hasattr(hints, "setColorScheme"):
        hints.setColorScheme(_SCHEMES[theme])
        if theme == "system" or hints.colorScheme() == _SCHEMES[theme]:
            return hints.colorScheme()
    # No platform support for forcing a scheme: a palette does it.
    if theme == "system":
        app.setPalette(QPalette())
        return hints.colorScheme()
    app.setPalette(dark_palette() if theme == "dark" else light_palette())
    return _SCHEMES[theme]


def light_palette() -> QPalette:
    return QPalette(QColor("#efefef"))


def dark_palette() -> QPalette:
    palette = QPalette()
    roles = QPalette.ColorRole
    colors = {
        roles.Window: "#2b2b2b",
        roles.WindowText: "#e6e6e6",
        roles.Base: "#1e1e1e",
        roles.AlternateBase: "#262626",
        roles.ToolTipBase: "#2b2b2b",
        roles.ToolTipText: "#e6e6e6",
        roles.Text: "#e6e6e6",
        roles.Button: "#353535",
        roles.ButtonText: "#e6e6e6",
        roles.BrightText: "#ff5555",
        roles.Highlight: "#2f65ca",
        roles.HighlightedText: "#ffffff",
        roles.Link: "#6ea8ff",
        roles.PlaceholderText: "#8a8a8a",
    }
    for role, color in colors.items():
        palette.setColor(role, QColor(color))
    disabled = QPalette.ColorGroup.Disabled
    for role in (roles.Text, roles.ButtonText, roles.WindowText):
        palette.setColor(disabled, role, QColor("#777777"))
    return palette


def is_dark(palette: QPalette) -> bool:
    return palette.color(QPalette.ColorRole.Window).lightness() < 128
