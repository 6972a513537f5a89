"""Faults made on purpose, with real processes (issue 23): an instance paused past its lease
(SIGSTOP/SIGCONT) never publishes stale rows; the database stopping mid-cycle (a PostgreSQL
cluster the test starts and stops on its own port) fails the job, not the process; the fleet
lock's connection killed (pg_terminate_backend) stops the heavy job; a SIGKILLed run's
`running` row is closed by the next run; SQLite's long write transaction neither stops a
second instance nor costs its holder the claim."""
from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from tests.cli.test_instances import OUTPUTS, runs, snapshot, wait_for
from tests.cli.test_trigger import REPO
from tests.integration.test_recommendations import APPS, AS_OF, district_files

pytestmark = pytest.mark.slow


@pytest.fixture
def place(tmp_path):
    district_files(tmp_path / "landing", "alpha", 360, planted=True, seed=10)
    (tmp_path / "districts.yaml").write_text(f"districts:\n  - id: alpha\n    apps: [{', '.join(APPS)}]\n")
    return tmp_path


class Run:
    """trigger.py as a subprocess, its stderr in a file the test can watch."""

    def __init__(self, folder: Path, url: str, name: str, *args, **env):
        environment = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        environment.update(DATABASE_URL=url, **env)
        self.err_path = folder / f"{name}.err"
        self.err = self.err_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, str(REPO / "trigger.py"), "--as-of", AS_OF.isoformat(), "--district", "alpha", *args],
            cwd=folder, env=environment, stdout=subprocess.PIPE, stderr=self.err, text=True)

    def stderr(self) -> str:
        return self.err_path.read_text()

    def wait_for_line(self, text: str, seconds: float = 300) -> None:
        assert wait_for(lambda: text in self.stderr() or self.process.poll() is not None, seconds), text
        assert text in self.stderr(), self.stderr()[-3000:]

    def finish(self, seconds: float = 600) -> tuple[int, str, str]:
        out, _ = self.process.communicate(timeout=seconds)  # a hang guard
        self.err.close()
        return self.process.returncode, out, self.stderr()


def late_usage(place: Path, minutes: float = 600.0) -> None:
    """A new file lands: ten students used the first app on the day before as-of."""
    pd.DataFrame({"student_id": [f"a{i:04d}" for i in range(10)], "app": APPS[0],
                  "date": (AS_OF - timedelta(days=1)).isoformat(), "minutes": minutes}).to_csv(
        place / "landing" / "alpha" / "usage_late.csv", index=False)


def claim_expired(url: str) -> bool:
    """Whether the district's claim row is there and its lease has run out."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("select expires_at from job_claims where district_id = 'alpha'")).all()
    finally:
        engine.dispose()

    def utc(value) -> pd.Timestamp:
        moment = pd.Timestamp(value)
        return moment.tz_localize("UTC") if moment.tzinfo is None else moment

    return bool(rows) and all(utc(r[0]) < pd.Timestamp.now(tz="UTC") for r in rows)


def _lockable_now(url: str) -> bool:
    """Whether the claim rows can be locked at once: no transaction of a stopped process holds
    them (its claim renewal, caught mid-way by SIGSTOP, would block everyone)."""
    if url.startswith("sqlite"):
        import sqlite3

        connection = sqlite3.connect(url.split(":///", 1)[1], timeout=0.5, isolation_level=None)
        try:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("ROLLBACK")
            return True
        except sqlite3.OperationalError:
            return False
        finally:
            connection.close()
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("set lock_timeout = '500ms'"))
            conn.execute(sa.text("select 1 from job_claims for update")).all()
            conn.rollback()
            return True
    except sa.exc.OperationalError:
        return False
    finally:
        engine.dispose()


def stop_between_transactions(process: subprocess.Popen, url: str) -> None:
    """SIGSTOP the process, again and again until it is stopped holding no lock."""
    for _ in range(100):
        process.send_signal(signal.SIGSTOP)
        time.sleep(0.3)
        if _lockable_now(url):
            return
        process.send_signal(signal.SIGCONT)
        time.sleep(0.2)
    raise AssertionError("the process could not be stopped between two transactions")


def test_an_instance_paused_past_its_lease_commits_nothing_after_another_took_the_district(place, db_url):
    """A is stopped (SIGSTOP) with dailypull computed from the old data; its lease (3 s) runs
    out; a new file lands and B runs the whole cycle; A is resumed (SIGCONT). A's dailypull
    is recorded failed "claim lost", its later jobs are not run, and every published table is
    B's, row for row."""
    lease = {"ANALYTICS_LEASE_SECONDS": "3"}
    first = Run(place, db_url, "first", "--jobs", "ingest", **lease)
    assert first.finish()[0] == 0
    a = Run(place, db_url, "a", ANALYTICS_PAUSE_AT="dailypull.publishing", ANALYTICS_PAUSE_SECONDS="15", **lease)
    a.wait_for_line("paused at dailypull.publishing")
    stop_between_transactions(a.process, db_url)
    try:
        assert wait_for(lambda: claim_expired(db_url), 120)
        late_usage(place)
        b = Run(place, db_url, "b", **lease)
        code, out, err = b.finish()
        assert code == 0, err[-3000:]
        after_b = snapshot(db_url)
    finally:
        a.process.send_signal(signal.SIGCONT)
    code, out, err = a.finish()
    assert code == 1, err[-3000:]
    after_a = snapshot(db_url)
    for name in OUTPUTS:
        pd.testing.assert_frame_equal(after_a[name], after_b[name], obj=name)
    history = runs(db_url)
    [lost] = history.loc[history["message"].fillna("").str.contains("claim lost"), "cycle_id"]
    mine = history.loc[history["cycle_id"] == lost].set_index("job")
    assert mine.loc["dailypull", "status"] == "failed"
    assert "claim lost: alpha is no longer claimed by" in mine.loc["dailypull", "message"]
    assert set(mine.loc[["most_used", "recommendations"], "status"]) == {"skipped"}
    assert "claim lost" in out  # the summary says why
    assert (history["status"] != "running").all()


