"""One engine resolver for the app and the CLI, following the docker CLI.

``--engine URL`` wins, then ``--context NAME``, then ``DOCKER_HOST``/``DOCKER_CONTEXT`` and the
CLI's current context (``EngineConfig.current``). TLS verification is on only when
``DOCKER_TLS_VERIFY`` is non-empty; ``DOCKER_CERT_PATH`` alone gives TLS without verification,
as the docker CLI does.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from toolbox.engine.connect import EngineConfig

if TYPE_CHECKING:
    from toolbox.machine.service import MachineService


def engine_config(
    engine: str | None, context: str | None, environ: Mapping[str, str] = os.environ
) -> EngineConfig:
    """Resolve the engine settings the way the docker CLI does."""
    if engine:
        cert_path = environ.get("DOCKER_CERT_PATH") or None
        verify = bool(environ.get("DOCKER_TLS_VERIFY"))
        return EngineConfig.from_url(engine, cert_path=cert_path, verify=verify)
    if context:
        return EngineConfig.from_context(context)
    return EngineConfig.current(environ)


def engine_config_for_machine(service: MachineService, name: str) -> EngineConfig:
    """The machine's engine over its loopback forward, with its client certificate, verified."""
    env = service.env(name)
    return EngineConfig.from_url(env.host, cert_path=str(env.cert_path), verify=True, name=name)
