"""The Preferences dialog saves what it shows; the theme applies; Ctrl+, opens it."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QApplication, QMainWindow

from ui.preferences import PreferencesDialog, install_preferences_action
from ui.settings import Preferences
from ui.theme import apply_theme, is_dark


def test_save_writes_every_field(qtbot):
    dialog = PreferencesDialog()
    qtbot.addWidget(dialog)
    dialog.driver.setCurrentIndex(dialog.driver.findData("qemu"))
    dialog.cpus.setValue(4)
    dialog.memory.setValue(4096)
    dialog.disk.setValue(40)
    dialog.start_on_launch.setChecked(False)
    dialog.stop_on_quit.setChecked(True)
    dialog.terminal.setText("xterm")
    dialog.theme.setCurrentIndex(dialog.theme.findData("dark"))
    dialog.notify["container_unhealthy"].setChecked(False)
    with qtbot.waitSignal(dialog.saved) as saved:
        dialog.buttons.button(dialog.buttons.StandardButton.Save).click()
    loaded = Preferences.load()
    assert saved.args[0] == loaded
    assert (loaded.default_driver, loaded.default_cpus, loaded.default_memory_mib) == (
        "qemu",
        4,
        4096,
    )
    assert loaded.default_disk_gib == 40
    assert (loaded.start_on_launch, loaded.stop_on_quit, loaded.terminal) == (False, True, "xterm")
    assert loaded.theme == "dark"
    assert not loaded.notifies("container_unhealthy") and loaded.notifies("container_exit")
    # The dialog reopens with what was saved.
    again = PreferencesDialog()
    qtbot.addWidget(again)
    assert again.edited() == loaded
    apply_theme(QApplication.instance(), "system")  # type: ignore[arg-type]


def test_theme_light_and_dark(qtbot):
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    try:
        assert apply_theme(app, "dark") is Qt.ColorScheme.Dark
        assert is_dark(app.palette()) or app.styleHints().colorScheme() is Qt.ColorScheme.Dark
        assert apply_theme(app, "light") is Qt.ColorScheme.Light
        assert not is_dark(app.palette()) or app.styleHints().colorScheme() is Qt.ColorScheme.Light
    finally:
        apply_theme(app, "system")
        app.setPalette(QPalette())


def test_ctrl_comma_opens_the_dialog(qtbot):
    window = QMainWindow()
    qtbot.addWidget(window)
    action = install_preferences_action(window)
    assert action.shortcut().toString() == "Ctrl+,"
    assert action in [a for m in window.menuBar().actions() if m.menu() for a in m.menu().actions()]
    action.trigger()
    dialogs = [w for w in QApplication.topLevelWidgets() if isinstance(w, PreferencesDialog)]
    assert any(d.isVisible() for d in dialogs)
    for d in dialogs:
        d.reject()
