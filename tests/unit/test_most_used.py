"""Most used software: windows, ranking and summary on a small district worked out by hand.

Year 2026-27 starts 2026-08-01; as of 2026-11-22; assessment window 30 days, latest 7.
  a  type 1, latest assessment 10-10 -> assessment window 09-11..10-10
  b  type 1, assessment on the year's first day -> window clipped to 08-01..08-01
  c  type 2, last usage 11-20 -> latest window 11-14..11-20; lexia and zearn tie
  d  type 1, assessment 11-01 but no usage in 10-03..11-01 -> no assessment rows
  e  type 4, no usage -> no rows
  f  no type; zero minutes and an unlisted app only -> nothing ranked
"""
from datetime import date

import pandas as pd
import pytest

from analytics.most_used import app_summary, student_windows, top_apps, window_minutes

APPS = ("ixl", "lexia", "zearn")
T = pd.Timestamp


def students():
    return pd.DataFrame({
        "student_id": ["a", "b", "c", "d", "e", "f"],
        "type": pd.Series([1, 1, 2, 1, 4, pd.NA], dtype="Int64"),
        "performance": pd.Series(["excellent", "excellent", "satisfactory", pd.NA, "unsatisfactory", pd.NA],
                                 dtype="string"),
        "latest_assessment": pd.to_datetime(["2026-10-10", "2026-08-01", None, "2026-11-01", None, None]),
        "last_active": pd.to_datetime(["2026-10-11", "2026-08-01", "2026-11-20", "2026-09-01", None, "2026-09-05"]),
    })


def usage():
    rows = [
        ("a", "ixl", "2026-09-10", 100), ("a", "ixl", "2026-09-11", 20), ("a", "lexia", "2026-10-10", 30),
        ("a", "zearn", "2026-10-11", 50),
        ("b", "ixl", "2026-07-31", 10), ("b", "ixl", "2026-08-01", 5),
        ("c", "ixl", "2026-11-13", 40), ("c", "lexia", "2026-11-14", 10), ("c", "zearn", "2026-11-20", 10),
        ("d", "ixl", "2026-09-01", 15),
        ("f", "ixl", "2026-09-05", 0), ("f", "khan", "2026-09-05", 50),
    ]
    return pd.DataFrame(rows, columns=["student_id", "app", "date", "minutes"]).astype({"minutes": "float64"})


def windows():
    return student_windows(students(), year_start=date(2026, 8, 1), as_of=date(2026, 11, 22),
                           assessment_days=30, latest_days=7)


def test_windows_per_type():
    found = {(r.student_id, r.window): (r.window_start, r.window_end) for r in windows().itertuples()}
    def ytd(last):  # the year's first day .. the student's last day of usage (the first day without one)
        return (T("2026-08-01"), T(last))

    assert found == {
        ("a", "year_to_date"): ytd("2026-10-11"), ("a", "assessment"): (T("2026-09-11"), T("2026-10-10")),
        ("b", "year_to_date"): ytd("2026-08-01"), ("b", "assessment"): (T("2026-08-01"), T("2026-08-01")),
        ("c", "year_to_date"): ytd("2026-11-20"), ("c", "latest"): (T("2026-11-14"), T("2026-11-20")),
        ("d", "year_to_date"): ytd("2026-09-01"), ("d", "assessment"): (T("2026-10-03"), T("2026-11-01")),
        ("e", "year_to_date"): ytd("2026-08-01"),  # type 4 without usage: no latest window
        ("f", "year_to_date"): ytd("2026-09-05"),  # no type: only the year
    }


def test_window_lengths_come_from_the_settings():
    w = student_windows(students(), year_start=date(2026, 8, 1), as_of=date(2026, 11, 22),
                        assessment_days=10, latest_days=1)
    a = w.loc[(w["student_id"] == "a") & (w["window"] == "assessment")].iloc[0]
    c = w.loc[(w["student_id"] == "c") & (w["window"] == "latest")].iloc[0]
    assert (a.window_start, a.window_end) == (T("2026-10-01"), T("2026-10-10"))
    assert (c.window_start, c.window_end) == (T("2026-11-20"), T("2026-11-20"))


def test_top_apps_hand_worked():
    top = top_apps(window_minutes(usage(), windows(), APPS), top_n=2)
    got = [(r.student_id, r.window, r.rank, r.app, r.minutes, round(r.share, 4)) for r in top.itertuples()]
    assert got == [
        ("a", "assessment", 1, "lexia", 30.0, 0.6),
        ("a", "assessment", 2, "ixl", 20.0, 0.4),
        ("a", "year_to_date", 1, "ixl", 120.0, 0.6),
        ("a", "year_to_date", 2, "zearn", 50.0, 0.25),
        ("b", "assessment", 1, "ixl", 5.0, 1.0),  # the 07-31 row is last year's
        ("b", "year_to_date", 1, "ixl", 5.0, 1.0),
        ("c", "latest", 1, "lexia", 10.0, 0.5),  # a tie: the lower app id first
        ("c", "latest", 2, "zearn", 10.0, 0.5),
        ("c", "year_to_date", 1, "ixl", 40.0, 0.6667),
        ("c", "year_to_date", 2, "lexia", 10.0, 0.1667),  # zearn is third: beyond top 2
        ("d", "year_to_date", 1, "ixl", 15.0, 1.0),
    ]
    assert list(top.columns) == ["student_id", "type", "window", "rank", "app", "minutes", "share",
                                 "window_start", "window_end"]
    assert top.loc[top["student_id"] == "c", "type"].unique().tolist() == [2]


def test_top_n_from_settings_and_rerun_identical():
    minutes = window_minutes(usage(), windows(), APPS)
    assert top_apps(minutes, top_n=1)["rank"].max() == 1
    pd.testing.assert_frame_equal(top_apps(minutes, top_n=3), top_apps(window_minutes(usage(), windows(), APPS), 3))


def test_summary_per_window_and_band_and_all():
    summary = app_summary(window_minutes(usage(), windows(), APPS))
    rows = {(r.window, r.performance, r.app): (r.students, r.minutes, round(r.share, 4)) for r in summary.itertuples()}
    # year to date, all students: ixl a120 + b5 + c40 + d15 = 180 of 280 minutes
    assert rows[("year_to_date", "all", "ixl")] == (4, 180.0, round(180 / 280, 4))
    # excellent = a and b: ixl 125, lexia 30, zearn 50 -> 205
    assert rows[("year_to_date", "excellent", "ixl")] == (2, 125.0, round(125 / 205, 4))
    assert rows[("year_to_date", "excellent", "zearn")] == (1, 50.0, round(50 / 205, 4))
    # d has no band: only in "all"; e and f used nothing listed
    assert not any(k[1] in ("unsatisfactory", "<NA>", "nan") for k in rows)
    assert rows[("latest", "satisfactory", "lexia")] == (1, 10.0, 0.5)
    assert {k[0] for k in rows} == {"year_to_date", "assessment", "latest"}


@pytest.mark.parametrize("fn", ["windows", "minutes"])
def test_inputs_are_not_mutated(fn):
    s, u = students(), usage()
    w = student_windows(s, year_start=date(2026, 8, 1), as_of=date(2026, 11, 22), assessment_days=30, latest_days=7)
    if fn == "minutes":
        before = w.copy()
        window_minutes(u, w, APPS)
        pd.testing.assert_frame_equal(w, before)
    pd.testing.assert_frame_equal(s, students())
    pd.testing.assert_frame_equal(u, usage())
