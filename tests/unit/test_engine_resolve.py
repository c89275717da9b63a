from pathlib import Path

from toolbox.engine.resolve import engine_config


def test_engine_url_without_tls_env_is_plain() -> None:
    config = engine_config("tcp://127.0.0.1:2375", None, {})
    assert config.tls_ca is None
    assert config.url.startswith("tcp://127.0.0.1:2375") or "127.0.0.1:2375" in config.url


def test_cert_path_alone_gives_tls_without_verify(tmp_path: Path) -> None:
    config = engine_config("tcp://127.0.0.1:2376", None, {"DOCKER_CERT_PATH": str(tmp_path)})
    assert config.tls_ca == tmp_path / "ca.pem"
    assert config.tls_verify is False


def test_tls_verify_set_turns_verification_on(tmp_path: Path) -> None:
    environ = {"DOCKER_CERT_PATH": str(tmp_path), "DOCKER_TLS_VERIFY": "1"}
    config = engine_config("tcp://127.0.0.1:2376", None, environ)
    assert config.tls_verify is True
    assert config.tls_cert == tmp_path / "cert.pem"


def test_empty_tls_verify_counts_as_unset(tmp_path: Path) -> None:
    environ = {"DOCKER_CERT_PATH": str(tmp_path), "DOCKER_TLS_VERIFY": ""}
    assert engine_config("tcp://127.0.0.1:2376", None, environ).tls_verify is False
