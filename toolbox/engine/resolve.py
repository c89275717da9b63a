"""One engine resolver for the app and the CLI, following the docker CLI's rules.

Which engine (``cli/command/cli.go`` ``resolveContextName`` in docker/cli):

1. ``--engine URL`` (the CLI's ``-H``): that URL.
2. ``--context NAME``: that context (``default`` is the engine ``DOCKER_HOST`` or the platform
   socket names, as for the CLI).
3. ``DOCKER_HOST`` set: that URL (it beats ``DOCKER_CONTEXT`` and the current context).
4. ``DOCKER_CONTEXT`` set: that context.
5. ``currentContext`` in ``$DOCKER_CONFIG/config.json`` (``~/.docker``).
6. The platform's default socket.

TLS for a URL (1, 3, 6; ``cli/flags/options.go``): on when ``DOCKER_TLS_VERIFY`` or
``DOCKER_TLS`` is non-empty, and the server is verified only when ``DOCKER_TLS_VERIFY`` is
non-empty. Any non-empty value counts, ``0`` and ``false`` included, as the docker CLI and
docker-py read it: only unsetting it (or setting it empty) turns verification off. The files
come from ``DOCKER_CERT_PATH`` (default: the Docker config folder); ``DOCKER_CERT_PATH`` alone
does not turn TLS on. A context brings its own endpoint, TLS files and ``SkipTLSVerify``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from toolbox import dockercontext
from toolbox.dockercontext import docker_config_dir as docker_config_dir  # was here
from toolbox.errors import UsageError

if TYPE_CHECKING:
    from toolbox.engine.connect import EngineConfig
    from toolbox.machine.model import MachineSpec
    from toolbox.machine.service import MachineService
    from toolbox.machine.store import MachineStore

DEFAULT_CONTEXT = "default"


def default_url() -> str:
    """The platform's default engine address (what the Docker CLI uses without settings)."""
    if sys.platform == "win32":
        return "npipe:////./pipe/docker_engine"
    return "unix:///var/run/docker.sock"


def normalise_url(url: str) -> str:
    """``/var/run/docker.sock`` -> ``unix:///var/run/docker.sock``; ``host:2376`` ->
    ``tcp://host:2376``; ``https://`` -> ``tcp://``; other schemes are kept."""
    text = url.strip()
    if not text:
        raise UsageError("The engine address is empty", hint="Use unix:///path or tcp://host:port")
    if text.startswith("/"):
        return "unix://" + text
    if "://" not in text:
        return "tcp://" + text
    scheme, _, rest = text.partition("://")
    scheme = scheme.lower()
    if scheme in ("https", "http"):
        return "tcp://" + rest
    if scheme not in ("unix", "tcp", "npipe", "ssh"):
        raise UsageError(
            f"Unsupported engine address {url!r}",
            hint="Use unix:///path/docker.sock, tcp://host:port or npipe:////./pipe/name",
        )
    return f"{scheme}://{rest}"


def current_context_name(config_dir: Path) -> str | None:
    """``currentContext`` of the CLI's ``config.json`` (None when unset or unreadable, as the
    CLI then falls back to ``default``)."""
    try:
        return dockercontext.current_context(config_dir)
    except dockercontext.ContextUnreadable:
        return None


@dataclass(frozen=True)
class EngineChoice:
    """Which engine the rules pick, before any file of it is read: a stored Docker context
    (``context``), or an address with TLS from the environment (``url``; ``default`` tells the
    ``default`` context was named)."""

    url: str | None
    context: str | None
    config_dir: Path
    default: bool = False


def choose_engine(
    engine: str | None = None,
    context: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> EngineChoice:
    """Which engine the docker CLI would use (steps 1-6 of the module docstring). Reads only
    ``config.json``; never imports docker-py (the CLI's ``ls`` uses it)."""
    environ = os.environ if environ is None else environ
    if engine and context:
        raise UsageError(
            "Give either an engine address or a Docker context, not both",
            hint="Drop --engine or --context.",
        )
    config_dir = docker_config_dir(environ)
    if engine:
        return EngineChoice(normalise_url(engine), None, config_dir)
    host = environ.get("DOCKER_HOST") or None
    if context is None and host is None:
        context = environ.get("DOCKER_CONTEXT") or current_context_name(config_dir)
    if context and context != DEFAULT_CONTEXT:
        return EngineChoice(None, context, config_dir)
    url = normalise_url(host) if host else default_url()
    return EngineChoice(url, None, config_dir, default=context == DEFAULT_CONTEXT)


def resolve_engine(
    engine: str | None = None,
    context: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> EngineConfig:
    """The engine settings the docker CLI would use with ``-H engine`` / ``--context context``
    and this environment (see the module docstring). Raises ``UsageError`` when both are
    given, and ``NotFoundError``/``UsageError`` for a missing or broken context. Imports
    docker-py: call it off the GUI thread."""
    from toolbox.engine.connect import EngineConfig

    environ = os.environ if environ is None else environ
    choice = choose_engine(engine, context, environ)
    if choice.context is not None:
        return EngineConfig.from_context(choice.context, choice.config_dir)
    assert choice.url is not None
    config = EngineConfig.from_env({**environ, "DOCKER_HOST": choice.url})
    if choice.default:
        return EngineConfig(
            config.url,
            tls_ca=config.tls_ca,
            tls_cert=config.tls_cert,
            tls_key=config.tls_key,
            tls_verify=config.tls_verify,
            name=DEFAULT_CONTEXT,
            tls_enabled=config.tls_enabled,
        )
    return config


def engine_config_for_machine(service: MachineService, name: str) -> EngineConfig:
    """The machine's engine over its loopback forward, with its client certificate, verified."""
    from toolbox.engine.connect import EngineConfig

    env = service.env(name)
    return EngineConfig.from_url(env.host, cert_path=str(env.cert_path), verify=True, name=name)


def machine_for_engine(url: str, store: MachineStore | None = None) -> MachineSpec | None:
    """The Toolbox machine whose engine is at ``url`` (its loopback forward), or None: an
    engine reached through the machine's session, its Docker context or ``toolbox env`` is
    that machine's. Reads the machine records (no VM, no network)."""
    from toolbox.machine.store import MachineStore

    try:
        wanted = normalise_url(url).rstrip("/")
    except UsageError:
        return None
    store = store if store is not None else MachineStore()
    for entry in store.entries():
        if entry.spec is not None and entry.spec.engine_url == wanted:
            return entry.spec
    return None
