"""The engine's error texts (as docker 28 words them) become plain words with a hint."""

from __future__ import annotations

import docker
import pytest

from toolbox.engine.client import translate_api_error
from toolbox.errors import EngineError, NotFoundError


def _api_error(text: str, status: int) -> docker.errors.APIError:
    response = type("Response", (), {"status_code": status, "reason": "x", "url": "u"})()
    return docker.errors.APIError(text, response=response, explanation=text)


@pytest.mark.parametrize(
    ("text", "status", "kind", "message", "hint"),
    [
        (
            "driver failed programming external connectivity on endpoint web (abc): Bind for "
            "0.0.0.0:8080 failed: port is already allocated",
            500,
            EngineError,
            "Port 8080 is already in use",
            "another host port",
        ),
        (
            "driver failed programming external connectivity on endpoint musing_elgamal (e1ec): "
            "Error starting userland proxy: listen tcp4 127.0.0.1:49215: bind: "
            "address already in use",
            500,
            EngineError,
            "Port 49215 is already in use",
            "another host port",
        ),
        (
            "driver failed programming external connectivity on endpoint x (de6f):  (iptables "
            "failed: iptables --wait -t nat -A DOCKER -p tcp -d 0/0 --dport 49215 -j DNAT "
            "--to-destination 172.17.0.2:80 ! -i docker0: iptables: No chain/target/match by that "
            "name.\n (exit status 1))",
            500,
            EngineError,
            "could not set up the port forwarding",
            "Restart the engine",
        ),
        (
            'Conflict. The container name "/web" is already in use by container "0123". You have '
            "to remove (or rename) that container to be able to reuse that name.",
            409,
            EngineError,
            "'web' is already used by another container",
            "another name",
        ),
        (
            "No such image: nginx:latest",
            404,
            NotFoundError,
            "nginx:latest is not on the engine",
            "Pull",
        ),
        ("No such container: abc", 404, NotFoundError, "does not exist", "refresh"),
        ("Container 0123 is not running", 409, EngineError, "is not running", "Start it"),
        (
            "Container 0123 is paused, unpause the container before stop",
            409,
            EngineError,
            "is paused",
            "Unpause",
        ),
        (
            "pull access denied for nope, repository does not exist or may require 'docker login'",
            404,
            NotFoundError,
            "not found in its registry",
            "docker login",
        ),
        (
            'Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused',
            500,
            EngineError,
            "cannot be reached",
            "registry address",
        ),
        (
            "remove vol: volume is in use - [0123]",
            409,
            EngineError,
            "in use by a container",
            "Remove the containers",
        ),
        (
            "error while removing network: network n id 01 has active endpoints",
            403,
            EngineError,
            "still has containers",
            "Disconnect",
        ),
        (
            "something new the engine says",
            500,
            EngineError,
            "refused to start the container: something new",
            "engine's message",
        ),
    ],
)
def test_engine_errors_become_plain_words(text, status, kind, message, hint) -> None:
    error = translate_api_error(_api_error(text, status), "start the container", "web")
    assert type(error) is kind
    assert message in error.message
    assert error.hint and hint in error.hint
    assert error.details == text
