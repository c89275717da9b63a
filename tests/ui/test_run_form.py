"""The Run dialog on a Toolbox machine's engine: a bind-mount source on this computer outside
every share of the machine gets an inline warning under Volumes with the ``toolbox share add``
that fixes it, and Run still goes ahead. (The form's validation itself is plain logic:
tests/unit/test_engine_runform.py.)"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import harness
from toolbox.engine.connect import EngineConfig
from toolbox.machine.model import MachineSpec, Share
from toolbox.machine.store import MachineStore
from ui.containers.run_dialog import RunDialog
from ui.session import EngineSession
from ui.tasks import TaskRunner


def _machine(name: str, engine_port: int, shares: tuple[Share, ...]) -> MachineSpec:
    return MachineSpec(
        name=name,
        driver="qemu",
        cpus=1,
        memory_mib=512,
        disk_gib=4,
        image="debian-12",
        ssh_port=harness.free_port(),
        engine_port=engine_port,
        created=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        shares=shares,
    )


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    shared = tmp_path / "shared"
    (shared / "site").mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    return shared, outside


@pytest.fixture
def machine_session(
    qtbot, toolbox_home: Path, tasks: TaskRunner, folders: tuple[Path, Path]
) -> Iterator[EngineSession]:
    """A session on the engine address of machine ``dev`` (recorded in the tmp TOOLBOX_HOME).
    Nothing listens there: the session is never started, and Run fails to connect."""
    shared, _outside = folders
    spec = _machine("dev", harness.free_port(), (Share(str(shared), str(shared)),))
    MachineStore().save(spec)
    session = EngineSession(EngineConfig.from_url(spec.engine_url, name="dev"), tasks)
    yield session
    session.close()


def _open(qtbot, session: EngineSession) -> RunDialog:
    dialog = RunDialog(session, image="busybox:latest")
    qtbot.addWidget(dialog)
    with qtbot.waitSignal(dialog.machine_loaded, timeout=10_000):
        dialog.show()
    return dialog


def test_bind_outside_every_share_is_warned_with_the_fix(
    qtbot, machine_session: EngineSession, folders: tuple[Path, Path]
) -> None:
    shared, outside = folders
    dialog = _open(qtbot, machine_session)
    assert dialog.machine is not None and dialog.machine.name == "dev"
    assert not dialog.bind_warning.isVisible()

    dialog.volumes_edit.setPlainText(f"{shared / 'site'}:/srv:ro\ndata:/data")
    assert not dialog.bind_warning.isVisible()  # inside a share, and a named volume

    dialog.volumes_edit.setPlainText(f"{shared / 'site'}:/srv:ro\n{outside}:/app")
    assert dialog.bind_warning.isVisible()
    text = dialog.bind_warning.text()
    assert f"{outside} is on this computer but outside every share of machine dev" in text
    assert f"toolbox share add dev {outside}" in text
    assert str(shared) not in text.replace(str(outside), "")
    assert not dialog.errors["volumes"].isVisible()  # a warning, not an error

    dialog.volumes_edit.setPlainText(f"{shared / 'site'}:/srv:ro")
    assert not dialog.bind_warning.isVisible()  # fixed by editing: gone at once


def test_the_warning_does_not_block_run(
    qtbot, machine_session: EngineSession, folders: tuple[Path, Path]
) -> None:
    _shared, outside = folders
    dialog = _open(qtbot, machine_session)
    dialog.volumes_edit.setPlainText(f"{outside}:/app")
    assert dialog.bind_warning.isVisible()
    assert dialog.submit_button.isEnabled()
    dialog.submit()
    # The run was sent to the engine (nothing listens there, so the engine's error shows).
    qtbot.waitUntil(dialog.engine_error.isVisible, timeout=30_000)
    assert "Cannot reach" in dialog.engine_error.text()
    assert dialog.bind_warning.isVisible()


def test_no_warning_on_an_engine_that_is_no_machine(
    qtbot, toolbox_home: Path, tasks: TaskRunner, folders: tuple[Path, Path]
) -> None:
    shared, outside = folders
    MachineStore().save(_machine("dev", harness.free_port(), (Share(str(shared), str(shared)),)))
    config = EngineConfig.from_url(f"tcp://127.0.0.1:{harness.free_port()}")
    session = EngineSession(config, tasks)
    try:
        dialog = _open(qtbot, session)
        assert dialog.machine is None
        dialog.volumes_edit.setPlainText(f"{outside}:/app")
        assert not dialog.bind_warning.isVisible()
    finally:
        session.close()


def test_unreadable_machine_record_gives_no_warning_and_no_error(
    qtbot, toolbox_home: Path, tasks: TaskRunner, folders: tuple[Path, Path]
) -> None:
    _shared, outside = folders
    spec = _machine("dev", harness.free_port(), ())
    store = MachineStore()
    store.save(spec)
    store.file_for("dev").write_text("{broken")
    session = EngineSession(EngineConfig.from_url(spec.engine_url), tasks)
    try:
        dialog = _open(qtbot, session)
        assert dialog.machine is None
        dialog.volumes_edit.setPlainText(f"{outside}:/app")
        assert not dialog.bind_warning.isVisible()
        assert not dialog.engine_error.isVisible()
    finally:
        session.close()
