"""A stop signal mid-job on SQLite, the default database: the job is recorded as
interrupted and the district's claim released at once, never "database is locked"; and a
claim left by a process of this host that no longer exists is free at once."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from storage import database

from runner import leases
from runner import cycle as cycle_module
from runner.cycle import run_cycle
from runner.jobrun import Stopping
from jobs.job import JobResult
from models import job_claims, job_runs
from tests.integration.test_cycle import settings_for


class _StopWhileBound:
    """A value that sends the stop while sqlite3 binds it: the stop lands inside the
    driver's executemany, as Ctrl-C during a long insert does."""

    def __conform__(self, protocol):
        raise Stopping()


def _job_stopped_inside_a_statement(engine, district, ctx):
    with engine.begin() as conn:
        conn.exec_driver_sql("create table if not exists scratch (x)")
    with engine.begin() as conn:
        conn.exec_driver_sql("insert into scratch values (?)", [(1,), (2,), (_StopWhileBound(),)])
    return JobResult()


def test_a_stop_inside_an_sqlite_statement_is_recorded_and_the_claim_released(sqlite_url, tmp_path, monkeypatch):
    engine = database.connect(sqlite_url)
    monkeypatch.setitem(cycle_module.JOBS, "ingest", _job_stopped_inside_a_statement)
    settings = settings_for()
    with pytest.raises(Stopping):
        run_cycle(engine, settings, districts=list(settings.districts), jobs=["ingest"],
                  as_of=date(2026, 11, 22), landing_dir=tmp_path)
    with engine.connect() as conn:
        runs = conn.execute(select(job_runs.c.job, job_runs.c.status, job_runs.c.message)).all()
        claims = conn.execute(select(job_claims)).all()
    assert [(r.job, r.status) for r in runs] == [("ingest", "failed")]
    assert "interrupted by a stop signal" in runs[0].message
    assert claims == []
    with engine.begin() as conn:  # the insert was rolled back, and the database takes writes again
        assert conn.exec_driver_sql("select count(*) from scratch").scalar_one() == 0
    engine.dispose()


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _insert_claim(engine, holder: str) -> None:
    now = datetime.now(timezone.utc)
    with engine.begin() as conn:
        conn.execute(job_claims.insert().values(district_id="alpha", holder=holder, claimed_at=now,
                                                expires_at=now + timedelta(hours=1)))


def test_a_claim_held_by_a_dead_process_of_this_host_is_free_at_once(engine):
    _insert_claim(engine, f"{socket.gethostname()}:{_dead_pid()}")
    with leases.claim(engine, "alpha", leases.holder_name(), 600) as other:
        assert other is None


@pytest.mark.parametrize("holder", [
    f"{socket.gethostname()}:{os.getppid()}",  # alive on this host
    "another-host.example:1",  # elsewhere: its lease is waited out
])
def test_a_claim_held_by_a_live_or_remote_process_is_left_to_it(engine, holder):
    _insert_claim(engine, holder)
    with leases.claim(engine, "alpha", leases.holder_name(), 600) as other:
        assert other == holder
