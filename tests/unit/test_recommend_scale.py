"""analytics/recommend.py at district scale: the training sample, the screened cross-validation,
the thread limit and compact (categorical) usage, on small frames worked out by hand; and by
simulation, that the sampled gate's figures and decision match the full-data ones."""
from datetime import date

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.dummy import DummyRegressor
from threadpoolctl import threadpool_info

from analytics import recommend, scoring
from tests.simulate import WINDOW, App, district
from tests.unit.test_recommend import APPS, YEAR_START, rows, usage

FITS: list[float] = []


class Shifted(RegressorMixin, BaseEstimator):
    """Predicts the prior score plus `shift`; records each fit."""

    def __init__(self, shift: float = 0.0):
        self.shift = shift

    def fit(self, X, y):
        FITS.append(self.shift)
        return self

    def predict(self, X):
        return X["prior"].to_numpy(dtype="float64") + self.shift


def frame(n_schools: int = 10, per_school: int = 10) -> pd.DataFrame:
    """Features whose prior is exactly the target (so Shifted(s) errs by |s| on every row)."""
    n = n_schools * per_school
    target = np.linspace(40, 90, n)
    out = pd.DataFrame({
        "prior": target, "prior_year": target, "prior_source": "assessment",
        "school_id": [f"s{i % n_schools}" for i in range(n)], "grade": "5", "target": target,
    }, index=pd.Index([f"st{i}" for i in range(n)], name="student_id"))
    for column in scoring.usage_columns(APPS):
        out[column] = 0.0
    return out


def test_a_candidate_stops_once_it_cannot_pass_the_gate():
    FITS.clear()
    models = {recommend.BASELINE: DummyRegressor(), recommend.USAGE_RIDGE: Shifted(1000.0)}
    scores = recommend.cross_validate(frame(), APPS, models)
    bad = scores[recommend.USAGE_RIDGE]
    # worse than the baseline in folds 1-3: 3 losses > 5 - 3, so it cannot be better in 3 of 5
    assert bad.fold_maes == (1000.0, 1000.0, 1000.0) and FITS.count(1000.0) == 3
    assert np.isnan(bad.cv_mae) and bad.stopped.startswith(recommend.CANNOT_PASS)
    chosen, verdicts = recommend.gate(scores)
    assert chosen is None and verdicts[recommend.USAGE_RIDGE].startswith("fails the gate: cannot pass the gate")
    full = recommend.cross_validate(frame(), APPS, models, screen=False)  # the same decision, all 5 folds
    assert full[recommend.USAGE_RIDGE].fold_maes == (1000.0,) * 5
    assert recommend.gate(full)[0] is None


def test_once_a_candidate_passed_a_later_one_worse_on_the_first_fold_is_screened_out():
    FITS.clear()
    models = {recommend.BASELINE: DummyRegressor(), recommend.USAGE_RIDGE: Shifted(0.0),
              recommend.USAGE_BOOSTING: Shifted(0.5)}
    scores = recommend.cross_validate(frame(), APPS, models)
    assert scores[recommend.USAGE_RIDGE].cv_mae == 0.0 and len(scores[recommend.USAGE_RIDGE].fold_maes) == 5
    later = scores[recommend.USAGE_BOOSTING]
    assert later.fold_maes == (0.5,) and FITS.count(0.5) == 1 and later.stopped.startswith(recommend.SCREENED_OUT)
    chosen, verdicts = recommend.gate(scores)
    assert chosen == recommend.USAGE_RIDGE
    assert verdicts[recommend.USAGE_BOOSTING].startswith(
        "not chosen: screened out after its first fold: MAE 0.50, not below usage_ridge's 0.00 there")
    assert recommend.gate(recommend.cross_validate(frame(), APPS, models, screen=False))[0] == recommend.USAGE_RIDGE


