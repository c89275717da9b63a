"""Stream decoders without an engine: log frames and JSON messages split at any byte, and
pull/push progress aggregation over a message sequence recorded from a real pull."""

from __future__ import annotations

import itertools
import json
import struct

import pytest
import urllib3
from hypothesis import given
from hypothesis import strategies as st

from toolbox.engine.streams import (
    ChunkedDecoder,
    FrameDecoder,
    JSONStreamDecoder,
    LogDecoder,
    ProgressTracker,
)


def _frame(stream: int, payload: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(payload)) + payload


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in points:
        pieces.append(data[last:p])
        last = p
    pieces.append(data[last:])
    return pieces


_line_text = st.text(
    st.characters(blacklist_characters="\n\r", blacklist_categories=("Cs",)), max_size=20
)


@given(
    st.lists(st.tuples(st.sampled_from([1, 2]), _line_text), max_size=15),
    st.lists(st.integers(0, 10_000), max_size=8),
    st.integers(1, 7),
)
def test_multiplexed_logs_survive_any_split(lines, cuts, frame_size) -> None:
    # The engine may cut one line across frames, and reads may cut frames anywhere.
    stdout = "".join(t + "\n" for s, t in lines if s == 1).encode()
    stderr = "".join(t + "\n" for s, t in lines if s == 2).encode()
    frames = b""
    for stream, data in ((1, stdout), (2, stderr)):
        for i in range(0, len(data), frame_size):
            frames += _frame(stream, data[i : i + frame_size])
    decoder = LogDecoder(tty=False)
    out = []
    for piece in _split(frames, cuts):
        out.extend(decoder.feed(piece))
    out.extend(decoder.finish())
    assert [x.text for x in out if x.stream == "stdout"] == [t for s, t in lines if s == 1]
    assert [x.text for x in out if x.stream == "stderr"] == [t for s, t in lines if s == 2]


@given(st.lists(_line_text, max_size=15), st.lists(st.integers(0, 10_000), max_size=8))
def test_tty_logs_survive_any_split_and_drop_carriage_returns(lines, cuts) -> None:
    data = "".join(t + "\r\n" for t in lines).encode()
    decoder = LogDecoder(tty=True)
    out = []
    for piece in _split(data, cuts):
        out.extend(decoder.feed(piece))
    out.extend(decoder.finish())
    assert [x.text for x in out] == lines


def test_log_timestamps_and_trailing_partial_line() -> None:
    decoder = LogDecoder(tty=False, timestamps=True)
    data = _frame(1, b"2025-06-01T12:00:00.123456789Z hello\n2025-06-01T12:00:01Z no newline")
    lines = decoder.feed(data) + decoder.finish()
    assert [(x.text, x.timestamp.isoformat() if x.timestamp else None) for x in lines] == [
        ("hello", "2025-06-01T12:00:00.123456+00:00"),
        ("no newline", "2025-06-01T12:00:01+00:00"),
    ]
    multibyte = LogDecoder(tty=True)
    encoded = "é€\n".encode()
    assert multibyte.feed(encoded[:1]) == [] and multibyte.feed(encoded[1:])[0].text == "é€"


@given(st.lists(st.binary(max_size=30), max_size=10), st.lists(st.integers(0, 1000), max_size=6))
def test_frame_decoder_strips_headers_at_any_split(payloads, cuts) -> None:
    data = b"".join(_frame(1 + i % 2, p) for i, p in enumerate(payloads))
    decoder = FrameDecoder()
    assert b"".join(decoder.feed(piece) for piece in _split(data, cuts)) == b"".join(payloads)


_json_values = st.dictionaries(
    st.text(max_size=5),
    st.one_of(st.integers(), st.text(max_size=10), st.booleans(), st.none()),
    max_size=4,
)


@given(
    st.lists(_json_values, max_size=10), st.lists(st.integers(0, 5000), max_size=8), st.booleans()
)
def test_json_stream_survives_any_split(messages, cuts, crlf) -> None:
    end = "\r\n" if crlf else "\n"
    data = "".join(json.dumps(m) + end for m in messages).encode()
    decoder = JSONStreamDecoder()
    out = []
    for piece in _split(data, cuts):
        out.extend(decoder.feed(piece))
    out.extend(decoder.finish())
    assert out == messages


def test_json_stream_handles_concatenated_objects_and_junk() -> None:
    decoder = JSONStreamDecoder()
    assert decoder.feed(b'{"a":1}{"b":2}\n<html>oops</html>\n{"c":3}\n') == [
        {"a": 1},
        {"b": 2},
        {"c": 3},
    ]


# A pull of a two-layer image, shaped like docker 28's messages (one layer already present).
PULL = [
    {"status": "Pulling from team/app", "id": "v1"},
    {"status": "Already exists", "id": "aaa", "progressDetail": {}},
    {"status": "Pulling fs layer", "id": "bbb", "progressDetail": {}},
    {"status": "Pulling fs layer", "id": "ccc", "progressDetail": {}},
    {"status": "Downloading", "id": "bbb", "progressDetail": {"current": 500, "total": 1000}},
    {"status": "Downloading", "id": "ccc", "progressDetail": {"current": 1000, "total": 3000}},
    {"status": "Downloading", "id": "bbb", "progressDetail": {"current": 1000, "total": 1000}},
    {"status": "Verifying Checksum", "id": "bbb", "progressDetail": {}},
    {"status": "Download complete", "id": "bbb", "progressDetail": {}},
    {"status": "Extracting", "id": "bbb", "progressDetail": {"current": 500, "total": 1000}},
    {"status": "Downloading", "id": "ccc", "progressDetail": {"current": 3000, "total": 3000}},
    {"status": "Download complete", "id": "ccc", "progressDetail": {}},
    {"status": "Pull complete", "id": "bbb", "progressDetail": {}},
    {"status": "Extracting", "id": "ccc", "progressDetail": {"current": 3000, "total": 3000}},
    {"status": "Pull complete", "id": "ccc", "progressDetail": {}},
    {"status": "Digest: sha256:" + "d" * 64},
    {"status": "Status: Downloaded newer image for 127.0.0.1:5000/team/app:v1"},
]


