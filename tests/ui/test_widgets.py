"""The shared widgets: debounced filter box, engine banner, error dialog."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QWidget

from toolbox.errors import EngineUnreachable
from ui.widgets.banner import EngineBanner
from ui.widgets.error_dialog import ErrorDialog
from ui.widgets.filter_edit import FilterLineEdit


def test_filter_edit_emits_once_after_typing_settles(qtbot) -> None:
    box = FilterLineEdit(delay_ms=50)
    qtbot.addWidget(box)
    seen: list[str] = []
    box.filter_changed.connect(seen.append)
    qtbot.keyClicks(box, "web  ")
    assert seen == []  # nothing while typing
    qtbot.waitUntil(lambda: seen == ["web"], timeout=2000)
    qtbot.keyClick(box, Qt.Key.Key_Escape)
    assert seen == ["web", ""]
    assert box.text() == ""


def test_banner_lost_retry_connected(qtbot) -> None:
    window = QWidget()
    qtbot.addWidget(window)
    banner = EngineBanner(window)
    window.show()
    assert not banner.isVisible()
    banner.show_connecting("unix:///var/run/docker.sock")
    assert banner.isVisible() and not banner.retry_button.isVisible()
    banner.show_lost("tcp://127.0.0.1:2376", "Connection refused", None)
    assert banner.isVisible() and banner.retry_button.isVisible()
    assert banner.label.text().startswith("Cannot reach the Docker engine at tcp://127.0.0.1:2376.")
    assert "Connection refused." in banner.label.text()
    with qtbot.waitSignal(banner.retry_requested, timeout=1000):
        qtbot.mouseClick(banner.retry_button, Qt.MouseButton.LeftButton)
    assert not banner.retry_button.isEnabled()
    assert "Retrying" in banner.label.text()
    banner.show_connected()
    assert not banner.isVisible() and banner.mode == "hidden"


def test_banner_does_not_repeat_what_the_error_already_says(qtbot) -> None:
    banner = EngineBanner()
    qtbot.addWidget(banner)
    engine = "tcp://127.0.0.1:2376, mutual TLS"
    banner.show_lost(engine, f"Cannot reach the Docker engine at {engine}", "Start the machine.")
    text = banner.label.text()
    assert text.count("Cannot reach the Docker engine") == 1
    assert text == f"Cannot reach the Docker engine at {engine}. Start the machine."


def test_filter_edit_is_wide_enough_for_its_placeholder(qtbot) -> None:
    from PySide6.QtWidgets import QHBoxLayout, QToolBar

    window = QWidget()
    qtbot.addWidget(window)
    box = FilterLineEdit("Filter by name, image or ports")
    row = QHBoxLayout(window)
    row.addWidget(QToolBar(), 1)  # a page's toolbar takes the rest of the row
    row.addWidget(box)
    window.resize(400, 40)
    window.show()
    qtbot.waitExposed(window)
    assert box.width() > box.fontMetrics().horizontalAdvance(box.placeholderText())


def test_error_dialog_shows_what_why_hint_and_details(qtbot) -> None:
    err = EngineUnreachable("Connection refused", hint="Start the machine", details="trace\nback")
    dialog = ErrorDialog.from_error(err, what="Stop container <web>")
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.windowTitle() == "Stop container <web>"
    assert "&lt;web&gt;" in dialog.what_label.text()
    assert dialog.why_label.text() == "Connection refused"
    assert dialog.hint_label.text() == "Start the machine"
    assert not dialog.details_view.isVisible()
    qtbot.mouseClick(dialog.details_button, Qt.MouseButton.LeftButton)
    assert dialog.details_view.isVisible()
    assert dialog.details_view.toPlainText() == "trace\nback"
    dialog.copy_report()
    assert QGuiApplication.clipboard().text() == (
        "Stop container <web>\nConnection refused\nStart the machine\ntrace\nback"
    )


def test_command_spans_in_hints_read_as_quotes_not_backticks(qtbot) -> None:
    """The core marks commands with backticks (fine in a terminal); labels show quotes."""
    banner = EngineBanner()
    qtbot.addWidget(banner)
    banner.show_lost("tcp://127.0.0.1:2376", "Connection refused", "Start it (`toolbox start`).")
    assert "“toolbox start”" in banner.label.text()
    assert "`" not in banner.label.text()
    dialog = ErrorDialog("Start failed", "No `x`", "Run `toolbox ls` to list machines.")
    qtbot.addWidget(dialog)
    assert dialog.hint_label.text() == "Run “toolbox ls” to list machines."
    assert dialog.why_label.text() == "No “x”"
