"""Several instances at once, a killed holder, and a stop signal mid-cycle: real processes
on SQLite and PostgreSQL."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from tests.cli.test_trigger import REPO
from tests.integration.test_recommendations import APPS, district_files

DISTRICTS = ("alpha", "beta")


@pytest.fixture
def place(tmp_path, db_url):
    for n, district in enumerate(DISTRICTS):
        district_files(tmp_path / "landing", district, 360, planted=True, seed=10 + n)
    (tmp_path / "districts.yaml").write_text(
        "districts:\n" + "".join(f"  - id: {d}\n    apps: [{', '.join(APPS)}]\n" for d in DISTRICTS))
    return tmp_path, db_url


def start(place, *args, **env):
    folder, url = place
    environment = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL",)}
    environment.update(DATABASE_URL=url, ANALYTICS_HEARTBEAT_FILE=str(folder / "beat"), **env)
    return subprocess.Popen([sys.executable, str(REPO / "trigger.py"), "--as-of", "2026-11-22", *args],
                            cwd=folder, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def runs(url) -> pd.DataFrame:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        frame = pd.read_sql(sa.text("select * from job_runs"), conn)
    engine.dispose()
    return frame.assign(started_at=pd.to_datetime(frame["started_at"], utc=True, format="mixed"),
                        finished_at=pd.to_datetime(frame["finished_at"], utc=True, format="mixed"))


def overlapping(intervals: pd.DataFrame) -> bool:
    ordered = intervals.sort_values("started_at")
    return bool((ordered["started_at"].iloc[1:].to_numpy() < ordered["finished_at"].iloc[:-1].to_numpy()).any())


def wait_for(predicate, seconds=60.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_two_instances_never_run_a_district_job_at_the_same_time(place):
    _, url = place
    first, second = start(place), start(place)
    for process in (first, second):
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-2000:]
    history = runs(url)
    ran = history.loc[history["status"] != "skipped"]
    for (district, job), intervals in ran.groupby(["district_id", "job"]):
        assert not overlapping(intervals), (district, job)
    assert not overlapping(ran.loc[ran["job"] == "recommendations"])  # one at a time across the fleet
    recommended = ran.loc[ran["job"] == "recommendations"]
    assert sorted(recommended["district_id"]) == sorted(DISTRICTS)  # once per district, not twice
    assert history.loc[history["status"] == "skipped", "message"].str.contains("claimed by|up to date").all()


def test_a_killed_holder_here_loses_its_claim_at_once_and_one_elsewhere_after_its_lease(place):
    """SIGKILL leaves the claim row behind. Its holder was a process of this host that no
    longer exists, so the next run takes the district at once; a claim held from another
    host is waited out until its lease ends."""
    from datetime import datetime, timedelta, timezone

    from models import job_claims

    _, url = place
    engine = sa.create_engine(url)

    def claims():
        try:
            with engine.connect() as conn:
                return conn.execute(sa.text("select district_id, holder from job_claims")).all()
        except sa.exc.DBAPIError:  # the process has not created its tables yet
            return []

    holder = start(place, "--district", "alpha", "--jobs", "ingest,dailypull",
                   ANALYTICS_PAUSE_AT="ingest.staged", ANALYTICS_PAUSE_SECONDS="600")  # held mid-job till killed
    assert wait_for(lambda: len(claims()) == 1, 120)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    [(district, who)] = claims()  # the dead holder's claim is still there
    assert district == "alpha" and who.endswith(f":{holder.pid}")

    after = start(place, "--district", "alpha", "--jobs", "ingest,dailypull")
    out, err = after.communicate(timeout=300)
    assert after.returncode == 0, err[-2000:]
    assert "claimed by" not in out and "skipped" not in out
    assert claims() == []

    now = datetime.now(timezone.utc)
    with engine.begin() as conn:  # a claim as an instance on another machine leaves it
        conn.execute(job_claims.insert().values(district_id="alpha", holder="elsewhere.example:4242",
                                                claimed_at=now, expires_at=now + timedelta(hours=1)))
    blocked = start(place, "--district", "alpha", "--jobs", "ingest,dailypull")
    out, _ = blocked.communicate(timeout=300)
    assert blocked.returncode == 0 and "skipped" in out and "claimed by elsewhere.example:4242" in out
    with engine.begin() as conn:  # its lease runs out
        conn.execute(job_claims.update().values(expires_at=now - timedelta(seconds=1)))
    free = start(place, "--district", "alpha", "--jobs", "ingest,dailypull")
    out, err = free.communicate(timeout=300)
    assert free.returncode == 0, err[-2000:]
    assert "claimed by" not in out and claims() == []
    engine.dispose()


OUTPUTS = ("dataframe_alpha", "most_used_software", "district_app_summary", "recommendations", "app_effects")


def snapshot(url) -> dict[str, pd.DataFrame]:
    engine = sa.create_engine(url)
    tables = set(sa.inspect(engine).get_table_names())
    out = {}
    with engine.connect() as conn:
        for name in OUTPUTS:
            if name in tables:
                frame = pd.read_sql(sa.text(f"select * from {name}"), conn)
                if "district_id" in frame:
                    frame = frame.loc[frame["district_id"] == "alpha"]
                out[name] = frame.sort_values(list(frame.columns[:3]), ignore_index=True)
    engine.dispose()
    return out


def test_a_stop_signal_mid_cycle_leaves_every_published_table_whole(place):
    """SIGTERM while recommendations runs. The job is held at its step `recommendations.read`
    (the test hook's pause, 600 s: the signal's Stopping ends the sleep at once), so the signal
    always lands mid-job: without the hold, on a busy machine the job could end between the
    poll that saw it running and the signal (seen under `-n 2` with other work on the machine)."""
    _, url = place
    server = start(place, "--serve", "--district", "alpha", ANALYTICS_PAUSE_AT="recommendations.read",
                   ANALYTICS_PAUSE_SECONDS="600")
    assert wait_for(lambda: "recommendations" in set(runs(url).query("status == 'running'")["job"])
                    if _has_runs(url) else False, 120)
    server.send_signal(signal.SIGTERM)
    server.communicate(timeout=300)  # a hang guard; the stop itself takes a second or two
    assert server.returncode == 0
    interrupted = runs(url).query("job == 'recommendations'")
    assert (interrupted["status"] == "failed").all()
    assert interrupted["message"].str.contains("interrupted by a stop signal").all()
    during = snapshot(url)

    finish = start(place, "--district", "alpha")  # a clean run afterwards completes the cycle
    finish.communicate(timeout=300)
    assert finish.returncode == 0
    complete = snapshot(url)
    for name in OUTPUTS:
        before = during.get(name)
        if before is None or before.empty:
            continue  # not published before the stop: fine
        stamps = [c for c in before.columns if c.endswith("_at")]
        pd.testing.assert_frame_equal(before.drop(columns=stamps), complete[name].drop(columns=stamps))


def _has_runs(url) -> bool:
    engine = sa.create_engine(url)
    try:
        return "job_runs" in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_a_stop_signal_to_a_plain_cycle_on_processes_ends_them_and_releases_the_claims(place):
    """cron's or timeout's SIGTERM to `trigger.py --workers 2`: the pool's processes end with
    it (none is left running a job), their jobs are recorded interrupted, claims released."""
    _, url = place
    cycle = start(place, "--workers", "2", "--jobs", "ingest",
                  ANALYTICS_PAUSE_AT="ingest.staged", ANALYTICS_PAUSE_SECONDS="60")
    assert wait_for(lambda: _has_runs(url) and len(runs(url).query("status == 'running'")) >= 1, 120)
    children = Path(f"/proc/{cycle.pid}/task/{cycle.pid}/children").read_text().split()
    assert children
    cycle.send_signal(signal.SIGTERM)
    _, err = cycle.communicate(timeout=60)
    assert cycle.returncode == 1 and "stopped by a signal" in err, err[-2000:]
    assert wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in children), 15)
    ingest = runs(url).query("job == 'ingest'")
    assert (ingest["status"] == "failed").all() and ingest["message"].str.contains("interrupted").all()
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from job_claims")).scalar_one() == 0
    engine.dispose()
