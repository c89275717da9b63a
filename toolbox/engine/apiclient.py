"""The docker-py client under ``EngineClient``: an ``APIClient`` whose TLS verification
always uses the configured CA, made from an ``EngineConfig``.

TLS is verified against the configured CA even when ``REQUESTS_CA_BUNDLE`` or
``CURL_CA_BUNDLE`` are set: requests lets those silently replace a session's CA, which would
make a private engine CA fail (or, worse, trust the public bundle instead of it).
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import docker

from toolbox.engine.errors import unreachable
from toolbox.errors import EngineUnreachable

if TYPE_CHECKING:
    from toolbox.engine.connect import EngineConfig

DEFAULT_TIMEOUT = 30.0


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class PinnedAPIClient(docker.APIClient):
    """docker-py's APIClient with the session's own CA always used for verification.

    requests replaces a session's ``verify`` with ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``
    when a request does not pass one; this puts the session's back. Proxies from the
    environment are not used for loopback engines (as Go's HTTP client does not).
    """

    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> dict[str, Any]:
        settings: dict[str, Any] = super().merge_environment_settings(
            url, proxies, stream, verify, cert
        )
        if verify is None:
            settings["verify"] = self.verify
        if _is_loopback(str(url)) or str(url).startswith("http+docker://"):
            settings["proxies"] = {}
        return settings


def make_api_client(config: EngineConfig, timeout: float = DEFAULT_TIMEOUT) -> PinnedAPIClient:
    """A connected low-level client, its API version negotiated with the engine."""
    tls: docker.tls.TLSConfig | bool = False
    if config.uses_tls:
        cert = None
        if config.tls_cert is not None and config.tls_key is not None:
            cert = (str(config.tls_cert), str(config.tls_key))
        ca = str(config.tls_ca) if config.tls_ca is not None else None
        try:
            # verify= must be given: without it docker-py checks no server certificate at all.
            tls = docker.tls.TLSConfig(
                client_cert=cert,
                ca_cert=ca,
                verify=(ca or True) if config.tls_verify else False,
            )
        except docker.errors.TLSParameterError as exc:
            raise EngineUnreachable(
                f"The TLS files for {config.url} are incomplete: {exc}",
                hint="Check that ca.pem, cert.pem and key.pem exist in the certificate folder.",
            ) from exc
    try:
        return PinnedAPIClient(base_url=config.url, version="auto", timeout=timeout, tls=tls)
    except docker.errors.DockerException as exc:
        raise unreachable(config, exc) from exc
