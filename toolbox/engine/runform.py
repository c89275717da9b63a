"""The Run form (``docker run`` in fields) turned into a ``RunSpec``, without Qt.

``parse_form`` checks every field with the parsers of ``toolbox.engine.parse`` and gives the
reason per field, so the GUI's Run dialog shows it beside that field and the CLI or a test can
use the same rules. Ports, env and volumes take one entry per line (ports may also be
separated by commas).

``bind_warnings`` tells which bind-mount sources are folders on this computer that no share of
the machine covers: the engine in the machine would silently make an empty folder instead (the
trap Docker Toolbox users fell into). They are warnings, not errors: a path that exists in the
machine itself is a fine bind source.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, TypeVar

from toolbox.engine.parse import (
    EnvVar,
    PortSpec,
    RestartPolicy,
    VolumeSpec,
    parse_env,
    parse_image_ref,
    parse_port,
    parse_volume,
)
from toolbox.engine.records import RunSpec
from toolbox.errors import ValidationError
from toolbox.machine.model import unshared_host_folder

if TYPE_CHECKING:
    from toolbox.machine.model import MachineSpec

T = TypeVar("T")

# docker's own rule for container names (daemon/names.go).
CONTAINER_NAME = re.compile(r"/?[a-zA-Z0-9][a-zA-Z0-9_.-]+")
#: The form's fields, in the order they are shown (the first bad one gets the focus).
FIELDS = ("image", "name", "command", "ports", "env", "volumes", "restart")


def _lines(text: str) -> list[tuple[int, str]]:
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def parse_form(
    image: str,
    name: str,
    command: str,
    ports: str,
    env: str,
    volumes: str,
    restart: RestartPolicy,
    max_retries: int,
    auto_remove: bool,
    interactive: bool,
) -> tuple[RunSpec | None, dict[str, str]]:
    """Validate the form's texts; returns the RunSpec (or None) and a reason per bad field
    (keys from ``FIELDS``)."""
    errors: dict[str, str] = {}

    def check(field: str, fn: Callable[[], T], prefix: str = "") -> T | None:
        try:
            return fn()
        except ValidationError as exc:
            errors.setdefault(field, prefix + exc.message)
            return None

    image_text = image.strip()
    if not image_text:
        errors["image"] = "Choose an image to run, like busybox or nginx:1.25"
    else:
        check("image", lambda: parse_image_ref(image_text))

    name_text = name.strip()
    if name_text and not CONTAINER_NAME.fullmatch(name_text):
        errors["name"] = (
            f"{name_text!r} is not a valid name: use letters, digits, '_', '.' and '-', "
            "at least two characters, starting with a letter or digit"
        )

    argv: tuple[str, ...] | None = None
    if command.strip():
        try:
            argv = tuple(shlex.split(command))
        except ValueError as exc:
            errors["command"] = f"The command has an unclosed quote ({exc})"

    port_specs: list[PortSpec] = []
    for _n, line in _lines(ports.replace(",", "\n")):
        port_specs.extend(check("ports", partial(parse_port, line)) or ())
    seen: set[tuple[str, int, str]] = set()
    for p in port_specs:
        if p.host_port is None:
            continue
        slot = (p.host_ip or "", p.host_port, p.protocol)
        if slot in seen:
            errors.setdefault(
                "ports", f"Host port {p.host_port}/{p.protocol} is given twice: use another one"
            )
        seen.add(slot)

    env_lines = _lines(env)
    env_vars: list[EnvVar] = []
    for n, line in env_lines:
        prefix = f"Line {n}: " if len(env_lines) > 1 else ""
        var = check("env", partial(parse_env, line), prefix)
        if var is not None:
            env_vars.append(var)

    volume_lines = _lines(volumes)
    volume_specs: list[VolumeSpec] = []
    for n, line in volume_lines:
        prefix = f"Line {n}: " if len(volume_lines) > 1 else ""
        volume = check("volumes", partial(parse_volume, line), prefix)
        if volume is not None:
            volume_specs.append(volume)
    targets = [v.target.rstrip("/") for v in volume_specs]
    duplicates = sorted({t for t in targets if targets.count(t) > 1})
    if duplicates:
        errors.setdefault("volumes", f"{duplicates[0]} is mounted twice: keep one")

    if auto_remove and restart is not RestartPolicy.NO:
        errors["restart"] = (
            "A container removed when it exits cannot also be restarted: choose 'no' or "
            "untick “Remove when it exits”"
        )

    if errors:
        return None, errors
    spec = RunSpec(
        image=image_text,
        name=name_text.lstrip("/") or None,
        command=argv,
        ports=tuple(port_specs),
        env=tuple(env_vars),
        volumes=tuple(volume_specs),
        restart=restart,
        restart_max_retries=max_retries if restart is RestartPolicy.ON_FAILURE else 0,
        auto_remove=auto_remove,
        tty=interactive,
        stdin_open=interactive,
    )
    return spec, {}


def keep_hidden_settings(spec: RunSpec, original: RunSpec) -> RunSpec:
    """Settings the form does not show (labels) carry over to the recreated container."""
    return replace(spec, labels=original.labels)


def form_texts(spec: RunSpec) -> dict[str, str]:
    """The form's texts for ``spec`` (edit mode), so that ``parse_form`` gives it back."""
    return {
        "image": spec.image,
        "name": spec.name or "",
        "command": shlex.join(spec.command) if spec.command else "",
        "ports": "\n".join(str(p) for p in spec.ports),
        "env": "\n".join(str(e) for e in spec.env),
        "volumes": "\n".join(str(v) for v in spec.volumes),
    }


# -- bind mounts outside every share ---------------------------------------------------------


@dataclass(frozen=True)
class BindWarning:
    """A bind-mount source on this computer that the machine does not share.

    ``fix`` is the command that shares it (its folder, when the source is a file)."""

    source: str
    machine: str
    fix: str

    @property
    def message(self) -> str:
        return (
            f"{self.source} is on this computer but outside every share of machine "
            f"{self.machine}: the container would see an empty folder made in the machine. "
            f"Share it first: {self.fix}"
        )


def bind_warnings(volumes: str, machine: MachineSpec) -> tuple[BindWarning, ...]:
    """One warning per bind source in the volumes text (one entry per line; lines that do
    not parse are the validation's business and skipped here) that is a host folder or file
    outside every share of ``machine``. Each source is warned about once."""
    found: dict[str, BindWarning] = {}
    for _n, line in _lines(volumes):
        try:
            spec = parse_volume(line)
        except ValidationError:
            continue
        source = spec.source
        if spec.kind != "bind" or source is None or source in found:
            continue
        if not unshared_host_folder(source, machine.shares):
            continue
        folder = source if os.path.isdir(source) else os.path.dirname(source)
        fix = shlex.join(["toolbox", "share", "add", machine.name, folder])
        found[source] = BindWarning(source, machine.name, fix)
    return tuple(found.values())
