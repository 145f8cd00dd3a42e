"""The layering that docs/ARCHITECTURE.md describes, checked on the source: imports point down only, no
module imports the package root, and no two modules import each other (directly or round a circle).

Every import statement counts, including those inside functions (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "diffusion_reward"

# Lowest first; a part may import its own layer's parts and any lower layer's, never a higher one.
LAYERS: list[set[str]] = [
    {"version", "errors", "config"},
    {"utils"},
    {"envs", "models"},
    {"data"},
    {"rewards", "train"},
    {"rl"},
    {"evaluation"},
    {"demo"},
    {"commands", "cli", "__init__"},
]
LAYER_OF = {part: level for level, parts in enumerate(LAYERS) for part in parts}


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(path: Path) -> list[tuple[str, int]]:
    """(imported module or name, line) for every import of this package in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.split(".")[0] == "diffusion_reward":
            found += [(node.module, node.lineno)] + [(f"{node.module}.{a.name}", node.lineno) for a in node.names]
        elif isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "diffusion_reward"]
    return found


def part(module: str) -> str:
    """The top-level part of the package a module belongs to (``diffusion_reward.rl.loop`` -> ``rl``)."""
    pieces = module.split(".")
    return "__init__" if len(pieces) == 1 else pieces[1]


MODULES = modules()


def test_every_part_of_the_package_has_a_layer():
    assert {part(m) for m in MODULES} <= set(LAYER_OF), "add the new part to LAYERS and docs/ARCHITECTURE.md"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down_and_never_at_the_package_root(module):
    here = part(module)
    for target, line in imports(MODULES[module]):
        where = f"{MODULES[module].relative_to(SRC.parent)}:{line}"
        assert target != "diffusion_reward" or here == "__init__", f"{where} imports the package root"
        if target in MODULES or target.rsplit(".", 1)[0] in MODULES:
            there = part(target)
            assert LAYER_OF[there] <= LAYER_OF[here], f"{where}: {here} (layer {LAYER_OF[here]}) imports {target} " \
                                                      f"(layer {LAYER_OF[there]}), a higher layer"


def test_no_import_circle():
    graph = {m: {t for t, _ in imports(path) if t in MODULES and t != m} for m, path in MODULES.items()}
    # A module is on a circle when it can reach itself; walk from each one.
    circles = []
    for start in graph:
        seen, todo = set(), list(graph[start])
        while todo:
            node = todo.pop()
            if node == start:
                circles.append(start)
                break
            if node not in seen:
                seen.add(node)
                todo.extend(graph[node])
    assert not circles, f"modules on an import circle: {sorted(circles)}"
