"""The core must stay headless: nothing under toolbox/ may import Qt."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
QT_MODULES = ("PySide6", "PyQt5", "PyQt6", "shiboken6", "qtpy")


def _qt_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", ""))
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names = [str(node.args[0].value)]
        found += [
            f"{path.relative_to(ROOT)}:{node.lineno} {n}"
            for n in names
            if n.split(".")[0] in QT_MODULES
        ]
    return found


def test_no_qt_import_in_core_source() -> None:
    offenders = [hit for p in sorted((ROOT / "toolbox").rglob("*.py")) for hit in _qt_imports(p)]
    assert offenders == [], "toolbox/ must not import Qt:\n" + "\n".join(offenders)


def test_importing_every_core_module_loads_no_qt() -> None:
    """Import all of toolbox/ in a fresh interpreter and check no Qt module got loaded."""
    code = (
        "import importlib, pkgutil, sys, toolbox\n"
        "for m in pkgutil.walk_packages(toolbox.__path__, 'toolbox.'):\n"
        "    importlib.import_module(m.name)\n"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {QT_MODULES!r}]\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
