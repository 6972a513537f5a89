"""analytics/recommend.py on small frames worked out by hand."""
from datetime import date

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from analytics import recommend
from analytics.recommend import Score

APPS = ("ixl", "lexia")


def students():
    return pd.DataFrame({
        "student_id": ["a", "b", "c"],
        "school_id": ["s1", "s1", "s2"],
        "type": pd.Series([1, 1, 2], dtype="Int64"),
        "score": [80.0, 60.0, 70.0],
        "performance": ["satisfactory", "needs improvement", "satisfactory"],
        "latest_assessment": pd.to_datetime(["2026-11-15", "2026-10-01", None]),
        "prior_average": [75.0, np.nan, 50.0],
    })


def usage():
    rows = [  # a: weeks 0,1,2 before as-of 11-22 hold 10, 20, 30 minutes -> slope 10 a week
        ("a", "ixl", "2026-11-08", 10.0), ("a", "ixl", "2026-11-15", 20.0), ("a", "lexia", "2026-11-22", 30.0),
        ("b", "lexia", "2026-09-01", 40.0), ("b", "lexia", "2026-09-20", 5.0),  # b's window: 09-02..10-01
        ("c", "ixl", "2026-11-01", 99.0),
    ]
    return pd.DataFrame(rows, columns=["student_id", "app", "date", "minutes"])


def features(**kw):
    return recommend.student_features(students(), usage(), apps=APPS, year_start=date(2026, 8, 1),
                                      as_of=date(2026, 11, 22), assessment_days=30, trend_weeks=3, **kw)


def test_features_hand_worked():
    f = features()
    assert list(f.index) == ["a", "b"]  # type 1 only
    # a: window 10-17..11-15 holds ixl 10 + 20; lexia on 11-22 is after the assessment
    assert f.loc["a", ["win_ixl", "win_lexia", "ytd_ixl", "ytd_lexia"]].tolist() == [30.0, 0.0, 30.0, 30.0]
    assert f.loc["b", ["win_ixl", "win_lexia", "ytd_ixl", "ytd_lexia"]].tolist() == [0.0, 5.0, 0.0, 45.0]
    assert f.loc["a", "trend"] == pytest.approx(10.0)  # least squares through (-1,10) (0,20) (1,30)
    assert f.loc["b", "trend"] == 0.0  # no usage in the last 3 weeks
    assert f["active_days"].tolist() == [3.0, 2.0]
    assert f["prior_average"].isna().tolist() == [False, True]
    assert list(f.columns[:7]) == recommend.feature_columns(APPS)


def test_gate_needs_a_margin_and_most_folds():
    base = Score("dummy_mean", 10.0, 0.0, (10, 10, 10, 10, 10))
    good = Score("ridge", 9.0, 0.2, (9, 9, 9, 9, 11))  # 10% better, 4 of 5 folds
    thin = Score("gradient_boosting", 9.6, 0.1, (9.6,) * 5)  # 4% better: below the margin
    best, verdicts = recommend.gate({"dummy_mean": base, "ridge": good, "gradient_boosting": thin})
    assert best == "ridge"
    assert verdicts["ridge"].startswith("chosen: passes the gate: MAE +10.0% vs baseline")
    assert verdicts["gradient_boosting"].startswith("fails the gate: MAE +4.0%")
    lucky = Score("ridge", 8.0, 0.3, (5, 5, 11, 11, 8))  # 20% better on average, but 3 folds of 5
    assert recommend.gate({"dummy_mean": base, "ridge": lucky})[0] is None


def band_frame():
    # satisfactory users of ixl: 10, 20, 30, 40, 50 (median 30) and one non-user; lexia: 4 users only
    f = pd.DataFrame({
        "win_ixl": [10, 20, 30, 40, 50, 0, 5, 0], "win_lexia": [1, 1, 1, 1, 0, 0, 0, 0],
        "performance": ["satisfactory"] * 6 + ["needs improvement", "excellent"],
    }, index=[f"s{i}" for i in range(8)]).astype({"win_ixl": float, "win_lexia": float})
    return f


