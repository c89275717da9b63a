"""The shape of toolbox/: module-level imports form no cycle, and the core never imports the
GUI (PySide6 or ``ui``), so every part of it loads and is tested without Qt.

The graph is built from the source with ``ast``: only imports that run when a module is
first imported count (module level, including ``try``/``if`` at module level), not those
under ``if TYPE_CHECKING:`` nor those inside functions or methods (a deliberate late import
is not a load-order cycle).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "toolbox"
GUI_ROOTS = ("PySide6", "shiboken6", "PyQt5", "PyQt6", "qtpy", "ui")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _core_modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(CORE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_level_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Import statements that run at import time: walk statements, but not into function or
    class bodies' functions, nor into ``if TYPE_CHECKING:`` bodies."""
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop(0)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                pending += node.body
            pending += node.orelse
        elif isinstance(node, ast.ClassDef):
            pending += node.body
        elif isinstance(node, ast.Try):
            pending += node.body + node.orelse + node.finalbody
            for handler in node.handlers:
                pending += handler.body
        elif isinstance(node, (ast.With, ast.For, ast.While)):
            pending += node.body


def _absolute(module: str, node: ast.ImportFrom) -> str:
    """The absolute name of ``node``'s module, imported from ``module``."""
    if node.level == 0:
        return node.module or ""
    package = module.split(".")
    is_package = _core_modules()[module].name == "__init__.py"
    base = package if is_package else package[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _targets(module: str, node: ast.Import | ast.ImportFrom, known: set[str]) -> set[str]:
    """The toolbox modules ``node`` loads."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        # `from pkg import mod` loads pkg.mod; `from mod import name` loads mod. (A package
        # a submodule sits in is not counted: its half-run __init__ is not a cycle.)
        source = _absolute(module, node)
        names = [
            f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source
            for alias in node.names
        ]
    found = set()
    for name in names:
        # `import toolbox.a.b` loads toolbox.a.b; keep the longest known module name.
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name and name != module:
            found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = _core_modules()
    known = set(modules)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        edges: set[str] = set()
        for node in _module_level_imports(tree):
            edges |= _targets(name, node, known)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as ``[a, b, ..., a]``, or None when the graph is acyclic (iterative DFS)."""
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(graph, white)
    for start in sorted(graph):
        if colour[start] != white:
            continue
        path = [start]
        stack = [iter(sorted(graph[start]))]
        colour[start] = grey
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                colour[path.pop()] = black
                stack.pop()
                continue
            if colour.get(nxt, black) == grey:
                return [*path[path.index(nxt) :], nxt]
            if colour.get(nxt) == white:
                colour[nxt] = grey
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def test_cycle_finder_names_a_cycle() -> None:
    """The finder itself: it must report a cycle it is given, by name, and none in a DAG."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_graph_sees_the_imports_that_run() -> None:
    """Sanity check on the real tree: known module-level edges are in the graph, a
    ``TYPE_CHECKING`` import is not."""
    graph = import_graph()
    assert "toolbox.engine.connect" in graph["toolbox.engine.client"]
    assert "toolbox.errors" in graph["toolbox.engine.client"]
    # toolbox.engine.stats names EngineClient only for type checking.
    assert "toolbox.engine.client" not in graph["toolbox.engine.stats"]


def test_toolbox_has_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle in toolbox/: " + " -> ".join(cycle or [])


def _gui_imports(path: Path) -> Iterator[str]:
    """Every import of the GUI anywhere in the file (functions and TYPE_CHECKING too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            if name.split(".")[0] in GUI_ROOTS:
                yield f"{path.relative_to(ROOT)}:{node.lineno} imports {name}"


def test_toolbox_never_imports_the_gui() -> None:
    offenders = [hit for path in sorted(CORE.rglob("*.py")) for hit in _gui_imports(path)]
    assert offenders == [], "toolbox/ must not import PySide6 or ui:\n" + "\n".join(offenders)
