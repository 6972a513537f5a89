"""Usage rollups: sums and active-day bitmaps, computed by hand on small frames."""
from datetime import date

import pandas as pd

from analytics.usage_rollup import Folded, activity_summary, last_active_day, merge_activity, merge_totals, rollup, year_starts

START = (8, 1)


def rows(*records):
    return pd.DataFrame(records, columns=["student_id", "app", "date", "minutes"]).assign(
        date=lambda f: pd.to_datetime(f["date"]))


def test_year_starts_follow_the_configured_first_day():
    days = pd.Series(pd.to_datetime(["2026-07-31", "2026-08-01", "2027-01-15"]))
    assert year_starts(days, START).dt.date.tolist() == [date(2025, 8, 1), date(2026, 8, 1), date(2026, 8, 1)]


def test_rollup_sums_minutes_and_marks_days_with_minutes():
    totals, activity = rollup(rows(
        ("s1", "ixl", "2026-08-01", 10), ("s1", "ixl", "2026-08-03", 5), ("s1", "dreambox", "2026-08-03", 0),
        ("s2", "ixl", "2026-07-31", 7),  # the year before
    ), START)
    assert totals.assign(year_start=totals["year_start"].dt.date).values.tolist() == [
        [date(2025, 8, 1), "s2", "ixl", 7.0],
        [date(2026, 8, 1), "s1", "dreambox", 0.0],
        [date(2026, 8, 1), "s1", "ixl", 15.0],
    ]
    s1 = activity.loc[activity["student_id"] == "s1", "days"].item()
    assert s1[0] == 0b101 and not any(s1[1:])  # day 0 and day 2 of the year
    summary = activity_summary(activity.loc[activity["student_id"] == "s1"], date(2026, 8, 1), date(2026, 8, 22))
    assert summary.values.tolist() == [["s1", 2, pd.Timestamp("2026-08-01"), pd.Timestamp("2026-08-03")]]


def test_merging_adds_minutes_and_ors_days():
    t1, a1 = rollup(rows(("s1", "ixl", "2026-08-01", 10)), START)
    t2, a2 = rollup(rows(("s1", "ixl", "2026-08-02", 4), ("s3", "ixl", "2026-09-01", 1)), START)
    totals = merge_totals(t1, t2)
    assert totals[["student_id", "minutes"]].values.tolist() == [["s1", 14.0], ["s3", 1.0]]
    activity = merge_activity(a1, a2)
    summary = activity_summary(activity, date(2026, 8, 1), date(2027, 7, 31))
    assert summary[["student_id", "active_days"]].values.tolist() == [["s1", 2], ["s3", 1]]
    assert last_active_day(activity, date(2026, 8, 1)) == date(2026, 9, 1)


def test_the_summary_stops_at_as_of():
    _, activity = rollup(rows(("s1", "ixl", "2026-08-01", 1), ("s1", "ixl", "2026-08-10", 1),
                              ("s2", "ixl", "2026-08-10", 1)), START)
    summary = activity_summary(activity, date(2026, 8, 1), date(2026, 8, 5))
    assert summary[["student_id", "active_days", "last_active"]].values.tolist() == [["s1", 1, pd.Timestamp("2026-08-01")]]


def test_folding_chunks_in_bulk_gives_the_rollup_of_all_their_rows():
    """Chunks' partial rollups merged every few chunks (pending_rows=3 forces merges along
    the way) equal the rollup of all the rows at once; the inputs are left as they were."""
    chunks = [rows(("s1", "ixl", "2026-08-01", 10), ("s2", "ixl", "2026-08-02", 0)),
              rows(("s1", "ixl", "2026-08-03", 5), ("s3", "dreambox", "2026-07-31", 2)),
              rows(("s2", "ixl", "2026-08-05", 1)),
              rows(("s1", "dreambox", "2026-08-01", 4), ("s1", "ixl", "2026-08-04", 1)),
              rows(("s4", "ixl", "2026-08-06", 3))]  # left pending: result() merges it
    partials = [rollup(chunk, START) for chunk in chunks]
    copies = [(t.copy(), a.copy()) for t, a in partials]
    folded = Folded(pending_rows=3)
    for totals, activity in partials:
        folded.add(totals, activity)
    totals, activity = folded.result()
    whole_totals, whole_activity = rollup(pd.concat(chunks, ignore_index=True), START)
    pd.testing.assert_frame_equal(totals, whole_totals)
    pd.testing.assert_frame_equal(activity, whole_activity)
    assert totals.loc[totals["student_id"] == "s1", "minutes"].tolist() == [4.0, 16.0]  # dreambox, ixl
    for (t, a), (t0, a0) in zip(partials, copies):
        pd.testing.assert_frame_equal(t, t0)
        pd.testing.assert_frame_equal(a, a0)
    assert Folded().result() is None
