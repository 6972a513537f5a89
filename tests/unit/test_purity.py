"""analytics/ stays pure: no database, configuration, environment, files or clock."""
import ast
import sys
from pathlib import Path

import pytest

# scipy (t quantiles) and threadpoolctl (one thread while fitting) come with scikit-learn.
ALLOWED = {"numpy", "pandas", "sklearn", "scipy", "threadpoolctl", "analytics"} | set(sys.stdlib_module_names)
FORBIDDEN_STDLIB = {"os", "sqlite3", "subprocess", "socket", "shutil", "pathlib", "io", "tempfile"}
MODULES = sorted(Path("analytics").glob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_imports_only_computation_libraries(path):
    tree = ast.parse(path.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert imported <= ALLOWED - FORBIDDEN_STDLIB, imported - (ALLOWED - FORBIDDEN_STDLIB)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_reads_no_clock(path):
    tree = ast.parse(path.read_text())
    calls = {
        node.func.attr for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }
    assert not calls & {"now", "today", "utcnow", "time"}


def test_there_are_modules_to_check():
    assert len(MODULES) >= 5
