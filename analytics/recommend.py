"""Recommendations: which software a student with assessments should use more.

Method (the README explains it for analysts):
  1. Features per type 1 student, from usage up to the as-of day: minutes per app in the
     student's assessment window and over the school year, the trend of weekly minutes
     (least-squares slope over the last `trend_weeks` weeks), active days, and the prior
     score average when one exists. Target: the type 1 score.
  2. Candidates: a ridge regression and a gradient-boosted tree model, each a scikit-learn
     Pipeline, scored by K-fold cross-validation (grouped by school when schools are known)
     against a DummyRegressor that predicts the mean.
  3. Gate: a model speaks only if its cross-validated MAE is at least GATE_MARGIN below the
     baseline's and it beats the baseline in at least GATE_FOLD_SHARE of the folds.
  4. With a model: raise each app's window minutes to the median of the next band's
     students who use it (never lower than now), predict, and keep the three largest
     positive gains. Without: the apps where the student is furthest below that median.
  5. Per-app effects: a linear model of the score on each app's window hours and the prior
     average, with a bootstrap interval. Associations, not causal effects.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyRegressor
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import RidgeCV
from sklearn.metrics import mean_absolute_error, r2_score
from sklearn.model_selection import GroupKFold, KFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from analytics.bands import BAND_ORDER
from analytics.most_used import ASSESSMENT, student_windows, window_minutes

GATE_MARGIN = 0.05  # the model's CV MAE must be at least 5% below the baseline's
GATE_FOLD_SHARE = 0.8  # ... and below it in at least 4 folds of 5
MIN_STUDENTS = 50  # fewer type 1 students: always peers
MIN_PEERS = 5  # a band's median of an app needs at least this many users
FOLDS = 5
TOP = 3
MIN_GAIN = 0.01  # points: smaller predicted gains are noise, not a recommendation
BASELINE, RIDGE, BOOSTING = "dummy_mean", "ridge", "gradient_boosting"


def win(app: str) -> str:
    return f"win_{app}"


def ytd(app: str) -> str:
    return f"ytd_{app}"


def student_features(
    students: pd.DataFrame,
    usage: pd.DataFrame,
    *,
    apps: Sequence[str],
    year_start: date,
    as_of: date,
    assessment_days: int,
    trend_weeks: int = 6,
) -> pd.DataFrame:
    """One row per type 1 student (index: student_id), model features and context.

    Input `students`: student_id, school_id, type, score (points), performance (band),
      latest_assessment (day), prior_average (points or NaN).
    Input `usage`: student_id, app, date (day), minutes, for the school year up to as-of.
    Output columns: win_<app> (minutes in the assessment window), ytd_<app> (minutes in
      the school year), trend (weekly minutes gained per week over the last
      `trend_weeks` weeks), active_days (days with usage), prior_average (points or NaN);
      then context not used as features: score, performance, school_id.
    """
    typed = students.loc[students["type"].eq(1).fillna(False).astype(bool)]
    windows = student_windows(
        typed.assign(last_active=pd.NaT), year_start=year_start, as_of=as_of,
        assessment_days=assessment_days, latest_days=1,
    )
    minutes = window_minutes(usage, windows, apps)
    wide = minutes.pivot_table(index="student_id", columns=["window", "app"], values="minutes", aggfunc="sum")
    index = pd.Index(typed["student_id"].astype(str), name="student_id")
    columns = {}
    for app in apps:
        columns[win(app)] = _column(wide, (ASSESSMENT, app), index)
        columns[ytd(app)] = _column(wide, ("year_to_date", app), index)
    own = usage.loc[usage["student_id"].isin(index) & (usage["minutes"] > 0)]
    days = pd.to_datetime(own["date"])
    active = own.assign(day=days).groupby("student_id")["day"].nunique()
    features = pd.DataFrame(columns, index=index).assign(
        trend=_trend(own.assign(date=days), index, as_of, trend_weeks),
        active_days=active.reindex(index).fillna(0).astype("float64"),
        prior_average=typed.set_index(index)["prior_average"].astype("float64"),
    )
    context = typed.set_index(index)[["score", "performance", "school_id"]]
    return features[feature_columns(apps)].join(context)


def _column(wide: pd.DataFrame, key: tuple[str, str], index: pd.Index) -> pd.Series:
    if key in wide.columns:
        return wide[key].reindex(index).fillna(0.0).astype("float64")
    return pd.Series(0.0, index=index)


def _trend(usage: pd.DataFrame, index: pd.Index, as_of: date, weeks: int) -> pd.Series:
    """Least-squares slope of weekly minutes against week number, weeks with no use as 0."""
    back = (pd.Timestamp(as_of) - usage["date"]).dt.days // 7  # 0: the week ending on as-of
    recent = usage.assign(week=weeks - 1 - back).loc[back < weeks]
    grid = (
        recent.pivot_table(index="student_id", columns="week", values="minutes", aggfunc="sum")
        .reindex(index=index, columns=range(weeks)).fillna(0.0).to_numpy()
    )
    t = np.arange(weeks, dtype="float64") - (weeks - 1) / 2
    return pd.Series(grid @ t / (t @ t), index=index)


def feature_columns(apps: Sequence[str]) -> list[str]:
    return [*(win(a) for a in apps), *(ytd(a) for a in apps), "trend", "active_days", "prior_average"]


def _impute_prior() -> ColumnTransformer:
    """Only the prior average can be missing: its median (and a missing flag), every other
    feature as it is. (Imputing all 80-odd columns cost more than fitting the models.)"""
    return ColumnTransformer(
        [("prior", SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
          ["prior_average"])],
        remainder="passthrough",
    )


def candidate_models(random_state: int = 0) -> dict[str, Pipeline]:
    """The models compared for a district, by name; each is a scikit-learn Pipeline."""
    return {
        BASELINE: Pipeline([("model", DummyRegressor(strategy="mean"))]),
        RIDGE: Pipeline([
            ("impute", _impute_prior()),
            ("scale", StandardScaler()),
            ("model", RidgeCV(alphas=np.logspace(-2, 4, 13))),
        ]),
        BOOSTING: Pipeline([
            ("impute", _impute_prior()),  # (its own missing-value splits fail on an all-missing column)
            ("model", HistGradientBoostingRegressor(
                max_iter=150, learning_rate=0.08, max_leaf_nodes=15, min_samples_leaf=20,
                l2_regularization=1.0, random_state=random_state,
            )),
        ]),
    }


def folds(groups: pd.Series | None, n: int, random_state: int = 0):
    """Grouped K-fold by school when at least FOLDS schools are known; else shuffled K-fold."""
    if groups is not None and groups.notna().all() and groups.nunique() >= FOLDS:
        return GroupKFold(n_splits=FOLDS), groups.to_numpy()
    return KFold(n_splits=min(FOLDS, n), shuffle=True, random_state=random_state), None


@dataclass(frozen=True)
class Score:
    algorithm: str
    cv_mae: float
    cv_r2: float
    fold_maes: tuple[float, ...]


def cross_validate(X: pd.DataFrame, y: pd.Series, groups: pd.Series | None, models: Mapping[str, Pipeline],
                   random_state: int = 0) -> dict[str, Score]:
    """Out-of-fold MAE and R² of each model, on the same folds."""
    splitter, group_values = folds(groups, len(X), random_state)
    splits = list(splitter.split(X, y, group_values))
    scores = {}
    for name, model in models.items():
        predicted = np.empty(len(y))
        fold_maes = []
        for train, test in splits:
            fitted = clone(model).fit(X.iloc[train], y.iloc[train])
            predicted[test] = fitted.predict(X.iloc[test])
            fold_maes.append(mean_absolute_error(y.iloc[test], predicted[test]))
        scores[name] = Score(name, mean_absolute_error(y, predicted), r2_score(y, predicted), tuple(fold_maes))
    return scores


def gate(scores: Mapping[str, Score]) -> tuple[str | None, dict[str, str]]:
    """The best model that clears the gate (or None), and a verdict for every model."""
    base = scores[BASELINE]
    verdicts, passing = {BASELINE: "baseline: predicts the district's mean score"}, []
    for name, s in scores.items():
        if name == BASELINE:
            continue
        improvement = 1 - s.cv_mae / base.cv_mae if base.cv_mae > 0 else 0.0
        wins = sum(m < b for m, b in zip(s.fold_maes, base.fold_maes))
        needed = int(np.ceil(GATE_FOLD_SHARE * len(s.fold_maes)))
        ok = improvement >= GATE_MARGIN and wins >= needed
        verdicts[name] = (
            f"{'passes' if ok else 'fails'} the gate: MAE {improvement:+.1%} vs baseline "
            f"(needs at least {GATE_MARGIN:.0%} better), better in {wins} of {len(s.fold_maes)} folds "
            f"(needs {needed})"
        )
        if ok:
            passing.append(name)
    best = min(passing, key=lambda n: (scores[n].cv_mae, n)) if passing else None
    if best:
        verdicts[best] = "chosen: " + verdicts[best]
    return best, verdicts


def peer_medians(features: pd.DataFrame, apps: Sequence[str], bands: Sequence[str] = BAND_ORDER) -> pd.DataFrame:
    """For each band, the median window minutes of each app among the band's students who
    used it (NaN with fewer than MIN_PEERS users). Index: band; columns: apps."""
    rows = {}
    for band in bands:
        peers = features.loc[features["performance"] == band, [win(a) for a in apps]]
        used = peers.where(peers > 0)
        medians = used.median().where(used.count() >= MIN_PEERS)
        rows[band] = medians.set_axis(list(apps))
    return pd.DataFrame.from_dict(rows, orient="index")


def next_band_targets(features: pd.DataFrame, medians: pd.DataFrame, apps: Sequence[str]) -> pd.DataFrame:
    """Per student (index) and app (columns): the window minutes of the next band up's
    median user, or of the student's own band when already excellent; NaN when unknown."""
    higher = {band: BAND_ORDER[max(i - 1, 0)] for i, band in enumerate(BAND_ORDER)}
    target_band = features["performance"].map(higher)
    return medians.reindex(target_band.to_numpy()).set_axis(features.index)[list(apps)]


