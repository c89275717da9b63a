"""The Containers page against the real engine: run from the dialog, actions from the UI, live
updates from the docker CLI through events (no reset, selection and scroll kept), logs,
engine restart, embedded shell."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import docker
import pytest
from PySide6.QtCore import QObject, Qt, QUrl, Slot
from PySide6.QtGui import QDesktopServices, QGuiApplication
from PySide6.QtWidgets import QMessageBox

from tests.ui.conftest import unique
from toolbox.engine.records import ContainerState
from ui.containers import model as cmodel
from ui.containers.page import ACTIONS
from ui.main_window import MainWindow

pytestmark = pytest.mark.engine

TRAP_LOOP = "trap 'exit 0' TERM; while true; do sleep 0.2; done"
ACTION = {a.key: a for a in ACTIONS}


def row_of_name(page, name: str):
    for record in page.model.records():
        if record.name == name:
            return record
    return None


def wait_state(qtbot, page, name: str, state: ContainerState, timeout: int = 20_000) -> None:
    def ok() -> bool:
        record = row_of_name(page, name)
        return record is not None and record.state is state

    qtbot.waitUntil(ok, timeout=timeout)


def create(docker_client: docker.DockerClient, name: str, command: str = TRAP_LOOP, **kw) -> str:
    host_config = docker_client.api.create_host_config(**kw.pop("host_config", {}))
    result = docker_client.api.create_container(
        "busybox:latest", ["sh", "-c", command], name=name, host_config=host_config, **kw
    )
    return str(result["Id"])


def cli(engine, *args: str) -> str:
    docker_bin = shutil.which("docker")
    if docker_bin is None:
        pytest.skip("docker CLI not installed")
    env = dict(os.environ, DOCKER_HOST=engine.url)
    proc = subprocess.run(
        [docker_bin, *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


class ResetCounter:
    def __init__(self, model) -> None:
        self.resets = 0
        model.modelReset.connect(self._bump)
        model.layoutChanged.connect(lambda *a: None)

    def _bump(self) -> None:
        self.resets += 1


def test_run_from_dialog_and_see_it_appear(qtbot, containers_page, docker_client) -> None:
    page = containers_page
    name = unique("run")
    dialog = page.open_run_dialog()
    qtbot.waitUntil(dialog.isVisible, timeout=5000)
    assert "busybox:latest" in [
        dialog.image_edit.itemText(i) for i in range(dialog.image_edit.count())
    ]
    dialog.image_edit.setCurrentText("busybox:latest")
    dialog.name_edit.setText(name)
    dialog.command_edit.setText(f'sh -c "{TRAP_LOOP}"')
    dialog.env_edit.setPlainText("GREETING=hello world")
    with qtbot.waitSignal(dialog.ran, timeout=30_000) as ran:
        qtbot.mouseClick(dialog.submit_button, Qt.MouseButton.LeftButton)
    container_id = ran.args[0]
    wait_state(qtbot, page, name, ContainerState.RUNNING)
    assert not dialog.isVisible()
    env = docker_client.api.inspect_container(container_id)["Config"]["Env"]
    assert "GREETING=hello world" in env
    # The new row gets selected, and the details pane shows it.
    qtbot.waitUntil(lambda: [c.id for c in page.selected()] == [container_id], timeout=5000)
    qtbot.waitUntil(
        lambda: "GREETING=hello world" in page.details.summary.toPlainText(), timeout=10_000
    )
    page.details.setCurrentIndex(2)
    inspected = json.loads(page.details.inspect_view.toPlainText())
    assert inspected["Id"] == container_id
    assert page.details.inspect_view.toPlainText().startswith('{\n  "Id"')


def test_run_dialog_shows_reasons_beside_fields(qtbot, containers_page, docker_client) -> None:
    page = containers_page
    before = {c["Id"] for c in docker_client.api.containers(all=True)}
    dialog = page.open_run_dialog("busybox:latest")
    dialog.ports_edit.setPlainText("8080:http")
    dialog.env_edit.setPlainText("NOVALUE")
    dialog.volumes_edit.setPlainText("./site:/srv")
    qtbot.mouseClick(dialog.submit_button, Qt.MouseButton.LeftButton)
    assert dialog.isVisible()
    assert dialog.errors["ports"].isVisible()
    assert "Container port 'http'" in dialog.errors["ports"].text()
    assert "use KEY=VALUE" in dialog.errors["env"].text()
    assert "not an absolute path" in dialog.errors["volumes"].text()
    assert not dialog.errors["image"].isVisible()
    # Fixing a field clears its reason at once.
    dialog.ports_edit.setPlainText("8080:80")
    assert not dialog.errors["ports"].isVisible()
    assert {c["Id"] for c in docker_client.api.containers(all=True)} == before
    dialog.reject()


def test_engine_refusal_shown_in_plain_words(qtbot, containers_page) -> None:
    dialog = containers_page.open_run_dialog("no-such-image:1.0")
    qtbot.mouseClick(dialog.submit_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(dialog.engine_error.isVisible, timeout=20_000)
    text = dialog.engine_error.text().lower()
    assert "no-such-image" in text
    assert "pull" in text  # the hint says what to do
    assert dialog.isVisible() and dialog.submit_button.isEnabled()
    dialog.reject()


def test_start_stop_pause_kill_from_the_ui(qtbot, containers_page, docker_client) -> None:
    page = containers_page
    name = unique("life")
    create(docker_client, name)
    qtbot.waitUntil(lambda: row_of_name(page, name) is not None, timeout=10_000)
    record = row_of_name(page, name)
    page.select_ids([record.id])
    assert page.actions_by_key["start"].isEnabled()
    assert not page.actions_by_key["stop"].isEnabled()
    page.actions_by_key["start"].trigger()
    wait_state(qtbot, page, name, ContainerState.RUNNING)
    qtbot.waitUntil(lambda: page.actions_by_key["pause"].isEnabled(), timeout=5000)
    page.actions_by_key["pause"].trigger()
    wait_state(qtbot, page, name, ContainerState.PAUSED)
    assert "(Paused)" in page.model.index(page.model.row_of(record.id), cmodel.STATUS).data()
    page.actions_by_key["unpause"].trigger()
    wait_state(qtbot, page, name, ContainerState.RUNNING)
    page.actions_by_key["stop"].trigger()
    wait_state(qtbot, page, name, ContainerState.EXITED)
    assert docker_client.api.inspect_container(record.id)["State"]["ExitCode"] == 0
    page.actions_by_key["start"].trigger()
    wait_state(qtbot, page, name, ContainerState.RUNNING)
    page.actions_by_key["kill"].trigger()
    wait_state(qtbot, page, name, ContainerState.EXITED)
    assert docker_client.api.inspect_container(record.id)["State"]["ExitCode"] == 137


def test_bulk_actions_and_remove_with_confirmation(qtbot, containers_page, docker_client) -> None:
    page = containers_page
    names = [unique("bulk") for _ in range(3)]
    ids = [create(docker_client, n) for n in names]
    docker_client.api.start(ids[0])
    qtbot.waitUntil(lambda: all(row_of_name(page, n) for n in names), timeout=10_000)
    page.select_ids(ids)
    assert len(page.selected()) == 3
    page.run_action(ACTION["start"])
    for n in names:
        wait_state(qtbot, page, n, ContainerState.RUNNING)
    docker_client.api.stop(ids[2], timeout=1)
    wait_state(qtbot, page, names[2], ContainerState.EXITED)
    page.select_ids(ids)
    page.confirm_remove()
    box = page.confirm_box
    assert box is not None and box.isVisible()
    assert "2 running" in box.informativeText()
    remove = next(
        b for b in box.buttons() if box.buttonRole(b) == QMessageBox.ButtonRole.DestructiveRole
    )
    qtbot.mouseClick(remove, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not any(row_of_name(page, n) for n in names), timeout=20_000)
    left = {c["Id"] for c in docker_client.api.containers(all=True)}
    assert not left & set(ids)


def test_cancelled_remove_removes_nothing(qtbot, containers_page, docker_client) -> None:
    page = containers_page
    name = unique("keep")
    cid = create(docker_client, name)
    qtbot.waitUntil(lambda: row_of_name(page, name) is not None, timeout=10_000)
    page.select_ids([cid])
    page.confirm_remove()
    page.confirm_box.reject()
    qtbot.waitUntil(lambda: page.confirm_box is None, timeout=5000)
    assert docker_client.api.inspect_container(cid)["Id"] == cid


def test_failed_action_explains_what_why_and_what_to_do(
    qtbot, containers_page, docker_client
) -> None:
    page = containers_page
    name = unique("gone")
    cid = create(docker_client, name)
    qtbot.waitUntil(lambda: row_of_name(page, name) is not None, timeout=10_000)
    record = row_of_name(page, name)
    docker_client.api.remove_container(cid)  # gone behind the page's back
    page.run_action(ACTION["start"], [record])
    qtbot.waitUntil(
        lambda: page.last_error is not None and page.last_error.isVisible(), timeout=10_000
    )
    dialog = page.last_error
    assert dialog.windowTitle() == f"Start {name} failed"
    assert dialog.why_label.text()
    assert dialog.hint_label.text()
    dialog.close()


def test_cli_changes_arrive_through_events_keeping_selection_and_scroll(
    qtbot, engine, containers_page, docker_client
) -> None:
    page = containers_page
    prefix = unique("many")
    ids = [create(docker_client, f"{prefix}-{i:02}") for i in range(40)]
    qtbot.waitUntil(lambda: all(page.model.row_of(i) is not None for i in ids), timeout=20_000)
    counter = ResetCounter(page.model)
    chosen = ids[20]
    page.select_ids([chosen])
    page.view.scrollTo(page.proxy.mapFromSource(page.model.index(page.model.row_of(chosen), 0)))
    bar = page.view.verticalScrollBar()
    assert bar.maximum() > 0
    scroll = bar.value()
    assert scroll > 0

    name = f"{prefix}-zz-cli"  # sorts after the others: rows above do not move
    cli(engine, "run", "-d", "--name", name, "busybox:latest", "sh", "-c", TRAP_LOOP)
    wait_state(qtbot, page, name, ContainerState.RUNNING)
    cli(engine, "stop", "-t", "5", name)
    wait_state(qtbot, page, name, ContainerState.EXITED)
    record = row_of_name(page, name)
    assert record.exit_code == 0
    cli(engine, "rm", name)
    qtbot.waitUntil(lambda: row_of_name(page, name) is None, timeout=10_000)

    assert counter.resets == 0
    assert [c.id for c in page.selected()] == [chosen]
    assert bar.value() == scroll


def test_published_port_click_opens_browser(qtbot, containers_page, docker_client) -> None:
    page = containers_page
    name = unique("port")
    cid = create(
        docker_client,
        name,
        ports=[80],
        host_config={"port_bindings": {80: ("127.0.0.1", None)}},
    )
    docker_client.api.start(cid)
    wait_state(qtbot, page, name, ContainerState.RUNNING)
    qtbot.waitUntil(lambda: bool(row_of_name(page, name).urls), timeout=10_000)
    host_port = docker_client.api.port(cid, 80)[0]["HostPort"]

    class Browser(QObject):
        def __init__(self) -> None:
            super().__init__()
            self.urls: list[str] = []

        @Slot(QUrl)
        def open(self, url: QUrl) -> None:
            self.urls.append(url.toString())

    browser = Browser()
    QDesktopServices.setUrlHandler("http", browser, "open")
    try:
        row = page.proxy.mapFromSource(page.model.index(page.model.row_of(cid), cmodel.PORTS))
        page.view.scrollTo(row)
        rect = page.view.visualRect(row)
        qtbot.mouseClick(page.view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
        assert browser.urls == [f"http://localhost:{host_port}"]
    finally:
        QDesktopServices.unsetUrlHandler("http")


def test_logs_appear_and_follow(qtbot, containers_page, docker_client) -> None:
    page = containers_page
    name = unique("logs")
    script = (
        "echo first line; while [ ! -f /tmp/go ]; do sleep 0.1; done; echo second line; "
        + TRAP_LOOP
    )
    cid = create(docker_client, name, script)
    docker_client.api.start(cid)
    wait_state(qtbot, page, name, ContainerState.RUNNING)
    page.select_ids([cid])
    page.details.setCurrentIndex(1)
    view = page.details.logs
    qtbot.waitUntil(lambda: "first line" in view.shown_lines(), timeout=10_000)
    assert view.streaming
    exec_id = docker_client.api.exec_create(cid, ["touch", "/tmp/go"])["Id"]
    docker_client.api.exec_start(exec_id)
    qtbot.waitUntil(lambda: "second line" in view.shown_lines(), timeout=10_000)
    # Copy (everything when nothing is selected), search, timestamps.
    view.copy()
    assert "first line\nsecond line" in QGuiApplication.clipboard().text()
    view.search.setText("second")
    assert view.find_next()
    assert view.line_text(view.lines_view.selection()[0]) == "second line"
    view.copy()  # the selected line only
    assert QGuiApplication.clipboard().text() == "second line"
    view.search.setText("absent-text")
    assert not view.find_next() and view.match_label.text() == "No matches"
    view.timestamps_box.setChecked(True)
    first = view.line_text(0)
    assert first.endswith("first line") and first[:2] == "20"
    # Hiding the page stops the stream.
    page.page_hidden()
    assert not view.streaming


def test_a_flood_of_log_lines_is_kept_and_batched(qtbot, containers_page, docker_client) -> None:
    page = containers_page
    name = unique("flood")
    total = 300_000
    script = f"echo ready; while [ ! -f /tmp/go ]; do sleep 0.1; done; seq 1 {total}; {TRAP_LOOP}"
    cid = create(docker_client, name, script)
    docker_client.api.start(cid)
    wait_state(qtbot, page, name, ContainerState.RUNNING)
    page.select_ids([cid])
    page.details.setCurrentIndex(1)
    view = page.details.logs
    qtbot.waitUntil(lambda: "ready" in view.shown_lines(), timeout=10_000)
    exec_id = docker_client.api.exec_create(cid, ["touch", "/tmp/go"])["Id"]
    docker_client.api.exec_start(exec_id)
    # All 300,000 lines stream through the follower and every one is kept.
    qtbot.waitUntil(lambda: view.line_count() and view.line_text(-1) == str(total), timeout=120_000)
    assert view.shown_lines() == ["ready", *map(str, range(1, total + 1))]
    assert view.lines_view.at_end()  # following: the last line in view
    assert view.appends < total // 100  # batches of lines, never one append per line


def test_engine_restart_shows_banner_then_recovers(
    qtbot, engine, session, tasks, docker_client
) -> None:
    window = MainWindow(tasks, engine.url)
    qtbot.addWidget(window)
    window.show()
    window.attach(session)
    page = window.page("containers")
    assert page is not None
    name = unique("survivor")
    create(docker_client, name)
    qtbot.waitUntil(lambda: row_of_name(page, name) is not None, timeout=10_000)
    assert not window.banner.isVisible()
    assert window.windowTitle().startswith("Toolbox — ")
    assert engine.url in window.windowTitle()

    seen: list[tuple[str, bool, str]] = []
    session.state_changed.connect(
        lambda state, _err: seen.append(
            (state.name, window.banner.isVisible(), window.banner.label.text())
        )
    )
    engine.restart()
    qtbot.waitUntil(lambda: any(name == "DISCONNECTED" for name, _v, _t in seen), timeout=30_000)
    lost = next(item for item in seen if item[0] == "DISCONNECTED")
    assert lost[1], "the banner shows while the engine is away"
    assert lost[2].startswith(f"Cannot reach the Docker engine at {session.describe()}")
    assert window.banner.retry_button.isVisible() or session.connected
    qtbot.waitUntil(lambda: session.connected and not window.banner.isVisible(), timeout=60_000)
    qtbot.waitUntil(lambda: row_of_name(page, name) is not None, timeout=20_000)
    other = unique("after")
    create(docker_client, other)
    qtbot.waitUntil(lambda: row_of_name(page, other) is not None, timeout=20_000)
    window.close()


def test_edit_settings_recreates_the_container(qtbot, containers_page, docker_client) -> None:
    page = containers_page
    name = unique("edit")
    cid = create(docker_client, name, environment=["A=1"])
    docker_client.api.start(cid)
    wait_state(qtbot, page, name, ContainerState.RUNNING)
    page.select_ids([cid])
    dialog = page.edit_settings()
    assert dialog is not None and dialog.warning.isVisible()
    qtbot.waitUntil(lambda: dialog.env_edit.toPlainText() == "A=1", timeout=10_000)
    assert dialog.name_edit.text() == name
    assert dialog.submit_button.text() == "Recreate"
    dialog.env_edit.setPlainText("A=2\nB=3")
    with qtbot.waitSignal(dialog.ran, timeout=30_000) as ran:
        qtbot.mouseClick(dialog.submit_button, Qt.MouseButton.LeftButton)
    new_id = ran.args[0]
    assert new_id != cid
    qtbot.waitUntil(
        lambda: page.model.row_of(cid) is None and page.model.row_of(new_id) is not None,
        timeout=20_000,
    )
    wait_state(qtbot, page, name, ContainerState.RUNNING)
    env = docker_client.api.inspect_container(new_id)["Config"]["Env"]
    assert "A=2" in env and "B=3" in env


def test_embedded_console_runs_commands_in_busybox(qtbot, containers_page, docker_client) -> None:
    page = containers_page
    name = unique("shell")
    cid = create(docker_client, name)
    docker_client.api.start(cid)
    wait_state(qtbot, page, name, ContainerState.RUNNING)
    console = page.open_console(row_of_name(page, name))
    qtbot.waitUntil(lambda: console.connected, timeout=10_000)
    qtbot.keyClicks(console.input, "echo hello-$((6*7))")
    qtbot.keyClick(console.input, Qt.Key.Key_Return)
    qtbot.waitUntil(
        lambda: "hello-42" in console.output_text().replace("hello-$((6*7))", ""), timeout=10_000
    )
    console.send_text("exit\n")
    with qtbot.waitSignal(console.ended, timeout=10_000):
        pass
    assert not console.input.isEnabled()
    console.close()


def test_status_column_refreshes_locally_and_pauses_when_hidden(
    qtbot, containers_page, docker_client
) -> None:
    import datetime as dt

    page = containers_page
    name = unique("tick")
    cid = create(docker_client, name)
    docker_client.api.start(cid)
    wait_state(qtbot, page, name, ContainerState.RUNNING)
    row = page.model.row_of(cid)
    record = page.model.record(row)
    later = record.started_at + dt.timedelta(hours=3, minutes=1)
    page.model.tick([row], later)
    assert page.model.index(row, cmodel.STATUS).data() == "Up 3 hours"
    assert page.tick_timer.isActive()
    page.page_hidden()
    assert not page.tick_timer.isActive()
    page.page_shown()
    assert page.tick_timer.isActive()


def test_keyboard_shortcuts_act_on_the_selection(qtbot, containers_page, docker_client) -> None:
    page = containers_page
    name = unique("keys")
    cid = create(docker_client, name)
    qtbot.waitUntil(lambda: page.model.row_of(cid) is not None, timeout=10_000)
    page.activateWindow()
    page.select_ids([cid])
    page.view.setFocus()
    qtbot.waitUntil(page.view.hasFocus, timeout=5000)
    qtbot.keyClick(page.view, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
    wait_state(qtbot, page, name, ContainerState.RUNNING)
    qtbot.keyClick(
        page.view,
        Qt.Key.Key_S,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier,
    )
    wait_state(qtbot, page, name, ContainerState.EXITED)
    qtbot.keyClick(page.view, Qt.Key.Key_Delete)
    qtbot.waitUntil(lambda: page.confirm_box is not None, timeout=5000)
    page.confirm_box.reject()
