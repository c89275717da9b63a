"""Build Toolbox's installers: ``python packaging/build.py [--target TARGET] [--dry-run]``.

Runs PyInstaller with ``packaging/toolbox.spec``, then packs the bundle for the platform it
runs on: a ``.dmg`` on macOS (``hdiutil``), an Inno Setup installer on Windows (``ISCC``), a
``.tar.gz`` on Linux. Code signing and notarization run only when their environment
variables are set (packaging/README.md lists them). The build is a plan of typed steps, each
external command an argv list made by a pure function, so tests check the exact commands
for every platform and ``--dry-run`` prints them.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform as host_platform
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path, PurePath, PureWindowsPath

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _path in (str(ROOT), str(HERE)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import toolbox_bundle as tb  # noqa: E402

from toolbox import __version__  # noqa: E402
from toolbox.errors import CommandError, ToolboxError  # noqa: E402

SPEC = HERE / "toolbox.spec"
ISS = HERE / "windows" / "toolbox.iss"
ENTITLEMENTS = HERE / "macos" / "entitlements.plist"

# Signing and notarization settings, read from the environment (documented in README.md).
ENV_CODESIGN_IDENTITY = "TOOLBOX_CODESIGN_IDENTITY"
ENV_NOTARY_PROFILE = "TOOLBOX_NOTARY_PROFILE"
ENV_NOTARY_APPLE_ID = "TOOLBOX_NOTARY_APPLE_ID"
ENV_NOTARY_TEAM_ID = "TOOLBOX_NOTARY_TEAM_ID"
ENV_NOTARY_PASSWORD = "TOOLBOX_NOTARY_PASSWORD"
ENV_SIGNTOOL = "TOOLBOX_SIGNTOOL"
ENV_SIGNTOOL_SHA1 = "TOOLBOX_SIGNTOOL_CERT_SHA1"
ENV_SIGNTOOL_PFX = "TOOLBOX_SIGNTOOL_PFX"
ENV_SIGNTOOL_PFX_PASSWORD = "TOOLBOX_SIGNTOOL_PFX_PASSWORD"
ENV_SIGNTOOL_TIMESTAMP = "TOOLBOX_SIGNTOOL_TIMESTAMP_URL"
ENV_ISCC = "TOOLBOX_ISCC"
DEFAULT_TIMESTAMP_URL = "http://timestamp.digicert.com"
INNO_SIGNTOOL_NAME = "toolboxsign"

ISCC_LOCATIONS = (
    PureWindowsPath(r"C:\Program Files (x86)\Inno Setup 6\ISCC.exe"),
    PureWindowsPath(r"C:\Program Files\Inno Setup 6\ISCC.exe"),
)


class PackagingError(ToolboxError):
    """The installer could not be built."""


class MissingTool(PackagingError):
    """A program the build needs is not installed; the hint says how to get it."""


class Platform(Enum):
    MACOS = "macos"
    WINDOWS = "windows"
    LINUX = "linux"

    @classmethod
    def current(cls, sys_platform: str = sys.platform) -> Platform:
        if sys_platform == "darwin":
            return cls.MACOS
        if sys_platform in ("win32", "cygwin"):
            return cls.WINDOWS
        return cls.LINUX


class Target(Enum):
    APP = "app"  # the PyInstaller bundle only (Toolbox.app, or the Toolbox folder)
    DMG = "dmg"  # macOS disk image
    WINDOWS_INSTALLER = "windows-installer"  # Inno Setup installer .exe
    TARBALL = "tarball"  # .tar.gz of the onedir bundle

    @classmethod
    def default_for(cls, plat: Platform) -> Target:
        return {
            Platform.MACOS: cls.DMG,
            Platform.WINDOWS: cls.WINDOWS_INSTALLER,
            Platform.LINUX: cls.TARBALL,
        }[plat]


def arch_label(machine: str) -> str:
    """The architecture as it appears in file names: ``x64`` or ``arm64``."""
    lowered = machine.lower()
    if lowered in ("x86_64", "amd64", "x64"):
        return "x64"
    if lowered in ("arm64", "aarch64"):
        return "arm64"
    return lowered or "unknown"


# Signing settings


@dataclass(frozen=True)
class MacSigning:
    """A Developer ID identity for codesign (PyInstaller signs the binaries with it too)."""

    identity: str
    entitlements: PurePath = ENTITLEMENTS


@dataclass(frozen=True)
class NotaryProfile:
    """Credentials stored in the keychain with ``xcrun notarytool store-credentials NAME``."""

    name: str


@dataclass(frozen=True)
class NotaryCredentials:
    """An Apple ID, its team and an app-specific password."""

    apple_id: str
    team_id: str
    password: str


Notarization = NotaryProfile | NotaryCredentials


@dataclass(frozen=True)
class WindowsSigning:
    """An Authenticode certificate: from the certificate store by SHA-1 thumbprint, or a PFX."""

    signtool: str
    timestamp_url: str = DEFAULT_TIMESTAMP_URL
    cert_sha1: str | None = None
    pfx: str | None = None
    pfx_password: str | None = None

    def certificate_args(self) -> list[str]:
        if self.cert_sha1:
            return ["/sha1", self.cert_sha1]
        args = ["/f", str(self.pfx)]
        if self.pfx_password:
            args += ["/p", self.pfx_password]
        return args


def mac_signing_from_env(environ: Mapping[str, str]) -> MacSigning | None:
    identity = tb.codesign_identity(environ)
    return MacSigning(identity) if identity else None


def notarization_from_env(
    environ: Mapping[str, str], signing: MacSigning | None
) -> Notarization | None:
    """Notarization settings, or None when none are set; half a setting is an error."""
    profile = environ.get(ENV_NOTARY_PROFILE)
    names = (ENV_NOTARY_APPLE_ID, ENV_NOTARY_TEAM_ID, ENV_NOTARY_PASSWORD)
    values = [environ.get(n) or "" for n in names]
    result: Notarization | None = None
    if profile:
        result = NotaryProfile(profile)
    elif any(values):
        missing = [n for n, v in zip(names, values, strict=True) if not v]
        if missing:
            raise PackagingError(
                f"Notarization needs {', '.join(missing)} as well",
                hint=f"Set all of {', '.join(names)}, or only {ENV_NOTARY_PROFILE}.",
            )
        result = NotaryCredentials(*values)
    if result is not None and signing is None:
        raise PackagingError(
            "Notarization was requested but the app is not signed",
            hint=f"Set {ENV_CODESIGN_IDENTITY} to a 'Developer ID Application' identity.",
        )
    return result


def windows_signing_from_env(
    environ: Mapping[str, str], find_signtool: Callable[[], str]
) -> WindowsSigning | None:
    """Authenticode settings, or None when no certificate is named."""
    sha1 = environ.get(ENV_SIGNTOOL_SHA1) or None
    pfx = environ.get(ENV_SIGNTOOL_PFX) or None
    if not sha1 and not pfx:
        return None
    if sha1 and pfx:
        raise PackagingError(
            f"Both {ENV_SIGNTOOL_SHA1} and {ENV_SIGNTOOL_PFX} are set",
            hint="Name the certificate one way: a store thumbprint or a PFX file.",
        )
    return WindowsSigning(
        signtool=find_signtool(),
        timestamp_url=environ.get(ENV_SIGNTOOL_TIMESTAMP) or DEFAULT_TIMESTAMP_URL,
        cert_sha1=sha1,
        pfx=pfx,
        pfx_password=environ.get(ENV_SIGNTOOL_PFX_PASSWORD) or None,
    )


# Finding tools

Which = Callable[[str], str | None]
Exists = Callable[[PurePath], bool]


def check_pyinstaller(available: Callable[[], bool]) -> None:
    if not available():
        raise MissingTool(
            "PyInstaller is not installed in this Python",
            hint="Install the packaging extra: pip install -e '.[packaging]'",
        )


def pyinstaller_available() -> bool:
    return importlib.util.find_spec("PyInstaller") is not None


def find_iscc(environ: Mapping[str, str], which: Which, exists: Exists) -> str:
    """ISCC.exe: ``TOOLBOX_ISCC``, then PATH, then Inno Setup 6's install folders."""
    if environ.get(ENV_ISCC):
        return environ[ENV_ISCC]
    on_path = which("ISCC") or which("iscc")
    if on_path:
        return on_path
    candidates = list(ISCC_LOCATIONS)
    if environ.get("LOCALAPPDATA"):
        local = PureWindowsPath(environ["LOCALAPPDATA"])
        candidates.append(local / "Programs" / "Inno Setup 6" / "ISCC.exe")
    for candidate in candidates:
        if exists(candidate):
            return str(candidate)
    raise MissingTool(
        "Inno Setup's compiler (ISCC.exe) was not found",
        hint="Install Inno Setup 6 (winget install JRSoftware.InnoSetup), put ISCC.exe on "
        f"PATH, or set {ENV_ISCC} to its path.",
    )


