"""The district page's frames, worked by hand (analytics/dashboard.py)."""
from datetime import date

import pandas as pd

from analytics import dashboard

BANDS = ["excellent", "satisfactory", "needs improvement", "unsatisfactory"]


def test_students_by_type_and_band_in_order():
    students = pd.DataFrame({"type": [1, 1, 2, None, 1, 4],
                             "performance": ["satisfactory", "excellent", "excellent", None, "excellent", None]})
    kept = students.copy()
    out = dashboard.students_by_type_and_band(students, BANDS)
    assert out.to_dict("records") == [
        {"type": "1 assessment", "performance": "excellent", "students": 2},
        {"type": "1 assessment", "performance": "satisfactory", "students": 1},
        {"type": "2 forecast", "performance": "excellent", "students": 1},
        {"type": "4 older average", "performance": "no band", "students": 1},
        {"type": "none", "performance": "no band", "students": 1}]
    pd.testing.assert_frame_equal(students, kept)


def test_weekly_by_app_sums_schools():
    weekly = pd.DataFrame({"week_start": [date(2026, 11, 2)] * 3 + [date(2026, 11, 9)],
                           "app": ["ixl", "ixl", "lexia", "ixl"], "students": [2, 1, 3, 1],
                           "minutes": [30.0, 5.0, 12.5, 4.0]})
    out = dashboard.weekly_by_app(weekly)
    assert out.to_dict("records") == [
        {"week_start": date(2026, 11, 2), "app": "ixl", "students": 3, "minutes": 35.0},
        {"week_start": date(2026, 11, 2), "app": "lexia", "students": 3, "minutes": 12.5},
        {"week_start": date(2026, 11, 9), "app": "ixl", "students": 1, "minutes": 4.0}]
    assert dashboard.weekly_by_app(weekly.iloc[:0]).empty


def test_forest_puts_estimates_first_highest_first():
    effects = pd.DataFrame({"app": ["a", "b", "c", "d"], "effect": [1.0, None, 3.0, -0.5],
                            "ci_low": [0.1, None, 1.0, -2.0], "ci_high": [1.9, None, 5.0, 1.0],
                            "ci95_low": [0.3, None, 1.5, -1.5], "ci95_high": [1.7, None, 4.5, 0.5],
                            "students": [40, 3, 50, 35], "status": ["r", "too few users", "r", "unresolved"]})
    out = dashboard.forest(effects)
    assert out["app"].tolist() == ["c", "a", "d", "b"] and out["estimated"].tolist() == [True, True, True, False]


def test_sync_days_marks_files_and_heartbeats_by_day():
    files = pd.DataFrame({"school": ["a", "a", "b"], "arrived_at": pd.to_datetime(
        ["2026-11-02T10:00Z", "2026-10-31T23:00Z", "2026-11-03T00:30Z"], utc=True)})
    beats = pd.DataFrame({"school": ["b"], "seen_at": pd.to_datetime(["2026-11-02T04:00Z"], utc=True)})
    out = dashboard.sync_days(files, beats, date(2026, 11, 1), 3)
    assert out.loc[out["seen"], ["school", "day"]].values.tolist() == [["a", 2], ["b", 2], ["b", 3]]
    assert len(out) == 6  # two schools x three days; October's file is outside the month


def test_monthly_volume_sums_bytes_by_arrival_month():
    files = pd.DataFrame({"district_id": ["d", "d", "e"], "bytes": [10, 5, 7], "arrived_at": pd.to_datetime(
        ["2026-11-02T10:00Z", "2026-10-30T10:00Z", "2026-11-05T10:00Z"], utc=True)})
    assert dashboard.monthly_volume(files).to_dict("records") == [
        {"district_id": "d", "month": "2026-10", "bytes": 5}, {"district_id": "d", "month": "2026-11", "bytes": 10},
        {"district_id": "e", "month": "2026-11", "bytes": 7}]
