"""Recommendations: which software a student with assessments should use more, and how sure
we are. Pure computations on frames; jobs/recommendations.py reads and writes.

Design (the README's "Recommendations" explains it for analysts):
  1. One row per type 1 student, cut at the assessment it explains: the target is the
     student's latest assessment score this year; the prior score is the assessment before
     it this year, else the latest earlier-year average. Every usage feature counts only days
     before the target assessment: minutes per app in the `window_days` before it ("window"),
     minutes per app earlier in the year ("earlier"), active days, and the weekly trend.
  2. Gate on what usage adds: the baseline is a ridge model of prior score + school + grade;
     the candidates add the usage features (ridge, and gradient boosting); every fit learns
     from at most TRAIN_MAX_STUDENTS students (training_sample), every student is scored, and a
     candidate that cannot pass or cannot be chosen is not cross-validated on every fold (screen).
     A candidate passes when its MAE is at least GATE_MARGIN below the baseline's and below
     it in GATE_FOLD_SHARE of the folds. The design: a time split (fit on each student's
     assessment before the latest, score the latest) when the history allows it
     (time_split_rows), else 5 folds grouped by school.
  3. One estimate per app: least squares of the target on every app's window hours,
     adjusted for earlier hours of every app, prior score, grade and school (school fixed
     effects), standard errors clustered by school, intervals widened for the number of apps
     tested (Bonferroni, t with schools - 1 degrees of freedom). An app is resolved when it
     has enough users, overlap, and a corrected interval that excludes 0.
  4. A student is recommended a resolved app with a positive effect only: raise its window
     minutes to the median of the next band's users, gain = effect x extra hours (with the
     interval), over the next `window_days` days. Nothing else fills a slot; every type 1
     student without a recommendation gets a reason.
The assumption: given prior score, earlier usage, school and grade, which students use an
app more is unrelated to what else drives their score. A correlational design with controls
is at most "promising" evidence (the ESSA tiers): every row and report line says so.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.metrics import mean_absolute_error, r2_score
from sklearn.model_selection import GroupKFold, KFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler
from threadpoolctl import threadpool_limits

from analytics.scoring import (
    GATE_FAILED, RESOLVED, TOO_SMALL, assessment_rows, peer_medians, pre, score_students, usage_columns, usage_features, win,
)

GATE_MARGIN = 0.02  # a candidate's MAE must be at least 2% below the baseline's ...
GATE_FOLD_SHARE = 0.6  # ... and below it in at least 3 folds of 5
FOLDS = 5
MIN_STUDENTS = 200  # fewer type 1 students: no model basis (districts.yaml: recommend_min_students)
MIN_SCHOOLS = 6  # fewer schools: no clustered interval to trust (recommend_min_schools)
MIN_USERS = 30  # an app's effect rests on at least this many users (recommend_min_users)
MIN_OVERLAP = 0.5  # share of an app's users whose school and prior-score third hold other amounts of use
ALPHA = 0.05  # intervals are 95%; the corrected ones jointly over the apps tested
THREADS = 1  # BLAS and OpenMP threads while fitting and scoring, unless the caller owns more cores (threads=)
TRAIN_MAX_STUDENTS = 100_000  # every fit learns from at most this many students (a hash sample); all are scored
BOOSTING_MAX_ROWS = 20_000  # the trees learn from at most this many rows of a fold (all rows are scored)
BASELINE, USAGE_RIDGE, USAGE_BOOSTING = "baseline_ridge", "usage_ridge", "usage_boosting"


CONTROLS = ["prior", "prior_year", "prior_source", "school_id", "grade"]


# --- 1. features cut at the assessment: analytics/scoring.py -------------------------------

def training_sample(student_ids: pd.Index, cap: int = TRAIN_MAX_STUDENTS) -> np.ndarray:
    """Which students the fits learn from (a boolean mask over `student_ids`): all of them up
    to `cap`, else the `cap` with the smallest 64-bit hash of their student_id (pandas'
    hash_pandas_object, fixed key). Deterministic, independent of school, score and use, and
    stable from night to night: a student in the sample stays in it while the district's
    students stay the same; every school keeps about its share of students."""
    keep = np.ones(len(student_ids), dtype=bool)
    if len(student_ids) <= cap:
        return keep
    hashes = pd.util.hash_pandas_object(pd.Series(student_ids.astype(str), dtype="object"), index=False).to_numpy()
    keep[:] = False
    keep[np.argsort(hashes, kind="stable")[:cap]] = True
    return keep


# --- 2. the gate: what usage adds over prior score, school and grade ---------------------

def _controls() -> list[tuple]:
    return [
        ("prior", Pipeline([("impute", SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)),
                            ("scale", StandardScaler())]), ["prior", "prior_year"]),
        ("school_grade", OneHotEncoder(handle_unknown="ignore", sparse_output=False),
         ["school_id", "grade", "prior_source"]),
    ]


class GcvRidge(RegressorMixin, BaseEstimator):
    """Ridge regression with the penalty chosen by leave-one-out error over `alphas`.

    What scikit-learn's RidgeCV computes for dense data, in a form whose cost per alpha is
    linear in the rows: one eigendecomposition of the centred X'X gives, for every alpha, the
    coefficients and the leverages (the hat matrix's diagonal), hence the exact leave-one-out
    residuals e_i / (1 - h_ii). RidgeCV recomputes a rows x features x features product per
    alpha in that case (its "cov" mode), which took ~3 s a fit at 80,000 rows x 190 columns.
    """

    def __init__(self, alphas=(0.1, 1.0, 10.0)):
        self.alphas = alphas

    def fit(self, X, y):
        X = np.asarray(X, dtype="float64")
        y = np.asarray(y, dtype="float64")
        x_mean, y_mean = X.mean(axis=0), y.mean()
        Xc, yc = X - x_mean, y - y_mean
        eigvals, V = np.linalg.eigh(Xc.T @ Xc)
        eigvals = np.clip(eigvals, 0.0, None)
        Z = Xc @ V  # the rows in the eigenbasis
        Zy = Z.T @ yc
        Z2 = Z * Z
        best = None
        for alpha in self.alphas:
            shrink = 1.0 / (eigvals + alpha)
            fitted = Z @ (shrink * Zy)
            leverage = Z2 @ shrink + 1.0 / len(y)  # + the intercept's share
            loo = (yc - fitted) / np.maximum(1.0 - leverage, 1e-12)
            error = float(np.mean(loo * loo))
            if best is None or error < best[0]:
                best = (error, alpha, shrink)
        _, self.alpha_, shrink = best
        self.coef_ = V @ (shrink * Zy)
        self.intercept_ = y_mean - x_mean @ self.coef_
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X):
        return np.asarray(X, dtype="float64") @ self.coef_ + self.intercept_


def candidate_models(apps: Sequence[str], random_state: int = 0) -> dict[str, Pipeline]:
    """The baseline and the usage models compared for a district, by name."""
    used = usage_columns(apps)
    alphas = np.logspace(-2, 4, 13)
    return {
        BASELINE: Pipeline([("columns", ColumnTransformer(_controls())), ("model", GcvRidge(alphas=alphas))]),
        USAGE_RIDGE: Pipeline([
            ("columns", ColumnTransformer([*_controls(), ("usage", StandardScaler(), used)])),
            ("model", GcvRidge(alphas=alphas)),
        ]),
        USAGE_BOOSTING: Pipeline([
            ("columns", ColumnTransformer([
                ("prior", SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                 ["prior", "prior_year"]),
                ("school_grade", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
                 ["school_id", "grade", "prior_source"]),
                ("usage", "passthrough", used),
            ])),
            ("model", HistGradientBoostingRegressor(
                max_iter=100, learning_rate=0.1, max_leaf_nodes=15, min_samples_leaf=20,
                l2_regularization=1.0, random_state=random_state,
            )),
        ]),
    }


def model_frame(features: pd.DataFrame, apps: Sequence[str]) -> pd.DataFrame:
    """The columns the models read, school and grade as text (missing as "unknown")."""
    frame = features[[*CONTROLS, *usage_columns(apps)]].copy()
    for column in ("school_id", "grade", "prior_source"):
        frame[column] = frame[column].astype("object").where(frame[column].notna(), "unknown").astype(str)
    return frame


@dataclass(frozen=True)
class Score:
    algorithm: str
    cv_mae: float  # NaN when the model was not scored on every fold (stopped)
    cv_r2: float
    fold_maes: tuple[float, ...]  # the folds it was scored on, in order
    design: str = "grouped_cv"  # time_split, grouped_cv, or shuffled_cv (fewer than FOLDS schools known)
    stopped: str = ""  # why it was not scored on every fold: CANNOT_PASS or SCREENED_OUT, with the figures


CANNOT_PASS = "cannot pass the gate"
SCREENED_OUT = "screened out"


def _score(name: str, y: np.ndarray, predicted: np.ndarray, parts, design: str) -> Score:
    maes = tuple(mean_absolute_error(y[p], predicted[p]) for p in parts)
    return Score(name, mean_absolute_error(y, predicted), r2_score(y, predicted), maes, design)


def _passes(score: Score, base: Score, margin: float = GATE_MARGIN) -> bool:
    """The gate: MAE at least `margin` below the baseline's, and below it in GATE_FOLD_SHARE of the folds."""
    if score.stopped or len(score.fold_maes) != len(base.fold_maes):
        return False
    improvement = 1 - score.cv_mae / base.cv_mae if base.cv_mae > 0 else 0.0
    wins = sum(m < b for m, b in zip(score.fold_maes, base.fold_maes))
    return improvement >= margin and wins >= int(np.ceil(GATE_FOLD_SHARE * len(base.fold_maes)))


def cross_validate(features: pd.DataFrame, apps: Sequence[str], models: Mapping[str, Pipeline],
                   random_state: int = 0, *, screen: bool = True) -> dict[str, Score]:
    """Out-of-fold MAE and R² of each model on the same folds: grouped by school when at
    least FOLDS schools are known, else shuffled. `models` starts with the baseline; the
    candidates follow, cheapest first.

    With `screen`, a candidate is not fitted on folds that cannot change the outcome:
      - it stops as soon as it is not better than the baseline in so many folds that it can
        no longer be better in GATE_FOLD_SHARE of them (it fails the gate whatever follows:
        exact, the gate's decision is the same as without screening);
      - once a candidate has passed the gate, a later one is scored on the first fold only,
        and goes on to the other folds only when its first fold's MAE is below that of the
        best candidate that passed (else it is SCREENED_OUT: a candidate has passed, so the
        gate's decision stands; only which passing candidate is named could differ).
    A stopped model has cv_mae and cv_r2 NaN and the folds it was scored on."""
    X, y = model_frame(features, apps), features["target"].to_numpy(dtype="float64")
    schools = features["school_id"]
    design = "grouped_cv" if schools.notna().all() and schools.nunique() >= FOLDS else "shuffled_cv"
    if design == "grouped_cv":
        splits = list(GroupKFold(n_splits=FOLDS).split(X, y, schools.astype(str).to_numpy()))
    else:
        splits = list(KFold(n_splits=min(FOLDS, len(X)), shuffle=True, random_state=random_state).split(X))
    names = list(models)
    if names[0] != BASELINE:
        raise ValueError(f"cross_validate: the first model must be {BASELINE!r}; got {names}")
    needed = int(np.ceil(GATE_FOLD_SHARE * len(splits)))
    scores: dict[str, Score] = {}
    best_passing: tuple[str, float] | None = None  # (name, first fold's MAE) of the best candidate that passed
    for name, model in models.items():
        predicted = np.empty(len(y))
        maes: list[float] = []
        stopped = ""
        for fold, (train, test) in enumerate(splits):
            train = _rows_to_learn(name, train, random_state)
            predicted[test] = clone(model).fit(X.iloc[train], y[train]).predict(X.iloc[test])
            maes.append(mean_absolute_error(y[test], predicted[test]))
            if name == BASELINE or not screen:
                continue
            losses = sum(m >= b for m, b in zip(maes, scores[BASELINE].fold_maes))
            if losses > len(splits) - needed:
                stopped = (f"{CANNOT_PASS}: not better than the baseline in {losses} of its first {fold + 1} folds "
                           f"(needs better in {needed} of {len(splits)}); fold MAEs "
                           f"{', '.join(f'{m:.2f}' for m in maes)}")
                break
            if fold == 0 and best_passing is not None and maes[0] >= best_passing[1]:
                stopped = (f"{SCREENED_OUT} after its first fold: MAE {maes[0]:.2f}, not below "
                           f"{best_passing[0]}'s {best_passing[1]:.2f} there ({best_passing[0]} passed the gate)")
                break
        if stopped:
            scores[name] = Score(name, float("nan"), float("nan"), tuple(maes), design, stopped)
            continue
        scores[name] = _score(name, y, predicted, [test for _, test in splits], design)
        if name != BASELINE and _passes(scores[name], scores[BASELINE]) and \
                (best_passing is None or scores[name].fold_maes[0] < best_passing[1]):
            best_passing = (name, scores[name].fold_maes[0])
    return scores


def _rows_to_learn(name: str, train: np.ndarray, random_state: int) -> np.ndarray:
    """The training rows a model learns from: all of them, except that the trees learn from a
    random BOOSTING_MAX_ROWS of a large fold (their error hardly moves past that; the time
    does, ~7 s a fit at 80,000 rows x 80 usage columns)."""
    if name != USAGE_BOOSTING or len(train) <= BOOSTING_MAX_ROWS:
        return train
    rng = np.random.default_rng(random_state)
    return np.sort(rng.choice(train, BOOSTING_MAX_ROWS, replace=False))


def time_split_rows(students: pd.DataFrame, assessments: pd.DataFrame, usage: pd.DataFrame, apps: Sequence[str],
                    latest: pd.DataFrame, *, window_days: int, year_start: date,
                    min_students: int) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """The rows of a time split, or (None, None) when the history does not allow one.

    Fit rows: each student's assessment before the latest, cut there; scored rows: the
    latest. Like is compared with like: on both sides the prior is this year's previous
    assessment (an earlier-year average means something else to a model), and the fit rows'
    prior had use before it too, at least half as much per student as the fit rows
    themselves (when the first assessment came before any use, its score carries no effect
    of use while later ones do, and a model fitted across that change fails real effects).
    Both sides need `min_students` rows and scored rows FOLDS schools."""
    earlier = usage_features(assessment_rows(students, assessments, back=1), usage, apps,
                             window_days=window_days, year_start=year_start)
    earlier = earlier.loc[earlier["prior_source"] == "assessment"]
    later = latest.loc[latest["prior_source"] == "assessment"]
    if min(len(earlier), len(later)) < min_students or later["school_id"].nunique() < FOLDS:
        return None, None
    before_prior = usage_features(assessment_rows(students, assessments, back=2), usage, apps,
                                  window_days=window_days, year_start=year_start)
    window = [win(a) for a in apps]
    used_then = before_prior[window].sum(axis=1).reindex(earlier.index).fillna(0).mean()
    used_now = earlier[window].sum(axis=1).mean()
    if used_now <= 0 or used_then < 0.5 * used_now:
        return None, None
    return earlier, later


def backtest(earlier: pd.DataFrame, latest: pd.DataFrame, apps: Sequence[str],
             models: Mapping[str, Pipeline]) -> dict[str, Score]:
    """Time split: fit each model on the earlier assessments (features cut before each),
    score it on the latest ones. Fold figures: the latest rows split into FOLDS groups of
    schools (or of students when there are fewer schools)."""
    Xa, ya = model_frame(earlier, apps), earlier["target"].to_numpy(dtype="float64")
    Xb, yb = model_frame(latest, apps), latest["target"].to_numpy(dtype="float64")
    groups = latest["school_id"].astype(str).to_numpy() if latest["school_id"].nunique() >= FOLDS \
        else np.arange(len(latest))
    parts = [test for _, test in GroupKFold(n_splits=FOLDS).split(Xb, yb, groups)]
    scores = {}
    for name, model in models.items():
        learn = _rows_to_learn(name, np.arange(len(ya)), 0)
        predicted = clone(model).fit(Xa.iloc[learn], ya[learn]).predict(Xb)
        scores[name] = _score(name, yb, predicted, parts, "time_split")
    return scores


def gate(scores: Mapping[str, Score], margin: float = GATE_MARGIN, *,
         sample: str = "") -> tuple[str | None, dict[str, str]]:
    """The best candidate that clears the gate against the baseline (or None), and a verdict
    for every model naming both figures (a stopped one: why, with its folds' figures).
    `sample` says which students the figures are from, when not all (training_sample)."""
    base = scores[BASELINE]
    how = {"time_split": "a time split (fit on each student's earlier assessment, scored on the latest)",
           "grouped_cv": f"{len(base.fold_maes)} folds grouped by school",
           "shuffled_cv": f"{len(base.fold_maes)} shuffled folds"}[base.design] + (f", {sample}" if sample else "")
    verdicts = {BASELINE: f"baseline: prior score + school + grade, MAE {base.cv_mae:.2f} on {how}"}
    passing = []
    for name, s in scores.items():
        if name == BASELINE:
            continue
        if s.stopped:
            verdicts[name] = (f"{'fails the gate' if s.stopped.startswith(CANNOT_PASS) else 'not chosen'}: "
                              f"{s.stopped}; baseline fold MAEs {', '.join(f'{m:.2f}' for m in base.fold_maes)}, "
                              f"on {how}")
            continue
        improvement = 1 - s.cv_mae / base.cv_mae if base.cv_mae > 0 else 0.0
        wins = sum(m < b for m, b in zip(s.fold_maes, base.fold_maes))
        needed = int(np.ceil(GATE_FOLD_SHARE * len(s.fold_maes)))
        ok = improvement >= margin and wins >= needed
        verdicts[name] = (
            f"{'passes' if ok else 'fails'} the gate: MAE {s.cv_mae:.2f} vs baseline {base.cv_mae:.2f} "
            f"({improvement:+.1%}, needs at least {margin:.0%} better), better in {wins} of "
            f"{len(s.fold_maes)} folds (needs {needed}), on {how}"
        )
        if ok:
            passing.append(name)
    best = min(passing, key=lambda n: (scores[n].cv_mae, n)) if passing else None
    if best:
        verdicts[best] = "chosen: " + verdicts[best]
    return best, verdicts


# --- 3. one estimate per app ---------------------------------------------------------------

def adjusted_effects(features: pd.DataFrame, apps: Sequence[str], *, min_users: int = MIN_USERS,
                     alpha: float = ALPHA) -> pd.DataFrame:
    """Points of the target per extra hour of each app in the window before the assessment,
    adjusted for every app's earlier use (hours per week before the window), the prior score
    (median-imputed, with a missing flag; its slope free by where it came from), grade and
    school (fixed effects), by least squares.

    Standard errors are clustered by school (CR1), t with schools - 1 degrees of freedom.
    Output, one row per app: app, effect, std_error, ci95_low/ci95_high (the app alone),
    ci_low/ci_high (corrected: jointly 95% over the `tested` apps, Bonferroni), p_adjusted,
    students (users in the window), overlap (share of users whose school and prior-score
    third hold students with a different amount of use), status (why it is or is not resolved), tested.
    """
    apps = list(apps)
    hours_now = features[[win(a) for a in apps]].to_numpy(dtype="float64") / 60
    hours_before = features[[pre(a) for a in apps]].to_numpy(dtype="float64") / 60
    users = (hours_now > 0).sum(axis=0)
    overlap = _overlap(features, hours_now)
    tested = (users >= min_users) & (overlap >= MIN_OVERLAP)
    prior = features["prior"].to_numpy(dtype="float64")
    missing = np.isnan(prior)
    prior = np.where(missing, np.nanmedian(prior) if (~missing).any() else 0.0, prior)
    grade = pd.get_dummies(features["grade"].astype("object").fillna("unknown").astype(str), drop_first=True,
                           dtype="float64").to_numpy()
    source = pd.get_dummies(features["prior_source"].astype(str), drop_first=True, dtype="float64").to_numpy()
    second = features["prior_year"].to_numpy(dtype="float64") if "prior_year" in features else np.full(len(prior), np.nan)
    second_missing = np.isnan(second)
    second = np.where(second_missing, np.nanmedian(second) if (~second_missing).any() else 0.0, second)
    X = np.hstack([hours_now, hours_before, prior[:, None], missing[:, None].astype("float64"), grade,
                   source, source * prior[:, None],  # a prior from this year's assessment weighs differently
                   (second * ~second_missing)[:, None], second_missing[:, None].astype("float64")])
    y = features["target"].to_numpy(dtype="float64")
    school = pd.factorize(features["school_id"].astype("object").fillna("unknown"))[0]
    G = int(school.max()) + 1 if len(school) else 0

    estimate = np.full(len(apps), np.nan)
    se = np.full(len(apps), np.nan)
    if G >= 2 and len(y) > X.shape[1] + G:
        Xd, yd = _demean(X, school, G), _demean(y[:, None], school, G)[:, 0]
        keep = Xd.std(axis=0) > 1e-9  # apps no one used, a grade alone in a school...
        Xk = Xd[:, keep]
        beta, *_ = np.linalg.lstsq(Xk, yd, rcond=None)
        u = yd - Xk @ beta
        bread = np.linalg.pinv(Xk.T @ Xk)
        sums = np.zeros((G, Xk.shape[1]))
        np.add.at(sums, school, Xk * u[:, None])
        n, k = Xk.shape
        factor = G / (G - 1) * (n - 1) / max(n - k - G, 1)
        V = factor * bread @ (sums.T @ sums) @ bread
        where = np.flatnonzero(keep)
        for j in range(len(apps)):
            if keep[j]:
                col = int(np.searchsorted(where, j))
                estimate[j], se[j] = beta[col], np.sqrt(max(V[col, col], 0.0))
    tested &= np.isfinite(estimate)
    m = max(int(tested.sum()), 1)
    df = max(G - 1, 1)
    t95 = stats.t.ppf(1 - alpha / 2, df)
    t_corrected = stats.t.ppf(1 - alpha / (2 * m), df)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = 2 * stats.t.sf(np.abs(estimate / se), df)
    out = pd.DataFrame({
        "app": apps, "effect": estimate, "std_error": se,
        "ci95_low": estimate - t95 * se, "ci95_high": estimate + t95 * se,
        "ci_low": estimate - t_corrected * se, "ci_high": estimate + t_corrected * se,
        "p_adjusted": np.minimum(p * m, 1.0), "students": users, "overlap": overlap, "tested": tested,
    })
    out["status"] = [_status(r, min_users) for r in out.itertuples()]
    return out


def _demean(values: np.ndarray, group: np.ndarray, groups: int) -> np.ndarray:
    sums = np.zeros((groups, values.shape[1]))
    np.add.at(sums, group, values)
    counts = np.bincount(group, minlength=groups)[:, None]
    return values - (sums / counts)[group]


def _overlap(features: pd.DataFrame, hours: np.ndarray) -> np.ndarray:
    """Per app: the share of its users whose stratum (school x prior-score third, missing
    prior its own third) also holds students with a different amount of use in the window
    (non-users or other doses): the users the adjusted comparison can rest on."""
    prior = features["prior"].astype("float64")
    third = pd.qcut(prior.rank(method="first"), 3, labels=False) if prior.notna().sum() >= 3 else prior * 0
    stratum = pd.factorize(
        features["school_id"].astype("object").fillna("unknown").astype(str) + "|" + third.fillna(-1).astype(str)
    )[0]
    shares = np.zeros(hours.shape[1])
    for j in range(hours.shape[1]):
        h = pd.Series(hours[:, j])
        by = h.groupby(stratum)
        varies = (by.transform("max") > by.transform("min")).to_numpy()
        users = hours[:, j] > 0
        shares[j] = (users & varies).sum() / users.sum() if users.any() else 0.0
    return shares


def _status(row, min_users: int) -> str:
    if row.students < min_users:
        return f"too few users ({row.students} < {min_users})"
    if row.overlap < MIN_OVERLAP:
        return (f"no overlap: {row.overlap:.0%} of its users have comparable students who used it less "
                f"(needs {MIN_OVERLAP:.0%})")
    if not np.isfinite(row.effect):
        return "not estimable"
    if row.ci_low > 0:
        return RESOLVED
    if row.ci_high < 0:
        return "resolved: lower scores"
    return "unresolved: corrected interval includes 0"


# --- 4. what each student should use more --------------------------------------------------

@dataclass
class Outcome:
    """What one district's recommendations computed."""
    students: int
    design: str  # time_split | grouped_cv | shuffled_cv | none
    scores: dict[str, Score] = field(default_factory=dict)
    verdicts: dict[str, str] = field(default_factory=dict)
    chosen: str | None = None
    effects: pd.DataFrame | None = None
    picks: pd.DataFrame = field(default_factory=pd.DataFrame)
    reasons: pd.Series = field(default_factory=lambda: pd.Series(dtype="object"))
    district_reason: str | None = None
    features: pd.DataFrame | None = None  # the latest assessments' rows, cut at each
    trained_on: int = 0  # students the fits learned from (all of them up to train_max_students)
    medians: pd.DataFrame | None = None  # the bands' median window minutes of each resolved app (scored with)


def recommend(students: pd.DataFrame, assessments: pd.DataFrame, usage: pd.DataFrame, apps: Sequence[str], *,
              window_days: int, year_start: date, min_students: int = MIN_STUDENTS, min_schools: int = MIN_SCHOOLS,
              min_users: int = MIN_USERS, random_state: int = 0, train_max_students: int = TRAIN_MAX_STUDENTS,
              threads: int = THREADS) -> Outcome:
    """The whole method for one district (see the module docstring). Every fit (the gate's
    models and the per-app effects) learns from training_sample(`train_max_students`);
    every type 1 student is scored and gets a recommendation or a reason. BLAS and OpenMP
    use at most `threads` threads throughout (features, fits, scoring, effects).

    Reproducible: `apps` are used in sorted order (the features' columns, hence every fit,
    do not follow the order the district lists them in), and every computation follows the
    rows' key order (students by student_id, sums in key order), not the order the frames
    came in: the same rows in any order give bit-identical output."""
    apps = sorted(apps)
    with threadpool_limits(limits=max(int(threads), 1)):
        return _recommend(students, assessments, usage, apps, window_days=window_days, year_start=year_start,
                          min_students=min_students, min_schools=min_schools, min_users=min_users,
                          random_state=random_state, train_max_students=train_max_students)


def _recommend(students, assessments, usage, apps, *, window_days, year_start, min_students, min_schools, min_users,
               random_state, train_max_students) -> Outcome:
    latest = usage_features(assessment_rows(students, assessments), usage, apps, window_days=window_days,
                            year_start=year_start)
    n, schools = len(latest), latest["school_id"].dropna().nunique()
    outcome = Outcome(students=n, design="none", trained_on=n)
    if n < min_students or schools < min_schools:
        outcome.district_reason = TOO_SMALL
        outcome.verdicts["none"] = (f"district too small for the model basis: {n} type 1 students and {schools} "
                                    f"schools (needs {min_students} and {min_schools})")
    else:
        in_sample = training_sample(latest.index, train_max_students)
        train = latest.loc[in_sample] if not in_sample.all() else latest
        outcome.trained_on = len(train)
        sample = (f"of a sample of {len(train):,} of the {n:,} type 1 students (the smallest hashes of student_id)"
                  if len(train) < n else "")
        models = candidate_models(apps, random_state)
        earlier, later = time_split_rows(students.loc[students["student_id"].isin(train.index)] if sample else students,
                                         assessments, usage, apps, train, window_days=window_days,
                                         year_start=year_start, min_students=min_students)
        if earlier is not None:
            outcome.scores = backtest(earlier, later, apps, models)
        else:
            outcome.scores = cross_validate(train, apps, models, random_state)
        outcome.design = outcome.scores[BASELINE].design
        outcome.chosen, outcome.verdicts = gate(outcome.scores, sample=sample)
        outcome.effects = adjusted_effects(train, apps, min_users=min_users)
        if outcome.chosen is None:
            outcome.district_reason = GATE_FAILED
    if outcome.effects is not None:  # kept with the fit: a re-score suggests the same amounts
        outcome.medians = peer_medians(latest, [a for a in apps if a in set(
            outcome.effects.loc[outcome.effects["status"] == RESOLVED, "app"])])
    outcome.picks, outcome.reasons = score_students(latest, outcome.effects, apps, chosen=outcome.chosen is not None,
                                                    district_reason=outcome.district_reason, medians=outcome.medians)
    outcome.features = latest
    return outcome
