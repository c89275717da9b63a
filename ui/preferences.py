"""The Preferences dialog: machine defaults, launch/quit behaviour, terminal, notifications and
theme. Save writes ``ui.settings.Preferences`` and applies the theme.

Usage::

    dialog = PreferencesDialog(window)
    dialog.saved.connect(...)            # Preferences
    dialog.open()
    install_preferences_action(window)   # a "Preferences…" entry with Ctrl+, in the menu bar
"""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QLineEdit,
    QMainWindow,
    QMenu,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from toolbox.drivers.registry import DRIVER_NAMES
from ui.settings import NOTIFICATION_KINDS, THEMES, Preferences
from ui.theme import apply_theme

_KIND_LABELS = {
    "container_exit": "A container exits with an error",
    "container_unhealthy": "A container turns unhealthy",
    "machine_stopped": "A machine stops on its own",
    "engine_lost": "The engine connection is lost",
}


class PreferencesDialog(QDialog):
    """Signals: saved(Preferences)."""

    saved = Signal(object)

    def __init__(self, parent: QWidget | None = None, prefs: Preferences | None = None):
        super().__init__(parent)
        self.setWindowTitle("Preferences")
        self.prefs = prefs or Preferences.load()
        p = self.prefs
        layout = QVBoxLayout(self)

        machines = QGroupBox("New machines")
        form = QFormLayout(machines)
        self.driver = QComboBox()
        self.driver.addItem("Automatic", "")
        for name in DRIVER_NAMES:
            self.driver.addItem({"qemu": "QEMU", "virtualbox": "VirtualBox"}.get(name, name), name)
        self.driver.setCurrentIndex(max(0, self.driver.findData(p.default_driver)))
        self.cpus = _spin(1, 64, p.default_cpus)
        self.memory = _spin(512, 262_144, p.default_memory_mib, " MiB", 256)
        self.disk = _spin(4, 4096, p.default_disk_gib, " GiB")
        form.addRow("Hypervisor:", self.driver)
        form.addRow("CPUs:", self.cpus)
        form.addRow("Memory:", self.memory)
        form.addRow("Disk:", self.disk)
        layout.addWidget(machines)

        general = QGroupBox("General")
        form = QFormLayout(general)
        self.start_on_launch = QCheckBox("Start the default machine when Toolbox opens")
        self.start_on_launch.setChecked(p.start_on_launch)
        self.stop_on_quit = QCheckBox("Stop running machines when Toolbox quits")
        self.stop_on_quit.setChecked(p.stop_on_quit)
        self.terminal = QLineEdit(p.terminal)
        self.terminal.setPlaceholderText("The system's default terminal")
        self.theme = QComboBox()
        for name in THEMES:
            self.theme.addItem(name.capitalize(), name)
        self.theme.setCurrentIndex(max(0, self.theme.findData(p.theme)))
        form.addRow(self.start_on_launch)
        form.addRow(self.stop_on_quit)
        form.addRow("Terminal application:", self.terminal)
        form.addRow("Theme:", self.theme)
        layout.addWidget(general)

        notes = QGroupBox("Notify me when")
        box = QVBoxLayout(notes)
        self.notify: dict[str, QCheckBox] = {}
        for kind in NOTIFICATION_KINDS:
            check = QCheckBox(_KIND_LABELS.get(kind, kind))
            check.setChecked(p.notifies(kind))
            self.notify[kind] = check
            box.addWidget(check)
        layout.addWidget(notes)

        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.accepted.connect(self.save)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)

    def edited(self) -> Preferences:
        """The preferences as the form shows them."""
        values: dict[str, object] = {
            "default_driver": str(self.driver.currentData() or ""),
            "default_cpus": self.cpus.value(),
            "default_memory_mib": self.memory.value(),
            "default_disk_gib": self.disk.value(),
            "start_on_launch": self.start_on_launch.isChecked(),
            "stop_on_quit": self.stop_on_quit.isChecked(),
            "terminal": self.terminal.text().strip(),
            "theme": str(self.theme.currentData() or "system"),
        }
        for kind, check in self.notify.items():
            values[f"notify_{kind}"] = check.isChecked()
        return replace(self.prefs, **values)  # type: ignore[arg-type]

    def save(self) -> None:
        prefs = self.edited()
        prefs.save()
        self.prefs = prefs
        app = QApplication.instance()
        if isinstance(app, QApplication):
            apply_theme(app, prefs.theme)
        self.saved.emit(prefs)
        self.accept()


def _spin(low: int, high: int, value: int, suffix: str = "", step: int = 1) -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(low, high)
    spin.setSingleStep(step)
    spin.setValue(max(low, min(high, value)))
    spin.setSuffix(suffix)
    return spin


def install_preferences_action(window: QMainWindow) -> QAction:
    """Add "Preferences…" (Ctrl+,) to the window's menu bar (a Toolbox/Edit menu)."""
    bar = window.menuBar()
    menu = next(
        (a.menu() for a in bar.actions() if a.menu() is not None and a.text().replace("&", "")
         in ("Edit", "Toolbox", "File")),
        None,
    )  # fmt: skip
    if menu is None:
        menu = bar.addMenu("&Edit")
    action = QAction("Preferences…", window)
    action.setObjectName("preferences")
    action.setShortcut(QKeySequence("Ctrl+,"))
    action.setMenuRole(QAction.MenuRole.PreferencesRole)
    action.triggered.connect(lambda: open_preferences(window))
    if isinstance(menu, QMenu):
        menu.addAction(action)
    window.addAction(action)
    return action


def open_preferences(window: QWidget) -> PreferencesDialog:
    dialog = PreferencesDialog(window)
    dialog.setModal(True)
    dialog.show()
    _open_dialogs.append(dialog)
    dialog.finished.connect(lambda _r: _open_dialogs.remove(dialog))
    return dialog


_open_dialogs: list[PreferencesDialog] = []
