"""The house: data flows one way (protocol → data → pool → runs → metric → result → leaderboard),
so no module imports, even lazily inside a function, one that imports it back. A package (data,
kaggle, report, leaderboard) counts as one module."""
from __future__ import annotations

import ast
from pathlib import Path

HARNESS = Path(__file__).resolve().parents[1] / "harness"


def _unit(module: str) -> str:
    """harness.data.cache -> harness.data; harness.runner -> harness.runner."""
    parts = module.split(".")
    return ".".join(parts[:2])


def import_graph() -> dict[str, set[str]]:
    """Each unit's harness imports, wherever they are in its files (function-level ones too)."""
    units = {_unit(".".join(("harness", *p.relative_to(HARNESS).with_suffix("").parts))) for p in HARNESS.rglob("*.py")}
    graph: dict[str, set[str]] = {u: set() for u in units if u != "harness.__init__"}
    for path in HARNESS.rglob("*.py"):
        unit = _unit(".".join(("harness", *path.relative_to(HARNESS).with_suffix("").parts)))
        if unit not in graph:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("harness"):
                names = ([f"harness.{a.name}" for a in node.names] if node.module == "harness" else [node.module])
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("harness.")]
            graph[unit] |= {_unit(n) for n in names if _unit(n) in graph and _unit(n) != unit}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every elementary cycle's members, found as strongly connected components (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_one_that_imports_it_back():
    graph = import_graph()
    assert {"harness.runner", "harness.supervise", "harness.evaluate", "harness.result"} <= set(graph)
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_zygote_and_a_run_never_import_the_worker_side():
    """What a run's process holds (harness.child, the sandbox, the zygote) imports nothing that
    reads the pool, the cache's results or scores (threat model: why a fork of the zygote is safe)."""
    graph = import_graph()
    reach, frontier = set(), {"harness.child", "harness.sandbox", "harness.zygote"}
    while frontier:
        reach |= frontier
        frontier = {d for u in frontier for d in graph[u]} - reach
    assert not reach & {"harness.reference_pool", "harness.runner", "harness.score", "harness.result",
                        "harness.evaluate", "harness.copies", "harness.leaderboard", "harness.supervise"}
