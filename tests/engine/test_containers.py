"""Containers on the real engine: list records (one request, no inspect), lifecycle, run from
a RunSpec, the engine's errors in plain words, spec_of and recreate."""

from __future__ import annotations

import dataclasses
import datetime as dt
import socket

import docker
import pytest

from tests.harness import wait_until
from toolbox.engine.client import EngineClient
from toolbox.engine.parse import EnvVar, PortSpec, RestartPolicy, VolumeSpec, parse_port
from toolbox.engine.records import ContainerState, RunSpec
from toolbox.errors import EngineError, NotFoundError

pytestmark = pytest.mark.engine

SLEEP = ("sleep", "300")


def _count_requests(client: EngineClient) -> list[str]:
    """Record every HTTP request the client makes from now on."""
    seen: list[str] = []
    client.api.hooks["response"].append(lambda r, *a, **k: seen.append(r.request.url))
    return seen


def test_list_records_come_from_one_request(client: EngineClient, name: str, tmp_path) -> None:
    client.create_volume(f"{name}-vol")
    spec = RunSpec(
        image="busybox:latest",
        name=name,
        command=SLEEP,
        ports=parse_port("127.0.0.1::80") + parse_port("9000/udp"),
        env=(EnvVar("GREETING", "hello world"),),
        volumes=(
            VolumeSpec(str(tmp_path), "/host", True, "bind"),
            VolumeSpec(f"{name}-vol", "/data", False, "volume"),
        ),
        labels={"com.example.test": "yes"},
    )
    ids = [client.run(spec)]
    ids += [client.run(RunSpec("busybox:latest", command=SLEEP)) for _ in range(4)]
    requests_made = _count_requests(client)
    containers = client.containers()
    assert len(requests_made) == 1 and "/containers/json" in requests_made[0]
    assert {c.id for c in containers} >= set(ids)

    c = next(c for c in containers if c.id == ids[0])
    assert c.name == name and c.image == "busybox:latest"
    assert c.state is ContainerState.RUNNING and c.status.startswith("Up")
    assert c.status_text(dt.datetime.now(dt.UTC)).startswith("Up")
    assert c.labels["com.example.test"] == "yes"
    assert c.networks == ("bridge",)
    published = [p for p in c.ports if p.container_port == 80]
    assert published and published[0].host_ip == "127.0.0.1" and published[0].host_port
    assert c.urls == (f"http://localhost:{published[0].host_port}",)
    # "-p 9000/udp" publishes on a free host port, like docker run.
    udp = [p for p in c.ports if p.container_port == 9000]
    assert udp and all(p.protocol == "udp" and p.host_port for p in udp)
    assert str(udp[0]).endswith(f":{udp[0].host_port}->9000/udp")
    mounts = {m.destination: m for m in c.mounts}
    assert mounts["/host"].type == "bind" and mounts["/host"].read_only
    assert mounts["/data"].name == f"{name}-vol" and not mounts["/data"].read_only

    # container(): by id prefix and by exact name, still from the list API.
    requests_made.clear()
    assert client.container(ids[0][:12]).id == ids[0]
    assert client.container(name).id == ids[0]
    assert all("/containers/json" in u for u in requests_made)
    with pytest.raises(NotFoundError, match="does not exist"):
        client.container(name[:-1])  # a prefix of a name is not that container
    assert client.volume_users(containers)[f"{name}-vol"] == [name]


def test_lifecycle(client: EngineClient, name: str) -> None:
    cid = client.run(RunSpec("busybox:latest", name=name, command=SLEEP))
    assert client.container(cid).state is ContainerState.RUNNING
    client.pause(cid)
    paused = client.container(cid)
    assert paused.state is ContainerState.PAUSED and paused.status.endswith("(Paused)")
    client.unpause(cid)
    client.restart(cid, timeout=1)
    assert client.container(cid).state is ContainerState.RUNNING
    client.kill(cid)
    killed = client.container(cid)
    assert killed.state is ContainerState.EXITED and killed.exit_code == 137
    assert killed.status_text(dt.datetime.now(dt.UTC)).startswith("Exited (137)")
    client.start(cid)
    client.stop(cid, timeout=1)
    assert client.container(cid).state is ContainerState.EXITED
    client.rename(cid, name + "-2")
    assert client.container(cid).name == name + "-2"
    client.remove(cid)
    with pytest.raises(NotFoundError):
        client.container(cid)