def find_signtool(
    environ: Mapping[str, str], which: Which, kit_candidates: Iterable[PurePath] = ()
) -> str:
    """signtool.exe: ``TOOLBOX_SIGNTOOL``, then PATH, then the newest Windows SDK's x64 one."""
    if environ.get(ENV_SIGNTOOL):
        return environ[ENV_SIGNTOOL]
    on_path = which("signtool")
    if on_path:
        return on_path
    found = sorted(kit_candidates, key=lambda p: _version_key(p.parent.parent.name))
    if found:
        return str(found[-1])
    raise MissingTool(
        "signtool.exe was not found, but a signing certificate is configured",
        hint="Install the Windows SDK's Signing Tools, or set "
        f"{ENV_SIGNTOOL} to signtool.exe's path.",
    )


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".") if p.isdigit())


def windows_kit_signtools() -> list[PurePath]:
    kits = Path(r"C:\Program Files (x86)\Windows Kits\10\bin")
    return list(kits.glob("*/x64/signtool.exe")) if kits.is_dir() else []


def require_tool(name: str, which: Which, hint: str) -> str:
    found = which(name)
    if not found:
        raise MissingTool(f"{name} was not found", hint=hint)
    return found


XCODE_HINT = "Install Xcode's command line tools: xcode-select --install"