def _top(gains: pd.DataFrame, current: pd.DataFrame, targets: pd.DataFrame, top: int) -> pd.DataFrame:
    """The `top` largest positive values of `gains` per student (ties: lower app id)."""
    long = gains.stack().rename("gain").reset_index()
    long.columns = ["student_id", "app", "gain"]
    long = long.loc[long["gain"] > 0]
    long = long.sort_values(["student_id", "gain", "app"], ascending=[True, False, True], kind="stable")
    long = long.assign(rank=long.groupby("student_id").cumcount() + 1).loc[lambda f: f["rank"] <= top]
    cur = current.stack().rename("current_minutes")
    tgt = targets.stack().rename("suggested_minutes")
    key = pd.MultiIndex.from_frame(long[["student_id", "app"]])
    return long.assign(
        current_minutes=cur.reindex(key).to_numpy(),
        suggested_minutes=tgt.reindex(key).to_numpy(),
    ).reset_index(drop=True)


def model_recommendations(model: Pipeline, features: pd.DataFrame, targets: pd.DataFrame,
                          apps: Sequence[str], top: int = TOP) -> pd.DataFrame:
    """Raise each app's window (and year) minutes to its target, predict, keep the largest gains.

    Output: student_id, app, gain (points), rank, current_minutes, suggested_minutes.
    """
    columns = feature_columns(apps)
    X = features[columns]
    now = model.predict(X)
    current = X[[win(a) for a in apps]].set_axis(list(apps), axis=1)
    raised = targets.where(targets > current)  # never lower than now
    gains = {}
    for app in apps:
        extra = (raised[app] - current[app]).fillna(0.0)
        if not (extra > 0).any():
            gains[app] = pd.Series(np.nan, index=X.index)
            continue
        changed = X.assign(**{win(app): X[win(app)] + extra, ytd(app): X[ytd(app)] + extra})
        gains[app] = pd.Series(model.predict(changed) - now, index=X.index).where(extra > 0)
    gain = pd.DataFrame(gains).round(6).where(lambda g: g >= MIN_GAIN)
    return _top(gain, current, raised, top)


