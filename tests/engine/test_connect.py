"""Reaching the real engine: unix socket, mutual TLS (with REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE
set, as on this machine), DOCKER_* variables and Docker CLI contexts made by the real CLI."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import docker
import pytest

from tests import harness
from toolbox import tls
from toolbox.engine.connect import EngineConfig, default_url, normalise_url
from toolbox.errors import EngineUnreachable, NotFoundError, UsageError

pytestmark = pytest.mark.engine

SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


@pytest.fixture
def tls_files(engine):
    if engine.tls is None:
        pytest.skip("engine not started by the harness (no TLS listener)")
    return engine.tls


@pytest.fixture
def ca_bundle_env(monkeypatch: pytest.MonkeyPatch) -> str:
    """Keep the machine's CA bundle variables set (they are on this machine; make sure)."""
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or SYSTEM_BUNDLE
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", bundle)
    monkeypatch.setenv("CURL_CA_BUNDLE", bundle)
    return bundle


def test_unix_socket_connects_and_reports_info(engine) -> None:
    with EngineConfig.from_url(engine.url).connect() as client:
        assert client.ping()
        info = client.info()
    assert info.version and info.api_version and info.os == "linux"
    assert info.images >= 1  # the harness imported busybox


def test_tls_uses_the_private_ca_despite_ca_bundle_variables(tls_files, ca_bundle_env) -> None:
    # The pitfall exists here: plain docker-py, given the right CA, is overridden by the
    # bundle variables and fails verification.
    plain = docker.tls.TLSConfig(
        client_cert=(str(tls_files.cert_path / "cert.pem"), str(tls_files.cert_path / "key.pem")),
        ca_cert=str(tls_files.cert_path / "ca.pem"),
        verify=True,
    )
    with pytest.raises(docker.errors.DockerException, match=r"(?i)certificate verify failed"):
        docker.APIClient(base_url=tls_files.host, tls=plain, version="auto", timeout=10)

    config = EngineConfig.from_url(tls_files.host, tls_files.cert_path)
    assert config.uses_tls and config.tls_verify
    assert "mutual TLS" in config.describe()
    with config.connect(timeout=10) as client:
        assert client.api.verify == str(tls_files.cert_path / "ca.pem")
        assert client.ping()
        assert client.containers() is not None


def test_server_certificate_from_another_ca_is_refused(tls_files, tmp_path, monkeypatch) -> None:
    other = tls.ensure_ca(tmp_path / "other-ca", "Some Other CA")
    folder = tmp_path / "client"
    folder.mkdir()
    shutil.copy(other.cert, folder / "ca.pem")
    shutil.copy(tls_files.cert_path / "cert.pem", folder / "cert.pem")
    shutil.copy(tls_files.cert_path / "key.pem", folder / "key.pem")
    # Even with the environment pointing requests at the engine's real CA, only the
    # configured CA may be trusted.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_files.cert_path / "ca.pem"))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(tls_files.cert_path / "ca.pem"))
    with pytest.raises(EngineUnreachable, match="not signed by the expected CA") as info:
        EngineConfig.from_url(tls_files.host, folder).connect(timeout=10)
    assert info.value.hint


def test_client_without_certificate_is_refused(tls_files, ca_bundle_env) -> None:
    config = EngineConfig(
        tls_files.host, tls_ca=tls_files.cert_path / "ca.pem", name="no-client-cert"
    )
    assert "without a client certificate" in config.describe()
    with pytest.raises(EngineUnreachable) as info:
        config.connect(timeout=10)
    assert "refused this client's TLS certificate" in info.value.message
    assert info.value.hint


def test_closed_port_is_unreachable_with_a_hint() -> None:
    config = EngineConfig.from_url(f"tcp://127.0.0.1:{harness.free_port()}")
    with pytest.raises(EngineUnreachable, match="Cannot reach") as info:
        config.connect(timeout=5)
    assert "toolbox start" in (info.value.hint or "")


def test_from_env_like_the_docker_cli(tls_files, ca_bundle_env) -> None:
    env = {
        "DOCKER_HOST": tls_files.host,
        "DOCKER_TLS_VERIFY": "1",
        "DOCKER_CERT_PATH": str(tls_files.cert_path),
    }
    config = EngineConfig.from_env(env)
    assert config.cert_dir == tls_files.cert_path
    with config.connect(timeout=10) as client:
        assert client.ping()
    assert EngineConfig.from_env({}).url == default_url()
    assert EngineConfig.from_env({"DOCKER_HOST": "unix:///x.sock"}).uses_tls is False


