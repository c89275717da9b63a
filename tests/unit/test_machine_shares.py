"""Shares and where published ports bind: parsing, validation, the record, the service."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.machine_fakes import FakeDriver, FakeGuest
from toolbox.errors import NotFoundError, UsageError, ValidationError
from toolbox.guest.images import ImageStore
from toolbox.machine.model import (
    PortBind,
    Share,
    default_shares,
    guest_path_for,
    parse_share,
    share_covering,
    unshared_host_folder,
    validate_share,
)
from toolbox.machine.service import CreateOptions, MachineService
from toolbox.machine.store import MachineStore


def test_guest_paths_per_host_system() -> None:
    assert guest_path_for("/home/me/src", windows=False) == "/home/me/src"
    assert guest_path_for("C:\\Users\\me\\My Project", windows=True) == "/c/Users/me/My Project"
    assert guest_path_for("D:/data", windows=True) == "/d/data"
    with pytest.raises(ValidationError):
        guest_path_for("relative\\path", windows=True)


def test_default_shares_follow_docker_toolbox() -> None:
    assert default_shares(platform="darwin") == (Share("/Users", "/Users"),)
    assert default_shares(platform="win32") == (Share("C:\\Users", "/c/Users"),)
    assert default_shares("/home/ann", platform="linux") == (Share("/home/ann", "/home/ann"),)


def test_parse_share(tmp_path: Path) -> None:
    folder = tmp_path / "my src ü"
    folder.mkdir()
    assert parse_share(str(folder)) == Share(str(folder), str(folder))
    assert parse_share(f"{folder}:/src:ro") == Share(str(folder), "/src", True)
    assert parse_share(f"{folder}:ro") == Share(str(folder), str(folder), True)
    assert parse_share(f"{folder}:/src:rw") == Share(str(folder), "/src", False)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "Empty share"),
        ("/nonexistent/folder", "not a folder"),
        ("{tmp}:relative", "not absolute"),
        ("{tmp}:/", "would hide"),
        ("{tmp}:/home", "would hide /home/docker"),
        ("{tmp}:/etc/x", "system folder /etc"),
        ("{tmp}:/var/lib/docker", "system folder /var"),
        ("{tmp}:/a:/b:ro", "Invalid share"),
    ],
)
def test_bad_shares_say_why(text: str, why: str, tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as info:
        parse_share(text.format(tmp=tmp_path))
    assert why in str(info.value), str(info.value)
    assert info.value.hint


def test_a_share_inside_the_guest_users_home_is_allowed() -> None:
    assert validate_share(Share("/x", "/home/docker/project")).guest_path == "/home/docker/project"


def test_share_covering(tmp_path: Path) -> None:
    shares = (Share(str(tmp_path / "a"), "/a"), Share(str(tmp_path / "b"), "/b"))
    assert share_covering(shares, str(tmp_path / "a" / "x" / "y")) == shares[0]
    assert share_covering(shares, str(tmp_path / "a")) == shares[0]
    assert share_covering(shares, str(tmp_path / "ab")) is None
    assert share_covering(shares, str(tmp_path)) is None


V2_RECORD = {
    "schema_version": 2,
    "name": "old",
    "driver": "qemu",
    "cpus": 2,
    "memory_mib": 2048,
    "disk_gib": 20,
    "image": "img",
    "ssh_port": 20001,
    "engine_port": 20002,
    "created": "2026-01-01T00:00:00+00:00",
    "provisioned": True,
    "create_phase": "done",
    "ssh_user": "docker",
    "forwards": [],
}


def test_v2_records_get_the_default_share_and_loopback(toolbox_home: Path) -> None:
    store = MachineStore()
    folder = store.dir_for("old")
    folder.mkdir(parents=True)
    (folder / "machine.json").write_text(json.dumps(V2_RECORD))
    spec = store.load("old")
    assert spec.port_bind is PortBind.LOOPBACK
    assert spec.shares == default_shares()
    raw = json.loads((folder / "machine.json").read_text())
    assert raw["schema_version"] == 3 and raw["port_bind"] == "loopback"
    assert (folder / "machine.json.v2.bak").exists()


def test_a_bad_port_bind_in_the_record_is_named(toolbox_home: Path) -> None:
    store = MachineStore()
    folder = store.dir_for("old")
    folder.mkdir(parents=True)
    (folder / "machine.json").write_text(
        json.dumps({**V2_RECORD, "schema_version": 3, "port_bind": "lan", "shares": []})
    )
    with pytest.raises(Exception, match="port_bind"):
        store.load("old")


@pytest.fixture
def service(toolbox_home: Path, tmp_path: Path) -> MachineService:
    images = ImageStore()
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"\0" * 4096)
    images.add("img", disk, format="raw", arch="amd64", source="test")
    driver = FakeDriver()
    return MachineService(
        images=images,
        driver_factory=lambda name: driver,
        guest=FakeGuest(driver),
        default_driver=lambda: "qemu",
    )


def test_create_records_shares_and_bind(service: MachineService, tmp_path: Path) -> None:
    service.create(CreateOptions(name="a", image="img"))
    assert service.get("a").shares == default_shares()
    assert service.get("a").port_bind is PortBind.LOOPBACK
    share = Share(str(tmp_path), "/src", True)
    service.create(
        CreateOptions(name="b", image="img", shares=(share,), port_bind=PortBind.PUBLISHED)
    )
    spec = MachineStore().load("b")  # read back from disk
    assert spec.shares == (share,) and spec.port_bind is PortBind.PUBLISHED
    service.create(CreateOptions(name="c", image="img", shares=()))
    assert service.get("c").shares == ()


def test_two_shares_at_one_guest_path_are_refused(service: MachineService, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="Two shares"):
        service.create(
            CreateOptions(
                name="a",
                image="img",
                shares=(Share(str(tmp_path), "/src"), Share("/other", "/src")),
            )
        )
    assert not service.store.exists("a")


def test_share_add_rm_and_bind(service: MachineService, tmp_path: Path) -> None:
    service.create(CreateOptions(name="a", image="img", shares=()))
    one = tmp_path / "one"
    one.mkdir()
    spec = service.add_share("a", parse_share(f"{one}:/one:ro"))
    assert spec.shares == (Share(str(one), "/one", True),)
    # The same guest path again replaces the share (now writable).
    spec = service.add_share("a", parse_share(f"{one}:/one"))
    assert spec.shares == (Share(str(one), "/one", False),)
    with pytest.raises(NotFoundError):
        service.remove_share("a", "/nothing")
    assert service.remove_share("a", str(one)).shares == ()
    assert service.get("a").shares == ()
    assert service.set_port_bind("a", PortBind.PUBLISHED).port_bind is PortBind.PUBLISHED
    assert service.get("a").port_bind is PortBind.PUBLISHED


def test_unshared_host_folder(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    shares = (Share(str(shared), str(shared)),)
    assert not unshared_host_folder(str(shared / "x"), shares)
    assert unshared_host_folder(str(outside), shares)
    assert not unshared_host_folder(str(tmp_path / "nothing-here"), shares)  # not on the host
    assert not unshared_host_folder("/var/run/docker.sock", shares)  # a guest path
    assert not unshared_host_folder("relative", shares)
    assert not unshared_host_folder("my-volume", shares)  # a named volume
    assert not unshared_host_folder("", shares)
