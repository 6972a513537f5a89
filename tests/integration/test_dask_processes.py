"""The README's "Running a cluster by hand", with real processes: a `dask scheduler` and two
`dask worker`s (one offering `heavy`) on 127.0.0.1, started from a folder that is not the
project's, so they import the project only because it is installed; then
`trigger.py --executor dask --scheduler tcp://127.0.0.1:PORT` as a subprocess.

The in-process LocalCluster of test_executors.py hands its workers the test's own sys.path
(the repository), which is how a cluster whose workers could not import `jobs` passed the
tests. These processes get nothing but the venv.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import select

from models import job_runs
from tests.integration.test_recommendations import APPS, district_files

REPO = Path(__file__).resolve().parents[2]
DISTRICTS = {"ann": 40, "bob": 60}  # both below the model basis (200): recommendations record why, on the heavy worker
JOBS = ("ingest", "dailypull", "most_used", "recommendations")
START_SECONDS = 120  # hang guards only: how long a process may take to come up
CYCLE_SECONDS = 600
INSTALL = ("pip install . first: `.venv/bin/pip install -r requirements-test.txt` installs it (editable, with the "
           "dask extra), or `.venv/bin/pip install '.[dask]'`")

pytestmark = pytest.mark.slow


def project_modules() -> list[str]:
    """The packages and top-level modules pyproject.toml installs."""
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    return [*setuptools["packages"], *setuptools["py-modules"]]


def clean_env(**extra) -> dict[str, str]:
    """This environment without anything that would put the repository on the path."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "DATABASE_URL", "LANDING_DIR", "DISTRICTS_FILE")}
    env.update(extra)
    return env


