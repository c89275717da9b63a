"""Images on the real engine and the loopback registry: list, push and pull with per-layer
progress, cancelling a pull midway, tag, remove, prune, and registry errors."""

from __future__ import annotations

import io
import os
import tarfile
import threading
import time
import uuid
from pathlib import Path

import docker
import pytest

from tests import harness
from tests.harness import ThrottledProxy
from toolbox.engine.client import EngineClient
from toolbox.engine.records import PullProgress, image_rows
from toolbox.errors import Cancelled, EngineError, NotFoundError

pytestmark = [pytest.mark.engine, pytest.mark.registry]


def _import(
    docker_client: docker.DockerClient, workdir: Path, repo: str, extra: bytes, tag: str = "latest"
) -> str:
    """Import a busybox root filesystem plus one file holding ``extra`` (so the image's layer
    exists nowhere else); returns the image id."""
    tar = harness.busybox_tar(workdir / f"{uuid.uuid4().hex}.tar")
    with tarfile.open(tar, "a") as archive:
        info = tarfile.TarInfo("payload.bin")
        info.size = len(extra)
        archive.addfile(info, io.BytesIO(extra))
    docker_client.api.import_image(src=str(tar), repository=repo, tag=tag, changes=['CMD ["sh"]'])
    tar.unlink()
    return str(docker_client.images.get(f"{repo}:{tag}").id)


def _assert_real_progress(reports: list[PullProgress]) -> None:
    fractions = [r.fraction for r in reports if r.fraction is not None]
    assert fractions, "no byte counts were reported"
    assert fractions == sorted(fractions), f"progress went backwards: {fractions}"
    assert reports[-1].done and reports[-1].fraction == 1.0
    assert all(0.0 <= f <= 1.0 for f in fractions)
    layers = reports[-1].layers
    assert layers and any(layer.total > 0 for layer in layers.values())
    assert all(layer.current <= layer.total for layer in layers.values() if layer.total)


def test_images_list_in_one_request(client: EngineClient) -> None:
    seen: list[str] = []
    client.api.hooks["response"].append(lambda r, *a, **k: seen.append(r.request.url))
    images = client.images()
    assert len(seen) == 1 and "/images/json" in seen[0]
    busybox = next(i for i in images if "busybox:latest" in i.repo_tags)
    assert busybox.size > 100_000 and not busybox.dangling
    assert ("busybox", "latest") in {(r.repository, r.tag) for r in image_rows(images)}


def test_push_then_pull_back_with_progress(
    client: EngineClient, docker_client, registry, name, tmp_path
) -> None:
    local = f"{name}/busybox"
    image_id = _import(docker_client, tmp_path, local, os.urandom(512 * 1024))
    remote = f"{registry.address}/{name}/busybox"
    client.tag(image_id, remote, "t1")

    pushed: list[PullProgress] = []
    digest = client.push(f"{remote}:t1", pushed.append)
    _assert_real_progress(pushed)
    assert digest and digest.startswith("sha256:")

    client.remove_image(f"{remote}:t1")
    deleted = client.remove_image(f"{local}:latest")
    assert image_id in deleted  # its layer is gone, so the pull must download it
    pulled: list[PullProgress] = []
    image = client.pull(f"{remote}:t1", pulled.append)
    _assert_real_progress(pulled)
    assert image.id == image_id and f"{remote}:t1" in image.repo_tags
    statuses = {layer.status for layer in pulled[-1].layers.values()}
    assert "Pull complete" in statuses
    client.remove_image(f"{remote}:t1")


def test_cancel_midway_stops_the_pull_promptly(
    client: EngineClient, docker_client, registry, name, tmp_path
) -> None:
    local = f"{name}/big"
    image_id = _import(docker_client, tmp_path, local, os.urandom(16 * 1024 * 1024))
    remote = f"{registry.address}/{name}/big"
    client.tag(image_id, remote, "v1")
    client.push(f"{remote}:v1")
    client.remove_image(f"{remote}:v1")
    client.remove_image(f"{local}:latest")

    # Through a proxy sending 2 MB/s, the 16 MB layer takes about 8 s to arrive.
    proxy = ThrottledProxy(("127.0.0.1", registry.port), rate=2_000_000)
    slow_ref = f"{proxy.address}/{name}/big:v1"
    cancel = threading.Event()
    cancelled_at: list[float] = []
    reports: list[PullProgress] = []

    def on_progress(progress: PullProgress) -> None:
        reports.append(progress)
        if not cancelled_at and progress.fraction and progress.fraction > 0:
            # Cancel from another thread, as the GUI's Cancel button would.
            def press() -> None:
                cancelled_at.append(time.monotonic())
                cancel.set()

            threading.Thread(target=press).start()

    try:
        with pytest.raises(Cancelled):
            client.pull(slow_ref, on_progress, cancel)
        stopped = time.monotonic()
    finally:
        proxy.close()
    assert cancelled_at, "the pull never reported byte progress"
    assert stopped - cancelled_at[0] < 2.0, f"took {stopped - cancelled_at[0]:.2f} s to stop"
    assert reports[-1].fraction is not None and reports[-1].fraction < 1.0
    assert not reports[-1].done
    assert not client.api.images(name=slow_ref)

    # Cancelled before it starts: nothing is requested at all.
    with pytest.raises(Cancelled):
        client.pull(slow_ref, None, cancel)


def test_tag_remove_and_prune_dangling(client: EngineClient, docker_client, name, tmp_path) -> None:
    repo = f"{name}/app"
    first = _import(docker_client, tmp_path, repo, b"one")
    second = _import(docker_client, tmp_path, repo, b"two")  # takes the tag: first dangles
    assert first != second
    by_id = {i.id: i for i in client.images()}
    assert by_id[first].dangling and not by_id[second].dangling
    assert ("<none>", "<none>") in {(r.repository, r.tag) for r in image_rows([by_id[first]])}

    client.tag(second, f"{repo}-copy", "v2")
    assert f"{repo}-copy:v2" in client.image(f"{repo}-copy:v2").repo_tags

    result = client.prune_images()
    assert first in result.deleted and second not in result.deleted
    assert result.space_reclaimed >= 0

    with pytest.raises(EngineError, match="used by a container or has several tags") as many:
        client.remove_image(second)  # two tags point at it: the engine wants force
    assert "force" in (many.value.hint or "")
    client.remove_image(second, force=True)
    assert second not in {i.id for i in client.images()}


def test_registry_errors_in_plain_words(client: EngineClient, registry, name) -> None:
    with pytest.raises(NotFoundError, match="not found in its registry") as missing:
        client.pull(f"{registry.address}/{name}/nothing:here")
    assert missing.value.hint
    closed = f"127.0.0.1:{harness.free_port()}/x/y:z"
    with pytest.raises(EngineError, match="cannot be reached"):
        client.pull(closed)
