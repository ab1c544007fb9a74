# SPDX-License-Identifier: Apache-2.0
"""The package's floors: no module imports from a floor above its own, methods do not import each other, and there
are no import cycles between subpackages."""

from __future__ import annotations

import ast
from pathlib import Path

import monai_adiff

PACKAGE = Path(monai_adiff.__file__).parent

#: top-level module or subpackage -> floor (a module may import its own floor or lower ones)
FLOORS = {
    "errors": 0,
    "fitted": 0,
    "utils": 0,
    "output": 0,
    "noise": 1,
    "diffusion": 1,
    "transforms": 2,
    "metrics": 2,
    "data": 3,
    "inferers": 3,
    "engines": 3,
    "methods": 4,
    "ensemble": 4,
    "bundle": 5,
    "benchmark": 5,
    "demo": 5,
    "cli": 5,
}


def _unit(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def _imports(path: Path) -> set[str]:
    """Absolute ``monai_adiff.X...`` module names imported anywhere in ``path`` (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    pkg = ["monai_adiff", *path.relative_to(PACKAGE).parent.parts]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("monai_adiff.")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[: len(pkg) - node.level + 1]
                out.add(".".join(base + ([node.module] if node.module else [])))
            elif node.module and node.module.startswith("monai_adiff."):
                out.add(node.module)
    return out


def _edges() -> list[tuple[Path, str, str]]:
    edges = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.parent == PACKAGE and path.name == "__init__.py":
            continue  # the lazy top-level loader
        for mod in _imports(path):
            parts = mod.split(".")
            if len(parts) >= 2:
                edges.append((path, _unit(path), ".".join(parts[1:])))
    return edges


def test_every_unit_has_a_floor():
    units = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir() if not p.name.startswith("_")}
    # Python units only: ``bundles`` is package data (the MONAI bundles), not code
    units = {u for u in units if (PACKAGE / u / "__init__.py").is_file() or (PACKAGE / f"{u}.py").is_file()}
    assert units <= set(FLOORS), f"give these a floor in tests/test_layers.py: {sorted(units - set(FLOORS))}"


def test_no_import_runs_up_a_floor():
    bad = [
        f"{p.relative_to(PACKAGE)} imports monai_adiff.{target}"
        for p, unit, target in _edges()
        if FLOORS[target.split(".")[0]] > FLOORS[unit]
    ]
    assert not bad, bad


def test_methods_do_not_import_each_other():
    bad = []
    for p, unit, target in _edges():
        rel = p.relative_to(PACKAGE).parts
        if unit == "methods" and len(rel) > 2 and target.startswith("methods."):
            if target.split(".")[1] != rel[1]:
                bad.append(f"{p.relative_to(PACKAGE)} imports monai_adiff.{target}")
    assert not bad, bad


def test_no_cycles_between_units():
    graph: dict[str, set[str]] = {}
    for _, unit, target in _edges():
        if target.split(".")[0] != unit:
            graph.setdefault(unit, set()).add(target.split(".")[0])

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    cycles = [u for u in graph if u in reach(u)]
    assert not cycles, cycles
