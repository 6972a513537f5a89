from datetime import date

import pandas as pd

from analytics.school_year import school_year_containing
from analytics.student_types import student_types

AS_OF = date(2026, 11, 22)
YEAR = school_year_containing(AS_OF, (8, 1))  # 2026-08-01 .. 2027-07-31, "2026-27"


def frames(assessments=(), forecasts=(), averages=()):
    return (
        pd.DataFrame(list(assessments), columns=["student_id", "date", "score"]),
        pd.DataFrame(list(forecasts), columns=["student_id", "date", "score"]),
        pd.DataFrame(list(averages), columns=["student_id", "school_year", "as_of", "score"]),
    )


def types_of(*args, as_of=AS_OF):
    out = student_types(*frames(*args), year=school_year_containing(as_of, (8, 1)), as_of=as_of)
    return {row.student_id: (row.type, row.score) for row in out.itertuples()}


def test_assessment_mean_wins_over_everything():
    result = types_of(
        [("s", "2026-09-10", 80.0), ("s", "2026-10-10", 91.0)],
        [("s", "2026-10-01", 50.0)],
        [("s", "2026-27", "2026-11-01", 70.0)],
    )
    assert result == {"s": (1, 85.5)}


def test_latest_forecast_when_no_assessment():
    result = types_of([], [("s", "2026-09-01", 50.0), ("s", "2026-10-01", 68.99)], [("s", "2026-27", "2026-11-01", 70.0)])
    assert result == {"s": (2, 68.99)}


def test_this_years_average_before_older_ones():
    result = types_of([], [], [("s", "2026-27", "2026-11-01", 88.0), ("s", "2025-26", "2026-06-15", 40.0)])
    assert result == {"s": (3, 88.0)}


def test_only_older_averages_gives_the_most_recent_year():
    result = types_of([], [], [("s", "2024-25", "2025-06-15", 99.0), ("s", "2025-26", "2026-06-15", 54.9)])
    assert result == {"s": (4, 54.9)}


def test_student_with_nothing_is_absent():
    assert types_of([("other", "2026-09-10", 80.0)]).keys() == {"other"}


def test_assessment_the_day_before_the_year_starts_is_last_years():
    result = types_of([("s", "2026-07-31", 95.0)], [], [("s", "2025-26", "2026-06-15", 60.0)])
    assert result == {"s": (4, 60.0)}


def test_assessment_on_the_first_day_of_the_year_counts():
    assert types_of([("s", "2026-08-01", 95.0)]) == {"s": (1, 95.0)}


def test_rows_after_the_as_of_day_are_not_known_yet():
    result = types_of(
        [("s", "2026-11-23", 95.0)],
        [("s", "2026-11-23", 60.0)],
        [("s", "2026-27", "2026-11-30", 70.0), ("s", "2025-26", "2026-06-15", 40.0)],
    )
    assert result == {"s": (4, 40.0)}


def test_output_columns_and_dtypes():
    out = student_types(*frames([("s", "2026-09-10", 80.0)]), year=YEAR, as_of=AS_OF)
    expected = pd.DataFrame({
        "student_id": pd.Series(["s"], dtype="string"),
        "type": pd.Series([1], dtype="Int64"),
        "score": pd.Series([80.0], dtype="Float64"),
    })
    pd.testing.assert_frame_equal(out, expected)


def test_empty_inputs_give_an_empty_typed_frame():
    out = student_types(*frames(), year=YEAR, as_of=AS_OF)
    assert list(out.columns) == ["student_id", "type", "score"] and out.empty


def test_inputs_are_not_mutated():
    a, f, s = frames([("s", "2026-09-10", 80.0)], [("t", "2026-09-01", 50.0)], [("u", "2025-26", "2026-06-15", 40.0)])
    copies = [x.copy() for x in (a, f, s)]
    student_types(a, f, s, year=YEAR, as_of=AS_OF)
    for original, copy in zip((a, f, s), copies):
        pd.testing.assert_frame_equal(original, copy)


def test_a_mean_that_lands_on_a_bound_in_float_arithmetic_stays_on_it():
    # (68.1 + 69.1 + 69.8) / 3 is 68.99999999999999 in floating point; it means 69.
    from analytics.bands import performance_band

    out = student_types(*frames([("s", "2026-09-01", 68.1), ("s", "2026-09-02", 69.1), ("s", "2026-09-03", 69.8)]),
                        year=YEAR, as_of=AS_OF)
    assert out["score"].tolist() == [69.0]
    bands = {"excellent": 88, "satisfactory": 69, "needs improvement": 55, "unsatisfactory": 0}
    assert performance_band(out["score"], bands).tolist() == ["satisfactory"]