def peer_recommendations(features: pd.DataFrame, targets: pd.DataFrame, apps: Sequence[str],
                         top: int = TOP) -> pd.DataFrame:
    """The apps where the student is furthest below the next band's median user.

    Output: student_id, app, gain (the gap in minutes, for ranking only), rank,
    current_minutes, suggested_minutes.
    """
    current = features[[win(a) for a in apps]].set_axis(list(apps), axis=1)
    gap = (targets - current).where(targets > current)
    return _top(gap, current, targets.where(targets > current), top)


def app_effects(features: pd.DataFrame, apps: Sequence[str], *, resamples: int = 200,
                random_state: int = 0) -> pd.DataFrame:
    """Change in score per extra hour of each app in the assessment window, with a bootstrap
    95% interval (students resampled `resamples` times).

    A linear model of the score on every app's window hours and the prior score average
    (imputed, with a missing flag), lightly regularised (ridge, alpha 1 on standardised
    columns). Trend and active days are left out on purpose: they are made of the same
    minutes, and would take part of each app's effect. Associations, not causal effects.
    Output: app, effect, ci_low, ci_high (points per hour), students (who used the app in
    their window).
    """
    hours = features[[win(a) for a in apps]].to_numpy() / 60
    prior = SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True).fit_transform(
        features[["prior_average"]]
    )
    X = np.hstack([hours, prior])
    y = features["score"].astype("float64").to_numpy()
    n = len(y)
    rng = np.random.default_rng(random_state)

    def per_hour(weights: np.ndarray) -> np.ndarray:
        """Ridge (alpha 1) on standardised columns, for the rows counted by `weights` (a
        resample's counts): computed from weighted sums, without copying the rows."""
        total = weights.sum()
        mean = weights @ X / total
        gram = X.T @ (X * weights[:, None]) / total - np.outer(mean, mean)
        scale = np.sqrt(np.clip(np.diag(gram), 0, None))
        scale[scale == 0] = 1.0
        y_mean = weights @ y / total
        cross = (X.T @ (weights * y) / total - mean * y_mean) / scale
        beta = np.linalg.solve(gram / np.outer(scale, scale) * total + np.eye(X.shape[1]), cross * total)
        return (beta / scale)[: len(apps)]

    effect = per_hour(np.ones(n))
    draws = np.array([per_hour(np.bincount(rng.integers(0, n, n), minlength=n).astype("float64"))
                      for _ in range(resamples)])
    low, high = np.percentile(draws, [2.5, 97.5], axis=0)
    users = (hours > 0).sum(axis=0)
    return pd.DataFrame({"app": list(apps), "effect": effect, "ci_low": low, "ci_high": high, "students": users})
