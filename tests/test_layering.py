"""The package's layering (the design document's "Layering"): entry points -> tasks -> callbacks -> figures ->
{diagnostics, viz} -> {models, data, utils}; no module imports one of a higher layer, and no modules import each
other in a loop. Reference: every ``import`` statement of the package read with Python's own parser (``ast``),
those inside functions and under ``TYPE_CHECKING`` included (a deferred import is still a dependency)."""

from __future__ import annotations

import ast

from helpers import ROOT

PACKAGE = ROOT / "zfnet_exp"
# rank of each sub-package (or top-level module) of zfnet_exp: a module may import equal or lower ranks only.
# schemas checks the configs of the tasks' objects (imported by tasks, it imports models/data/diagnostics);
# experiments and benchmarks drive tasks.
RANKS = {
    "tasks": 6,
    "experiments": 6,
    "benchmarks": 6,
    "schemas": 5,
    "callbacks": 4,
    "figures": 3,
    "diagnostics": 2,
    "viz": 2,
    "models": 1,
    "data": 1,
    "utils": 1,
    "runs": 1,
    "errors": 0,
    "__init__": 0,
}


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = (path.name == "__init__.py", ast.parse(path.read_text(), str(path)))
    return out


def _imports(modules) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (``from .x import y`` counts as x.y when y is a module)."""
    graph = {}
    for name, (is_package, tree) in modules.items():
        targets = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - node.level + 1]
                    source = ".".join(base + (node.module.split(".") if node.module else []))
                else:
                    source = node.module or ""
                for alias in node.names:
                    full = f"{source}.{alias.name}"
                    targets.add(full if full in modules else source)
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def _rank(module: str) -> int:
    parts = module.split(".")
    return RANKS[parts[1] if len(parts) > 1 else "__init__"]


def test_every_sub_package_has_a_rank():
    names = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir() if p.suffix == ".py" or p.is_dir()}
    assert names - {"__pycache__"} <= set(RANKS), names - set(RANKS)


def test_no_import_runs_up_the_layers():
    graph = _imports(_modules())
    assert len(graph) > 50  # the parser found the package
    upward = sorted(f"{m} -> {t}" for m, targets in graph.items() for t in targets if _rank(t) > _rank(m))
    assert not upward, upward


def test_no_import_cycle():
    """Tarjan's strongly connected components: a component of more than one module is a loop."""
    graph = _imports(_modules())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    loops: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                loops.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert not loops, loops
