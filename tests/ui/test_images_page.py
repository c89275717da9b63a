"""The Images page against the real engine and the loopback registry: pull with a real progress
bar and a new row, cancel a pull, push, tag, remove with and without force, prune dangling,
Run pre-filled, and changes made by the docker CLI in a terminal arriving through events.

Pulls go through ``ThrottledProxy``, a real TCP proxy in front of the registry that paces what
it sends back, so a pull lasts long enough to show intermediate progress and to be cancelled
half-way. The image pulled has a layer the engine does not have yet (random bytes committed on
top of busybox), so there are real bytes to download and extract.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator

import docker
import pytest
from PySide6.QtWidgets import QMessageBox

from tests import harness
from tests.ui.conftest import unique
from toolbox.engine.parse import format_size
from ui.images.model import ImagesModel
from ui.images.page import ImagesPage
from ui.images.transfer import BAR_STEPS, Transfer, TransferDialog

pytestmark = [pytest.mark.engine]

LAYER_BYTES = 3_000_000


def pushed_image(client: docker.DockerClient, registry: harness.LocalRegistry, name: str) -> str:
    """Push busybox plus a layer of random bytes as ``<registry>/uitest/<name>:v1`` and remove
    it locally, so pulling it downloads a layer; returns the repository path (no host)."""
    repository = f"uitest/{name}"
    ref = f"{registry.address}/{repository}"
    container = client.containers.run(
        "busybox:latest",
        ["sh", "-c", f"head -c {LAYER_BYTES} /dev/urandom > /blob"],
        detach=True,
    )
    container.wait(timeout=60)
    container.commit(repository=ref, tag="v1")
    container.remove()
    out = list(client.api.push(ref, tag="v1", stream=True, decode=True))
    assert not [line for line in out if "error" in line], out
    client.api.remove_image(f"{ref}:v1")
    return repository


def local(client: docker.DockerClient, ref: str) -> bool:
    return bool(client.api.images(name=ref))


@pytest.fixture
def images_page(qtbot, context) -> Iterator[ImagesPage]:
    page = ImagesPage(context)
    qtbot.addWidget(page)
    page.resize(1000, 600)
    page.show()
    page.page_shown()
    yield page
    page.shutdown()


def open_pull(qtbot, page: ImagesPage, ref: str) -> TransferDialog:
    dialog = page.open_pull_dialog()
    qtbot.addWidget(dialog)
    dialog.ref_edit.setCurrentText(ref)
    return dialog


def clicked(box: QMessageBox, text: str) -> None:
    button = next(b for b in box.buttons() if b.text().replace("&", "") == text)
    button.click()


# -- pull -------------------------------------------------------------------------------------


def test_pull_moves_the_bar_to_100_percent_and_the_row_appears(
    qtbot, images_page, docker_client, registry
) -> None:
    repository = pushed_image(docker_client, registry, unique("pull"))
    proxy = harness.ThrottledProxy(("127.0.0.1", registry.port), rate=1_500_000)
    try:
        ref = f"{proxy.address}/{repository}:v1"
        dialog = open_pull(qtbot, images_page, ref)
        values: list[int] = []
        dialog.bar.valueChanged.connect(values.append)
        with qtbot.waitSignal(dialog.succeeded, timeout=90_000) as blocker:
            dialog.start_button.click()
        assert blocker.args == [ref]
    finally:
        proxy.close()
    assert dialog.bar.maximum() == BAR_STEPS and dialog.bar.value() == BAR_STEPS
    # A real bar: it passed through values in between, never going back.
    assert any(0 < v < BAR_STEPS for v in values), values
    assert values == sorted(values)
    assert dialog.status.text().startswith(f"Pulled {ref} (")
    layers = dialog.layers.records()
    downloaded = [layer for layer in layers if layer.total >= LAYER_BYTES // 2]
    assert downloaded, layers
    assert {layer.status for layer in layers} <= {"Pull complete", "Already exists"}
    qtbot.waitUntil(lambda: images_page.model.record_for(ref) is not None, timeout=15_000)
    assert [row.reference for row in images_page.selected()] == [ref]
    assert local(docker_client, ref)


def test_cancel_stops_a_pull_promptly_and_says_so(
    qtbot, images_page, docker_client, registry
) -> None:
    repository = pushed_image(docker_client, registry, unique("cancel"))
    # About 20 s for the layer at this rate.
    proxy = harness.ThrottledProxy(("127.0.0.1", registry.port), rate=150_000)
    try:
        ref = f"{proxy.address}/{repository}:v1"
        dialog = open_pull(qtbot, images_page, ref)
        dialog.start_button.click()
        assert dialog.cancel_button.text() == "Cancel"
        qtbot.waitUntil(
            lambda: dialog.bar.maximum() == BAR_STEPS and dialog.bar.value() > 0, timeout=30_000
        )
        assert dialog.running
        started = time.monotonic()
        dialog.cancel_button.click()
        qtbot.waitUntil(lambda: not dialog.running, timeout=5_000)
        elapsed = time.monotonic() - started
    finally:
        proxy.close()
    assert dialog.cancelled and dialog.last_error is None
    assert dialog.status.text() == f"Pull of {ref} cancelled; nothing was added."
    assert not dialog.bar.isVisible()
    assert dialog.cancel_button.text() == "Close" and dialog.start_button.isEnabled()
    assert elapsed < 3.0, elapsed
    assert not local(docker_client, ref)
    assert images_page.model.record_for(ref) is None


def test_pull_errors_in_plain_words(qtbot, images_page, registry) -> None:
    missing = f"{registry.address}/uitest/{unique('missing')}:v1"
    dialog = open_pull(qtbot, images_page, missing)
    dialog.start_button.click()
    qtbot.waitUntil(lambda: dialog.error_label.isVisibleTo(dialog), timeout=30_000)
    assert dialog.error_label.text() == f"Image {missing} was not found in its registry"
    assert "Check the name and tag" in dialog.hint_label.text()
    assert dialog.status.text() == f"Pull of {missing} failed."
    assert dialog.start_button.isEnabled()  # fix the name and try again

    nowhere = f"127.0.0.1:{harness.free_port()}/uitest/x:v1"
    dialog.ref_edit.setCurrentText(nowhere)
    dialog.start_button.click()
    assert not dialog.error_label.isVisibleTo(dialog)
    qtbot.waitUntil(lambda: dialog.error_label.isVisibleTo(dialog), timeout=30_000)
    assert dialog.error_label.text() == f"The registry for {nowhere} cannot be reached"
    assert dialog.hint_label.text() == (
        "Check the registry address and that the machine has network access."
    )
    details = dialog.show_details()
    assert details is not None and "connection refused" in details.report()
    details.close()


def test_reference_is_checked_as_typed(qtbot, images_page) -> None:
    dialog = open_pull(qtbot, images_page, "")
    assert not dialog.ref_error.isVisibleTo(dialog)  # nothing typed yet: no scolding
    dialog.ref_edit.setCurrentText("Bad Name")
    assert dialog.ref_error.isVisibleTo(dialog)
    assert dialog.ref_error.text() == "Image name 'Bad Name' contains spaces"
    assert dialog.start() is None and not dialog.running
    dialog.ref_edit.setCurrentText("busybox")
    assert not dialog.ref_error.isVisibleTo(dialog)
    dialog.ref_edit.setCurrentText("")
    dialog.start_button.click()
    assert dialog.ref_error.text().startswith("Type the image to pull")


# -- push -------------------------------------------------------------------------------------


def test_push_with_progress(qtbot, images_page, docker_client, registry) -> None:
    name = unique("push")
    ref = f"{registry.address}/uitest/{name}:v1"
    docker_client.api.tag("busybox:latest", f"{registry.address}/uitest/{name}", "v1")
    qtbot.waitUntil(lambda: images_page.model.record_for(ref) is not None, timeout=15_000)
    images_page.select_keys([ref])
    dialog = images_page.open_push_dialog()
    qtbot.addWidget(dialog)
    assert dialog.mode is Transfer.PUSH and dialog.ref_edit.currentText() == ref
    with qtbot.waitSignal(dialog.succeeded, timeout=60_000):
        dialog.start_button.click()
    assert dialog.bar.value() == BAR_STEPS
    assert dialog.status.text() == f"Pushed {ref}."
    assert dialog.layers.rowCount() >= 1
    url = f"http://{registry.address}/v2/uitest/{name}/tags/list"
    with urllib.request.urlopen(url, timeout=10) as response:
        assert json.load(response)["tags"] == ["v1"]
    docker_client.api.remove_image(ref)


# -- tag, run ---------------------------------------------------------------------------------


def test_tag_then_the_new_row_appears(qtbot, images_page, docker_client) -> None:
    qtbot.waitUntil(
        lambda: images_page.model.record_for("busybox:latest") is not None, timeout=10_000
    )
    images_page.select_keys(["busybox:latest"])
    dialog = images_page.open_tag_dialog()
    assert dialog is not None
    qtbot.addWidget(dialog)
    assert dialog.tag_edit.text() == "busybox:"
    dialog.tag_edit.setText("busybox:latest")
    assert dialog.tag_error.text() == "This image is already tagged busybox:latest"
    new = f"{unique('tagged')}:v2"
    dialog.tag_edit.setText(new)
    assert not dialog.tag_error.isVisibleTo(dialog)
    with qtbot.waitSignal(dialog.tagged, timeout=15_000):
        dialog.submit_button.click()
    qtbot.waitUntil(lambda: images_page.model.record_for(new) is not None, timeout=15_000)
    busybox_id = docker_client.images.get("busybox:latest").id
    assert images_page.model.record_for(new).image.id == busybox_id
    assert [row.reference for row in images_page.selected()] == [new]
    assert images_page.message.text() == f"Tagged {new}."
    docker_client.api.remove_image(new)


def test_run_opens_the_run_dialog_with_the_image(qtbot, images_page) -> None:
    qtbot.waitUntil(
        lambda: images_page.model.record_for("busybox:latest") is not None, timeout=10_000
    )
    images_page.select_keys(["busybox:latest"])
    dialog = images_page.open_run_dialog()
    assert dialog is not None
    qtbot.addWidget(dialog)
    assert dialog.image_edit.currentText() == "busybox:latest"
    dialog.reject()


# -- remove, prune ----------------------------------------------------------------------------


def committed_image(client: docker.DockerClient, repository: str) -> str:
    """A fresh image (its own layer) tagged ``repository:1``; returns its id."""
    container = client.containers.run("busybox:latest", ["sh", "-c", "date > /stamp"], detach=True)
    container.wait(timeout=60)
    image = container.commit(repository=repository, tag="1")
    container.remove()
    return str(image.id)


def test_remove_several_without_force(qtbot, images_page, docker_client) -> None:
    first, second = f"{unique('rm')}:1", f"{unique('rm')}:1"
    for ref in (first, second):
        docker_client.api.tag("busybox:latest", *ref.split(":"))
    model: ImagesModel = images_page.model
    qtbot.waitUntil(
        lambda: model.record_for(first) is not None and model.record_for(second) is not None,
        timeout=15_000,
    )
    assert images_page.select_keys([first, second]) == 2
    box = images_page.confirm_remove()
    assert box is not None and box.text() == "Remove 2 images?"
    assert "Only the name goes for " in box.informativeText()
    assert "the image keeps its other tags" in box.informativeText()
    assert not box.checkBox().isChecked()
    clicked(box, "Remove")
    qtbot.waitUntil(lambda: images_page.last_removal.left == 0, timeout=15_000)
    assert images_page.last_removal.failures == []
    qtbot.waitUntil(
        lambda: model.record_for(first) is None and model.record_for(second) is None,
        timeout=15_000,
    )
    assert images_page.message.text() == "Removed 2 images."
    assert model.record_for("busybox:latest") is not None  # only the tags went


def test_remove_in_use_refused_without_force_then_forced(qtbot, images_page, docker_client) -> None:
    ref = f"{unique('inuse')}:1"
    committed_image(docker_client, ref.split(":")[0])
    user = docker_client.containers.create(ref, ["true"], name=unique("user"))
    model: ImagesModel = images_page.model
    qtbot.waitUntil(lambda: model.record_for(ref) is not None, timeout=15_000)
    qtbot.waitUntil(lambda: images_page.session.container(user.id) is not None, timeout=15_000)
    images_page.select_keys([ref])
    box = images_page.confirm_remove()
    assert box is not None
    assert f"Used by stopped containers: {user.name}." in box.informativeText()
    clicked(box, "Remove")
    qtbot.waitUntil(lambda: images_page.last_removal.left == 0, timeout=15_000)
    [(name, error)] = images_page.last_removal.failures
    assert name == ref
    assert error.message == f"Image {ref} is used by a container or has several tags"
    dialog = images_page.last_error
    assert dialog is not None and dialog.windowTitle() == f"Remove {ref} failed"
    assert "remove it with force" in dialog.hint_label.text()
    dialog.close()
    assert local(docker_client, ref) and model.record_for(ref) is not None

    images_page.select_keys([ref])
    box = images_page.confirm_remove()
    box.checkBox().setChecked(True)
    clicked(box, "Remove")
    qtbot.waitUntil(lambda: images_page.last_removal.left == 0, timeout=15_000)
    assert images_page.last_removal.failures == []
    qtbot.waitUntil(lambda: model.record_for(ref) is None, timeout=15_000)
    assert not local(docker_client, ref)


def test_prune_dangling_reports_reclaimed_space(qtbot, images_page, docker_client) -> None:
    # The usual way an image dangles: its name moves to a newer build.
    repository = unique("rebuilt")
    old = committed_image(docker_client, repository)
    docker_client.api.tag("busybox:latest", repository, "1")
    model: ImagesModel = images_page.model
    qtbot.waitUntil(lambda: model.record_for(old) is not None, timeout=15_000)
    row = model.record_for(old)
    assert (row.repository, row.tag) == ("<none>", "<none>")
    assert "dangling" in images_page.count_label.text()
    box = images_page.confirm_prune()
    info = box.informativeText()
    assert "(<none> in the list)" in info and f"({format_size(row.image.size)})" in info, info
    clicked(box, "Prune")
    qtbot.waitUntil(lambda: images_page.last_prune is not None, timeout=30_000)
    result = images_page.last_prune
    assert old in result.deleted and result.space_reclaimed > 0
    message = images_page.message.text()
    assert message.startswith("Removed ") and " dangling image" in message, message
    assert message.endswith(f"reclaimed {format_size(result.space_reclaimed)}."), message
    qtbot.waitUntil(lambda: model.record_for(old) is None, timeout=15_000)
    assert model.record_for(f"{repository}:1") is not None
    docker_client.api.remove_image(f"{repository}:1")


# -- changes from a terminal --------------------------------------------------------------------


def test_docker_cli_tag_and_rmi_update_the_table_through_events(qtbot, images_page, engine) -> None:
    docker_cli = shutil.which("docker")
    if docker_cli is None:
        pytest.skip("the docker CLI is not installed")
    env = dict(os.environ, DOCKER_HOST=engine.url)
    model: ImagesModel = images_page.model
    qtbot.waitUntil(lambda: model.record_for("busybox:latest") is not None, timeout=10_000)
    resets: list[int] = []
    model.modelReset.connect(lambda: resets.append(1))
    ref = f"{unique('cli')}:v1"
    subprocess.run([docker_cli, "tag", "busybox:latest", ref], env=env, check=True, timeout=60)
    qtbot.waitUntil(lambda: model.record_for(ref) is not None, timeout=15_000)
    subprocess.run([docker_cli, "rmi", ref], env=env, check=True, timeout=60, capture_output=True)
    qtbot.waitUntil(lambda: model.record_for(ref) is None, timeout=15_000)
    assert resets == []
    assert model.record_for("busybox:latest") is not None
