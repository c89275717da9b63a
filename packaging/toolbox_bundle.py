"""What goes into the Toolbox bundle, as plain data the spec, the build script and tests share.

Kept free of PyInstaller and Qt imports so ``tests/unit/test_packaging.py`` checks it directly:
the executables' names, the resource files carried, the modules left out, the macOS
``Info.plist`` and the Windows version resource.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath

ROOT = Path(__file__).resolve().parents[1]

APP_NAME = "Toolbox"  # the GUI executable, the onedir folder and Toolbox.app
# The CLI cannot be called ``toolbox`` beside ``Toolbox``: macOS and Windows file systems
# ignore case. It ships as ``toolbox-cli`` and a ``bin/toolbox`` shim puts it on PATH.
CLI_NAME = "toolbox-cli"
CLI_COMMAND = "toolbox"
SHIM_DIR = "bin"
BUNDLE_ID = "dev.toolbox.Toolbox"
MACOS_MINIMUM = "13.0"  # Qt 6.10 and 6.11 support macOS 13 or later
PUBLISHER = "The Toolbox authors"
DESCRIPTION = "Toolbox: Docker engine in a Linux VM, with a desktop app"

APP_ENTRY = "packaging/entry_app.py"  # runs ui.app:main
CLI_ENTRY = "packaging/entry_cli.py"  # runs toolbox.cli:main

RESOURCE_SUFFIXES = (".svg", ".png", ".icns", ".ico")
RESOURCE_DIRS = ("app", "icons")

# Qt modules the GUI imports; every other PySide6 module is excluded so its Qt libraries
# stay out of the bundle (QtNetwork: the single-instance socket). tests/unit/test_packaging.py
# checks ui/ and resources/ against it.
QT_MODULES_USED = ("QtCore", "QtGui", "QtWidgets", "QtSvg", "QtNetwork")
QT_MODULES_KNOWN = (
    # PySide6-Essentials
    "QtConcurrent", "QtCore", "QtDBus", "QtDesigner", "QtGui", "QtHelp", "QtNetwork",
    "QtOpenGL", "QtOpenGLWidgets", "QtPrintSupport", "QtQml", "QtQuick", "QtQuickControls2",
    "QtQuickTest", "QtQuickWidgets", "QtSql", "QtSvg", "QtSvgWidgets", "QtTest", "QtUiTools",
    "QtWidgets", "QtXml",
    # PySide6-Addons (present when someone installed the full PySide6)
    "Qt3DAnimation", "Qt3DCore", "Qt3DExtras", "Qt3DInput", "Qt3DLogic", "Qt3DRender",
    "QtAxContainer", "QtBluetooth", "QtCharts", "QtDataVisualization", "QtGraphs",
    "QtGraphsWidgets", "QtHttpServer", "QtLocation", "QtMultimedia", "QtMultimediaWidgets",
    "QtNetworkAuth", "QtNfc", "QtPdf", "QtPdfWidgets", "QtPositioning", "QtQuick3D",
    "QtRemoteObjects", "QtScxml", "QtSensors", "QtSerialBus", "QtSerialPort",
    "QtSpatialAudio", "QtStateMachine", "QtTextToSpeech", "QtWebChannel", "QtWebEngineCore",
    "QtWebEngineQuick", "QtWebEngineWidgets", "QtWebSockets", "QtWebView",
)  # fmt: skip
# Standard-library and third-party modules nothing in Toolbox needs at run time.
# invoke (and the yaml it reads) is paramiko's optional helper for ssh_config ``Match exec``.
OTHER_EXCLUDES = (
    "tkinter", "_tkinter", "turtle", "turtledemo", "idlelib", "lib2to3", "pydoc_data",
    "invoke", "yaml",
)  # fmt: skip
# Bundle files dropped after analysis (matched against the destination path): Qt's
# translations (the UI is not translated), image-format plugins that pull in libraries the
# app never uses (PDF, TIFF, WebP), and Linux platform plugins for embedded devices (EGLFS,
# framebuffer, VNC, evdev input) with the libraries only they load. Kept on Linux: xcb,
# wayland, offscreen and minimal.
DROP_PATTERNS = (
    r"(^|/)PySide6/Qt/translations/",
    r"(^|/)PySide6/translations/",
    r"(^|/)imageformats/(lib)?q(pdf|tiff|webp|tga|wbmp)[^/]*$",
    r"(^|/)(lib)?Qt6Pdf[^/]*$",
    r"(^|/)platforms/libq(eglfs|linuxfb|minimalegl|vnc|vkkhrdisplay)\.so$",
    r"(^|/)plugins/(egldeviceintegrations|generic)/",
    r"(^|/)libQt6(EglFSDeviceIntegration|EglFsKmsSupport|EglFsKmsGbmSupport)\.so",
)  # fmt: skip


def app_excludes() -> list[str]:
    """Modules the GUI executable leaves out."""
    unused = [f"PySide6.{m}" for m in QT_MODULES_KNOWN if m not in QT_MODULES_USED]
    return [*unused, *OTHER_EXCLUDES]


def cli_excludes() -> list[str]:
    """Modules the CLI executable leaves out: all of Qt (``toolbox/`` never imports it)."""
    return ["PySide6", "shiboken6", "ui", "resources", *OTHER_EXCLUDES]


def keep_file(dest: str) -> bool:
    """Whether a collected binary or data file (by its path inside the bundle) stays."""
    posix = dest.replace("\\", "/")
    return not any(re.search(pattern, posix) for pattern in DROP_PATTERNS)


def filter_toc(entries: Iterable[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """A PyInstaller TOC (dest, source, kind) without the dropped files."""
    return [entry for entry in entries if keep_file(entry[0])]


def resource_files(root: Path = ROOT) -> list[Path]:
    """The files of ``resources/`` a bundle carries (the same rule as ``resources.data_files``)."""
    base = root / "resources"
    return sorted(
        p
        for sub in RESOURCE_DIRS
        for p in (base / sub).rglob("*")
        if p.is_file() and p.suffix in RESOURCE_SUFFIXES
    )


def resource_datas(root: Path = ROOT) -> list[tuple[str, str]]:
    """``Analysis(datas=...)`` entries: (source file, destination folder in the bundle)."""
    return [(str(p), PurePath(p.relative_to(root)).parent.as_posix()) for p in resource_files(root)]


def version_tuple(version: str) -> tuple[int, int, int, int]:
    """Four numbers for the Windows version resource from ``0.1.0``, ``1.2``, ``0.3.0.dev1``."""
    numbers = [int(n) for n in re.findall(r"\d+", version.split("+")[0])[:4]]
    if not numbers:
        raise ValueError(f"no version number in {version!r}")
    padded = [*numbers, 0, 0, 0, 0][:4]
    return padded[0], padded[1], padded[2], padded[3]


@dataclass(frozen=True)
class WindowsVersionInfo:
    """The fields of an executable's version resource (Properties > Details on Windows)."""

    numbers: tuple[int, int, int, int]
    strings: tuple[tuple[str, str], ...]