def _docker_cli(*args: str, config_dir: Path) -> str:
    docker_bin = shutil.which("docker")
    if docker_bin is None:
        pytest.skip("docker CLI not installed")
    proc = subprocess.run(
        [docker_bin, "--config", str(config_dir), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_context_made_by_the_docker_cli(tls_files, tmp_path, ca_bundle_env) -> None:
    config_dir = tmp_path / "dockercfg"
    certs = tls_files.cert_path
    _docker_cli(
        "context",
        "create",
        "tbx-test",
        "--docker",
        f"host={tls_files.host},ca={certs / 'ca.pem'},cert={certs / 'cert.pem'},"
        f"key={certs / 'key.pem'}",
        config_dir=config_dir,
    )
    config = EngineConfig.from_context("tbx-test", config_dir)
    assert config.url == tls_files.host and config.context == "tbx-test"
    assert (
        config.tls_ca is not None and config.tls_ca.read_bytes() == (certs / "ca.pem").read_bytes()
    )
    with config.connect(timeout=10) as client:
        assert client.ping()

    # current(): DOCKER_HOST wins, then DOCKER_CONTEXT, then the CLI's current context.
    env = {"DOCKER_CONFIG": str(config_dir)}
    assert EngineConfig.current(env).url == default_url()
    _docker_cli("context", "use", "tbx-test", config_dir=config_dir)
    assert EngineConfig.current(env).context == "tbx-test"
    assert EngineConfig.current({**env, "DOCKER_CONTEXT": "default"}).url == default_url()
    assert EngineConfig.current({**env, "DOCKER_HOST": "unix:///elsewhere.sock"}).url == (
        "unix:///elsewhere.sock"
    )
    with pytest.raises(NotFoundError, match="no Docker context named 'nope'"):
        EngineConfig.current({**env, "DOCKER_CONTEXT": "nope"})


def test_exec_env_and_cli_args_reach_the_engine_with_the_real_cli(tls_files, tmp_path) -> None:
    docker_bin = shutil.which("docker")
    if docker_bin is None:
        pytest.skip("docker CLI not installed")
    config = EngineConfig.from_url(tls_files.host, tls_files.cert_path)
    with config.connect(timeout=10) as client:
        env = client.exec_env()
    assert env == {
        "DOCKER_HOST": tls_files.host,
        "DOCKER_TLS_VERIFY": "1",
        "DOCKER_CERT_PATH": str(tls_files.cert_path),
        "DOCKER_CONTEXT": "",
    }
    base = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    base["DOCKER_CONFIG"] = str(tmp_path / "cfg")
    by_env = subprocess.run(
        [docker_bin, "version", "--format", "{{.Server.APIVersion}}"],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert by_env.returncode == 0, by_env.stderr
    by_args = subprocess.run(
        [docker_bin, *config.docker_cli_args(), "version", "--format", "{{.Server.APIVersion}}"],
        env=base,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert by_args.returncode == 0, by_args.stderr
    assert by_env.stdout.strip() == by_args.stdout.strip() != ""


def test_normalise_url() -> None:
    assert normalise_url("/var/run/docker.sock") == "unix:///var/run/docker.sock"
    assert normalise_url("127.0.0.1:2376") == "tcp://127.0.0.1:2376"
    assert normalise_url("https://h:2376") == "tcp://h:2376"
    with pytest.raises(UsageError):
        normalise_url("ftp://x")
    with pytest.raises(UsageError):
        normalise_url("  ")


def test_engine_that_never_answers_is_told_apart_by_type() -> None:
    """A port that accepts but never answers: the timeout is recognised by the exception's
    type (requests/urllib3 timeouts), not by its text."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        config = EngineConfig.from_url(f"tcp://127.0.0.1:{server.getsockname()[1]}")
        with pytest.raises(EngineUnreachable, match="did not answer in time") as info:
            config.connect(timeout=1)
    assert "wait a moment" in (info.value.hint or "")
