"""Which way imports point: the SDK loads nothing of the server, and neither the SDK nor the
desktop client has an import cycle (imports under `TYPE_CHECKING` and inside functions aside:
they run later, or never)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON = ROOT / "python"

# What of `voicechat` outside the SDK an SDK user loads: the package (its version check), the
# native module, the client peer's asyncio wrapper, the canonical JSON devices sign and the
# error catalogue (the wire's codes, which the SDK keys its sentences on).
SHARED = {
    "voicechat",
    "voicechat.error_codes",
    "voicechat._native",
    "voicechat._native.dsp",
    "voicechat._native.sfu",
    "voicechat.voice",
    "voicechat.voice.media",
    "voicechat.e2ee",
    "voicechat.e2ee.signing",
}


def test_the_sdk_loads_no_server_code() -> None:
    script = (
        "import sys\n"
        "import voicechat.sdk, voicechat.sdk.app, voicechat.sdk.voice, voicechat.sdk.crypto\n"
        "assert 'voicechat.settings' not in sys.modules\n"
        "print('\\n'.join(sorted(m for m in sys.modules if m.startswith('voicechat'))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    loaded = set(done.stdout.split())
    outside = {m for m in loaded if not m.startswith("voicechat.sdk")} - SHARED
    assert outside == set(), f"the SDK loads server modules: {sorted(outside)}"


def _module_name(path: Path, base: Path) -> str:
    parts = list(path.relative_to(base).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.Module) -> list[tuple[str, list[str]]]:
    """(module, names) of the imports that run when the module is imported."""
    found: list[tuple[str, list[str]]] = []

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                found.extend((alias.name, []) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.append((node.module, [alias.name for alias in node.names]))
            elif isinstance(node, ast.If) and not _is_type_checking(node.test):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)

    visit(tree.body)
    return found


def _graph(packages: dict[str, Path]) -> dict[str, set[str]]:
    modules: dict[str, ast.Module] = {}
    for prefix, base in packages.items():
        for path in (base / prefix.replace(".", "/")).rglob("*.py"):
            modules[_module_name(path, base)] = ast.parse(path.read_text(encoding="utf-8"))
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, tree in modules.items():
        for target, names in _runtime_imports(tree):
            for imported in [f"{target}.{n}" for n in names if f"{target}.{n}" in modules] or [
                target
            ]:
                if imported in modules and imported != name:
                    graph[name].add(imported)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_in_the_sdk_or_the_desktop_client() -> None:
    graph = _graph({"voicechat.sdk": PYTHON, "kivy_client": ROOT})
    assert "voicechat.sdk.app.session" in graph
    assert "kivy_client.screens.main" in graph
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
