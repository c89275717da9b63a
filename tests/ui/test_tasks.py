"""The task runner: results and errors on the GUI thread, per-key serial queues, cancellation,
and errors shown to the user when nobody handles them."""

from __future__ import annotations

import threading

import pytest
from PySide6.QtCore import QObject, QThread
from PySide6.QtWidgets import QApplication, QWidget

from toolbox.errors import Cancelled, EngineError, ToolboxError
from ui import tasks
from ui.tasks import TaskRunner, on_gui
from ui.widgets.error_dialog import ErrorDialog


@pytest.fixture
def runner(qtbot):
    r = TaskRunner()
    yield r
    r.shutdown(5000)


def test_success_callback_runs_on_gui_thread_and_work_does_not(qtbot, runner) -> None:
    gui = QThread.currentThread()
    seen: dict[str, object] = {}

    def work() -> int:
        seen["worker_is_gui"] = QThread.currentThread() == gui
        return 42

    def done(value: int) -> None:
        seen["value"] = value
        seen["callback_is_gui"] = QThread.currentThread() == gui

    with qtbot.waitSignal(runner.task_finished, timeout=5000):
        runner.run(work, done)
    assert seen == {"worker_is_gui": False, "value": 42, "callback_is_gui": True}


def test_error_callback_gets_toolbox_error(qtbot, runner) -> None:
    errors: list[ToolboxError] = []

    def work() -> None:
        raise EngineError("engine said no", hint="ask again")

    with qtbot.waitSignal(runner.task_finished, timeout=5000):
        runner.run(work, on_error=errors.append)
    assert [(e.message, e.hint) for e in errors] == [("engine said no", "ask again")]


def test_unexpected_exception_is_wrapped_with_traceback(qtbot, runner) -> None:
    errors: list[ToolboxError] = []

    def work() -> None:
        raise ValueError("bad value")

    with qtbot.waitSignal(runner.task_finished, timeout=5000):
        runner.run(work, on_error=errors.append, what="Parse thing")
    assert errors[0].message == "Parse thing failed: bad value"
    assert "ValueError" in (errors[0].details or "")


def test_unhandled_error_is_shown_to_the_user(qtbot, runner) -> None:
    owner = QWidget()
    qtbot.addWidget(owner)
    owner.show()

    def work() -> None:
        raise EngineError("port is already allocated", hint="pick another host port")

    runner.run(work, what="Start container web", owner=owner)

    def dialog() -> ErrorDialog | None:
        found = [w for w in QApplication.topLevelWidgets() if isinstance(w, ErrorDialog)]
        return found[0] if found and found[0].isVisible() else None

    qtbot.waitUntil(lambda: dialog() is not None, timeout=5000)
    shown = dialog()
    assert shown is not None
    assert shown.windowTitle() == "Start container web"
    assert shown.why_label.text() == "port is already allocated"
    assert shown.hint_label.text() == "pick another host port"
    assert not shown.details_button.isVisible()
    shown.close()


def test_cancelled_error_is_not_shown(qtbot, monkeypatch) -> None:
    shown: list[ToolboxError] = []
    runner = TaskRunner(show_errors=lambda e, owner, what: shown.append(e))

    def work() -> None:
        raise Cancelled("stopped")

    with qtbot.waitSignal(runner.task_finished, timeout=5000) as blocker:
        runner.run(work)
    assert isinstance(blocker.args[0].error, Cancelled)
    assert shown == []
    runner.shutdown(5000)


def test_same_key_runs_serially_in_order(qtbot, runner) -> None:
    gate = threading.Event()
    order: list[str] = []
    lock = threading.Lock()
    active = [0]
    max_active = [0]

    def step(name: str, wait: bool = False):
        def work() -> str:
            with lock:
                active[0] += 1
                max_active[0] = max(max_active[0], active[0])
            if wait:
                assert gate.wait(5)
            with lock:
                order.append(name)
                active[0] -= 1
            return name

        return work

    runner.run(step("a", wait=True), key="machine:default")
    runner.run(step("b"), key="machine:default")
    runner.run(step("c"), key="machine:default")
    assert runner.pending("machine:default") == 3
    # Another key is not held up by the blocked queue.
    with qtbot.waitSignal(runner.task_finished, timeout=5000):
        runner.run(step("other"), key="machine:other")
    assert order == ["other"]
    gate.set()
    qtbot.waitUntil(lambda: not runner.busy, timeout=5000)
    assert order == ["other", "a", "b", "c"]
    assert runner.pending("machine:default") == 0


def test_queued_task_cancelled_before_start_never_runs(qtbot, runner) -> None:
    gate = threading.Event()
    ran: list[str] = []
    errors: list[ToolboxError] = []
    runner.run(lambda: gate.wait(5), key="k")
    second = runner.run(lambda: ran.append("second"), on_error=errors.append, key="k")
    second.cancel()
    gate.set()
    qtbot.waitUntil(lambda: second.finished, timeout=5000)
    assert ran == []
    assert isinstance(errors[0], Cancelled)


def test_cancel_event_reaches_running_work(qtbot, runner) -> None:
    started = threading.Event()
    cancel = threading.Event()
    results: list[str] = []

    def work() -> str:
        started.set()
        return "cancelled" if cancel.wait(5) else "timed out"

    task = runner.run(work, results.append, cancel=cancel)
    assert started.wait(5)
    task.cancel()
    qtbot.waitUntil(lambda: task.finished, timeout=5000)
    assert results == ["cancelled"]


def test_callbacks_dropped_when_owner_deleted(qtbot, runner) -> None:
    gate = threading.Event()
    called: list[object] = []
    owner = QObject()
    task = runner.run(lambda: gate.wait(5), called.append, owner=owner)
    owner.deleteLater()
    qtbot.waitUntil(lambda: not __import__("shiboken6").isValid(owner), timeout=5000)
    gate.set()
    qtbot.waitUntil(lambda: task.finished, timeout=5000)
    assert called == []


def test_failing_callback_is_reported_not_raised(qtbot) -> None:
    shown: list[ToolboxError] = []
    runner = TaskRunner(show_errors=lambda e, owner, what: shown.append(e))

    def broken(_value: object) -> None:
        raise RuntimeError("callback bug")

    with qtbot.waitSignal(runner.task_finished, timeout=5000):
        runner.run(lambda: 1, broken, what="Refresh")
    assert "callback bug" in shown[0].message
    runner.shutdown(5000)


def test_busy_changed(qtbot, runner) -> None:
    states: list[bool] = []
    runner.busy_changed.connect(states.append)
    with qtbot.waitSignal(runner.task_finished, timeout=5000):
        runner.run(lambda: None)
    qtbot.waitUntil(lambda: states == [True, False], timeout=5000)


def test_on_gui_delivers_on_gui_thread_and_coalesces(qtbot) -> None:
    gui = QThread.currentThread()
    plain: list[tuple[int, bool]] = []
    latest: list[int] = []
    relay = on_gui(lambda n: plain.append((n, QThread.currentThread() == gui)))
    relay_latest = on_gui(latest.append, coalesce=True)

    def worker() -> None:
        for i in range(100):
            relay(i)
            relay_latest(i)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(5)
    qtbot.waitUntil(lambda: len(plain) == 100 and latest and latest[-1] == 99, timeout=5000)
    assert [n for n, _ in plain] == list(range(100))
    assert all(on_gui_thread for _, on_gui_thread in plain)
    assert len(latest) < 100


def test_as_toolbox_error_keeps_toolbox_errors() -> None:
    err = EngineError("x", hint="y")
    assert tasks.as_toolbox_error(err) is err
