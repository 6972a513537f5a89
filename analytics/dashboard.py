"""What a district's dashboard page shows, as pure computations on the published tables' rows
(issue 21: the web pages read these; the charts and their text tables come from the same frames,
so a chart's numbers are its table's numbers).

  - students by type and band: dataframe_<id> rows (type, performance) -> one row per type
    and band, with counts; types 1-4 and "none", bands in their order and "no band";
  - use over time: usage_weekly rows -> one row per week and app, minutes and students summed
    over schools (a student in two schools counts twice; the table has no student ids);
  - app effects for a forest plot: app_effects rows -> one row per app with an estimate, its
    corrected interval and its own 95% interval, sorted by estimate, unestimated apps last.
"""
from __future__ import annotations

import pandas as pd

TYPE_LABELS = {1: "1 assessment", 2: "2 forecast", 3: "3 this year's average", 4: "4 older average"}
NO_TYPE, NO_BAND = "none", "no band"


def students_by_type_and_band(students: pd.DataFrame, bands: list[str]) -> pd.DataFrame:
    """students: type (1-4 or missing), performance (a band name or missing). Output: type
    (label), performance, students (int), one row per combination seen, in type then band order."""
    types = students["type"].map(lambda t: TYPE_LABELS.get(int(t), str(t)) if pd.notna(t) else NO_TYPE)
    band = students["performance"].where(students["performance"].notna(), NO_BAND).astype(object)
    counts = (pd.DataFrame({"type": types, "performance": band})
              .value_counts().rename("students").reset_index())
    type_order = [*TYPE_LABELS.values(), NO_TYPE]
    band_order = [*bands, NO_BAND]
    counts = counts.assign(
        _t=counts["type"].map(lambda t: type_order.index(t) if t in type_order else len(type_order)),
        _b=counts["performance"].map(lambda b: band_order.index(b) if b in band_order else len(band_order)))
    out = counts.sort_values(["_t", "_b"], ignore_index=True).drop(columns=["_t", "_b"])
    return out.astype({"students": "int64"})


def weekly_by_app(weekly: pd.DataFrame) -> pd.DataFrame:
    """weekly: week_start (date), app, students, minutes (per school). Output: week_start, app,
    students, minutes summed over schools, sorted by week then app."""
    if weekly.empty:
        return pd.DataFrame({"week_start": [], "app": [], "students": [], "minutes": []})
    out = (weekly.groupby(["week_start", "app"], sort=True)
           .agg(students=("students", "sum"), minutes=("minutes", "sum")).reset_index())
    return out.astype({"students": "int64", "minutes": "float64"})


def forest(effects: pd.DataFrame) -> pd.DataFrame:
    """effects: app, effect, ci_low, ci_high (corrected), ci95_low, ci95_high, students, status.
    Output: the same columns, apps with an estimate first by estimate (highest first), then the
    others by name; `estimated` says which."""
    out = effects.assign(estimated=effects["effect"].notna())
    shown = out.loc[out["estimated"]].sort_values(["effect", "app"], ascending=[False, True])
    rest = out.loc[~out["estimated"]].sort_values("app")
    return pd.concat([shown, rest], ignore_index=True)


def sync_days(files: pd.DataFrame, heartbeats: pd.DataFrame, month_start, days: int) -> pd.DataFrame:
    """files: school, arrived_at (UTC); heartbeats: school, seen_at. Output: one row per school
    and day of the month (day 1..days), seen (bool): a file arrived or a heartbeat was seen that
    day (UTC), for the operations page's heat map; schools sorted."""
    seen = pd.concat([files.rename(columns={"arrived_at": "at"})[["school", "at"]],
                      heartbeats.rename(columns={"seen_at": "at"})[["school", "at"]]], ignore_index=True)
    seen = seen.dropna()
    at = pd.to_datetime(seen["at"], utc=True)
    start = pd.Timestamp(month_start, tz="UTC")
    day = ((at - start).dt.days + 1)
    hits = set(zip(seen["school"], day.where((day >= 1) & (day <= days))))
    schools = sorted(set(seen["school"]))
    rows = [{"school": s, "day": d, "seen": (s, d) in hits} for s in schools for d in range(1, days + 1)]
    return pd.DataFrame(rows, columns=["school", "day", "seen"])


def monthly_volume(files: pd.DataFrame) -> pd.DataFrame:
    """files: district_id, arrived_at (UTC), bytes. Output: district_id, month (YYYY-MM), bytes, sorted."""
    if files.empty:
        return pd.DataFrame({"district_id": [], "month": [], "bytes": []})
    month = pd.to_datetime(files["arrived_at"], utc=True).dt.strftime("%Y-%m")
    out = (files.assign(month=month).groupby(["district_id", "month"], sort=True)["bytes"].sum().reset_index())
    return out.astype({"bytes": "int64"})
