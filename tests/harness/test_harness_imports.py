"""The harness's structure, pinned: no import circle, small modules, a stdlib-only nbdkit plugin.

The import graph is read from the source (every ``import``, type-only and function-level ones
included), so a circle shows here before it shows as an ImportError in some rarely used path.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HARNESS = REPO / "harness"
MAX_LINES = 450


def _modules() -> dict[str, Path]:
    modules = {}
    for path in HARNESS.rglob("*.py"):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*parts, base] if base else parts)
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    targets.append(full if full in modules else base)
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_import_graph_finds_a_circle_when_there_is_one():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_no_import_circle_in_the_harness_type_only_imports_included():
    graph = _import_graph()
    assert "harness.vm.machine" in graph["harness.contract.runner"]  # the graph is real
    assert _cycles(graph) == []


def test_errors_module_imports_nothing_of_the_harness():
    assert _import_graph()["harness.errors"] == set()


def test_no_harness_module_over_the_line_limit():
    sizes = {
        str(path.relative_to(REPO)): len(path.read_text(encoding="utf-8").splitlines())
        for path in _modules().values()
    }
    assert len(sizes) > 40
    assert {path: n for path, n in sizes.items() if n > MAX_LINES} == {}


def test_the_nbdkit_plugin_loads_with_the_standard_library_only():
    """nbdkit's embedded interpreter has no venv: the plugin and what it imports must need
    nothing but the standard library. Run isolated (-I -S: no site-packages, no PYTHONPATH),
    with a stand-in for the ``nbdkit`` module nbdkit itself provides."""
    script = textwrap.dedent(f"""
        import json, sys, types
        sys.path.insert(0, {str(REPO)!r})
        stub = types.ModuleType("nbdkit")
        stub.THREAD_MODEL_SERIALIZE_ALL_REQUESTS = 0
        sys.modules["nbdkit"] = stub
        import harness.powercut.plugin
        print(json.dumps(sorted(sys.modules)))
    """)
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    ours = {name for name in loaded if name == "harness" or name.startswith("harness.")}
    assert ours == {
        "harness",
        "harness.errors",
        "harness.powercut",
        "harness.powercut.cache",
        "harness.powercut.errors",
        "harness.powercut.journal",
        "harness.powercut.plugin",
    }
    foreign = {
        name
        for name in loaded
        if name.partition(".")[0] not in sys.stdlib_module_names
        and name not in ours
        and name not in {"nbdkit", "__main__"}
        and not name.startswith("_")
    }
    assert foreign == set()
