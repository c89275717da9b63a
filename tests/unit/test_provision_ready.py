"""The readiness probe against the real private dockerd's TLS listener (REQUESTS_CA_BUNDLE stays
set, as it is on this machine, so the machine's own CA must win)."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import Engine
from toolbox.provision.engine import engine_config, ping_engine, wait_engine_ready

pytestmark = pytest.mark.engine


def _port(engine: Engine) -> int:
    assert engine.tls is not None
    port = urlsplit(engine.tls.host).port
    assert port is not None
    return port


def test_engine_config_points_at_the_forward(tmp_path: Path) -> None:
    config = engine_config(tmp_path, 12376)
    assert config.url == "tcp://127.0.0.1:12376"
    assert config.tls_verify
    assert (config.tls_ca, config.tls_cert, config.tls_key) == (
        tmp_path / "ca.pem",
        tmp_path / "cert.pem",
        tmp_path / "key.pem",
    )


def test_ping_over_tls(engine: Engine, tmp_path: Path) -> None:
    if engine.tls is None:
        pytest.skip("the engine under test has no TLS listener")
    port = _port(engine)
    assert ping_engine(engine.tls.cert_path, port)
    assert wait_engine_ready(engine.tls.cert_path, port, timeout=30) < 30


def test_ping_without_the_client_cert_or_the_right_ca_is_false(
    engine: Engine, tmp_path: Path
) -> None:
    if engine.tls is None:
        pytest.skip("the engine under test has no TLS listener")
    port = _port(engine)
    no_client = tmp_path / "no-client"
    no_client.mkdir()
    shutil.copy(engine.tls.cert_path / "ca.pem", no_client / "ca.pem")
    assert not ping_engine(no_client, port)
    other_ca = tmp_path / "other-ca"
    from toolbox import tls

    ca = tls.ensure_ca(tmp_path / "ca")
    tls.make_client_cert(ca, other_ca)
    assert not ping_engine(other_ca, port)
    assert not ping_engine(engine.tls.cert_path, 1)
