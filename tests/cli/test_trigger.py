"""The real trigger.py as a subprocess: exit codes, messages, the demo, the README."""
from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import trigger

REPO = Path(__file__).resolve().parents[2]
CONFIG = """districts:
  - id: alpha
    apps: [ixl, lexia]
"""
USAGE = "student_id,app,date,minutes\ns1,ixl,2026-09-01,30\ns1,lexia,2026-09-02,x\n"


def run(args, cwd, **env):
    environment = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "LANDING_DIR", "DISTRICTS_FILE")}
    environment.update(env)
    return subprocess.run(
        [sys.executable, str(REPO / "trigger.py"), *args], cwd=cwd, env=environment,
        capture_output=True, text=True, timeout=300,
    )


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "districts.yaml").write_text(CONFIG)
    (tmp_path / "landing" / "alpha").mkdir(parents=True)
    (tmp_path / "landing" / "alpha" / "usage.csv").write_text(USAGE)
    return tmp_path


def test_a_cycle_with_the_defaults_exits_0_and_says_what_was_quarantined(workdir):
    done = run(["--as-of", "2026-11-22"], workdir)
    assert done.returncode == 0, done.stderr
    assert re.search(r"ingest\s+alpha\s+completed_with_errors", done.stdout)
    assert "1 row quarantined" in done.stdout and done.stdout.rstrip().endswith("done.")
    assert "dailypull alpha: succeeded" in done.stderr  # one log line per job and district
    with sqlite3.connect(workdir / "analytics.db") as db:  # the default database: a file here
        assert db.execute("select student_id, app_ixl, app_lexia from dataframe_alpha").fetchall() == [("s1", 30.0, 0.0)]


def test_the_cycle_on_postgresql(workdir, pg_url):
    done = run(["--as-of", "2026-11-22", "--district", "alpha", "--jobs", "ingest,dailypull"], workdir,
               DATABASE_URL=pg_url)
    assert done.returncode == 0, done.stderr
    assert re.search(r"dailypull\s+alpha\s+succeeded\s+\S+\s+1\s+1\s+0", done.stdout)


def test_a_bad_config_exits_2_naming_district_and_key_before_touching_the_database(workdir):
    (workdir / "districts.yaml").write_text(
        "districts:\n  - id: oakwood\n    apps: [ixl]\n"
        "    bands: {excellent: 40, satisfactory: 30, needs improvement: 70, unsatisfactory: 0}\n"
        "  - id: Bad-Id\n    apps: [ixl]\n"
    )
    done = run([], workdir)
    assert done.returncode == 2
    assert "district 'oakwood': bands must be four strictly decreasing lower bounds" in done.stderr
    assert "[40, 30, 70, 0]" in done.stderr and "district 'Bad-Id': district id must match" in done.stderr
    assert not (workdir / "analytics.db").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--district", "nowhere"], "--district: not in districts.yaml: 'nowhere'"),
        (["--jobs", "dailypull,teleport"], "--jobs: unknown job(s) 'teleport'"),
        (["--as-of", "2026-02-30"], "expected a day as YYYY-MM-DD; got '2026-02-30'"),
        (["--frobnicate"], "unrecognized arguments: --frobnicate"),
        (["--jobs", ","], "expected names separated by commas; got ','"),
    ],
)
def test_bad_usage_exits_2(workdir, args, message):
    done = run(args, workdir)
    assert done.returncode == 2 and message in done.stderr


