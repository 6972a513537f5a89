"""analytics/recommend.py on small frames worked out by hand."""
from datetime import date

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from analytics import recommend, scoring
from analytics.recommend import Score

APPS = ("ixl", "lexia")
YEAR_START = date(2026, 8, 1)


def students():
    return pd.DataFrame({
        "student_id": ["a", "b", "c"],
        "school_id": ["s1", "s1", "s2"],
        "grade": ["3", "4", "3"],
        "type": pd.Series([1, 1, 2], dtype="Int64"),
        "score": [80.0, 60.0, 70.0],
        "performance": ["satisfactory", "needs improvement", "satisfactory"],
        "prior_average": [75.0, np.nan, 50.0],
    })


def assessments():
    return pd.DataFrame({
        "student_id": ["a", "a", "a", "b", "c"],
        "date": ["2026-11-15", "2026-11-15", "2026-10-01", "2026-10-01", "2026-10-01"],
        "score": [82.0, 78.0, 64.0, 60.0, 70.0],
    })


def usage():
    rows = [  # a, cut at 11-15: weeks before it hold 30 (11-08..11-14), 20, 10 minutes
        ("a", "ixl", "2026-11-14", 30.0), ("a", "ixl", "2026-11-05", 20.0), ("a", "ixl", "2026-10-30", 10.0),
        ("a", "lexia", "2026-11-15", 500.0),  # the assessment day itself: not before it
        ("a", "lexia", "2026-11-20", 600.0),  # after the assessment: never counted
        ("a", "lexia", "2026-09-25", 70.0),  # 51 days before: earlier in the year, not the window
        ("b", "lexia", "2026-09-30", 5.0), ("b", "lexia", "2026-08-11", 40.0),
        ("c", "ixl", "2026-09-01", 99.0),
    ]
    return pd.DataFrame(rows, columns=["student_id", "app", "date", "minutes"])


def rows(back=0):
    return scoring.assessment_rows(students(), assessments(), back=back)


def features(back=0):
    return scoring.usage_features(rows(back), usage(), APPS, window_days=30, year_start=YEAR_START, trend_weeks=3)


def test_the_target_is_the_latest_assessment_and_the_prior_the_one_before():
    r = rows()
    assert list(r.index) == ["a", "b"]  # type 1 only
    assert r.loc["a", ["target", "prior", "prior_source"]].tolist() == [80.0, 64.0, "assessment"]  # 82, 78 same day
    assert r.loc["b", "prior_source"] == "none" and np.isnan(r.loc["b", "prior"])
    assert r["cutoff"].tolist() == [pd.Timestamp("2026-11-15"), pd.Timestamp("2026-10-01")]
    earlier = rows(back=1)  # the time split's earlier rows: a's assessment of 10-01, prior her earlier-year average
    assert list(earlier.index) == ["a"]
    assert earlier.loc["a", ["target", "prior", "prior_source"]].tolist() == [64.0, 75.0, "earlier year"]


def test_every_usage_feature_stops_the_day_before_the_assessment():
    f = features()
    # a: window 10-16..11-14 holds ixl 30 + 20 + 10; lexia on and after 11-15 is not counted
    assert f.loc["a", ["win_ixl", "win_lexia"]].tolist() == [60.0, 0.0]
    # earlier in the year: a's lexia of 09-25, over the 106 - 30 = 76 days before her window, per week
    assert f.loc["a", "pre_lexia"] == pytest.approx(70.0 / (76 / 7))
    assert f.loc["b", ["win_ixl", "win_lexia"]].tolist() == [0.0, 5.0]
    assert f.loc["b", "pre_lexia"] == pytest.approx(40.0 / ((61 - 30) / 7))
    assert f.loc["a", "trend"] == pytest.approx(10.0)  # least squares through (-1,10) (0,20) (1,30)
    # active days per week from the year's start to the cutoff: a 4 days in 106, b 2 in 61
    assert f["active_days"].tolist() == pytest.approx([4 / (106 / 7), 2 / (61 / 7)])
    assert f["used_before"].tolist() == [True, True]


