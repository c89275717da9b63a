"""The machine store: round trip, atomic writes, the per-machine lock across processes,
forward migrations, and damaged files that give a clear error and are left untouched."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.harness import wait_until
from toolbox.errors import MachineError, NotFoundError, ValidationError
from toolbox.machine.model import SCHEMA_VERSION, CreatePhase, MachineSpec, PortForward
from toolbox.machine.store import MIGRATIONS, MachineStore, migrate, spec_to_raw

CREATED = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def make_spec(name: str = "default", **changes: object) -> MachineSpec:
    values: dict[str, object] = dict(
        name=name, driver="qemu", cpus=2, memory_mib=2048, disk_gib=20,
        image="debian-12-local", ssh_port=40022, engine_port=40376, created=CREATED,
    )  # fmt: skip
    values.update(changes)
    return MachineSpec(**values)  # type: ignore[arg-type]


V1_RECORD = {
    "schema_version": 1,
    "name": "old",
    "driver": "virtualbox",
    "cpus": 1,
    "memory_mib": 1024,
    "disk_gib": 10,
    "image": "debian-12-genericcloud-amd64",
    "ssh_port": 50022,
    "engine_port": 50376,
    "created": "2024-05-06T07:08:09+00:00",
    "provisioned": True,
    "create_phase": "done",
    "ssh_user": "docker",
}


def test_round_trip(tmp_path: Path) -> None:
    store = MachineStore(tmp_path)
    spec = make_spec(
        forwards=(PortForward(8080, 80),), provisioned=True, create_phase=CreatePhase.BOOT
    )
    store.save(spec)
    assert store.load("default") == spec
    raw = json.loads((tmp_path / "default" / "machine.json").read_text())
    assert raw["schema_version"] == SCHEMA_VERSION
    assert raw["create_phase"] == "boot"
    assert store.names() == ["default"]
    assert store.exists("default")


def test_default_root_honours_toolbox_home(toolbox_home: Path) -> None:
    store = MachineStore()
    store.save(make_spec())
    assert (toolbox_home / "data" / "machines" / "default" / "machine.json").is_file()


def test_missing_machine_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError) as info:
        MachineStore(tmp_path).load("nope")
    assert "toolbox ls" in (info.value.hint or "")


@pytest.mark.parametrize("name", ["..", "../etc", "a/b", "/tmp/x", "A"])
def test_bad_names_never_become_paths(tmp_path: Path, name: str) -> None:
    store = MachineStore(tmp_path / "store")
    with pytest.raises(ValidationError):
        store.dir_for(name)
    with pytest.raises(ValidationError):
        store.load(name)
    assert not (tmp_path / "etc").exists()


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=20))
def test_any_accepted_name_stays_inside_the_store(tmp_path: Path, name: str) -> None:
    store = MachineStore(tmp_path / "store")
    try:
        path = store.dir_for(name)
    except ValidationError:
        return
    assert path.parent == tmp_path / "store"


def test_write_leaves_no_temp_files(tmp_path: Path) -> None:
    store = MachineStore(tmp_path)
    for cpus in range(1, 6):
        store.save(make_spec(cpus=cpus))
    assert sorted(p.name for p in (tmp_path / "default").iterdir()) == [".lock", "machine.json"]
    assert store.load("default").cpus == 5


WRITER = textwrap.dedent(
    """
    import datetime as dt, sys
    from toolbox.machine.model import MachineSpec
    from toolbox.machine.store import MachineStore
    store = MachineStore(sys.argv[1])
    for i in range(int(sys.argv[2])):
        store.save(MachineSpec(
            name="busy", driver="qemu", cpus=1 + i % 8, memory_mib=1024, disk_gib=20,
            image="x" * (i % 5000), ssh_port=1, engine_port=2,
            created=dt.datetime.now(dt.UTC)))
    """
)


def test_readers_never_see_a_partial_write(tmp_path: Path) -> None:
    """A writer process rewrites the record with sizes from 0 to 5 kB while this process
    reads it continuously: every read is a complete, valid record."""
    store = MachineStore(tmp_path)
    store.save(make_spec("busy"))
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), "300"])
    reads = 0
    try:
        deadline = time.monotonic() + 60
        while writer.poll() is None and time.monotonic() < deadline:
            spec = store.load("busy")
            assert spec.name == "busy" and 1 <= spec.cpus <= 8
            reads += 1
    finally:
        writer.wait(30)
    assert writer.returncode == 0
    assert reads > 10
    assert store.load("busy").cpus == 1 + 299 % 8


HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from toolbox.machine.store import MachineStore
    store = MachineStore(sys.argv[1])
    with store.lock("default"):
        Path(sys.argv[2]).write_text("held")
        while not Path(sys.argv[3]).exists():
            time.sleep(0.02)
    """
)


