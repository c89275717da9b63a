"""Shared fixtures: per-test TOOLBOX_HOME and DOCKER_CONFIG, and the real engine and registry.

The engine fixtures start the distribution's dockerd once per session (see tests/harness.py);
set ``TOOLBOX_TEST_DOCKER_HOST`` to use an engine that is already running instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from hypothesis import settings

from tests import harness
from toolbox.guest.images import CachedImage

# The CI machines have two cores shared with VMs and dockerd: an example that runs a real
# process (bash, sshd) can take longer than hypothesis's 200 ms deadline without being wrong.
# Property tests check results, never time (benchmarks do that).
settings.register_profile("toolbox", deadline=None)
settings.load_profile("toolbox")


@pytest.fixture(autouse=True)
def toolbox_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own Toolbox folders and Docker CLI config; never the user's."""
    home = tmp_path / "toolbox-home"
    home.mkdir()
    monkeypatch.setenv("TOOLBOX_HOME", str(home))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    return home


class Engine:
    """A running engine for tests: its URL, TLS details, and a way to restart it."""

    def __init__(self, daemon: harness.PrivateDockerd | None, url: str):
        self.daemon = daemon
        self.url = url

    @property
    def tls(self) -> harness.TLSFiles | None:
        return self.daemon.tls if self.daemon else None

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.url, version="auto", timeout=60)

    def restart(self) -> None:
        if self.daemon is None:
            pytest.skip("cannot restart an engine the harness did not start")
        self.daemon.restart()


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """The real Docker engine, with ``busybox:latest`` imported."""
    existing = os.environ.get("TOOLBOX_TEST_DOCKER_HOST")
    daemon = None
    if existing:
        eng = Engine(None, existing)
    else:
        daemon = harness.PrivateDockerd()
        daemon.start()
        eng = Engine(daemon, daemon.url)
    client = eng.client()
    try:
        harness.import_busybox(client, workdir=tmp_path_factory.mktemp("busybox"))
    finally:
        client.close()
    yield eng
    if daemon is not None:
        daemon.cleanup()


@pytest.fixture
def docker_client(engine: Engine) -> Iterator[docker.DockerClient]:
    """A docker-py client for arranging and checking state; removes what a test left behind."""
    client = engine.client()
    before_containers = {c["Id"] for c in client.api.containers(all=True)}
    yield client
    for c in client.api.containers(all=True):
        if c["Id"] not in before_containers:
            try:
                client.api.remove_container(c["Id"], force=True, v=True)
            except docker.errors.APIError:
                pass
    client.close()


@pytest.fixture(scope="session")
def registry() -> Iterator[harness.LocalRegistry]:
    """The distribution's docker-registry on loopback."""
    reg = harness.LocalRegistry()
    reg.start()
    yield reg
    reg.cleanup()


def dev_cache() -> Path:
    """Where expensive test inputs live across runs, outside the checkout (as in ./dev)."""
    value = os.environ.get("TOOLBOX_DEV_CACHE")
    return Path(value).expanduser() if value else Path.home() / ".cache" / "toolbox-dev"


@pytest.fixture(scope="session")
def guest_image() -> CachedImage:
    """The locally built Debian 12 guest image (cloud kernel, cloud-init, sshd), built once
    with ``toolbox.guest.build`` into ``$TOOLBOX_DEV_CACHE/guest-images`` and rebuilt only
    when the builder's recipe changes (``./dev test`` builds it up front with progress).
    Boot it by direct kernel boot (``image.kernel``, ``image.initrd``, ``image.cmdline``);
    never write to ``image.path``: use it as a qcow2 backing file."""
    from toolbox.errors import ToolboxError
    from toolbox.guest.build import ensure_built
    from toolbox.guest.images import ImageStore

    store = ImageStore(dev_cache() / "guest-images")
    try:
        image, _ = ensure_built(store)
    except ToolboxError as exc:
        pytest.fail(f"Cannot build the guest image: {exc}\nhint: {exc.hint}", pytrace=False)
    return image


@pytest.fixture(scope="session")
def engine_guest_image() -> CachedImage:
    """The same image with the engine, sshfs and AppArmor baked in (``toolbox image build
    --engine``): provisioning finds them and skips the install, so a machine made from it is
    ready about a minute after boot instead of several. For VM tests that do not test the
    install itself."""
    from toolbox.errors import ToolboxError
    from toolbox.guest.build import ensure_built
    from toolbox.guest.images import LOCAL_ENGINE_IMAGE_NAME, ImageStore

    store = ImageStore(dev_cache() / "guest-images")
    try:
        image, _ = ensure_built(store, LOCAL_ENGINE_IMAGE_NAME, engine=True)
    except ToolboxError as exc:
        pytest.fail(f"Cannot build the engine image: {exc}\nhint: {exc.hint}", pytrace=False)
    return image
