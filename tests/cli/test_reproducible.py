"""Reproducible recommendations: the same data give bit-identical recommendations and
app_effects, whatever the physical order of the rows the job reads and whatever the order
of the district's app list, and a rerun rewrites nothing. The real trigger.py, on SQLite and
PostgreSQL; the input tables are rewritten in reverse key order between the runs (what a
reload, a VACUUM FULL, a CLUSTER or a changed app list does to a table's physical order)."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from models import (
    app_effects, assessments, dataframe_table, forecasts, job_runs, model_runs, recommendation_reasons,
    recommendations, score_averages, students, usage, usage_activity, usage_totals,
)
from tests.cli.test_trigger import REPO
from tests.integration.test_recommendations import APPS, ASSESSED, district_files

OUTPUTS = (recommendations, recommendation_reasons, app_effects, model_runs)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'analytics.db'}"
    return request.getfixturevalue("pg_url")


def write_config(folder, apps):
    (folder / "districts.yaml").write_text(f"districts:\n  - id: alpha\n    apps: [{', '.join(apps)}]\n")


def trigger(folder, url, *args):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ANALYTICS_")}
    environment.update(DATABASE_URL=url, LANDING_DIR=str(folder / "landing"),
                       DISTRICTS_FILE=str(folder / "districts.yaml"))
    done = subprocess.run([sys.executable, str(REPO / "trigger.py"), "--as-of", "2026-11-22", *args], cwd=folder,
                          env=environment, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def landing_files(folder):
    """The planted district, plus three assessments on one day for a third of the students
    (a mean of three depends on the order it is summed in) and fractional minutes."""
    district_files(folder / "landing", "alpha", 360, planted=True, seed=5)
    ids = [f"a{i:04d}" for i in range(0, 360, 3)]
    rng = np.random.default_rng(6)
    extra = pd.concat([pd.DataFrame({"student_id": ids, "assessment_id": name, "date": ASSESSED.isoformat(),
                                     "score": rng.uniform(40, 90, len(ids)).round(7)}) for name in ("unit1b", "unit1c")])
    extra.to_csv(folder / "landing" / "alpha" / "assessments_extra.csv", index=False)


def outputs(url) -> dict[str, pd.DataFrame]:
    """Every row of the recommendation tables, exactly as stored, in key order."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            out = {}
            for table in OUTPUTS:
                key = [c for c in table.primary_key.columns]
                out[table.name] = pd.read_sql(sa.select(table).order_by(*key), conn)
    finally:
        engine.dispose()
    return out


def last_rows_out(url, job="recommendations") -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.select(job_runs.c.rows_out).where(job_runs.c.job == job)
                                .order_by(job_runs.c.run_id.desc()).limit(1)).scalar_one()
    finally:
        engine.dispose()


def reverse_physical_order(url, apps):
    """Rewrite every table the recommendations (and dailypull) read in reverse key order."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for table in (usage, assessments, score_averages, students, forecasts, usage_totals, usage_activity,
                          dataframe_table("alpha", apps)):
                rows = [dict(r._mapping) for r in conn.execute(
                    sa.select(table).order_by(*(c.desc() for c in table.primary_key.columns)))]
                conn.execute(sa.delete(table))
                if rows:
                    conn.execute(table.insert(), rows)
        if url.startswith("postgresql"):
            with engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")
    finally:
        engine.dispose()


def assert_identical(after: dict, before: dict, *, stamps: bool):
    for name, frame in before.items():
        left, right = after[name], frame
        if not stamps:
            dropped = [c for c in frame.columns if c.endswith("_at")]
            left, right = left.drop(columns=dropped), right.drop(columns=dropped)
        pd.testing.assert_frame_equal(left, right, check_exact=True, obj=name)


def test_rows_in_another_physical_order_give_bit_identical_recommendations(tmp_path, url):
    write_config(tmp_path, APPS)
    landing_files(tmp_path)
    trigger(tmp_path, url)
    before = outputs(url)
    assert len(before["recommendations"]) and len(before["app_effects"]) == 3

    reverse_physical_order(url, APPS)
    trigger(tmp_path, url, "--jobs", "recommendations", "--force")
    assert last_rows_out(url) == 0  # nothing rewritten: not a stamp, not a model_id
    assert_identical(outputs(url), before, stamps=True)


def test_changing_the_app_list_and_back_gives_bit_identical_recommendations(tmp_path, url):
    write_config(tmp_path, APPS)
    landing_files(tmp_path)
    trigger(tmp_path, url)
    before = outputs(url)

    write_config(tmp_path, [*APPS[1:], "zearn"])  # one app dropped, one added: the table is reshaped
    trigger(tmp_path, url)
    shuffled = [APPS[2], APPS[0], APPS[1]]
    write_config(tmp_path, shuffled)  # back to the same apps, listed in another order
    trigger(tmp_path, url)
    assert_identical(outputs(url), {k: v for k, v in before.items() if k != "model_runs"}, stamps=False)
    runs = outputs(url)["model_runs"]
    assert set(before["model_runs"]["model_id"]) <= set(runs["model_id"])  # the same fits, by the same ids

    reverse_physical_order(url, shuffled)
    trigger(tmp_path, url, "--jobs", "recommendations", "--force")
    assert last_rows_out(url) == 0