def test_a_later_candidate_better_on_the_first_fold_is_cross_validated_and_can_win():
    models = {recommend.BASELINE: DummyRegressor(), recommend.USAGE_RIDGE: Shifted(0.5),
              recommend.USAGE_BOOSTING: Shifted(-0.25)}
    scores = recommend.cross_validate(frame(), APPS, models)
    assert scores[recommend.USAGE_BOOSTING].fold_maes == (0.25,) * 5 and scores[recommend.USAGE_BOOSTING].cv_mae == 0.25
    assert recommend.gate(scores)[0] == recommend.USAGE_BOOSTING


def test_the_baseline_must_come_first():
    with pytest.raises(ValueError, match="the first model must be 'baseline_ridge'"):
        recommend.cross_validate(frame(), APPS, {recommend.USAGE_RIDGE: Shifted(0.0), recommend.BASELINE: DummyRegressor()})


def test_the_training_sample_is_everyone_up_to_the_cap():
    ids = pd.Index(["a", "b", "c"])
    assert recommend.training_sample(ids, cap=3).tolist() == [True, True, True]


def test_the_training_sample_has_the_cap_deterministic_nested_and_independent_of_order():
    ids = pd.Index([f"s{i}" for i in range(1000)])
    mask = recommend.training_sample(ids, cap=100)
    assert mask.sum() == 100
    chosen = set(ids[mask])
    shuffled = ids[np.random.default_rng(0).permutation(len(ids))]
    assert set(shuffled[recommend.training_sample(shuffled, cap=100)]) == chosen  # by id, not by position
    assert chosen < set(ids[recommend.training_sample(ids, cap=101)])  # a larger cap keeps these students
    # by a hash, not by order: the first 100 ids are not the sample
    assert chosen != set(ids[:100])


def test_categorical_usage_gives_the_same_features_as_text():
    plain = usage()
    compact = plain.assign(
        student_id=pd.Categorical(plain["student_id"], categories=["zz", "c", "b", "a"]),  # an unknown id, any order
        app=pd.Categorical(plain["app"], categories=["lexia", "ixl"]),
        date=pd.to_datetime(plain["date"]).astype("datetime64[s]"),
    )
    kw = dict(window_days=30, year_start=YEAR_START, trend_weeks=3)
    pd.testing.assert_frame_equal(scoring.usage_features(rows(), compact, APPS, **kw),
                                  scoring.usage_features(rows(), plain, APPS, **kw))


def sim(seed: int, effect: float, n: int = 1200):
    return district(seed, {"used": App(effect=effect), "other": App(), "third": App()}, n=n, schools=12)


def run(s, **kw):
    return recommend.recommend(s.students, s.assessments, s.usage, s.apps, window_days=WINDOW,
                               year_start=date(2026, 8, 1), **kw)


def test_every_fit_and_score_runs_within_the_thread_limit(monkeypatch):
    seen = []

    def watched(function):
        def call(*args, **kw):
            seen.append({pool["num_threads"] for pool in threadpool_info()})
            return function(*args, **kw)
        return call

    for name in ("usage_features", "cross_validate", "backtest", "adjusted_effects"):
        monkeypatch.setattr(recommend, name, watched(getattr(recommend, name)))
    monkeypatch.setattr(scoring, "effect_recommendations", watched(scoring.effect_recommendations))
    monkeypatch.setattr(recommend, "_rows_to_learn", watched(recommend._rows_to_learn))  # once per fit
    outcome = run(sim(0, 4.0, n=400), threads=1)
    assert outcome.chosen is not None and len(seen) > 10
    assert all(threads <= {1} for threads in seen), seen


