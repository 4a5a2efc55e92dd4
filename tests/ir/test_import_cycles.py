"""No module of nmcompile.ir imports, directly or through others, a module that imports it back.

Every `import` statement counts, also those inside functions (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

import nmcompile.ir

PACKAGE = "nmcompile.ir"
ROOT = Path(nmcompile.ir.__file__).parent


def _module_name(path: Path) -> str:
    return PACKAGE if path.name == "__init__.py" else f"{PACKAGE}.{path.stem}"


def _imports(path: Path, known: set[str]) -> set[str]:
    """The modules of the package that `path` imports anywhere in its body."""
    found: set[str] = set()
    this = _module_name(path)
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = PACKAGE if this == PACKAGE else this.rsplit(".", 1)[0]
                base = ".".join(part for part in (parent, base) if part)
            for alias in node.names:     # `from pkg import submodule` needs the submodule, not pkg's own names
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {name for name in found if name in known} - {this}


def import_graph() -> dict[str, set[str]]:
    files = sorted(ROOT.glob("*.py"))
    known = {_module_name(f) for f in files}
    return {_module_name(f): _imports(f, known) for f in files}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def test_ir_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle in nmcompile.ir: " + " -> ".join(cycle)


def test_the_former_cycles_are_gone():
    graph = import_graph()
    assert "nmcompile.ir.ops" not in graph["nmcompile.ir.integer"]
    assert "nmcompile.ir.plasticity" not in graph["nmcompile.ir.kernels"]
    assert "nmcompile.ir.kernels" in graph["nmcompile.ir.plasticity"]     # it registers its kernel there


def test_the_checker_sees_function_level_and_relative_imports(tmp_path):
    module = tmp_path / "probe.py"
    module.write_text("from . import fixed\n\ndef f():\n    from nmcompile.ir.ops import Linear\n")
    known = {"nmcompile.ir.ops", "nmcompile.ir.fixed", "nmcompile.ir.probe"}
    assert _imports(module, known) == {"nmcompile.ir.ops", "nmcompile.ir.fixed"}
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
