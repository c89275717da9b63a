"""The Volumes page against the real engine: create through the dialog, "used by" showing the
container that mounts a volume, removal refused (with the container's name) while in use and
done once it is not, and volumes made in a terminal arriving through events."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest
from PySide6.QtWidgets import QMessageBox

from tests.ui.conftest import unique
from ui.volumes.model import USED_BY
from ui.volumes.page import VolumesPage

pytestmark = [pytest.mark.engine]


@pytest.fixture
def volumes_page(qtbot, context) -> Iterator[VolumesPage]:
    page = VolumesPage(context)
    qtbot.addWidget(page)
    page.resize(1000, 600)
    page.show()
    page.page_shown()
    yield page
    page.shutdown()


def clicked(box: QMessageBox, text: str) -> None:
    next(b for b in box.buttons() if b.text().replace("&", "") == text).click()


def used_by(page: VolumesPage, name: str) -> str | None:
    row = page.model.row_of(name)
    return None if row is None else page.model.index(row, USED_BY).data()


def test_create_validates_and_the_new_row_is_selected(qtbot, volumes_page, docker_client) -> None:
    dialog = volumes_page.open_create_dialog()
    qtbot.addWidget(dialog)
    dialog.name_edit.setText("bad name")
    assert dialog.errors["name"].isVisibleTo(dialog)
    assert "not a valid volume name" in dialog.errors["name"].text()
    dialog.labels_edit.setPlainText("team=ui\nnovalue")
    assert dialog.errors["labels"].text() == "Line 2: 'novalue' has no value: use KEY=VALUE"
    dialog.submit_button.click()
    assert not dialog.running  # refused before reaching the engine
    name = unique("vol")
    dialog.name_edit.setText(name)
    dialog.labels_edit.setPlainText("team=ui")
    assert not any(label.isVisibleTo(dialog) for label in dialog.errors.values())
    with qtbot.waitSignal(dialog.created, timeout=15_000):
        dialog.submit_button.click()
    assert docker_client.api.inspect_volume(name)["Labels"] == {"team": "ui"}
    qtbot.waitUntil(lambda: volumes_page.model.row_of(name) is not None, timeout=15_000)
    assert [e.name for e in volumes_page.selected()] == [name]
    assert used_by(volumes_page, name) == "—"
    # The same name again is caught by the form, not by the engine (which would reuse it).
    again = volumes_page.open_create_dialog()
    qtbot.addWidget(again)
    again.name_edit.setText(name)
    assert again.errors["name"].text() == f"A volume named {name} already exists: pick another name"
    again.reject()
    docker_client.api.remove_volume(name)


def test_in_use_volume_names_its_container_and_is_kept(qtbot, volumes_page, docker_client) -> None:
    name = unique("data")
    docker_client.api.create_volume(name)
    user = docker_client.containers.create(
        "busybox:latest", ["true"], name=unique("user"), volumes={name: {"bind": "/data"}}
    )
    qtbot.waitUntil(lambda: used_by(volumes_page, name) == user.name, timeout=15_000)
    volumes_page.select_keys([name])
    box = volumes_page.confirm_remove()
    assert box is not None and box.text() == f"Cannot remove {name}"
    assert user.name in box.informativeText()
    assert "even with force" in box.informativeText()
    assert [b.text().replace("&", "") for b in box.buttons()] == ["OK"]
    clicked(box, "OK")
    assert volumes_page.last_removal is None
    assert docker_client.api.inspect_volume(name)["Name"] == name

    # Once the container is gone the column follows, and removal goes through.
    user.remove()
    qtbot.waitUntil(lambda: used_by(volumes_page, name) == "—", timeout=15_000)
    volumes_page.select_keys([name])
    box = volumes_page.confirm_remove()
    assert box.text() == f"Remove {name}?"
    clicked(box, "Remove")
    qtbot.waitUntil(lambda: volumes_page.model.row_of(name) is None, timeout=15_000)
    assert volumes_page.last_removal.failures == []
    assert volumes_page.message.text() == f"Removed volume {name}."
    assert name not in {v["Name"] for v in docker_client.api.volumes()["Volumes"] or ()}


def test_engine_refusal_is_explained_with_the_containers(
    qtbot, volumes_page, docker_client
) -> None:
    """The list can be a moment behind: the engine's refusal still names the container."""
    name = unique("race")
    docker_client.api.create_volume(name)
    qtbot.waitUntil(lambda: volumes_page.model.row_of(name) is not None, timeout=15_000)
    entry = volumes_page.model.record_for(name)
    user = docker_client.containers.create(
        "busybox:latest", ["true"], name=unique("late"), volumes={name: {"bind": "/d"}}
    )
    qtbot.waitUntil(lambda: used_by(volumes_page, name) == user.name, timeout=15_000)
    run = volumes_page.remove([entry])  # as if confirmed before the container appeared
    qtbot.waitUntil(lambda: run.left == 0, timeout=15_000)
    [(failed, _error)] = run.failures
    assert failed == name
    dialog = volumes_page.last_error
    assert dialog is not None and dialog.windowTitle() == f"Remove {name} failed"
    assert f"Volume {name} is in use by a container" in dialog.why_label.text()
    assert user.name in dialog.why_label.text()
    dialog.close()
    user.remove()
    docker_client.api.remove_volume(name)


def test_volume_created_in_a_terminal_appears(qtbot, volumes_page, engine) -> None:
    docker_cli = shutil.which("docker")
    if docker_cli is None:
        pytest.skip("the docker CLI is not installed")
    env = dict(os.environ, DOCKER_HOST=engine.url)
    name = unique("cli")
    resets: list[int] = []
    volumes_page.model.modelReset.connect(lambda: resets.append(1))
    subprocess.run(
        [docker_cli, "volume", "create", name], env=env, check=True, timeout=60, capture_output=True
    )
    qtbot.waitUntil(lambda: volumes_page.model.row_of(name) is not None, timeout=15_000)
    subprocess.run(
        [docker_cli, "volume", "rm", name], env=env, check=True, timeout=60, capture_output=True
    )
    qtbot.waitUntil(lambda: volumes_page.model.row_of(name) is None, timeout=15_000)
    assert resets == []
