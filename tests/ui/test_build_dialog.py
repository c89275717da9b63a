"""The Build dialog and the image details pane against the real engine: a build from a temp
folder started with Enter, its output streamed with step headers and a "Step N/M" bar, the new
image selected in the Images page with its layers in the History tab; a failing step shown
with its output; cancel of a long step; a bad folder refused beside the form."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from tests.ui.conftest import unique
from ui.images.build_dialog import BuildDialog
from ui.images.page import ImagesPage

pytestmark = [pytest.mark.engine]


@pytest.fixture
def images_page(qtbot, context) -> Iterator[ImagesPage]:
    page = ImagesPage(context)
    qtbot.addWidget(page)
    page.resize(1000, 700)
    page.show()
    page.page_shown()
    yield page
    page.shutdown()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "ctx"
    path.mkdir()
    return path


def open_build(qtbot, page: ImagesPage, folder: Path, dockerfile: str) -> BuildDialog:
    (folder / "Dockerfile").write_text(dockerfile)
    dialog = page.open_build_dialog(str(folder))
    qtbot.addWidget(dialog)
    return dialog


def test_build_streams_output_selects_the_image_and_lists_its_layers(
    qtbot, images_page, folder, docker_client
) -> None:
    (folder / "data.txt").write_text("x" * 1000)
    dialog = open_build(
        qtbot,
        images_page,
        folder,
        "FROM busybox:latest\nARG N=1\nRUN echo line-$N > /n && cat /n\nCOPY data.txt /\n",
    )
    tag = f"{unique('built')}:v1"
    dialog.tag_edit.setText(tag)
    dialog.args_edit.setPlainText("N=7\n")
    with qtbot.waitSignal(dialog.built, timeout=60_000) as built:
        QTest.keyClick(dialog.tag_edit, Qt.Key.Key_Return)  # Build is the default button
    image_id, built_tag = built.args
    assert built_tag == tag
    assert docker_client.images.get(tag).id == image_id
    text = dialog.output.toPlainText().splitlines()
    headers = [line for line in text if line.startswith("── Step")]
    assert headers == [
        "── Step 1/4: FROM busybox:latest",
        "── Step 2/4: ARG N=1",
        "── Step 3/4: RUN echo line-$N > /n && cat /n",
        "── Step 4/4: COPY data.txt /",
    ]
    assert "line-7" in text[text.index(headers[2]) :]
    assert dialog.bar.format() == "Step 4/4" and dialog.bar.value() == dialog.bar.maximum()
    assert dialog.status.text().startswith(f"Built {tag}")

    qtbot.waitUntil(lambda: [r.reference for r in images_page.selected()] == [tag], timeout=15_000)
    assert images_page.message.text() == f"Built {tag}."
    details = images_page.details
    qtbot.waitUntil(lambda: details.history_model.rowCount() > 0, timeout=15_000)
    layers = [
        details.history_model.record(i).entry for i in range(details.history_model.rowCount())
    ]
    assert [e.created_by for e in layers[:3]] == [
        "COPY file:" + layers[0].created_by.split("file:", 1)[1],
        "RUN echo line-$N > /n && cat /n",
        "ARG N=1",
    ]
    assert layers[0].size == 1000 and layers[1].size == len("line-7\n")
    assert layers[0].layer_id == image_id
    assert details.history_model.data(details.history_model.index(0, 2)) == "1kB"
    assert json.loads(details.inspect_view.toPlainText())["Id"] == image_id
    docker_client.api.remove_image(tag)


def test_failing_step_is_shown_with_its_output(qtbot, images_page, folder) -> None:
    dialog = open_build(
        qtbot, images_page, folder, "FROM busybox:latest\nRUN echo boom-output && false\n"
    )
    dialog.build_button.click()
    assert dialog.running
    qtbot.waitUntil(lambda: not dialog.running, timeout=60_000)
    assert dialog.error_label.isVisibleTo(dialog)
    assert dialog.error_label.text() == (
        "Step 2/2: RUN echo boom-output && false failed: exited with code 1"
    )
    assert dialog.status.text() == "The build failed at step 2 of 2."
    assert "boom-output" in dialog.output.toPlainText()
    assert dialog.details_button.isVisibleTo(dialog)
    assert dialog.last_error is not None and "boom-output" in (dialog.last_error.details or "")
    assert dialog.build_button.isEnabled()


def test_cancel_stops_the_build(qtbot, images_page, folder, docker_client) -> None:
    dialog = open_build(
        qtbot, images_page, folder, "FROM busybox:latest\nRUN echo started && sleep 60\n"
    )
    tag = f"{unique('cancelled')}:v1"
    dialog.tag_edit.setText(tag)
    dialog.build_button.click()
    qtbot.waitUntil(lambda: "started" in dialog.output.toPlainText(), timeout=60_000)
    assert dialog.close_button.text() == "Cancel"
    dialog.close_button.click()
    qtbot.waitUntil(lambda: not dialog.running, timeout=10_000)
    assert dialog.cancelled
    assert dialog.status.text() == "Build cancelled; no image was tagged."
    assert not docker_client.api.images(name=tag)


def test_bad_folder_is_refused_beside_the_form(qtbot, images_page, tmp_path) -> None:
    dialog = images_page.open_build_dialog(str(tmp_path / "missing"))
    qtbot.addWidget(dialog)
    assert dialog.start() is None
    assert dialog.field_error.isVisibleTo(dialog)
    assert "does not exist" in dialog.field_error.text()
    dialog.folder_edit.setText(str(tmp_path))
    dialog.args_edit.setPlainText("NOVALUE")
    (tmp_path / "Dockerfile").write_text("FROM busybox:latest\n")
    assert dialog.start() is None
    assert "NOVALUE" in dialog.field_error.text() and "KEY=VALUE" in dialog.field_error.text()