@pytest.mark.slow
@pytest.mark.parametrize("seed, effect", [(1, 4.0), (2, 4.0), (3, 0.0), (4, 0.0)])
def test_the_sampled_gate_matches_the_full_one(seed, effect):
    """1,200 students in 12 schools, fits on a 600-student sample: the gate's decision is
    the same, and each of its figures is within its noise of the full-data one: the sampled
    MAE is a mean over 600 of the 1,200 rows, so it differs from the full one by about
    sd(|error|) x sqrt(1/600 - 1/1200), sd(|error|) ~ 0.76 MAE for normal errors; allowed 4x
    that, plus 2% of the MAE for the models fitted on half the rows."""
    s = sim(seed, effect)
    full, sampled = run(s), run(s, train_max_students=600)
    assert (full.trained_on, sampled.trained_on, sampled.students) == (1200, 600, 1200)
    assert (full.chosen is None) == (sampled.chosen is None) == (effect == 0.0)
    base_full = full.scores[recommend.BASELINE].cv_mae
    noise = 4 * 0.76 * base_full * np.sqrt(1 / 600 - 1 / 1200) + 0.02 * base_full
    assert abs(sampled.scores[recommend.BASELINE].cv_mae - base_full) < noise
    for name in (recommend.USAGE_RIDGE, recommend.USAGE_BOOSTING):  # where both were cross-validated on every fold
        if not (sampled.scores[name].stopped or full.scores[name].stopped):
            assert abs(sampled.scores[name].cv_mae - full.scores[name].cv_mae) < noise, name
    if effect:
        assert not sampled.scores[recommend.USAGE_RIDGE].stopped and not full.scores[recommend.USAGE_RIDGE].stopped
    assert "a sample of 600 of the 1,200 type 1 students" in sampled.verdicts[recommend.BASELINE]
    # every student is scored: a recommendation or a reason each, from the sample's fits
    assert sampled.picks["student_id"].nunique() + len(sampled.reasons) == 1200
    again = run(s, train_max_students=600)  # deterministic
    assert repr(again.scores) == repr(sampled.scores) and again.verdicts == sampled.verdicts  # NaN != NaN
    pd.testing.assert_frame_equal(again.effects, sampled.effects)


def test_scoring_in_chunks_gives_the_same_recommendations():
    outcome = run(sim(0, 4.0, n=400))
    assert outcome.chosen is not None and len(outcome.picks) > 100
    in_chunks = scoring.effect_recommendations(outcome.features, outcome.effects, ["used", "other", "third"],
                                                 chunk=7)  # 400 students, 7 at a time
    whole = scoring.effect_recommendations(outcome.features, outcome.effects, ["used", "other", "third"],
                                             chunk=10_000)
    pd.testing.assert_frame_equal(in_chunks, whole)
    pd.testing.assert_frame_equal(whole, outcome.picks)


def _frames_equal(left: recommend.Outcome, right: recommend.Outcome) -> None:
    """Two outcomes, bit for bit: every figure, effect, recommendation and reason."""
    assert (left.chosen, left.design, left.verdicts) == (right.chosen, right.design, right.verdicts)
    assert repr(left.scores) == repr(right.scores)  # every figure, NaN for a stopped model's
    pd.testing.assert_frame_equal(left.effects, right.effects, check_exact=True)
    pd.testing.assert_frame_equal(left.picks.reset_index(drop=True), right.picks.reset_index(drop=True),
                                  check_exact=True)
    pd.testing.assert_series_equal(left.reasons.sort_index(), right.reasons.sort_index())
    pd.testing.assert_frame_equal(left.features, right.features, check_exact=True)


def test_the_same_rows_in_any_order_and_the_apps_in_any_order_give_bit_identical_output():
    s = district(11, {"used": App(effect=4.0), "other": App(), "third": App()}, n=300, schools=8)
    rng = np.random.default_rng(3)
    usage = s.usage.assign(minutes=s.usage["minutes"] * 1.000_000_1 + 1e-3)  # fractional: sums depend on order
    extra = s.assessments.sample(frac=0.3, random_state=1).assign(score=lambda f: f["score"] * 0.97 + 0.123)
    scores = pd.concat([s.assessments, extra, extra.assign(score=extra["score"] + 1.7)], ignore_index=True)
    kw = dict(window_days=WINDOW, year_start=date(2026, 8, 1))
    first = recommend.recommend(s.students, scores, usage, s.apps, **kw)
    again = recommend.recommend(s.students.iloc[rng.permutation(len(s.students))],
                                scores.iloc[rng.permutation(len(scores))], usage.iloc[rng.permutation(len(usage))],
                                list(reversed(s.apps)), **kw)
    assert first.chosen is not None and len(first.picks)
    _frames_equal(again, first)
