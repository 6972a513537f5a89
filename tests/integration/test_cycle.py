"""Ingest + dailypull end to end on SQLite and PostgreSQL, against hand-worked values."""
from __future__ import annotations

import os
import shutil
from datetime import date, datetime, timezone
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import func, inspect, select

import config
from storage.frames import read_frame
from jobs import dailypull
from runner.cycle import run_cycle
from models import dataframe_table, ingested_files, rejected_rows, usage

AS_OF = date(2026, 11, 22)
NOW = datetime(2026, 11, 22, 2, 0, tzinfo=timezone.utc)


def settings_for(apps=("ixl", "lexia"), **district):
    return config.parse({"districts": [{"id": "alpha", "apps": list(apps), **district}]})


USAGE = """student_id,app,date,minutes
s1,ixl,2026-09-01,30
s1,ixl,2026-09-01,15
s1,lexia,2026-09-02,20
s1,ixl,2026-07-31,100
s1,ixl,2026-11-23,50
s2,lexia,2026-10-01,40
s2,khan,2026-10-02,10
s3,ixl,2026-10-05,0
s2,lexia,2026-10-03,abc
"""
FILES = {
    "alpha/school_a/usage.csv": USAGE,
    "alpha/assessments.csv": "student_id,assessment_id,date,score\ns1,a1,2026-09-10,80\ns1,a2,2026-10-10,91\ns2,a0,2026-07-31,95\n",
    "alpha/forecasts.csv": "student_id,date,score\ns2,2026-09-01,50\ns2,2026-10-01,68.99\n",
    "alpha/score_averages.csv": (
        "student_id,school_year,as_of,score\n"
        "s3,2026-27,2026-11-01,88\ns3,2025-26,2026-06-15,40\ns4,2025-26,2026-06-15,54.9\ns4,2024-25,2025-06-15,99\n"
    ),
    "alpha/students.csv": "student_id,school_id,grade\ns1,sch1,3\ns5,sch2,K\n",
}

# Worked out by hand from FILES, as of 2026-11-22 (school year 2026-08-01 .. 2027-07-31):
# s1: ixl 30+15 (07-31 is last year's, 11-23 is after as-of), lexia 20; mean(80, 91) = 85.5.
# s2: lexia 40 (the 'abc' row is rejected); khan is not listed: no column, but an active day;
#     last year's assessment does not count; latest forecast 68.99.
# s3: zero minutes is no active day; this year's average 88.  s4: most recent older average.
# s5: roster only.
EXPECTED = pd.DataFrame({
    "student_id": ["s1", "s2", "s3", "s4", "s5"],
    "school_id": ["sch1", None, None, None, "sch2"],
    "grade": ["3", None, None, None, "K"],
    "type": [1, 2, 3, 4, None],
    "score": [85.5, 68.99, 88.0, 54.9, None],
    "performance": ["satisfactory", "needs improvement", "excellent", "unsatisfactory", None],
    "total_minutes": [65.0, 40.0, 0.0, 0.0, 0.0],
    "active_days": [2, 2, 0, 0, 0],
    "first_active": [date(2026, 9, 1), date(2026, 10, 1), None, None, None],
    "last_active": [date(2026, 9, 2), date(2026, 10, 2), None, None, None],
    "app_ixl": [45.0, 0.0, 0.0, 0.0, 0.0],
    "app_lexia": [20.0, 40.0, 0.0, 0.0, 0.0],
})


def write(landing: Path, files: dict[str, str], *, mtime: float | None = None) -> None:
    for relpath, text in files.items():
        path = landing / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if mtime is not None:
            os.utime(path, (mtime, mtime))


def cycle(engine, landing, settings=None, *, jobs=("ingest", "dailypull"), force=False, now=NOW):
    settings = settings or settings_for()
    return run_cycle(engine, settings, districts=list(settings.districts), jobs=list(jobs),
                     as_of=AS_OF, landing_dir=landing, force=force, now=now, clock=lambda: now)


def published(engine, apps=("ixl", "lexia")) -> pd.DataFrame:
    table = dataframe_table("alpha", apps)
    with engine.connect() as conn:
        frame = read_frame(conn, select(table).order_by(table.c.student_id))
    return frame


def comparable(frame: pd.DataFrame) -> pd.DataFrame:
    """Published rows in plain Python values, without updated_at."""
    frame = frame.drop(columns="updated_at").astype(object)
    return frame.where(frame.notna(), None).reset_index(drop=True)