def _lock_backend(url: str) -> int | None:
    """The backend holding the recommendations fleet lock (a session advisory lock) in this
    database: pg_locks lists every database's, and another database's holder (another test
    run's, another xdist worker's) is not this test's to terminate."""
    from storage.database import lock_key

    key = lock_key("recommendations")
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(
                "select pid from pg_locks where locktype = 'advisory' and granted and classid = :hi and objid = :lo "
                "and objsubid = 1 and database = (select oid from pg_database where datname = current_database())"), {"hi": (key >> 32) & 0xFFFFFFFF, "lo": key & 0xFFFFFFFF}).scalar()
    finally:
        engine.dispose()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_the_heavy_job_stops_when_its_fleet_lock_connection_is_terminated(place, db_url):
    """pg_terminate_backend on the connection holding the recommendations lock: the job stops
    at its next step, recorded failed "fleet lock lost", nothing of it committed; releasing
    the gone lock raises nothing; the summary is printed."""
    a = Run(place, db_url, "a", ANALYTICS_PAUSE_AT="recommendations.read", ANALYTICS_PAUSE_SECONDS="20",
            ANALYTICS_LOCK_CHECK_SECONDS="1")
    a.wait_for_line("paused at recommendations.read")
    pid = _lock_backend(db_url)
    assert pid is not None
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("select pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
    code, out, err = a.finish()
    assert code == 1, err[-3000:]
    history = runs(db_url).set_index("job")
    assert history.loc["recommendations", "status"] == "failed"
    assert history.loc["recommendations", "message"].startswith("fleet lock lost")
    assert "Traceback" not in err and "recommendations" in out
    with engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from recommendations")).scalar() == 0
        assert conn.execute(sa.text("select count(*) from model_runs")).scalar() == 0
    engine.dispose()
    again = Run(place, db_url, "again")
    assert again.finish()[0] == 0  # the lock is free: the next run fits and publishes
    assert snapshot(db_url)["recommendations"].shape[0] > 0


class _Hook(http.server.BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802
        self.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_database_outage_mid_ingest_fails_the_job_and_the_summary_and_notification_still_go_out(place):
    """The test's own PostgreSQL cluster is stopped while ingest holds a file's transaction, then
    started again: the process is not killed by the error; ingest is recorded failed (not left
    `running`) once the database is back; the later jobs are skipped; the summary is printed and
    the webhook gets it; the next run loads everything."""
    from tests.servers import postgres_cluster

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        with postgres_cluster() as cluster:
            a = Run(place, cluster.url, "a", ANALYTICS_PAUSE_AT="ingest.staged", ANALYTICS_PAUSE_SECONDS="5",
                    ANALYTICS_DB_WAIT_SECONDS="300", ANALYTICS_WEBHOOK_URL=hook)
            a.wait_for_line("paused at ingest.staged")
            cluster.stop("fast")  # the outage: every connection is closed
            # the job resumes against a database that is not there, and cannot record its end
            a.wait_for_line("could not record ingest alpha in job_runs")
            cluster.start()
            code, out, err = a.finish()
            assert code == 1, err[-3000:]
            assert "Traceback (most recent call last)" not in err.split("paused at ingest.staged")[0]
            assert "ingest" in out and "failed" in out
            history = runs(cluster.url).set_index("job")
            assert (history["status"] != "running").all()
            assert history.loc["ingest", "status"] == "failed"
            assert set(history.drop(index="ingest")["status"]) == {"skipped"}
            assert [r["status"] for r in _Hook.received] == ["failed"]
            again = Run(place, cluster.url, "again")
            code, out, err = again.finish()
            assert code == 0, err[-3000:]
            engine = sa.create_engine(cluster.url)
            with engine.connect() as conn:
                assert conn.execute(sa.text("select count(*) from usage")).scalar() == 360 * 3 * 5 + 3
            engine.dispose()
    finally:
        server.shutdown()


def test_a_killed_run_left_running_is_closed_by_the_next(place, db_url):
    """SIGKILL mid-ingest leaves the ingest row `running`; `--status` says so; the next run
    that claims the district records it failed ("abandoned"), and `--status` shows none
    running."""
    a = Run(place, db_url, "a", "--jobs", "ingest", ANALYTICS_PAUSE_AT="ingest.staged",
            ANALYTICS_PAUSE_SECONDS="600")
    a.wait_for_line("paused at ingest.staged")
    a.process.send_signal(signal.SIGKILL)
    a.finish()
    assert list(runs(db_url)["status"]) == ["running"]
    b = Run(place, db_url, "b", "--jobs", "ingest")
    code, _, err = b.finish()
    assert code == 0, err[-3000:]
    history = runs(db_url).sort_values("run_id")
    assert list(history["status"]) == ["failed", "succeeded"]
    assert history["message"].iloc[0].startswith("abandoned: its process ended without recording an end")
    status = subprocess.run([sys.executable, str(REPO / "trigger.py"), "--status", "--as-of", AS_OF.isoformat()],
                            cwd=place, env={**os.environ, "DATABASE_URL": db_url}, capture_output=True, text=True,
                            timeout=300)
    assert status.returncode in (0, 1) and "running" not in status.stdout


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sqlite_a_long_file_transaction_neither_stops_a_second_instance_nor_costs_the_claim(place, db_url):
    """A holds SQLite's write lock in one file's transaction for 12 s, with a 3 s lease and a
    2 s busy timeout: its claim renewals fail meanwhile. B starts meanwhile: it does not fail
    at start, and leaves the district (skipped, with the reason). A's claim is renewed in its
    own commit, so A's cycle succeeds whole.

    The district's files are loaded by a first run, and one new file lands before A: the pause
    hook sleeps at every file's ingest.staged, so A pauses in exactly one file's transaction
    (with all six files it held the lock 6 x 12 s, and the test took 85 s instead of ~20)."""
    env = {"ANALYTICS_LEASE_SECONDS": "3", "ANALYTICS_SQLITE_BUSY_SECONDS": "2"}
    first = Run(place, db_url, "first", "--jobs", "ingest", **env)
    assert first.finish()[0] == 0
    earlier = set(runs(db_url)["cycle_id"])
    late_usage(place)
    a = Run(place, db_url, "a", ANALYTICS_PAUSE_AT="ingest.staged", ANALYTICS_PAUSE_SECONDS="12", **env)
    a.wait_for_line("paused at ingest.staged")
    b = Run(place, db_url, "b", **env)
    code, out, err = b.finish()
    assert code == 0, err[-3000:]
    assert "Traceback" not in err and "error:" not in err  # it started, and did not fail on the lock
    assert "skipped" in out and ("locked by another instance's write" in out or "claimed by" in out)
    code, out, err = a.finish()
    assert code == 0, err[-3000:]
    assert err.count("paused at ingest.staged") == 1  # one file's transaction: the late file's
    assert "could not renew claim-alpha" in err  # its renewals did fail while it held the lock
    history = runs(db_url)
    theirs = history.loc[(history["status"] != "skipped") & ~history["cycle_id"].isin(earlier)]
    assert set(theirs["status"]) == {"succeeded"} and len(theirs) == 4
    assert theirs.set_index("job").loc["ingest", "rows_in"] == 10  # the late file, loaded by A
    assert not history["message"].fillna("").str.contains("claim lost").any()
