"""analytics/refit.py: when recommendations refit and when they re-score, on small cases by hand."""
from datetime import date

import pandas as pd

from analytics import refit

FIT = refit.Fit(fitted_as_of=date(2026, 11, 22), settings="s1", students=100, assessments=200, file_mark=10,
                too_small=False)


def test_refit_before_reading_anything():
    before = refit.before_reading
    assert before(FIT, as_of=date(2026, 11, 23), settings="s1", force=True) == "--force"
    assert before(None, as_of=date(2026, 11, 23), settings="s1", force=False) == "no stored fit for the district"
    assert before(FIT, as_of=date(2026, 11, 23), settings="s2", force=False).startswith(
        "the settings the fit of 2026-11-22 depends on changed")
    assert before(FIT, as_of=date(2026, 11, 21), settings="s1", force=False).startswith("the as-of day is before")
    assert before(FIT, as_of=date(2026, 11, 28), settings="s1", force=False) is None  # 6 days: the data decide
    assert before(FIT, as_of=date(2026, 11, 29), settings="s1", force=False) == (
        "the fit of 2026-11-22 is 7 days older than the as-of day (refit at 7)")


def test_changes_count_students_and_rows_the_fit_did_not_read():
    rows = pd.DataFrame({
        "student_id": ["a", "a", "b", "c", "d", "x"],
        "date": [date(2026, 10, 1), date(2026, 11, 23), date(2026, 10, 1), date(2026, 10, 2), date(2026, 11, 1),
                 date(2026, 10, 1)],
        "file_id": [3, 3, 11, 4, 12, 1],
    })
    fit = refit.Fit(date(2026, 11, 22), "s", students=4, assessments=4, file_mark=10, too_small=False)
    changes = refit.changes_since(fit, pd.Index(["a", "b", "c", "d"]), rows)  # x is not type 1
    # read by the fit: a's first row and c's; a's second is dated after the fit's day, b's and
    # d's rows were written by files loaded since (b rewritten: counted as added and removed)
    assert changes == refit.Changes(students=4, added=2, removed=2, assessments=5, assessments_changed=3)


def test_more_than_five_percent_changed_refits():
    after = refit.after_reading
    same = refit.Changes(students=100, added=0, removed=0, assessments=200, assessments_changed=0)
    assert after(FIT, same, too_small=False) is None
    assert after(FIT, refit.Changes(103, 3, 2, 200, 0), too_small=False) is None  # 5 of 100: not more than 5%
    assert after(FIT, refit.Changes(104, 4, 2, 200, 0), too_small=False) == (
        "6 of the fit's 100 type 1 students added or removed since 2026-11-22 (6.0%, over 5%)")
    assert after(FIT, refit.Changes(100, 0, 0, 210, 10), too_small=False) is None  # 10 of 200 rows
    assert after(FIT, refit.Changes(100, 0, 0, 211, 11), too_small=False).startswith(
        "11 of the fit's 200 assessment rows added or changed since 2026-11-22 (5.5%, over 5%)")
    assert after(FIT, same, too_small=True).startswith("the district is now too small for the model basis")


def test_a_rescore_says_why():
    changes = refit.Changes(students=100, added=1, removed=0, assessments=202, assessments_changed=2)
    assert refit.rescore_reason(FIT, changes, date(2026, 11, 23)) == (
        "1 day old, under 7; 1 of 100 type 1 students added or removed and 2 of 200 assessment rows added or "
        "changed, within 5%; same settings")
