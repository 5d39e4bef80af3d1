"""The package's import graph, read from the source with ast (imports inside functions included): no
module imports another that imports it back, however indirectly, and the core never imports the Ray layer."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "xretrieve"
RAY_LAYER = ("xretrieve.ray", "xretrieve.distributed")
# above every layer: the command line, and the aliases kept for names from before the split
TOP = ("xretrieve.cli", "xretrieve.__main__", "xretrieve.server", "xretrieve.distributed")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imports(name: str) -> set[str]:
    """The package's modules `name` imports anywhere in its source (`from pkg import sub` counts as pkg.sub)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        found |= {target for target in targets if target in MODULES and target != name}
    return found


GRAPH = {name: imports(name) for name in MODULES}


def cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(GRAPH[node]):
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
                found.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    return found


def test_the_graph_is_read_from_the_source():
    assert "xretrieve.index" in GRAPH["xretrieve.search"]  # a module-level import
    assert "xretrieve.model" in GRAPH["xretrieve.encode"]  # one inside a function
    assert "xretrieve.serve.routes.search" in GRAPH["xretrieve.serve.routes"]  # `from pkg import sub`
    assert "xretrieve.ray.serving" in GRAPH["xretrieve.ray"]


def test_the_import_graph_has_no_cycle():
    assert cycles() == []


def test_no_core_module_imports_the_ray_layer():
    core = [name for name in GRAPH if not name.startswith(RAY_LAYER) and name not in TOP]
    offenders = {name: sorted(t for t in GRAPH[name] if t.startswith(RAY_LAYER) or t in TOP) for name in core}
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_ray_layer_builds_on_public_names_only():
    """What the Ray layer takes from the core is public: no `_name` of another package's module."""
    private = []
    for name, path in MODULES.items():
        if not name.startswith("xretrieve.ray"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and not (node.module or "").startswith("xretrieve.ray"):
                private += [f"{name}: {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
    assert private == []