def test_peer_medians_of_users_with_enough_peers():
    medians = recommend.peer_medians(band_frame(), APPS)
    assert medians.loc["satisfactory", "ixl"] == 30.0
    assert np.isnan(medians.loc["satisfactory", "lexia"])  # 4 users < MIN_PEERS
    assert np.isnan(medians.loc["excellent", "ixl"])


def test_targets_are_the_next_band_up_and_excellent_keeps_its_own():
    f = band_frame()
    targets = recommend.next_band_targets(f, recommend.peer_medians(f, APPS), APPS)
    assert targets.loc["s6", "ixl"] == 30.0  # needs improvement -> satisfactory's median
    assert np.isnan(targets.loc["s0", "ixl"])  # satisfactory -> excellent: too few peers


class Linear:
    """A fitted 'model' whose gains are known: 0.1 points per window minute of ixl, 0.02 of lexia."""

    def predict(self, X):
        return 0.1 * X["win_ixl"].to_numpy() + 0.02 * X["win_lexia"].to_numpy()


def test_model_recommendations_predict_the_gain_of_reaching_the_target():
    f = pd.DataFrame({"win_ixl": [10.0, 50.0], "win_lexia": [0.0, 0.0], "ytd_ixl": [10.0, 50.0],
                      "ytd_lexia": [0.0, 0.0], "trend": 0.0, "active_days": 1.0, "prior_average": 70.0},
                     index=pd.Index(["p", "q"], name="student_id"))
    targets = pd.DataFrame({"ixl": [30.0, 30.0], "lexia": [100.0, 100.0]}, index=f.index)
    recs = recommend.model_recommendations(Linear(), f, targets, APPS)
    got = [(r.student_id, r.rank, r.app, r.current_minutes, r.suggested_minutes, round(r.gain, 6))
           for r in recs.itertuples()]
    assert got == [
        ("p", 1, "ixl", 10.0, 30.0, 2.0),  # +20 minutes x 0.1 = 2 points
        ("p", 2, "lexia", 0.0, 100.0, 2.0),  # +100 x 0.02 = 2: a tie, ixl first
        ("q", 1, "lexia", 0.0, 100.0, 2.0),  # q's ixl is above the target: never lowered
    ]


def test_peer_recommendations_rank_by_the_gap_in_minutes():
    f = pd.DataFrame({"win_ixl": [10.0], "win_lexia": [90.0]}, index=pd.Index(["p"], name="student_id"))
    targets = pd.DataFrame({"ixl": [30.0], "lexia": [100.0]}, index=f.index)
    recs = recommend.peer_recommendations(f, targets, APPS)
    assert [(r.app, r.gain, r.suggested_minutes) for r in recs.itertuples()] == [("ixl", 20.0, 30.0),
                                                                                   ("lexia", 10.0, 100.0)]


def test_app_effects_recover_a_planted_slope():
    rng = np.random.default_rng(0)
    n = 400
    f = pd.DataFrame({"win_ixl": rng.uniform(0, 120, n), "win_lexia": rng.uniform(0, 120, n),
                      "prior_average": np.where(rng.random(n) < 0.3, np.nan, 60.0)})
    f["score"] = 50 + 6 * f["win_ixl"] / 60 + rng.normal(0, 3, n)
    effects = recommend.app_effects(f, APPS, resamples=100).set_index("app")
    assert effects.loc["ixl", "ci_low"] < 6 < effects.loc["ixl", "ci_high"]
    assert effects.loc["lexia", "ci_low"] < 0 < effects.loc["lexia", "ci_high"]
    assert effects["students"].tolist() == [n, n]


def test_candidate_models_follow_scikit_learn_conventions():
    models = recommend.candidate_models(random_state=7)
    assert set(models) == {"dummy_mean", "ridge", "gradient_boosting"}
    assert all(isinstance(m, Pipeline) for m in models.values())
    assert models["gradient_boosting"][-1].random_state == 7


def test_inputs_are_not_mutated():
    s, u = students(), usage()
    recommend.student_features(s, u, apps=APPS, year_start=date(2026, 8, 1), as_of=date(2026, 11, 22),
                               assessment_days=30)
    pd.testing.assert_frame_equal(s, students())
    pd.testing.assert_frame_equal(u, usage())
