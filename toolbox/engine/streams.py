"""Reading the engine's long-lived HTTP streams: JSON message streams (events, pull, push),
multiplexed or raw log streams, and closing any of them promptly from another thread.

The decoders are pure (bytes in, records out) so they are tested without an engine; the
stream classes own one ``requests`` response each.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import requests
import urllib3

from toolbox.engine.records import LayerProgress, LogLine, PullProgress, parse_timestamp

STDOUT, STDERR = "stdout", "stderr"
_FRAME_HEADER = struct.Struct(">BxxxL")
_STREAM_NAMES = {0: STDOUT, 1: STDOUT, 2: STDERR}
READ_SIZE = 65536


# --------------------------------------------------------------------------------------
# Sockets under a requests response


def response_socket(response: requests.Response) -> socket.socket | None:
    """The socket a streamed response reads from (plain, unix or TLS), or None once closed."""
    try:
        fp = response.raw._fp.fp  # http.client's buffered reader over socket.makefile()
    except AttributeError:
        return None
    if fp is None:
        return None
    raw = getattr(fp, "raw", fp)
    sock = getattr(raw, "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


def shutdown_response(response: requests.Response) -> None:
    """Make a reader blocked on ``response`` in another thread return now.

    ``shutdown`` wakes a blocked ``recv`` at once (``close`` alone does not). The plain
    socket method is used even on TLS sockets, so the reader's TLS object stays intact and
    fails cleanly instead of crashing on a half-torn-down object.
    """
    sock = response_socket(response)
    if sock is None:
        return
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # already closed or never connected


def iter_response_bytes(response: requests.Response, size: int = READ_SIZE) -> Iterator[bytes]:
    """Bytes of a streamed response as they arrive.

    A chunked response (every streaming endpoint of the engine) is read in blocks of whatever
    has arrived, up to ``size``, and de-chunked here in one pass per block. urllib3 would
    yield each HTTP chunk on its own, and in a log flood the engine writes one chunk per line:
    200,000 lines cost the reader thread seconds of Python, held against the GUI thread.
    """
    reader = _buffered_reader(response)
    if reader is None or not getattr(response.raw, "chunked", False):
        yield from response.raw.stream(size, decode_content=False)
        return
    decoder = ChunkedDecoder()
    while not decoder.done:
        block = reader.read1(size)
        if not block:  # the loop runs only while a chunk is still expected
            raise urllib3.exceptions.ProtocolError("stream ended inside a chunk")
        payload = decoder.feed(block)
        if payload:
            yield payload


def _buffered_reader(response: requests.Response) -> Any:
    """http.client's buffered reader under ``response`` when nothing of the body has been
    read yet (reading from it directly bypasses http.client's own chunk parsing), else None."""
    raw = response.raw
    fp = getattr(getattr(raw, "_fp", None), "fp", None)
    if fp is None or not hasattr(fp, "read1"):
        return None
    if getattr(raw, "_fp_bytes_read", 0) or getattr(raw._fp, "chunk_left", None) is not None:
        return None
    return fp


class ChunkedDecoder:
    """HTTP/1.1 chunked transfer coding, bytes in any split, payload out; ``done`` after
    the last (zero-size) chunk and its trailer."""

    _SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)

    def __init__(self) -> None:
        self._state = self._SIZE
        self._buffer = b""
        self._left = 0

    @property
    def done(self) -> bool:
        return self._state == self._DONE

    def feed(self, data: bytes) -> bytes:
        out: list[bytes] = []
        buf = self._buffer + data if self._buffer else data
        pos = 0
        end = len(buf)
        find = buf.find
        while pos < end and self._state != self._DONE:
            if self._state == self._SIZE:
                # Whole chunks, one after another, in a tight loop: a log flood is a chunk per
                # line, de-chunked on the reader thread while it holds the GIL. Anything else
                # (a split chunk, extensions, the last chunk, garbage) goes the general way.
                while True:
                    eol = find(b"\r\n", pos)
                    if eol < 0:
                        break
                    try:
                        size = int(buf[pos:eol], 16)
                    except ValueError:
                        break
                    stop = eol + 2 + size
                    if size <= 0 or stop + 2 > end or buf[stop : stop + 2] != b"\r\n":
                        break
                    out.append(buf[eol + 2 : stop])
                    pos = stop + 2
                if pos >= end:
                    break
                eol = find(b"\r\n", pos)
                if eol < 0:
                    break
                line = buf[pos:eol].split(b";", 1)[0].strip()
                try:
                    self._left = int(line, 16)
                except ValueError as exc:
                    raise urllib3.exceptions.ProtocolError(f"bad chunk size {line!r}") from exc
                pos = eol + 2
                self._state = self._DATA if self._left else self._TRAILER
            elif self._state == self._DATA:
                take = min(self._left, end - pos)
                out.append(buf[pos : pos + take])
                pos += take
                self._left -= take
                if not self._left:
                    self._state = self._DATA_END
            elif self._state == self._DATA_END:
                if end - pos < 2:
                    break
                if buf[pos : pos + 2] != b"\r\n":
                    raise urllib3.exceptions.ProtocolError("chunk not followed by CRLF")
                pos += 2
                self._state = self._SIZE
            else:  # trailer: header lines, ended by an empty line
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    break
                self._state = self._DONE if eol == pos else self._TRAILER
                pos = eol + 2
        self._buffer = buf[pos:] if self._state != self._DONE else b""
        return b"".join(out)


