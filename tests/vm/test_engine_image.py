"""A machine made from the image with the engine baked in (``toolbox image build --engine``,
the ``engine_guest_image`` fixture): real QEMU (TCG), real SSH, the real machine service.

Provisioning finds the engine, AppArmor and sshfs already there and skips the install (so
it needs no network), the engine answers over TLS, and the drivers' live-only forwards (the
mechanism the host agent uses for published ports) reach a container's published port on
127.0.0.1: opened while it runs, gone when closed, a taken host port refused as PortTaken.
Holds ``/tmp/toolbox-vm.lock`` while the VM runs.
"""

from __future__ import annotations

import shutil
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_machine_e2e import tls_client
from tests.harness import free_port, import_busybox, wait_until
from toolbox.drivers.base import Forward
from toolbox.errors import PortTaken
from toolbox.guest.images import LOCAL_ENGINE_IMAGE_NAME, ImageStore
from toolbox.machine.service import CreateOptions, MachineService

pytestmark = [pytest.mark.vm, pytest.mark.timeout(1800)]

NAME = "baked"


@pytest.fixture
def baked_image(engine_guest_image: Any, toolbox_home: Path, tmp_path: Path) -> str:
    staging = tmp_path / "image"
    staging.mkdir()
    copies = {
        key: Path(shutil.copy2(getattr(engine_guest_image, key), staging / key))
        for key in ("path", "kernel", "initrd")
    }
    ImageStore().add(
        LOCAL_ENGINE_IMAGE_NAME,
        copies["path"],
        format=engine_guest_image.format,
        arch=engine_guest_image.arch,
        source=f"test copy of {engine_guest_image.path}",
        kernel=copies["kernel"],
        initrd=copies["initrd"],
        cmdline=engine_guest_image.cmdline,
    )
    return LOCAL_ENGINE_IMAGE_NAME


@pytest.fixture
def machine(vm_lock: None, baked_image: str) -> Iterator[tuple[MachineService, Any]]:
    service = MachineService()
    if not service.driver("qemu").availability().usable:
        pytest.skip("QEMU is not installed")
    started = time.monotonic()
    result = service.create(
        CreateOptions(name=NAME, driver="qemu", image=baked_image, cpus=2, memory_mib=1536)
    )
    print(f"\ncreate from the baked image: {time.monotonic() - started:.0f} s")
    try:
        yield service, result
    finally:
        service.remove(NAME, force=True)


def _http_get(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as reply:
        return str(reply.read().decode())


def test_baked_image_provisions_without_installing_and_live_forwards_reach_a_container(
    machine: tuple[MachineService, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A plain docker-py client: requests would put these CA bundles in place of the machine's.
    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(var, raising=False)
    service, result = machine
    summary = result.provision
    assert summary is not None
    steps = {name: changed for name, changed, _ in summary.steps}
    assert steps["engine"] is False, "the engine is baked in: nothing to install"
    assert steps["shares"] is False, "sshfs is baked in too"
    for name in ("tls", "dropin", "service"):
        assert steps[name] is True, name
    tools = service.ssh_run(
        NAME,
        "sshfs --version && test -x /usr/sbin/apparmor_parser -o -x /sbin/apparmor_parser",
        timeout=60,
    )
    assert tools.ok and "SSHFS version" in tools.stdout, tools.stdout + tools.stderr

    spec = service.get(NAME)
    client = tls_client(service.files(NAME).cert_path, spec.engine_url)
    (tmp_path / "bb").mkdir()
    import_busybox(client, workdir=tmp_path / "bb")
    guest_port = free_port()
    container = client.containers.run(
        "busybox:latest",
        [
            "sh",
            "-c",
            "mkdir -p /www && echo baked > /www/index.html && exec httpd -f -p 80 -h /www",
        ],
        detach=True,
        ports={"80/tcp": guest_port},
    )
    driver = service.driver("qemu")
    vmspec = service.vm_spec(spec)
    host_port = free_port()
    forward = Forward(f"live-tcp-{host_port}", guest_port, host_port)
    try:
        driver.open_forward(vmspec, forward)
        assert any(f.host_port == host_port for f in driver.live_forwards(vmspec))
        # The forward is not saved: the VM's configuration keeps only ssh and engine.
        assert {f.name for f in driver.forwards(vmspec)} == {"ssh", "engine"}
        container.reload()
        assert container.status == "running", container.logs().decode(errors="replace")
        wait_until(lambda: _try_get(host_port) == "baked\n", 60, 0.5, "the container via 127.0.0.1")
        # A port something else holds is refused with the type the agent decides on.
        with socket.create_server(("127.0.0.1", 0)) as taken:
            port = taken.getsockname()[1]
            with pytest.raises(PortTaken):
                driver.open_forward(vmspec, Forward(f"live-tcp-{port}", guest_port, port))
        driver.close_forward(vmspec, forward)
        assert not any(f.host_port == host_port for f in driver.live_forwards(vmspec))
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", host_port), timeout=5).close()
    finally:
        container.remove(force=True)
        client.close()


def _try_get(port: int) -> str | None:
    try:
        return _http_get(port)
    except OSError:
        return None
