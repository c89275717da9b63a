"""A Docker CLI context per machine, so ``docker --context toolbox-NAME ...`` (or
``docker context use``) reaches the machine's engine with its TLS client certificate.

This is the one module that reads and writes the Docker CLI's contexts and ``config.json``
(``toolbox.engine.connect`` and ``toolbox.engine.resolve`` read them through it).

The store layout is the Docker CLI's: ``$DOCKER_CONFIG/contexts/meta/<sha256(name)>/meta.json``
and ``contexts/tls/<sha256(name)>/docker/{ca,cert,key}.pem``. Contexts Toolbox writes carry
``Metadata.ToolboxMachine``; a context of the same name made by someone else is never
overwritten. The user's current context is only changed by ``use_context``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from toolbox.errors import MachineError
from toolbox.fsutil import atomic_write_text

CONTEXT_PREFIX = "toolbox-"
MARKER = "ToolboxMachine"
TLS_FILES = ("ca.pem", "cert.pem", "key.pem")


def context_name(machine: str) -> str:
    """``toolbox-<machine>``: the prefix keeps clear of Docker's reserved ``default`` and of
    the user's own contexts, and makes every name at least two characters as Docker wants."""
    return CONTEXT_PREFIX + machine


def docker_config_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$DOCKER_CONFIG``, else ``~/.docker`` (what the Docker CLI uses)."""
    environ = os.environ if environ is None else environ
    value = environ.get("DOCKER_CONFIG")
    return Path(value).expanduser() if value else Path.home() / ".docker"


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8")).hexdigest()


def meta_dir(name: str, config_dir: Path) -> Path:
    return config_dir / "contexts" / "meta" / _digest(name)


def tls_dir(name: str, config_dir: Path) -> Path:
    return config_dir / "contexts" / "tls" / _digest(name)


class ContextUnreadable(MachineError):
    """A Docker context's ``meta.json`` (or the CLI's ``config.json``) exists but cannot be
    read or is not what the Docker CLI writes."""


@dataclass(frozen=True)
class DockerContext:
    """A context as the Docker CLI stores it (the parts Toolbox uses)."""

    name: str
    host: str
    description: str
    skip_tls_verify: bool
    tls_path: Path | None  # the folder holding ca.pem/cert.pem/key.pem, if any
    machine: str | None  # set when Toolbox wrote it


def read_context(name: str, config_dir: Path | None = None) -> DockerContext | None:
    """The context called ``name``, or None when there is none."""
    config_dir = config_dir or docker_config_dir()
    path = meta_dir(name, config_dir) / "meta.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ContextUnreadable(
            f"Docker context file {path} is not valid JSON",
            hint=f"Remove it with `docker context rm {name}` and retry.",
            details=str(exc),
        ) from exc
    if not isinstance(raw, dict):
        raise ContextUnreadable(
            f"Docker context file {path} is not a JSON object",
            hint=f"Remove it with `docker context rm {name}` and retry.",
        )
    endpoint = (raw.get("Endpoints") or {}).get("docker") or {}
    metadata = raw.get("Metadata") or {}
    tls_path = tls_dir(name, config_dir) / "docker"
    return DockerContext(
        name=str(raw.get("Name", name)),
        host=str(endpoint.get("Host", "")),
        description=str(metadata.get("Description", "")),
        skip_tls_verify=bool(endpoint.get("SkipTLSVerify", False)),
        tls_path=tls_path if tls_path.is_dir() else None,
        machine=metadata.get(MARKER),
    )


def write_context(
    machine: str, host: str, cert_dir: Path, config_dir: Path | None = None
) -> DockerContext:
    """Create or update the machine's context: endpoint ``host`` with TLS verification on and
    the client files from ``cert_dir`` (ca.pem, cert.pem, key.pem)."""
    config_dir = config_dir or docker_config_dir()
    name = context_name(machine)
    existing = read_context(name, config_dir)
    if existing is not None and existing.machine != machine:
        raise MachineError(
            f"A Docker context named {name!r} already exists and was not made by Toolbox",
            hint=f"Remove or rename it (`docker context rm {name}`), then run "
            f"`toolbox start {machine}` again.",
        )
    missing = [f for f in TLS_FILES if not (cert_dir / f).is_file()]
    if missing:
        raise MachineError(
            f"Machine {machine!r} has no TLS client files ({', '.join(missing)}) in {cert_dir}",
            hint=f"Run `toolbox regenerate-certs {machine}`.",
        )
    description = f"Toolbox machine {machine}"
    meta = {
        "Name": name,
        "Metadata": {"Description": description, MARKER: machine},
        "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": False}},
    }
    tls_out = tls_dir(name, config_dir) / "docker"
    tls_out.mkdir(parents=True, exist_ok=True)
    if os.name == "posix":
        tls_dir(name, config_dir).chmod(0o700)
        tls_out.chmod(0o700)
    for filename in TLS_FILES:
        data = (cert_dir / filename).read_text(encoding="utf-8")
        atomic_write_text(tls_out / filename, data, mode=0o600)
    meta_path = meta_dir(name, config_dir)
    meta_path.mkdir(parents=True, exist_ok=True)
    atomic_write_text(meta_path / "meta.json", json.dumps(meta) + "\n")
    return DockerContext(name, host, description, False, tls_out, machine)


def remove_context(machine: str, config_dir: Path | None = None) -> bool:
    """Remove the machine's context (only one Toolbox wrote); if it was the current context,
    Docker goes back to its default. Returns whether anything was removed."""
    config_dir = config_dir or docker_config_dir()
    name = context_name(machine)
    existing = read_context(name, config_dir)
    if existing is None or existing.machine != machine:
        return False
    shutil.rmtree(meta_dir(name, config_dir), ignore_errors=True)
    shutil.rmtree(tls_dir(name, config_dir), ignore_errors=True)
    if current_context(config_dir) == name:
        use_context(None, config_dir)
    return True


def _config_file(config_dir: Path) -> Path:
    return config_dir / "config.json"


def _read_config(config_dir: Path) -> dict[str, object]:
    path = _config_file(config_dir)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ContextUnreadable(
            f"Docker CLI config {path} is not valid JSON",
            hint="Fix the file by hand; Toolbox does not rewrite a file it cannot read.",
            details=str(exc),
        ) from exc
    if not isinstance(raw, dict):
        raise ContextUnreadable(f"Docker CLI config {path} is not a JSON object")
    return raw


def current_context(config_dir: Path | None = None) -> str | None:
    """The Docker CLI's current context from config.json (None means ``default``)."""
    value = _read_config(config_dir or docker_config_dir()).get("currentContext")
    return str(value) if value else None


def use_context(name: str | None, config_dir: Path | None = None) -> None:
    """Make ``name`` the Docker CLI's current context (None: back to ``default``), keeping
    every other setting in config.json."""
    config_dir = config_dir or docker_config_dir()
    config = _read_config(config_dir)
    if name:
        config["currentContext"] = name
    else:
        config.pop("currentContext", None)
    config_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(_config_file(config_dir), json.dumps(config, indent="\t") + "\n", 0o600)


def context_names(config_dir: Path | None = None) -> list[str]:
    """Names of every context in the store (any origin)."""
    root = (config_dir or docker_config_dir()) / "contexts" / "meta"
    names = []
    if root.is_dir():
        for child in root.iterdir():
            with contextlib.suppress(OSError, ValueError):
                raw = json.loads((child / "meta.json").read_text(encoding="utf-8"))
                names.append(str(raw["Name"]))
    return sorted(names)
