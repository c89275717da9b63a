"""Docker CLI contexts written by Toolbox, read back by the real ``docker`` CLI against the
harness's TLS engine."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Engine
from toolbox import dockercontext as dc
from toolbox.errors import MachineError

pytestmark = pytest.mark.skipif(shutil.which("docker") is None, reason="needs the docker CLI")


def docker(config: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env["DOCKER_CONFIG"] = str(config)
    return subprocess.run(
        ["docker", *args], env=env, capture_output=True, text=True, timeout=60, check=check
    )


def test_layout_matches_the_docker_cli(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    for name in dc.TLS_FILES:
        (certs / name).write_text(f"--- {name} ---\n")
    config = tmp_path / "cfg"
    ctx = dc.write_context("dev", "tcp://127.0.0.1:1234", certs, config)
    digest = hashlib.sha256(b"toolbox-dev").hexdigest()
    meta = json.loads((config / "contexts" / "meta" / digest / "meta.json").read_text())
    assert meta == {
        "Name": "toolbox-dev",
        "Metadata": {"Description": "Toolbox machine dev", "ToolboxMachine": "dev"},
        "Endpoints": {"docker": {"Host": "tcp://127.0.0.1:1234", "SkipTLSVerify": False}},
    }
    tls = config / "contexts" / "tls" / digest / "docker"
    assert ctx.tls_path == tls
    for name in dc.TLS_FILES:
        assert (tls / name).read_text() == f"--- {name} ---\n"
    assert (tls / "key.pem").stat().st_mode & 0o777 == 0o600
    assert dc.read_context("toolbox-dev", config) == ctx


@pytest.mark.engine
def test_docker_cli_uses_the_context_over_tls(engine: Engine, tmp_path: Path) -> None:
    assert engine.tls is not None
    config = tmp_path / "cfg"
    dc.write_context("m1", engine.tls.host, engine.tls.cert_path, config)
    out = docker(config, "--context", "toolbox-m1", "version", "--format", "{{.Server.Version}}")
    assert out.stdout.strip()
    listed = docker(config, "context", "ls", "--format", "{{.Name}} {{.DockerEndpoint}}").stdout
    assert f"toolbox-m1 {engine.tls.host}" in listed.splitlines()
    inspected = json.loads(docker(config, "context", "inspect", "toolbox-m1").stdout)[0]
    assert inspected["Endpoints"]["docker"]["SkipTLSVerify"] is False
    assert inspected["Storage"]["TLSPath"].startswith(str(config))
    # The user's current context was not switched.
    assert docker(config, "context", "show").stdout.strip() == "default"


@pytest.mark.engine
def test_update_follows_a_new_port_and_remove_cleans_up(engine: Engine, tmp_path: Path) -> None:
    assert engine.tls is not None
    config = tmp_path / "cfg"
    dc.write_context("m2", "tcp://127.0.0.1:1", engine.tls.cert_path, config)
    bad = docker(config, "--context", "toolbox-m2", "version", check=False)
    assert bad.returncode != 0
    dc.write_context("m2", engine.tls.host, engine.tls.cert_path, config)
    docker(config, "--context", "toolbox-m2", "ps")
    assert dc.remove_context("m2", config)
    assert not dc.remove_context("m2", config)
    gone = docker(config, "--context", "toolbox-m2", "ps", check=False)
    assert gone.returncode != 0
    assert list((config / "contexts" / "meta").iterdir()) == []
    assert list((config / "contexts" / "tls").iterdir()) == []


@pytest.mark.engine
def test_use_context_switches_only_when_asked_and_keeps_config(
    engine: Engine, tmp_path: Path
) -> None:
    assert engine.tls is not None
    config = tmp_path / "cfg"
    config.mkdir()
    (config / "config.json").write_text(json.dumps({"auths": {"r.example": {"auth": "eA=="}}}))
    dc.write_context("m3", engine.tls.host, engine.tls.cert_path, config)
    assert dc.current_context(config) is None
    dc.use_context("toolbox-m3", config)
    assert docker(config, "context", "show").stdout.strip() == "toolbox-m3"
    docker(config, "ps")  # the current context reaches the TLS engine
    saved = json.loads((config / "config.json").read_text())
    assert saved["auths"] == {"r.example": {"auth": "eA=="}}
    dc.remove_context("m3", config)
    assert dc.current_context(config) is None
    assert docker(config, "context", "show").stdout.strip() == "default"
    assert json.loads((config / "config.json").read_text())["auths"]


def test_a_foreign_context_is_never_overwritten(tmp_path: Path) -> None:
    config = tmp_path / "cfg"
    docker(config, "context", "create", "toolbox-mine", "--docker", "host=tcp://10.1.2.3:2376")
    before = dc.read_context("toolbox-mine", config)
    assert before is not None and before.machine is None
    certs = tmp_path / "certs"
    certs.mkdir()
    for name in dc.TLS_FILES:
        (certs / name).write_text("x")
    with pytest.raises(MachineError) as info:
        dc.write_context("mine", "tcp://127.0.0.1:5", certs, config)
    assert "docker context rm toolbox-mine" in (info.value.hint or "")
    assert not dc.remove_context("mine", config)
    assert dc.read_context("toolbox-mine", config) == before


def test_missing_client_files_say_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(MachineError) as info:
        dc.write_context("m", "tcp://127.0.0.1:5", tmp_path, tmp_path / "cfg")
    assert "regenerate-certs" in (info.value.hint or "")


def test_docker_config_dir_default(tmp_path: Path) -> None:
    assert dc.docker_config_dir({"DOCKER_CONFIG": str(tmp_path)}) == tmp_path
    assert dc.docker_config_dir({}) == Path.home() / ".docker"
    assert dc.context_name("default") == "toolbox-default"
