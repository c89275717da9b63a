"""The harness itself: a real dockerd, the busybox image, the TLS listener and the registry."""

from __future__ import annotations

import docker
import pytest

from tests import harness


def test_busybox_image_runs(docker_client: docker.DockerClient) -> None:
    out = docker_client.containers.run("busybox:latest", ["echo", "hello"], remove=True)
    assert out == b"hello\n"


def test_tls_listener_requires_client_certificate(engine, monkeypatch) -> None:
    # Plain docker-py lets these replace the private CA (toolbox.engine handles that itself).
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    if engine.tls is None:
        pytest.skip("engine not started by the harness")
    files = engine.tls
    good = docker.tls.TLSConfig(
        client_cert=(str(files.cert_path / "cert.pem"), str(files.cert_path / "key.pem")),
        ca_cert=str(files.cert_path / "ca.pem"),
        verify=str(files.cert_path / "ca.pem"),
    )
    client = docker.DockerClient(base_url=files.host.replace("tcp", "https"), tls=good)
    assert client.ping()
    client.close()
    anonymous = docker.tls.TLSConfig(
        ca_cert=str(files.cert_path / "ca.pem"), verify=str(files.cert_path / "ca.pem")
    )
    with pytest.raises(docker.errors.DockerException, match=r"(?i)certificate"):
        docker.DockerClient(base_url=files.host.replace("tcp", "https"), tls=anonymous)


def test_registry_push_pull(docker_client: docker.DockerClient, registry) -> None:
    ref = f"{registry.address}/harness/busybox"
    docker_client.images.get("busybox:latest").tag(ref, "t1")
    out = docker_client.api.push(ref, tag="t1", stream=True, decode=True)
    assert not [line for line in out if "error" in line]
    docker_client.api.remove_image(f"{ref}:t1")
    docker_client.api.pull(ref, tag="t1")
    assert docker_client.images.get(f"{ref}:t1").id
    docker_client.api.remove_image(f"{ref}:t1")


def test_free_port_is_bindable() -> None:
    assert 1024 < harness.free_port() < 65536
