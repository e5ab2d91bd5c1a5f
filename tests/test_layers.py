"""The engine's packages form layers without cycles (engine/__init__.py): every import, at
top level or inside a function, goes to the importer's own layer or one below it, and no
two modules import each other, directly or around a loop."""

import ast
from pathlib import Path

from engine import LAYERS

ROOT = Path(__file__).resolve().parents[1]
TOP_LEVEL = {"device": "base", "files": "base", "memory": "base", "cli": "cli", "demo": "cli", "__main__": "cli"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str:
    parts = module.split(".")[1:]
    if not parts:
        return "base"  # the package docstring and LAYERS
    if len(parts) == 1 and parts[0] in TOP_LEVEL:
        return TOP_LEVEL[parts[0]]
    if parts[-1] == "cli" or parts[-1].endswith("_cli"):
        return "cli"
    return parts[0]


def imported_modules(path: Path, package: str) -> set[str]:
    """Every engine/bridge module a file imports, wherever the import statement is."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in ("engine", "bridge")}


def import_graph(folder: str) -> dict[str, set[str]]:
    files = {module_name(p): p for p in (ROOT / folder).rglob("*.py")}
    graph = {}
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        graph[module] = {name for name in imported_modules(path, package)
                         if name in files or name.startswith("bridge")}
    return graph


def test_every_engine_package_and_module_has_a_layer():
    packages = {p.name for p in (ROOT / "engine").iterdir() if (p / "__init__.py").is_file()}
    assert packages <= set(LAYERS), packages - set(LAYERS)
    modules = {p.stem for p in (ROOT / "engine").glob("*.py")} - {"__init__"}
    assert modules <= set(TOP_LEVEL), modules - set(TOP_LEVEL)


def test_no_import_goes_up_a_layer():
    rank = {layer: n for n, layer in enumerate(LAYERS)}
    upward = []
    for module, targets in import_graph("engine").items():
        for target in targets:
            if target.startswith("engine") and rank[layer_of(target)] > rank[layer_of(module)]:
                upward.append(f"{module} ({layer_of(module)}) -> {target} ({layer_of(target)})")
    assert not upward, "\n".join(sorted(upward))


def test_no_module_cycles():
    graph = import_graph("engine")
    # Package __init__ modules re-export their own modules; importing a module runs its
    # package's __init__ first, which is not a dependency of the module on its package.
    graph = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}
    state, stack, cycles = {}, [], []

    def visit(module):
        state[module] = "open"
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                cycles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target)
        stack.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert not cycles, "\n".join(cycles)


def test_bridge_and_addon_import_no_engine():
    for folder in ("bridge", "blender_addon"):
        for module, targets in import_graph(folder).items():
            assert not any(t.startswith("engine") for t in targets), module
