"""Import arrows: no cycles in `python/` or `kivy_client/`, and the SDK loads nothing of the server.

The graph is read from the source (the AST), not from a running interpreter, so it sees every
import whether or not a test happens to reach it.

What counts as an arrow from module A to module B:

- `import B` and `from B import name` anywhere in A: at module level and inside functions.
  A function-level import is a real dependency that merely runs later; hiding a cycle behind one
  leaves the two modules just as entangled (each needs the other to work), so it counts.
- `from P import name` where `P.name` is a module: the arrow goes to `P.name` (and to `P`,
  whose `__init__` runs first).
- Importing `a.b.c` also runs `a/__init__.py` and `a/b/__init__.py`: those packages get an
  arrow too, except the packages A itself lives in (they are already being imported when A
  runs, so that arrow never makes Python wait, and every package that re-exports its
  submodules would otherwise be a "cycle").
- Imports under `if TYPE_CHECKING:` do not count: they never run.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Each source tree and the directory its top-level package sits in.
SOURCE_TREES = {
    "voicechat": ROOT / "python",
    "kivy_client": ROOT,
}


def _module_name(path: Path, base: Path) -> str:
    parts = list(path.relative_to(base).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for package, base in SOURCE_TREES.items():
        for path in sorted((base / package).rglob("*.py")):
            modules[_module_name(path, base)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that can run: TYPE_CHECKING branches are skipped."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                yield from _imports_in(child)
            continue
        yield from _imports_in(node)


def _imports_in(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
    else:
        yield from _imports(node)


def _absolute(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _ancestors(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_graph() -> dict[str, set[str]]:
    """Module → the modules of ours it imports at run time."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for importer, path in modules.items():
        is_package = path.name == "__init__.py"
        own_packages = {*_ancestors(importer), *([importer] if is_package else [])}
        targets: set[str] = set()
        for node in _imports(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
                continue
            source = _absolute(node, importer, is_package)
            targets.add(source)
            targets.update(f"{source}.{alias.name}" for alias in node.names)
        for target in targets:
            for name in [*_ancestors(target), target]:
                if name in modules and name not in own_packages and name != importer:
                    graph[importer].add(name)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[tuple[list[str], list[str]]]:
    """The strongly connected components with more than one module (Tarjan): each as its
    modules and one cycle through them, so a failure shows a path that can be read and cut."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [(component, _cycle_through(graph, set(component))) for component in components]


def _cycle_through(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """One cycle inside a strongly connected component: a shortest way back to its first module."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node] & component):
                if target == start:
                    return [*paths[node], start]
                if target not in paths:
                    paths[target] = [*paths[node], target]
                    following.append(target)
        frontier = following
    raise AssertionError(f"{sorted(component)} is not strongly connected")


def test_the_graph_sees_known_arrows() -> None:
    # Guards the reader itself: a graph that missed every import would find no cycle either.
    graph = import_graph()
    assert "voicechat.errors" in graph["voicechat.api.errors"]
    assert "voicechat.sdk" in graph["kivy_client.app"] or any(
        target.startswith("voicechat.sdk.") for target in graph["kivy_client.app"]
    )


def test_no_import_cycles() -> None:
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles (cut arrows until none is left):\n" + "\n".join(
        f"{' -> '.join(cycle)}   (modules in the tangle: {', '.join(members)})"
        for members, cycle in cycles
    )


def test_the_sdk_does_not_load_the_server_settings() -> None:
    # In a fresh interpreter: this test process has long since imported the settings.
    code = (
        "import sys, voicechat.sdk\n"
        "server = sorted(m for m in sys.modules if m.startswith('voicechat.')"
        " and not m.startswith('voicechat.sdk'))\n"
        "assert 'voicechat.settings' not in sys.modules, server\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
