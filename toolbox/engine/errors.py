"""The engine's failures as ``ToolboxError``s in plain words, each with a hint.

``translate_api_error`` turns the engine's refusal of a request (an HTTP status and the
engine's message: the API has no other error codes) into ``EngineError``/``NotFoundError``;
``unreachable`` explains a failure to reach the engine at all from the exception's types
and error codes (OpenSSL's reason, the OS errno), never from its message text.
"""

from __future__ import annotations

import errno
import re
import ssl
from collections.abc import Iterator
from typing import TYPE_CHECKING

import docker
import requests
import urllib3.exceptions

from toolbox.errors import EngineError, EngineUnreachable, NotFoundError, ToolboxError

if TYPE_CHECKING:
    from toolbox.engine.connect import EngineConfig


def _first(pattern: str, text: str) -> str | None:
    match = re.search(pattern, text)
    return match.group(1) if match else None


def translate_api_error(
    exc: docker.errors.APIError, action: str, subject: str | None = None
) -> ToolboxError:
    """Turn the engine's refusal of ``action`` on ``subject`` into a ToolboxError with a hint;
    the engine's own text goes to ``details``."""
    text = str(exc.explanation or exc)
    lowered = text.lower()
    what = f" {subject}" if subject else ""
    status = exc.status_code or 0

    if "port is already allocated" in lowered or "address already in use" in lowered:
        port = _first(r":(\d+)(?: failed|: bind|\D*$)", text) or "?"
        return EngineError(
            f"Port {port} is already in use on the engine's host",
            hint=f"Choose another host port, or stop whatever uses port {port}.",
            details=text,
        )
    if "iptables failed" in lowered or "programming external connectivity" in lowered:
        return EngineError(
            "The engine could not set up the port forwarding for the container",
            hint="Restart the engine (stop and start the machine); its firewall rules are "
            "out of step.",
            details=text,
        )
    if "is already in use by container" in lowered:
        name = _first(r'name "/?([^"]+)" is already in use', text) or subject or "?"
        return EngineError(
            f"The name {name!r} is already used by another container",
            hint="Pick another name, or remove or rename the other container.",
            details=text,
        )
    if "no such image" in lowered or isinstance(exc, docker.errors.ImageNotFound):
        image = _first(r"[Nn]o such image: (\S+)", text) or subject or "?"
        return NotFoundError(
            f"Image {image} is not on the engine",
            hint=f"Pull it first (`docker pull {image}` or Images > Pull), or check the name.",
            details=text,
        )
    if (
        "pull access denied" in lowered
        or "manifest unknown" in lowered
        or "repository does not exist" in lowered
        or ("not found" in lowered and "manifest" in lowered)
    ):
        return NotFoundError(
            f"Image{what} was not found in its registry",
            hint="Check the name and tag; a private image needs `docker login` first.",
            details=text,
        )
    if "no such container" in lowered:
        return NotFoundError(
            f"Container{what} does not exist",
            hint="It may have been removed; refresh the list.",
            details=text,
        )
    if "no such volume" in lowered or ("volume" in lowered and status == 404):
        return NotFoundError(f"Volume{what} does not exist", hint="Refresh the list.", details=text)
    if "network" in lowered and ("not found" in lowered or status == 404):
        return NotFoundError(
            f"Network{what} does not exist", hint="Refresh the list.", details=text
        )
    if "cannot remove a running container" in lowered or ("stop the container before" in lowered):
        return EngineError(
            f"Container{what} is running",
            hint="Stop it first, or remove it with force.",
            details=text,
        )
    if "volume is in use" in lowered:
        return EngineError(
            f"Volume{what} is in use by a container",
            hint="Remove the containers that use it first.",
            details=text,
        )
    if "has active endpoints" in lowered:
        return EngineError(
            f"Network{what} still has containers attached",
            hint="Disconnect or remove the containers on it first.",
            details=text,
        )
    if (
        "must force" in lowered
        or "must be forced" in lowered
        or "image is being used" in lowered
        or "is using its referenced image" in lowered
    ):
        return EngineError(
            f"Image{what} is used by a container or has several tags",
            hint="Remove the containers that use it, or remove it with force.",
            details=text,
        )
    if "is not running" in lowered:
        return EngineError(f"Container{what} is not running", hint="Start it first.", details=text)
    if "is already paused" in lowered or "is paused" in lowered:
        return EngineError(f"Container{what} is paused", hint="Unpause it first.", details=text)
    if "is not paused" in lowered:
        return EngineError(f"Container{what} is not paused", hint=None, details=text)
    if (
        "invalid port" in lowered
        or "invalid hostport" in lowered
        or "invalid containerport" in lowered
    ):
        return EngineError(
            f"The engine refused a port setting: {text}",
            hint="Use port numbers from 1 to 65535.",
            details=text,
        )
    if "conflicting options" in lowered or "'autoremove' container with restart" in lowered:
        return EngineError(
            f"Conflicting settings: {text.split(':', 1)[-1].strip()}",
            hint="Auto-remove cannot be combined with a restart policy; turn one off.",
            details=text,
        )
    if any(
        s in lowered for s in ("connection refused", "no such host", "i/o timeout", "tls handshake")
    ):
        return EngineError(
            f"The registry for{what or ' the image'} cannot be reached",
            hint="Check the registry address and that the machine has network access.",
            details=text,
        )
    if status == 404:
        return NotFoundError(
            f"{action.capitalize()}: not found", hint="Refresh the list.", details=text
        )
    return EngineError(
        f"The engine refused to {action}: {text}",
        hint="The engine's message above says what it refused.",
        details=text,
    )


