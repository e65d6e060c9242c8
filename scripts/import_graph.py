"""The import graph of the `selfimprove` package, read from the source (AST), function-level imports included.

Prints every module's imports of other selfimprove modules, the import cycles (strongly connected
components of more than one module), the package cycles, the imports that go against the package order
(LAYERS: a package imports only from lower layers, never from its own layer's other packages), and which
modules import the pipeline runtime. Used by tests/test_architecture.py and for the closing notes of
restructuring work:

    python scripts/import_graph.py [--root selfimprove] [--json]
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

# The package order, lowest first. "core" is the top-level modules (errors, store, options, registry, models, prompts,
# devices, request_cache, stats) and the sandbox. A registry lookup by name (a config naming a task or trainer) loads
# a class without an import edge: the one allowed way up, for plug-ins named in YAML.
LAYERS: list[set[str]] = [
    {"core"},
    {"config"},
    {"tasks", "generation", "selection", "builders", "control"},
    {"scoring"},
    {"training"},
    {"runtime"},
    {"evaluation", "judging"},
    {"jobs"},
    {"pipeline"},
    {"cli"},
]
CORE_PACKAGES = {"sandbox"}


def package_of(module: str, packages: set[str]) -> str:
    """`selfimprove.scoring.base` and `selfimprove.scoring` -> `scoring`; top-level modules and the sandbox -> `core`;
    `selfimprove.cli` and `selfimprove.__main__` (`python -m selfimprove`) -> `cli`. `packages`: the names of the subpackages (`subpackages(graph)`)."""
    parts = module.split(".")
    if parts[1:] == ["__main__"]:
        return "cli"
    if len(parts) == 1 or parts[1] in CORE_PACKAGES or (parts[1] not in packages and parts[1] != "cli"):
        return "core"
    return parts[1]


def subpackages(graph: dict[str, dict[str, str]]) -> set[str]:
    return {m.split(".")[1] for m in graph if m.count(".") >= 2}


def package_graph(graph: dict[str, dict[str, str]]) -> dict[str, set[str]]:
    packages = subpackages(graph)
    out: dict[str, set[str]] = {}
    for m, ts in graph.items():
        a = package_of(m, packages)
        out.setdefault(a, set()).update(b for t in ts if (b := package_of(t, packages)) != a)
    return out


def order_violations(graph: dict[str, dict[str, str]], layers: list[set[str]] = LAYERS) -> list[tuple[str, str, str]]:
    """(importer, imported, "top"|"function") for every import from a package to one in its own or a higher layer."""
    level = {p: i for i, ps in enumerate(layers) for p in ps}
    packages = subpackages(graph)
    bad = []
    for m, ts in sorted(graph.items()):
        a = package_of(m, packages)
        for t, where in sorted(ts.items()):
            b = package_of(t, packages)
            if a != b and (a not in level or b not in level or level[b] >= level[a]):
                bad.append((m, t, where))
    return bad


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = importer.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph(root: Path) -> dict[str, dict[str, str]]:
    """module -> {imported module: "top" | "function"} (only modules of the package)."""
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, dict[str, str]] = {}
    for mod, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        edges: dict[str, str] = {}
        top_level = {id(n) for n in tree.body}
        for parent in ast.walk(tree):
            for node in ast.iter_child_nodes(parent):
                if not isinstance(node, (ast.Import, ast.ImportFrom)):
                    continue
                where = "top" if id(node) in top_level or _module_level(tree, node) else "function"
                targets = []
                if isinstance(node, ast.Import):
                    targets = [a.name for a in node.names]
                else:
                    base = resolve(mod, path.name == "__init__.py", node)
                    targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
                for t in targets:
                    while t and t not in files:
                        t = t.rpartition(".")[0]
                    if t and t != mod and t.split(".")[0] == root.name:
                        if edges.get(t) != "top":
                            edges[t] = where
        graph[mod] = edges
    return graph


def _module_level(tree: ast.Module, node: ast.AST) -> bool:
    """Imports inside module-level `if`/`try` blocks run at import time too."""
    stack = list(tree.body)
    while stack:
        n = stack.pop()
        if n is node:
            return True
        if isinstance(n, (ast.If, ast.Try)):
            stack.extend(ast.iter_child_nodes(n))
        elif hasattr(ast, "TryStar") and isinstance(n, ast.TryStar):
            stack.extend(ast.iter_child_nodes(n))
    return False


def cycles(graph: dict[str, dict[str, str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), package __init__ re-exports excluded
    (a package importing its own submodules is not a cycle of concepts)."""
    edges = {m: [t for t in ts if not m.startswith(t + ".") and not t.startswith(m + ".")] for m, ts in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, []):
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
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def importers_of(graph: dict[str, dict[str, str]], targets: tuple[str, ...]) -> dict[str, list[str]]:
    """Modules that import any module under one of `targets` (excluding the targets' own packages)."""
    out = {}
    for m, ts in sorted(graph.items()):
        if any(m == t or m.startswith(t + ".") for t in targets):
            continue
        hit = sorted(t for t in ts if any(t == x or t.startswith(x + ".") for x in targets))
        if hit:
            out[m] = hit
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=str(Path(__file__).resolve().parent.parent / "selfimprove"))
    ap.add_argument("--runtime", nargs="*", default=["selfimprove.runtime", "selfimprove.pipeline"],
                    help="Modules counted as the pipeline runtime.")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    graph = import_graph(Path(args.root))
    packages = package_graph(graph)
    result = {
        "modules": len(graph),
        "edges": sum(len(v) for v in graph.values()),
        "function_level_edges": sum(w == "function" for v in graph.values() for w in v.values()),
        "cycles": cycles(graph),
        "package_cycles": cycles({p: {t: "top" for t in ts} for p, ts in packages.items()}),
        "against_the_order": order_violations(graph),
        "import_the_runtime": importers_of(graph, tuple(args.runtime)),
    }
    if args.json:
        print(json.dumps({**result, "graph": graph}, indent=1))
        return
    print(f"{result['modules']} modules, {result['edges']} internal imports ({result['function_level_edges']} inside functions)")
    print(f"cycles: {len(result['cycles'])}")
    for c in result["cycles"]:
        print("  " + " <-> ".join(c))
    print(f"package cycles: {len(result['package_cycles'])}")
    for c in result["package_cycles"]:
        print("  " + " <-> ".join(c))
    print(f"imports against the package order ({' < '.join('{' + ', '.join(sorted(x)) + '}' for x in LAYERS)}): "
          f"{len(result['against_the_order'])}")
    for m, t, where in result["against_the_order"]:
        print(f"  {m} -> {t} ({where})")
    print(f"modules importing the runtime ({', '.join(args.runtime)}): {len(result['import_the_runtime'])}")
    for m, ts in result["import_the_runtime"].items():
        print(f"  {m} -> {', '.join(ts)}")


if __name__ == "__main__":
    main()
