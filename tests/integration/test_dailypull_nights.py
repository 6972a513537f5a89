"""A night's dailypull recomputes only the students with new data, and its table equals a
full rebuild's, on SQLite (staged loads) and PostgreSQL (COPY straight into usage)."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pandas as pd
import pytest
from sqlalchemy import select

from storage.frames import read_frame
from runner.cycle import run_cycle
from models import changed_students, dailypull_state, dataframe_table
from tests.integration.test_cycle import settings_for, write

DAY = date(2026, 11, 20)
YEAR = """student_id,app,date,minutes
s1,ixl,2026-09-01,30
s1,lexia,2026-11-19,20
s2,lexia,2026-10-01,40
s3,ixl,2026-10-05,15
s4,ixl,2026-11-02,25
"""


def run(engine, landing, day: date, *, force=False):
    settings = settings_for()
    now = datetime(day.year, day.month, day.day, 2, tzinfo=timezone.utc)
    done = run_cycle(engine, settings, districts=list(settings.districts), jobs=["ingest", "dailypull"],
                     as_of=day, landing_dir=landing, force=force, now=now, clock=lambda: now)
    record = done.records[-1]
    assert record.result.status == "succeeded", record.result.message
    return record.result


def table(engine) -> pd.DataFrame:
    dataframe = dataframe_table("alpha", ("ixl", "lexia"))
    with engine.connect() as conn:
        frame = read_frame(conn, select(dataframe).order_by(dataframe.c.student_id))
    return frame.drop(columns="updated_at").astype(str)


def rebuilt(engine, landing, day: date) -> pd.DataFrame:
    """The table a full rebuild from usage makes for the same day (then put back)."""
    settings = settings_for()
    now = datetime(day.year, day.month, day.day, 3, tzinfo=timezone.utc)
    run_cycle(engine, settings, districts=list(settings.districts), jobs=["dailypull"], as_of=day,
              landing_dir=landing, force=True, now=now, clock=lambda: now)
    return table(engine)


def test_nights_follow_the_new_data_and_equal_a_full_rebuild(engine, tmp_path):
    landing = tmp_path / "landing"
    write(landing, {"alpha/usage_year.csv": YEAR,
                    # s3's forecast counts from 11-21 on: a night that day must recompute s3 too
                    "alpha/forecasts.csv": "student_id,date,score\ns3,2026-11-21,75\n",
                    "alpha/assessments.csv": "student_id,assessment_id,date,score\ns1,a1,2026-10-10,91\n"})
    first = run(engine, landing, DAY)
    assert first.details["from"] == "usage rollups" and first.details["full_because"] == "no earlier publish to follow on from"
    second = run(engine, landing, DAY)  # nothing new: a night with no student to recompute
    assert second.details["from"] == "usage rollups, the students with new data", second.details
    assert second.rows_in == 0 and second.rows_out == 0 and second.details["students"] == 4

    # Night 1: new days for s1 and s2, a new student s5; s3's forecast becomes known
    write(landing, {"alpha/usage_night_1.csv": "student_id,app,date,minutes\n"
                                               "s1,ixl,2026-11-21,10\ns2,ixl,2026-11-21,5\ns5,lexia,2026-11-21,12\n"})
    night = run(engine, landing, DAY + timedelta(days=1))
    assert night.details["from"] == "usage rollups, the students with new data"
    assert night.rows_in == 4 and night.rows_out == 4  # s1, s2, s5 and s3 (its forecast), and nobody else
    assert night.details["students"] == 5 and night.details["types"] == {1: 1, 2: 1, None: 3}
    after = table(engine)
    assert float(after.loc[after["student_id"] == "s3", "type"].item()) == 2
    assert float(after.loc[after["student_id"] == "s1", "app_ixl"].item()) == 40
    assert after.equals(rebuilt(engine, landing, DAY + timedelta(days=1)))
    with engine.connect() as conn:  # what the night followed is forgotten once published
        assert conn.execute(select(changed_students)).all() == []

    # Night 2: a corrected file replaces s2's minutes of 10-01 (same key): still a night
    write(landing, {"alpha/usage_fix.csv": "student_id,app,date,minutes\ns2,lexia,2026-10-01,4\n"})
    fixed = run(engine, landing, DAY + timedelta(days=2))
    assert fixed.details["from"] == "usage rollups, the students with new data" and fixed.rows_in == 1
    after = table(engine)
    assert float(after.loc[after["student_id"] == "s2", "app_lexia"].item()) == 4
    assert after.equals(rebuilt(engine, landing, DAY + timedelta(days=2)))

    # Night 3: an assessments file is not one a night can follow: the run is full
    write(landing, {"alpha/assessments_2.csv": "student_id,assessment_id,date,score\ns4,a2,2026-11-22,50\n"})
    full = run(engine, landing, DAY + timedelta(days=2))
    assert full.details["from"] == "usage rollups" and "assessments_2.csv" in full.details["full_because"]
    assert table(engine).loc[lambda t: t["student_id"] == "s4", "performance"].item() == "unsatisfactory"

    # A file from ahead of the clock (a day after as-of): the run is full, and counts only up to as-of
    write(landing, {"alpha/usage_ahead.csv": "student_id,app,date,minutes\ns4,ixl,2026-11-25,9\n"})
    ahead = run(engine, landing, DAY + timedelta(days=2))
    assert ahead.details["from"] == "usage" and "after 2026-11-22" in ahead.details["full_because"]
    assert table(engine).equals(rebuilt(engine, landing, DAY + timedelta(days=2)))


def test_other_settings_make_the_next_run_full(engine, tmp_path):
    landing = tmp_path / "landing"
    write(landing, {"alpha/usage_year.csv": YEAR})
    run(engine, landing, DAY)
    settings = settings_for(bands={"excellent": 90, "satisfactory": 70, "needs improvement": 55, "unsatisfactory": 0})
    now = datetime(2026, 11, 21, 2, tzinfo=timezone.utc)
    done = run_cycle(engine, settings, districts=list(settings.districts), jobs=["dailypull"], as_of=DAY,
                     landing_dir=landing, now=now, clock=lambda: now)
    assert "settings" in done.records[-1].result.details["full_because"]
    with engine.connect() as conn:
        assert conn.execute(select(dailypull_state.c.as_of)).scalar() == DAY
    earlier = run(engine, landing, DAY - timedelta(days=1))  # an earlier day than the last publish's
    assert "the day differ" in earlier.details["full_because"]


@pytest.mark.parametrize("scenario", ["test_end_to_end_values", "test_a_student_gone_from_every_source_is_removed",
                                      "test_changing_the_app_list_reshapes_the_table",
                                      "test_running_the_cycle_twice_changes_nothing"])
def test_a_full_publish_in_slices_of_two_students_is_the_same(engine, tmp_path, monkeypatch, scenario):
    """A full run compares and writes a slice of students at a time (PUBLISH_SLICE): with
    slices of two, the hand-worked cycles of test_cycle give the same tables."""
    from jobs import dailypull
    from tests.integration import test_cycle

    monkeypatch.setattr(dailypull, "PUBLISH_SLICE", 2)
    root = tmp_path / "landing"
    write(root, test_cycle.FILES, mtime=1_700_000_000)
    getattr(test_cycle, scenario)(engine, root)
