"""Downloading guest images: resume over HTTP Range, SHA-512 verification, progress, cancel.

The bytes go to ``<dest>.part``, which survives an interruption and is resumed next time
(guarded by ``If-Range`` so a file changed on the server restarts from zero). Only a
verified file is renamed to ``dest``; a checksum mismatch deletes the partial file.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import requests
import urllib3
from filelock import FileLock

from toolbox import __version__
from toolbox.errors import Cancelled, ImageError
from toolbox.progress import Progress, ProgressCallback

Cancel = threading.Event | Callable[[], bool]
"""Something that says whether the user cancelled: an Event, or a callable returning bool."""

CHUNK = 256 * 1024
REPORT_INTERVAL = 0.1  # seconds between progress reports
_HEX512 = re.compile(r"[0-9a-fA-F]{128}")


def is_cancelled(cancel: Cancel | None) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    return bool(cancel())


def raise_if_cancelled(cancel: Cancel | None) -> None:
    if is_cancelled(cancel):
        raise Cancelled("Cancelled", hint="Nothing was lost: run it again to continue.")


def _wait(cancel: Cancel | None, seconds: float) -> None:
    """Sleep up to ``seconds`` (a retry backoff), returning early when cancelled."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        raise_if_cancelled(cancel)
        if isinstance(cancel, threading.Event):
            cancel.wait(min(0.1, max(0.0, deadline - time.monotonic())))
        else:
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
    raise_if_cancelled(cancel)


# -- SHA512SUMS ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ChecksumEntry:
    filename: str
    sha512: str  # lower-case hex


@dataclass(frozen=True)
class Checksums:
    """A parsed ``SHA512SUMS`` file."""

    entries: tuple[ChecksumEntry, ...]

    def get(self, filename: str) -> str | None:
        """The checksum listed for ``filename`` (the last one when listed twice)."""
        found = None
        for entry in self.entries:
            if entry.filename == filename:
                found = entry.sha512
        return found


_BSD_LINE = re.compile(r"SHA512 \((?P<name>.+)\) = (?P<hash>[0-9a-fA-F]{128})")


def _unescape(name: str) -> str:
    """Undo GNU coreutils' escaping of ``\\`` and newlines in names (lines starting ``\\``)."""
    out, i = [], 0
    while i < len(name):
        ch = name[i]
        if ch == "\\" and i + 1 < len(name):
            nxt = name[i + 1]
            out.append({"n": "\n", "\\": "\\", "r": "\r"}.get(nxt, "\\" + nxt))
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def parse_sums(text: str) -> Checksums:
    """Parse ``sha512sum`` output (``HASH  NAME`` or ``HASH *NAME``, GNU escapes) or BSD
    style (``SHA512 (NAME) = HASH``). Lines in neither form are skipped."""
    entries = []
    for raw in text.split("\n"):
        line = raw.removesuffix("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        escaped = line.startswith("\\")
        body = line[1:] if escaped else line
        bsd = _BSD_LINE.fullmatch(body)
        if bsd:
            name, digest = bsd.group("name"), bsd.group("hash")
        else:
            if len(body) < 130 or not _HEX512.fullmatch(body[:128]):
                continue
            if body[128] != " " or body[129] not in " *":
                continue
            digest, name = body[:128], body[130:]
        if escaped:
            name = _unescape(name)
        if name:
            entries.append(ChecksumEntry(name, digest.lower()))
    return Checksums(tuple(entries))


def format_sums(entries: Iterable[ChecksumEntry]) -> str:
    """Write entries the way ``sha512sum`` does (escaping names with ``\\`` or newlines)."""
    lines = []
    for entry in entries:
        name = entry.filename
        if "\\" in name or "\n" in name or "\r" in name:
            name = name.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
            lines.append(f"\\{entry.sha512}  {name}")
        else:
            lines.append(f"{entry.sha512}  {name}")
    return "".join(line + "\n" for line in lines)


# -- downloading ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DownloadResult:
    """A finished, verified download."""

    url: str
    path: Path
    size: int
    sha512: str
    resumed_from: int  # bytes already on disk when this call started (0: fresh download)
    verified: bool  # checked against an expected checksum


class _Retryable(Exception):
    """An attempt that failed in a way worth retrying (dropped connection, 5xx)."""


def _session() -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = f"Toolbox/{__version__}"
    return session


def url_filename(url: str) -> str:
    return unquote(urlparse(url).path.rsplit("/", 1)[-1])


def fetch_sums(
    sums_url: str, timeout: float = 30.0, session: requests.Session | None = None
) -> Checksums:
    """Download and parse a SHA512SUMS file."""
    own = session is None
    session = session or _session()
    try:
        resp = session.get(sums_url, timeout=timeout)
        resp.raise_for_status()
        return parse_sums(resp.text)
    except requests.RequestException as exc:
        raise ImageError(
            f"Cannot download the checksum list {sums_url}: {_reason(exc)}",
            hint="Check the internet connection (and proxy settings) and retry.",
        ) from exc
    finally:
        if own:
            session.close()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code} {exc.response.reason}"
    if isinstance(exc, requests.ConnectionError):
        return "cannot connect (no network, or the server is unreachable)"
    if isinstance(exc, requests.Timeout):
        return "timed out"
    return str(exc) or type(exc).__name__


