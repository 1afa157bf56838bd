"""The platform's modules import one another without cycles (STYLE.md: a module that imports one that
imports it back is one concept cut in two, or two tied in a knot).

The imports are read from the source with ``ast``, every one of them: at the top of a module, inside a
function, and under ``if TYPE_CHECKING:`` (a type-only import still says that a module needs the other).
A module imports the module it names (``from a.b import c`` names ``a.b.c`` when that is a module, else
``a.b``); that Python also runs the parent packages' ``__init__`` on the way is left out, or every
package whose ``__init__`` gathers its submodules would be a cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import arenahub

ROOT = Path(arenahub.__file__).parent.parent
PLATFORM = "arenahub.platform"

# The imports that close a cycle today, as (importer, imported). Known, not accepted: remove an entry
# when its cycle is gone (test_the_known_cycles_are_still_there says when), never add one.
KNOWN_CYCLES: set[tuple[str, str]] = set()

Graph = dict[str, set[str]]


def modules(root: Path, package: str) -> dict[str, Path]:
    """The package's modules by name: the .py files in folders with an ``__init__.py`` all the way down
    (not alembic's migrations, which are loaded by path)."""
    found: dict[str, Path] = {}
    base = root / package.replace(".", "/")
    for path in sorted(base.rglob("*.py")):
        folders = [path.parent, *path.parent.parents]
        if not all((folder / "__init__.py").exists() for folder in folders if folder.is_relative_to(base)):
            continue
        parts = path.relative_to(root).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported_modules(tree: ast.Module, name: str, is_package: bool, known: dict[str, Path]) -> Iterator[str]:
    """The known modules the code imports, at any depth of the tree (functions, ``if TYPE_CHECKING:``)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package, one level up per extra dot
                package = name.split(".") if is_package else name.split(".")[:-1]
                package = package[:len(package) - (node.level - 1)]
                base = ".".join([*package, base] if base else package)
            for alias in node.names:
                module = f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                if module in known:
                    yield module


def import_graph(root: Path, package: str) -> Graph:
    """Which of the package's modules each of its modules imports."""
    found = modules(root, package)
    return {name: set(imported_modules(ast.parse(path.read_text(), str(path)), name, path.name == "__init__.py", found))
            - {name} for name, path in found.items()}


def cycles(graph: Graph) -> list[list[str]]:
    """One cycle for each group of modules that import one another, as a path that ends where it began."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [path(graph, min(group), min(group), group) for group in groups]


def path(graph: Graph, start: str, end: str, within: set[str] | None = None) -> list[str]:
    """The shortest import path from ``start`` to ``end`` (at least one import long), or [] if none."""
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(graph.get(v, ())):
                if w == end:
                    out = [end, v]
                    while out[-1] != start:
                        out.append(came_from[out[-1]])
                    return out[::-1]
                if w != start and w not in came_from and (within is None or w in within):
                    came_from[w] = v
                    following.append(w)
        frontier = following
    return []


def test_the_platform_modules_import_one_another_without_cycles() -> None:
    graph = import_graph(ROOT, PLATFORM)
    assert "arenahub.platform.attempt" in graph["arenahub.platform.dispatch"]  # the graph is read at all
    for importer, imported in KNOWN_CYCLES:
        graph[importer].discard(imported)
    found = [" -> ".join(cycle) for cycle in cycles(graph)]
    assert not found, ("modules that import one another (move what both need to a module of its own, or let the "
                       "lower one take a Protocol):\n" + "\n".join(found))


def test_the_known_cycles_are_still_there() -> None:
    graph = import_graph(ROOT, PLATFORM)
    gone = [f"{importer} -> {imported}" for importer, imported in sorted(KNOWN_CYCLES)
            if imported not in graph.get(importer, ()) or not path(graph, imported, importer)]
    assert not gone, "no longer a cycle: remove from KNOWN_CYCLES in tests/test_layout.py:\n" + "\n".join(gone)


def test_every_kind_of_import_counts(tmp_path: Path) -> None:
    """Type-only, inside a function, relative: each closes a cycle as a plain import does."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import B\n",
        "b.py": "def f():\n    from . import c\n",
        "c.py": "from .sub import d\n",
        "sub/__init__.py": "",
        "sub/d.py": "import pkg.a\n",
        "e.py": "from pkg.sub.d import thing\nimport os\n",  # no cycle: e is imported by nobody
    }
    for name, text in files.items():
        (package / name).write_text(text)
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.e"] == {"pkg.sub.d"}
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.c", "pkg.sub.d", "pkg.a"]]