# Command lines (pure)


def pyinstaller_argv(
    python: str, spec: PurePath, dist: PurePath, work: PurePath, clean: bool = False
) -> list[str]:
    argv = [python, "-m", "PyInstaller", "--noconfirm"]
    if clean:
        argv.append("--clean")
    return [*argv, "--distpath", str(dist), "--workpath", str(work), str(spec)]


def codesign_verify_argv(app: PurePath) -> list[str]:
    return ["codesign", "--verify", "--deep", "--strict", "--verbose=2", str(app)]


def hdiutil_argv(staging: PurePath, dmg: PurePath, volume: str = tb.APP_NAME) -> list[str]:
    """A compressed (UDZO) read-only disk image of the staging folder."""
    return [
        "hdiutil", "create",
        "-volname", volume,
        "-srcfolder", str(staging),
        "-fs", "HFS+",
        "-format", "UDZO",
        "-ov",
        str(dmg),
    ]  # fmt: skip


def codesign_file_argv(signing: MacSigning, path: PurePath) -> list[str]:
    """Sign a disk image (the app inside is signed by PyInstaller already)."""
    return ["codesign", "--force", "--timestamp", "--sign", signing.identity, str(path)]


def notarytool_argv(path: PurePath, notarization: Notarization) -> list[str]:
    argv = ["xcrun", "notarytool", "submit", str(path)]
    if isinstance(notarization, NotaryProfile):
        argv += ["--keychain-profile", notarization.name]
    else:
        argv += [
            "--apple-id", notarization.apple_id,
            "--team-id", notarization.team_id,
            "--password", notarization.password,
        ]  # fmt: skip
    return [*argv, "--wait"]


def stapler_argv(path: PurePath) -> list[str]:
    return ["xcrun", "stapler", "staple", str(path)]


def signtool_sign_argv(signing: WindowsSigning, files: Sequence[PurePath]) -> list[str]:
    return [
        signing.signtool, "sign",
        "/fd", "sha256",
        "/tr", signing.timestamp_url,
        "/td", "sha256",
        "/d", tb.APP_NAME,
        *signing.certificate_args(),
        *[str(f) for f in files],
    ]  # fmt: skip


def signtool_verify_argv(signing: WindowsSigning, path: PurePath) -> list[str]:
    return [signing.signtool, "verify", "/pa", str(path)]


def inno_signtool_command(signing: WindowsSigning) -> str:
    """The sign command Inno Setup runs on the setup and uninstaller: ``$f`` is the file and
    ``$q`` a quote (so the whole definition stays one argument)."""
    args = [signing.signtool, *signtool_sign_argv(signing, [])[1:]]
    return " ".join(_inno_quote(a) for a in args) + " $f"


def _inno_quote(arg: str) -> str:
    arg = arg.replace("$", "$$")
    return f"$q{arg}$q" if (" " in arg or not arg) else arg


