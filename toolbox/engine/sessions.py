"""The engine's long-lived responses: a container's log stream, the events stream, a
pull's JSON messages, and an interactive exec session over a hijacked connection.

Each can be closed from another thread; a stream the engine drops raises
``EngineUnreachable``.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import docker
import requests

from toolbox.engine.errors import translate_api_error
from toolbox.engine.records import Event, LogLine
from toolbox.engine.streams import (
    STREAM_ERRORS,
    ClosableStream,
    FrameDecoder,
    JSONStreamDecoder,
    LogDecoder,
)
from toolbox.errors import EngineError, EngineUnreachable

if TYPE_CHECKING:
    from toolbox.engine.connect import EngineConfig


class LogStream(ClosableStream):
    """A container's log lines as they are written; ``close()`` from any thread ends the
    iteration promptly. Never holds more than one read's worth of output."""

    def __init__(
        self, response: requests.Response, tty: bool, timestamps: bool, config: EngineConfig
    ):
        super().__init__(response)
        self._decoder = LogDecoder(tty, timestamps)
        self._config = config

    def __iter__(self) -> Iterator[LogLine]:
        """Ends when the container's output ends (or on ``close()``); raises
        ``EngineUnreachable`` if the connection to the engine drops."""
        for batch in self.batches():
            yield from batch

    def batches(self) -> Iterator[list[LogLine]]:
        """The same lines, a list per read of the stream (all that had arrived): a reader
        that hands lines on in batches holds the GIL far less than one going line by line."""
        for chunk in self.raw():
            lines = self._decoder.feed(chunk)
            if lines:
                yield lines
        if not self.closed:
            rest = self._decoder.finish()
            if rest:
                yield rest

    def decoder(self) -> LogDecoder:
        """A fresh decoder for the bytes of ``raw()`` (feed them, then ``finish()``)."""
        return LogDecoder(self._decoder.tty, self._decoder.timestamps)

    def raw(self) -> Iterator[bytes]:
        """The stream's bytes, undecoded, as they arrive: a reader thread that hands them to
        another thread to decode holds the GIL only to pass them on. Same ends and errors as
        iterating the lines."""
        try:
            yield from self._chunks()
        except STREAM_ERRORS as exc:
            raise EngineUnreachable(
                f"Lost the log stream from {self._config.describe()}",
                hint="The engine stopped or the connection dropped; open the logs again.",
                details=str(exc),
            ) from exc


class EventStream(ClosableStream):
    """The engine's events as typed ``Event``s. The engine never ends this stream by itself,
    so an end that ``close()`` did not cause raises ``EngineUnreachable``."""

    def __init__(self, response: requests.Response, config: EngineConfig):
        super().__init__(response)
        self._config = config

    def __iter__(self) -> Iterator[Event]:
        decoder = JSONStreamDecoder()
        try:
            for chunk in self._chunks():
                for message in decoder.feed(chunk):
                    yield Event.from_api(message)
        except STREAM_ERRORS as exc:
            raise EngineUnreachable(
                f"Lost the event stream of {self._config.describe()}",
                hint="The engine stopped or the connection dropped; it will be retried.",
                details=str(exc),
            ) from exc
        if not self.closed:
            raise EngineUnreachable(
                f"The engine at {self._config.url} ended its event stream",
                hint="The engine is probably restarting; it will be retried.",
            )


class _JSONMessages(ClosableStream):
    """A pull/push response's JSON messages."""

    def __iter__(self) -> Iterator[dict[str, Any]]:
        decoder = JSONStreamDecoder()
        for chunk in self._chunks():
            yield from decoder.feed(chunk)
        if not self.closed:
            yield from decoder.finish()


class ExecSession:
    """An interactive exec (a shell in a container) over the engine's hijacked connection,
    for an embedded terminal. Call ``recv`` with short timeouts from one reader thread;
    ``send``/``resize``/``close`` may come from another."""

    def __init__(
        self,
        api: docker.APIClient,
        exec_id: str,
        response: requests.Response,
        sock: socket.socket,
        tty: bool,
        pending: bytes = b"",
    ):
        self.exec_id = exec_id
        self.tty = tty
        self._api = api
        self._response = response
        self._sock = sock
        self._pending = pending
        self._frames = None if tty else FrameDecoder()
        self._eof = False
        self._closed = False
        # OpenSSL objects must not be read and written at once from two threads.
        self._tls_lock = threading.Lock() if isinstance(sock, ssl.SSLSocket) else None

    @property
    def eof(self) -> bool:
        """True once the process ended (or the session was closed)."""
        return self._eof or self._closed

    def send(self, data: bytes) -> None:
        if self._closed:
            raise EngineError("The terminal session is closed")
        with self._tls_lock or contextlib.nullcontext():
            self._sock.settimeout(None)
            self._sock.sendall(data)

    def recv(self, timeout: float | None = None) -> bytes:
        """Output bytes, or b"" when nothing came within ``timeout`` or at the end (see
        ``eof``)."""
        if self._pending:
            data, self._pending = self._pending, b""
            return self._decode(data)
        if self.eof:
            return b""
        with self._tls_lock or contextlib.nullcontext():
            try:
                self._sock.settimeout(timeout)
                data = self._sock.recv(65536)
            except (TimeoutError, ssl.SSLWantReadError):
                return b""
            except OSError:
                if self._closed:
                    return b""
                data = b""
        if not data:
            self._eof = True
            return b""
        return self._decode(data)

    def _decode(self, data: bytes) -> bytes:
        return data if self._frames is None else self._frames.feed(data)

    def resize(self, rows: int, cols: int) -> None:
        """Tell the process its terminal size changed."""
        try:
            self._api.exec_resize(self.exec_id, height=rows, width=cols)
        except docker.errors.APIError as exc:
            if not self.eof:
                raise translate_api_error(exc, "resize the terminal") from exc
        except (requests.exceptions.RequestException, OSError) as exc:
            if not self.eof:
                raise EngineUnreachable(
                    "Lost the engine while resizing the terminal", details=str(exc)
                ) from exc

    def exit_code(self) -> int | None:
        """The process's exit code once it ended, else None."""
        try:
            info = self._api.exec_inspect(self.exec_id)
        except (docker.errors.DockerException, requests.exceptions.RequestException, OSError):
            return None
        return None if info.get("Running") else info.get("ExitCode")

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            socket.socket.shutdown(self._sock, socket.SHUT_RDWR)
        with contextlib.suppress(*STREAM_ERRORS):
            self._sock.close()
        with contextlib.suppress(*STREAM_ERRORS):
            self._response.close()


def buffered_bytes(response: requests.Response, sock: socket.socket) -> bytes:
    """Bytes http.client already read past the response headers (a shell's first prompt
    can arrive in the same packet); they would be lost by reading the socket directly."""
    try:
        reader = response.raw._fp.fp
    except AttributeError:
        return b""
    if reader is None or not hasattr(reader, "peek"):
        return b""
    previous = sock.gettimeout()
    try:
        sock.settimeout(0.0)
        data = reader.peek(65536)
        return reader.read(len(data)) if data else b""
    except (OSError, ValueError, TypeError):
        return b""
    finally:
        with contextlib.suppress(OSError):
            sock.settimeout(previous)
