"""usage_weekly's rows from a file's own rows (analytics.usage_weeks), worked out by hand."""
import pandas as pd

from analytics.usage_rollup import Folded, rollup
from analytics.usage_weeks import mondays, schools, week_sums, weekly_rows

START = (8, 1)  # 1 Aug 2026 is a Saturday: the week of Mon 27 Jul is in two school years
SCHOOL_OF = pd.Series({"s1": "north", "s2": "north", "s3": "south"})


def rows(*records):
    return pd.DataFrame(records, columns=["student_id", "app", "date", "minutes"]).assign(
        date=lambda f: pd.to_datetime(f["date"]))


def weekly_of(*chunks, pending_rows=1_000_000):
    folded = Folded(pending_rows=pending_rows)
    for chunk in chunks:
        folded.add(*rollup(chunk, START, weeks=True), week_sums(chunk, schools(chunk["student_id"], SCHOOL_OF)))
    totals, _ = folded.result()
    out = weekly_rows(totals, folded.week_sums(), SCHOOL_OF)
    return [(r.school_id, r.app, r.week_start.date().isoformat(), r.students, r.minutes) for r in out.itertuples()]


def test_students_count_once_a_week_and_minutes_add_up():
    assert weekly_of(rows(
        ("s1", "ixl", "2026-09-07", 10), ("s1", "ixl", "2026-09-13", 5),  # Mon and Sun: one week, one student
        ("s2", "ixl", "2026-09-09", 0),  # 0 minutes: counted in minutes, not as a student
        ("s3", "ixl", "2026-09-14", 20),  # Monday: the next week
        ("s4", "dreambox", "2026-09-14", 7),  # no school
    )) == [("", "dreambox", "2026-09-14", 1, 7.0),
           ("north", "ixl", "2026-09-07", 1, 15.0),
           ("south", "ixl", "2026-09-14", 1, 20.0)]


def test_a_group_of_zero_minutes_only_has_no_student():
    assert weekly_of(rows(("s2", "ixl", "2026-09-09", 0))) == [("north", "ixl", "2026-09-07", 0, 0.0)]


def test_the_week_across_the_school_year_start_counts_a_student_once():
    """Fri 31 Jul is in the school year 2025-26, Sat 1 Aug in 2026-27: one week, one student."""
    assert weekly_of(rows(("s1", "ixl", "2026-07-31", 10), ("s1", "ixl", "2026-08-01", 5),
                          ("s2", "ixl", "2026-08-02", 1), ("s3", "ixl", "2026-07-27", 0))) == [
        ("north", "ixl", "2026-07-27", 2, 16.0), ("south", "ixl", "2026-07-27", 0, 0.0)]


def test_chunks_folded_along_the_way_give_the_rows_of_one_chunk():
    chunks = [rows(("s1", "ixl", "2026-09-07", 10), ("s2", "ixl", "2026-09-08", 0)),
              rows(("s1", "ixl", "2026-09-08", 5), ("s2", "ixl", "2026-09-09", 3)),
              rows(("s1", "dreambox", "2026-07-31", 2), ("s4", "ixl", "2026-09-10", 1)),
              rows(("s1", "dreambox", "2026-08-01", 4))]
    copies = [c.copy() for c in chunks]
    assert weekly_of(*chunks, pending_rows=2) == weekly_of(pd.concat(chunks, ignore_index=True)) == [
        ("", "ixl", "2026-09-07", 1, 1.0),
        ("north", "dreambox", "2026-07-27", 1, 6.0),
        ("north", "ixl", "2026-09-07", 2, 18.0)]
    for chunk, copy in zip(chunks, copies):
        pd.testing.assert_frame_equal(chunk, copy)


def test_mondays():
    days = pd.Series(pd.to_datetime(["2026-09-13", "2026-09-14", "2026-09-20"]))
    assert [d.date().isoformat() for d in mondays(days)] == ["2026-09-07", "2026-09-14", "2026-09-14"]