def iscc_argv(
    iscc: str,
    iss: PurePath,
    version: str,
    source_dir: PurePath,
    output_dir: PurePath,
    output_name: str,
    signing: WindowsSigning | None = None,
) -> list[str]:
    argv = [
        iscc,
        "/Qp",
        f"/DAppVersion={version}",
        f"/DVersionNumbers={'.'.join(str(n) for n in tb.version_tuple(version))}",
        f"/DSourceDir={source_dir}",
        f"/O{output_dir}",
        f"/F{output_name}",
    ]
    if signing is not None:
        argv += [
            f"/S{INNO_SIGNTOOL_NAME}={inno_signtool_command(signing)}",
            f"/DSignTool={INNO_SIGNTOOL_NAME}",
        ]
    return [*argv, str(iss)]


def cli_shim_name(plat: Platform) -> str:
    return f"{tb.CLI_COMMAND}.cmd" if plat is Platform.WINDOWS else tb.CLI_COMMAND


def windows_cli_shim_text() -> str:
    """``bin\\toolbox.cmd``: runs ``toolbox-cli.exe`` one folder up with every argument."""
    return f'@"%~dp0..\\{tb.CLI_NAME}.exe" %*\r\n'


# Where things land


@dataclass(frozen=True)
class Layout:
    """Output paths of one build."""

    dist: PurePath
    work: PurePath
    version: str
    arch: str
    platform: Platform

    @property
    def bundle_dir(self) -> PurePath:
        """The onedir folder PyInstaller makes (``Toolbox/``)."""
        return self.dist / tb.APP_NAME

    @property
    def app_bundle(self) -> PurePath:
        return self.dist / f"{tb.APP_NAME}.app"

    @property
    def exe_suffix(self) -> str:
        return ".exe" if self.platform is Platform.WINDOWS else ""

    @property
    def app_exe(self) -> PurePath:
        return self.bundle_dir / f"{tb.APP_NAME}{self.exe_suffix}"

    @property
    def cli_exe(self) -> PurePath:
        return self.bundle_dir / f"{tb.CLI_NAME}{self.exe_suffix}"

    @property
    def cli_shim(self) -> PurePath:
        return self.bundle_dir / tb.SHIM_DIR / cli_shim_name(self.platform)

    def artifact_stem(self) -> str:
        return f"{tb.APP_NAME}-{self.version}-{self.platform.value}-{self.arch}"

    @property
    def dmg(self) -> PurePath:
        return self.dist / f"{self.artifact_stem()}.dmg"

    @property
    def dmg_staging(self) -> PurePath:
        return self.work / "dmg" / tb.APP_NAME

    @property
    def installer_name(self) -> str:
        return f"{self.artifact_stem()}-setup"

    @property
    def installer(self) -> PurePath:
        return self.dist / f"{self.installer_name}.exe"

    @property
    def tarball(self) -> PurePath:
        return self.dist / f"{self.artifact_stem()}.tar.gz"


# Steps


@dataclass(frozen=True)
class Run:
    """Run an external command; a non-zero exit fails the build with ``hint``."""

    argv: tuple[str, ...]
    hint: str = ""
    secret: tuple[str, ...] = ()  # values masked when the step is printed

    def describe(self) -> str:
        shown = " ".join(self.argv)
        for value in self.secret:
            shown = shown.replace(value, "***")
        return f"run: {shown}"


@dataclass(frozen=True)
class WriteCliShim:
    """``bin/toolbox`` beside the bundle's executables: a relative symlink to
    ``toolbox-cli`` on Linux, a one-line ``toolbox.cmd`` on Windows."""

    bundle_dir: PurePath
    platform: Platform

    def describe(self) -> str:
        return f"write {self.bundle_dir / tb.SHIM_DIR / cli_shim_name(self.platform)}"


@dataclass(frozen=True)
class StageDmg:
    """A folder with a copy of Toolbox.app and an ``Applications`` symlink to drag it onto."""

    app: PurePath
    staging: PurePath

    def describe(self) -> str:
        return f"stage {self.app} and an Applications link in {self.staging}"


@dataclass(frozen=True)
class MakeTarball:
    """A ``.tar.gz`` of the onedir folder, keeping its symlinks."""

    source: PurePath
    output: PurePath

    def describe(self) -> str:
        return f"pack {self.source} into {self.output}"


Step = Run | WriteCliShim | StageDmg | MakeTarball