@pytest.fixture
def landing(tmp_path):
    root = tmp_path / "landing"
    write(root, FILES, mtime=1_700_000_000)
    return root


def test_end_to_end_values(engine, landing):
    result = cycle(engine, landing)
    assert [(r.job, r.result.status) for r in result.records] == [
        ("ingest", "completed_with_errors"), ("dailypull", "succeeded")]
    pd.testing.assert_frame_equal(comparable(published(engine)), EXPECTED.astype(object).where(EXPECTED.notna(), None))
    frame = published(engine)
    assert (pd.to_datetime(frame["updated_at"], utc=True) == pd.Timestamp(NOW)).all()


def test_ingest_keeps_every_good_row_and_quarantines_the_bad_one(engine, landing):
    cycle(engine, landing, jobs=("ingest",))
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(usage)).scalar_one() == 7  # 8 good rows, 2 summed
        khan = conn.execute(select(usage.c.minutes).where(usage.c.app == "khan")).scalar_one()
        assert khan == 10.0  # usage of an unlisted app is kept
        [bad] = conn.execute(select(rejected_rows.c.path, rejected_rows.c.line, rejected_rows.c.reason,
                                    rejected_rows.c.raw)).all()
        notes = conn.execute(select(ingested_files.c.notes).where(ingested_files.c.kind == "usage")).scalar_one()
    assert tuple(bad) == ("alpha/school_a/usage.csv", 10, "minutes 'abc' is not a number", "s2,lexia,2026-10-03,abc")
    assert "1 row repeated a (student, app, date) key: minutes summed" in notes
    assert "khan (1 row)" in notes


def test_running_the_cycle_twice_changes_nothing(engine, landing):
    cycle(engine, landing)
    first = published(engine)
    with engine.connect() as conn:
        manifest = read_frame(conn, select(ingested_files).order_by(ingested_files.c.file_id))
    later = datetime(2026, 11, 23, 2, 0, tzinfo=timezone.utc)
    second = cycle(engine, landing, now=later)
    assert [r.result.rows_out for r in second.records] == [0, 0]
    pd.testing.assert_frame_equal(published(engine), first)  # updated_at included
    with engine.connect() as conn:
        pd.testing.assert_frame_equal(read_frame(conn, select(ingested_files).order_by(ingested_files.c.file_id)), manifest)


def test_a_resent_file_under_another_name_changes_nothing(engine, landing):
    cycle(engine, landing)
    before = published(engine)
    (landing / "alpha/school_b").mkdir()
    shutil.copy(landing / "alpha/school_a/usage.csv", landing / "alpha/school_b/usage_resent.csv")
    result = cycle(engine, landing)
    assert result.records[0].result.details["files"] == {"skipped": 5, "duplicate": 1}
    pd.testing.assert_frame_equal(published(engine), before)
    with engine.connect() as conn:
        row = conn.execute(select(ingested_files.c.status, ingested_files.c.notes, ingested_files.c.school)
                           .where(ingested_files.c.path == "alpha/school_b/usage_resent.csv")).one()
    assert tuple(row) == ("duplicate", "same bytes as alpha/school_a/usage.csv", "school_b")


def test_a_corrected_file_replaces_what_its_rows_key(engine, landing):
    cycle(engine, landing)
    corrected = "student_id,app,date,minutes\ns1,ixl,2026-09-01,10\ns2,lexia,2026-10-03,25\n"
    write(landing, {"alpha/school_a/usage.csv": corrected}, mtime=1_700_000_100)
    later = datetime(2026, 11, 23, 2, 0, tzinfo=timezone.utc)
    result = cycle(engine, landing, now=later)
    assert result.records[0].result.details["files"] == {"loaded": 1, "skipped": 4}
    frame = published(engine).set_index("student_id")
    # s1 ixl on 09-01 replaced (45 -> 10); lexia on 09-02 is not keyed by the new file and stays.
    assert frame.loc["s1", ["app_ixl", "app_lexia", "total_minutes"]].tolist() == [10.0, 20.0, 30.0]
    # s2 gains the corrected 10-03 row: 40 + 25, and a third active day.
    assert frame.loc["s2", ["app_lexia", "active_days"]].tolist() == [65.0, 3]
    moved = pd.to_datetime(frame["updated_at"], utc=True) == pd.Timestamp(later)
    assert sorted(frame.index[moved]) == ["s1", "s2"]  # unchanged students keep their updated_at


