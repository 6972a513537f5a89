"""pyproject.toml makes the project an installable package (`pip install .`), which is how a
`dask worker` started anywhere imports it. Every module and package of the service must be
named there: one left out installs without it, and the workers fail on it at run time."""
from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
NOT_INSTALLED = {"tests", "bench", "build", "dist"}  # the tests, the benchmarks, and build output


def _skipped(path: Path) -> bool:
    return path.name in NOT_INSTALLED or path.name.startswith(".") or path.name.endswith(".egg-info")


def repo_modules(root: Path = REPO) -> set[str]:
    """The top-level .py files of the repository, by module name."""
    return {p.stem for p in root.glob("*.py") if not _skipped(p)}


def repo_packages(root: Path = REPO) -> tuple[set[str], list[str]]:
    """Every package (a folder with __init__.py) at the top and inside those, by dotted name; and
    the folders inside a package that hold .py files but no __init__.py (setuptools would leave
    them out of an explicit package list)."""
    packages, loose = set(), []
    todo = [p for p in root.iterdir() if p.is_dir() and not _skipped(p) and (p / "__init__.py").is_file()]
    while todo:
        folder = todo.pop()
        packages.add(".".join(folder.relative_to(root).parts))
        for sub in folder.iterdir():
            if not sub.is_dir() or sub.name == "__pycache__" or _skipped(sub):
                continue
            if (sub / "__init__.py").is_file():
                todo.append(sub)
            elif any(sub.rglob("*.py")):
                loose.append(str(sub.relative_to(root)))
    return packages, loose


def test_every_top_level_module_is_named_in_pyproject():
    named = SETUPTOOLS["py-modules"]
    assert len(named) == len(set(named)), f"named twice in py-modules: {named}"
    assert repo_modules() - set(named) == set(), "add them to [tool.setuptools] py-modules in pyproject.toml"
    assert set(named) - repo_modules() == set(), "no such module: remove them from py-modules in pyproject.toml"


def test_every_package_is_named_in_pyproject():
    named = SETUPTOOLS["packages"]
    packages, loose = repo_packages()
    assert len(named) == len(set(named)), f"named twice in packages: {named}"
    assert packages - set(named) == set(), "add them to [tool.setuptools] packages in pyproject.toml"
    assert set(named) - packages == set(), "no such package: remove them from packages in pyproject.toml"
    assert not loose, f"folders of .py files without __init__.py inside a package (not installed): {loose}"


def test_the_scan_finds_new_modules_subpackages_and_loose_folders(tmp_path):
    for path in ("newmod.py", "pkg/__init__.py", "pkg/sub/__init__.py", "pkg/sub/x.py", "pkg/loose/y.py",
                 "tests/__init__.py", "bench/__init__.py", "bench/run.py", ".venv/lib/z.py", "build/lib/jobs/__init__.py",
                 "deploy/compose.yaml", "x.egg-info/top_level.txt"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("")
    assert repo_modules(tmp_path) == {"newmod"}
    assert repo_packages(tmp_path) == ({"pkg", "pkg.sub"}, ["pkg/loose"])


def test_the_service_itself_is_among_them():
    assert {"trigger"} <= set(SETUPTOOLS["py-modules"])
    assert {"analytics", "config", "jobs", "models", "runner", "service", "storage"} <= set(SETUPTOOLS["packages"])


def test_it_builds_with_setuptools_and_takes_its_dependencies_from_the_requirements_files():
    assert PYPROJECT["build-system"]["build-backend"] == "setuptools.build_meta"
    assert any(r.startswith("setuptools") for r in PYPROJECT["build-system"]["requires"])
    assert set(PYPROJECT["project"]["dynamic"]) == {"dependencies", "optional-dependencies"}
    dynamic = SETUPTOOLS["dynamic"]
    assert dynamic["dependencies"] == {"file": ["requirements.txt"]}
    assert dynamic["optional-dependencies"] == {"dask": {"file": ["requirements-dask.txt"]}}
    for name in ("requirements.txt", "requirements-dask.txt"):
        # setuptools reads these as plain requirement lists: comments, yes; pip options (-r, -e), no
        lines = [l.split("#")[0].strip() for l in (REPO / name).read_text().splitlines()]
        assert not [l for l in lines if l.startswith("-")], f"{name}: setuptools cannot read pip options"


def test_the_tests_install_the_project_itself():
    lines = [l.split("#")[0].strip() for l in (REPO / "requirements-test.txt").read_text().splitlines()]
    assert "-e .[dask]" in lines, "requirements-test.txt installs the project (tests/integration/test_dask_processes.py)"
