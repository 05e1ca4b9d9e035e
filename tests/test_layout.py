"""The package's floors: a module imports only from its own floor or the floors below it, so the
layout shows the architecture (core types and the agent protocol at the bottom, the CLI on top)."""

import ast
from pathlib import Path

import factorl

PACKAGE = Path(factorl.__file__).parent
#: bottom to top; modules directly in factorl/ (train, presets, cli) form the top floor
FLOORS = ["core", "io", "maths", "envs", "replay", "agents", "runners", "top"]
#: upward imports still to be removed (none: keep it that way)
KNOWN_UPWARD: set[tuple[str, str]] = set()


def _floor(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in FLOORS else "top"


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m == "factorl" or m.startswith("factorl.")}


def test_every_module_imports_only_from_its_floor_or_below():
    upward = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(("factorl", *path.relative_to(PACKAGE).with_suffix("").parts))
        module = module.removesuffix(".__init__")
        here = FLOORS.index(_floor(module))
        for imported in _imports(path):
            if FLOORS.index(_floor(imported)) > here:
                upward.add((module, imported))
    assert upward <= KNOWN_UPWARD, f"imports from a higher floor: {sorted(upward - KNOWN_UPWARD)}"


def test_the_floors_are_the_folders():
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert folders == set(FLOORS) - {"top"}
