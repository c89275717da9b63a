"""The one engine resolver (app and CLI) against the docker CLI's rules: which engine
(``-H``, ``--context``, ``DOCKER_HOST``, ``DOCKER_CONTEXT``, ``currentContext``, default) and
whether TLS is on and verified (``DOCKER_TLS_VERIFY``, ``DOCKER_TLS``, ``DOCKER_CERT_PATH``)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest

from toolbox.engine.connect import default_url
from toolbox.engine.resolve import machine_for_engine, resolve_engine
from toolbox.errors import NotFoundError, UsageError
from toolbox.machine.model import MachineSpec
from toolbox.machine.store import MachineStore


def _certs(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (folder / name).write_text(f"-- {name} --\n")
    return folder


def _context(config_dir: Path, name: str, host: str, skip_verify: bool = False) -> Path:
    """A context laid out as ``docker context create`` stores it."""
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta = config_dir / "contexts" / "meta" / digest
    meta.mkdir(parents=True)
    endpoint = {"Host": host, "SkipTLSVerify": skip_verify}
    (meta / "meta.json").write_text(
        json.dumps({"Name": name, "Metadata": {}, "Endpoints": {"docker": endpoint}})
    )
    return _certs(config_dir / "contexts" / "tls" / digest / "docker")


def _use(config_dir: Path, name: str) -> None:
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "config.json").write_text(json.dumps({"currentContext": name}))


# -- TLS from the environment ------------------------------------------------------------------


def test_docker_host_without_tls_variables_is_plain(tmp_path: Path) -> None:
    config = resolve_engine(None, None, {"DOCKER_HOST": "tcp://127.0.0.1:2375"})
    assert config.url == "tcp://127.0.0.1:2375"
    assert not config.uses_tls
    assert config.tls_ca is None and config.tls_cert is None


def test_cert_path_alone_does_not_turn_tls_on(tmp_path: Path) -> None:
    """The docker CLI reads DOCKER_CERT_PATH only for where the files are."""
    certs = _certs(tmp_path / "certs")
    env = {"DOCKER_HOST": "tcp://127.0.0.1:2376", "DOCKER_CERT_PATH": str(certs)}
    config = resolve_engine(None, None, env)
    assert not config.uses_tls
    assert config.docker_cli_args() == ["-H", "tcp://127.0.0.1:2376"]


def test_tls_verify_uses_the_cert_path_and_verifies(tmp_path: Path) -> None:
    certs = _certs(tmp_path / "certs")
    env = {
        "DOCKER_HOST": "tcp://127.0.0.1:2376",
        "DOCKER_CERT_PATH": str(certs),
        "DOCKER_TLS_VERIFY": "1",
    }
    config = resolve_engine(None, None, env)
    assert config.uses_tls and config.tls_verify
    assert (config.tls_ca, config.tls_cert, config.tls_key) == (
        certs / "ca.pem",
        certs / "cert.pem",
        certs / "key.pem",
    )
    assert config.describe() == "tcp://127.0.0.1:2376, mutual TLS"


@pytest.mark.parametrize("value", ["0", "false", "no"])
def test_any_non_empty_tls_verify_verifies(tmp_path: Path, value: str) -> None:
    """Like the docker CLI (``os.Getenv("DOCKER_TLS_VERIFY") != ""``), "0" still verifies."""
    certs = _certs(tmp_path / "certs")
    env = {
        "DOCKER_HOST": "tcp://127.0.0.1:2376",
        "DOCKER_CERT_PATH": str(certs),
        "DOCKER_TLS_VERIFY": value,
    }
    config = resolve_engine(None, None, env)
    assert config.uses_tls and config.tls_verify


def test_empty_tls_verify_counts_as_unset(tmp_path: Path) -> None:
    certs = _certs(tmp_path / "certs")
    env = {"DOCKER_HOST": "tcp://h:2376", "DOCKER_CERT_PATH": str(certs), "DOCKER_TLS_VERIFY": ""}
    assert not resolve_engine(None, None, env).uses_tls


def test_docker_tls_alone_is_tls_without_verification(tmp_path: Path) -> None:
    certs = _certs(tmp_path / "certs")
    env = {"DOCKER_HOST": "tcp://h:2376", "DOCKER_CERT_PATH": str(certs), "DOCKER_TLS": "1"}
    config = resolve_engine(None, None, env)
    assert config.uses_tls and not config.tls_verify
    assert config.describe() == "tcp://h:2376, TLS without server verification"


def test_tls_files_default_to_the_docker_config_folder(tmp_path: Path) -> None:
    config_dir = _certs(tmp_path / "dot-docker")
    (config_dir / "cert.pem").unlink()
    (config_dir / "key.pem").unlink()
    env = {
        "DOCKER_HOST": "tcp://h:2376",
        "DOCKER_TLS_VERIFY": "1",
        "DOCKER_CONFIG": str(config_dir),
    }
    config = resolve_engine(None, None, env)
    assert config.tls_ca == config_dir / "ca.pem"
    # Missing client files are left out, as the CLI does: TLS without a client certificate.
    assert config.tls_cert is None and config.tls_key is None
    assert config.describe() == "tcp://h:2376, TLS without a client certificate"


def test_engine_argument_is_like_dash_h_and_takes_tls_from_the_environment(
    tmp_path: Path,
) -> None:
    certs = _certs(tmp_path / "certs")
    env = {
        "DOCKER_HOST": "unix:///elsewhere.sock",
        "DOCKER_CERT_PATH": str(certs),
        "DOCKER_TLS_VERIFY": "1",
    }
    config = resolve_engine("127.0.0.1:2376", None, env)
    assert config.url == "tcp://127.0.0.1:2376"
    assert config.uses_tls and config.tls_verify and config.cert_dir == certs
    assert not resolve_engine("tcp://127.0.0.1:2375", None, {}).uses_tls


def test_engine_and_context_together_are_refused() -> None:
    with pytest.raises(UsageError, match="not both"):
        resolve_engine("tcp://h:1", "prod", {})


# -- which engine ------------------------------------------------------------------------------


def test_nothing_set_is_the_platform_socket(tmp_path: Path) -> None:
    config = resolve_engine(None, None, {"DOCKER_CONFIG": str(tmp_path / "none")})
    assert config.url == default_url() and config.context is None


def test_current_context_in_config_json(tmp_path: Path) -> None:
    config_dir = tmp_path / "cfg"
    tls = _context(config_dir, "prod", "tcp://10.0.0.5:2376")
    _use(config_dir, "prod")
    config = resolve_engine(None, None, {"DOCKER_CONFIG": str(config_dir)})
    assert config.context == "prod" and config.url == "tcp://10.0.0.5:2376"
    assert config.tls_ca == tls / "ca.pem" and config.tls_verify
    assert config.docker_cli_args() == ["--config", str(config_dir), "--context", "prod"]


def test_docker_context_overrides_the_current_context(tmp_path: Path) -> None:
    config_dir = tmp_path / "cfg"
    _context(config_dir, "prod", "tcp://10.0.0.5:2376")
    _context(config_dir, "dev", "tcp://10.0.0.6:2376", skip_verify=True)
    _use(config_dir, "prod")
    env = {"DOCKER_CONFIG": str(config_dir), "DOCKER_CONTEXT": "dev"}
    config = resolve_engine(None, None, env)
    assert config.context == "dev" and config.url == "tcp://10.0.0.6:2376"
    assert config.uses_tls and not config.tls_verify  # the context's SkipTLSVerify


def test_docker_host_beats_docker_context_and_the_current_context(tmp_path: Path) -> None:
    config_dir = tmp_path / "cfg"
    _context(config_dir, "prod", "tcp://10.0.0.5:2376")
    _use(config_dir, "prod")
    env = {
        "DOCKER_CONFIG": str(config_dir),
        "DOCKER_CONTEXT": "prod",
        "DOCKER_HOST": "unix:///run/user/1000/docker.sock",
    }
    config = resolve_engine(None, None, env)
    assert config.url == "unix:///run/user/1000/docker.sock" and config.context is None


def test_context_argument_beats_docker_host(tmp_path: Path) -> None:
    config_dir = tmp_path / "cfg"
    _context(config_dir, "prod", "tcp://10.0.0.5:2376")
    env = {"DOCKER_CONFIG": str(config_dir), "DOCKER_HOST": "unix:///x.sock"}
    assert resolve_engine(None, "prod", env).url == "tcp://10.0.0.5:2376"


def test_default_context_is_the_environment_engine(tmp_path: Path) -> None:
    """``default`` names what DOCKER_HOST (or the platform socket) gives, never a stored one."""
    config_dir = tmp_path / "cfg"
    _context(config_dir, "prod", "tcp://10.0.0.5:2376")
    _use(config_dir, "prod")
    env = {"DOCKER_CONFIG": str(config_dir), "DOCKER_CONTEXT": "default"}
    assert resolve_engine(None, None, env).url == default_url()
    assert resolve_engine(None, "default", env).url == default_url()
    with_host = {**env, "DOCKER_HOST": "tcp://127.0.0.1:2375"}
    config = resolve_engine(None, "default", with_host)
    assert config.url == "tcp://127.0.0.1:2375" and config.name == "default"
    assert not config.uses_tls


def test_missing_context_is_not_found(tmp_path: Path) -> None:
    env = {"DOCKER_CONFIG": str(tmp_path / "cfg"), "DOCKER_CONTEXT": "nope"}
    with pytest.raises(NotFoundError, match="no Docker context named 'nope'"):
        resolve_engine(None, None, env)
    _use(tmp_path / "cfg", "gone")  # a current context that was removed is an error too
    with pytest.raises(NotFoundError, match="'gone'"):
        resolve_engine(None, None, {"DOCKER_CONFIG": str(tmp_path / "cfg")})


def test_broken_context_file_is_a_usage_error(tmp_path: Path) -> None:
    config_dir = tmp_path / "cfg"
    _context(config_dir, "bad", "tcp://h:1")
    digest = hashlib.sha256(b"bad").hexdigest()
    (config_dir / "contexts" / "meta" / digest / "meta.json").write_text("{not json")
    with pytest.raises(UsageError, match="cannot be read"):
        resolve_engine(None, "bad", {"DOCKER_CONFIG": str(config_dir)})


# -- which machine an engine belongs to --------------------------------------------------------


def _machine(name: str, engine_port: int) -> MachineSpec:
    return MachineSpec(
        name=name,
        driver="qemu",
        cpus=1,
        memory_mib=512,
        disk_gib=4,
        image="debian-12",
        ssh_port=engine_port + 1,
        engine_port=engine_port,
        created=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    )


def test_machine_for_engine_matches_the_loopback_forward(toolbox_home: Path) -> None:
    store = MachineStore()
    store.save(_machine("default", 52376))
    store.save(_machine("other", 52380))
    found = machine_for_engine("tcp://127.0.0.1:52380")
    assert found is not None and found.name == "other"
    assert machine_for_engine("127.0.0.1:52376/") is not None  # spelled like DOCKER_HOST may be
    assert machine_for_engine("tcp://127.0.0.1:9") is None
    assert machine_for_engine("unix:///var/run/docker.sock") is None
    assert machine_for_engine("") is None


def test_choosing_an_engine_does_not_import_docker_py() -> None:
    """The CLI's ``ls`` asks which engine is active; docker-py costs a quarter second."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from toolbox.engine.resolve import choose_engine\n"
        "choice = choose_engine(None, None, {'DOCKER_HOST': 'h:1'})\n"
        "assert choice.url == 'tcp://h:1', choice\n"
        "sys.exit(1 if 'docker' in sys.modules else 0)\n"
    )
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