def test_the_trend_counts_weeks_back_from_the_cutoff():
    f = features()
    # b: 5 minutes in the week before 10-01 (week 2 of 0..2), nothing in weeks 0 and 1
    assert f.loc["b", "trend"] == pytest.approx(5 * 1 / 2)  # t = (-1, 0, 1): slope 5 / 2


def test_use_only_after_the_assessment_is_no_use():
    late = pd.DataFrame([("a", "ixl", "2026-11-16", 60.0), ("b", "lexia", "2026-10-02", 60.0)],
                        columns=["student_id", "app", "date", "minutes"])
    f = scoring.usage_features(rows(), late, APPS, window_days=30, year_start=YEAR_START)
    assert f[scoring.usage_columns(APPS)].to_numpy().sum() == 0
    assert not f["used_before"].any()


def test_gate_needs_a_margin_and_most_folds_against_the_baseline():
    base = Score(recommend.BASELINE, 10.0, 0.0, (10, 10, 10, 10, 10))
    good = Score(recommend.USAGE_RIDGE, 9.0, 0.2, (9, 9, 9, 11, 11))  # 10% better, 3 of 5 folds
    thin = Score(recommend.USAGE_BOOSTING, 9.9, 0.1, (9.9,) * 5)  # 1% better: below the margin
    best, verdicts = recommend.gate({recommend.BASELINE: base, recommend.USAGE_RIDGE: good,
                                     recommend.USAGE_BOOSTING: thin})
    assert best == recommend.USAGE_RIDGE
    assert verdicts[recommend.USAGE_RIDGE].startswith(
        "chosen: passes the gate: MAE 9.00 vs baseline 10.00 (+10.0%, needs at least 2% better), better in 3 of 5")
    assert verdicts[recommend.USAGE_BOOSTING].startswith("fails the gate: MAE 9.90 vs baseline 10.00 (+1.0%")
    assert verdicts[recommend.BASELINE].startswith("baseline: prior score + school + grade, MAE 10.00")
    lucky = Score(recommend.USAGE_RIDGE, 9.0, 0.2, (5, 10, 10, 10, 10))  # better overall, in 1 fold only
    assert recommend.gate({recommend.BASELINE: base, recommend.USAGE_RIDGE: lucky})[0] is None


def effect_frame(n=600, schools=12, seed=0, slope=2.0):
    """Hand-built rows: score = 60 + slope x window hours of ixl + school level + noise."""
    rng = np.random.default_rng(seed)
    school = rng.integers(0, schools, n)
    hours = rng.uniform(0, 3, n) * (rng.random(n) < 0.8)
    level = rng.normal(0, 5, schools)[school]
    return pd.DataFrame({
        "win_ixl": hours * 60, "win_lexia": rng.uniform(0, 120, n), "pre_ixl": rng.uniform(0, 30, n),
        "pre_lexia": rng.uniform(0, 30, n), "prior": 60 + level + rng.normal(0, 3, n),
        "prior_source": "earlier year", "school_id": [f"s{s}" for s in school], "grade": "3",
        "target": 60 + slope * hours + level + rng.normal(0, 3, n),
    })


def test_adjusted_effects_recover_a_planted_slope_and_correct_for_the_apps_tested():
    e = recommend.adjusted_effects(effect_frame(), APPS).set_index("app")
    assert e.loc["ixl", "effect"] == pytest.approx(2.0, abs=0.4)
    assert e.loc["ixl", "ci_low"] > 0 and e.loc["ixl", "status"] == "resolved: higher scores"
    assert e.loc["lexia", "ci_low"] < 0 < e.loc["lexia", "ci_high"]
    # corrected: t at 1 - 0.05 / (2 x 2 apps) with 12 - 1 degrees of freedom, against 1 - 0.05 / 2
    from scipy import stats
    ratio = (e["ci_high"] - e["effect"]) / (e["ci95_high"] - e["effect"])
    assert ratio.to_numpy() == pytest.approx([stats.t.ppf(1 - 0.0125, 11) / stats.t.ppf(0.975, 11)] * 2)
    assert e["tested"].all() and e.loc["ixl", "students"] == (effect_frame()["win_ixl"] > 0).sum()


