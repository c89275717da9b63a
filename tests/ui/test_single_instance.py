"""Single instance: a second launch activates the first and exits."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from ui.single_instance import SingleInstance, server_name

ROOT = Path(__file__).resolve().parents[2]


def test_second_instance_activates_the_first(qtbot):
    name = f"toolbox-test-{uuid.uuid4().hex[:8]}"
    first = SingleInstance(name)
    assert first.acquire()
    try:
        second = SingleInstance(name)
        with qtbot.waitSignal(first.activated, timeout=5000):
            assert not second.acquire()
        assert first.activations == 1
    finally:
        first.release()


def test_key_depends_on_toolbox_home():
    assert server_name("/a") != server_name("/b")
    assert server_name("/a") == server_name("/a")


def test_second_process_exits_0_and_first_is_activated(qtbot, tmp_path):
    env = {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "TOOLBOX_HOME": str(tmp_path / "home"),
        "TOOLBOX_TEST_LOG_ACTIVATE": "1",
        "DOCKER_HOST": "unix:///nonexistent.sock",
    }
    first = subprocess.Popen(
        [sys.executable, "-m", "ui"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        # Wait until the first one listens: a probe instance that fails to acquire means it does.
        probe = SingleInstance(server_name(env["TOOLBOX_HOME"]))
        qtbot.waitUntil(lambda: _listening(probe), timeout=20_000)
        second = subprocess.run(
            [sys.executable, "-m", "ui"], cwd=ROOT, env=env, timeout=20, capture_output=True
        )
        assert second.returncode == 0
        assert first.stdout is not None
        lines = []
        while "activated" not in lines:
            line = first.stdout.readline()
            assert line, "first instance ended without logging the activation"
            lines.append(line.strip())
    finally:
        first.terminate()
        first.wait(10)


def _listening(probe: SingleInstance) -> bool:
    return probe._notify_running()
