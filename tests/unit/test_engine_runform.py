"""The Run form's validation, without Qt or an engine: every field checked with the engine's
parsers and the reason given per field; bind sources outside every share of the machine."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from toolbox.engine.parse import EnvVar, PortSpec, RestartPolicy, VolumeSpec
from toolbox.engine.records import RunSpec
from toolbox.engine.runform import (
    FIELDS,
    bind_warnings,
    form_texts,
    keep_hidden_settings,
    parse_form,
)
from toolbox.machine.model import MachineSpec, Share


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


def test_errors_name_only_form_fields() -> None:
    _spec, errors = form(image="", name="-x", ports="x", env="=", volumes="a:b", command="'")
    assert set(errors) <= set(FIELDS)
    assert set(errors) == {"image", "name", "ports", "env", "volumes", "command"}


def test_form_texts_give_the_spec_back() -> None:
    spec, _ = form(
        name="web",
        command="sh -c 'echo a b'",
        ports="8080:80\n127.0.0.1:5353:53/udp",
        env="A=1\nB=two words",
        volumes="/srv:/srv:ro\ndata:/data\n/anon",
        restart=RestartPolicy.ON_FAILURE,
        max_retries=2,
    )
    assert spec is not None
    again, errors = form(
        **form_texts(spec), restart=RestartPolicy.ON_FAILURE, max_retries=2, interactive=False
    )
    assert errors == {} and again == spec


def test_recreate_keeps_the_labels_the_form_does_not_show() -> None:
    original = RunSpec(image="busybox", labels=(("com.example.team", "web"),))
    edited, _ = form(image="busybox:1.36")
    assert edited is not None
    kept = keep_hidden_settings(edited, original)
    assert kept.labels == original.labels and kept.image == "busybox:1.36"


# -- bind sources outside the machine's shares --------------------------------------------------


def machine(*shares: Share, name: str = "default") -> MachineSpec:
    return MachineSpec(
        name=name,
        driver="qemu",
        cpus=1,
        memory_mib=512,
        disk_gib=4,
        image="debian-12",
        ssh_port=52222,
        engine_port=52376,
        created=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        shares=shares,
    )


def test_bind_outside_every_share_is_warned_with_the_fix(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    (shared / "site").mkdir(parents=True)
    outside = tmp_path / "my projects" / "app"
    outside.mkdir(parents=True)
    config = tmp_path / "config.yml"
    config.write_text("a: 1\n")
    spec = machine(Share(str(shared), str(shared)), name="dev")
    volumes = "\n".join(
        [
            f"{shared / 'site'}:/usr/share/nginx/html:ro",  # shared: fine
            f"{outside}:/app",  # outside: warned
            f"{config}:/etc/app.yml:ro",  # a file outside: its folder is the fix
            "data:/data",  # a named volume: not a host path
            "/var/run/docker.sock:/var/run/docker.sock",  # the machine's own socket
            f"{tmp_path / 'nowhere'}:/x",  # not on this computer: made in the machine, no warning
            f"{outside}:/again",  # the same source once
            "relative:/bad:zz",  # does not parse: the validation says why, not this
        ]
    )
    warnings = bind_warnings(volumes, spec)
    assert [w.source for w in warnings] == [str(outside), str(config)]
    assert warnings[0].fix == f"toolbox share add dev '{outside}'"
    assert warnings[1].fix == f"toolbox share add dev {tmp_path}"
    assert warnings[0].machine == "dev"
    assert str(outside) in warnings[0].message and "outside every share" in warnings[0].message
    assert warnings[0].fix in warnings[0].message


def test_no_warning_when_a_share_covers_the_source(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    assert bind_warnings(f"{tmp_path / 'a' / 'b'}:/data", machine(Share(str(tmp_path), "/h"))) == ()
    assert bind_warnings("", machine()) == ()