def test_a_database_url_that_is_not_one_exits_2(workdir):
    done = run([], workdir, DATABASE_URL="postgres-ish://nowhere/db")
    assert done.returncode == 2 and "'postgres-ish' is not a database this service runs on" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_unreachable_database_is_retried_then_exits_1_without_the_password(workdir):
    import time

    started = time.monotonic()
    done = run([], workdir, DATABASE_URL="postgresql+psycopg2://analyst:s3cret@127.0.0.1:1/test",
               ANALYTICS_DB_WAIT_SECONDS="4")
    took = time.monotonic() - started
    assert done.returncode == 1
    assert "cannot reach the database postgresql+psycopg2://analyst:***@127.0.0.1:1/test after 3 attempts" in done.stderr
    assert done.stderr.count("retrying in") == 2  # after 1 s, then 2 s: bounded, with backoff
    assert took >= 3  # it did wait and retry (no upper bound: a busy machine is slow, not wrong)
    assert "s3cret" not in done.stderr + done.stdout


def test_a_failed_job_exits_1(workdir):
    with sqlite3.connect(workdir / "analytics.db") as db:  # a table in the way of the publish
        db.execute("create table dataframe_alpha (student_id text primary key, junk text not null)")
    done = run(["--as-of", "2026-11-22"], workdir)
    assert done.returncode == 1
    assert "FAILED: dailypull alpha" in done.stdout


def test_demo_on_a_fresh_directory(tmp_path):
    done = run(["--demo", "--as-of", "2026-11-22"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    for text in ("1 assessment", "2 forecast", "3 this year's average", "4 older average", "none",
                 "excellent", "satisfactory", "needs improvement", "unsatisfactory", "quarantined",
                 "top apps this school year"):
        assert text in done.stdout
    with sqlite3.connect(tmp_path / "demo" / "analytics.db") as db:
        students = sum(db.execute(f"select count(*) from dataframe_{d}").fetchone()[0]
                       for d in ("springfield", "shelbyville", "ogdenville"))
        types = {t for (t,) in db.execute("select distinct type from dataframe_springfield")}
        bands = {b for (b,) in db.execute("select distinct performance from dataframe_shelbyville")}
        apps = [len([c for c in db.execute(f"pragma table_info(dataframe_{d})") if c[1].startswith("app_")])
                for d in ("springfield", "shelbyville", "ogdenville")]
        statuses = dict(db.execute("select status, count(*) from ingested_files group by status").fetchall())
        windows = dict(db.execute("select window, count(distinct student_id) from most_used_software "
                                  "where district_id = 'ogdenville' group by window").fetchall())
    assert 1900 <= students <= 2100
    assert types == {1, 2, 3, 4, None}
    assert bands == {"excellent", "satisfactory", "needs improvement", "unsatisfactory", None}
    assert all(8 <= n <= 12 for n in apps)
    assert statuses["duplicate"] == 3 and "failed" not in statuses
    assert windows["year_to_date"] == 300 and windows["assessment"] > 0 and windows["latest"] > 0


def test_every_flag_is_documented_in_the_readme():
    readme = (REPO / "README.md").read_text()
    flags = [s for action in trigger.parser()._actions for s in action.option_strings if s.startswith("--")]
    assert flags, "no flags found"
    missing = [f for f in flags if f not in readme and f != "--help"]
    assert not missing, f"README.md does not mention {missing}"


def test_ci_runs_the_readmes_test_command():
    readme = (REPO / "README.md").read_text()
    first_block = readme.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [line for line in first_block.splitlines() if line.startswith(("python3 -m venv", "(test -x"))]
    assert len(commands) == 2, "the README starts with two setup commands"
    test_command = next(c for c in commands if "pytest" in c)
    assert test_command in (REPO / ".ci" / "run").read_text()


def test_status_text_and_json(workdir):
    assert run(["--as-of", "2026-11-22"], workdir).returncode == 0
    text = run(["--status", "--as-of", "2026-11-22"], workdir)
    assert text.returncode == 0 and "Last cycles (as of 2026-11-22)" in text.stdout and "alpha" in text.stdout
    import json

    data = json.loads(run(["--status", "--json", "--as-of", "2026-11-22"], workdir).stdout)
    assert data["cycles"][0]["status"] == "completed_with_errors" and data["districts"][0]["district_id"] == "alpha"
    assert run(["--json"], workdir).returncode == 2
