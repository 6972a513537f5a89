"""Onboarding and offboarding through the real CLI, on SQLite and PostgreSQL."""
from __future__ import annotations

import shutil

import pytest
import sqlalchemy as sa

from tests.cli.test_trigger import REPO, run

ENTRY = "  - id: beta\n    name: Beta Unified\n    apps: [ixl, lexia]\n    enabled: true\n"


@pytest.fixture
def place(tmp_path, db_url):
    """A working folder with the repository's example districts.yaml and a landing folder for beta."""
    shutil.copy(REPO / "districts.yaml", tmp_path / "districts.yaml")
    folder = tmp_path / "landing" / "beta" / "school_x"
    folder.mkdir(parents=True)
    (folder / "usage.csv").write_text("student_id,app,date,minutes\ns1,ixl,2026-09-01,30\n"
                                      "s2,minecraft_edu,2026-09-02,10\ns3,ixl,2026-13-01,5\n")
    (tmp_path / "landing" / "beta" / "assessments.csv").write_text(
        "student_id,assessment_id,date,score\ns1,u1,2026-09-10,77\n")
    return tmp_path, db_url


def cli(place, *args, **kw):
    folder, url = place
    return run([*args, "--as-of", "2026-11-22"], folder, DATABASE_URL=url, **kw)


def tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def nothing_in_database(place) -> bool:
    folder, url = place
    if url.startswith("sqlite"):
        return not (folder / "analytics.db").exists()
    return tables(url) == set()


def test_onboard_end_to_end(place):
    folder, url = place
    original = (folder / "districts.yaml").read_text()
    done = cli(place, "--onboard", "beta", "--apps", "ixl,lexia", "--name", "Beta Unified")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (folder / "districts.yaml").read_text() == original + ENTRY  # nothing else moved
    assert "Beta Unified (beta): 2 students" in done.stdout
    assert "recommendations: 0 students" in done.stdout and "district too small for the model basis" in done.stdout
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("select student_id, app_ixl, app_lexia from dataframe_beta order by 1")).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [("s1", 30.0, 0.0), ("s2", 0.0, 0.0)]


def test_check_reports_and_writes_nothing(place):
    folder, _ = place
    original = (folder / "districts.yaml").read_bytes()
    done = cli(place, "--onboard", "beta", "--apps", "ixl,lexia", "--check")
    assert done.returncode == 0, done.stderr
    for line in ("files that would load: 2 (assessments .csv 1, usage .csv 1)",
                 "rows: 3 would load, 1 would be rejected", "date is not a date YYYY-MM-DD: 1",
                 "days: 2026-09-01 .. 2026-09-10", "students: 2",
                 "apps in usage but not in --apps (they would get no column): minecraft_edu (1 row)",
                 "apps in --apps with no usage yet: lexia"):
        assert line in done.stdout
    assert (folder / "districts.yaml").read_bytes() == original
    assert nothing_in_database(place)


@pytest.mark.parametrize("args, message", [
    (["--onboard", "x; drop table usage", "--apps", "ixl"], "district id must match"),
    (["--onboard", "a" * 40, "--apps", "ixl"], "district id must match"),
    (["--onboard", "Beta", "--apps", "ixl"], "district id must match"),
    (["--onboard", "beta", "--apps", "ixl,Lexia Core"], "app id must match ^[a-z][a-z0-9_]{0,40}$; got 'Lexia Core'"),
    (["--onboard", "beta"], "--apps needs at least one app id"),
    (["--onboard", "springfield", "--apps", "ixl"], "district 'springfield' is already in"),
])
def test_bad_onboarding_is_refused_before_any_sql(place, args, message):
    folder, _ = place
    original = (folder / "districts.yaml").read_bytes()
    done = cli(place, *args)
    assert done.returncode == 2 and message in done.stderr
    assert (folder / "districts.yaml").read_bytes() == original
    assert nothing_in_database(place)


def test_offboard_keeps_the_data_and_the_cycle_skips_it(place):
    folder, url = place
    assert cli(place, "--onboard", "beta", "--apps", "ixl,lexia", "--name", "Beta Unified").returncode == 0
    with_beta = (folder / "districts.yaml").read_text()
    done = cli(place, "--offboard", "beta")
    assert done.returncode == 0 and "disabled" in done.stdout
    assert (folder / "districts.yaml").read_text() == with_beta.replace(ENTRY, ENTRY.replace("true", "false"))
    cycle = cli(place, "--jobs", "dailypull")
    assert cycle.returncode == 0 and "beta" not in cycle.stdout
    assert "dataframe_beta" in tables(url)


def test_offboard_drop_needs_confirmation_then_deletes_tables_and_rows(place):
    folder, url = place
    assert cli(place, "--onboard", "beta", "--apps", "ixl,lexia").returncode == 0
    refused = cli(place, "--offboard", "beta", "--drop")  # no terminal, no --yes
    assert refused.returncode == 2 and "confirm with --yes" in refused.stderr
    assert "dataframe_beta" in tables(url)
    done = cli(place, "--offboard", "beta", "--drop", "--yes")
    assert done.returncode == 0 and "rows of usage" in done.stdout
    assert "dataframe_beta" not in tables(url)
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        for table in ("usage", "assessments", "ingested_files", "most_used_software", "model_runs"):
            assert conn.execute(sa.text(f"select count(*) from {table} where district_id = 'beta'")).scalar() == 0
        assert conn.execute(sa.text("select count(*) from job_runs where district_id = 'beta'")).scalar() > 0
    engine.dispose()
    assert (folder / "landing" / "beta" / "assessments.csv").exists()  # the landing folder is untouched