def windows_version_info(version: str, exe_name: str, description: str) -> WindowsVersionInfo:
    numbers = version_tuple(version)
    dotted = ".".join(str(n) for n in numbers)
    strings = (
        ("CompanyName", PUBLISHER),
        ("FileDescription", description),
        ("FileVersion", dotted),
        ("InternalName", exe_name),
        ("LegalCopyright", f"Copyright {PUBLISHER}; Apache-2.0"),
        ("OriginalFilename", f"{exe_name}.exe"),
        ("ProductName", APP_NAME),
        ("ProductVersion", version),
    )
    return WindowsVersionInfo(numbers, strings)


def info_plist(version: str) -> dict[str, object]:
    """Keys merged into Toolbox.app's Info.plist."""
    return {
        "CFBundleName": APP_NAME,
        "CFBundleDisplayName": APP_NAME,
        "CFBundleIdentifier": BUNDLE_ID,
        "CFBundleShortVersionString": version,
        "CFBundleVersion": version,
        "LSMinimumSystemVersion": MACOS_MINIMUM,
        "NSHighResolutionCapable": True,
        # COLLECT takes `console` from its last EXE (the CLI), and PyInstaller turns a console
        # bundle into LSBackgroundOnly: no Dock icon, no menu bar. The app is a GUI app.
        "LSBackgroundOnly": False,
        "NSRequiresAquaSystemAppearance": False,  # follow the system's dark mode
        "LSApplicationCategoryType": "public.app-category.developer-tools",
        "NSHumanReadableCopyright": f"Copyright {PUBLISHER}; Apache-2.0",
    }


def codesign_identity(environ: Mapping[str, str]) -> str | None:
    """The Developer ID identity PyInstaller signs the macOS binaries with, if one is set."""
    return environ.get("TOOLBOX_CODESIGN_IDENTITY") or None