def download(
    url: str,
    dest: Path,
    expected_sha512: str | None = None,
    sums_url: str | None = None,
    progress: ProgressCallback | None = None,
    cancel: Cancel | None = None,
    *,
    retries: int = 3,
    timeout: float = 30.0,
    backoff: float = 1.0,
) -> DownloadResult:
    """Download ``url`` to ``dest``, resuming ``dest.part`` when present.

    ``expected_sha512`` or the entry for the URL's file name in ``sums_url`` is checked
    before ``dest`` appears; a mismatch deletes the partial file. A dropped connection is
    retried ``retries`` times from where it stopped; if it still fails, the ``.part`` file
    stays for the next call (waits between tries: ``backoff`` seconds, doubling, at most
    10 s). ``cancel`` stops between chunks (raising Cancelled, keeping the partial file).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    filename = url_filename(url) or dest.name
    session = _session()
    try:
        expected = _expected_checksum(filename, expected_sha512, sums_url, timeout, session)
        with FileLock(str(dest.with_name(dest.name + ".lock")), timeout=3600):
            return _download_locked(
                url, dest, filename, expected, progress, cancel, retries, timeout, backoff, session
            )
    finally:
        session.close()


def _expected_checksum(
    filename: str,
    expected_sha512: str | None,
    sums_url: str | None,
    timeout: float,
    session: requests.Session,
) -> str | None:
    expected = expected_sha512.strip().lower() if expected_sha512 else None
    if expected is not None and not _HEX512.fullmatch(expected):
        raise ImageError(
            f"Not a SHA-512 checksum: {expected_sha512!r}",
            hint="A SHA-512 checksum is 128 hexadecimal digits.",
        )
    if sums_url:
        listed = fetch_sums(sums_url, timeout, session).get(filename)
        if listed is None:
            raise ImageError(
                f"{filename} is not listed in {sums_url}",
                hint="The image was probably renamed or withdrawn on the server; retry later "
                "or pass --image with another image.",
            )
        if expected is not None and expected != listed:
            raise ImageError(
                f"The checksum given for {filename} differs from the one in {sums_url}",
                hint="Check which checksum is right before using the image.",
            )
        expected = listed
    return expected


def _download_locked(
    url: str,
    dest: Path,
    filename: str,
    expected: str | None,
    progress: ProgressCallback | None,
    cancel: Cancel | None,
    retries: int,
    timeout: float,
    backoff: float,
    session: requests.Session,
) -> DownloadResult:
    part = dest.with_name(dest.name + ".part")
    info = dest.with_name(dest.name + ".part.json")
    resumed_from = part.stat().st_size if part.exists() else 0
    state = _State(part, info, url, filename, progress, cancel)
    attempt = 0
    while True:
        raise_if_cancelled(cancel)
        try:
            state.fetch(session, timeout)
            break
        except _Retryable as exc:
            attempt += 1
            if attempt > retries:
                raise ImageError(
                    f"Download of {filename} interrupted at {state.done_text()}: {exc}",
                    hint=f"Retry: it resumes from the partial file {part}.",
                ) from exc
            _wait(cancel, min(backoff * 2.0 ** (attempt - 1), 10.0))
        except requests.RequestException as exc:
            raise ImageError(
                f"Cannot download {url}: {_reason(exc)}",
                hint="Check the internet connection (and proxy settings) and retry; the "
                "download resumes where it stopped.",
            ) from exc
    digest = state.digest()
    if expected is not None and digest != expected:
        part.unlink(missing_ok=True)
        info.unlink(missing_ok=True)
        raise ImageError(
            f"Checksum mismatch for {filename}: expected SHA-512 {expected[:16]}..., got "
            f"{digest[:16]}...; the partial download was deleted",
            hint="Retry to download it afresh; if it fails again, the server or a proxy is "
            "serving a damaged or changed file.",
        )
    size = part.stat().st_size
    part.replace(dest)
    info.unlink(missing_ok=True)
    if progress is not None:
        what = "Verified" if expected else "Downloaded"
        progress(Progress("download", f"{what} {filename}", 1.0, size, size, done=True))
    return DownloadResult(url, dest, size, digest, resumed_from, expected is not None)


class _State:
    """One download's partial file, running hash and progress, across attempts."""

    def __init__(
        self,
        part: Path,
        info: Path,
        url: str,
        filename: str,
        progress: ProgressCallback | None,
        cancel: Cancel | None,
    ):
        self.part, self.info, self.url, self.filename = part, info, url, filename
        self.progress, self.cancel = progress, cancel
        self.hasher = hashlib.sha512()
        self.hashed = 0
        self.total: int | None = None
        self._last_report = 0.0

    def done_text(self) -> str:
        done = self.part.stat().st_size if self.part.exists() else 0
        return f"{done:,} of {self.total:,} bytes" if self.total else f"{done:,} bytes"

    def digest(self) -> str:
        self._rehash_if_needed()
        return self.hasher.hexdigest()

    def _rehash_if_needed(self) -> None:
        size = self.part.stat().st_size if self.part.exists() else 0
        if size == self.hashed:
            return
        self.hasher, self.hashed = hashlib.sha512(), 0
        if size:
            with open(self.part, "rb") as fh:
                while chunk := fh.read(1024 * 1024):
                    self.hasher.update(chunk)
                    self.hashed += len(chunk)

    def _origin(self) -> tuple[bool, str | None]:
        """Whether the partial file is known to come from this URL, and the ETag or
        Last-Modified it was fetched with (for If-Range)."""
        try:
            data = json.loads(self.info.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False, None
        if not isinstance(data, dict) or data.get("url") != self.url:
            return False, None
        return True, data.get("etag") or data.get("last_modified")

    def _save_validator(self, resp: requests.Response) -> None:
        data = {
            "url": self.url,
            "etag": resp.headers.get("ETag"),
            "last_modified": resp.headers.get("Last-Modified"),
        }
        self.info.write_text(json.dumps(data), encoding="utf-8")

    def _restart(self) -> None:
        self.part.unlink(missing_ok=True)
        self.info.unlink(missing_ok=True)
        self.hasher, self.hashed = hashlib.sha512(), 0

    def fetch(self, session: requests.Session, timeout: float) -> None:
        """One attempt: request the missing bytes and append them to the partial file."""
        offset = self.part.stat().st_size if self.part.exists() else 0
        headers = {"Accept-Encoding": "identity"}
        known, validator = self._origin() if offset else (False, None)
        if offset and not known:
            self._restart()  # bytes of unknown origin: start over rather than mix files
            offset = 0
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if validator:
                headers["If-Range"] = validator
        try:
            resp = session.get(self.url, headers=headers, stream=True, timeout=timeout)
        except (requests.ConnectionError, requests.Timeout) as exc:
            if offset:
                raise _Retryable(_reason(exc)) from exc
            raise
        with resp:
            if resp.status_code == 416 and offset:
                # Nothing left to send: the partial file is complete, or from another file.
                total = _content_range_total(resp.headers.get("Content-Range"))
                if total is not None and total == offset:
                    self.total = total
                    return
                self._restart()
                raise _Retryable("the partial file did not match the server's file")
            if resp.status_code >= 500:
                raise _Retryable(f"HTTP {resp.status_code} {resp.reason}")
            resp.raise_for_status()
            if resp.status_code == 206:
                start = _content_range_start(resp.headers.get("Content-Range"))
                if start != offset:
                    self._restart()
                    raise _Retryable("the server resumed at the wrong offset")
                self.total = _content_range_total(resp.headers.get("Content-Range"))
                self._rehash_if_needed()
                mode = "ab"
            else:
                # 200: a full body (no resume support, or the file changed: If-Range).
                self._restart()
                offset = 0
                length = resp.headers.get("Content-Length")
                self.total = int(length) if length and length.isdigit() else None
                self._save_validator(resp)
                mode = "wb"
            self._receive(resp, offset, mode)

    def _receive(self, resp: requests.Response, offset: int, mode: str) -> None:
        done = offset
        with open(self.part, mode) as fh:
            for chunk in _chunks(resp):
                if is_cancelled(self.cancel):
                    break
                fh.write(chunk)
                self.hasher.update(chunk)
                self.hashed += len(chunk)
                done += len(chunk)
                self._report(done)
        raise_if_cancelled(self.cancel)
        if self.total is not None and done < self.total:
            raise _Retryable("the connection closed early")
        if self.total is None:
            self.total = done

    def _report(self, done: int) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if now - self._last_report < REPORT_INTERVAL and done != self.total:
            return
        self._last_report = now
        fraction = done / self.total if self.total else None
        self.progress(
            Progress("download", f"Downloading {self.filename}", fraction, done, self.total)
        )


def _chunks(resp: requests.Response) -> Iterator[bytes]:
    """The body as it arrives. ``read1`` hands over every byte received before a dropped
    connection is noticed, so the partial file keeps all of them (requests' iter_content
    would drop the unfinished chunk)."""
    raw = resp.raw
    while True:
        try:
            data = raw.read1(CHUNK, decode_content=False)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise _Retryable(f"the connection dropped ({type(exc).__name__})") from exc
        if not data:
            return
        yield data


def _content_range_total(value: str | None) -> int | None:
    match = re.fullmatch(r"bytes (?:\d+-\d+|\*)/(\d+)", (value or "").strip())
    return int(match.group(1)) if match else None


def _content_range_start(value: str | None) -> int | None:
    match = re.fullmatch(r"bytes (\d+)-\d+/(?:\d+|\*)", (value or "").strip())
    return int(match.group(1)) if match else None