def test_run_options_reach_the_engine(client: EngineClient, name: str) -> None:
    spec = RunSpec(
        "busybox:latest",
        name=name,
        command=("sh", "-c", "echo $GREETING; exit 3"),
        env=(EnvVar("GREETING", "hi there"),),
        restart=RestartPolicy.ON_FAILURE,
        restart_max_retries=2,
    )
    cid = client.run(spec)
    info = client.inspect_container(cid)
    assert info["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
    wait_until(lambda: client.inspect_container(cid)["RestartCount"] == 2, 60, what="2 restarts")
    wait_until(lambda: not client.inspect_container(cid)["State"]["Running"], 30, what="stopped")
    assert [line.text for line in client.logs(cid)] == ["hi there"] * 3

    auto = client.run(RunSpec("busybox:latest", command=("true",), auto_remove=True))
    wait_until(lambda: auto not in {c.id for c in client.containers()}, 30, what="auto-removed")


def test_engine_errors_in_plain_words(client: EngineClient, name: str) -> None:
    cid = client.run(RunSpec("busybox:latest", name=name, command=SLEEP))

    with pytest.raises(EngineError, match="already used by another container") as in_use:
        client.run(RunSpec("busybox:latest", name=name, command=SLEEP))
    assert in_use.value.hint and "name" in in_use.value.hint

    with pytest.raises(NotFoundError, match="not on the engine") as no_image:
        client.run(RunSpec("no-such-image:1", command=SLEEP))
    assert "Pull" in (no_image.value.hint or "")

    with pytest.raises(EngineError, match="is running") as running:
        client.remove(cid)
    assert "force" in (running.value.hint or "")

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        before = {c.id for c in client.containers()}
        spec = RunSpec(
            "busybox:latest",
            name=name + "-p",
            command=SLEEP,
            ports=(PortSpec(80, "tcp", "127.0.0.1", port),),
        )
        with pytest.raises(EngineError, match=f"Port {port} is already in use") as taken:
            client.run(spec)
        assert "another host port" in (taken.value.hint or "")
        # The half-made container was removed again, so the name is free for a retry.
        assert {c.id for c in client.containers()} == before

    with pytest.raises(EngineError, match="Conflicting settings"):
        client.run(
            RunSpec("busybox:latest", command=SLEEP, auto_remove=True, restart=RestartPolicy.ALWAYS)
        )
    with pytest.raises(NotFoundError, match="does not exist"):
        client.stop("no-such-container")


def test_spec_of_round_trips_what_the_user_set(client: EngineClient, name: str, tmp_path) -> None:
    spec = RunSpec(
        image="busybox:latest",
        name=name,
        command=SLEEP,
        ports=(PortSpec(80, "tcp", "127.0.0.1", None), PortSpec(53, "udp", None, None)),
        env=(EnvVar("A", "1"), EnvVar("B", "x=y")),
        volumes=(
            VolumeSpec(str(tmp_path), "/host", True, "bind"),
            VolumeSpec(f"{name}-v", "/named", False, "volume"),
            VolumeSpec(None, "/anon", False, "volume"),
        ),
        restart=RestartPolicy.UNLESS_STOPPED,
        tty=True,
        stdin_open=True,
        labels={"role": "test"},
    )
    cid = client.run(spec)
    back = client.spec_of(cid)
    by_port = sorted(spec.ports, key=lambda p: (p.container_port, p.protocol))
    assert back == dataclasses.replace(spec, ports=tuple(by_port))
    plain = client.run(RunSpec("busybox:latest"))  # the image's own CMD: command stays None
    assert client.spec_of(plain).command is None


def test_recreate_replaces_and_keeps_anonymous_volume_data(client: EngineClient, name: str) -> None:
    spec = RunSpec(
        "busybox:latest",
        name=name,
        command=("sh", "-c", "echo kept > /data/f; sleep 300"),
        volumes=(VolumeSpec(None, "/data", False, "volume"),),
    )
    old = client.run(spec)
    wait_until(
        lambda: client.logs(old) is not None and _cat(client, old, "/data/f") == "kept",
        30,
        what="file",
    )
    new_spec = RunSpec(
        "busybox:latest",
        name=name,
        command=SLEEP,
        env=(EnvVar("NEW", "1"),),
        volumes=(VolumeSpec(None, "/data", False, "volume"),),
    )
    new = client.recreate(old, new_spec)
    assert new != old
    c = client.container(name)
    assert c.id == new and c.state is ContainerState.RUNNING
    assert old not in {x.id for x in client.containers()}
    assert "NEW=1" in client.inspect_container(new)["Config"]["Env"]
    assert _cat(client, new, "/data/f") == "kept"


def _cat(client: EngineClient, cid: str, path: str) -> str:
    exec_id = client.api.exec_create(cid, ["cat", path])["Id"]
    return client.api.exec_start(exec_id).decode().strip()


def _snapshot(client: EngineClient, cid: str) -> tuple:
    info = client.inspect_container(cid)
    return (
        info["Id"],
        info["Name"],
        info["State"]["Running"],
        info["HostConfig"]["PortBindings"],
        info["Config"]["Env"],
    )


@pytest.mark.parametrize("failure", ["create", "start"])
def test_recreate_failure_puts_the_old_container_back(
    client: EngineClient, name: str, failure: str
) -> None:
    old = client.run(
        RunSpec(
            "busybox:latest",
            name=name,
            command=SLEEP,
            ports=(PortSpec(80, "tcp", "127.0.0.1", None),),
            env=(EnvVar("OLD", "1"),),
        )
    )
    before = _snapshot(client, old)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        if failure == "create":
            bad = PortSpec(
                80, "tcp", None, 70000
            )  # past parse_port's checks; the engine refuses it
        else:
            bad = PortSpec(80, "tcp", "127.0.0.1", busy.getsockname()[1])  # taken: start fails
        new_spec = RunSpec("busybox:latest", name=name, command=SLEEP, ports=(bad,))
        with pytest.raises(EngineError):
            client.recreate(old, new_spec)
    assert _snapshot(client, old) == before
    assert [c.id for c in client.containers() if c.name.startswith(name)] == [old]
    assert client.container(name).id == old


def test_container_record_from_events(
    client: EngineClient, docker_client: docker.DockerClient, name: str
) -> None:
    """status_text keeps up with time without asking the engine again."""
    cid = client.run(RunSpec("busybox:latest", name=name, command=SLEEP))
    c = client.container(cid)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=3)
    assert c.status_text(later) == "Up 3 hours"