# --------------------------------------------------------------------------------------
# Not reaching the engine at all

# OpenSSL's reasons for a server refusing the client's certificate (TLS alerts it sent).
_CLIENT_CERT_REFUSED = frozenset(
    {
        "TLSV13_ALERT_CERTIFICATE_REQUIRED",
        "SSLV3_ALERT_BAD_CERTIFICATE",
        "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
        "SSLV3_ALERT_HANDSHAKE_FAILURE",
        "TLSV1_ALERT_UNKNOWN_CA",
        "TLSV1_ALERT_ACCESS_DENIED",
        "TLSV1_ALERT_DECRYPT_ERROR",
    }
)
_TIMEOUTS = (
    TimeoutError,
    requests.exceptions.Timeout,
    urllib3.exceptions.TimeoutError,
)


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception it wraps: ``__cause__``/``__context__``, urllib3's
    ``reason`` and exceptions passed as arguments (requests and urllib3 wrap the socket's
    and OpenSSL's errors those ways), each once, outermost first."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        inner = (current.__cause__, current.__context__, getattr(current, "reason", None))
        pending += [e for e in (*inner, *current.args) if isinstance(e, BaseException)]


def _ssl_reasons(exc: BaseException) -> set[str]:
    return {str(e.reason) for e in causes(exc) if isinstance(e, ssl.SSLError) and e.reason}


def unreachable(config: EngineConfig, exc: BaseException) -> EngineUnreachable:
    """Explain in plain words why ``config``'s engine could not be reached, from the types
    and error codes of ``exc`` and what it wraps."""
    text = str(exc)
    chain = list(causes(exc))
    where = config.describe()
    if any(isinstance(e, ssl.SSLCertVerificationError) for e in chain):
        return EngineUnreachable(
            f"The engine at {config.url} presented a certificate not signed by the expected CA",
            hint="The machine's certificates may have been regenerated: run `toolbox "
            "regenerate-certs`, or check that DOCKER_CERT_PATH points at the right folder.",
            details=text,
        )
    if _ssl_reasons(exc) & _CLIENT_CERT_REFUSED:
        return EngineUnreachable(
            f"The engine at {config.url} refused this client's TLS certificate",
            hint="Use the client certificate made for this machine (cert.pem and key.pem).",
            details=text,
        )
    if any(
        isinstance(e, PermissionError) or (isinstance(e, OSError) and e.errno == errno.EACCES)
        for e in chain
    ):
        return EngineUnreachable(
            f"No permission to use the engine socket ({config.url})",
            hint="Add your user to the 'docker' group, or use the Toolbox machine's engine.",
            details=text,
        )
    # urllib3's NewConnectionError (a refused or failed connect) subclasses its timeout
    # error for old callers' sake: it is not a timeout.
    if any(
        isinstance(e, _TIMEOUTS) and not isinstance(e, urllib3.exceptions.NewConnectionError)
        for e in chain
    ):
        return EngineUnreachable(
            f"The engine at {where} did not answer in time",
            hint="The machine may still be starting; wait a moment and retry.",
            details=text,
        )
    if any(isinstance(e, (ssl.SSLError, requests.exceptions.SSLError)) for e in chain):
        return EngineUnreachable(
            f"TLS with the engine at {config.url} failed",
            hint="Check the machine's certificates (`toolbox regenerate-certs`).",
            details=text,
        )
    return EngineUnreachable(
        f"Cannot reach the Docker engine at {where}",
        hint="Start the machine (`toolbox start`) or check DOCKER_HOST.",
        details=text,
    )
