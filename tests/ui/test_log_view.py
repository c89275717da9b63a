"""LogView's drain: chunks of lines per turn, a backlog that keeps the newest lines and says how
many it skipped, and the timer's pace (busy while lines wait, quiet otherwise). The streaming
path against the real engine is in test_containers_page.py."""

from __future__ import annotations

import pytest

from ui.containers import logs
from ui.containers.logs import (
    BACKLOG_LINES,
    BUSY_DRAIN_MS,
    CHUNK_LINES,
    DRAIN_MS,
    LineBuffer,
    LogView,
)


class _NoSession:
    """The drain never talks to the engine; streaming is not started in these tests."""

    def call(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("the drain must not call the engine")


@pytest.fixture
def view(qtbot) -> LogView:
    widget = LogView(_NoSession())  # type: ignore[arg-type]
    qtbot.addWidget(widget)
    widget.resize(800, 400)
    widget.show()
    return widget


def test_backlog_keeps_the_newest_lines_and_counts_the_rest() -> None:
    buffer = LineBuffer(3)
    buffer.push_many(["a", "b", "c", "d"])
    buffer.push("e")
    lines, dropped = buffer.drain(10)
    assert lines == ["c", "d", "e"]
    assert dropped == 2
    assert buffer.drain(10) == ([], 0)


def test_a_turn_appends_chunks_until_its_budget_is_spent(view, monkeypatch) -> None:
    monkeypatch.setattr(logs, "DRAIN_BUDGET_S", 0.0)  # one chunk per turn, whatever the machine
    view.buffer.push_many(f"line {i}" for i in range(3 * CHUNK_LINES))
    view._drain_buffer()
    assert view.appends == 1
    assert view.text.blockCount() == CHUNK_LINES
    assert len(view.buffer) == 2 * CHUNK_LINES
    assert view._drain.isActive() and view._drain.interval() == BUSY_DRAIN_MS
    view._drain_buffer()
    view._drain_buffer()
    assert view.text.toPlainText().splitlines()[-1] == f"line {3 * CHUNK_LINES - 1}"
    assert view.appends == 3 and not len(view.buffer)
    assert not view._drain.isActive()  # nothing streams and nothing waits: the timer stops


def test_a_flood_past_the_backlog_is_skipped_and_said(view) -> None:
    total = BACKLOG_LINES + 1234
    view.buffer.push_many(f"line {i}" for i in range(total))
    for _ in range(total // CHUNK_LINES + 2):
        view._drain_buffer()
    text = view.text.toPlainText().splitlines()
    assert text[0] == "… 1234 lines skipped (too many to show) …"
    assert text[1] == "line 1234" and text[-1] == f"line {total - 1}"
    assert view.appends < total // 100  # chunks, never one append per line


def test_the_status_line_shows_only_when_there_is_something_to_say(view) -> None:
    assert not view.status.isVisible()
    assert view.status.sizeHint().height() > 0  # it would take room if it were shown


def test_a_quiet_stream_drains_at_the_quiet_pace(view) -> None:
    view._follow = object()  # type: ignore[assignment]  # as while a stream is open
    view.buffer.push("hello")
    view._drain_buffer()
    assert view.text.toPlainText() == "hello"
    assert view._drain.isActive() and view._drain.interval() == DRAIN_MS
    view._follow = None


def test_following_stays_at_the_bottom_when_the_view_gets_shorter(view, qtbot) -> None:
    view.buffer.push_many(f"line {i}" for i in range(500))
    view._drain_buffer()
    bar = view.text.verticalScrollBar()
    assert view.follow_box.isChecked() and bar.value() == bar.maximum() > 0
    before = bar.maximum()
    view.show_status("Logs stopped: the engine went away")  # the view gets shorter
    qtbot.waitUntil(lambda: bar.maximum() > before and bar.value() == bar.maximum(), timeout=2000)
    view.follow_box.setChecked(False)
    bar.setValue(0)
    view.buffer.push("one more")
    view._drain_buffer()
    assert bar.value() == 0  # not following: the reader's place is kept