def test_a_file_with_a_wrong_header_fails_and_the_others_load(engine, landing):
    write(landing, {"alpha/usage_broken.csv": "student,app,date,minutes\ns9,ixl,2026-09-01,5\n"})
    result = cycle(engine, landing)
    assert result.records[0].result.details["files"] == {"loaded": 5, "failed": 1}
    with engine.connect() as conn:
        status, error = conn.execute(select(ingested_files.c.status, ingested_files.c.error)
                                     .where(ingested_files.c.path == "alpha/usage_broken.csv")).one()
    assert status == "failed"
    assert error.startswith("missing required column(s) student_id for a usage file; header has student, app")
    pd.testing.assert_frame_equal(comparable(published(engine)), EXPECTED.astype(object).where(EXPECTED.notna(), None))


def test_force_reloads_every_file_to_the_same_end_state(engine, landing):
    cycle(engine, landing)
    before = published(engine)
    result = cycle(engine, landing, force=True)
    assert result.records[0].result.details["files"] == {"loaded": 5}
    pd.testing.assert_frame_equal(published(engine), before)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ingested_files)).scalar_one() == 5
        assert conn.execute(select(func.count()).select_from(rejected_rows)).scalar_one() == 1


def test_a_failure_while_publishing_leaves_the_previous_table(engine, landing, monkeypatch):
    cycle(engine, landing)
    before = published(engine)
    write(landing, {"alpha/school_a/usage_more.csv": "student_id,app,date,minutes\ns1,ixl,2026-11-01,60\n"})
    real_insert = dailypull.bulk_insert

    def insert_then_crash(conn, table, frame):
        real_insert(conn, table, frame)  # the rows are in, the transaction is not committed
        raise RuntimeError("injected failure while publishing")

    monkeypatch.setattr(dailypull, "bulk_insert", insert_then_crash)
    result = cycle(engine, landing)
    assert [(r.job, r.result.status) for r in result.records] == [("ingest", "succeeded"), ("dailypull", "failed")]
    assert "injected failure while publishing" in result.records[1].result.message
    pd.testing.assert_frame_equal(published(engine), before)

    monkeypatch.undo()
    cycle(engine, landing)
    assert published(engine).set_index("student_id").loc["s1", "app_ixl"] == 105.0


def test_changing_the_app_list_reshapes_the_table(engine, landing):
    cycle(engine, landing)
    cycle(engine, landing, settings_for(apps=("ixl", "khan")))
    with engine.connect() as conn:
        columns = [c["name"] for c in inspect(conn).get_columns("dataframe_alpha")]
    assert [c for c in columns if c.startswith("app_")] == ["app_ixl", "app_khan"]
    frame = published(engine, apps=("ixl", "khan")).set_index("student_id")
    assert frame.loc["s2", ["app_ixl", "app_khan", "total_minutes"]].tolist() == [0.0, 10.0, 10.0]
    assert frame.loc["s1", ["app_ixl", "app_khan", "total_minutes"]].tolist() == [45.0, 0.0, 45.0]


def test_overridden_bands_apply_to_the_district(engine, landing):
    bands = {"excellent": 90, "satisfactory": 86, "needs improvement": 60, "unsatisfactory": 0}
    cycle(engine, landing, settings_for(bands=bands))
    frame = comparable(published(engine))
    assert frame["performance"].tolist() == ["needs improvement", "needs improvement", "satisfactory",
                                             "unsatisfactory", None]


def test_a_student_gone_from_every_source_is_removed(engine, landing):
    cycle(engine, landing)
    with engine.begin() as conn:  # an operator purges a student's rows
        from models import SOURCE_TABLES
        for table in SOURCE_TABLES.values():
            conn.execute(table.delete().where(table.c.student_id == "s5"))
    result = cycle(engine, landing)
    assert "0 rows written, 1 removed" in result.records[1].result.message
    assert result.records[1].result.message.startswith("4 students (2026-27 to 2026-11-22)")
    assert "s5" not in published(engine)["student_id"].tolist()


def test_published_rows_carry_the_moment_they_were_written_not_the_cycles_start(engine, landing):
    ticks = iter(datetime(2026, 11, 22, 3, minute, tzinfo=timezone.utc) for minute in range(60))
    settings = settings_for()
    run_cycle(engine, settings, districts=list(settings.districts), jobs=["ingest", "dailypull"], as_of=AS_OF,
              landing_dir=landing, now=NOW, clock=lambda: next(ticks))
    stamps = pd.to_datetime(published(engine)["updated_at"], utc=True)
    assert (stamps > pd.Timestamp(NOW)).all() and stamps.nunique() == 1  # one write, after the cycle began
