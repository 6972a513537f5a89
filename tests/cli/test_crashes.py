"""Crash anywhere: SIGKILL the cycle at chosen steps, rerun, and get what a clean run gets."""
from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest
import sqlalchemy as sa

from tests.cli.test_trigger import REPO
from tests.integration.test_recommendations import APPS, district_files

POINTS = ["ingest.staged", "ingest.merged", "dailypull.written", "most_used.written", "recommendations.written"]
SOURCES = {"usage": ["student_id", "app", "date"], "assessments": ["student_id", "assessment_id"],
           "students": ["student_id"], "forecasts": ["student_id", "date"], "score_averages": ["student_id", "school_year"]}
OUTPUTS = {"dataframe_alpha": ["student_id"], "most_used_software": ["student_id", "window", "rank"],
           "district_app_summary": ["window", "performance", "app"], "recommendations": ["student_id", "rank"],
           "app_effects": ["app"], "model_runs": ["model_id"]}


@pytest.fixture(params=["sqlite", "postgresql"])
def urls(request, tmp_path):
    if request.param == "sqlite":
        return lambda name: f"sqlite:///{tmp_path / name}.db"
    return lambda name: request.getfixturevalue("make_pg_url")()


def cycle(folder, url, **env):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ANALYTICS_")}
    environment.update(DATABASE_URL=url, ANALYTICS_LEASE_SECONDS="1", **env)
    return subprocess.run([sys.executable, str(REPO / "trigger.py"), "--as-of", "2026-11-22"], cwd=folder,
                          env=environment, capture_output=True, text=True, timeout=300)


def table(url, name, key) -> pd.DataFrame:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        frame = pd.read_sql(sa.select(sa.table(name, *(sa.column(c) for c in _columns(engine, name)))), conn)
    engine.dispose()
    dropped = [c for c in frame.columns if c.endswith("_at") or c in ("file_id", "verdict")]
    return frame.drop(columns=dropped).sort_values(key, ignore_index=True)


def _columns(engine, name):
    return [c["name"] for c in sa.inspect(engine).get_columns(name)]


def test_a_crash_at_any_step_then_a_rerun_ends_where_a_clean_run_does(tmp_path, urls):
    district_files(tmp_path / "landing", "alpha", 40, planted=True, seed=21)  # too small to fit: quick
    (tmp_path / "districts.yaml").write_text(f"districts:\n  - id: alpha\n    apps: [{', '.join(APPS)}]\n")
    clean = urls("clean")
    assert cycle(tmp_path, clean).returncode == 0

    for point in POINTS:
        url = urls(point.replace(".", "_"))
        crashed = cycle(tmp_path, url, ANALYTICS_CRASH_AT=point)
        assert crashed.returncode == -9, (point, crashed.stderr[-1500:])  # killed at that step
        # No wait for the dead holder's claim lease (1 s): it was a process of this host that no
        # longer exists (subprocess.run reaped it), so the rerun takes the district at once
        # (runner.leases.holder_is_gone; tests/cli/test_instances.py checks that rule). A rerun
        # that left the district instead would fail the comparisons below.
        rerun = cycle(tmp_path, url)
        assert rerun.returncode == 0, (point, rerun.stderr[-1500:])
        for name, key in {**SOURCES, **OUTPUTS}.items():
            pd.testing.assert_frame_equal(table(url, name, key), table(clean, name, key), check_dtype=False,
                                          obj=f"{name} after a crash at {point}")
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
            assert not {t for t in tables if t.startswith("stage_")}, point  # no staging tables left
            files = dict(conn.execute(sa.text("select path, status from ingested_files")).all())
            orphans = conn.execute(sa.text(
                "select count(*) from usage u where not exists (select 1 from ingested_files f "
                "where f.file_id = u.file_id and f.status = 'loaded')")).scalar()
        engine.dispose()
        assert set(files.values()) <= {"loaded", "duplicate"} and len(files) == 6, (point, files)
        assert orphans == 0, point  # the manifest agrees with the data
