"""LogView: every line kept, search (count, next/previous, regex, case, invalid patterns),
timestamps, wrap, since, save and copy. The first tests drive the drain and the search with
lines handed to the view's buffer (as the reader thread does); the rest follow a real
container's logs on the harness's dockerd. The 300,000-line flood through the Containers page
is in test_containers_page.py."""

from __future__ import annotations

import datetime as dt
import re
import time
from pathlib import Path

import docker
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QGuiApplication

from tests.ui.conftest import unique
from toolbox.engine.records import LogLine
from toolbox.engine.streams import LogDecoder
from toolbox.errors import ToolboxError
from ui.containers import logs
from ui.containers.logs import (
    BUSY_DRAIN_MS,
    DRAIN_MS,
    SINCE_CHOICES,
    LineBuffer,
    LogView,
    SearchQuery,
    Since,
    _Follow,
    stamp_text,
)

TRAP_LOOP = "trap 'exit 0' TERM; while true; do sleep 0.2; done"
STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}  ")


class _NoEngine:
    """A session for tests that hand lines to the buffer themselves: no stream is started;
    copy and save still get a real task runner."""

    def __init__(self, tasks) -> None:
        self.tasks = tasks

    def call(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("these tests never talk to the engine")


def lines_of(texts, start: dt.datetime | None = None) -> list[LogLine]:
    start = start or dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    return [
        LogLine("stdout", text, start + dt.timedelta(milliseconds=i))
        for i, text in enumerate(texts)
    ]


@pytest.fixture
def offline_view(qtbot, tasks) -> LogView:
    widget = LogView(_NoEngine(tasks))  # type: ignore[arg-type]
    qtbot.addWidget(widget)
    widget.resize(800, 400)
    widget.show()
    return widget


def push(view: LogView, texts) -> None:
    """Hand ``texts`` to the view as a TTY stream read with timestamps would (the bytes, in
    reads of up to 64 KiB), as the reader thread does."""
    if view._feed is None:
        view._feed = _Follow(view.buffer, SINCE_CHOICES[0])
        view._feed.decoder = LogDecoder(tty=True, timestamps=True)
    data = b"".join(
        f"{line.timestamp:%Y-%m-%dT%H:%M:%S.%f}123Z {line.text}\n".encode()
        for line in lines_of(texts)
    )
    for start in range(0, len(data), 65536):
        view.buffer.push(data[start : start + 65536])


def feed(view: LogView, texts) -> None:
    push(view, texts)
    while len(view.buffer):
        view._drain_buffer()


def search_for(qtbot, view: LogView, text: str, regex=False, case=False) -> int:
    view.regex_box.setChecked(regex)
    view.case_box.setChecked(case)
    view.search.setText(text)
    view.update_search()
    qtbot.waitUntil(lambda: not view.searching, timeout=10_000)
    return view.match_count


# -- without an engine -----------------------------------------------------------------------


def test_the_buffer_hands_over_every_byte_in_order() -> None:
    buffer = LineBuffer()
    buffer.push(b"abc")
    buffer.push(b"")
    buffer.push(b"defgh")
    assert len(buffer) == 8
    assert buffer.take(2) == b"ab"  # a read split to what the turn can decode
    assert buffer.take(10) == b"c" and len(buffer) == 5
    assert buffer.take(10) == b"defgh"
    assert buffer.take(10) == b"" and len(buffer) == 0


def test_every_line_of_a_flood_is_kept_and_the_view_follows(offline_view) -> None:
    view = offline_view
    total = 120_000
    push(view, (f"line {i}" for i in range(total)))
    view._drain_buffer()  # one turn decodes for its time budget; the rest waits
    assert 0 < view.line_count() < total
    assert view._drain.isActive() and view._drain.interval() == BUSY_DRAIN_MS
    while len(view.buffer):
        view._drain_buffer()
    assert view.line_count() == total
    assert view.line_text(0) == "line 0" and view.line_text(total - 1) == f"line {total - 1}"
    assert view.store.stamps[1] == lines_of(["a", "b"])[1].timestamp
    assert view.lines_view.at_end() and view.lines_view.top_line() > total - 100
    assert view.appends < total // 100  # a turn per many lines, not per line
    assert not view._drain.isActive()  # nothing streams and nothing waits: the timer stops


def test_in_a_flood_the_view_catches_up_at_its_own_pace(offline_view, monkeypatch) -> None:
    view = offline_view
    monkeypatch.setattr(logs, "REFRESH_S", 3600.0)  # never during this flood
    push(view, ["first"])
    view._drain_buffer()  # nothing else waits: shown at once
    bar = view.lines_view.verticalScrollBar()
    assert view.lines_view.at_end() and bar.maximum() == 0
    view._shown_at = time.perf_counter()
    push(view, (f"line {i}" for i in range(50_000)))
    view._drain_buffer()  # bytes still wait: kept, not shown yet
    kept = view.line_count()
    assert 1 < kept < 50_001 and bar.maximum() == 0
    while len(view.buffer):
        view._drain_buffer()
    assert view.line_count() == 50_001
    assert bar.maximum() > 49_000 and view.lines_view.at_end()  # caught up once it drained
    assert not view._drain.isActive()


def test_a_last_line_without_a_newline_shows_when_the_stream_ends(offline_view) -> None:
    view = offline_view
    push(view, ["whole"])
    view._follow = view._feed  # as while the stream is open
    view.buffer.push(b"2026-01-02T03:04:05.5Z no newline")
    view._drain_buffer()
    assert view.shown_lines() == ["whole"]  # it may go on
    view._follow = None  # the stream ended
    view._drain_buffer()
    assert view.shown_lines() == ["whole", "no newline"]
    assert view._feed is not None and view._feed.finished
    assert not view._drain.isActive()


def test_a_quiet_stream_drains_at_the_quiet_pace(offline_view) -> None:
    view = offline_view
    push(view, ["hello", "there"])
    view._follow = view._feed  # as while the stream is open
    view._drain_buffer()
    assert view.shown_lines() == ["hello", "there"]
    view.buffer.push(b"2026-01-02T03:04:05.5Z hel")  # half a line: it waits for the rest
    view._drain_buffer()
    assert view.line_count() == 2
    view.buffer.push(b"lo\n")
    view._drain_buffer()
    assert view.shown_lines() == ["hello", "there", "hello"]
    assert view._drain.isActive() and view._drain.interval() == DRAIN_MS
    view._follow = None


def test_past_the_cap_the_oldest_lines_go_and_matches_move_with_them(
    qtbot, offline_view, monkeypatch
) -> None:
    monkeypatch.setattr(logs, "MAX_LINES", 1000)
    monkeypatch.setattr(logs, "TRIM_LINES", 100)
    view = offline_view
    feed(view, (f"line {i}" for i in range(1000)))
    assert search_for(qtbot, view, "line 99") == 11  # 99 and 990-999
    feed(view, ["line 1000"])  # past the cap: the oldest 101 lines go
    assert view.line_count() == 900
    assert view.line_text(0) == "line 101"
    qtbot.waitUntil(lambda: not view.searching, timeout=5000)
    assert view.match_count == 10  # line 99 went away
    assert view.find_next()
    assert view.line_text(view.lines_view.selection()[0]) == "line 990"


def test_a_search_over_200000_lines_runs_in_slices_and_keeps_up_with_new_lines(
    qtbot, offline_view
) -> None:
    view = offline_view
    feed(view, (f"GET /items?page={i % 50} 200" for i in range(200_000)))
    view.search.setText("page=7 ")
    started = time.perf_counter()
    view.update_search()
    first_slice = time.perf_counter() - started
    assert view.searching  # one turn did not search everything ...
    assert view.match_label.text().startswith("Searching")
    assert first_slice < 1.0  # ... and gave the event loop back (a sanity bound, not a benchmark)
    with qtbot.waitSignal(view.search_done, timeout=30_000) as done:
        pass
    assert done.args == [4000]
    assert view.match_label.text() == "4,000 matches"
    feed(view, ["GET /items?page=7 200", "other"])  # new lines are searched as they come
    assert view.match_count == 4001


def test_the_search_text_is_a_literal_unless_regex_is_on(qtbot, offline_view) -> None:
    view = offline_view
    feed(view, ["a.c", "abc", "A.C"])
    assert search_for(qtbot, view, "a.c") == 2  # a.c and A.C: literal, any case
    assert search_for(qtbot, view, "a.c", regex=True) == 3
    assert search_for(qtbot, view, "a.c", case=True) == 1
    assert search_for(qtbot, view, "^A", regex=True, case=True) == 1
    assert search_for(qtbot, view, "x*", regex=True) == 0  # empty matches count for nothing
    assert view.match_label.text() == "No matches"


def test_an_invalid_regex_is_said_beside_the_box(qtbot, offline_view) -> None:
    view = offline_view
    feed(view, ["one (two)"])
    view.regex_box.setChecked(True)
    view.search.setText("(two")
    view.update_search()
    assert view.match_label.text().startswith("Invalid regex: missing )")
    assert not view.find_next() and view.lines_view.selection() is None
    view.regex_box.setChecked(False)  # the same text as a literal is fine
    qtbot.waitUntil(lambda: view.match_label.text() == "1 match", timeout=5000)
    with pytest.raises(re.error):
        SearchQuery("(two", regex=True).compile()


def test_since_choices_start_where_they_say() -> None:
    now = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
    by_label = {choice.label: choice for choice in SINCE_CHOICES}
    assert by_label["Last 1,000 lines"].tail == 1000
    assert by_label["Last 1,000 lines"].start(now) is None
    assert by_label["Last 5 minutes"].start(now) == now - dt.timedelta(minutes=5)
    assert by_label["Last hour"].start(now) == now - dt.timedelta(hours=1)
    assert by_label["All"].tail is None and by_label["All"].start(now) is None


def test_wrap_shows_a_long_line_on_several_rows(offline_view) -> None:
    view = offline_view
    view.resize(400, 300)
    long = " ".join(f"word{i}" for i in range(80))
    feed(view, [long, "short"])
    lines = view.lines_view
    assert not lines.wrap and lines.rows_of(0) == 1
    assert lines.horizontalScrollBar().maximum() > 0  # scroll sideways to read it
    view.wrap_box.setChecked(True)
    assert lines.wrap and lines.rows_of(0) > 3 and lines.rows_of(1) == 1
    assert lines.horizontalScrollBar().maximum() == 0
    row = lines.fontMetrics().lineSpacing()
    lines.verticalScrollBar().setValue(0)
    assert lines.line_at(row * 2) == 0  # the third row on screen is still the long line
    assert lines.line_at(row * lines.rows_of(0)) == 1
    view.wrap_box.setChecked(False)
    assert lines.line_at(row) == 1


def test_clicks_select_lines_and_copy_copies_them_as_shown(qtbot, offline_view) -> None:
    view = offline_view
    feed(view, ["zero", "one", "two", "three"])
    view.follow_box.setChecked(False)
    lines = view.lines_view
    lines.verticalScrollBar().setValue(0)
    row = lines.fontMetrics().lineSpacing()
    qtbot.mouseClick(lines.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(20, row + row // 2))
    qtbot.mouseClick(
        lines.viewport(),
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.ShiftModifier,
        QPoint(20, 2 * row + row // 2),
    )
    assert lines.selection() == (1, 2)
    with qtbot.waitSignal(view.copied) as copied:
        view.copy()
    assert copied.args == [2]
    assert QGuiApplication.clipboard().text() == "one\ntwo"
    view.timestamps_box.setChecked(True)  # as shown: with the timestamps
    view.copy()
    copied_lines = QGuiApplication.clipboard().text().splitlines()
    assert [STAMP.sub("", line) for line in copied_lines] == ["one", "two"]
    assert all(STAMP.match(line) for line in copied_lines)
    lines.setFocus()
    qtbot.keyClick(lines, Qt.Key.Key_Down, Qt.KeyboardModifier.ShiftModifier)
    assert lines.selection() == (1, 3)
    lines.clear_selection()
    view.timestamps_box.setChecked(False)
    view.copy()  # nothing selected: everything
    assert QGuiApplication.clipboard().text() == "zero\none\ntwo\nthree"


def test_a_large_copy_is_joined_off_the_gui_thread(qtbot, offline_view) -> None:
    view = offline_view
    total = logs.COPY_SYNC_LINES + 5
    feed(view, (str(i) for i in range(total)))
    view.lines_view.select_all()
    with qtbot.waitSignal(view.copied, timeout=10_000) as copied:
        view.copy()
    assert copied.args == [total]
    text = QGuiApplication.clipboard().text()
    assert text.startswith("0\n1\n") and text.endswith(f"\n{total - 1}")


def test_save_to_a_missing_folder_says_why_and_writes_nothing(qtbot, offline_view, tmp_path):
    view = offline_view
    feed(view, ["kept"])
    target = tmp_path / "no-such-folder" / "out.log"
    with qtbot.waitSignal(view.session.tasks.task_finished, timeout=10_000):
        view.save_to(target)
    assert isinstance(view.last_error, ToolboxError)
    assert view.status.isVisible() and "Cannot save the logs" in view.status.text()
    assert not target.parent.exists()
    folder = tmp_path / "taken"  # a folder where the file should go: refused, and kept
    folder.mkdir()
    (folder / "inside.txt").write_text("mine")
    view.last_error = None
    with qtbot.waitSignal(view.session.tasks.task_finished, timeout=10_000):
        view.save_to(folder)
    assert isinstance(view.last_error, ToolboxError)
    assert (folder / "inside.txt").read_text() == "mine"
    assert not list(tmp_path.glob(".*.part"))  # the partial file is cleaned up


def test_stamps_are_local_time_to_the_millisecond() -> None:
    stamp = dt.datetime(2026, 1, 2, 3, 4, 5, 678_900, tzinfo=dt.UTC)
    local = stamp.astimezone()
    assert stamp_text(stamp) == local.strftime("%Y-%m-%d %H:%M:%S") + ".678"


# -- against the engine ----------------------------------------------------------------------


def run_container(client: docker.DockerClient, script: str) -> str:
    cid = str(
        client.api.create_container("busybox:latest", ["sh", "-c", script], name=unique("logview"))[
            "Id"
        ]
    )
    client.api.start(cid)
    return cid


@pytest.fixture
def live_view(qtbot, session):
    view = LogView(session)
    qtbot.addWidget(view)
    view.resize(900, 500)
    view.show()
    yield view
    view.stop()


def wait_for_line(qtbot, view: LogView, text: str, timeout: int = 15_000) -> None:
    qtbot.waitUntil(lambda: text in view.store.texts, timeout=timeout)


GREEK = (
    "printf 'alpha one\\nBeta two\\nALPHA three\\ngamma alpha alpha\\nlast line\\n'; " + TRAP_LOOP
)


@pytest.mark.engine
def test_match_count_and_next_previous_move_the_selection(qtbot, live_view, docker_client) -> None:
    view = live_view
    view.show_container(run_container(docker_client, GREEK))
    wait_for_line(qtbot, view, "last line")
    assert search_for(qtbot, view, "alpha") == 4  # every occurrence, any case
    assert view.match_label.text() == "4 matches"
    selected = []
    for _ in range(5):  # the fifth wraps around to the first
        assert view.find_next()
        first, last = view.lines_view.selection()
        assert first == last
        selected.append(view.line_text(first))
    assert selected == [
        "alpha one",
        "ALPHA three",
        "gamma alpha alpha",
        "gamma alpha alpha",
        "alpha one",
    ]
    assert view.match_label.text() == "1 of 4"
    assert not view.follow_box.isChecked()  # a match holds the view still
    assert view.find_previous()  # ... and back round to the last one
    assert view.line_text(view.lines_view.selection()[0]) == "gamma alpha alpha"
    assert view.match_label.text() == "4 of 4"
    spans = view.store.line_spans(view.lines_view.selection()[0])
    assert [(s, e) for s, e, _ in spans] == [(6, 11), (12, 17)]
    assert [current for _, _, current in spans] == [False, True]
    # Case and regex options.
    assert search_for(qtbot, view, "alpha", case=True) == 3
    assert search_for(qtbot, view, r"^(alpha|beta)\b", regex=True) == 3
    assert search_for(qtbot, view, r"^(alpha|beta)\b", regex=True, case=True) == 1
    assert view.find_next()
    assert view.line_text(view.lines_view.selection()[0]) == "alpha one"
    # Another line picked by hand: next goes on from there.
    view.lines_view.select_line(2)
    assert search_for(qtbot, view, "alpha") == 4
    assert view.find_next()
    assert view.line_text(view.lines_view.selection()[0]) == "gamma alpha alpha"


@pytest.mark.engine
def test_timestamps_toggle_shows_the_engines_times_without_reading_again(
    qtbot, live_view, docker_client
) -> None:
    view = live_view
    before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    view.show_container(run_container(docker_client, GREEK))
    wait_for_line(qtbot, view, "last line")
    count = view.line_count()
    assert view.line_text(0) == "alpha one"
    view.timestamps_box.setChecked(True)
    first = view.line_text(0)
    assert STAMP.match(first) and first.endswith("  alpha one")
    assert view.line_count() == count and view.streaming  # the same lines, still following
    stamp = view.store.stamps[0]
    assert stamp is not None and before <= stamp <= dt.datetime.now(dt.UTC)
    # Search highlights move past the timestamp.
    assert search_for(qtbot, view, "one") == 1
    ((start, end, _),) = view.store.line_spans(0)
    assert first[start:end] == "one"
    view.timestamps_box.setChecked(False)
    assert view.line_text(0) == "alpha one"


@pytest.mark.engine
def test_wrap_toggle_on_a_real_stream(qtbot, live_view, docker_client) -> None:
    view = live_view
    view.resize(420, 400)
    word_line = " ".join(["wrapme"] * 60)
    view.show_container(run_container(docker_client, f"echo '{word_line}'; echo end; {TRAP_LOOP}"))
    wait_for_line(qtbot, view, "end")
    view.wrap_box.setChecked(True)
    assert view.lines_view.rows_of(0) > 2 and view.lines_view.rows_of(1) == 1
    assert view.lines_view.horizontalScrollBar().maximum() == 0
    assert view.shown_lines() == [word_line, "end"]  # wrapping changes no line
    view.wrap_box.setChecked(False)
    assert view.lines_view.rows_of(0) == 1


@pytest.mark.engine
def test_since_restarts_the_stream_from_that_time(
    qtbot, live_view, docker_client, monkeypatch
) -> None:
    view = live_view
    script = "seq 1 1500; sleep 5; echo late; " + TRAP_LOOP
    short = Since("Last 3 seconds", None, 3)
    monkeypatch.setattr(logs, "SINCE_CHOICES", (*SINCE_CHOICES, short))
    view.since_box.addItem(short.label)
    cid = run_container(docker_client, script)
    qtbot.waitUntil(lambda: b"1500\n" in docker_client.api.logs(cid), timeout=10_000)
    view.show_container(cid)
    wait_for_line(qtbot, view, "late", timeout=20_000)
    # The default: the last 1,000 lines when the stream opened (501..1500), then "late".
    assert view.line_count() == 1001
    assert view.line_text(0) == "501" and view.line_text(-1) == "late"
    # A window shorter than the pause before "late": the engine leaves the numbers out.
    view.since_box.setCurrentIndex(len(SINCE_CHOICES))
    wait_for_line(qtbot, view, "late")
    assert view.shown_lines() == ["late"] and view.streaming
    labels = [choice.label for choice in SINCE_CHOICES]
    view.since_box.setCurrentIndex(labels.index("Last 5 minutes"))  # everything here
    wait_for_line(qtbot, view, "late")
    assert view.streaming and view.line_count() == 1501
    assert view.line_text(0) == "1"
    view.since_box.setCurrentIndex(labels.index("All"))
    wait_for_line(qtbot, view, "late")
    assert view.line_count() == 1501


@pytest.mark.engine
def test_save_writes_every_kept_line_as_shown(qtbot, live_view, docker_client, tmp_path) -> None:
    view = live_view
    view.since_box.setCurrentIndex([c.label for c in SINCE_CHOICES].index("All"))
    view.show_container(run_container(docker_client, "seq 1 3000; echo done; " + TRAP_LOOP))
    wait_for_line(qtbot, view, "done")
    view.timestamps_box.setChecked(True)
    target = tmp_path / "logs.txt"
    with qtbot.waitSignal(view.saved, timeout=10_000) as saved:
        view.save_to(target)
    assert saved.args == [str(target)]
    written = target.read_text(encoding="utf-8").splitlines()
    assert len(written) == 3001
    assert written == view.shown_lines()
    assert all(STAMP.match(line) for line in written)
    assert [STAMP.sub("", line) for line in written] == [*map(str, range(1, 3001)), "done"]
    assert "Saved 3,001 lines" in view.status.text()
    view.timestamps_box.setChecked(False)
    plain = tmp_path / "plain.log"
    with qtbot.waitSignal(view.saved, timeout=10_000):
        view.save_to(plain)
    assert (
        plain.read_text(encoding="utf-8") == "\n".join([*map(str, range(1, 3001)), "done"]) + "\n"
    )
    assert not list(Path(tmp_path).glob(".*.part"))


@pytest.mark.engine
def test_copy_the_selection_from_a_real_stream(qtbot, live_view, docker_client) -> None:
    view = live_view
    view.show_container(run_container(docker_client, GREEK))
    wait_for_line(qtbot, view, "last line")
    assert search_for(qtbot, view, "beta") == 1
    assert view.find_next()
    view.copy()
    assert QGuiApplication.clipboard().text() == "Beta two"
    view.lines_view.select_lines(2, 3)
    view.copy()
    assert QGuiApplication.clipboard().text() == "ALPHA three\ngamma alpha alpha"