@dataclass(frozen=True)
class BuildConfig:
    """Everything a plan depends on, resolved from the command line and the environment."""

    platform: Platform
    target: Target
    layout: Layout
    python: str = sys.executable
    spec: PurePath = SPEC
    iss: PurePath = ISS
    clean: bool = False
    iscc: str | None = None
    mac_signing: MacSigning | None = None
    notarization: Notarization | None = None
    windows_signing: WindowsSigning | None = None


def check_target(plat: Platform, target: Target) -> None:
    if target is Target.DMG and plat is not Platform.MACOS:
        raise PackagingError(
            "A .dmg can only be made on macOS (hdiutil)",
            hint="Build on a Mac, or use --target app or tarball here.",
        )
    if target is Target.WINDOWS_INSTALLER and plat is not Platform.WINDOWS:
        raise PackagingError(
            "The Windows installer can only be compiled on Windows (Inno Setup)",
            hint="Build on Windows, or use --target app or tarball here.",
        )


def plan(config: BuildConfig) -> list[Step]:
    """The build, step by step, for ``config``'s platform and target."""
    plat, target, out = config.platform, config.target, config.layout
    check_target(plat, target)
    steps: list[Step] = [
        Run(
            tuple(
                pyinstaller_argv(
                    config.python, config.spec, out.dist, out.work / "pyinstaller", config.clean
                )
            ),
            hint="PyInstaller failed; its log above names the module or file it choked on.",
        )
    ]
    if plat is not Platform.MACOS or target is Target.TARBALL:
        steps.append(WriteCliShim(out.bundle_dir, plat))
    if plat is Platform.MACOS and config.mac_signing is not None:
        steps.append(
            Run(tuple(codesign_verify_argv(out.app_bundle)), hint="The app's signature is broken.")
        )
    if plat is Platform.WINDOWS and config.windows_signing is not None:
        signing = config.windows_signing
        steps.append(
            Run(
                tuple(signtool_sign_argv(signing, [out.app_exe, out.cli_exe])),
                hint="signtool could not sign; check the certificate settings.",
                secret=(signing.pfx_password,) if signing.pfx_password else (),
            )
        )

    if target is Target.DMG:
        steps.append(StageDmg(out.app_bundle, out.dmg_staging))
        steps.append(Run(tuple(hdiutil_argv(out.dmg_staging, out.dmg))))
        if config.mac_signing is not None:
            steps.append(Run(tuple(codesign_file_argv(config.mac_signing, out.dmg))))
        if config.notarization is not None:
            secret = (
                (config.notarization.password,)
                if isinstance(config.notarization, NotaryCredentials)
                else ()
            )
            steps.append(
                Run(
                    tuple(notarytool_argv(out.dmg, config.notarization)),
                    hint="Apple refused the submission: `xcrun notarytool log <id>` says why.",
                    secret=secret,
                )
            )
            steps.append(Run(tuple(stapler_argv(out.dmg))))
    elif target is Target.WINDOWS_INSTALLER:
        if config.iscc is None:
            raise PackagingError("ISCC.exe was not resolved", hint="Set TOOLBOX_ISCC.")
        signing = config.windows_signing
        steps.append(
            Run(
                tuple(
                    iscc_argv(
                        config.iscc,
                        config.iss,
                        out.version,
                        out.bundle_dir,
                        out.dist,
                        out.installer_name,
                        signing,
                    )
                ),
                hint="Inno Setup failed; its message above names the line of toolbox.iss.",
                secret=(signing.pfx_password,) if signing and signing.pfx_password else (),
            )
        )
        if signing is not None:
            steps.append(Run(tuple(signtool_verify_argv(signing, out.installer))))
    elif target is Target.TARBALL:
        steps.append(MakeTarball(out.bundle_dir, out.tarball))
    return steps


def artifact(config: BuildConfig) -> PurePath:
    """What the build leaves for the user."""
    out = config.layout
    return {
        Target.APP: out.app_bundle if config.platform is Platform.MACOS else out.bundle_dir,
        Target.DMG: out.dmg,
        Target.WINDOWS_INSTALLER: out.installer,
        Target.TARBALL: out.tarball,
    }[config.target]


# Running a plan

CommandRunner = Callable[[Sequence[str]], int]


def stream_command(argv: Sequence[str]) -> int:
    """Run with the output going straight to the terminal (PyInstaller's log is long)."""
    try:
        return subprocess.call(list(argv))
    except FileNotFoundError as exc:
        raise MissingTool(f"Program not found: {argv[0]}", hint="Install it or fix PATH.") from exc