def test_lock_is_exclusive_across_processes(tmp_path: Path) -> None:
    store = MachineStore(tmp_path / "store")
    store.save(make_spec())
    held, release = tmp_path / "held", tmp_path / "release"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path / "store"), str(held), str(release)]
    )
    try:
        wait_until(held.exists, 30, what="lock holder")
        assert store.is_busy("default")
        with pytest.raises(MachineError) as info, store.lock("default", timeout=0.3):
            pass
        assert "busy" in info.value.message
        assert info.value.hint
    finally:
        release.write_text("go")
        proc.wait(30)
    assert not store.is_busy("default")
    with store.lock("default", timeout=5):
        store.save(make_spec(cpus=3))  # reentrant in the holding thread
    assert store.load("default").cpus == 3


def test_v1_record_migrates_to_current_and_keeps_a_backup(tmp_path: Path) -> None:
    folder = tmp_path / "old"
    folder.mkdir()
    original = json.dumps(V1_RECORD, indent=2)
    (folder / "machine.json").write_text(original)
    spec = MachineStore(tmp_path).load("old")
    assert spec.forwards == ()
    assert spec.schema_version == SCHEMA_VERSION
    assert (spec.driver, spec.ssh_port, spec.provisioned) == ("virtualbox", 50022, True)
    assert spec.created == dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
    rewritten = json.loads((folder / "machine.json").read_text())
    assert rewritten["schema_version"] == SCHEMA_VERSION
    assert rewritten["forwards"] == []
    assert (folder / "machine.json.v1.bak").read_text() == original
    assert MachineStore(tmp_path).load("old") == spec  # already migrated: no change


def test_migrations_go_one_step_at_a_time() -> None:
    assert sorted(MIGRATIONS) == list(range(1, SCHEMA_VERSION))
    raw = dict(V1_RECORD)
    for version in range(1, SCHEMA_VERSION):
        raw = MIGRATIONS[version](raw)
        assert raw["schema_version"] == version + 1
    assert raw == migrate(dict(V1_RECORD))
    assert V1_RECORD["schema_version"] == 1  # the input is not mutated


def test_newer_schema_is_refused_and_left_alone(tmp_path: Path) -> None:
    folder = tmp_path / "future"
    folder.mkdir()
    raw = spec_to_raw(make_spec("future"))
    raw["schema_version"] = SCHEMA_VERSION + 1
    text = json.dumps(raw)
    (folder / "machine.json").write_text(text)
    with pytest.raises(MachineError) as info:
        MachineStore(tmp_path).load("future")
    assert "Upgrade Toolbox" in (info.value.hint or "")
    assert (folder / "machine.json").read_text() == text


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ('{"schema_version": 2, "name": "bad"', "not valid JSON"),
        ("", "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"name": "bad"}', "schema_version"),
        ('{"schema_version": "2"}', "schema_version"),
    ],
)
def test_damaged_record_is_a_clear_error_and_loses_nothing(
    tmp_path: Path, content: str, words: str
) -> None:
    store = MachineStore(tmp_path)
    store.save(make_spec("good"))
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "machine.json").write_text(content)
    with pytest.raises(MachineError) as info:
        store.load("bad")
    assert words in info.value.message
    assert info.value.hint
    assert (folder / "machine.json").read_text() == content
    entries = {e.name: e for e in store.entries()}
    assert entries["good"].spec == make_spec("good")
    assert entries["bad"].spec is None and entries["bad"].error is not None
    assert (folder / "machine.json").read_text() == content


@pytest.mark.parametrize(
    ("key", "value"),
    [("cpus", "2"), ("cpus", True), ("created", "yesterday"), ("create_phase", "flying"),
     ("forwards", [1]), ("name", "Other"), ("provisioned", "yes")],
)  # fmt: skip
def test_wrong_field_types_are_reported_by_name(tmp_path: Path, key: str, value: object) -> None:
    folder = tmp_path / "default"
    folder.mkdir()
    raw = spec_to_raw(make_spec())
    raw[key] = value
    (folder / "machine.json").write_text(json.dumps(raw))
    with pytest.raises(MachineError) as info:
        MachineStore(tmp_path).load("default")
    assert repr(key) in info.value.message


def test_record_for_another_name_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "copy"
    folder.mkdir()
    (folder / "machine.json").write_text(json.dumps(spec_to_raw(make_spec("orig"))))
    with pytest.raises(MachineError):
        MachineStore(tmp_path).load("copy")


def test_delete_removes_everything(tmp_path: Path) -> None:
    store = MachineStore(tmp_path)
    store.save(make_spec())
    (tmp_path / "default" / "disk").mkdir()
    (tmp_path / "default" / "disk" / "overlay.qcow2").write_bytes(b"x")
    with store.lock("default"):
        store.delete("default")
    store.forget_lock("default")
    assert not (tmp_path / "default").exists()
    assert store.names() == []
