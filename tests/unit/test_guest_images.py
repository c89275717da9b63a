"""The image cache: names, metadata, store operations, format detection, archives, and
``--image`` resolution (default images and URLs fetched from a real local HTTP server)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.test_guest_download import ImageServer, closed_port, payload
from toolbox import paths
from toolbox.errors import ImageError, NotFoundError, UsageError, ValidationError
from toolbox.guest.images import (
    LOCAL_IMAGE_NAME,
    CachedImage,
    ImageStore,
    default_image,
    detect_format,
    host_arch,
    name_from_filename,
    validate_image_name,
)
from toolbox.progress import Progress

needs_qemu_img = pytest.mark.skipif(shutil.which("qemu-img") is None, reason="needs qemu-img")


@pytest.fixture
def server() -> Iterator[ImageServer]:
    srv = ImageServer()
    srv.start()
    yield srv
    srv.stop()


def qemu_img(fmt: str, path: Path, size: str = "64M") -> Path:
    subprocess.run(["qemu-img", "create", "-q", "-f", fmt, str(path), size], check=True)
    return path


def sparse_raw(path: Path, size: int = 8 * 1024 * 1024) -> bytes:
    """A raw disk with data at a few places and holes elsewhere; returns its bytes."""
    with open(path, "wb") as fh:
        fh.truncate(size)
        for offset in (0, 3 * 1024 * 1024 + 17, size - 4096):
            fh.seek(offset)
            fh.write(payload(4096, seed=offset))
    return path.read_bytes()


# -- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["debian-12-local", "debian-12-genericcloud-amd64", "a", "img_2.5", "0" * 80]
)
def test_valid_names(name: str) -> None:
    assert validate_image_name(name) == name


@pytest.mark.parametrize(
    "name", ["", ".", "..", "../x", "a/b", "a\\b", "-x", ".hidden", "Upper", "a b", "0" * 81]
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(ValidationError):
        validate_image_name(name)


@given(st.text(max_size=100))
def test_a_name_never_leaves_the_cache(name: str) -> None:
    store = ImageStore(Path("/tmp/toolbox-test-root"))
    try:
        validate_image_name(name)
    except ValidationError:
        with pytest.raises(ValidationError):
            store.get(name)
        return
    path = (store.root / name).resolve()
    assert path.parent == store.root.resolve()
    assert path.name == name


@given(st.text(max_size=200))
def test_names_derived_from_any_filename_are_valid(filename: str) -> None:
    assert validate_image_name(name_from_filename(filename))


def test_name_from_filename_drops_extensions() -> None:
    assert name_from_filename("debian-12-generic-amd64.tar.xz") == "debian-12-generic-amd64"
    assert name_from_filename("/some/dir/My Image (1).qcow2") == "my-image-1"
    assert name_from_filename("C:\\Users\\x\\disk.vdi") == "disk"
    assert name_from_filename("...") == "image"


# -- metadata ------------------------------------------------------------------------------


def test_metadata_round_trips_with_relative_paths(tmp_path: Path) -> None:
    image = CachedImage(
        name="debian-12-local",
        path=tmp_path / "disk.qcow2",
        format="qcow2",
        arch="amd64",
        size=123,
        sha512="ab" * 64,
        source="mmdebstrap bookworm http://deb.debian.org/debian",
        created=dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC),
        kernel=tmp_path / "vmlinuz",
        initrd=tmp_path / "initrd.img",
        cmdline="root=LABEL=root rw",
        recipe="0123456789abcdef",
    )
    data = json.loads(json.dumps(image.to_json()))
    assert data["file"] == "disk.qcow2" and data["kernel"] == "vmlinuz"
    assert data["schema_version"] == 1
    moved = tmp_path / "moved"
    again = CachedImage.from_json(data, moved)
    assert again.path == moved / "disk.qcow2"
    assert again.kernel == moved / "vmlinuz"
    assert again.created == image.created
    assert CachedImage.from_json(data, tmp_path) == image


@pytest.mark.parametrize("bad", ["../../etc/passwd", "/etc/passwd", "a/b", "..", ""])
def test_metadata_cannot_point_outside_its_folder(tmp_path: Path, bad: str) -> None:
    data = {"name": "x", "file": bad, "format": "raw", "arch": "amd64", "size": 1}
    data |= {"sha512": None, "source": "", "created": "2024-01-01T00:00:00+00:00"}
    with pytest.raises(ValueError):
        CachedImage.from_json(data, tmp_path)


def test_boot_image_carries_kernel_and_cmdline(tmp_path: Path) -> None:
    base = pytest.importorskip("toolbox.drivers.base")
    image = CachedImage(
        "x",
        tmp_path / "disk.qcow2",
        "qcow2",
        "amd64",
        1,
        None,
        "s",
        dt.datetime.now(dt.UTC),
        tmp_path / "vmlinuz",
        tmp_path / "initrd.img",
        "root=LABEL=root rw",
    )
    boot = image.boot_image()
    assert isinstance(boot, base.BootImage)
    assert (boot.disk, boot.format, boot.kernel, boot.initrd, boot.cmdline) == (
        image.path,
        "qcow2",
        image.kernel,
        image.initrd,
        "root=LABEL=root rw",
    )


# -- formats -------------------------------------------------------------------------------


@needs_qemu_img
@pytest.mark.parametrize(
    ("qemu_format", "expected"),
    [
        ("qcow2", "qcow2"),
        ("raw", "raw"),
        ("vmdk", "vmdk"),
        ("vdi", "vdi"),
        ("vhdx", "vhdx"),
        ("vpc", "vhd"),
    ],
)
def test_detect_format_on_real_images(tmp_path: Path, qemu_format: str, expected: str) -> None:
    path = qemu_img(qemu_format, tmp_path / f"disk.{qemu_format}")
    assert detect_format(path) == expected


@needs_qemu_img
def test_detect_fixed_vhd_by_its_footer(tmp_path: Path) -> None:
    path = tmp_path / "fixed.vhd"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "vpc", "-o", "subformat=fixed", str(path), "8M"],
        check=True,
    )
    assert detect_format(path) == "vhd"


# -- the store -----------------------------------------------------------------------------


def test_store_defaults_to_the_cache_dir_under_toolbox_home(toolbox_home: Path) -> None:
    assert ImageStore().root == paths.images_dir() == toolbox_home / "cache" / "images"


def test_add_list_get_remove(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    assert store.list() == []
    disk = tmp_path / "d.qcow2"
    disk.write_bytes(b"QFI\xfb" + b"\0" * 1000)
    kernel, initrd = tmp_path / "k", tmp_path / "i"
    kernel.write_bytes(b"kernel")
    initrd.write_bytes(b"initrd")
    added = store.add(
        "local",
        disk,
        format="qcow2",
        arch="amd64",
        source="test",
        kernel=kernel,
        initrd=initrd,
        cmdline="root=LABEL=root",
    )
    assert not disk.exists() and not kernel.exists()
    assert added.path == store.root / "local" / "disk.qcow2"
    assert added.kernel is not None and added.kernel.read_bytes() == b"kernel"
    assert added.size == 1004
    assert store.get("local") == added
    assert [i.name for i in store.list()] == ["local"]
    meta = json.loads((store.root / "local" / "image.json").read_text())
    assert meta["file"] == "disk.qcow2" and meta["cmdline"] == "root=LABEL=root"

    store.remove("local")
    assert store.list() == []
    assert not (store.root / "local").exists()
    with pytest.raises(NotFoundError) as info:
        store.get("local")
    assert "toolbox image build" in (info.value.hint or "")
    with pytest.raises(NotFoundError):
        store.remove("local")


def test_adding_again_replaces_the_image(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    for content in (b"one", b"second"):
        src = tmp_path / "src.raw"
        src.write_bytes(content)
        store.add("x", src, format="raw", arch="amd64", source="t")
    assert store.get("x").path.read_bytes() == b"second"
    assert sorted(p.name for p in store.root.iterdir()) == ["x"]


def test_damaged_entries_are_skipped_by_list_and_reported_by_get(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    src = tmp_path / "src.raw"
    src.write_bytes(b"x")
    store.add("good", src, format="raw", arch="amd64", source="t")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "image.json").write_text("{not json")
    (tmp_path / "nodisk").mkdir()
    meta = json.loads((tmp_path / "good" / "image.json").read_text())
    (tmp_path / "nodisk" / "image.json").write_text(json.dumps(meta | {"name": "nodisk"}))
    (tmp_path / "NotAName").mkdir()
    assert [i.name for i in store.list()] == ["good"]
    with pytest.raises(ImageError, match="damaged") as info:
        store.get("broken")
    assert "toolbox image rm broken" in (info.value.hint or "")
    with pytest.raises(ImageError, match="missing"):
        store.get("nodisk")


@needs_qemu_img
def test_import_file_copies_and_detects_the_format(tmp_path: Path) -> None:
    src = qemu_img("qcow2", tmp_path / "My Disk.qcow2")
    store = ImageStore(tmp_path / "images")
    events: list[Progress] = []
    image = store.import_file(src, progress=events.append)
    assert image.name == "my-disk" and image.format == "qcow2"
    assert image.path.read_bytes() == src.read_bytes()
    assert image.sha512 == hashlib.sha512(src.read_bytes()).hexdigest()
    assert image.source == str(src.resolve())
    assert events[-1].done and events[-1].step == "import"
    assert src.exists()  # copied, not moved
    with pytest.raises(NotFoundError):
        store.import_file(tmp_path / "missing.qcow2")


@pytest.mark.parametrize("gnu_sparse", [True, False])
def test_importing_a_tar_xz_extracts_the_raw_disk_sparsely(
    tmp_path: Path, gnu_sparse: bool
) -> None:
    raw = tmp_path / "disk.raw"
    content = sparse_raw(raw)
    archive = tmp_path / "debian-12-generic-amd64.tar.xz"
    if gnu_sparse:
        if shutil.which("tar") is None:
            pytest.skip("needs GNU tar")
        subprocess.run(["tar", "-C", str(tmp_path), "-cJSf", str(archive), "disk.raw"], check=True)
    else:
        with tarfile.open(archive, "w:xz") as tar:
            tar.add(raw, arcname="disk.raw")
    raw.unlink()
    store = ImageStore(tmp_path / "images")
    events: list[Progress] = []
    image = store.import_file(archive, progress=events.append)
    assert image.name == "debian-12-generic-amd64"
    assert image.format == "raw" and image.path.name == "disk.raw"
    assert image.path.read_bytes() == content
    assert image.path.stat().st_blocks * 512 < len(content) // 2  # holes stayed holes
    assert any(e.step == "extract" and e.done for e in events)


def test_an_archive_without_a_disk_is_refused(tmp_path: Path) -> None:
    notes = tmp_path / "README"
    notes.write_text("no disk here")
    archive = tmp_path / "x.tar.xz"
    with tarfile.open(archive, "w:xz") as tar:
        tar.add(notes, arcname="README")
    with pytest.raises(ImageError, match="no raw disk"):
        ImageStore(tmp_path / "images").import_file(archive)
    assert ImageStore(tmp_path / "images").list() == []


# -- resolve -------------------------------------------------------------------------------


def test_default_images_per_driver() -> None:
    qemu = default_image("qemu", "amd64")
    assert qemu.url == (
        "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2"
    )
    assert qemu.sums_url.endswith("/bookworm/latest/SHA512SUMS")
    assert (qemu.format, qemu.archive) == ("qcow2", False)
    vbox = default_image("virtualbox", "arm64")
    assert vbox.url.endswith("/debian-12-generic-arm64.tar.xz")
    assert (vbox.name, vbox.format, vbox.archive) == ("debian-12-generic-arm64", "raw", True)
    assert default_image("qemu", "amd64", "http://mirror/x").url == (
        "http://mirror/x/debian-12-genericcloud-amd64.qcow2"
    )
    with pytest.raises(UsageError):
        default_image("hyperv", "amd64")


@needs_qemu_img
def test_resolve_default_downloads_verifies_and_caches(server: ImageServer, tmp_path: Path) -> None:
    arch = host_arch()
    qcow2 = qemu_img("qcow2", tmp_path / "src.qcow2").read_bytes()
    raw = tmp_path / "disk.raw"
    raw_content = sparse_raw(raw)
    archive = tmp_path / "generic.tar.xz"
    with tarfile.open(archive, "w:xz") as tar:
        tar.add(raw, arcname="disk.raw")
    server.add(f"debian-12-genericcloud-{arch}.qcow2", qcow2)
    server.add(f"debian-12-generic-{arch}.tar.xz", archive.read_bytes())
    server.add_sums()
    store = ImageStore(tmp_path / "images", base_url=server.url(""))

    events: list[Progress] = []
    image = store.resolve(None, "qemu", progress=events.append)
    assert image.name == f"debian-12-genericcloud-{arch}"
    assert image.format == "qcow2" and image.path.read_bytes() == qcow2
    assert image.sha512 == hashlib.sha512(qcow2).hexdigest()
    assert image.source == server.url(f"debian-12-genericcloud-{arch}.qcow2")
    assert any(e.step == "download" and e.done for e in events)
    assert not list((store.root / ".downloads").glob("*.part"))

    requests_before = len(server.requests)
    assert store.resolve(None, "qemu") == image
    assert len(server.requests) == requests_before  # cached: nothing fetched

    vbox = store.resolve(None, "virtualbox")
    assert vbox.name == f"debian-12-generic-{arch}" and vbox.format == "raw"
    assert vbox.path.read_bytes() == raw_content
    assert not list((store.root / ".downloads").iterdir()) or all(
        p.suffix == ".lock" for p in (store.root / ".downloads").iterdir()
    )


def test_resolve_default_offline_points_at_image_build(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images", base_url=f"http://127.0.0.1:{closed_port()}/")
    with pytest.raises(ImageError) as info:
        store.resolve(None, "qemu")
    assert "toolbox image build" in (info.value.hint or "")
    # With a local build in the cache, the hint names it.
    src = tmp_path / "src.raw"
    src.write_bytes(b"x")
    store.add(LOCAL_IMAGE_NAME, src, format="raw", arch="amd64", source="t")
    with pytest.raises(ImageError) as info:
        store.resolve(None, "qemu")
    assert f"--image {LOCAL_IMAGE_NAME}" in (info.value.hint or "")


def test_resolve_default_with_a_wrong_checksum_keeps_nothing(
    server: ImageServer, tmp_path: Path
) -> None:
    name = f"debian-12-genericcloud-{host_arch()}.qcow2"
    server.add(name, payload(100_000))
    server.add_sums(wrong={name})
    store = ImageStore(tmp_path / "images", base_url=server.url(""))
    with pytest.raises(ImageError, match="Checksum mismatch"):
        store.resolve(None, "qemu")
    assert store.list() == []
    assert not list((store.root / ".downloads").glob("*.part"))


@needs_qemu_img
def test_resolve_a_url_a_path_and_a_name(server: ImageServer, tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    qcow2 = qemu_img("qcow2", tmp_path / "custom.qcow2")
    url = server.add("custom.qcow2", qcow2.read_bytes())

    by_url = store.resolve(url, "qemu")
    assert (by_url.name, by_url.source, by_url.format) == ("custom", url, "qcow2")
    assert store.resolve(url, "qemu") == by_url
    assert len(server.gets("custom.qcow2")) == 1

    # The same file name from a path: it does not replace the image from the URL.
    by_path = store.resolve(str(qcow2), "qemu")
    assert by_path.name.startswith("custom-") and by_path.source == str(qcow2.resolve())
    assert store.resolve(str(qcow2), "qemu") == by_path  # imported once
    assert store.get("custom") == by_url

    assert store.resolve("custom", "qemu") == by_url
    with pytest.raises(NotFoundError):
        store.resolve("no-such-image", "qemu")
    with pytest.raises(NotFoundError):
        store.resolve(str(tmp_path / "missing" / "x.qcow2"), "qemu")


@needs_qemu_img
def test_a_changed_file_is_imported_again(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    src = qemu_img("qcow2", tmp_path / "disk.qcow2", "64M")
    first = store.resolve(str(src), "qemu")
    qemu_img("qcow2", src, "128M")
    later = dt.datetime.now().timestamp() + 5
    os.utime(src, (later, later))
    second = store.resolve(str(src), "qemu")
    assert second.name == first.name
    assert second.path.read_bytes() == src.read_bytes() != b""
    assert second.sha512 != first.sha512
