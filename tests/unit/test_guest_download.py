"""Downloads against a real HTTP server on loopback: Range resume, If-Range, SHA512SUMS,
dropped connections, wrong checksums, cancel; and the SHA512SUMS parser."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from toolbox.errors import Cancelled, ImageError
from toolbox.guest.download import (
    ChecksumEntry,
    download,
    format_sums,
    parse_sums,
)
from toolbox.progress import Progress


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    status: int = 0


@dataclass
class ImageServer:
    """A real HTTP/1.1 server on 127.0.0.1 serving in-memory files.

    Honours ``Range: bytes=N-`` with ``If-Range`` against a strong ETag (unless
    ``ranges`` is False), answers 416 past the end, and on demand cuts a response short:
    ``drops[path]`` lists byte counts, one per coming request, after which the connection
    is closed mid-body.
    """

    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[Seen] = field(default_factory=list)
    drops: dict[str, list[int]] = field(default_factory=dict)
    ranges: bool = True
    httpd: ThreadingHTTPServer | None = None

    def add(self, name: str, data: bytes) -> str:
        self.files["/" + name] = data
        return self.url(name)

    def add_sums(self, name: str = "SHA512SUMS", wrong: set[str] | None = None) -> str:
        entries = []
        for path, data in sorted(self.files.items()):
            digest = hashlib.sha512(data).hexdigest()
            if wrong and path.lstrip("/") in wrong:
                digest = hashlib.sha512(data + b"tampered").hexdigest()
            entries.append(ChecksumEntry(path.lstrip("/"), digest))
        return self.add(name, format_sums(entries).encode())

    def url(self, name: str) -> str:
        assert self.httpd is not None
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def gets(self, name: str) -> list[Seen]:
        return [r for r in self.requests if r.path == "/" + name]

    def start(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                seen = Seen(self.path, {k.lower(): v for k, v in self.headers.items()})
                server.requests.append(seen)
                data = server.files.get(self.path)
                if data is None:
                    seen.status = 404
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                etag = '"' + hashlib.sha256(data).hexdigest()[:20] + '"'
                start = 0
                wanted = self.headers.get("Range")
                if_range = self.headers.get("If-Range")
                if wanted and server.ranges and (if_range is None or if_range == etag):
                    start = int(wanted.removeprefix("bytes=").split("-")[0])
                    if start >= len(data):
                        seen.status = 416
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    seen.status = 206
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    seen.status = 200
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", etag)
                if server.ranges:
                    self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                cut = server.drops.get(self.path)
                if cut:
                    self.wfile.write(body[: cut.pop(0)])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[ImageServer]:
    srv = ImageServer()
    srv.start()
    yield srv
    srv.stop()


def payload(size: int = 3 * 1024 * 1024 + 12345, seed: int = 1) -> bytes:
    """Deterministic incompressible bytes."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha512(f"{seed}-{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- downloads -----------------------------------------------------------------------------


def test_download_verifies_against_sha512sums_and_reports_progress(
    server: ImageServer, tmp_path: Path
) -> None:
    data = payload()
    url = server.add("disk.qcow2", data)
    sums = server.add_sums()
    events: list[Progress] = []
    result = download(url, tmp_path / "disk.qcow2", sums_url=sums, progress=events.append)
    assert (tmp_path / "disk.qcow2").read_bytes() == data
    assert result.sha512 == hashlib.sha512(data).hexdigest()
    assert result.verified and result.size == len(data) and result.resumed_from == 0
    assert not (tmp_path / "disk.qcow2.part").exists()
    fractions = [e.fraction for e in events if e.fraction is not None]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert events[-1].done and events[-1].total == len(data)
    assert all(e.total == len(data) for e in events)


def test_interrupted_download_keeps_the_part_file_and_resumes_with_range(
    server: ImageServer, tmp_path: Path
) -> None:
    data = payload()
    url = server.add("disk.qcow2", data)
    sums = server.add_sums()
    half = len(data) // 2
    server.drops["/disk.qcow2"] = [half]
    dest = tmp_path / "disk.qcow2"
    with pytest.raises(ImageError) as info:
        download(url, dest, sums_url=sums, retries=0)
    assert "interrupted" in info.value.message
    assert "resume" in (info.value.hint or "")
    part = tmp_path / "disk.qcow2.part"
    assert part.stat().st_size == half
    assert not dest.exists()

    result = download(url, dest, sums_url=sums)
    assert result.resumed_from == half
    assert dest.read_bytes() == data
    second = server.gets("disk.qcow2")[-1]
    assert second.headers["range"] == f"bytes={half}-"
    assert second.headers["if-range"].startswith('"')
    assert second.status == 206
    assert not part.exists()


def test_dropped_connection_is_retried_from_where_it_stopped(
    server: ImageServer, tmp_path: Path
) -> None:
    data = payload()
    url = server.add("disk.qcow2", data)
    server.drops["/disk.qcow2"] = [1_000_000, 500_000]
    digest = hashlib.sha512(data).hexdigest()
    result = download(url, tmp_path / "d", expected_sha512=digest, backoff=0.01)
    assert (tmp_path / "d").read_bytes() == data
    assert result.verified
    seen = server.gets("disk.qcow2")
    assert [s.headers.get("range") for s in seen] == [None, "bytes=1000000-", "bytes=1500000-"]
    assert [s.status for s in seen] == [200, 206, 206]


def test_checksum_mismatch_deletes_the_partial_file_and_says_so(
    server: ImageServer, tmp_path: Path
) -> None:
    url = server.add("disk.qcow2", payload())
    sums = server.add_sums(wrong={"disk.qcow2"})
    dest = tmp_path / "disk.qcow2"
    with pytest.raises(ImageError) as info:
        download(url, dest, sums_url=sums)
    assert "Checksum mismatch" in info.value.message
    assert "deleted" in info.value.message
    assert not dest.exists()
    assert not [p.name for p in tmp_path.iterdir() if ".part" in p.name]


def test_a_file_missing_from_the_sums_is_refused(server: ImageServer, tmp_path: Path) -> None:
    sums = server.add_sums()  # written before the image exists: it is not listed
    url = server.add("other.qcow2", payload(1000))
    with pytest.raises(ImageError, match="not listed"):
        download(url, tmp_path / "x", sums_url=sums)
    assert server.gets("other.qcow2") == []


def test_changed_file_on_the_server_restarts_instead_of_mixing(
    server: ImageServer, tmp_path: Path
) -> None:
    old, new = payload(seed=1), payload(seed=2)
    url = server.add("disk.qcow2", old)
    server.drops["/disk.qcow2"] = [700_000]
    with pytest.raises(ImageError):
        download(url, tmp_path / "d", retries=0)
    server.files["/disk.qcow2"] = new  # the image was republished meanwhile
    result = download(url, tmp_path / "d", expected_sha512=hashlib.sha512(new).hexdigest())
    assert (tmp_path / "d").read_bytes() == new
    assert result.verified
    assert server.gets("disk.qcow2")[-1].status == 200  # If-Range did not match


def test_server_without_range_support_restarts_from_zero(
    server: ImageServer, tmp_path: Path
) -> None:
    data = payload()
    server.ranges = False
    url = server.add("disk.qcow2", data)
    server.drops["/disk.qcow2"] = [400_000]
    digest = hashlib.sha512(data).hexdigest()
    result = download(url, tmp_path / "d", expected_sha512=digest, backoff=0.01)
    assert (tmp_path / "d").read_bytes() == data
    assert result.verified
    assert [s.status for s in server.gets("disk.qcow2")] == [200, 200]


def test_a_complete_part_file_is_finished_without_downloading_again(
    server: ImageServer, tmp_path: Path
) -> None:
    data = payload(200_000)
    url = server.add("disk.qcow2", data)
    server.drops["/disk.qcow2"] = [50_000]
    with pytest.raises(ImageError):
        download(url, tmp_path / "d", retries=0)
    # As if the process died after writing the last byte, before the rename: the next
    # call asks for the bytes after the end, gets 416, and finishes with what it has.
    with open(tmp_path / "d.part", "ab") as fh:
        fh.write(data[50_000:])
    result = download(url, tmp_path / "d", expected_sha512=hashlib.sha512(data).hexdigest())
    assert result.resumed_from == len(data)
    assert server.gets("disk.qcow2")[-1].status == 416
    assert (tmp_path / "d").read_bytes() == data


def test_cancel_stops_between_chunks_and_keeps_the_part_file(
    server: ImageServer, tmp_path: Path
) -> None:
    data = payload()
    url = server.add("disk.qcow2", data)
    part = tmp_path / "d.part"

    def cancel() -> bool:  # the user presses Cancel once half a megabyte is in
        return part.exists() and part.stat().st_size > 500_000

    with pytest.raises(Cancelled):
        download(url, tmp_path / "d", cancel=cancel)
    assert 500_000 < part.stat().st_size < len(data)
    assert not (tmp_path / "d").exists()
    kept = part.stat().st_size
    result = download(url, tmp_path / "d", expected_sha512=hashlib.sha512(data).hexdigest())
    assert result.resumed_from == kept
    assert (tmp_path / "d").read_bytes() == data


def test_http_errors_and_unreachable_servers_raise_image_errors(
    server: ImageServer, tmp_path: Path
) -> None:
    with pytest.raises(ImageError, match="HTTP 404"):
        download(server.url("missing.qcow2"), tmp_path / "m")
    port = closed_port()
    with pytest.raises(ImageError, match="cannot connect") as info:
        download(f"http://127.0.0.1:{port}/x.qcow2", tmp_path / "x")
    assert "internet" in (info.value.hint or "")
    assert not (tmp_path / "x.part").exists() or os.path.getsize(tmp_path / "x.part") == 0


def test_bad_expected_checksum_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="Not a SHA-512"):
        download("http://127.0.0.1:1/x", tmp_path / "x", expected_sha512="abc")


