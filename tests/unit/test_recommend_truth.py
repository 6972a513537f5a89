"""The recommendation method on simulated districts where the truth is known (tests/simulate.py):
over seeds, it finds the app that works and stays silent on the ones that do not.

Each district: a hidden ability drives scores and, for some apps, use; schools differ in level
and in use; the prior score measures ability with error. "Resolved" below is what a
recommendation needs besides the gate: a corrected interval above 0, enough users, overlap.
"""
from datetime import date

import numpy as np
import pandas as pd
import pytest

from analytics import recommend, scoring
from tests.simulate import WINDOW, App, district, steady

pytestmark = pytest.mark.slow

YEAR_START = date(2026, 8, 1)
MIX = {
    "causal": App(effect=4.0),  # 4 points an hour in the window, used by anyone
    "confounded": App(ability=0.8),  # no effect; strong students use it 0.8 h more per sd
    "harmful": App(effect=-1.0, ability=0.8),  # -1 an hour, used by strong students
    "adopter": App(high_schools=1.5, school_sd=0.5),  # no effect; high-scoring schools adopted it
    "by_school": App(school_sd=1.0),  # no effect; use varies by school
    "null_a": App(), "null_b": App(), "null_c": App(),
}


def effects_of(sim) -> pd.DataFrame:
    rows = scoring.assessment_rows(sim.students, sim.assessments)
    features = scoring.usage_features(rows, sim.usage, sim.apps, window_days=WINDOW, year_start=YEAR_START)
    return recommend.adjusted_effects(features, sim.apps).set_index("app")


def run(sim, **kw):
    return recommend.recommend(sim.students, sim.assessments, sim.usage, sim.apps, window_days=WINDOW,
                               year_start=YEAR_START, **kw)


@pytest.fixture(scope="module")
def mix_effects():
    """40 districts of 400 students in 10 schools."""
    return [effects_of(district(seed, MIX, n=400, schools=10)) for seed in range(40)]


def resolved_up(effects: list[pd.DataFrame]) -> pd.Series:
    return pd.DataFrame([e["status"].eq("resolved: higher scores") for e in effects]).mean()


def test_the_causal_app_is_resolved_and_no_other_is(mix_effects):
    share = resolved_up(mix_effects)
    assert share["causal"] >= 0.8, share
    for app in ("confounded", "harmful", "adopter", "by_school", "null_a", "null_b", "null_c"):
        assert share[app] < 0.05, (app, share[app])


def test_the_harmful_app_is_never_up_and_its_estimate_is_below_zero_on_average(mix_effects):
    estimates = np.array([e.loc["harmful", "effect"] for e in mix_effects])
    assert estimates.mean() < 0  # the strong students who use it do not make it look good


def test_the_causal_estimate_is_unbiased_and_its_interval_covers_it(mix_effects):
    estimates = np.array([e.loc["causal", "effect"] for e in mix_effects])
    assert estimates.mean() == pytest.approx(4.0, abs=0.4)
    covered = np.mean([e.loc["causal", "ci95_low"] <= 4.0 <= e.loc["causal", "ci95_high"] for e in mix_effects])
    assert 0.85 <= covered <= 1.0


def test_clustered_intervals_cover_null_apps_whose_use_varies_by_school():
    apps = {"by_school": App(school_sd=1.0), "adopter": App(high_schools=1.5, school_sd=0.5), "null": App()}
    effects = [effects_of(district(1000 + seed, apps, n=300, schools=8)) for seed in range(120)]
    for app in apps:
        covered = np.mean([e.loc[app, "ci95_low"] <= 0 <= e.loc[app, "ci95_high"] for e in effects])
        assert 0.90 <= covered <= 0.98 + 0.01, (app, covered)


def test_forty_apps_of_which_two_matter_seldom_show_a_null_app():
    apps = {"a": App(effect=3.0), "b": App(effect=2.0), **{f"null{i:02d}": App(school_sd=0.5) for i in range(38)}}
    any_null, found = 0, []  # found: the app worth 3 points an hour
    for seed in range(30):
        e = effects_of(district(2000 + seed, apps, n=1000, schools=20))
        resolved = e["status"].str.startswith("resolved")
        any_null += resolved.drop(["a", "b"]).any()
        found.append(resolved["a"])
    assert any_null / 30 < 0.05
    assert np.mean(found) >= 0.9


