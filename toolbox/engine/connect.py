"""Where an engine is and how to reach it: ``EngineConfig`` from a URL, from the
``DOCKER_*`` environment, or from a Docker CLI context.

The docker-py client made from it is in ``toolbox.engine.apiclient``, the errors in
``toolbox.engine.errors``, the ``EngineClient`` (and its factory ``connect``) in
``toolbox.engine.client``; the names that used to be defined here are re-exported below.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

# Re-exported: defined here before the engine package was split by concern.
from toolbox import dockercontext
from toolbox.engine.apiclient import (  # noqa: F401
    DEFAULT_TIMEOUT,
    PinnedAPIClient,
    _is_loopback,
    make_api_client,
)
from toolbox.engine.errors import unreachable  # noqa: F401
from toolbox.engine.resolve import (  # re-exported: they were defined here first
    DEFAULT_CONTEXT,
    default_url,
    docker_config_dir,
    normalise_url,
    resolve_engine,
)
from toolbox.errors import EngineUnreachable as EngineUnreachable  # re-exported
from toolbox.errors import NotFoundError, UsageError

if TYPE_CHECKING:
    from toolbox.engine.client import EngineClient

_default_config_dir = docker_config_dir  # from_context's argument shadows the name

CA_FILE, CERT_FILE, KEY_FILE = "ca.pem", "cert.pem", "key.pem"


def _context_digest(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class EngineConfig:
    """How to reach one engine. With TLS files set (or ``tls_verify``) a ``tcp://`` URL is
    spoken over TLS; ``tls_verify`` checks the server against ``tls_ca``."""

    url: str
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_verify: bool = True
    name: str = ""
    context: str | None = None  # the Docker CLI context this came from, if any
    docker_config: Path | None = None  # the CLI config dir that context lives in
    tls_enabled: bool = False  # TLS even without files (DOCKER_TLS_VERIFY=1, public CA)

    # ---------------------------------------------------------------- constructors

    @classmethod
    def from_url(
        cls, url: str, cert_path: str | Path | None = None, verify: bool = True, name: str = ""
    ) -> EngineConfig:
        """An engine at ``url``; ``cert_path`` is a folder with ``ca.pem``, ``cert.pem`` and
        ``key.pem`` (a ``DOCKER_CERT_PATH``) and turns TLS on."""
        normalised = normalise_url(url)
        if cert_path is None:
            return cls(normalised, tls_verify=verify, name=name or normalised)
        folder = Path(cert_path).expanduser()
        return cls(
            normalised,
            tls_ca=folder / CA_FILE,
            tls_cert=folder / CERT_FILE,
            tls_key=folder / KEY_FILE,
            tls_verify=verify,
            name=name or normalised,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> EngineConfig:
        """From ``DOCKER_HOST``, ``DOCKER_TLS_VERIFY`` and ``DOCKER_CERT_PATH`` as the Docker
        CLI reads them (an empty value counts as unset; no ``DOCKER_HOST`` means the
        platform default)."""
        environ = os.environ if environ is None else environ
        host = environ.get("DOCKER_HOST") or default_url()
        verify = bool(environ.get("DOCKER_TLS_VERIFY"))
        tls = verify or bool(environ.get("DOCKER_TLS"))
        if not tls:
            return cls.from_url(host)
        cert_path = environ.get("DOCKER_CERT_PATH") or str(docker_config_dir(environ))
        config = cls.from_url(host, cert_path, verify=verify)
        # Client files are optional, as for the CLI: only use the ones that exist.
        return cls(
            config.url,
            tls_ca=_existing(config.tls_ca),
            tls_cert=_existing(config.tls_cert),
            tls_key=_existing(config.tls_key),
            tls_verify=verify,
            name=config.name,
            tls_enabled=True,
        )

    @classmethod
    def from_context(cls, name: str, docker_config_dir: str | Path | None = None) -> EngineConfig:
        """From a Docker CLI context: ``contexts/meta/<sha256(name)>/meta.json`` for the
        endpoint and ``contexts/tls/<sha256(name)>/docker/`` for its TLS files."""
        config_dir = Path(docker_config_dir) if docker_config_dir else _default_config_dir()
        if name == DEFAULT_CONTEXT:
            return cls(default_url(), name=DEFAULT_CONTEXT, context=DEFAULT_CONTEXT)
        try:
            found = dockercontext.read_context(name, config_dir)
        except dockercontext.ContextUnreadable as exc:
            raise UsageError(
                f"Docker context {name!r} cannot be read "
                f"({dockercontext.meta_dir(name, config_dir) / 'meta.json'}): {exc.details or exc}",
                hint=f"Re-create it, or remove it with `docker context rm {name}`.",
            ) from exc
        if found is None:
            raise NotFoundError(
                f"There is no Docker context named {name!r}",
                hint="List the contexts with `docker context ls`.",
            )
        if not found.host:
            raise UsageError(
                f"Docker context {name!r} has no Docker endpoint",
                hint=f"Inspect it with `docker context inspect {name}`.",
            )
        tls_dir = dockercontext.tls_dir(name, config_dir) / "docker"
        return cls(
            normalise_url(found.host),
            tls_ca=_existing(tls_dir / CA_FILE),
            tls_cert=_existing(tls_dir / CERT_FILE),
            tls_key=_existing(tls_dir / KEY_FILE),
            tls_verify=not found.skip_tls_verify,
            name=name,
            context=name,
            docker_config=Path(docker_config_dir) if docker_config_dir else None,
        )

    @classmethod
    def current(
        cls,
        environ: Mapping[str, str] | None = None,
        docker_config_dir: str | Path | None = None,
    ) -> EngineConfig:
        """The engine the ``docker`` CLI would talk to (``toolbox.engine.resolve``):
        ``DOCKER_HOST`` wins, then ``DOCKER_CONTEXT``, then the CLI's current context, then the
        platform default."""
        environ = os.environ if environ is None else environ
        if docker_config_dir is not None:
            environ = {**environ, "DOCKER_CONFIG": str(docker_config_dir)}
        return resolve_engine(None, None, environ)

    # ---------------------------------------------------------------- properties

    @property
    def scheme(self) -> str:
        return self.url.partition("://")[0]

    @property
    def uses_tls(self) -> bool:
        """TLS is spoken on tcp URLs that have TLS files or were told to use TLS."""
        if self.scheme != "tcp":
            return False
        return bool(self.tls_enabled or self.tls_ca or self.tls_cert or self.tls_key)

    @property
    def cert_dir(self) -> Path | None:
        """The folder holding ca.pem/cert.pem/key.pem together, when they are laid out like a
        ``DOCKER_CERT_PATH`` (what ``DOCKER_CERT_PATH`` can point at)."""
        files = (self.tls_ca, self.tls_cert, self.tls_key)
        if not all(files):
            return None
        folders = {f.parent for f in files if f is not None}
        names = tuple(f.name for f in files if f is not None)
        if len(folders) == 1 and names == (CA_FILE, CERT_FILE, KEY_FILE):
            return folders.pop()
        return None

    def describe(self) -> str:
        """One line for people: where the engine is and how it is secured."""
        head = f"context {self.context} ({self.url})" if self.context else self.url
        if not self.uses_tls:
            return head
        if not self.tls_verify:
            return f"{head}, TLS without server verification"
        if self.tls_cert is None:
            return f"{head}, TLS without a client certificate"
        return f"{head}, mutual TLS"

    def docker_cli_args(self) -> list[str]:
        """Global options for the ``docker`` CLI to reach this engine."""
        args: list[str] = []
        if self.docker_config is not None:
            args += ["--config", str(self.docker_config)]
        if self.context:
            return [*args, "--context", self.context]
        args += ["-H", self.url]
        if self.uses_tls:
            args.append("--tlsverify" if self.tls_verify else "--tls")
            for flag, path in (
                ("--tlscacert", self.tls_ca),
                ("--tlscert", self.tls_cert),
                ("--tlskey", self.tls_key),
            ):
                if path is not None:
                    args += [flag, str(path)]
        return args

    # ---------------------------------------------------------------- connecting

    def connect(self, timeout: float = DEFAULT_TIMEOUT) -> EngineClient:
        """An ``EngineClient`` for this engine (one per thread). Raises ``EngineUnreachable``
        with a hint when the engine cannot be reached or refuses the certificates."""
        # A late import: client.py builds on this module (EngineConfig), not the reverse.
        from toolbox.engine.client import connect

        return connect(self, timeout)


def _existing(path: Path | None) -> Path | None:
    return path if path is not None and path.is_file() else None