# -- SHA512SUMS ----------------------------------------------------------------------------

DEBIAN_SAMPLE = (
    "a" * 128
    + "  debian-12-genericcloud-amd64.qcow2\n"
    + "B" * 128
    + "  debian-12-generic-amd64.tar.xz\n"
    + "\n# a comment\n"
    + "c" * 128
    + " *binary-mode.raw\n"
    + "SHA512 (bsd style.raw) = "
    + "d" * 128
    + "\n"
    + "not a checksum line\n"
    + "e" * 127
    + "  too-short\n"
)


def test_parse_sums_reads_gnu_binary_and_bsd_lines() -> None:
    sums = parse_sums(DEBIAN_SAMPLE)
    assert sums.get("debian-12-genericcloud-amd64.qcow2") == "a" * 128
    assert sums.get("debian-12-generic-amd64.tar.xz") == "b" * 128
    assert sums.get("binary-mode.raw") == "c" * 128
    assert sums.get("bsd style.raw") == "d" * 128
    assert sums.get("too-short") is None
    assert len(sums.entries) == 4


filenames = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=40,
)
hashes = st.text(alphabet="0123456789abcdef", min_size=128, max_size=128)


@given(st.lists(st.builds(ChecksumEntry, filenames, hashes), max_size=8))
def test_sums_round_trip(entries: list[ChecksumEntry]) -> None:
    assert parse_sums(format_sums(entries)).entries == tuple(entries)


@given(st.text())
def test_parse_sums_never_raises_and_yields_only_valid_entries(text: str) -> None:
    for entry in parse_sums(text).entries:
        assert len(entry.sha512) == 128
        assert set(entry.sha512) <= set("0123456789abcdef")
        assert entry.filename


def test_a_cancel_event_set_before_starting_fetches_nothing(
    server: ImageServer, tmp_path: Path
) -> None:
    url = server.add("disk.qcow2", payload(1000))
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        download(url, tmp_path / "d", cancel=cancel)
    assert server.gets("disk.qcow2") == []
    assert not (tmp_path / "d").exists()
