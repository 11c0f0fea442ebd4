"""The package's import graph: no cycle (function-local imports included) and no upward import.

Layers, lowest first: ``errors`` -> ``ops`` -> ``blocks`` -> ``models`` -> ``visualize`` -> ``engine``
(whose ``predict`` draws its figures with ``visualize``); ``data`` knows nothing about models or the engine.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pointcoc"

#: what each part of the package may import from the rest of it
ALLOWED = {
    "errors": set(),
    "ops": {"errors"},
    "blocks": {"errors", "ops"},
    "models": {"errors", "ops", "blocks"},
    "data": {"errors", "ops"},
    "engine": {"errors", "ops", "blocks", "models", "data", "visualize"},
    "visualize": {"errors", "ops", "blocks", "models"},
    "": {"models", "ops"},  # pointcoc/__init__.py
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every pointcoc module that ``path`` imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level:  # the checks below read absolute names only
            raise AssertionError(f"{path}:{node.lineno}: relative import; pointcoc imports itself by absolute name")
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("pointcoc")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pointcoc"):
            for alias in node.names:  # `from pointcoc import data` imports the module pointcoc.data
                sub = f"{node.module}.{alias.name}"
                found.add(sub if (PACKAGE.parent / sub.replace(".", "/")).exists()
                          or (PACKAGE.parent / f"{sub.replace('.', '/')}.py").exists() else node.module)
    return found


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in PACKAGE.rglob("*.py")}


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_no_upward_imports() -> None:
    graph = _graph()
    assert len(graph) > 30, "the package was not found"
    wrong = sorted(f"{mod} imports {dep}" for mod, deps in graph.items() for dep in deps
                   if _part(dep) != _part(mod) and _part(dep) not in ALLOWED[_part(mod)])
    assert not wrong, wrong


def test_no_import_cycles() -> None:
    graph = _graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(mod: str, path: list[str]) -> None:
        state[mod] = 1
        for dep in sorted(graph.get(mod, ())):
            if state.get(dep) == 1:
                cycles.append(path[path.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, path + [dep])
        state[mod] = 2

    for mod in sorted(graph):
        if mod not in state:
            visit(mod, [mod])
    assert not cycles, cycles


def test_the_graph_holds_module_and_function_local_imports() -> None:
    """The graph is read as expected: function-local imports count."""
    graph = _graph()
    assert "pointcoc.models.checkpoint" in graph["pointcoc.models.registry"]
    assert "pointcoc.engine.cli" in graph["pointcoc.engine.images"]  # imported inside main()
    assert "pointcoc.data" in graph["pointcoc.engine.images"]  # `from pointcoc import data as pdata`
