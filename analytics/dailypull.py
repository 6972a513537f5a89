"""The per-district student table (`dataframe_<district_id>`), from pre-aggregated inputs."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from analytics.bands import performance_band


def app_columns(apps: Sequence[str]) -> list[str]:
    return [f"app_{app}" for app in apps]


def app_minutes_wide(app_minutes: pd.DataFrame, apps: Sequence[str]) -> pd.DataFrame:
    """One row per student, one `app_<id>` column per configured app.

    Input: student_id, app, minutes (minutes of use in the window, one row per student and
    app). Apps not in `apps` are left out. Output: student_id, then `app_<id>` for each app
    in `apps` order (Float64 minutes, 0 where unused), then total_minutes (their sum, summed
    in app id order whatever order `apps` lists them in: the same minutes, the same bits).
    """
    listed = app_minutes.loc[app_minutes["app"].isin(list(apps))]
    wide = (
        listed.astype({"minutes": "float64"}).groupby(["student_id", "app"])["minutes"].sum()
        .unstack("app")
        .reindex(columns=list(apps))
        .fillna(0.0)
        .astype("Float64")
    )
    wide.columns = app_columns(apps)
    wide.columns.name = None
    return (
        wide.assign(total_minutes=wide[app_columns(sorted(apps))].sum(axis=1).astype("Float64"))
        .reset_index()
        .astype({"student_id": "string"})
    )


def student_frame(
    student_ids: pd.Series,
    roster: pd.DataFrame,
    types: pd.DataFrame,
    activity: pd.DataFrame,
    app_minutes: pd.DataFrame,
    *,
    apps: Sequence[str],
    bands: Mapping[str, float],
) -> pd.DataFrame:
    """Assemble the district's student table, one row per student, sorted by student_id.

    Inputs:
      student_ids: every student id seen in any source table of the district
      roster:      student_id, school_id, grade (text)
      types:       student_id, type (1..4), score (points) -- from `student_types`
      activity:    student_id, active_days (count of days with minutes > 0),
                   first_active, last_active (days)
      app_minutes: student_id, app, minutes -- the school year's minutes up to as-of
    Output columns: student_id, school_id, grade, type (Int64), score (Float64 points),
      performance (band label or <NA>), total_minutes (Float64, sum of the app columns),
      active_days (Int64), first_active, last_active (datetime64 days),
      app_<id> per app (Float64 minutes, 0 when unused).
    """
    ids = pd.DataFrame({"student_id": pd.Series(student_ids, dtype="string").drop_duplicates()})
    wide = app_minutes_wide(app_minutes, apps)
    frame = (
        ids.merge(roster.astype({"student_id": "string"}), on="student_id", how="left", validate="1:1")
        .merge(types, on="student_id", how="left", validate="1:1")
        .merge(activity.astype({"student_id": "string"}), on="student_id", how="left", validate="1:1")
        .merge(wide, on="student_id", how="left", validate="1:1")
    )
    minutes = [*app_columns(apps), "total_minutes"]
    frame = frame.assign(
        school_id=frame["school_id"].astype("string"),
        grade=frame["grade"].astype("string"),
        type=frame["type"].astype("Int64"),
        score=frame["score"].astype("Float64"),
        performance=performance_band(frame["score"].astype("float64"), bands),
        active_days=frame["active_days"].fillna(0).astype("Int64"),
        first_active=pd.to_datetime(frame["first_active"]),
        last_active=pd.to_datetime(frame["last_active"]),
        **{c: frame[c].fillna(0.0).astype("Float64") for c in minutes},
    )
    order = [
        "student_id", "school_id", "grade", "type", "score", "performance",
        "total_minutes", "active_days", "first_active", "last_active", *app_columns(apps),
    ]
    return frame[order].sort_values("student_id", ignore_index=True)