# Errors a read raises when the connection drops or is shut down under it.
STREAM_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    urllib3.exceptions.HTTPError,
    requests.exceptions.RequestException,
    ValueError,  # http.client on a closed file: "I/O operation on closed file"
    AttributeError,  # http.client when its fp was set to None by a concurrent close
)


class ClosableStream:
    """A streamed response that another thread may ``close()`` at any time."""

    def __init__(self, response: requests.Response):
        self._response = response
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._reading = False
        self._released = False

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called (by anyone)."""
        return self._closed.is_set()

    def close(self) -> None:
        """End the stream; a reader in another thread stops within milliseconds."""
        self._closed.set()
        shutdown_response(self._response)
        with self._lock:
            reading = self._reading
        # A reader releases the response itself when its read fails; releasing it under the
        # reader's feet would race with http.client's own cleanup.
        if not reading:
            self._release()

    def _chunks(self) -> Iterator[bytes]:
        """Bytes as they arrive; ends quietly when closed, raises when the peer went away."""
        with self._lock:
            if self._closed.is_set():
                return
            self._reading = True
        try:
            yield from iter_response_bytes(self._response)
        except STREAM_ERRORS:
            if not self._closed.is_set():
                raise
        finally:
            with self._lock:
                self._reading = False
            self._release()

    def _release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        try:
            self._response.close()
        except STREAM_ERRORS:
            pass

    def __enter__(self) -> ClosableStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
        self._release()


# --------------------------------------------------------------------------------------
# JSON message streams


class JSONStreamDecoder:
    """Splits a byte stream into JSON objects: one per line, as the engine writes them,
    also when several arrive together or one is split across reads."""

    def __init__(self) -> None:
        self._buffer = b""
        self._decoder = json.JSONDecoder()

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        out: list[dict[str, Any]] = []
        for line in lines:
            out.extend(self._decode(line))
        return out

    def finish(self) -> list[dict[str, Any]]:
        rest, self._buffer = self._buffer, b""
        return self._decode(rest)

    def _decode(self, line: bytes) -> list[dict[str, Any]]:
        text = line.decode("utf-8", errors="replace").strip()
        out: list[dict[str, Any]] = []
        index = 0
        while index < len(text):
            try:
                value, end = self._decoder.raw_decode(text, index)
            except ValueError:
                break  # not JSON (a proxy's error page, say): skip the rest of the line
            if isinstance(value, dict):
                out.append(value)
            index = end
            while index < len(text) and text[index].isspace():
                index += 1
        return out


# --------------------------------------------------------------------------------------
# Logs


class LogDecoder:
    """Turns a log stream into lines: the multiplexed format (8-byte frame headers naming
    stdout or stderr) or a TTY's raw bytes. Lines split across frames or reads are joined;
    a trailing line without a newline is returned by ``finish()``."""

    def __init__(self, tty: bool, timestamps: bool = False):
        self.tty = tty
        self.timestamps = timestamps
        self._raw = b""
        self._partial: dict[str, bytes] = {STDOUT: b"", STDERR: b""}

    def feed(self, data: bytes) -> list[LogLine]:
        if self.tty:
            return self._lines(STDOUT, data)
        self._raw += data
        out: list[LogLine] = []
        view = self._raw
        pos, size, header = 0, len(view), _FRAME_HEADER.size
        unpack = _FRAME_HEADER.unpack_from
        # The engine writes a frame per line: the payloads of a run of frames from the same
        # stream are split into lines together, not frame by frame (a log flood is decoded
        # on the GUI thread, in time-boxed turns).
        run: list[bytes] = []
        run_kind = -1
        while size - pos >= header:
            kind, length = unpack(view, pos)
            end = pos + header + length
            if end > size:
                break
            if kind != run_kind and run:
                out.extend(self._lines(_STREAM_NAMES.get(run_kind, STDOUT), b"".join(run)))
                run = []
            run_kind = kind
            run.append(view[pos + header : end])
            pos = end
        if run:
            out.extend(self._lines(_STREAM_NAMES.get(run_kind, STDOUT), b"".join(run)))
        self._raw = view[pos:]
        return out

    def finish(self) -> list[LogLine]:
        out = []
        for stream in (STDOUT, STDERR):
            rest, self._partial[stream] = self._partial[stream], b""
            if rest:
                out.append(self._line(stream, rest))
        return out

    def _lines(self, stream: str, data: bytes) -> list[LogLine]:
        complete, newline, self._partial[stream] = (self._partial[stream] + data).rpartition(b"\n")
        if not newline:
            return []
        # One decode for all the complete lines: a newline is never inside a UTF-8 sequence,
        # so this is what decoding each line would give, invalid bytes included.
        texts = complete.decode("utf-8", errors="replace").split("\n")
        if self.timestamps:
            return [self._stamped(stream, text) for text in texts]
        return [LogLine(stream, text[:-1] if text.endswith("\r") else text) for text in texts]

    def _line(self, stream: str, raw: bytes) -> LogLine:
        text = raw.decode("utf-8", errors="replace")
        if self.timestamps:
            return self._stamped(stream, text)
        return LogLine(stream, text[:-1] if text.endswith("\r") else text)

    def _stamped(self, stream: str, text: str) -> LogLine:
        if text.endswith("\r"):
            text = text[:-1]
        head, space, rest = text.partition(" ")
        stamp = parse_timestamp(head)
        if stamp is not None:
            text = rest
        elif not space and head and parse_timestamp(head.rstrip()) is not None:
            text = ""
        return LogLine(stream, text, stamp)


class FrameDecoder:
    """The payload bytes of a multiplexed stream, headers removed (for non-TTY exec)."""

    def __init__(self) -> None:
        self._raw = b""

    def feed(self, data: bytes) -> bytes:
        self._raw += data
        out = bytearray()
        pos = 0
        while len(self._raw) - pos >= _FRAME_HEADER.size:
            _, length = _FRAME_HEADER.unpack_from(self._raw, pos)
            end = pos + _FRAME_HEADER.size + length
            if end > len(self._raw):
                break
            out += self._raw[pos + _FRAME_HEADER.size : end]
            pos = end
        self._raw = self._raw[pos:]
        return bytes(out)


# --------------------------------------------------------------------------------------
# Pull and push progress

# Layer statuses that mean a phase is over (the engine sends no byte counts with them).
_DOWNLOADED = {"verifying checksum", "download complete"}
_LAYER_DONE = {
    "pull complete",
    "already exists",
    "pushed",
    "layer already exists",
    "mounted from",
}


class _Layer:
    __slots__ = ("complete", "ex_current", "ex_total", "io_current", "io_total", "status")

    def __init__(self) -> None:
        self.status = ""
        self.io_current = 0  # bytes downloaded (pull) or uploaded (push)
        self.io_total = 0
        self.ex_current = 0  # bytes extracted (pull only)
        self.ex_total = 0
        self.complete = False


class ProgressTracker:
    """Aggregates the engine's JSON progress messages of a pull (``push=False``) or a push.

    A pull layer's work is its download plus its extraction, each weighted by its bytes; a
    push layer's is its upload. ``fraction`` covers the layers whose size is known, never
    goes backwards (a layer whose size becomes known later would otherwise pull it down),
    and is 1.0 once ``finish()`` is called.
    """

    def __init__(self, push: bool = False):
        self.push = push
        self._layers: dict[str, _Layer] = {}
        self._status = ""
        self._fraction: float | None = None
        self.error: str | None = None
        self.digest: str | None = None

    def feed(self, message: Mapping[str, Any]) -> PullProgress:
        """Take one JSON message; return the aggregate after it."""
        if message.get("error") or message.get("errorDetail"):
            detail = message.get("errorDetail") or {}
            self.error = str(message.get("error") or detail.get("message") or "unknown error")
            return self.snapshot()
        aux = message.get("aux")
        if isinstance(aux, Mapping) and aux.get("Digest"):
            self.digest = str(aux["Digest"])
        status = str(message.get("status") or "")
        layer_id = message.get("id")
        detail = message.get("progressDetail") or {}
        if layer_id and status and self._is_layer_status(status):
            self._update_layer(str(layer_id), status, detail)
            self._status = f"{status} {layer_id}"
        elif status:
            self._status = status
            if status.startswith("Digest: "):
                self.digest = status[len("Digest: ") :].strip()
        return self.snapshot()

    @staticmethod
    def _is_layer_status(status: str) -> bool:
        # "Pulling from library/busybox" and "The push refers to..." carry an id that is a
        # tag or repository, not a layer.
        lowered = status.lower()
        return not lowered.startswith(("pulling from", "the push refers", "digest:", "status:"))

    def _update_layer(self, layer_id: str, status: str, detail: Mapping[str, Any]) -> None:
        layer = self._layers.setdefault(layer_id, _Layer())
        layer.status = status
        lowered = status.lower()
        current = _int(detail.get("current"))
        total = _int(detail.get("total"))
        if lowered in ("downloading", "pushing"):
            if total > 0:
                layer.io_total = total
            layer.io_current = min(current, layer.io_total) if layer.io_total else current
        elif lowered in _DOWNLOADED:
            layer.io_current = layer.io_total
        elif lowered == "extracting":
            layer.io_current = layer.io_total
            if total > 0:
                layer.ex_total = total
            layer.ex_current = min(current, layer.ex_total) if layer.ex_total else current
        elif lowered in _LAYER_DONE or lowered.startswith("mounted from"):
            layer.complete = True
            layer.io_current = layer.io_total
            layer.ex_current = layer.ex_total

    def _compute(self) -> float | None:
        done = total = 0
        for layer in self._layers.values():
            if layer.io_total <= 0:
                continue  # size unknown ("Already exists", or not started)
            if self.push:
                weight = layer.io_total
                progress = layer.io_total if layer.complete else layer.io_current
            else:
                extract = layer.ex_total or layer.io_total
                weight = layer.io_total + extract
                if layer.complete:
                    progress = weight
                else:
                    progress = layer.io_current + min(layer.ex_current, extract)
            total += weight
            done += min(progress, weight)
        if total == 0:
            return None
        return done / total

    def snapshot(self, done: bool = False) -> PullProgress:
        value = 1.0 if done else self._compute()
        if value is not None:
            if self._fraction is not None:
                value = max(value, self._fraction)
            self._fraction = min(value, 1.0)
        layers = {
            key: LayerProgress(
                key,
                layer.status,
                layer.ex_current if layer.ex_total and not self.push else layer.io_current,
                layer.ex_total if layer.ex_total and not self.push else layer.io_total,
            )
            for key, layer in self._layers.items()
        }
        return PullProgress(layers, self._fraction, self._status, done)

    def finish(self) -> PullProgress:
        return self.snapshot(done=True)


def _int(value: Any) -> int:
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError):
        return 0


# --------------------------------------------------------------------------------------
# Cancellation


class CancelWatch:
    """While active, calls ``on_cancel`` as soon as ``cancel`` is set (within ~20 ms), from a
    small helper thread; used to close a stream the caller is blocked reading."""

    POLL = 0.02

    def __init__(self, cancel: threading.Event | None, on_cancel: Callable[[], None]):
        self.cancel = cancel
        self.on_cancel = on_cancel
        self._finished = threading.Event()
        self._thread: threading.Thread | None = None
        self.fired = False

    def __enter__(self) -> CancelWatch:
        if self.cancel is not None:
            self._thread = threading.Thread(target=self._watch, name="cancel-watch", daemon=True)
            self._thread.start()
        return self

    def _watch(self) -> None:
        assert self.cancel is not None
        while not self._finished.is_set():
            if self.cancel.wait(self.POLL):
                if not self._finished.is_set():
                    self.fired = True
                    self.on_cancel()
                return

    def __exit__(self, *exc: object) -> None:
        self._finished.set()
        if self._thread is not None:
            self._thread.join(1.0)

    @property
    def cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()