def test_pull_progress_is_bytes_weighted_and_monotonic() -> None:
    tracker = ProgressTracker()
    reports = [tracker.feed(m) for m in PULL]
    fractions = [r.fraction for r in reports]
    assert fractions[:4] == [None] * 4  # no byte counts yet
    # bbb: 500 of 2000 (download + extraction); ccc not known yet.
    assert fractions[4] == 500 / 2000
    # ccc became known: (500 + 1000) / (2000 + 6000) is lower, so the last value holds.
    assert fractions[5] == 500 / 2000
    assert fractions[9] == (1000 + 500 + 1000) / 8000
    assert fractions[14] == 1.0
    assert all(a <= b for a, b in itertools.pairwise(fractions[4:]))
    assert reports[-1].layers["bbb"].status == "Pull complete"
    assert reports[-1].layers["aaa"].total == 0 and not reports[-1].done
    done = tracker.finish()
    assert done.done and done.fraction == 1.0
    assert tracker.digest == "sha256:" + "d" * 64
    assert done.status.startswith("Status: Downloaded newer image")


def test_pull_of_present_layers_only_is_unknown_until_done() -> None:
    tracker = ProgressTracker()
    report = tracker.feed({"status": "Already exists", "id": "aaa"})
    assert report.fraction is None
    assert tracker.finish().fraction == 1.0


def test_push_progress_and_errors() -> None:
    tracker = ProgressTracker(push=True)
    tracker.feed({"status": "The push refers to repository [127.0.0.1:5000/a]"})
    tracker.feed({"status": "Preparing", "id": "l1"})
    half = tracker.feed(
        {"status": "Pushing", "id": "l1", "progressDetail": {"current": 50, "total": 100}}
    )
    assert half.fraction == 0.5
    assert tracker.feed({"status": "Pushed", "id": "l1"}).fraction == 1.0
    tracker.feed(
        {
            "status": "v1: digest: sha256:abc size: 527",
            "aux": {"Tag": "v1", "Digest": "sha256:abc", "Size": 527},
        }
    )
    assert tracker.digest == "sha256:abc"
    failing = ProgressTracker()
    failing.feed({"errorDetail": {"message": "manifest unknown"}, "error": "manifest unknown"})
    assert failing.error == "manifest unknown"


@given(
    st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                "status": st.sampled_from(
                    ["Downloading", "Extracting", "Pull complete", "Waiting", "Pushing", "x"]
                ),
                "id": st.sampled_from(["a", "b", "c"]),
                "progressDetail": st.fixed_dictionaries(
                    {}, optional={"current": st.integers(-5, 5000), "total": st.integers(-5, 5000)}
                ),
            },
        ),
        max_size=30,
    )
)
def test_progress_never_goes_backwards_or_past_one(messages) -> None:
    tracker = ProgressTracker()
    last = 0.0
    for m in messages:
        fraction = tracker.feed(m).fraction
        if fraction is not None:
            assert last <= fraction <= 1.0
            last = fraction
    assert tracker.finish().fraction == 1.0


def _chunked(pieces: list[bytes], extension: bool, trailer: bool) -> bytes:
    body = b"".join(
        f"{len(p):x}{';x=1' if extension else ''}\r\n".encode() + p + b"\r\n" for p in pieces if p
    )
    return body + b"0\r\n" + (b"X-Trailer: yes\r\n" if trailer else b"") + b"\r\n"


@given(
    pieces=st.lists(st.binary(max_size=300), max_size=12),
    cuts=st.lists(st.integers(min_value=0), max_size=25),
    extension=st.booleans(),
    trailer=st.booleans(),
)
def test_chunked_decoder_reassembles_any_split(
    pieces: list[bytes], cuts: list[int], extension: bool, trailer: bool
) -> None:
    """HTTP chunked coding read in blocks of any size (the log reader reads whatever has
    arrived) gives back exactly the payload, and ends after the last chunk's trailer."""
    decoder = ChunkedDecoder()
    out = b""
    for block in _split(_chunked(pieces, extension, trailer), cuts):
        out += decoder.feed(block)
    assert out == b"".join(pieces)
    assert decoder.done


def test_chunked_decoder_waits_for_more_and_rejects_garbage() -> None:
    decoder = ChunkedDecoder()
    assert decoder.feed(b"5\r\nhel") == b"hel"
    assert decoder.feed(b"lo\r") == b"lo"
    assert not decoder.done
    assert decoder.feed(b"\n0\r\n\r\n") == b""
    assert decoder.done
    with pytest.raises(urllib3.exceptions.ProtocolError):
        ChunkedDecoder().feed(b"zz\r\n")
    with pytest.raises(urllib3.exceptions.ProtocolError):
        ChunkedDecoder().feed(b"2\r\nabXY")
