"""The offline image builder's pure parts: the recipe and its hash, the exact commands, the
host checks, and reuse of an up-to-date build. The build itself runs in the session fixture
``guest_image`` and is booted by tests/vm/test_guest_image.py."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from toolbox.errors import ImageError
from toolbox.guest import build
from toolbox.guest.images import LOCAL_IMAGE_NAME, ImageStore
from toolbox.provision import clock


def test_recipe_hash_is_stable_and_follows_every_field() -> None:
    r = build.recipe("amd64")
    assert r.digest() == build.recipe("amd64").digest() == build.recipe_hash("amd64")
    assert len(r.digest()) == 16
    assert build.recipe("arm64").digest() != r.digest()
    changed = [
        dataclasses.replace(r, packages=(*r.packages, "vim")),
        dataclasses.replace(r, files=((*r.files, ("etc/motd", "hi\n")))),
        dataclasses.replace(r, mask=r.mask[1:]),
        dataclasses.replace(r, cmdline=r.cmdline + " quiet"),
        dataclasses.replace(r, disk_size="8G"),
        dataclasses.replace(r, version=r.version + 1),
    ]
    assert len({c.digest() for c in changed} | {r.digest()}) == len(changed) + 1


def test_recipe_contents() -> None:
    r = build.recipe("amd64")
    for package in (
        "linux-image-cloud-amd64",
        "cloud-init",
        "openssh-server",
        "sudo",
        "systemd-sysv",
        "ca-certificates",
    ):
        assert package in r.packages
    files = dict(r.files)
    assert files["etc/resolv.conf"] == "nameserver 10.0.2.3\n"
    dhcp = files["etc/systemd/network/80-toolbox-dhcp.network"]
    assert "DHCP=yes" in dhcp
    # networkd must not take the engine's veth pairs off docker0 (published ports die then):
    # DHCP only on the NIC names, and Docker's links explicitly unmanaged, sorted first.
    assert "Name=en* eth*" in dhcp
    unmanaged = files["etc/systemd/network/10-toolbox-docker-unmanaged.network"]
    assert "Name=docker* br-* veth*" in unmanaged and "Unmanaged=yes" in unmanaged
    cloud = files["etc/cloud/cloud.cfg.d/99-toolbox.cfg"]
    assert "datasource_list: [ NoCloud ]" in cloud and "locale: false" in cloud
    assert {"apt-daily.timer", "e2scrub_all.timer", "fstrim.timer"} <= set(r.mask)
    assert r.cmdline == "root=LABEL=root rw console=ttyS0,115200"
    assert "etc/ssh/ssh_host_*" in r.remove
    assert r.hold == ("linux-image-cloud-amd64",)


def test_mmdebstrap_argv_is_exact(tmp_path: Path) -> None:
    r = build.recipe("amd64")
    argv = build.mmdebstrap_argv(r, tmp_path / "rootfs", "http://deb.debian.org/debian")
    assert argv[:4] == ["mmdebstrap", "--mode=root", "--variant=apt", "--architectures=amd64"]
    assert argv[4] == "--include=" + ",".join(r.packages)
    assert "--dpkgopt=path-exclude=/usr/share/man/*" in argv
    assert argv[-5:] == [
        "bookworm",
        str(tmp_path / "rootfs"),
        "deb http://deb.debian.org/debian bookworm main",
        "deb http://deb.debian.org/debian bookworm-updates main",
        "deb http://deb.debian.org/debian-security bookworm-security main",
    ]


def test_a_custom_mirror_gets_no_security_line_from_elsewhere() -> None:
    assert build.source_lines("http://mirror.local/debian/") == [
        "deb http://mirror.local/debian bookworm main",
        "deb http://mirror.local/debian bookworm-updates main",
    ]


def test_filesystem_and_compress_argv(tmp_path: Path) -> None:
    r = build.recipe("amd64")
    rootfs, raw, qcow2 = tmp_path / "rootfs", tmp_path / "disk.raw", tmp_path / "disk.qcow2"
    assert build.mkfs_argv(r, rootfs, raw) == [
        "mkfs.ext4",
        "-q",
        "-F",
        "-L",
        "root",
        "-d",
        str(rootfs),
        str(raw),
        "6G",
    ]
    assert build.convert_argv(raw, qcow2) == [
        "qemu-img",
        "convert",
        "-p",
        "-c",
        "-f",
        "raw",
        "-O",
        "qcow2",
        str(raw),
        str(qcow2),
    ]


def test_missing_tools_are_named_with_the_package_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty PATH: mmdebstrap is not found
    with pytest.raises(ImageError) as info:
        build.check_build_host("amd64" if build.host_arch() == "amd64" else "arm64")
    assert "mmdebstrap" in info.value.message
    assert "apt-get install mmdebstrap" in (info.value.hint or "")


def test_cross_building_is_refused() -> None:
    other = "arm64" if build.host_arch() == "amd64" else "amd64"
    with pytest.raises(ImageError, match=f"Cannot build an {other} image"):
        build.check_build_host(other)


def test_an_up_to_date_build_is_reused(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    disk = tmp_path / "disk.qcow2"
    disk.write_bytes(b"QFI\xfb")
    current = store.add(
        LOCAL_IMAGE_NAME,
        disk,
        format="qcow2",
        arch=build.host_arch(),
        source="test",
        recipe=build.recipe_hash(),
    )
    image, built = build.ensure_built(store)
    assert (image, built) == (current, False)


def test_cli_reports_an_up_to_date_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ImageStore(tmp_path / "images")
    disk = tmp_path / "disk.qcow2"
    disk.write_bytes(b"QFI\xfb")
    store.add(
        LOCAL_IMAGE_NAME,
        disk,
        format="qcow2",
        arch=build.host_arch(),
        source="test",
        recipe=build.recipe_hash(),
    )
    assert build.main(["--store", str(store.root)]) == 0
    assert "up to date" in capsys.readouterr().out


def test_the_engine_and_tools_can_be_baked_in() -> None:
    baked, stock = build.recipe("amd64", engine=True), build.recipe("amd64", engine=False)
    for package in ("docker.io", "apparmor", "sshfs", "fuse3"):
        assert package in baked.packages and package not in stock.packages
    assert "docker.service" in baked.enable and "docker.service" not in stock.enable
    assert baked.digest() != stock.digest()


def test_the_clock_sync_is_in_every_image() -> None:
    for r in (build.recipe("amd64"), build.recipe("amd64", engine=False)):
        files = dict(r.files)
        assert files["usr/local/sbin/toolbox-clock-sync"] == clock.SCRIPT
        assert files["etc/systemd/system/toolbox-clock-sync.timer"] == clock.TIMER
        assert "OnUnitInactiveSec=10s" in clock.TIMER
        assert "toolbox-clock-sync.timer" in r.enable


def test_the_clock_sync_script_is_valid_sh(tmp_path: Path) -> None:
    import subprocess

    script = tmp_path / "sync"
    script.write_text(clock.SCRIPT)
    assert subprocess.run(["sh", "-n", str(script)], capture_output=True).returncode == 0
