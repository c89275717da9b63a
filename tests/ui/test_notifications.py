"""Notifications from real engine events: crashes, user stops, unhealthy, crash loops."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.ui.conftest import unique
from toolbox.engine.records import ContainerState
from toolbox.machine.model import MachineState
from ui.notifications import Notification, NotificationKind, Notifier
from ui.settings import Preferences


@pytest.fixture
def notes(qtbot, session):
    fallback: list[str] = []
    notifier = Notifier(None, fallback=fallback.append, group_ms=1500)
    notifier.watch_session(session)
    got: list[Notification] = []
    notifier.notified.connect(got.append)
    notifier.fallback_messages = fallback  # type: ignore[attr-defined]
    yield notifier, got
    notifier.shutdown()


@pytest.fixture
def docker(engine):
    client = engine.client()
    made: list[str] = []
    yield client, made
    for name in made:
        try:
            client.containers.get(name).remove(force=True)
        except Exception:
            pass
    client.close()


def test_a_container_that_exits_1_gives_one_notification(qtbot, notes, docker):
    notifier, got = notes
    client, made = docker
    name = unique("crash")
    made.append(name)
    client.containers.run("busybox:latest", ["sh", "-c", "exit 1"], name=name, detach=True)
    qtbot.waitUntil(lambda: len(got) == 1, timeout=15_000)
    note = got[0]
    assert note.kind is NotificationKind.CONTAINER_EXIT
    assert name in note.message and "code 1" in note.message
    assert note.count == 1
    assert notifier.fallback_messages == [f"{note.title}: {note.message}"]
    with qtbot.waitSignal(notifier.open_requested) as clicked:
        notifier._clicked()
    assert clicked.args == ["container", note.target_id]


def test_a_container_the_user_stops_gives_none(qtbot, notes, docker, session):
    _notifier, got = notes
    client, made = docker
    name = unique("stopped")
    made.append(name)
    # sh ignores SIGTERM as PID 1, so docker stop kills it: exit code 137 after kill/stop.
    container = client.containers.run("busybox:latest", ["sleep", "300"], name=name, detach=True)
    container.stop(timeout=1)
    container.reload()
    assert container.attrs["State"]["ExitCode"] != 0
    # Wait until the session has seen the die, then past the group window.
    qtbot.waitUntil(
        lambda: (
            (c := session.container(container.id)) is not None and c.state is ContainerState.EXITED
        ),
        timeout=15_000,
    )
    qtbot.wait(2500)
    assert got == []


def test_an_unhealthy_container_gives_a_notification(qtbot, notes, docker):
    _notifier, got = notes
    client, made = docker
    name = unique("sick")
    made.append(name)
    client.containers.run(
        "busybox:latest",
        ["sleep", "300"],
        name=name,
        detach=True,
        healthcheck={"test": ["CMD", "false"], "interval": 500_000_000, "retries": 1},
    )
    qtbot.waitUntil(lambda: len(got) >= 1, timeout=30_000)
    assert got[0].kind is NotificationKind.CONTAINER_UNHEALTHY
    assert name in got[0].message
    qtbot.wait(1500)
    assert len(got) == 1  # rate-limited: the next failed checks say nothing


def test_a_crash_loop_gives_one_notification_with_a_count(qtbot, notes, docker):
    _notifier, got = notes
    client, made = docker
    name = unique("loop")
    made.append(name)
    client.containers.run(
        "busybox:latest",
        ["sh", "-c", "exit 3"],
        name=name,
        detach=True,
        restart_policy={"Name": "on-failure", "MaximumRetryCount": 10},
    )
    qtbot.waitUntil(lambda: len(got) >= 1, timeout=20_000)
    qtbot.wait(2000)
    assert len(got) == 1
    assert got[0].count > 1
    assert f"restarted {got[0].count - 1} times" in got[0].message


def test_a_kind_turned_off_is_silent(qtbot):
    prefs = replace(Preferences(), notify_machine_stopped=False)
    notifier = Notifier(None, preferences=lambda: prefs)
    got: list[Notification] = []
    notifier.notified.connect(got.append)
    notifier.machines_changed([_Status("m1", MachineState.RUNNING)])
    notifier.machines_changed([_Status("m1", MachineState.STOPPED)])
    assert got == []
    notifier.preferences = Preferences
    notifier.machines_changed([_Status("m1", MachineState.RUNNING)])
    notifier.machines_changed([_Status("m1", MachineState.STOPPED)])
    assert [n.kind for n in got] == [NotificationKind.MACHINE_STOPPED]
    notifier.machines_changed([_Status("m1", MachineState.RUNNING)])
    notifier.expect_machine_stop("m1")
    notifier.machines_changed([_Status("m1", MachineState.STOPPED)])
    assert len(got) == 1  # the user stopped it


class _Status:
    def __init__(self, name: str, state: MachineState):
        self.name = name
        self.state = state
