"""Student type codes (CONTRACT.md, "Student type codes") and the score that goes with each."""
from __future__ import annotations

from datetime import date

import pandas as pd

from analytics.school_year import SchoolYear

ASSESSMENT, FORECAST, YEAR_AVERAGE, OLDER_AVERAGE = 1, 2, 3, 4
SCORE_DECIMALS = 6


def _in_year(frame: pd.DataFrame, column: str, year: SchoolYear, as_of: date) -> pd.DataFrame:
    days = pd.to_datetime(frame[column])
    return frame.loc[days.between(pd.Timestamp(year.start), pd.Timestamp(min(as_of, year.end)))]


def student_types(
    assessments: pd.DataFrame,
    forecasts: pd.DataFrame,
    averages: pd.DataFrame,
    *,
    year: SchoolYear,
    as_of: date,
) -> pd.DataFrame:
    """The first type that applies to each student, and its score.

    Inputs (one district):
      assessments: student_id, date (day), score (points 0..100)
      forecasts:   student_id, date (day), score (points)
      averages:    student_id, school_year ("2025-26"), as_of (day), score (points)
    `year` is the school year containing `as_of`; rows dated after `as_of` are not known yet.
    Output: student_id (string), type (Int64: 1 assessment mean, 2 latest forecast,
    3 this year's average, 4 most recent older average), score (Float64, points rounded
    to 6 decimals), one row
    per student that has any of these; students with none are absent (type NULL).
    """
    mean_assessment = (
        _in_year(assessments, "date", year, as_of)
        .groupby("student_id", as_index=False)["score"].mean()
        .assign(type=ASSESSMENT)
    )
    latest_forecast = (
        _in_year(forecasts, "date", year, as_of)
        .sort_values(["student_id", "date"])
        .drop_duplicates("student_id", keep="last")
        .assign(type=FORECAST)
    )
    known = averages.loc[pd.to_datetime(averages["as_of"]) <= pd.Timestamp(as_of)]
    this_year = known.loc[known["school_year"] == year.label].assign(type=YEAR_AVERAGE)
    older = (
        known.loc[known["school_year"] < year.label]  # "2024-25" < "2025-26": labels sort by year
        .sort_values(["student_id", "school_year", "as_of"])
        .drop_duplicates("student_id", keep="last")
        .assign(type=OLDER_AVERAGE)
    )
    columns = ["student_id", "type", "score"]
    candidates = [f[columns] for f in (mean_assessment, latest_forecast, this_year, older) if len(f)]
    if not candidates:
        return pd.DataFrame({
            "student_id": pd.Series(dtype="string"),
            "type": pd.Series(dtype="Int64"),
            "score": pd.Series(dtype="Float64"),
        })
    return (
        pd.concat(candidates, ignore_index=True)
        # A mean like (68.1 + 69.1 + 69.8) / 3 comes out as 68.99999999999999; rounding to
        # 1e-6 points keeps it on the bound it means, for banding and for the dashboard.
        .assign(score=lambda f: f["score"].astype("float64").round(SCORE_DECIMALS))
        .sort_values(["student_id", "type"], kind="stable")
        .drop_duplicates("student_id", keep="first")
        .astype({"student_id": "string", "type": "Int64", "score": "Float64"})
        .reset_index(drop=True)
    )
