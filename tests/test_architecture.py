"""The architecture is checked, not remembered (docs/architecture.md).

The import-linter contracts in pyproject.toml (run by ``make lint``) keep the layers;
these tests add what a contract cannot say: no module imports itself back through a
cycle, function-local imports included, and every contract still holds.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]


def import_cycles(graph: grimp.ImportGraph, modules: set[str]) -> list[list[str]]:
    """Every cycle among ``modules`` (depth-first search), as lists of module names."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph.find_modules_directly_imported_by(module) & modules):
            if state.get(target) == 1:
                found.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(modules):
        if module not in state:
            visit(module)
    return found


def package_graph() -> tuple[grimp.ImportGraph, set[str]]:
    graph = grimp.build_graph("django_evolink", cache_dir=None)
    return graph, {m for m in graph.modules if m.startswith("django_evolink")}


def test_the_package_has_no_import_cycle():
    """Module-level and function-local imports alike: a cycle dodged by a late import
    is still a cycle. (A package's ``__init__`` re-exporting its own modules is not.)"""
    graph, modules = package_graph()
    cycles = [
        c for c in import_cycles(graph, modules)
        if not any(a.startswith(b + ".") or b.startswith(a + ".") for a, b in pairwise(c))
    ]
    assert cycles == []


def test_the_cycle_finder_finds_a_cycle():
    graph = grimp.ImportGraph()
    for name in ("a", "b", "c"):
        graph.add_module(name)
    graph.add_import(importer="a", imported="b")
    graph.add_import(importer="b", imported="c")
    assert import_cycles(graph, {"a", "b", "c"}) == []
    graph.add_import(importer="c", imported="a")
    assert import_cycles(graph, {"a", "b", "c"}) == [["a", "b", "c", "a"]]


def late_imports(path: Path) -> list[str]:
    """Imports of the package's own modules made inside a function or method."""
    tree = ast.parse(path.read_text(), filename=str(path))
    late = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for inner in ast.walk(node):
            own = (
                isinstance(inner, ast.ImportFrom)
                and (inner.level > 0 or (inner.module or "").startswith("django_evolink"))
            ) or (
                isinstance(inner, ast.Import)
                and any(a.name.startswith("django_evolink") for a in inner.names)
            )
            if own:
                late.append(f"{path.relative_to(ROOT)}:{inner.lineno}")
    return late


def test_imports_are_made_at_the_top_of_modules():
    """No function-local import of the package's own modules (the old way of dodging a
    cycle) outside apps.ready(), where Django requires it."""
    package = ROOT / "django_evolink"
    late = [
        where
        for path in sorted(package.rglob("*.py"))
        if path != package / "apps.py" and "migrations" not in path.parts
        for where in late_imports(path)
    ]
    assert late == []


def test_late_imports_are_found(tmp_path):
    module = ROOT / "django_evolink" / "_probe_for_test.py"
    module.write_text("def f():\n    from .core import services\n    return services\n")
    try:
        assert late_imports(module) == ["django_evolink/_probe_for_test.py:2"]
    finally:
        module.unlink()


def test_the_import_contracts_hold():
    result = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout
