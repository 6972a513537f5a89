"""Most used software: each student's top apps per window, and the district summary.

Windows (all clipped to the school year's first day, all inclusive):
  year_to_date  every student with usage: the school year's first day .. the student's last
                day of usage up to as-of
  assessment    type 1: the `assessment_days` days ending on the student's latest
                assessment of the school year
  latest        types 2-4: the `latest_days` days ending on the student's last day of usage
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import numpy as np
import pandas as pd

YEAR_TO_DATE, ASSESSMENT, LATEST = "year_to_date", "assessment", "latest"
ALL = "all"


def student_windows(
    students: pd.DataFrame,
    *,
    year_start: date,
    as_of: date,
    assessment_days: int,
    latest_days: int,
) -> pd.DataFrame:
    """The windows that matter for each student.

    Input `students`: student_id, type (Int64 1..4 or <NA>), performance (band or <NA>),
      latest_assessment (day of the latest assessment in the school year, up to as-of, or NaT),
      last_active (last day of usage in the school year, up to as-of, or NaT).
    Output: student_id, type, performance, window, window_start, window_end (days,
      datetime64); a year_to_date row for every student, an assessment row for type 1
      students with an assessment day, a latest row for types 2-4 with a last day of usage.
    """
    start = pd.Timestamp(year_start)
    base = students[["student_id", "type", "performance"]]
    latest_assessment = pd.to_datetime(students["latest_assessment"])
    last_active = pd.to_datetime(students["last_active"])

    # year to date ends on the student's last day of usage: the same minutes as up to as-of,
    # and a row that changes only when the student's data does (empty for a student without)
    ytd = base.assign(window=YEAR_TO_DATE, window_start=start, window_end=last_active.fillna(start).to_numpy())
    is_assessed = students["type"].eq(1).fillna(False).to_numpy() & latest_assessment.notna().to_numpy()
    assessed = base.loc[is_assessed].assign(
        window=ASSESSMENT,
        window_start=(latest_assessment[is_assessed] - pd.Timedelta(days=assessment_days - 1)).clip(lower=start),
        window_end=latest_assessment[is_assessed],
    )
    is_other = students["type"].isin([2, 3, 4]).fillna(False).to_numpy() & last_active.notna().to_numpy()
    recent = base.loc[is_other].assign(
        window=LATEST,
        window_start=(last_active[is_other] - pd.Timedelta(days=latest_days - 1)).clip(lower=start),
        window_end=last_active[is_other],
    )
    out = pd.concat([ytd, assessed, recent], ignore_index=True)
    return out.astype({"window_start": "datetime64[s]", "window_end": "datetime64[s]"})


def window_minutes(usage: pd.DataFrame, windows: pd.DataFrame, apps: Sequence[str]) -> pd.DataFrame:
    """Minutes per student, window and app, for the listed apps, where more than 0.

    Input `usage`: student_id, app, date (day), minutes; `windows` from `student_windows`.
    Output: student_id, type, performance, window, window_start, window_end, app, minutes.
    """
    listed = usage.loc[usage["app"].isin(list(apps)) & (usage["minutes"] > 0)]
    listed = listed.assign(date=pd.to_datetime(listed["date"]).astype("datetime64[s]"))
    joined = listed.merge(windows, on="student_id", how="inner", validate="m:m")
    inside = joined.loc[joined["date"].between(joined["window_start"], joined["window_end"])]
    keys = ["student_id", "window", "app"]
    sums = inside.groupby(keys, as_index=False, sort=False)["minutes"].sum()
    return sums.merge(windows, on=["student_id", "window"], how="left", validate="m:1")[
        ["student_id", "type", "performance", "window", "window_start", "window_end", "app", "minutes"]
    ]


def top_apps(minutes: pd.DataFrame, top_n: int) -> pd.DataFrame:
    """The `top_n` apps of each student and window by minutes; ties go to the lower app id.

    Input: `window_minutes` output. Output: student_id, type, window, rank (1..top_n), app,
    minutes, share (the app's part of the student's minutes in the window, 0..1),
    window_start, window_end; sorted by student_id, window, rank.
    """
    total = minutes.groupby(["student_id", "window"])["minutes"].transform("sum")
    ranked = (
        minutes.assign(share=minutes["minutes"] / total)
        .sort_values(["student_id", "window", "minutes", "app"], ascending=[True, True, False, True], kind="stable")
    )
    ranked = ranked.assign(rank=ranked.groupby(["student_id", "window"]).cumcount() + 1)
    columns = ["student_id", "type", "window", "rank", "app", "minutes", "share", "window_start", "window_end"]
    return (
        ranked.loc[ranked["rank"] <= top_n, columns]
        .astype({"type": "Int64", "rank": "int64"})
        .reset_index(drop=True)
    )


def app_summary(minutes: pd.DataFrame) -> pd.DataFrame:
    """For each window and band, and for all students ("all"): per app, the students who
    used it, their minutes, and the app's share of the group's minutes.

    Input: `window_minutes` output. Output: window, performance, app, students (count),
    minutes, share (0..1); students without a band count only in "all".
    """
    banded = minutes.loc[minutes["performance"].notna()]
    groups = pd.concat([banded.assign(group=banded["performance"].astype(str)), minutes.assign(group=ALL)])
    summary = (
        groups.groupby(["window", "group", "app"], as_index=False)
        .agg(students=("student_id", "nunique"), minutes=("minutes", "sum"))
        .rename(columns={"group": "performance"})
    )
    group_total = summary.groupby(["window", "performance"])["minutes"].transform("sum")
    summary = summary.assign(share=np.where(group_total > 0, summary["minutes"] / group_total, 0.0))
    return summary.sort_values(["window", "performance", "minutes", "app"], ascending=[True, True, False, True],
                               ignore_index=True)
