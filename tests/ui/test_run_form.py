"""The Run form's validation, without an engine: every field checked with the engine's parsers
and the reason given per field."""

from __future__ import annotations

import pytest

from toolbox.engine.parse import EnvVar, PortSpec, RestartPolicy, VolumeSpec
from toolbox.engine.records import RunSpec
from ui.containers.run_dialog import parse_form


def form(**changes):
    values = dict(
        image="busybox:latest",
        name="",
        command="",
        ports="",
        env="",
        volumes="",
        restart=RestartPolicy.NO,
        max_retries=0,
        auto_remove=False,
        interactive=False,
    )
    values.update(changes)
    return parse_form(**values)


def test_full_form_builds_a_run_spec() -> None:
    spec, errors = form(
        name="web-1",
        command="sh -c 'echo hi; sleep 100'",
        ports="8080:80, 127.0.0.1:5353:53/udp\n9000",
        env="A=1\n\nB=x=y\nEMPTY=",
        volumes="/srv/site:/usr/share/site:ro\ndata:/data",
        restart=RestartPolicy.ON_FAILURE,
        max_retries=3,
        interactive=True,
    )
    assert errors == {}
    assert spec == RunSpec(
        image="busybox:latest",
        name="web-1",
        command=("sh", "-c", "echo hi; sleep 100"),
        ports=(
            PortSpec(80, "tcp", None, 8080),
            PortSpec(53, "udp", "127.0.0.1", 5353),
            PortSpec(9000, "tcp", None, None),
        ),
        env=(EnvVar("A", "1"), EnvVar("B", "x=y"), EnvVar("EMPTY", "")),
        volumes=(
            VolumeSpec("/srv/site", "/usr/share/site", True, "bind"),
            VolumeSpec("data", "/data", False, "volume"),
        ),
        restart=RestartPolicy.ON_FAILURE,
        restart_max_retries=3,
        tty=True,
        stdin_open=True,
    )


def test_retries_only_for_on_failure() -> None:
    spec, _ = form(restart=RestartPolicy.ALWAYS, max_retries=5)
    assert spec is not None and spec.restart_max_retries == 0


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"image": "  "}, "image", "Choose an image"),
        ({"image": "Busybox"}, "image", "lowercase"),
        ({"name": "-web"}, "name", "not a valid name"),
        ({"name": "a"}, "name", "at least two characters"),
        ({"command": "sh -c 'oops"}, "command", "unclosed quote"),
        ({"ports": "80:abc"}, "ports", "Container port 'abc'"),
        ({"ports": "70000:80"}, "ports", "out of range"),
        ({"ports": "8080:80\n8080:81"}, "ports", "given twice"),
        ({"ports": "80/xtp"}, "ports", "Unknown protocol"),
        ({"env": "JUSTKEY"}, "env", "use KEY=VALUE"),
        ({"env": "A=1\nBAD KEY=2"}, "env", "Line 2: Variable name 'BAD KEY' contains spaces"),
        ({"volumes": "relative/path:/data"}, "volumes", "not an absolute path"),
        ({"volumes": "/a:data"}, "volumes", "must be absolute"),
        ({"volumes": "/a:/data:rx"}, "volumes", "Unknown volume option"),
        ({"volumes": "/a:/data\n/b:/data/"}, "volumes", "mounted twice"),
        (
            {"auto_remove": True, "restart": RestartPolicy.ALWAYS},
            "restart",
            "cannot also be restarted",
        ),
    ],
)
def test_bad_fields_give_a_reason_for_that_field(changes, field: str, words: str) -> None:
    spec, errors = form(**changes)
    assert spec is None
    assert list(errors) == [field]
    assert words in errors[field]
