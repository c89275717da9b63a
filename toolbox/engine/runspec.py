"""``RunSpec`` to and from the engine's container JSON: the create body for a spec, the
body for recreating a container with changed settings, and a spec read back from inspect."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from toolbox.engine.parse import EnvVar, PortSpec, RestartPolicy, VolumeSpec
from toolbox.engine.records import RunSpec


def _port_key(spec: PortSpec) -> str:
    return f"{spec.container_port}/{spec.protocol}"


def _host_config(spec: RunSpec) -> dict[str, Any]:
    bindings: dict[str, list[dict[str, str]]] = {}
    for p in spec.ports:
        bindings.setdefault(_port_key(p), []).append(
            {"HostIp": p.host_ip or "", "HostPort": "" if p.host_port is None else str(p.host_port)}
        )
    binds = [v.bind_string() for v in spec.volumes if v.source is not None]
    return {
        "PortBindings": bindings,
        "Binds": binds,
        "RestartPolicy": {
            "Name": spec.restart.value,
            "MaximumRetryCount": spec.restart_max_retries
            if spec.restart is RestartPolicy.ON_FAILURE
            else 0,
        },
        "AutoRemove": spec.auto_remove,
    }


def container_config(spec: RunSpec) -> dict[str, Any]:
    """The engine's create body (``POST /containers/create``) for ``spec``."""
    return {
        "Image": spec.image,
        "Cmd": list(spec.command) if spec.command is not None else None,
        "Env": [str(e) for e in spec.env],
        "Labels": dict(spec.labels),
        "ExposedPorts": {_port_key(p): {} for p in spec.ports},
        "Volumes": {v.target: {} for v in spec.volumes if v.source is None},
        "Tty": spec.tty,
        "OpenStdin": spec.stdin_open,
        "StdinOnce": False,
        "AttachStdin": False,
        "AttachStdout": False,
        "AttachStderr": False,
        "HostConfig": _host_config(spec),
    }


# Config fields carried over on recreate when the user changed them from the image's.
_CARRIED = ("Entrypoint", "WorkingDir", "User", "StopSignal", "Healthcheck", "Domainname")


def recreate_config(
    old: Mapping[str, Any], image_config: Mapping[str, Any], spec: RunSpec
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The create body for recreating ``old`` (inspect JSON) with ``spec``: the spec's
    settings, plus the old container's other host settings and its own config overrides;
    its anonymous volumes are mounted again by name so their data survives. Also returns
    the extra networks to connect after create."""
    config = container_config(spec)
    old_config = old.get("Config") or {}
    same_image = spec.image == old_config.get("Image")
    for key in _CARRIED:
        value = old_config.get(key)
        if value and (not same_image or value != image_config.get(key)):
            config[key] = value
    if old_config.get("Hostname") and not str(old.get("Id", "")).startswith(old_config["Hostname"]):
        config["Hostname"] = old_config["Hostname"]
    host = dict(old.get("HostConfig") or {})
    host.update(config["HostConfig"])
    # Anonymous volumes: mount the old ones by name where the new container wants them.
    wanted = set(config["Volumes"])
    if same_image:
        wanted |= set(image_config.get("Volumes") or {})
    bound = {b.split(":")[1] for b in host.get("Binds") or () if b.count(":") >= 1}
    for mount in old.get("Mounts") or ():
        dest = mount.get("Destination")
        if (
            mount.get("Type") == "volume"
            and mount.get("Name")
            and dest in wanted
            and dest not in bound
        ):
            mode = "rw" if mount.get("RW", True) else "ro"
            host["Binds"] = [*host.get("Binds", []), f"{mount['Name']}:{dest}:{mode}"]
    config["HostConfig"] = host
    networks = dict(((old.get("NetworkSettings") or {}).get("Networks")) or {})
    primary = str(host.get("NetworkMode") or "default")
    extra: dict[str, dict[str, Any]] = {}
    short = str(old.get("Id", ""))[:12]
    for name, endpoint in networks.items():
        if name == primary or (primary == "default" and name == "bridge"):
            continue
        aliases = [a for a in (endpoint or {}).get("Aliases") or () if a != short]
        extra[name] = {"Aliases": aliases}
    return config, extra


def spec_from_inspect(info: Mapping[str, Any], image_config: Mapping[str, Any]) -> RunSpec:
    """A ``RunSpec`` of what the user set on a container (inspect JSON), leaving out what
    its image provides (default command, env, labels, volumes)."""
    cfg = info.get("Config") or {}
    host = info.get("HostConfig") or {}
    cmd = cfg.get("Cmd")
    command = tuple(cmd) if cmd and cmd != image_config.get("Cmd") else None
    image_env = set(image_config.get("Env") or ())
    env = tuple(
        EnvVar(*e.split("=", 1)) for e in cfg.get("Env") or () if "=" in e and e not in image_env
    )
    ports: list[PortSpec] = []

    def port_order(item: tuple[str, Any]) -> tuple[int, str]:
        number, _, proto = item[0].partition("/")
        return (int(number) if number.isdigit() else 0, proto)

    for key, bindings in sorted((host.get("PortBindings") or {}).items(), key=port_order):
        number, _, proto = key.partition("/")
        for b in bindings or ():
            hp = str(b.get("HostPort") or "")
            ports.append(
                PortSpec(
                    int(number),
                    proto or "tcp",
                    b.get("HostIp") or None,
                    int(hp) if hp.isdigit() else None,
                )
            )
    volumes: list[VolumeSpec] = []
    for bind in host.get("Binds") or ():
        volumes.append(_volume_from_bind(bind))
    bound = {v.target for v in volumes}
    image_volumes = set(image_config.get("Volumes") or {})
    for target in cfg.get("Volumes") or {}:
        if target not in bound and target not in image_volumes:
            volumes.append(VolumeSpec(None, target, False, "volume"))
    policy = host.get("RestartPolicy") or {}
    image_labels = image_config.get("Labels") or {}
    labels = {k: v for k, v in (cfg.get("Labels") or {}).items() if image_labels.get(k) != v}
    return RunSpec(
        image=str(cfg.get("Image") or info.get("Image") or ""),
        name=str(info.get("Name") or "").lstrip("/") or None,
        command=command,
        ports=tuple(ports),
        env=env,
        volumes=tuple(volumes),
        restart=RestartPolicy.from_api(policy.get("Name")),
        restart_max_retries=int(policy.get("MaximumRetryCount") or 0),
        auto_remove=bool(host.get("AutoRemove")),
        tty=bool(cfg.get("Tty")),
        stdin_open=bool(cfg.get("OpenStdin")),
        labels=labels,
    )


def _volume_from_bind(bind: str) -> VolumeSpec:
    """``src:dst[:opts]`` from HostConfig.Binds (Windows drive letters included)."""
    drive = ""
    rest = bind
    if re.match(r"[A-Za-z]:[\\/]", bind):
        drive, rest = bind[:2], bind[2:]
    parts = rest.split(":")
    source = drive + parts[0]
    target = parts[1] if len(parts) > 1 else parts[0]
    options = parts[2].split(",") if len(parts) > 2 else []
    kind = "bind" if source.startswith("/") or drive else "volume"
    return VolumeSpec(source, target, "ro" in options, kind)