def test_an_app_with_too_few_users_or_no_overlap_is_not_tested():
    f = effect_frame()
    f["win_lexia"] = np.where(np.arange(len(f)) < 10, 30.0, 0.0)  # 10 users
    assert recommend.adjusted_effects(f, APPS).set_index("app").loc["lexia", "status"] == "too few users (10 < 30)"
    f["win_lexia"] = np.where(f["school_id"].isin(["s0", "s1"]), 30.0, 0.0)  # whole schools use it, no one else
    status = recommend.adjusted_effects(f, APPS).set_index("app").loc["lexia", "status"]
    assert status.startswith("no overlap: 0% of its users have comparable students who used it less")


def test_recommendations_come_from_the_resolved_effect_only():
    f = pd.DataFrame({
        "win_ixl": [0.0, 60.0, 120.0, 240.0, 240.0, 240.0, 240.0, 240.0],
        "win_lexia": [0.0, 0.0, 0.0, 100.0, 100.0, 100.0, 100.0, 100.0],
        "performance": ["satisfactory", "satisfactory", "satisfactory", "excellent", "excellent", "excellent",
                        "excellent", "excellent"],
        "used_before": [True, True, False, True, True, True, True, True],
    }, index=pd.Index(list("abcdefgh"), name="student_id"))
    effects = pd.DataFrame({"app": ["ixl", "lexia"], "effect": [2.0, 5.0], "ci_low": [1.0, -1.0],
                            "ci_high": [3.0, 11.0],
                            "status": ["resolved: higher scores", "unresolved: corrected interval includes 0"]})
    picks = scoring.effect_recommendations(f, effects, APPS).set_index("student_id")
    # a and b: up to the excellent median of ixl (240 min); c used nothing before her assessment;
    # lexia's interval includes 0, so it fills no slot however large its estimate
    assert list(picks.index) == ["a", "b"] and (picks["app"] == "ixl").all()
    assert picks.loc["a", ["current_minutes", "suggested_minutes", "gain", "gain_low", "gain_high"]].tolist() == \
        [0.0, 240.0, 8.0, 4.0, 12.0]  # 4 extra hours x 2 (1 to 3) points an hour
    assert picks.loc["b", "gain"] == pytest.approx(6.0)
    why = scoring.reasons(f, picks.reset_index(), district_reason=None, effects=effects)
    assert why["c"] == scoring.NO_USAGE
    assert why["d"] == scoring.AT_TARGET


def test_candidate_models_follow_scikit_learn_conventions():
    models = recommend.candidate_models(APPS, random_state=3)
    assert set(models) == {recommend.BASELINE, recommend.USAGE_RIDGE, recommend.USAGE_BOOSTING}
    assert all(isinstance(m, Pipeline) for m in models.values())
    assert models[recommend.USAGE_BOOSTING].named_steps["model"].random_state == 3


def test_inputs_are_not_mutated():
    s, a, u = students(), assessments(), usage()
    before = (s.copy(), a.copy(), u.copy())
    recommend.recommend(s, a, u, APPS, window_days=30, year_start=YEAR_START)
    for now, then in zip((s, a, u), before):
        pd.testing.assert_frame_equal(now, then)


def test_a_small_district_gets_a_reason_for_every_student():
    out = recommend.recommend(students(), assessments(), usage(), APPS, window_days=30, year_start=YEAR_START)
    assert out.district_reason == scoring.TOO_SMALL and out.picks.empty
    assert out.reasons.to_dict() == {"a": scoring.TOO_SMALL, "b": scoring.TOO_SMALL}
    assert "2 type 1 students and 1 schools (needs 200 and 6)" in out.verdicts["none"]


def test_the_period_is_the_window_after_the_as_of_day():
    assert scoring.period(date(2026, 11, 22), 30) == (date(2026, 11, 23), date(2026, 12, 22))


