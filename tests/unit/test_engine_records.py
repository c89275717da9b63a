"""Records built from the engine's list JSON (shapes as docker 28 returns them)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from toolbox.engine.parse import human_duration
from toolbox.engine.records import (
    Container,
    ContainerState,
    EngineInfo,
    Event,
    EventType,
    Image,
    Network,
    PortBinding,
    RunSpec,
    Volume,
    image_rows,
    parse_timestamp,
)

NOW = dt.datetime(2025, 6, 1, 12, 0, 0, tzinfo=dt.UTC)

CONTAINER = {
    "Id": "3f1c2a9e8b7d6c5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a",
    "Names": ["/web"],
    "Image": "nginx:1.25",
    "ImageID": "sha256:" + "ab" * 32,
    "Command": "/docker-entrypoint.sh nginx -g 'daemon off;'",
    "Created": 1748700000,
    "Ports": [
        {"IP": "::", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
        {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
        {"PrivatePort": 443, "Type": "tcp"},
        {"IP": "192.168.1.5", "PrivatePort": 53, "PublicPort": 5353, "Type": "udp"},
    ],
    "Labels": {"com.example.role": "front", "empty": None},
    "State": "running",
    "Status": "Up 5 minutes",
    "HostConfig": {"NetworkMode": "bridge"},
    "NetworkSettings": {"Networks": {"frontend": {}, "bridge": {"IPAddress": "172.17.0.2"}}},
    "Mounts": [
        {
            "Type": "volume",
            "Name": "site-data",
            "Source": "/var/lib/docker/volumes/site-data/_data",
            "Destination": "/data",
            "Driver": "local",
            "Mode": "z",
            "RW": True,
            "Propagation": "",
        },
        {
            "Type": "bind",
            "Source": "/srv/conf",
            "Destination": "/etc/nginx/conf.d",
            "Mode": "ro",
            "RW": False,
            "Propagation": "rprivate",
        },
    ],
}


def test_container_from_list_entry() -> None:
    c = Container.from_api(CONTAINER, now=NOW)
    assert c.name == "web"
    assert c.short_id == "3f1c2a9e8b7d"
    assert c.state is ContainerState.RUNNING and c.state.is_running
    assert c.created == dt.datetime(2025, 5, 31, 14, 0, tzinfo=dt.UTC)
    assert c.labels == {"com.example.role": "front", "empty": ""}
    assert c.networks == ("bridge", "frontend")
    assert [m.name for m in c.mounts] == ["site-data", None]
    assert c.mounts[1].read_only and not c.mounts[0].read_only
    assert c.mounts[1].source == "/srv/conf"
    assert c.started_at == NOW - dt.timedelta(minutes=5)
    assert c.finished_at is None and c.exit_code is None


def test_ports_render_like_docker_ps() -> None:
    c = Container.from_api(CONTAINER, now=NOW)
    assert c.ports_text == (
        "192.168.1.5:5353->53/udp, 0.0.0.0:8080->80/tcp, [::]:8080->80/tcp, 443/tcp"
    )
    assert c.urls == ("http://localhost:8080",)
    assert str(PortBinding(443, "tcp", None, None)) == "443/tcp"
    assert PortBinding(443, "tcp", None, None).url is None
    assert PortBinding(80, "tcp", "127.0.0.1", 8080).url == "http://localhost:8080"
    assert PortBinding(80, "tcp", "10.0.0.2", 81).url == "http://10.0.0.2:81"
    assert PortBinding(80, "tcp", "fe80::1", 81).url == "http://[fe80::1]:81"
    assert str(PortBinding(80, "tcp", "127.0.0.1", 8080)) == "127.0.0.1:8080->80/tcp"


@pytest.mark.parametrize(
    ("state", "status", "later", "expected"),
    [
        ("running", "Up 5 minutes", dt.timedelta(minutes=10), "Up 15 minutes"),
        ("running", "Up Less than a second", dt.timedelta(seconds=30), "Up 30 seconds"),
        ("paused", "Up 2 hours (Paused)", dt.timedelta(0), "Up 2 hours (Paused)"),
        ("running", "Up 3 minutes (healthy)", dt.timedelta(minutes=1), "Up 4 minutes (healthy)"),
        ("exited", "Exited (0) 3 days ago", dt.timedelta(days=1), "Exited (0) 4 days ago"),
        (
            "exited",
            "Exited (137) About a minute ago",
            dt.timedelta(0),
            "Exited (137) About a minute ago",
        ),
        (
            "restarting",
            "Restarting (1) 5 seconds ago",
            dt.timedelta(seconds=5),
            "Restarting (1) 10 seconds ago",
        ),
        ("created", "Created", dt.timedelta(days=3), "Created"),
        ("removing", "Removal In Progress", dt.timedelta(0), "Removal In Progress"),
        ("dead", "Dead", dt.timedelta(0), "Dead"),
    ],
)
def test_status_text_renders_from_estimated_times(
    state: str, status: str, later: dt.timedelta, expected: str
) -> None:
    c = Container.from_api({**CONTAINER, "State": state, "Status": status}, now=NOW)
    assert c.status_text(NOW) == status, "rendering at list time reproduces the engine's text"
    assert c.status_text(NOW + later) == expected


@given(st.integers(0, 3 * 365 * 86400), st.sampled_from(["Up {}", "Exited (2) {} ago"]))
def test_status_estimate_reproduces_engine_text(seconds: int, pattern: str) -> None:
    status = pattern.format(human_duration(seconds))
    state = "running" if status.startswith("Up") else "exited"
    c = Container.from_api({**CONTAINER, "State": state, "Status": status}, now=NOW)
    assert c.status_text(NOW) == status


def test_events_update_container_times() -> None:
    c = Container.from_api({**CONTAINER, "State": "created", "Status": "Created"}, now=NOW)
    start = Event.from_api(
        {
            "Type": "container",
            "Action": "start",
            "Actor": {"ID": c.id, "Attributes": {"name": "web"}},
            "time": 1748779200,
            "timeNano": 1748779200_500000000,
        }
    )
    assert start.time == dt.datetime(2025, 6, 1, 12, 0, 0, 500000, tzinfo=dt.UTC)
    running = c.apply_event(start)
    assert running.state is ContainerState.RUNNING
    assert running.status_text(start.time + dt.timedelta(hours=2)) == "Up 2 hours"
    die = Event(EventType.CONTAINER, "die", c.id, {"exitCode": "3"}, start.time)
    stopped = running.apply_event(die)
    assert stopped.status_text(start.time + dt.timedelta(days=3)) == "Exited (3) 3 days ago"
    other = Event(EventType.CONTAINER, "die", "someone-else", {}, start.time)
    assert running.apply_event(other) is running
    renamed = running.apply_event(Event(EventType.CONTAINER, "rename", c.id, {"name": "w2"}, NOW))
    assert renamed.name == "w2"


def test_event_action_is_normalised() -> None:
    e = Event.from_api(
        {
            "Type": "container",
            "Action": "exec_start: sh -c 'echo hi'",
            "Actor": {"ID": "abc", "Attributes": {"image": "busybox", "execID": "e1"}},
            "time": 1700000000,
        }
    )
    assert (e.type, e.action, e.detail, e.id) == (
        EventType.CONTAINER,
        "exec_start",
        "sh -c 'echo hi'",
        "abc",
    )
    h = Event.from_api({"Type": "container", "Action": "health_status: healthy", "Actor": {}})
    assert (h.action, h.detail) == ("health_status", "healthy")
    assert Event.from_api({"Type": "plugin", "Action": "enable"}).type is EventType.OTHER
    assert Event.from_api({"Type": "daemon", "Action": "reload"}).type is EventType.DAEMON


IMAGES = [
    {
        "Id": "sha256:" + "1" * 64,
        "RepoTags": ["busybox:latest", "127.0.0.1:5000/t/busybox:v1"],
        "RepoDigests": ["127.0.0.1:5000/t/busybox@sha256:" + "d" * 64],
        "Created": 1700000000,
        "Size": 1_234_567,
        "Labels": None,
    },
    {
        "Id": "sha256:" + "2" * 64,
        "RepoTags": None,
        "RepoDigests": ["alpine@sha256:" + "e" * 64],
        "Created": 1700000000,
        "Size": 10,
        "Labels": {},
    },
    {
        "Id": "sha256:" + "3" * 64,
        "RepoTags": ["<none>:<none>"],
        "RepoDigests": ["<none>@<none>"],
        "Created": 1700000000,
        "Size": 5,
    },
]


def test_images_and_rows_like_docker_images() -> None:
    images = [Image.from_api(i) for i in IMAGES]
    assert images[0].short_id == "111111111111"
    assert [i.dangling for i in images] == [False, True, True]
    rows = [(r.repository, r.tag) for r in image_rows(images)]
    assert rows == [
        ("busybox", "latest"),
        ("127.0.0.1:5000/t/busybox", "v1"),
        ("alpine", "<none>"),
        ("<none>", "<none>"),
    ]
    assert image_rows(images)[1].reference == "127.0.0.1:5000/t/busybox:v1"
    assert image_rows(images)[3].reference is None


def test_volume_network_info_records() -> None:
    v = Volume.from_api(
        {
            "CreatedAt": "2025-05-31T10:11:12Z",
            "Driver": "local",
            "Labels": None,
            "Mountpoint": "/var/lib/docker/volumes/x/_data",
            "Name": "x",
            "Options": None,
            "Scope": "local",
        }
    )
    assert v.created == dt.datetime(2025, 5, 31, 10, 11, 12, tzinfo=dt.UTC)
    assert v.labels == {}
    n = Network.from_api(
        {
            "Name": "frontend",
            "Id": "f" * 64,
            "Created": "2025-05-31T10:11:12.123456789+02:00",
            "Scope": "local",
            "Driver": "bridge",
            "Internal": True,
            "IPAM": {
                "Driver": "default",
                "Config": [{"Subnet": "10.9.0.0/24", "Gateway": "10.9.0.1"}],
            },
        }
    )
    assert n.created == dt.datetime(2025, 5, 31, 8, 11, 12, 123456, tzinfo=dt.UTC)
    assert (n.subnets, n.internal, n.builtin) == (("10.9.0.0/24",), True, False)
    info = EngineInfo.from_api(
        {
            "ServerVersion": "28.2.2",
            "OSType": "linux",
            "Architecture": "x86_64",
            "Containers": 3,
            "Images": 2,
            "Name": "vm",
        },
        "1.50",
    )
    assert (info.version, info.api_version, info.containers, info.name) == (
        "28.2.2",
        "1.50",
        3,
        "vm",
    )


def test_timestamps() -> None:
    assert parse_timestamp("0001-01-01T00:00:00Z") is None
    assert parse_timestamp("") is None
    assert parse_timestamp("garbage") is None
    assert parse_timestamp(0) is None
    assert parse_timestamp("2025-01-02T03:04:05.999999999Z") == dt.datetime(
        2025, 1, 2, 3, 4, 5, 999999, tzinfo=dt.UTC
    )


@given(
    st.datetimes(min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(2200, 1, 1)),
    st.integers(min_value=0, max_value=9),
)
def test_log_line_timestamps_take_the_fast_path_to_the_same_time(
    moment: dt.datetime, digits: int
) -> None:
    """The engine's log form (nanoseconds, Z, trailing zeros dropped) parses to what the
    general path gives, to the microsecond."""
    fraction = f"{moment.microsecond:06d}000"[:digits].rstrip("0")
    text = f"{moment:%Y-%m-%dT%H:%M:%S}{'.' + fraction if fraction else ''}Z"
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    expected = moment.replace(microsecond=micro, tzinfo=dt.UTC)
    assert parse_timestamp(text) == expected
    assert parse_timestamp(text.replace("Z", "+00:00")) == expected  # the general path
    assert parse_timestamp(text[:19] + ".12x4Z") is None  # not a time: no fast-path guess


def test_run_spec_defaults() -> None:
    spec = RunSpec("busybox")
    assert spec.ports == () and spec.env == () and spec.labels == {}
    assert spec.restart.value == "no"
    assert spec.command is None and not spec.auto_remove