def write_cli_shim(bundle_dir: Path, plat: Platform) -> Path:
    shim_dir = bundle_dir / tb.SHIM_DIR
    shim_dir.mkdir(parents=True, exist_ok=True)
    shim = shim_dir / cli_shim_name(plat)
    if shim.is_symlink() or shim.exists():
        shim.unlink()
    if plat is Platform.WINDOWS:
        shim.write_bytes(windows_cli_shim_text().encode("ascii"))
    else:
        shim.symlink_to(Path("..") / tb.CLI_NAME)
    return shim


def stage_dmg(app: Path, staging: Path) -> None:
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    shutil.copytree(app, staging / app.name, symlinks=True)
    (staging / "Applications").symlink_to("/Applications")


def make_tarball(source: Path, output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".part")
    with tarfile.open(partial, "w:gz") as archive:
        archive.add(source, arcname=source.name)  # symlinks stay symlinks
    partial.replace(output)


def execute(
    steps: Sequence[Step],
    runner: CommandRunner = stream_command,
    log: Callable[[str], None] = print,
) -> None:
    for step in steps:
        log(f"==> {step.describe()}")
        if isinstance(step, Run):
            code = runner(step.argv)
            if code != 0:
                raise CommandError(
                    _masked(step.argv, step.secret), code, hint=step.hint or "See the output above."
                )
        elif isinstance(step, WriteCliShim):
            write_cli_shim(Path(step.bundle_dir), step.platform)
        elif isinstance(step, StageDmg):
            stage_dmg(Path(step.app), Path(step.staging))
        elif isinstance(step, MakeTarball):
            make_tarball(Path(step.source), Path(step.output))


def _masked(argv: Sequence[str], secret: Sequence[str]) -> list[str]:
    return ["***" if any(s and s in a for s in secret) else a for a in argv]


def make_config(
    args: argparse.Namespace,
    environ: Mapping[str, str],
    plat: Platform,
    which: Which = shutil.which,
    exists: Exists = lambda p: Path(p).exists(),
    pyinstaller: Callable[[], bool] = pyinstaller_available,
) -> BuildConfig:
    """Resolve the target, tools and signing settings; raises MissingTool with what to install."""
    target = Target(args.target) if args.target else Target.default_for(plat)
    check_target(plat, target)
    check_pyinstaller(pyinstaller)
    layout = Layout(
        dist=Path(args.dist).resolve(),
        work=Path(args.work).resolve(),
        version=__version__,
        arch=arch_label(host_platform.machine()),
        platform=plat,
    )
    mac_signing = notarization = windows_signing = None
    iscc = None
    if plat is Platform.MACOS:
        mac_signing = mac_signing_from_env(environ)
        notarization = notarization_from_env(environ, mac_signing)
        if target is Target.DMG:
            require_tool("hdiutil", which, "hdiutil ships with macOS; run the build on a Mac.")
        if mac_signing is not None:
            require_tool("codesign", which, XCODE_HINT)
        if notarization is not None:
            require_tool("xcrun", which, XCODE_HINT)
    elif plat is Platform.WINDOWS:
        windows_signing = windows_signing_from_env(
            environ, lambda: find_signtool(environ, which, windows_kit_signtools())
        )
        if target is Target.WINDOWS_INSTALLER:
            iscc = find_iscc(environ, which, exists)
    return BuildConfig(
        platform=plat,
        target=target,
        layout=layout,
        clean=args.clean,
        iscc=iscc,
        mac_signing=mac_signing,
        notarization=notarization,
        windows_signing=windows_signing,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="build.py", description="Build the Toolbox app bundle and its installer."
    )
    parser.add_argument(
        "--target",
        choices=[t.value for t in Target],
        help="what to make (default: dmg on macOS, windows-installer on Windows, tarball on Linux)",
    )
    parser.add_argument("--dist", default=str(ROOT / "dist"), help="output folder (default: dist)")
    parser.add_argument(
        "--work", default=str(ROOT / "build"), help="scratch folder (default: build)"
    )
    parser.add_argument("--clean", action="store_true", help="empty PyInstaller's cache first")
    parser.add_argument("--dry-run", action="store_true", help="print the steps, run nothing")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = make_config(args, os.environ, Platform.current())
        steps = plan(config)
        if args.dry_run:
            for step in steps:
                print(step.describe())
            return 0
        execute(steps)
    except ToolboxError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        if exc.hint:
            print(f"Hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    print(f"Built {artifact(config)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
