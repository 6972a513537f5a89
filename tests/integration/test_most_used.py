"""most_used end to end on SQLite and PostgreSQL, on the hand-worked landing folder of
test_cycle (as of 2026-11-22, windows of 30 days, top 3):
  s1 type 1, latest assessment 10-10: window 09-11..10-10 holds none of its usage (09-01,
     09-02), so s1 has year_to_date rows only: ixl 45 (45/65), lexia 20.
  s2 type 2, last usage 10-02 (khan, not listed): latest window 09-03..10-02: lexia 40.
  s3 has 0 minutes, s4 and s5 no usage: nothing ranked.
"""
from datetime import date, datetime, timezone

import pandas as pd
from sqlalchemy import select

from storage.frames import read_frame
from jobs import most_used
from models import district_app_summary, most_used_software
from tests.integration.test_cycle import NOW, cycle, landing  # noqa: F401  (fixture)

JOBS = ("ingest", "dailypull", "most_used")


def ranked(engine):
    with engine.connect() as conn:
        rows = conn.execute(select(most_used_software).order_by(
            most_used_software.c.student_id, most_used_software.c.window, most_used_software.c.rank)).all()
    return [(r.student_id, r.type, r.window, r.rank, r.app, r.minutes, round(r.share, 4), r.window_start,
             r.window_end) for r in rows]


def summary(engine):
    with engine.connect() as conn:
        rows = conn.execute(select(district_app_summary)).all()
    return {(r.window, r.performance, r.app): (r.students, r.minutes, round(r.share, 4)) for r in rows}


def test_most_used_hand_worked(engine, landing):
    result = cycle(engine, landing, jobs=JOBS)
    assert [r.result.status for r in result.records][1:] == ["succeeded", "succeeded"]
    assert result.records[2].result.message == "students ranked: latest 1 student, year_to_date 2 students; 11 rows written"
    assert cycle(engine, landing, jobs=JOBS).records[2].result.message.endswith("; unchanged: nothing written")
    # year to date: the school year's first day .. the student's last day of usage (any app)
    s1_ytd, s2_ytd = (date(2026, 8, 1), date(2026, 9, 2)), (date(2026, 8, 1), date(2026, 10, 2))
    assert ranked(engine) == [
        ("s1", 1, "year_to_date", 1, "ixl", 45.0, round(45 / 65, 4), *s1_ytd),
        ("s1", 1, "year_to_date", 2, "lexia", 20.0, round(20 / 65, 4), *s1_ytd),
        ("s2", 2, "latest", 1, "lexia", 40.0, 1.0, date(2026, 9, 3), date(2026, 10, 2)),
        ("s2", 2, "year_to_date", 1, "lexia", 40.0, 1.0, *s2_ytd),
    ]
    assert summary(engine) == {
        ("year_to_date", "all", "ixl"): (1, 45.0, round(45 / 105, 4)),
        ("year_to_date", "all", "lexia"): (2, 60.0, round(60 / 105, 4)),
        ("year_to_date", "satisfactory", "ixl"): (1, 45.0, round(45 / 65, 4)),
        ("year_to_date", "satisfactory", "lexia"): (1, 20.0, round(20 / 65, 4)),
        ("year_to_date", "needs improvement", "lexia"): (1, 40.0, 1.0),
        ("latest", "all", "lexia"): (1, 40.0, 1.0),
        ("latest", "needs improvement", "lexia"): (1, 40.0, 1.0),
    }


def test_assessment_window_from_district_settings(engine, landing):
    from tests.integration.test_cycle import settings_for

    cycle(engine, landing, settings_for(assessment_window_days=45), jobs=JOBS)  # 08-27..10-10
    rows = [r for r in ranked(engine) if r[2] == "assessment"]
    assert rows == [("s1", 1, "assessment", 1, "ixl", 45.0, round(45 / 65, 4), date(2026, 8, 27), date(2026, 10, 10)),
                    ("s1", 1, "assessment", 2, "lexia", 20.0, round(20 / 65, 4), date(2026, 8, 27), date(2026, 10, 10))]


def test_rerun_is_identical_and_runs_alone_on_what_dailypull_published(engine, landing):
    cycle(engine, landing, jobs=JOBS)
    with engine.connect() as conn:
        before = read_frame(conn, select(most_used_software).order_by(*most_used_software.primary_key.columns))
        before_summary = read_frame(conn, select(district_app_summary).order_by(*district_app_summary.primary_key.columns))
    again = cycle(engine, landing, jobs=("most_used",), now=datetime(2026, 11, 23, 2, tzinfo=timezone.utc))
    assert again.records[0].result.rows_out == 0
    with engine.connect() as conn:
        pd.testing.assert_frame_equal(
            read_frame(conn, select(most_used_software).order_by(*most_used_software.primary_key.columns)), before)
        pd.testing.assert_frame_equal(
            read_frame(conn, select(district_app_summary).order_by(*district_app_summary.primary_key.columns)),
            before_summary)


def test_most_used_without_a_published_table_fails_clearly(engine, landing):
    result = cycle(engine, landing, jobs=("most_used",))
    [record] = result.records
    assert record.result.status == "failed"
    assert "dataframe_alpha does not exist yet: run dailypull for alpha first" in record.result.message


def test_a_failure_while_publishing_keeps_the_previous_rows(engine, landing, monkeypatch):
    cycle(engine, landing, jobs=JOBS)
    before = ranked(engine)
    from tests.integration.test_cycle import settings_for

    real = most_used.replace_district_rows
    calls = []

    def second_table_fails(conn, table, district_id, frame, *, stamp):
        calls.append(table.name)
        written = real(conn, table, district_id, frame, stamp=stamp)
        if table.name == "district_app_summary":
            raise RuntimeError("injected failure after most_used_software was rewritten")
        return written

    monkeypatch.setattr(most_used, "replace_district_rows", second_table_fails)
    result = cycle(engine, landing, settings_for(most_used_top_n=1), jobs=("most_used",))
    # most_used_software is rewritten in the database first (top 1 now), then the summary fails
    assert result.records[0].result.status == "failed" and calls == ["district_app_summary"]
    assert ranked(engine) == before  # the top-1 rewrite was rolled back with the summary


def test_a_district_without_usage_says_so(engine, tmp_path):
    from tests.integration.test_cycle import write

    write(tmp_path / "landing", {"alpha/students.csv": "student_id\ns1\n"}, mtime=1_700_000_000)
    result = cycle(engine, tmp_path / "landing", jobs=JOBS)
    assert result.records[2].result.message == "no student has usage in the school year: none ranked; " \
                                               "unchanged: nothing written"
