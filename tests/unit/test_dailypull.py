"""The student table assembled from pre-aggregated inputs, checked against hand-worked values."""
import pandas as pd

from analytics.dailypull import app_minutes_wide, student_frame

BANDS = {"excellent": 88, "satisfactory": 69, "needs improvement": 55, "unsatisfactory": 0}


def inputs():
    ids = pd.Series(["s3", "s1", "s2", "s1"])  # repeated and unordered, as a UNION may give them
    roster = pd.DataFrame({"student_id": ["s1", "s2"], "school_id": ["north", None], "grade": ["3", "K"]})
    types = pd.DataFrame({"student_id": pd.Series(["s1", "s2"], dtype="string"),
                          "type": pd.Series([1, 4], dtype="Int64"), "score": pd.Series([85.5, 54.9], dtype="Float64")})
    activity = pd.DataFrame({"student_id": ["s1", "s2"], "active_days": [2, 1],
                             "first_active": pd.to_datetime(["2026-09-01", "2026-10-02"]),
                             "last_active": pd.to_datetime(["2026-09-02", "2026-10-02"])})
    app_minutes = pd.DataFrame({"student_id": ["s1", "s1", "s2", "s2"], "app": ["ixl", "lexia", "lexia", "khan"],
                                "minutes": [45.0, 20.0, 40.0, 10.0]})
    return ids, roster, types, activity, app_minutes


def test_student_frame_hand_worked():
    out = student_frame(*inputs(), apps=("ixl", "lexia"), bands=BANDS)
    expected = pd.DataFrame({
        "student_id": pd.Series(["s1", "s2", "s3"], dtype="string"),
        "school_id": pd.Series(["north", pd.NA, pd.NA], dtype="string"),
        "grade": pd.Series(["3", "K", pd.NA], dtype="string"),
        "type": pd.Series([1, 4, pd.NA], dtype="Int64"),
        "score": pd.Series([85.5, 54.9, pd.NA], dtype="Float64"),
        "performance": pd.Series(["satisfactory", "unsatisfactory", pd.NA], dtype="string"),
        "total_minutes": pd.Series([65.0, 40.0, 0.0], dtype="Float64"),  # khan is not listed: no column, not in total
        "active_days": pd.Series([2, 1, 0], dtype="Int64"),
        "first_active": pd.to_datetime(["2026-09-01", "2026-10-02", None]),
        "last_active": pd.to_datetime(["2026-09-02", "2026-10-02", None]),
        "app_ixl": pd.Series([45.0, 0.0, 0.0], dtype="Float64"),
        "app_lexia": pd.Series([20.0, 40.0, 0.0], dtype="Float64"),
    })
    pd.testing.assert_frame_equal(out, expected)


def test_app_columns_follow_the_configured_order_even_without_usage():
    wide = app_minutes_wide(pd.DataFrame({"student_id": ["s1"], "app": ["lexia"], "minutes": [5.0]}), ["zearn", "lexia"])
    assert list(wide.columns) == ["student_id", "app_zearn", "app_lexia", "total_minutes"]
    assert wide.iloc[0].tolist() == ["s1", 0.0, 5.0, 5.0]


def test_inputs_are_not_mutated():
    frames = inputs()
    copies = [f.copy() for f in frames]
    student_frame(*frames, apps=("ixl", "lexia"), bands=BANDS)
    for original, copy in zip(frames, copies):
        if isinstance(original, pd.Series):
            pd.testing.assert_series_equal(original, copy)
        else:
            pd.testing.assert_frame_equal(original, copy)
