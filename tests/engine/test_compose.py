"""Compose projects against the real engine with the distribution's docker-compose: grouping
from the labels, project stop/start/remove, up/down streamed, cancel, and the message when
compose is missing."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path

import pytest

from tests.harness import wait_until
from toolbox.engine import compose
from toolbox.engine.connect import EngineConfig
from toolbox.errors import Cancelled, NotFoundError

pytestmark = pytest.mark.engine

LOOP = "trap 'exit 0' TERM; while true; do echo tick-$$HOSTNAME; sleep 0.3; done"


def write_project(folder: Path, services: tuple[str, ...] = ("web", "worker")) -> Path:
    lines = ['version: "3"', "services:"]
    for s in services:
        lines += [
            f"  {s}:",
            "    image: busybox:latest",
            f'    command: ["sh", "-c", "echo hello-from-{s}; {LOOP}"]',
            "    stop_grace_period: 2s",
        ]
    path = folder / "docker-compose.yml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def needs_compose() -> None:
    if compose.find_compose() is None:
        pytest.skip("no compose CLI installed")


@pytest.fixture
def project(engine, client, docker_client, tmp_path, name):
    """A two-service project brought up with compose; downed (and cleaned) afterwards."""
    needs_compose()
    file = write_project(tmp_path)
    config = EngineConfig.from_url(engine.url)
    try:
        compose.compose_run(config, "up", [str(file)], project=name).run()
    except Exception as exc:
        # docker-compose 1.29's `up` failed once in a helper's run (output not kept): show why
        # and try once more, so a transient failure of the third-party tool is told apart
        # from a failure of ours.
        print(f"docker-compose up failed, retrying once: {exc} {getattr(exc, 'details', '')}")
        with contextlib.suppress(Exception):
            compose.compose_run(config, "down", [str(file)], project=name).run()
        compose.compose_run(config, "up", [str(file)], project=name).run()
    yield name, file, config
    try:
        compose.compose_run(config, "down", [str(file)], project=name).run()
    except Exception:  # the test may have removed it already
        pass


def test_up_groups_containers_under_the_project(project, client, tmp_path):
    name, _file, _ = project
    projects, loose = compose.group_projects(client.containers())
    mine = [p for p in projects if p.name == name]
    assert len(mine) == 1
    p = mine[0]
    assert p.services == ("web", "worker")
    assert p.working_dir == str(tmp_path)
    assert p.config_files and Path(p.config_files[0]).name == "docker-compose.yml"
    assert p.summary == "running 2/2"
    assert p.state is compose.ProjectState.RUNNING
    assert compose.folder_on_host(p)
    assert all(compose.project_of(c) != name for c in loose)


def test_stop_start_remove_change_the_engine(project, client, docker_client):
    name, _, _ = project
    stopped = compose.stop_project(client, name, timeout=2)
    assert sorted(stopped) == sorted(c.name for c in compose.project_containers(client, name))
    assert all(not c.state.is_running for c in compose.project_containers(client, name))
    projects, _ = compose.group_projects(client.containers())
    assert next(p for p in projects if p.name == name).summary == "stopped 0/2"

    docker_client.api.start(compose.project_containers(client, name)[0].id)
    projects, _ = compose.group_projects(client.containers())
    assert next(p for p in projects if p.name == name).summary == "running 1/2"

    started = compose.start_project(client, name)
    assert len(started) == 1
    assert all(c.state.is_running for c in compose.project_containers(client, name))

    nets = compose.project_networks(client, name)
    assert [n["Name"] for n in nets] == [f"{name}_default"]
    removed = compose.remove_project(client, name)
    assert len(removed.containers) == 2
    assert removed.networks == (f"{name}_default",)
    assert compose.project_containers(client, name) == []
    assert compose.project_networks(client, name) == []
    with pytest.raises(NotFoundError):
        compose.stop_project(client, name)


def test_project_logs_prefix_each_service(project, client):
    name, _, _ = project
    got: list[compose.ServiceLine] = []
    lock = threading.Lock()

    def on_lines(lines):
        with lock:
            got.extend(lines)

    logs = compose.ProjectLogs(on_lines)
    logs.follow(client, compose.project_containers(client, name))
    try:
        wait_until(
            lambda: (
                {s.service for s in got if s.line.text.startswith("hello-from-")}
                == {"web", "worker"}
            ),
            timeout=20,
            what="a line from each service",
        )
        for s in got:
            if s.line.text.startswith("hello-from-"):
                assert s.line.text == f"hello-from-{s.service}"
    finally:
        logs.close()
        logs.join()


def test_up_and_down_stream_output(engine, client, tmp_path, name):
    needs_compose()
    file = write_project(tmp_path, ("only",))
    config = EngineConfig.from_url(engine.url)
    lines: list[str] = []
    result = compose.compose_run(
        config, "up", [str(file)], project=name, on_line=lines.append
    ).run()
    assert result.exit_code == 0
    assert any(f"{name}_only_1" in line or f"{name}-only-1" in line for line in lines), lines
    assert [c.name for c in compose.project_containers(client, name)]
    lines.clear()
    compose.compose_run(config, "down", [str(file)], project=name, on_line=lines.append).run()
    assert any("Removing" in line or "Removed" in line for line in lines), lines
    assert compose.project_containers(client, name) == []
    assert compose.project_networks(client, name) == []


def test_cancel_terminates_the_process_group(tmp_path):
    # A stand-in compose that keeps running (and has a child) shows the group is terminated.
    script = tmp_path / "slow"
    script.write_text("#!/bin/sh\necho starting\nsleep 60 &\nwait\n", encoding="utf-8")
    script.chmod(0o755)
    lines: list[str] = []
    run = compose.ComposeRun([str(script)], {"PATH": "/usr/bin:/bin"}, lines.append)
    errors: list[BaseException] = []

    def work():
        try:
            run.run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    wait_until(lambda: lines == ["starting"], timeout=10, what="first line")
    started = time.monotonic()
    run.cancel()
    thread.join(10)
    assert not thread.is_alive()
    assert time.monotonic() - started < 5
    assert len(errors) == 1 and isinstance(errors[0], Cancelled)
    assert run.proc is not None and run.proc.returncode is not None


def test_cancel_a_real_up(engine, client, tmp_path, name):
    needs_compose()
    file = write_project(tmp_path, ("a", "b", "c"))
    config = EngineConfig.from_url(engine.url)
    run = compose.compose_run(config, "up", [str(file)], project=name)
    errors: list[BaseException] = []

    def work():
        try:
            run.run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    wait_until(lambda: run.proc is not None, timeout=10, what="compose started")
    run.cancel()
    thread.join(30)
    assert not thread.is_alive()
    assert isinstance(errors[0], Cancelled)
    compose.compose_run(config, "down", [str(file)], project=name).run()


def test_not_installed_says_what_to_install(engine, tmp_path):
    config = EngineConfig.from_url(engine.url)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NotFoundError) as info:
        compose.compose_run(config, "up", [str(tmp_path / "x.yml")], path=str(empty))
    assert "not installed" in info.value.message
    assert info.value.hint and "docker-compose" in info.value.hint


def test_env_points_at_the_engine_without_ca_overrides(tmp_path):
    config = EngineConfig.from_url("tcp://127.0.0.1:2376", cert_path=tmp_path)
    base = {
        "PATH": "/bin",
        "REQUESTS_CA_BUNDLE": "/etc/ssl/x.pem",
        "CURL_CA_BUNDLE": "/etc/ssl/x.pem",
        "DOCKER_CONTEXT": "other",
    }
    env = compose.compose_env(config, base)
    assert env == {
        "PATH": "/bin",
        "DOCKER_HOST": "tcp://127.0.0.1:2376",
        "DOCKER_TLS_VERIFY": "1",
        "DOCKER_CERT_PATH": str(tmp_path),
    }
    cli = compose.ComposeCLI(("/usr/bin/docker-compose",))
    assert compose.compose_argv(cli, "up", ["a.yml"], "p") == [
        "/usr/bin/docker-compose", "-f", "a.yml", "-p", "p", "up", "-d",
    ]  # fmt: skip
    assert compose.compose_argv(compose.ComposeCLI(("docker", "compose")), "down", [], "p") == [
        "docker", "compose", "-p", "p", "down",
    ]  # fmt: skip


def test_tls_engine_through_compose(engine, client, tmp_path, name):
    """docker-compose 1.29 reaches the TLS engine with DOCKER_CERT_PATH although the
    environment carries a CA bundle that would replace the engine's CA."""
    needs_compose()
    if engine.tls is None:
        pytest.skip("the harness engine has no TLS listener")
    config = EngineConfig.from_url(engine.tls.host, cert_path=engine.tls.cert_path)
    bundle = "/etc/ssl/certs/ca-certificates.crt"
    base = dict(os.environ, REQUESTS_CA_BUNDLE=bundle, CURL_CA_BUNDLE=bundle)
    file = write_project(tmp_path, ("secure",))
    compose.compose_run(config, "up", [str(file)], project=name, base_env=base).run()
    try:
        assert [compose.service_of(c) for c in compose.project_containers(client, name)] == [
            "secure"
        ]
    finally:
        compose.compose_run(config, "down", [str(file)], project=name, base_env=base).run()
    assert compose.project_containers(client, name) == []
