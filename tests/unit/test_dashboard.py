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
