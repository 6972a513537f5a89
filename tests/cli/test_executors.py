"""The executor flags of the real trigger.py: a process pool, a Dask cluster (by the
environment), and the errors: a scheduler that does not answer (exit 1), a bad setting or no
Dask installed (exit 2)."""
from __future__ import annotations

import re
import socket

import pytest

from tests.cli.test_trigger import run, workdir  # noqa: F401  (a fixture)


def test_a_cycle_on_two_processes(workdir):
    done = run(["--as-of", "2026-11-22", "--workers", "2"], workdir)
    assert done.returncode == 0, done.stderr
    assert re.search(r"dailypull\s+alpha\s+succeeded", done.stdout)
    assert "dailypull alpha: succeeded" in done.stderr  # the processes' log lines reach the coordinator's log


def test_a_cycle_on_a_dask_cluster_named_in_the_environment(workdir):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0",
                                  resources={"heavy": 1}) as cluster:
        done = run(["--as-of", "2026-11-22"], workdir, ANALYTICS_EXECUTOR="dask",
                   ANALYTICS_SCHEDULER=cluster.scheduler_address)
    assert done.returncode == 0, done.stderr
    assert re.search(r"recommendations\s+alpha\s+succeeded", done.stdout)
    assert re.search(r"recommendations alpha: succeeded on tcp://127\.0\.0\.1:\d+", done.stderr)


def test_a_scheduler_that_does_not_answer_exits_1_naming_it(workdir):
    pytest.importorskip("distributed")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    done = run(["--executor", "dask", "--scheduler", address], workdir, ANALYTICS_DASK_WAIT_SECONDS="2")
    assert done.returncode == 1, done.stderr
    assert f"error: cannot reach the Dask scheduler at {address} within 2 s" in done.stderr
    assert "start one with `dask scheduler`" in done.stderr


def test_a_bad_scheduler_address_exits_2(workdir):
    done = run(["--executor", "dask", "--scheduler", "scheduler.example"], workdir)
    assert done.returncode == 2
    assert "--scheduler (or ANALYTICS_SCHEDULER) must be an address like tcp://HOST:PORT" in done.stderr


def test_without_dask_installed_the_error_says_how_to_install_it(workdir, tmp_path):
    shim = tmp_path / "no_dask"
    (shim / "distributed").mkdir(parents=True)
    (shim / "distributed" / "__init__.py").write_text("raise ImportError('No module named distributed')\n")
    done = run(["--executor", "dask", "--scheduler", "tcp://127.0.0.1:8786"], workdir, PYTHONPATH=str(shim))
    assert done.returncode == 2
    assert "error: --executor dask needs Dask, an optional extra: .venv/bin/pip install -r requirements-dask.txt" \
        in done.stderr
