"""The layout is the architecture: each package one concern, and imports run one way,
command line -> lifecycle -> service -> runner -> jobs -> readers, storage, config ->
models -> analytics. No package imports one above it, and no module imports itself round
a loop (function-level imports included)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# A package may import only packages of a lower rank (and itself).
RANK = {"analytics": 0, "models": 1, "config": 1, "storage": 2, "readers": 2, "jobs": 3, "runner": 4,
        "service": 5, "lifecycle": 6, "trigger": 7}


def project_modules() -> dict[str, Path]:
    modules = {"trigger": REPO / "trigger.py"}
    for package in RANK:
        folder = REPO / package
        if folder.is_dir():
            for path in folder.rglob("*.py"):
                parts = path.relative_to(REPO).with_suffix("").parts
                modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules that `path` imports, anywhere in it (a name imported from a
    package counts as its submodule when there is one)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] in RANK}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.split(".")[0] in RANK:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else node.module)
    return found


MODULES = project_modules()
GRAPH = {name: imports_of(path, MODULES) - {name} for name, path in MODULES.items()}


def test_the_top_level_is_the_layout():
    python = {p.name for p in REPO.glob("*.py")}
    packages = {p.name for p in REPO.iterdir() if (p / "__init__.py").is_file() and p.name != "tests"}
    assert python == {"trigger.py"}, "a new module belongs in one of the packages"
    assert packages == set(RANK) - {"trigger"}, "a new package gets a rank here and a line in README, Layout"


@pytest.mark.parametrize("package", sorted(set(RANK) - {"trigger"}))
def test_each_package_says_what_lives_there(package):
    doc = ast.get_docstring(ast.parse((REPO / package / "__init__.py").read_text()))
    assert doc and len(doc) > 60, f"{package}/__init__.py: say in a line or two what lives there and what it imports"


def test_imports_run_one_way():
    upward = [f"{name} imports {other}" for name, others in GRAPH.items() for other in others
              if RANK[other.split(".")[0]] > RANK[name.split(".")[0]]
              or (RANK[other.split(".")[0]] == RANK[name.split(".")[0]] and other.split(".")[0] != name.split(".")[0])]
    assert not upward, upward


def test_no_import_loop():
    state: dict[str, int] = {}
    loops = []

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for other in sorted(GRAPH.get(name, ())):
            if other not in GRAPH:
                continue
            if state.get(other) == 1:
                loops.append(" -> ".join(trail[trail.index(other):] + [other]) if other in trail else f"{name} -> {other}")
            elif other not in state:
                visit(other, trail + [other])
        state[name] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])
    assert not loops, loops


def test_analytics_imports_no_other_package_of_the_project():
    assert not {o for n, others in GRAPH.items() if n.startswith("analytics") for o in others
                if not o.startswith("analytics")}
