"""Layering of the packages, read from the source with ``ast`` (nothing is imported).

* ``core`` imports no stage package;
* a stage imports only ``core``, itself and stages before it in the pipeline order
  cohorts -> embedders -> benchmarks -> fusion -> clustering -> pipeline (any import, also one inside a function);
* from ``cohorts`` the later stages import cohort data only (:data:`COHORT_DATA`), nothing generic;
* no cycle among module-level imports (an import inside a function runs at call time, after every module
  has loaded, so it cannot make a circular import at load time; ``if TYPE_CHECKING:`` imports never run).

Run as a script (``python tests/core/test_layers.py``) to print every cross-package import and any cycle.
"""
from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STAGES = ("cohorts", "embedders", "benchmarks", "fusion", "clustering", "pipeline")
PACKAGES = ("core", *STAGES)
# what a later stage may import from ``cohorts``: cohort data only -- the readers of the cohort folder contract
# (cohorts.folder: manifest, clinical table; cohorts.clinical: clinical_schema.json and its typed ColumnSpec) and
# cohorts.images, which reads the radiographs the manifest lists. Generic helpers go to ``core``; the pipeline
# reaches the cohorts stage by name (pipeline.stages).
COHORT_DATA = frozenset({"cohorts.folder", "cohorts.clinical", "cohorts.images"})


@dataclass(frozen=True)
class Edge:
    src: str             # importing module, dotted
    dst: str             # imported module (one of ours), dotted
    line: int
    module_level: bool   # runs when ``src`` is loaded (not inside a function, not under TYPE_CHECKING)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    """Every module of the packages, dotted name -> file."""
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
    """(import node, module level?) for every import statement in ``tree``."""
    found: list[tuple[ast.Import | ast.ImportFrom, bool]] = []

    def visit(node: ast.AST, module_level: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                found.append((child, module_level))
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                visit(child, False)
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    visit(ast.Module(body=[stmt], type_ignores=[]), False)
                for stmt in child.orelse:
                    visit(ast.Module(body=[stmt], type_ignores=[]), module_level)
            else:
                visit(child, module_level)

    visit(tree, True)
    return found


def _resolve(node: ast.Import | ast.ImportFrom, src: str, is_package: bool, known: set[str]) -> list[str]:
    """Our modules that ``node`` (in module ``src``) imports."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in known]
    if node.level:
        base = src.split(".") if is_package else src.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        mod = ".".join(base + ([node.module] if node.module else []))
    else:
        mod = node.module or ""
    out = []
    for alias in node.names:                              # ``from pkg import submodule`` imports the submodule
        sub = f"{mod}.{alias.name}"
        out.append(sub if sub in known else mod)
    return sorted({m for m in out if m in known})


def import_graph() -> list[Edge]:
    mods = modules()
    known = set(mods)
    edges = []
    for name, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, module_level in _imports(tree):
            for dst in _resolve(node, name, path.name == "__init__.py", known):
                if dst != name:
                    edges.append(Edge(name, dst, node.lineno, module_level))
    return edges


def _package(module: str) -> str:
    return module.split(".")[0]


def layer_violations(edges: list[Edge]) -> list[str]:
    """Imports that break the layering: core -> a stage, or a stage -> a later stage."""
    order = {p: i for i, p in enumerate(PACKAGES)}       # core first, then the stages in pipeline order
    bad = []
    for e in edges:
        s, d = _package(e.src), _package(e.dst)
        if order[d] > order[s]:
            bad.append(f"{e.src}:{e.line} imports {e.dst} ({s} must not import {d})")
    return bad


def cycles(edges: list[Edge], *, module_level: bool = True) -> list[list[str]]:
    """Strongly connected components (more than one module) of the module-level import graph (Tarjan);
    ``module_level=False``: of the graph of every import, deferred ones included."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        if e.module_level or not module_level:
            graph.setdefault(e.src, set()).add(e.dst)
            graph.setdefault(e.dst, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph) + 100))

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return found


# --------------------------------------------------------------------------------------------------- tests
def test_the_graph_sees_the_imports() -> None:
    edges = import_graph()
    assert any(e.src == "cohorts.run" and e.dst == "cohorts.config" and e.module_level for e in edges)   # relative
    assert any(e.src == "core.safeio" and e.dst == "core.config" and e.module_level for e in edges)
    # an import inside a function is seen, but not as module level (core.config.dump_config imports core.safeio)
    assert any(e.src == "core.config" and e.dst == "core.safeio" and not e.module_level for e in edges)


def test_the_checks_catch_what_they_should() -> None:
    loop = [Edge("fusion.a", "fusion.b", 1, True), Edge("fusion.b", "fusion.a", 1, True)]
    assert cycles(loop) == [["fusion.a", "fusion.b"]]
    assert cycles([loop[0], Edge("fusion.b", "fusion.a", 9, False)]) == []          # deferred: no load-time cycle
    assert len(layer_violations([Edge("core.x", "cohorts.y", 1, False), Edge("embedders.x", "fusion.y", 1, True),
                                 Edge("fusion.x", "embedders.y", 1, True)])) == 2


def test_core_imports_no_stage() -> None:
    bad = [f"{e.src}:{e.line} imports {e.dst}" for e in import_graph()
           if _package(e.src) == "core" and _package(e.dst) != "core"]
    assert bad == []


def test_no_stage_imports_a_later_stage() -> None:
    assert layer_violations(import_graph()) == []


def test_later_stages_import_only_cohort_data_from_cohorts() -> None:
    bad = [f"{e.src}:{e.line} imports {e.dst}" for e in import_graph()
           if _package(e.src) not in ("cohorts", "core") and _package(e.dst) == "cohorts" and e.dst not in COHORT_DATA]
    assert bad == []


def test_no_module_level_import_cycle() -> None:
    assert cycles(import_graph()) == []


if __name__ == "__main__":
    graph = import_graph()
    for e in graph:
        if _package(e.src) != _package(e.dst):
            print(f"{e.src}:{e.line} -> {e.dst}{'' if e.module_level else '  (in a function)'}")
    print("layer violations:", *layer_violations(graph) or ["none"], sep="\n  ")
    print("module-level cycles:", *[" <-> ".join(c) for c in cycles(graph)] or ["none"], sep="\n  ")
    print("cycles through deferred imports (in functions; no load-time cycle):",
          *[" <-> ".join(c) for c in cycles(graph, module_level=False)] or ["none"], sep="\n  ")