def _files(path: Path) -> dict[str, bytes]:
    """A module's source, or a package's .py files by their path inside it."""
    if path.is_file():
        return {path.name: path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*.py"))}


PROBE = """
import importlib.util, json, sys
found = {}
for name in sys.argv[1:]:
    try:
        spec = importlib.util.find_spec(name)
    except Exception:  # a parent package that is there but cannot be imported
        spec = None
    found[name] = spec.origin if spec is not None else None
print(json.dumps(found))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """Fail (never skip) unless this venv imports the project and Dask from any folder, and the
    installed copy is this working tree (an editable install always is; a `pip install .`
    made before the latest edits is not, and the workers would run the old code)."""
    names = project_modules()
    elsewhere = tmp_path_factory.mktemp("probe")
    done = subprocess.run([sys.executable, "-c", PROBE, *names, "distributed"], cwd=elsewhere, env=clean_env(),
                          capture_output=True, text=True, timeout=START_SECONDS)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    if found.pop("distributed") is None:
        pytest.fail(f"Dask is not installed in {sys.prefix}: {INSTALL}")
    missing = sorted(name for name, origin in found.items() if origin is None)
    if missing:
        pytest.fail(f"the project is not installed in {sys.prefix}: a process started outside the repository "
                    f"cannot import {', '.join(missing)}; {INSTALL}")
    stale = []
    for name, origin in found.items():
        path = Path(origin)
        installed_path = path.parent if path.name == "__init__.py" else path
        source = REPO / name if (REPO / name).is_dir() else REPO / f"{name}.py"
        if installed_path.resolve() != source.resolve() and _files(installed_path) != _files(source):
            stale.append(f"{name} ({installed_path})")
    if stale:
        pytest.fail(f"the installed copy of the project is not this working tree: {', '.join(stale)} differ; "
                    f"pip install . again, or install it editable (`-e .[dask]`, as requirements-test.txt does)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dask_cli() -> list[str]:
    """The venv's `dask` command, as the README runs it (`python -m dask` where the script is not there)."""
    script = Path(sys.executable).with_name("dask")
    return [str(script)] if script.exists() else [sys.executable, "-m", "dask"]


class Processes:
    """Processes started in their own session, each logging to a file; all ended in stop()."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.started: list[tuple[str, subprocess.Popen, Path]] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = self.folder / f"{name}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(args, cwd=self.folder, env=env, stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        self.started.append((name, process, log))
        return process

    def logs(self, tail: int | None = 4000) -> str:
        return "\n".join(f"--- {name} (exit {p.poll()}):\n{log.read_text(errors='replace')[-(tail or 0):]}"
                         for name, p, log in self.started)

    def stop(self) -> None:
        """SIGTERM each process group (a worker's nanny and its worker process), then SIGKILL."""
        for _, process, _ in reversed(self.started):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for _, process, _ in reversed(self.started):
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(process.pid, signal.SIGKILL)  # whatever of the group is left
            except ProcessLookupError:
                pass
            process.wait(timeout=30)


def wait_for_workers(address: str, count: int, processes: Processes) -> dict[str, dict]:
    """The scheduler's workers once `count` have registered (failing with the logs if not)."""
    import distributed

    deadline = time.monotonic() + START_SECONDS
    while True:
        try:
            with distributed.Client(address, timeout=10, set_as_default=False) as client:
                client.wait_for_workers(count, timeout=max(1, deadline - time.monotonic()))
                return client.scheduler_info(n_workers=-1)["workers"]
        except (OSError, TimeoutError) as exc:
            if time.monotonic() >= deadline or any(p.poll() is not None for _, p, _ in processes.started):
                pytest.fail(f"the cluster did not come up with {count} workers ({type(exc).__name__}: {exc})\n"
                            f"{processes.logs()}")
            time.sleep(1)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "postgresql":
        return request.getfixturevalue("pg_url")
    return f"sqlite:///{tmp_path / 'analytics.db'}"


def test_a_cycle_on_dask_scheduler_and_worker_processes_started_outside_the_repository(installed, database_url,
                                                                                         tmp_path):
    elsewhere = tmp_path / "cluster"  # the processes' working folder: nothing of the project in it
    elsewhere.mkdir()
    landing = tmp_path / "landing"
    for seed, (district, students) in enumerate(DISTRICTS.items()):
        district_files(landing, district, students, planted=True, seed=seed)
    districts_file = tmp_path / "districts.yaml"
    districts_file.write_text("districts:\n" + "".join(f"  - id: {d}\n    apps: [{', '.join(APPS)}]\n"
                                                       for d in DISTRICTS))
    port = free_port()
    scheduler = f"tcp://127.0.0.1:{port}"
    env = clean_env()
    processes = Processes(elsewhere)
    try:
        processes.start("scheduler", [*dask_cli(), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                      "--no-dashboard"], env)
        worker = [*dask_cli(), "worker", scheduler, "--host", "127.0.0.1", "--nworkers", "1", "--nthreads", "1",
                  "--no-dashboard", "--local-directory", str(elsewhere)]
        processes.start("worker", [*worker, "--name", "ordinary"], env)
        processes.start("heavy-worker", [*worker, "--name", "heavy", "--resources", "heavy=1"], env)
        workers = wait_for_workers(scheduler, 2, processes)
        heavy = {a for a, w in workers.items() if w.get("resources", {}).get("heavy")}
        assert len(heavy) == 1, workers

        done = subprocess.run(
            [sys.executable, str(REPO / "trigger.py"), "--executor", "dask", "--scheduler", scheduler,
             "--as-of", "2026-11-22"],
            cwd=elsewhere, capture_output=True, text=True, timeout=CYCLE_SECONDS,
            env=clean_env(DATABASE_URL=database_url, LANDING_DIR=str(landing), DISTRICTS_FILE=str(districts_file),
                          ANALYTICS_DASK_WAIT_SECONDS="120"),
        )
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{processes.logs()}"
        assert "ModuleNotFoundError" not in processes.logs(tail=None), processes.logs()
    finally:
        processes.stop()

    assert done.stdout.rstrip().endswith("done."), done.stdout
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(job_runs.c.job, job_runs.c.district_id, job_runs.c.status)
                                .order_by(job_runs.c.run_id)).all()
    finally:
        engine.dispose()
    assert sorted((job, d) for job, d, _ in rows) == sorted((job, d) for d in DISTRICTS for job in JOBS)
    assert {status for _, _, status in rows} <= {"succeeded", "completed_with_errors"}, rows

    # Each job says, in the coordinator's log, the address of the worker that ran it (set on the worker).
    ran_on = dict(((job, d), where) for job, d, where in
                  re.findall(r"(\w+) (\w+): (?:succeeded|completed_with_errors) on (tcp://\S+) in ", done.stderr))
    assert set(ran_on) == {(job, d) for d in DISTRICTS for job in JOBS}, done.stderr
    assert set(ran_on.values()) <= set(workers), (ran_on, workers)
    assert {where for (job, _), where in ran_on.items() if job == "recommendations"} == heavy
