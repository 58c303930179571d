"""The packages' layering (docs/ARCHITECTURE.md): no import circle in `instagan_jax` and `data_prep`,
function-level imports included, and no comparison with a method's name outside `instagan_jax/methods/`."""

from __future__ import annotations

import ast
from pathlib import Path

import data_prep
import instagan_jax
from instagan_jax import methods

PACKAGE = Path(instagan_jax.__file__).parent
PACKAGES = (PACKAGE, Path(data_prep.__file__).parent)


def _modules() -> dict[str, Path]:
    """{dotted name: file} of every module of the packages."""
    out = {}
    for package in PACKAGES:
        for path in package.rglob("*.py"):
            parts = path.relative_to(package.parent).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imported(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that `module` imports anywhere in its file."""
    found = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target not in known and "." in target:
                target = target.rpartition(".")[0]
            if target in known and target != module:
                found.add(target)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while (member := stack.pop()) != node:
                on_stack.discard(member)
                component.append(member)
            on_stack.discard(node)
            if component:
                found.append(sorted([node, *component]))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle():
    known = _modules()
    graph = {name: _imported(name, path, known) for name, path in known.items()}
    assert sum(map(len, graph.values())) > 100  # the graph is read, not empty
    assert _cycles(graph) == []


def _names_a_method(node: ast.AST) -> bool:
    """Whether an expression is a method name: a string constant, or a tuple/list/set of them, that is one."""
    if isinstance(node, ast.Constant):
        return node.value in methods.names()
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return any(_names_a_method(e) for e in node.elts)
    return False


def _method_comparisons(path: Path) -> list[int]:
    """Lines of `path` that compare something with a method's name."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare) and any(map(_names_a_method, [node.left, *node.comparators])):
            lines.append(node.lineno)
    return lines


def test_the_comparison_finder_finds_one(tmp_path):
    (tmp_path / "x.py").write_text('if config.method == "pix2pix":\n    pass\nok = name in ("lomit", "x")\n')
    assert _method_comparisons(tmp_path / "x.py") == [1, 3]


def test_no_method_name_is_compared_outside_the_methods():
    found = {str(path): lines for package in PACKAGES for path in package.rglob("*.py")
             if PACKAGE / "methods" not in path.parents and (lines := _method_comparisons(path))}
    assert found == {}
