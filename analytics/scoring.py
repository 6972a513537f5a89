"""Scoring: each type 1 student's features cut at their latest assessment, and their
recommendations (or the reason for none) from a fit's per-app effects and the bands'
median use. Pure computations on frames, without scikit-learn: analytics/recommend.py fits
and calls these; a re-score (jobs/recommendations.py) calls them on the stored fit alone,
and does not pay for importing the fitting libraries.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

import numpy as np
import pandas as pd

from analytics.bands import BAND_ORDER

MIN_PEERS = 5  # a band's median use of an app needs at least this many users
TOP = 3
SCORE_CHUNK = 100_000  # students scored at a time
RESOLVED = "resolved: higher scores"  # the app_effects status a pick can name
EVIDENCE = "promising"
CAVEAT = ("an association adjusted for prior score, earlier use, school and grade, not a proven cause; "
          "each app's figure is for that app alone")

# Why a type 1 student has no recommendation.
TOO_SMALL = "district too small"
NO_USAGE = "no usage before the assessment"
GATE_FAILED = "usage did not predict scores beyond prior score, school and grade"
NO_EFFECT = "no app with a resolved effect"
AT_TARGET = "already at the suggested use of each app with a resolved effect"


# --- features cut at the assessment --------------------------------------------------------

def win(app: str) -> str:
    return f"win_{app}"


def pre(app: str) -> str:
    return f"pre_{app}"


def usage_columns(apps: Sequence[str]) -> list[str]:
    return [*(win(a) for a in apps), *(pre(a) for a in apps), "trend", "active_days"]


def assessment_rows(students: pd.DataFrame, assessments: pd.DataFrame, *, back: int = 0) -> pd.DataFrame:
    """One row per type 1 student with an assessment day `back` days before their latest
    (0: the latest; 1: the one before, for the time split). Index: student_id.

    Input `students`: student_id, school_id, grade, type, performance, prior_average (the
      latest earlier-year average, points or NaN). `assessments`: student_id, date, score,
      this school year up to the as-of day.
    Output: cutoff (the assessment day), target (mean score that day), prior (mean score of
      the assessment day before, else prior_average, else NaN), prior_source, school_id,
      grade, performance.
    """
    typed = students.loc[students["type"].eq(1).fillna(False).astype(bool)].set_index("student_id")
    days = (
        assessments.loc[assessments["student_id"].isin(typed.index)]
        .assign(date=lambda f: pd.to_datetime(f["date"]))
        # a day's mean summed in one order, whatever order the rows came in: the same bits
        .sort_values(["student_id", "date", "score"], kind="stable")
        .groupby(["student_id", "date"], sort=True)["score"].mean().reset_index()
    )
    days["back"] = days.groupby("student_id").cumcount(ascending=False)  # 0: the latest day
    here = days.loc[days["back"] == back].set_index("student_id")
    before = days.loc[days["back"] == back + 1].set_index("student_id")["score"]
    rows = pd.DataFrame(index=here.index.rename("student_id"))
    rows["cutoff"] = here["date"]
    rows["target"] = here["score"].astype("float64")
    earlier_year = typed["prior_average"].reindex(rows.index).astype("float64")
    rows["prior"] = before.reindex(rows.index).astype("float64").fillna(earlier_year)
    rows["prior_year"] = earlier_year  # a second measure of the student when the prior is an assessment
    rows["prior_source"] = np.where(before.reindex(rows.index).notna(), "assessment",
                                    np.where(earlier_year.notna(), "earlier year", "none"))
    for column in ("school_id", "grade", "performance"):
        rows[column] = typed[column].reindex(rows.index).astype("object") if column in typed else None
    return rows


def usage_features(rows: pd.DataFrame, usage: pd.DataFrame, apps: Sequence[str], *, window_days: int,
                   year_start: date, trend_weeks: int = 6) -> pd.DataFrame:
    """`rows` (from assessment_rows) with the usage features, each counted only on days
    before the row's cutoff: win_<app> (minutes in the `window_days` before it), pre_<app>
    (minutes per week earlier in the school year, before the window), active_days (days with
    use per week, from the year's start to the cutoff), trend (weekly minutes gained per week
    over the `trend_weeks` weeks before it, weeks without use as 0), used_before (any
    minutes). Rates, not totals, where the span differs: an earlier assessment's row and a
    later one's mean the same, so a model fitted on one scores the other (the time split)."""
    apps = list(apps)
    n, k = len(rows), len(apps)
    mine = usage.loc[usage["student_id"].isin(rows.index) & usage["app"].isin(apps) & (usage["minutes"] > 0)]
    who = _positions(rows.index, mine["student_id"])
    days_before = (rows["cutoff"].to_numpy()[who] - pd.to_datetime(mine["date"]).to_numpy()) // np.timedelta64(1, "D")
    keep = days_before >= 1  # strictly before the assessment day: no use after it counts
    who, days_before = who[keep], days_before[keep]
    minutes = mine["minutes"].to_numpy(dtype="float64")[keep]
    app = pd.Categorical(mine["app"], categories=apps).codes[keep]
    # Sums in key order (student, app, day), whatever order the rows came in: a float sum
    # depends on its order, and the same rows must give the same bits. Rows read in that
    # order (the job's ORDER BY) are only checked, not sorted.
    key = (who.astype("int64") * max(k, 1) + app) * 100_000 + (99_999 - days_before)
    step = np.diff(key)
    if not ((step > 0) | ((step == 0) & (np.diff(minutes) >= 0))).all():  # a repeated key: by minutes
        order = np.lexsort((minutes, key))
        who, days_before, minutes, app = who[order], days_before[order], minutes[order], app[order]
    in_window = days_before <= window_days
    window = np.bincount(who[in_window] * k + app[in_window], minutes[in_window], n * k).reshape(n, k).astype("float64")
    earlier = np.bincount(who[~in_window] * k + app[~in_window], minutes[~in_window], n * k).reshape(n, k)
    day_keys = np.unique(who.astype("int64") * 100_000 + days_before)
    active = np.bincount((day_keys // 100_000).astype("int64"), minlength=n).astype("float64")
    week = (days_before - 1) // 7  # 0: the 7 days before the assessment
    recent = week < trend_weeks
    weekly = np.bincount(who[recent] * trend_weeks + (trend_weeks - 1 - week[recent]), minutes[recent],
                         n * trend_weeks).reshape(n, trend_weeks)
    t = np.arange(trend_weeks, dtype="float64") - (trend_weeks - 1) / 2
    span = (rows["cutoff"] - pd.Timestamp(year_start)).dt.days.to_numpy(dtype="float64")  # days before the cutoff
    earlier_weeks = np.clip(span - window_days, 0, None) / 7
    earlier, active = earlier.astype("float64"), active.astype("float64")
    earlier = np.divide(earlier, earlier_weeks[:, None], out=np.zeros_like(earlier), where=earlier_weeks[:, None] > 0)
    active = np.divide(active, span / 7, out=np.zeros_like(active), where=span > 0)
    out = rows.copy()
    features = pd.DataFrame(
        np.hstack([window, earlier, (weekly @ t / (t @ t))[:, None], active[:, None]]),
        index=rows.index, columns=usage_columns(apps),
    )
    out = pd.concat([out, features], axis=1)
    out["used_before"] = np.bincount(who, minlength=n) > 0
    return out


def _positions(index: pd.Index, ids: pd.Series) -> np.ndarray:
    """The position of each of `ids` in the unique `index` (int64, -1 when absent); for
    categorical ids (the job reads usage that way: codes, not a Python string a row) through
    the categories, so no row's text is materialised."""
    if isinstance(ids.dtype, pd.CategoricalDtype):
        return index.get_indexer(ids.cat.categories).astype("int64")[ids.cat.codes.to_numpy()]
    return index.get_indexer(ids).astype("int64")

# --- what each student should use more ------------------------------------------------

def peer_medians(features: pd.DataFrame, apps: Sequence[str], bands: Sequence[str] = BAND_ORDER) -> pd.DataFrame:
    """For each band, the median window minutes of each app among the band's students who
    used it (NaN with fewer than MIN_PEERS users). Index: band; columns: apps."""
    rows = {}
    for band in bands:
        peers = features.loc[features["performance"] == band, [win(a) for a in apps]]
        used = peers.where(peers > 0)
        rows[band] = used.median().where(used.count() >= MIN_PEERS).set_axis(list(apps))
    return pd.DataFrame.from_dict(rows, orient="index")


def next_band_targets(features: pd.DataFrame, medians: pd.DataFrame, apps: Sequence[str]) -> pd.DataFrame:
    """Per student (index) and app (columns): the window minutes of the next band up's
    median user, or of the student's own band when already excellent; NaN when unknown."""
    higher = {band: BAND_ORDER[max(i - 1, 0)] for i, band in enumerate(BAND_ORDER)}
    target_band = features["performance"].map(higher)
    return medians.reindex(target_band.to_numpy()).set_axis(features.index)[list(apps)]


def effect_recommendations(features: pd.DataFrame, effects: pd.DataFrame, apps: Sequence[str], *,
                           top: int = TOP, chunk: int = SCORE_CHUNK, medians: pd.DataFrame | None = None
                           ) -> pd.DataFrame:
    """For each student, the (at most `top`) apps with a resolved positive effect whose use
    they are below the next band's median user of: suggested_minutes is that median, the gain
    is effect x extra hours with its corrected interval. Ties: lower app id. The medians are
    `medians` (peer_medians of the fit's students, kept with the fit) or, when None, the
    peer_medians of `features`; students are scored `chunk` at a time (the same rows, less
    memory).

    Output: student_id, rank, app, current_minutes, suggested_minutes, gain, gain_low, gain_high
    (sorted by student_id and rank).
    """
    good = effects.loc[effects["status"] == RESOLVED].set_index("app")
    columns = ["student_id", "rank", "app", "current_minutes", "suggested_minutes", "gain", "gain_low", "gain_high"]
    if good.empty:
        return pd.DataFrame(columns=columns)
    chosen = [a for a in apps if a in good.index]
    medians = peer_medians(features, chosen) if medians is None else medians.reindex(index=BAND_ORDER, columns=chosen)
    parts = [_picks(features.iloc[start:start + chunk], good, medians, chosen, top)[columns]
             for start in range(0, len(features), max(int(chunk), 1))]
    if not parts:
        return pd.DataFrame(columns=columns)
    return (pd.concat(parts, ignore_index=True).sort_values(["student_id", "rank"], kind="stable")
            .reset_index(drop=True))


def _picks(features: pd.DataFrame, good: pd.DataFrame, medians: pd.DataFrame, chosen: list[str],
           top: int) -> pd.DataFrame:
    """One chunk's picks, by position (no (student, app) index is built: 100,000 students x
    40 apps took seconds that way): largest gain first, ties by lower app id."""
    current = features[[win(a) for a in chosen]].to_numpy(dtype="float64")
    targets = next_band_targets(features, medians, chosen).to_numpy(dtype="float64")
    with np.errstate(invalid="ignore"):
        extra = np.where(targets > current, (targets - current) / 60, np.nan)
    eligible = features["used_before"].to_numpy(dtype=bool)
    who, which = np.nonzero(eligible[:, None] & ~np.isnan(extra))  # row by row, apps in `chosen` order
    hours = extra[who, which]
    gain = hours * good["effect"].reindex(chosen).to_numpy(dtype="float64")[which]
    order = np.lexsort((_ranks(pd.Index(chosen))[which], -gain, _ranks(features.index)[who]))
    who, which, hours, gain = who[order], which[order], hours[order], gain[order]
    first = np.r_[True, who[1:] != who[:-1]] if len(who) else np.array([], dtype=bool)
    rank = np.arange(len(who)) - np.maximum.accumulate(np.where(first, np.arange(len(who)), 0)) + 1
    keep = rank <= top
    who, which, hours, gain, rank = who[keep], which[keep], hours[keep], gain[keep], rank[keep]
    return pd.DataFrame({
        "student_id": features.index.take(who), "app": pd.Index(chosen).take(which), "extra": hours, "gain": gain,
        "gain_low": hours * good["ci_low"].reindex(chosen).to_numpy(dtype="float64")[which],
        "gain_high": hours * good["ci_high"].reindex(chosen).to_numpy(dtype="float64")[which],
        "rank": rank.astype("int64"), "current_minutes": current[who, which], "suggested_minutes": targets[who, which],
    })


def _ranks(index: pd.Index) -> np.ndarray:
    """Each label's position in the sorted labels (code-point order for text)."""
    ranks = np.empty(len(index), dtype="int64")
    ranks[index.argsort(kind="stable")] = np.arange(len(index))
    return ranks


def reasons(features: pd.DataFrame, picks: pd.DataFrame, *, district_reason: str | None,
            effects: pd.DataFrame | None) -> pd.Series:
    """Why each type 1 student without a recommendation has none (index: student_id)."""
    without = features.index.difference(pd.Index(picks["student_id"].unique()))
    out = pd.Series(index=without, dtype="object", name="reason")
    if district_reason:
        out[:] = district_reason
        return out
    no_usage = ~features["used_before"].reindex(without).to_numpy()
    resolved = effects is not None and (effects["status"] == RESOLVED).any()
    out[:] = np.where(no_usage, NO_USAGE, AT_TARGET if resolved else NO_EFFECT)
    return out


PICK_COLUMNS = ["student_id", "rank", "app", "current_minutes", "suggested_minutes", "gain", "gain_low", "gain_high"]


def score_students(features: pd.DataFrame, effects: pd.DataFrame | None, apps: Sequence[str], *, chosen: bool,
                   district_reason: str | None, medians: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.Series]:
    """Every type 1 student's recommendations, or the reason for none, from fitted per-app
    effects; nothing is fitted. The full run calls it on the fit it just made, a re-score on
    the stored fit (app_effects and the gate's verdict), so both give the same rows.

    Input `features`: index student_id; performance (band); used_before (any minutes before
      the assessment); win_<app> (minutes in the window before the assessment) for every app
      whose status is `resolved: higher scores` (other columns are ignored). `effects`: app,
      effect, ci_low, ci_high (points per extra hour), status; None when nothing was fitted.
      `chosen`: a usage model passed the gate; `district_reason`: why nobody gets one.
      `medians`: the bands' median window minutes of each resolved app (peer_medians of the
      fit's students: index band, columns apps), None to take them from `features`. A
      re-score passes the fit's, so a student's rows depend on their own features and the
      fit alone, and any subset of the students is scored as the whole district would be.
    Output: (picks: student_id, rank, app, current_minutes, suggested_minutes (minutes),
      gain, gain_low, gain_high (points), sorted by student_id and rank; reasons: index
      student_id, the reason of each student without a pick).
    """
    picks = (effect_recommendations(features, effects, apps, medians=medians) if chosen and effects is not None
             else pd.DataFrame(columns=PICK_COLUMNS))
    return picks, reasons(features, picks, district_reason=district_reason, effects=effects)


def period(as_of: date, window_days: int) -> tuple[date, date]:
    """The days a suggestion is for: the `window_days` after the as-of day."""
    return as_of + timedelta(days=1), as_of + timedelta(days=window_days)
