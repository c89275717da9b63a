"""Packaging: the build's exact commands per platform, the spec's contents, the installer
script's promises, the resource locator, and (opt-in, slow) a real PyInstaller build whose
CLI and app are started.

The slow test runs only with ``TOOLBOX_TEST_PACKAGING=1`` and PyInstaller installed
(``pip install -e '.[packaging]'``); it takes a few minutes on two cores.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import struct
import subprocess
import sys
import tarfile
import time
import types
from collections.abc import Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath
from types import ModuleType
from typing import Any

import pytest

import resources
from toolbox import __version__
from toolbox.drivers.base import VMState
from toolbox.engine.records import ContainerState
from toolbox.errors import CommandError, ToolboxError
from toolbox.machine.model import MachineState

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"


def _load(name: str, filename: str) -> ModuleType:
    """Import a packaging script by path (the folder is not a package: ``packaging`` and
    ``build`` are names of PyPI packages), leaving sys.path as it was."""
    saved = list(sys.path)
    try:
        spec = importlib.util.spec_from_file_location(name, PACKAGING / filename)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path[:] = saved


bundle = _load("toolbox_bundle", "toolbox_bundle.py")
build = _load("toolbox_packaging_build", "build.py")
icons = _load("toolbox_packaging_make_icons", "make_icons.py")

P = build.Platform
T = build.Target


def layout(plat: Any, dist: Any, work: Any, arch: str = "x64") -> Any:
    return build.Layout(dist=dist, work=work, version="1.2.3", arch=arch, platform=plat)


def linux_config(**kw: Any) -> Any:
    return build.BuildConfig(
        platform=P.LINUX,
        target=kw.pop("target", T.TARBALL),
        layout=layout(P.LINUX, PurePosixPath("/src/dist"), PurePosixPath("/src/build")),
        python="/venv/bin/python",
        spec=PurePosixPath("/src/packaging/toolbox.spec"),
        **kw,
    )


def mac_config(**kw: Any) -> Any:
    return build.BuildConfig(
        platform=P.MACOS,
        target=kw.pop("target", T.DMG),
        layout=layout(P.MACOS, PurePosixPath("/src/dist"), PurePosixPath("/src/build"), "arm64"),
        python="/venv/bin/python3",
        spec=PurePosixPath("/src/packaging/toolbox.spec"),
        **kw,
    )


WIN_DIST = PureWindowsPath(r"C:\src\dist")
WIN_WORK = PureWindowsPath(r"C:\src\build")
ISCC = r"C:\Program Files (x86)\Inno Setup 6\ISCC.exe"
SIGNTOOL = r"C:\Program Files (x86)\Windows Kits\10\bin\10.0.22621.0\x64\signtool.exe"


def win_config(**kw: Any) -> Any:
    return build.BuildConfig(
        platform=P.WINDOWS,
        target=kw.pop("target", T.WINDOWS_INSTALLER),
        layout=layout(P.WINDOWS, WIN_DIST, WIN_WORK),
        python=r"C:\src\.venv\Scripts\python.exe",
        spec=PureWindowsPath(r"C:\src\packaging\toolbox.spec"),
        iss=PureWindowsPath(r"C:\src\packaging\windows\toolbox.iss"),
        iscc=kw.pop("iscc", ISCC),
        **kw,
    )


def runs(steps: list[Any]) -> list[list[str]]:
    return [list(s.argv) for s in steps if isinstance(s, build.Run)]


# --- argv builders ---------------------------------------------------------------------


def test_pyinstaller_argv() -> None:
    argv = build.pyinstaller_argv(
        "/venv/bin/python",
        PurePosixPath("/s/toolbox.spec"),
        PurePosixPath("/d"),
        PurePosixPath("/w"),
    )
    assert argv == [
        "/venv/bin/python", "-m", "PyInstaller", "--noconfirm",
        "--distpath", "/d", "--workpath", "/w", "/s/toolbox.spec",
    ]  # fmt: skip
    clean = build.pyinstaller_argv(
        "py", PurePosixPath("s"), PurePosixPath("d"), PurePosixPath("w"), clean=True
    )
    assert clean[:5] == ["py", "-m", "PyInstaller", "--noconfirm", "--clean"]


def test_macos_argv() -> None:
    dmg = PurePosixPath("/d/Toolbox-1.2.3-macos-arm64.dmg")
    assert build.hdiutil_argv(PurePosixPath("/w/dmg/Toolbox"), dmg) == [
        "hdiutil", "create", "-volname", "Toolbox", "-srcfolder", "/w/dmg/Toolbox",
        "-fs", "HFS+", "-format", "UDZO", "-ov", "/d/Toolbox-1.2.3-macos-arm64.dmg",
    ]  # fmt: skip
    assert build.codesign_verify_argv(PurePosixPath("/d/Toolbox.app")) == [
        "codesign", "--verify", "--deep", "--strict", "--verbose=2", "/d/Toolbox.app",
    ]  # fmt: skip
    ident = build.MacSigning("Developer ID Application: Jo Doe (AB12CD34EF)")
    assert build.codesign_file_argv(ident, dmg) == [
        "codesign", "--force", "--timestamp",
        "--sign", "Developer ID Application: Jo Doe (AB12CD34EF)", str(dmg),
    ]  # fmt: skip
    assert build.notarytool_argv(dmg, build.NotaryProfile("toolbox-notary")) == [
        "xcrun", "notarytool", "submit", str(dmg), "--keychain-profile", "toolbox-notary", "--wait",
    ]  # fmt: skip
    creds = build.NotaryCredentials("jo@example.com", "AB12CD34EF", "abcd-efgh-ijkl-mnop")
    assert build.notarytool_argv(dmg, creds) == [
        "xcrun", "notarytool", "submit", str(dmg),
        "--apple-id", "jo@example.com", "--team-id", "AB12CD34EF",
        "--password", "abcd-efgh-ijkl-mnop", "--wait",
    ]  # fmt: skip
    assert build.stapler_argv(dmg) == ["xcrun", "stapler", "staple", str(dmg)]


def test_signtool_argv_with_store_thumbprint_and_with_pfx() -> None:
    files = [WIN_DIST / "Toolbox" / "Toolbox.exe", WIN_DIST / "Toolbox" / "toolbox-cli.exe"]
    by_store = build.WindowsSigning(SIGNTOOL, cert_sha1="0123456789ABCDEF0123456789ABCDEF01234567")
    assert build.signtool_sign_argv(by_store, files) == [
        SIGNTOOL, "sign", "/fd", "sha256", "/tr", "http://timestamp.digicert.com", "/td", "sha256",
        "/d", "Toolbox", "/sha1", "0123456789ABCDEF0123456789ABCDEF01234567",
        r"C:\src\dist\Toolbox\Toolbox.exe", r"C:\src\dist\Toolbox\toolbox-cli.exe",
    ]  # fmt: skip
    by_pfx = build.WindowsSigning(
        "signtool", "http://ts.example", pfx=r"C:\keys\code sign.pfx", pfx_password="s3cret"
    )
    assert build.signtool_sign_argv(by_pfx, files[:1]) == [
        "signtool", "sign", "/fd", "sha256", "/tr", "http://ts.example", "/td", "sha256",
        "/d", "Toolbox", "/f", r"C:\keys\code sign.pfx", "/p", "s3cret",
        r"C:\src\dist\Toolbox\Toolbox.exe",
    ]  # fmt: skip
    assert build.signtool_verify_argv(by_pfx, files[0]) == [
        "signtool", "verify", "/pa", r"C:\src\dist\Toolbox\Toolbox.exe",
    ]  # fmt: skip


def test_iscc_argv_unsigned_and_signed() -> None:
    iss = PureWindowsPath(r"C:\src\packaging\windows\toolbox.iss")
    source = WIN_DIST / "Toolbox"
    name = "Toolbox-1.2.3-windows-x64-setup"
    assert build.iscc_argv(ISCC, iss, "1.2.3", source, WIN_DIST, name) == [
        ISCC, "/Qp", "/DAppVersion=1.2.3", "/DVersionNumbers=1.2.3.0",
        r"/DSourceDir=C:\src\dist\Toolbox", r"/OC:\src\dist",
        "/FToolbox-1.2.3-windows-x64-setup", r"C:\src\packaging\windows\toolbox.iss",
    ]  # fmt: skip
    signing = build.WindowsSigning(SIGNTOOL, cert_sha1="ABCDEF")
    signed = build.iscc_argv(ISCC, iss, "1.2.3", source, WIN_DIST, "setup", signing)
    assert signed[-3:] == [
        "/Stoolboxsign=$qC:\\Program Files (x86)\\Windows Kits\\10\\bin\\10.0.22621.0\\x64"
        "\\signtool.exe$q sign /fd sha256 /tr http://timestamp.digicert.com /td sha256 "
        "/d Toolbox /sha1 ABCDEF $f",
        "/DSignTool=toolboxsign",
        r"C:\src\packaging\windows\toolbox.iss",
    ]


def test_inno_sign_command_quotes_spaces_and_escapes_dollars() -> None:
    signing = build.WindowsSigning("signtool", pfx=r"C:\my keys\a.pfx", pfx_password="pa$$ word")
    assert build.inno_signtool_command(signing) == (
        "signtool sign /fd sha256 /tr http://timestamp.digicert.com /td sha256 /d Toolbox "
        "/f $qC:\\my keys\\a.pfx$q /p $qpa$$$$ word$q $f"
    )


def test_windows_cli_shim_runs_the_cli_one_folder_up() -> None:
    assert build.windows_cli_shim_text() == '@"%~dp0..\\toolbox-cli.exe" %*\r\n'
    assert build.cli_shim_name(P.WINDOWS) == "toolbox.cmd"
    assert build.cli_shim_name(P.LINUX) == "toolbox"


def test_platform_target_and_arch() -> None:
    assert P.current("darwin") is P.MACOS
    assert P.current("win32") is P.WINDOWS
    assert P.current("linux") is P.LINUX
    assert T.default_for(P.MACOS) is T.DMG
    assert T.default_for(P.WINDOWS) is T.WINDOWS_INSTALLER
    assert T.default_for(P.LINUX) is T.TARBALL
    assert [build.arch_label(m) for m in ("x86_64", "AMD64", "arm64", "aarch64", "riscv64")] == [
        "x64", "x64", "arm64", "arm64", "riscv64",
    ]  # fmt: skip


def test_layout_names_every_artifact() -> None:
    out = layout(P.WINDOWS, WIN_DIST, WIN_WORK)
    assert str(out.app_exe) == r"C:\src\dist\Toolbox\Toolbox.exe"
    assert str(out.cli_exe) == r"C:\src\dist\Toolbox\toolbox-cli.exe"
    assert str(out.cli_shim) == r"C:\src\dist\Toolbox\bin\toolbox.cmd"
    assert str(out.installer) == r"C:\src\dist\Toolbox-1.2.3-windows-x64-setup.exe"
    mac = layout(P.MACOS, PurePosixPath("/d"), PurePosixPath("/w"), "arm64")
    assert str(mac.dmg) == "/d/Toolbox-1.2.3-macos-arm64.dmg"
    assert str(mac.app_bundle) == "/d/Toolbox.app"
    assert str(mac.dmg_staging) == "/w/dmg/Toolbox"
    lin = layout(P.LINUX, PurePosixPath("/d"), PurePosixPath("/w"))
    assert str(lin.tarball) == "/d/Toolbox-1.2.3-linux-x64.tar.gz"
    assert str(lin.cli_shim) == "/d/Toolbox/bin/toolbox"


# --- plans per platform ----------------------------------------------------------------


def test_linux_tarball_plan() -> None:
    steps = build.plan(linux_config())
    assert steps == [
        build.Run(
            (
                "/venv/bin/python",
                "-m",
                "PyInstaller",
                "--noconfirm",
                "--distpath",
                "/src/dist",
                "--workpath",
                "/src/build/pyinstaller",
                "/src/packaging/toolbox.spec",
            ),
            hint=steps[0].hint,
        ),
        build.WriteCliShim(PurePosixPath("/src/dist/Toolbox"), P.LINUX),
        build.MakeTarball(
            PurePosixPath("/src/dist/Toolbox"),
            PurePosixPath("/src/dist/Toolbox-1.2.3-linux-x64.tar.gz"),
        ),
    ]
    assert "PyInstaller" in steps[0].hint
    assert str(build.artifact(linux_config())) == "/src/dist/Toolbox-1.2.3-linux-x64.tar.gz"
    assert str(build.artifact(linux_config(target=T.APP))) == "/src/dist/Toolbox"


def test_macos_dmg_plan_unsigned() -> None:
    steps = build.plan(mac_config())
    assert runs(steps)[1:] == [
        [
            "hdiutil", "create", "-volname", "Toolbox", "-srcfolder", "/src/build/dmg/Toolbox",
            "-fs", "HFS+", "-format", "UDZO", "-ov", "/src/dist/Toolbox-1.2.3-macos-arm64.dmg",
        ],
    ]  # fmt: skip
    assert (
        build.StageDmg(
            PurePosixPath("/src/dist/Toolbox.app"), PurePosixPath("/src/build/dmg/Toolbox")
        )
        in steps
    )
    assert not any(
        isinstance(s, build.WriteCliShim) for s in steps
    )  # nothing added to a signed .app


def test_macos_dmg_plan_signed_and_notarized() -> None:
    signing = build.MacSigning("Developer ID Application: Jo (TEAM)")
    steps = build.plan(mac_config(mac_signing=signing, notarization=build.NotaryProfile("prof")))
    dmg = "/src/dist/Toolbox-1.2.3-macos-arm64.dmg"
    assert [argv[:3] for argv in runs(steps)] == [
        ["/venv/bin/python3", "-m", "PyInstaller"],
        ["codesign", "--verify", "--deep"],
        ["hdiutil", "create", "-volname"],
        ["codesign", "--force", "--timestamp"],
        ["xcrun", "notarytool", "submit"],
        ["xcrun", "stapler", "staple"],
    ]
    assert runs(steps)[3] == ["codesign", "--force", "--timestamp", "--sign", signing.identity, dmg]
    assert runs(steps)[4] == [
        "xcrun",
        "notarytool",
        "submit",
        dmg,
        "--keychain-profile",
        "prof",
        "--wait",
    ]


def test_macos_app_plan_only_verifies_the_signature() -> None:
    signing = build.MacSigning("Developer ID Application: Jo (TEAM)")
    steps = build.plan(mac_config(target=T.APP, mac_signing=signing))
    assert [argv[0] for argv in runs(steps)] == ["/venv/bin/python3", "codesign"]
    assert len(steps) == 2


def test_windows_installer_plan_unsigned() -> None:
    steps = build.plan(win_config())
    assert steps[1] == build.WriteCliShim(WIN_DIST / "Toolbox", P.WINDOWS)
    assert runs(steps) == [
        [
            r"C:\src\.venv\Scripts\python.exe", "-m", "PyInstaller", "--noconfirm",
            "--distpath", r"C:\src\dist", "--workpath", r"C:\src\build\pyinstaller",
            r"C:\src\packaging\toolbox.spec",
        ],
        [
            ISCC, "/Qp", "/DAppVersion=1.2.3", "/DVersionNumbers=1.2.3.0",
            r"/DSourceDir=C:\src\dist\Toolbox", r"/OC:\src\dist",
            "/FToolbox-1.2.3-windows-x64-setup", r"C:\src\packaging\windows\toolbox.iss",
        ],
    ]  # fmt: skip
    assert str(build.artifact(win_config())) == r"C:\src\dist\Toolbox-1.2.3-windows-x64-setup.exe"


def test_windows_installer_plan_signed_masks_the_password() -> None:
    signing = build.WindowsSigning(SIGNTOOL, pfx=r"C:\k.pfx", pfx_password="hunter2")
    steps = build.plan(win_config(windows_signing=signing))
    commands = runs(steps)
    assert commands[1] == [
        SIGNTOOL, "sign", "/fd", "sha256", "/tr", "http://timestamp.digicert.com", "/td", "sha256",
        "/d", "Toolbox", "/f", r"C:\k.pfx", "/p", "hunter2",
        r"C:\src\dist\Toolbox\Toolbox.exe", r"C:\src\dist\Toolbox\toolbox-cli.exe",
    ]  # fmt: skip
    assert commands[2][0] == ISCC and "/DSignTool=toolboxsign" in commands[2]
    assert commands[3] == [
        SIGNTOOL,
        "verify",
        "/pa",
        r"C:\src\dist\Toolbox-1.2.3-windows-x64-setup.exe",
    ]
    shown = "\n".join(s.describe() for s in steps)
    assert "hunter2" not in shown and "***" in shown


def test_targets_that_need_another_os_are_refused() -> None:
    with pytest.raises(build.PackagingError, match="only be made on macOS"):
        build.plan(linux_config(target=T.DMG))
    with pytest.raises(build.PackagingError, match="only be compiled on Windows"):
        build.plan(mac_config(target=T.WINDOWS_INSTALLER))


# --- settings from the environment and tool lookup --------------------------------------


def test_signing_settings_come_only_from_the_documented_variables() -> None:
    assert build.mac_signing_from_env({}) is None
    signing = build.mac_signing_from_env(
        {"TOOLBOX_CODESIGN_IDENTITY": "Developer ID Application: X"}
    )
    assert signing == build.MacSigning("Developer ID Application: X", build.ENTITLEMENTS)
    assert build.notarization_from_env({}, signing) is None
    assert build.notarization_from_env(
        {"TOOLBOX_NOTARY_PROFILE": "p"}, signing
    ) == build.NotaryProfile("p")
    creds = {
        "TOOLBOX_NOTARY_APPLE_ID": "a@b.c",
        "TOOLBOX_NOTARY_TEAM_ID": "T",
        "TOOLBOX_NOTARY_PASSWORD": "pw",
    }
    assert build.notarization_from_env(creds, signing) == build.NotaryCredentials(
        "a@b.c", "T", "pw"
    )
    with pytest.raises(build.PackagingError) as half:
        build.notarization_from_env({"TOOLBOX_NOTARY_APPLE_ID": "a@b.c"}, signing)
    assert "TOOLBOX_NOTARY_TEAM_ID" in half.value.message and half.value.hint
    with pytest.raises(build.PackagingError, match="not signed") as unsigned:
        build.notarization_from_env({"TOOLBOX_NOTARY_PROFILE": "p"}, None)
    assert "TOOLBOX_CODESIGN_IDENTITY" in (unsigned.value.hint or "")

    def no_signtool() -> str:
        raise AssertionError("signtool looked up without a certificate")

    assert build.windows_signing_from_env({}, no_signtool) is None
    env = {"TOOLBOX_SIGNTOOL_CERT_SHA1": "AB", "TOOLBOX_SIGNTOOL_TIMESTAMP_URL": "http://ts"}
    assert build.windows_signing_from_env(env, lambda: "st.exe") == build.WindowsSigning(
        "st.exe", "http://ts", cert_sha1="AB"
    )
    with pytest.raises(build.PackagingError, match="Both"):
        build.windows_signing_from_env(
            {"TOOLBOX_SIGNTOOL_CERT_SHA1": "AB", "TOOLBOX_SIGNTOOL_PFX": "x.pfx"}, lambda: "st"
        )


def test_iscc_is_found_by_variable_path_or_install_folder() -> None:
    def nowhere(_name: str) -> str | None:
        return None

    def exists_only(*paths: str) -> Any:
        return lambda p: str(p) in paths

    assert (
        build.find_iscc({"TOOLBOX_ISCC": r"D:\is\ISCC.exe"}, nowhere, exists_only())
        == r"D:\is\ISCC.exe"
    )
    assert build.find_iscc(
        {}, lambda n: r"C:\bin\ISCC.exe" if n == "ISCC" else None, exists_only()
    ) == (r"C:\bin\ISCC.exe")
    assert build.find_iscc({}, nowhere, exists_only(ISCC)) == ISCC
    user = r"C:\Users\jo\AppData\Local\Programs\Inno Setup 6\ISCC.exe"
    assert (
        build.find_iscc({"LOCALAPPDATA": r"C:\Users\jo\AppData\Local"}, nowhere, exists_only(user))
        == user
    )
    with pytest.raises(build.MissingTool) as missing:
        build.find_iscc({}, nowhere, exists_only())
    assert "Inno Setup 6" in (missing.value.hint or "") and "TOOLBOX_ISCC" in (
        missing.value.hint or ""
    )


def test_signtool_lookup_prefers_the_newest_sdk() -> None:
    kits = [
        PureWindowsPath(r"C:\Kits\10\bin\10.0.19041.0\x64\signtool.exe"),
        PureWindowsPath(r"C:\Kits\10\bin\10.0.22621.0\x64\signtool.exe"),
        PureWindowsPath(r"C:\Kits\10\bin\10.0.9600.0\x64\signtool.exe"),
    ]
    assert build.find_signtool({}, lambda n: None, kits) == str(kits[1])
    assert build.find_signtool({"TOOLBOX_SIGNTOOL": "x.exe"}, lambda n: None, kits) == "x.exe"
    with pytest.raises(build.MissingTool, match="signtool"):
        build.find_signtool({}, lambda n: None, [])


def test_missing_pyinstaller_and_hdiutil_say_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(build.MissingTool) as no_pyi:
        build.check_pyinstaller(lambda: False)
    assert ".[packaging]" in (no_pyi.value.hint or "")
    args = build.build_parser().parse_args(["--target", "dmg", "--dist", str(tmp_path)])
    with pytest.raises(build.MissingTool) as no_hdiutil:
        build.make_config(args, {}, P.MACOS, which=lambda n: None, pyinstaller=lambda: True)
    assert "hdiutil" in no_hdiutil.value.message and "macOS" in (no_hdiutil.value.hint or "")
    signed = {"TOOLBOX_CODESIGN_IDENTITY": "Developer ID Application: X"}
    with pytest.raises(build.MissingTool) as no_codesign:
        build.make_config(
            args, signed, P.MACOS, which=lambda n: "/usr/bin/hdiutil" if n == "hdiutil" else None,
            pyinstaller=lambda: True,
        )  # fmt: skip
    assert "xcode-select --install" in (no_codesign.value.hint or "")


def test_make_config_resolves_a_windows_build(tmp_path: Path) -> None:
    args = build.build_parser().parse_args(
        ["--dist", str(tmp_path / "d"), "--work", str(tmp_path / "w")]
    )
    env = {"TOOLBOX_SIGNTOOL_CERT_SHA1": "AB", "TOOLBOX_SIGNTOOL": "st.exe"}
    config = build.make_config(
        args, env, P.WINDOWS, which=lambda n: None, exists=lambda p: str(p) == ISCC,
        pyinstaller=lambda: True,
    )  # fmt: skip
    assert config.target is T.WINDOWS_INSTALLER
    assert config.iscc == ISCC
    assert config.windows_signing == build.WindowsSigning("st.exe", cert_sha1="AB")
    assert config.layout.version == __version__
    assert config.layout.dist == tmp_path / "d"


# --- running a plan ----------------------------------------------------------------------


def test_execute_runs_commands_in_order_and_does_the_file_steps(tmp_path: Path) -> None:
    bundle_dir = tmp_path / "dist" / "Toolbox"
    (bundle_dir / "_internal").mkdir(parents=True)
    (bundle_dir / "toolbox-cli").write_text("#!/bin/sh\necho cli\n")
    (bundle_dir / "_internal" / "lib.so").write_bytes(b"\0" * 10)
    seen: list[list[str]] = []
    steps = [
        build.Run(("first", "a b")),
        build.WriteCliShim(bundle_dir, P.LINUX),
        build.WriteCliShim(bundle_dir, P.WINDOWS),
        build.Run(("second",)),
        build.MakeTarball(bundle_dir, tmp_path / "out" / "t.tar.gz"),
    ]
    log: list[str] = []
    build.execute(steps, runner=lambda argv: seen.append(list(argv)) or 0, log=log.append)
    assert seen == [["first", "a b"], ["second"]]
    assert log[0] == "==> run: first a b"
    shim = bundle_dir / "bin" / "toolbox"
    assert shim.is_symlink() and os.readlink(shim) == "../toolbox-cli"
    assert shim.resolve() == (bundle_dir / "toolbox-cli").resolve()
    assert (
        bundle_dir / "bin" / "toolbox.cmd"
    ).read_bytes() == b'@"%~dp0..\\toolbox-cli.exe" %*\r\n'
    with tarfile.open(tmp_path / "out" / "t.tar.gz") as archive:
        members = {m.name: m for m in archive.getmembers()}
    assert members["Toolbox/bin/toolbox"].issym()
    assert members["Toolbox/bin/toolbox"].linkname == "../toolbox-cli"
    assert members["Toolbox/_internal/lib.so"].size == 10
    assert not (tmp_path / "out" / "t.tar.gz.part").exists()


def test_execute_stops_at_a_failed_command_with_its_hint_and_no_secret(tmp_path: Path) -> None:
    seen: list[str] = []
    steps = [
        build.Run(
            ("signtool", "sign", "/p", "hunter2", "x.exe"), hint="check it", secret=("hunter2",)
        ),
        build.Run(("never",)),
    ]
    with pytest.raises(CommandError) as failed:
        build.execute(steps, runner=lambda argv: seen.append(argv[0]) or 3, log=lambda _line: None)
    assert seen == ["signtool"]
    assert failed.value.returncode == 3
    assert failed.value.hint == "check it"
    assert "hunter2" not in str(failed.value)


def test_stage_dmg_copies_the_app_and_links_applications(tmp_path: Path) -> None:
    app = tmp_path / "dist" / "Toolbox.app"
    (app / "Contents" / "MacOS").mkdir(parents=True)
    (app / "Contents" / "MacOS" / "Toolbox").write_text("exe")
    (app / "Contents" / "Frameworks").mkdir()
    (app / "Contents" / "Frameworks" / "link").symlink_to("../MacOS/Toolbox")
    staging = tmp_path / "work" / "dmg" / "Toolbox"
    build.execute([build.StageDmg(app, staging)], log=lambda _line: None)
    assert (staging / "Toolbox.app" / "Contents" / "MacOS" / "Toolbox").read_text() == "exe"
    assert (staging / "Toolbox.app" / "Contents" / "Frameworks" / "link").is_symlink()
    assert os.readlink(staging / "Applications") == "/Applications"


def test_dry_run_prints_the_plan_without_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if importlib.util.find_spec("PyInstaller") is None:
        pytest.skip("the dry run still checks that PyInstaller is installed")
    code = build.main(
        [
            "--target",
            "tarball",
            "--dist",
            str(tmp_path / "d"),
            "--work",
            str(tmp_path / "w"),
            "--dry-run",
        ]
    )
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[0].startswith(
        f"run: {sys.executable} -m PyInstaller --noconfirm --distpath {tmp_path / 'd'}"
    )
    assert out[-1].startswith(f"pack {tmp_path / 'd' / 'Toolbox'} into {tmp_path / 'd'}")
    assert not (tmp_path / "d").exists()


# --- what the bundle carries -------------------------------------------------------------


def test_bundle_data_list_is_every_resource_file() -> None:
    datas = bundle.resource_datas(ROOT)
    assert datas == [
        (str(p), p.relative_to(ROOT).parent.as_posix()) for p in resources.data_files()
    ]
    dests = {(Path(src).name, dest) for src, dest in datas}
    for name in resources.ACTION_ICONS:
        assert (f"{name}.svg", "resources/icons") in dests
    for tone in resources.StateTone:
        assert (f"state-{tone.value}.svg", "resources/icons") in dests
    for size in resources.APP_ICON_SIZES:
        assert (f"toolbox-{size}.png", "resources/app/png") in dests
    assert {("toolbox.icns", "resources/app"), ("toolbox.ico", "resources/app")} <= dests
    every_file = sorted(p for p in (ROOT / "resources").rglob("*") if p.is_file())
    assert [p for p in every_file if p.suffix in (".svg", ".png", ".icns", ".ico")] == [
        Path(src) for src, _ in datas
    ]


def test_package_data_globs_cover_the_same_files() -> None:
    import tomllib

    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["resources"]
    packaged = sorted({p for g in globs for p in (ROOT / "resources").glob(g)})
    assert packaged == resources.data_files()


def _qt_modules_imported(folder: Path) -> set[str]:
    found = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            found |= {n.split(".")[1] for n in names if n.startswith("PySide6.")}
    return found


def test_excluded_qt_modules_are_ones_the_app_never_imports() -> None:
    used = _qt_modules_imported(ROOT / "ui") | _qt_modules_imported(ROOT / "resources")
    assert used <= set(bundle.QT_MODULES_USED), "add it to QT_MODULES_USED in toolbox_bundle.py"
    excluded = {
        m.removeprefix("PySide6.") for m in bundle.app_excludes() if m.startswith("PySide6.")
    }
    assert not excluded & used
    assert {"QtQml", "QtQuick", "QtWebEngineCore", "QtPdf"} <= excluded
    assert "PySide6" in bundle.cli_excludes() and "ui" in bundle.cli_excludes()


def test_dropped_files_are_only_unused_plugins_and_translations() -> None:
    dropped = [
        "PySide6/Qt/translations/qtbase_de.qm",
        "PySide6/Qt/plugins/imageformats/libqpdf.so",
        "PySide6/Qt/plugins/imageformats/qtiff.dll",
        "PySide6/Qt/plugins/platforms/libqeglfs.so",
        "PySide6/Qt/plugins/platforms/libqvnc.so",
        "PySide6/Qt/plugins/generic/libqevdevmouseplugin.so",
        "PySide6/Qt/lib/libQt6EglFSDeviceIntegration.so.6",
    ]
    kept = [
        "PySide6/Qt/lib/libQt6Core.so.6",
        "PySide6/Qt/lib/libQt6Svg.so.6",
        "PySide6/Qt/plugins/platforms/libqxcb.so",
        "PySide6/Qt/plugins/platforms/libqoffscreen.so",
        "PySide6/Qt/plugins/platforms/libqwayland.so",
        "PySide6\\plugins\\platforms\\qwindows.dll",
        "PySide6/Qt/plugins/platforms/libqcocoa.dylib",
        "PySide6/Qt/plugins/imageformats/libqsvg.so",
        "PySide6/Qt/plugins/imageformats/libqicns.so",
        "PySide6/Qt/plugins/iconengines/libqsvgicon.so",
        "resources/app/png/toolbox-16.png",
    ]
    assert [d for d in dropped if bundle.keep_file(d)] == []
    assert [k for k in kept if not bundle.keep_file(k)] == []
    toc = [(d, "/src/" + d, "BINARY") for d in dropped + kept]
    assert [e[0] for e in bundle.filter_toc(toc)] == kept


def test_info_plist_and_windows_version_resource() -> None:
    plist = bundle.info_plist("1.2.3")
    assert plist["CFBundleIdentifier"] == "dev.toolbox.Toolbox"
    assert plist["LSMinimumSystemVersion"] == "13.0"
    assert plist["NSHighResolutionCapable"] is True
    assert plist["LSBackgroundOnly"] is False  # else the CLI's console=True hides the app
    assert plist["CFBundleShortVersionString"] == "1.2.3"
    versions = ("1.2.3", "0.1", "2.0.0.dev4", "3.1.4.1.5", "1.0+local")
    assert [bundle.version_tuple(v) for v in versions] == [
        (1, 2, 3, 0), (0, 1, 0, 0), (2, 0, 0, 4), (3, 1, 4, 1), (1, 0, 0, 0),
    ]  # fmt: skip
    with pytest.raises(ValueError):
        bundle.version_tuple("dev")
    info = bundle.windows_version_info("1.2.3", "Toolbox", "Toolbox")
    strings = dict(info.strings)
    assert info.numbers == (1, 2, 3, 0)
    assert strings["OriginalFilename"] == "Toolbox.exe"
    assert strings["ProductVersion"] == "1.2.3" and strings["FileVersion"] == "1.2.3.0"


class _Recorded:
    """Stands in for one PyInstaller build class while the spec runs: keeps its arguments."""

    made: list[_Recorded] = []

    def __init__(self, *args: Any, **kwargs: Any):
        self.args, self.kwargs = args, kwargs
        self.pure, self.scripts = ["pure"], ["script"]
        self.binaries = [
            ("PySide6/Qt/lib/libQt6Core.so.6", "/x", "BINARY"),
            ("PySide6/Qt/plugins/platforms/libqvnc.so", "/x", "BINARY"),
        ]
        self.datas = [("resources/app/toolbox.ico", "/x", "DATA")]
        _Recorded.made.append(self)


def _run_spec(
    monkeypatch: pytest.MonkeyPatch, sys_platform: str, environ: dict[str, str]
) -> dict[str, list[_Recorded]]:
    """Execute packaging/toolbox.spec as PyInstaller would, with recording stand-ins for
    its build classes and hooks, and return what it made by class."""
    made: dict[str, list[_Recorded]] = {}

    def kind(name: str) -> type:
        cls = type(name, (_Recorded,), {})
        made[name] = []
        original = cls.__init__

        def init(self: Any, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            made[name].append(self)

        cls.__init__ = init  # type: ignore[misc]
        return cls

    hooks = types.ModuleType("PyInstaller.utils.hooks")
    hooks.collect_submodules = lambda package: [f"{package}.collected"]  # type: ignore[attr-defined]
    versioninfo = types.ModuleType("PyInstaller.utils.win32.versioninfo")
    for name in (
        "VSVersionInfo",
        "FixedFileInfo",
        "StringFileInfo",
        "StringTable",
        "StringStruct",
        "VarFileInfo",
        "VarStruct",
    ):
        setattr(versioninfo, name, kind(name))
    for name, module in {
        "PyInstaller": types.ModuleType("PyInstaller"),
        "PyInstaller.utils": types.ModuleType("PyInstaller.utils"),
        "PyInstaller.utils.hooks": hooks,
        "PyInstaller.utils.win32": types.ModuleType("PyInstaller.utils.win32"),
        "PyInstaller.utils.win32.versioninfo": versioninfo,
    }.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(sys, "platform", sys_platform)
    monkeypatch.setattr(sys, "path", list(sys.path))
    for key in ("TOOLBOX_CODESIGN_IDENTITY",):
        monkeypatch.delenv(key, raising=False)
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    spec_globals = {
        "SPECPATH": str(PACKAGING),
        "__name__": "__main__",
        **{n: kind(n) for n in ("Analysis", "PYZ", "EXE", "COLLECT", "BUNDLE")},
    }
    source = (PACKAGING / "toolbox.spec").read_text(encoding="utf-8")
    exec(compile(source, str(PACKAGING / "toolbox.spec"), "exec"), spec_globals)
    return made


def test_spec_makes_the_app_and_cli_in_one_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    made = _run_spec(monkeypatch, "linux", {})
    app, cli = made["Analysis"]
    assert app.args[0] == [str(ROOT / "packaging" / "entry_app.py")]
    assert cli.args[0] == [str(ROOT / "packaging" / "entry_cli.py")]
    assert app.kwargs["datas"] == bundle.resource_datas(ROOT)
    assert "datas" not in cli.kwargs
    assert app.kwargs["excludes"] == bundle.app_excludes()
    assert cli.kwargs["excludes"] == bundle.cli_excludes()
    assert {"toolbox.collected", "ui.collected", "resources.collected"} <= set(
        app.kwargs["hiddenimports"]
    )
    assert cli.kwargs["hiddenimports"] == ["toolbox.collected"]
    assert [b[0] for b in app.binaries] == ["PySide6/Qt/lib/libQt6Core.so.6"]  # filtered
    app_exe, cli_exe = made["EXE"]
    assert (app_exe.kwargs["name"], app_exe.kwargs["console"]) == ("Toolbox", False)
    assert (cli_exe.kwargs["name"], cli_exe.kwargs["console"]) == ("toolbox-cli", True)
    assert app_exe.kwargs["exclude_binaries"] and cli_exe.kwargs["exclude_binaries"]
    assert app_exe.kwargs["strip"] is True and app_exe.kwargs["codesign_identity"] is None
    (collect,) = made["COLLECT"]
    assert collect.kwargs["name"] == "Toolbox"
    assert collect.args[0] is app_exe and collect.args[3] is cli_exe  # the app comes first
    assert made["BUNDLE"] == []
    assert app_exe.kwargs["version"] is None


def test_spec_on_macos_makes_a_signed_app_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    made = _run_spec(
        monkeypatch, "darwin", {"TOOLBOX_CODESIGN_IDENTITY": "Developer ID Application: X"}
    )
    (app_bundle,) = made["BUNDLE"]
    assert app_bundle.args[0] is made["COLLECT"][0]
    assert app_bundle.kwargs["name"] == "Toolbox.app"
    assert app_bundle.kwargs["bundle_identifier"] == "dev.toolbox.Toolbox"
    assert app_bundle.kwargs["icon"] == str(ROOT / "resources" / "app" / "toolbox.icns")
    assert app_bundle.kwargs["info_plist"] == bundle.info_plist(__version__)
    for exe in made["EXE"]:
        assert exe.kwargs["codesign_identity"] == "Developer ID Application: X"
        assert exe.kwargs["entitlements_file"] == str(PACKAGING / "macos" / "entitlements.plist")
        assert exe.kwargs["strip"] is False
    assert Path(made["EXE"][0].kwargs["entitlements_file"]).is_file()


def test_spec_on_windows_sets_icon_and_version_resource(monkeypatch: pytest.MonkeyPatch) -> None:
    made = _run_spec(monkeypatch, "win32", {})
    app_exe, cli_exe = made["EXE"]
    assert app_exe.kwargs["icon"] == str(ROOT / "resources" / "app" / "toolbox.ico")
    assert cli_exe.kwargs["version"] is made["VSVersionInfo"][1]
    assert app_exe.kwargs["version"] is made["VSVersionInfo"][0]
    fixed = made["FixedFileInfo"][0]
    assert fixed.kwargs["filevers"] == bundle.version_tuple(__version__)
    structs = {(s.args[0], s.args[1]) for s in made["StringStruct"]}
    assert ("OriginalFilename", "Toolbox.exe") in structs
    assert ("OriginalFilename", "toolbox-cli.exe") in structs
    assert made["BUNDLE"] == []


# --- the Inno Setup script --------------------------------------------------------------


ISS_TEXT = (PACKAGING / "windows" / "toolbox.iss").read_text(encoding="utf-8")


def _setup_directives() -> dict[str, str]:
    section = ISS_TEXT.split("[Setup]", 1)[1].split("\n[", 1)[0]
    pairs = (
        line.split("=", 1)
        for line in section.splitlines()
        if "=" in line and not line.startswith((";", "#"))
    )
    return {key.strip(): value.strip() for key, value in pairs}


def test_installer_is_per_user_with_shortcuts_uninstaller_and_path() -> None:
    setup = _setup_directives()
    assert setup["PrivilegesRequired"] == "lowest"
    assert setup["DefaultDirName"] == r"{localappdata}\Programs\{#AppName}"
    assert setup["ChangesEnvironment"] == "yes"
    assert setup["UninstallDisplayIcon"] == r"{app}\{#AppExe}"
    assert "Uninstallable" not in setup  # an uninstaller is Inno's default
    icon = (PACKAGING / "windows" / setup["SetupIconFile"].replace("\\", "/")).resolve()
    assert icon == resources.app_icon_file("ico")
    assert '#define AppName "Toolbox"' in ISS_TEXT
    assert f'#define AppExe "{bundle.APP_NAME}.exe"' in ISS_TEXT
    assert f'#define CliDir "{bundle.SHIM_DIR}"' in ISS_TEXT
    assert re.search(
        r'^Name: "\{autoprograms\}\\\{#AppName\}"; Filename: "\{app\}\\\{#AppExe\}"$',
        ISS_TEXT,
        re.M,
    )
    assert re.search(r'^Name: "desktopicon";.*Flags: unchecked$', ISS_TEXT, re.M)
    assert re.search(r"Tasks: desktopicon$", ISS_TEXT, re.M)
    assert "AddToUserPath(ExpandConstant('{app}\\{#CliDir}'))" in ISS_TEXT
    assert (
        "usPostUninstall" in ISS_TEXT
        and "RemoveFromUserPath(ExpandConstant('{app}\\{#CliDir}'))" in ISS_TEXT
    )
    assert "VBoxManage.exe" in ISS_TEXT and "qemu-system-x86_64.exe" in ISS_TEXT


def test_installer_script_uses_every_define_the_build_passes() -> None:
    argv = build.iscc_argv(
        "ISCC", PureWindowsPath("t.iss"), "1.2.3", PureWindowsPath("s"), PureWindowsPath("o"), "f",
        build.WindowsSigning("st", cert_sha1="AB"),
    )  # fmt: skip
    defines = {a[2:].split("=", 1)[0] for a in argv if a.startswith("/D")}
    assert defines == {"AppVersion", "VersionNumbers", "SourceDir", "SignTool"}
    for name in defines:
        assert f"{{#{name}}}" in ISS_TEXT, name
    assert "#ifdef SignTool" in ISS_TEXT and "SignedUninstaller=yes" in ISS_TEXT
    code = ISS_TEXT.split("[Code]", 1)[1]
    code = re.sub(r"\{[^}]*\}|'[^']*'", "", code)  # comments and strings
    assert len(re.findall(r"\bbegin\b", code)) == len(re.findall(r"\bend\b", code))


# --- resources located at run time ------------------------------------------------------


def test_resources_found_in_a_pyinstaller_bundle(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "resources" / "icons").mkdir(parents=True)
    (tmp_path / "resources" / "icons" / "start.svg").write_text("<svg/>")
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert resources.root() == tmp_path / "resources"
    assert resources.icon_path("start") == tmp_path / "resources" / "icons" / "start.svg"
    with pytest.raises(resources.ResourceMissing) as missing:
        resources.icon_path("stop")
    assert isinstance(missing.value, ToolboxError) and missing.value.hint
    assert missing.value.path == tmp_path / "resources" / "icons" / "stop.svg"


def test_resources_found_in_the_source_tree() -> None:
    assert resources.root() == ROOT / "resources"
    for name in resources.ACTION_ICONS:
        text = resources.icon_path(name).read_text()
        assert "currentColor" in text and 'viewBox="0 0 24 24"' in text, name
    assert resources.app_icon_file("ico").name == "toolbox.ico"
    assert resources.app_icon_png(256).name == "toolbox-256.png"
    with pytest.raises(resources.ResourceMissing):
        resources.icon_path("../app/toolbox")
    with pytest.raises(resources.ResourceMissing):
        resources.app_icon_png(100)


def test_every_state_has_a_tone_and_an_icon() -> None:
    tones = {s: resources.state_tone(s) for s in [*ContainerState, *MachineState, *VMState]}
    assert tones[ContainerState.RUNNING] is resources.StateTone.RUNNING
    assert tones[MachineState.RUNNING] is resources.StateTone.RUNNING
    assert tones[ContainerState.PAUSED] is resources.StateTone.PAUSED
    assert tones[ContainerState.RESTARTING] is resources.StateTone.BUSY
    assert tones[MachineState.STARTING] is resources.StateTone.BUSY
    assert tones[ContainerState.EXITED] is resources.StateTone.STOPPED
    assert tones[VMState.SAVED] is resources.StateTone.STOPPED
    assert tones[ContainerState.DEAD] is resources.StateTone.ERROR
    assert tones[VMState.ABORTED] is resources.StateTone.ERROR
    assert tones[MachineState.UNKNOWN] is resources.StateTone.UNKNOWN
    assert tones[VMState.NOT_FOUND] is resources.StateTone.UNKNOWN
    assert resources.state_tone("Running") is resources.StateTone.RUNNING
    assert resources.state_tone("weird") is resources.StateTone.UNKNOWN
    for state in tones:
        assert resources.state_icon_path(state).is_file()


# --- icon containers (pure writers; Qt reads them back in tests/ui/test_resources.py) ----


def _png(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + b"\0\0\0\0"


def test_ico_container_layout() -> None:
    small, big = _png(16, 16), _png(256, 256)
    data = icons.ico_bytes([small, big])
    assert struct.unpack("<HHH", data[:6]) == (0, 1, 2)
    first = struct.unpack("<BBBBHHII", data[6:22])
    second = struct.unpack("<BBBBHHII", data[22:38])
    assert first == (16, 16, 0, 0, 1, 32, len(small), 38)
    assert second == (0, 0, 0, 0, 1, 32, len(big), 38 + len(small))  # 0 means 256
    assert data[38 : 38 + len(small)] == small and data[38 + len(small) :] == big
    with pytest.raises(ValueError, match="at most 256"):
        icons.ico_bytes([_png(512, 512)])


def test_icns_container_layout() -> None:
    a, b = _png(16, 16), _png(32, 32)
    data = icons.icns_bytes([("icp4", a), ("ic11", b)])
    assert data[:4] == b"icns" and struct.unpack(">I", data[4:8])[0] == len(data)
    assert data[8:12] == b"TOC " and struct.unpack(">I", data[12:16])[0] == 8 + 16
    assert data[16:24] == b"icp4" + struct.pack(">I", 8 + len(a))
    assert data[24:32] == b"ic11" + struct.pack(">I", 8 + len(b))
    assert data[32:40] == b"icp4" + struct.pack(">I", 8 + len(a)) and data[40 : 40 + len(a)] == a
    with pytest.raises(ValueError):
        icons.icns_bytes([("toolong", a)])


def test_committed_icon_files_match_their_sources() -> None:
    stamp = (ROOT / "resources" / "app" / icons.STAMP).read_text().strip()
    assert stamp == icons.sources_digest(), "the SVGs changed: run packaging/make_icons.py"
    ico = resources.app_icon_file("ico").read_bytes()
    count = struct.unpack("<HHH", ico[:6])[2]
    entries = [struct.unpack("<BBBBHHII", ico[6 + 16 * i : 22 + 16 * i]) for i in range(count)]
    assert [e[0] or 256 for e in entries] == list(icons.ICO_SIZES)
    for entry in entries:
        png = ico[entry[7] : entry[7] + entry[6]]
        assert icons.png_size(png) == (entry[0] or 256, entry[1] or 256)
    icns = resources.app_icon_file("icns").read_bytes()
    assert icns[:4] == b"icns" and struct.unpack(">I", icns[4:8])[0] == len(icns)
    offset, kinds = 8, []
    while offset < len(icns):
        kind, length = (
            icns[offset : offset + 4].decode(),
            struct.unpack(">I", icns[offset + 4 : offset + 8])[0],
        )
        if kind != "TOC ":
            kinds.append((kind, icons.png_size(icns[offset + 8 : offset + length])[0]))
        offset += length
    assert offset == len(icns)
    assert kinds == list(icons.ICNS_TYPES)


# --- the real build (opt-in) --------------------------------------------------------------


@pytest.fixture
def packaging_build(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if os.environ.get("TOOLBOX_TEST_PACKAGING") != "1":
        pytest.skip("set TOOLBOX_TEST_PACKAGING=1 to build the bundle (minutes)")
    if importlib.util.find_spec("PyInstaller") is None:
        pytest.skip("PyInstaller is not installed: pip install -e '.[packaging]'")
    yield tmp_path_factory.mktemp("packaging")


@pytest.mark.packaging
@pytest.mark.timeout(1800)
def test_linux_bundle_builds_and_starts(packaging_build: Path) -> None:
    if sys.platform != "linux":
        pytest.skip("this check builds the Linux tarball")
    dist, work = packaging_build / "dist", packaging_build / "work"
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(PACKAGING / "build.py"), "--target", "tarball",
         "--dist", str(dist), "--work", str(work)],
        cwd=ROOT, capture_output=True, text=True, timeout=1500,
    )  # fmt: skip
    build_seconds = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    arch = build.arch_label(os.uname().machine)
    tarball = dist / f"Toolbox-{__version__}-linux-{arch}.tar.gz"
    assert proc.stdout.strip().endswith(f"Built {tarball}")
    folder = dist / "Toolbox"

    # The CLI, through the bin/toolbox symlink the PATH would hold.
    cli = subprocess.run(
        [str(folder / "bin" / "toolbox"), "--version"], capture_output=True, text=True, timeout=120
    )
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.strip() == f"toolbox {__version__}"
    home = {**os.environ, "TOOLBOX_HOME": str(packaging_build / "home")}
    listing = subprocess.run(
        [str(folder / "bin" / "toolbox"), "ls"],
        capture_output=True,
        text=True,
        timeout=120,
        env=home,
    )  # loads the machine store and the drivers: modules a bare --version never imports
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.split()[:4] == ["NAME", "ACTIVE", "DRIVER", "STATE"]

    # The app, until its first window has painted (ui/app.py's TOOLBOX_EXIT_AFTER_PAINT).
    env = {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "TOOLBOX_EXIT_AFTER_PAINT": "1",
        "TOOLBOX_HOME": str(packaging_build / "home"),
    }
    started = time.monotonic()
    app = subprocess.run(
        [str(folder / "Toolbox")], capture_output=True, text=True, timeout=120, env=env
    )
    paint_seconds = time.monotonic() - started
    assert app.returncode == 0, app.stdout + app.stderr
    assert "first-paint" in app.stdout.splitlines()
    assert "Traceback" not in app.stderr

    # The resources the frozen app locates through sys._MEIPASS.
    internal = folder / "_internal"
    for path in resources.data_files():
        assert (internal / path.relative_to(ROOT)).is_file(), path
    assert not (internal / "PySide6" / "QtQml.abi3.so").exists()
    with tarfile.open(tarball) as archive:
        names = set(archive.getnames())
    assert {"Toolbox/Toolbox", "Toolbox/toolbox-cli", "Toolbox/bin/toolbox"} <= names
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
    print(
        f"\nbundle: {size / 2**20:.0f} MiB unpacked, {tarball.stat().st_size / 2**20:.0f} MiB "
        f"tar.gz; build {build_seconds:.0f} s; app start to first paint {paint_seconds:.2f} s"
    )