def test_pure_noise_with_an_informative_prior_does_not_pass_the_gate():
    apps = {f"app{i}": App(ability=0.3 if i < 3 else 0.0, school_sd=0.5) for i in range(10)}
    passed = []
    for seed in range(20):
        out = run(district(3000 + seed, apps, n=300, schools=8))
        passed.append(out.chosen is not None)
        assert out.picks.empty or out.chosen is not None
    assert np.mean(passed) < 0.05


def test_a_district_with_the_causal_app_is_told_to_use_it_and_nothing_else():
    for seed in range(3):
        sim = district(4000 + seed, MIX, n=600, schools=10)
        out = run(sim)
        assert out.chosen is not None, out.verdicts
        assert set(out.picks["app"]) == {"causal"}
        picks = out.picks.set_index("student_id")
        extra = (picks["suggested_minutes"] - picks["current_minutes"]) / 60
        assert (extra > 0).all()
        true_gain = 4.0 * extra
        covered = ((picks["gain_low"] <= true_gain) & (true_gain <= picks["gain_high"])).mean()
        assert covered >= 0.9
        # every type 1 student either has a recommendation or a reason
        assert len(picks) + len(out.reasons) == out.students


def test_use_after_the_assessment_only_gives_no_gain():
    sim = district(5000, MIX, n=400, schools=10, usage_after=True)
    out = run(sim)
    assert out.picks.empty
    assert set(out.reasons) == {scoring.GATE_FAILED} or set(out.reasons) == {scoring.NO_USAGE}
    assert (out.features[scoring.usage_columns(sim.apps)].to_numpy() == 0).all()


def test_sixty_students_are_too_few_and_two_hundred_in_six_schools_are_enough():
    small = run(district(6000, MIX, n=60, schools=6))
    assert small.district_reason == scoring.TOO_SMALL and small.picks.empty
    assert set(small.reasons) == {scoring.TOO_SMALL} and len(small.reasons) == 60
    enough = run(district(6001, MIX, n=200, schools=6))
    assert enough.design == "grouped_cv" and enough.district_reason != scoring.TOO_SMALL
    assert recommend.BASELINE in enough.scores


def test_a_saturating_effect_is_resolved_and_its_gain_for_non_users_is_not_overstated():
    apps = {"saturating": App(effect=4.0, saturating=True), "null": App()}
    for seed in range(3):
        sim = district(7000 + seed, apps, n=600, schools=10)
        out = run(sim)
        e = out.effects.set_index("app")
        assert e.loc["saturating", "status"] == "resolved: higher scores"
        picks = out.picks.set_index("student_id")
        fresh = picks.loc[picks["current_minutes"] == 0]
        hours = fresh["suggested_minutes"] / 60
        true_gain = 4.0 * 2 * (1 - np.exp(-hours / 2))
        # linear in hours over the range seen: from zero it understates a saturating app, never overstates
        assert (fresh["gain"] <= true_gain + 1e-9).mean() >= 0.9 if len(fresh) else True


def test_a_steady_history_gives_a_time_split_that_finds_the_causal_app():
    """Three assessments, each with its own month of use before it: fit on the second
    (its prior the first), score the third (its prior the second)."""
    out = run(steady(8000, MIX, n=600, schools=10))
    assert out.design == "time_split"
    assert "time split" in out.verdicts[recommend.BASELINE]
    assert out.chosen is not None, out.verdicts
    assert set(out.picks["app"]) == {"causal"}


def test_a_steady_history_of_pure_noise_does_not_pass_the_time_split():
    apps = {f"app{i}": App(ability=0.3 if i < 3 else 0.0, school_sd=0.5) for i in range(8)}
    outcomes = [run(steady(8100 + seed, apps, n=400, schools=8)) for seed in range(10)]
    assert {o.design for o in outcomes} == {"time_split"}
    assert not any(o.chosen for o in outcomes)


def test_a_first_assessment_before_any_use_is_no_history_for_a_time_split():
    """Its score carries no effect of use while the later ones do: a model fitted across
    that change would fail real effects, so the folds are grouped by school instead."""
    out = run(district(8200, MIX, n=600, schools=10, prior="assessment"))
    assert out.design == "grouped_cv"
    assert set(out.picks["app"]) <= {"causal"}
