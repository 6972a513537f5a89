"""Readers during a publish, and a connection dropped in the middle of one."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa

from tests.cli.test_trigger import REPO
from tests.integration.test_recommendations import APPS, district_files


def start(folder, url, **env):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ANALYTICS_")}
    environment.update(DATABASE_URL=url, **env)
    return subprocess.Popen([sys.executable, str(REPO / "trigger.py"), "--as-of", "2026-11-22",
                             "--jobs", "ingest,dailypull,most_used"], cwd=folder, env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def place(tmp_path, db_url):
    district_files(tmp_path / "landing", "alpha", 120, planted=True, seed=31)
    (tmp_path / "districts.yaml").write_text(f"districts:\n  - id: alpha\n    apps: [{', '.join(APPS)}]\n")
    first = start(tmp_path, db_url)
    assert first.wait(timeout=120) == 0
    more = tmp_path / "landing" / "alpha" / "usage_more.csv"  # changes every student's minutes
    more.write_text("student_id,app,date,minutes\n" + "".join(f"a{i:04d},idle,2026-10-14,{i % 50 + 1}\n"
                                                              for i in range(120)))
    return tmp_path, db_url


def state(conn):
    frame = conn.execute(sa.text("select student_id, total_minutes from dataframe_alpha")).all()
    ranked = conn.execute(sa.text("select student_id, \"window\", rank, app, minutes, computed_at "
                                  "from most_used_software where district_id = 'alpha'")).all()
    return frozenset(map(tuple, frame)), frozenset(map(tuple, ranked))


def test_a_reader_polling_every_50_ms_sees_the_old_or_the_new_tables_never_a_mix(place):
    folder, url = place
    reader = sa.create_engine(url)
    with reader.connect() as conn:
        old = state(conn)
    writer = start(folder, url, ANALYTICS_PAUSE_AT="dailypull.written", ANALYTICS_PAUSE_SECONDS="1")
    seen = []
    while writer.poll() is None:
        with reader.connect() as conn:  # a missing table would raise here
            seen.append(state(conn))
        time.sleep(0.05)
    assert writer.returncode == 0, writer.stderr.read()[-1500:]
    with reader.connect() as conn:
        new = state(conn)
    reader.dispose()
    assert new[0] != old[0] and new[1] != old[1]  # the cycle did change both tables
    assert len(seen) > 10
    for frame, ranked in seen:
        assert frame in (old[0], new[0])  # never a mix of two runs, never empty
        assert ranked in (old[1], new[1])


def test_a_connection_dropped_mid_publish_fails_the_job_cleanly(place, request):
    folder, url = place
    if not url.startswith("postgresql"):
        pytest.skip("pg_terminate_backend is PostgreSQL's")
    reader = sa.create_engine(url)
    with reader.connect() as conn:
        old = state(conn)
    writer = start(folder, url, ANALYTICS_PAUSE_AT="dailypull.written", ANALYTICS_PAUSE_SECONDS="6")
    killed = 0
    deadline = time.monotonic() + 60
    while not killed and time.monotonic() < deadline:  # the publish transaction, open and paused
        with reader.connect() as conn:
            killed = conn.execute(sa.text(
                "select count(pg_terminate_backend(pid)) from pg_stat_activity "
                "where datname = current_database() and pid <> pg_backend_pid() "
                "and state = 'idle in transaction' and query ilike '%dataframe_alpha%'")).scalar()
        time.sleep(0.2)
    assert killed == 1
    out, err = writer.communicate(timeout=120)
    assert writer.returncode == 1 and "FAILED: dailypull alpha" in out
    with reader.connect() as conn:
        assert state(conn) == old  # nothing half-published
        message = conn.execute(sa.text("select message from job_runs where job = 'dailypull' "
                                       "and status = 'failed'")).scalar()
    assert "terminat" in message.lower() or "closed" in message.lower()
    again = start(folder, url)
    assert again.wait(timeout=120) == 0
    with reader.connect() as conn:
        assert state(conn) != old  # the next cycle completes
    reader.dispose()