def test_the_fast_ridge_chooses_the_penalty_by_exact_leave_one_out_error():
    from sklearn.linear_model import Ridge, RidgeCV

    rng = np.random.default_rng(4)
    X = rng.normal(size=(40, 3))
    y = 2 * X[:, 0] - X[:, 2] + rng.normal(size=40) + 7
    alphas = [0.01, 1.0, 30.0, 1000.0]
    fast = recommend.GcvRidge(alphas=alphas).fit(X, y)

    def loo(alpha):  # refit without each row in turn
        errors = [y[i] - Ridge(alpha=alpha).fit(np.delete(X, i, 0), np.delete(y, i)).predict(X[i:i + 1])[0]
                  for i in range(len(y))]
        return np.mean(np.square(errors))

    assert fast.alpha_ == min(alphas, key=loo)
    reference = RidgeCV(alphas=alphas).fit(X, y)
    assert fast.alpha_ == reference.alpha_
    np.testing.assert_allclose(fast.coef_, reference.coef_, atol=1e-10)
    np.testing.assert_allclose(fast.predict(X), reference.predict(X), atol=1e-10)


def scoring_frame():
    """Five excellent students (the peers of both bands here) and three satisfactory ones."""
    return pd.DataFrame({
        "performance": ["excellent"] * 5 + ["satisfactory"] * 3,
        "used_before": [True] * 7 + [False],
        "win_a": [60.0, 90.0, 120.0, 150.0, 180.0, 0.0, 120.0, 0.0],  # excellent users' median: 120
        "win_b": [30.0] * 5 + [0.0, 10.0, 0.0],  # excellent users' median: 30
        "win_c": [500.0] * 8,  # unresolved: never recommended
    }, index=pd.Index(["e1", "e2", "e3", "e4", "e5", "s1", "s2", "s3"], name="student_id"))


def fitted_effects():
    return pd.DataFrame({
        "app": ["a", "b", "c"], "effect": [6.0, 3.0, 1.0], "ci_low": [2.0, 1.0, -1.0], "ci_high": [10.0, 5.0, 3.0],
        "status": ["resolved: higher scores", "resolved: higher scores", "unresolved: corrected interval includes 0"],
    })


def test_scoring_from_fitted_effects_by_hand():
    features, effects = scoring_frame(), fitted_effects()
    before = features.copy(), effects.copy()
    picks, reasons = scoring.score_students(features, effects, ["a", "b", "c"], chosen=True, district_reason=None)
    third = 20 / 60  # s2: 10 -> 30 minutes of b
    expected = pd.DataFrame({
        "student_id": ["e1", "e2", "s1", "s1", "s2"],  # excellent: their own band's median user
        "rank": [1, 1, 1, 2, 1],
        "app": ["a", "a", "a", "b", "b"],
        "current_minutes": [60.0, 90.0, 0.0, 0.0, 10.0],
        "suggested_minutes": [120.0, 120.0, 120.0, 30.0, 30.0],
        "gain": [6.0, 3.0, 12.0, 1.5, 3 * third],  # effect x extra hours
        "gain_low": [2.0, 1.0, 4.0, 0.5, 1 * third],
        "gain_high": [10.0, 5.0, 20.0, 2.5, 5 * third],
    })
    pd.testing.assert_frame_equal(picks[expected.columns].reset_index(drop=True), expected, check_dtype=False)
    assert reasons.to_dict() == {"e3": scoring.AT_TARGET, "e4": scoring.AT_TARGET, "e5": scoring.AT_TARGET,
                                 "s3": scoring.NO_USAGE}
    pd.testing.assert_frame_equal(features, before[0])
    pd.testing.assert_frame_equal(effects, before[1])


def test_scoring_without_a_model_that_passed_gives_the_reason_to_everyone():
    picks, reasons = scoring.score_students(scoring_frame(), fitted_effects(), ["a", "b", "c"], chosen=False,
                                              district_reason=scoring.GATE_FAILED)
    assert picks.empty and list(picks.columns) == scoring.PICK_COLUMNS
    assert len(reasons) == 8 and set(reasons) == {scoring.GATE_FAILED}


def test_scoring_needs_only_the_window_minutes_of_the_resolved_apps():
    full = scoring.score_students(scoring_frame(), fitted_effects(), ["a", "b", "c"], chosen=True,
                                    district_reason=None)
    lean = scoring.score_students(scoring_frame().drop(columns=["win_c"]), fitted_effects(), ["a", "b", "c"],
                                    chosen=True, district_reason=None)
    pd.testing.assert_frame_equal(full[0], lean[0])
    pd.testing.assert_series_equal(full[1], lean[1])
