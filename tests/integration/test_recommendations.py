"""Recommendations end to end on SQLite and PostgreSQL, on planted districts.

planted: 360 type 1 students in 6 schools; score = 40 + 10/hour of `boost` in the
  assessment window - 3/hour of `drag` + 0 x `idle` + noise (sd 4). Plus students of
  types 2, 3 and 4, who must never get recommendations.
noise:   the same usage, scores that ignore it.
tiny:    20 type 1 students: always peers.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

import config
from runner.leases import exclusive
from storage.frames import read_frame
from runner.cycle import run_cycle
from models import app_effects, model_runs, recommendations

pytestmark = pytest.mark.slow

AS_OF = date(2026, 11, 22)
ASSESSED = date(2026, 10, 15)
APPS = ["boost", "idle", "drag"]
JOBS = ["ingest", "dailypull", "most_used", "recommendations"]


def district_files(root, district: str, n: int, *, planted: bool, seed: int) -> pd.DataFrame:
    """Write a district's landing files; return the type 1 students' window hours."""
    rng = np.random.default_rng(seed)
    ids = [f"{district[:1]}{i:04d}" for i in range(n)]
    hours = pd.DataFrame(rng.uniform(0, 2.5, size=(n, 3)), columns=APPS, index=ids)
    usage = []
    for app in APPS:  # each student's window minutes spread over 5 days before the assessment
        for k in range(5):
            usage.append(pd.DataFrame({"student_id": ids, "app": app,
                                       "date": (ASSESSED - timedelta(days=3 * k)).isoformat(),
                                       "minutes": (hours[app] * 60 / 5).round(3).to_numpy()}))
    if planted:
        score = 40 + 10 * hours["boost"] - 3 * hours["drag"] + rng.normal(0, 4, n)
    else:
        score = pd.Series(rng.normal(65, 12, n), index=ids)
    folder = root / district
    folder.mkdir(parents=True)
    pd.concat(usage).to_csv(folder / "usage.csv", index=False)
    pd.DataFrame({"student_id": ids, "assessment_id": "unit1", "date": ASSESSED.isoformat(),
                  "score": score.clip(0, 100).round(3).to_numpy()}).to_csv(folder / "assessments.csv", index=False)
    pd.DataFrame({"student_id": ids, "school_id": [f"school{i % 6}" for i in range(n)], "grade": "5"}).to_csv(
        folder / "students.csv", index=False)
    others = pd.DataFrame({"student_id": ["x2", "x3", "x4"], "app": "idle", "date": "2026-10-01", "minutes": 30})
    others.to_csv(folder / "usage_others.csv", index=False)
    (folder / "forecasts.csv").write_text("student_id,date,score\nx2,2026-10-01,50\n")
    (folder / "score_averages.csv").write_text(
        "student_id,school_year,as_of,score\nx3,2026-27,2026-11-01,40\nx4,2025-26,2026-06-15,30\n")
    return hours.assign(score=score)


def settings(*districts):
    return config.parse({"districts": [{"id": d, "apps": APPS} for d in districts]})


def cycle(engine, landing, *districts, jobs=JOBS, now=None, force=False):
    s = settings(*districts)
    return run_cycle(engine, s, districts=list(s.districts), jobs=jobs, as_of=AS_OF, landing_dir=landing,
                     now=now or datetime(2026, 11, 22, 2, tzinfo=timezone.utc), force=force)


def table(engine, t, district):
    with engine.connect() as conn:
        frame = read_frame(conn, select(t).where(t.c.district_id == district))
    return frame


@pytest.fixture
def planted(engine, tmp_path):
    landing = tmp_path / "landing"
    hours = district_files(landing, "planted", 360, planted=True, seed=1)
    result = cycle(engine, landing, "planted")
    assert [r.result.status for r in result.records] == ["succeeded"] * 4, [r.result.message for r in result.records]
    return landing, hours


def test_the_model_beats_the_baseline_and_speaks(engine, planted):
    runs = table(engine, model_runs, "planted").set_index("algorithm")
    assert set(runs.index) == {"dummy_mean", "ridge", "gradient_boosting", "linear_effects"}
    assert (runs["students"] == 360).all()
    chosen = runs.loc[runs["verdict"].str.startswith("chosen")]
    assert len(chosen) == 1
    # basis says what each fit was to the recommendations: the baseline is never a basis
    other = ({"ridge", "gradient_boosting"} - set(chosen.index)).pop()
    assert runs["basis"].to_dict() == {"dummy_mean": "baseline", chosen.index[0]: "model", other: "unused",
                                       "linear_effects": "effects"}
    assert chosen["cv_mae"].iloc[0] < 0.95 * chosen["baseline_mae"].iloc[0]
    recs = table(engine, recommendations, "planted")
    assert (recs["basis"] == "model").all() and recs["expected_gain"].notna().all()
    assert set(recs["model_id"]) == set(runs.loc[runs["verdict"].str.startswith("chosen"), "model_id"])


def test_app_effects_rank_the_planted_apps_with_honest_intervals(engine, planted):
    effects = table(engine, app_effects, "planted").set_index("app")
    assert effects.loc["boost", "effect"] > effects.loc["idle", "effect"] > effects.loc["drag", "effect"]
    assert 8 < effects.loc["boost", "effect"] < 12  # planted: +10 points per hour
    assert effects.loc["boost", "ci_low"] > 0
    assert effects.loc["idle", "ci_low"] < 0 < effects.loc["idle", "ci_high"]
    assert effects.loc["drag", "ci_high"] < 0  # planted: -3 per hour
    assert (effects["students"] == 360).all()


def test_low_users_of_the_planted_app_get_it_recommended(engine, planted):
    _, hours = planted
    recs = table(engine, recommendations, "planted")
    low = hours.index[hours["boost"] < hours["boost"].quantile(0.25)]
    first = recs.loc[recs["rank"] == 1].set_index("student_id")["app"]
    got = first.reindex(low)
    assert (got == "boost").mean() > 0.9, got.value_counts(dropna=False)
    assert (recs["expected_gain"] > 0).all()  # only positive predicted gains are recommended
    boost = recs.loc[recs["app"] == "boost"]
    assert (boost["suggested_minutes"] > boost["current_minutes"]).all()


def test_types_2_to_4_never_get_recommendations(engine, planted):
    recs = table(engine, recommendations, "planted")
    assert not set(recs["student_id"]) & {"x2", "x3", "x4"}


def test_a_rerun_gives_identical_tables(engine, planted):
    landing, _ = planted
    before = {t.name: table(engine, t, "planted").sort_values(list(t.primary_key.columns.keys()), ignore_index=True)
              for t in (recommendations, app_effects, model_runs)}
    again = cycle(engine, landing, "planted", jobs=["recommendations"], now=datetime(2026, 11, 23, tzinfo=timezone.utc))
    assert again.records[0].result.status == "skipped" and "up to date" in again.records[0].result.message
    recomputed = cycle(engine, landing, "planted", jobs=["recommendations"], force=True,
                       now=datetime(2026, 11, 23, tzinfo=timezone.utc))
    assert recomputed.records[0].result.status == "succeeded" and recomputed.records[0].result.rows_out == 0
    for t in (recommendations, app_effects, model_runs):
        after = table(engine, t, "planted").sort_values(list(t.primary_key.columns.keys()), ignore_index=True)
        pd.testing.assert_frame_equal(after, before[t.name])


def test_a_pure_noise_district_falls_back_to_peers(engine, tmp_path):
    landing = tmp_path / "landing"
    district_files(landing, "noise", 360, planted=False, seed=2)
    result = cycle(engine, landing, "noise")
    assert result.records[-1].result.status == "succeeded"
    runs = table(engine, model_runs, "noise")
    basis = runs.set_index("algorithm")["basis"]
    assert (basis["dummy_mean"], basis["linear_effects"]) == ("baseline", "effects")
    assert sorted(basis[["ridge", "gradient_boosting"]]) == ["peers", "unused"]  # the best candidate says why
    candidates = runs.loc[runs["algorithm"].isin(["ridge", "gradient_boosting"]), "verdict"]
    assert len(candidates) == 2 and candidates.str.startswith("fails the gate").all()
    recs = table(engine, recommendations, "noise")
    assert len(recs) > 0 and (recs["basis"] == "peers").all() and recs["expected_gain"].isna().all()
    assert (recs["suggested_minutes"] > recs["current_minutes"]).all()


def test_too_few_students_always_use_peers_and_say_why(engine, tmp_path):
    landing = tmp_path / "landing"
    district_files(landing, "tiny", 20, planted=True, seed=3)
    cycle(engine, landing, "tiny")
    [run] = table(engine, model_runs, "tiny").to_dict("records")
    assert (run["algorithm"], run["basis"], run["students"]) == ("none", "peers", 20)
    assert run["verdict"].startswith("too few type 1 students to validate a model (20 < 50)")
    assert table(engine, app_effects, "tiny").empty


def test_a_second_instance_is_skipped_while_one_holds_the_lock(engine, planted, monkeypatch):
    from runner import jobrun

    monkeypatch.setattr(jobrun, "HEAVY_WAIT_SECONDS", 0.0)
    landing, _ = planted
    with exclusive(engine, "recommendations") as taken:
        assert taken
        result = cycle(engine, landing, "planted", jobs=["recommendations"])
    assert result.records[0].result.status == "skipped"
    assert "another instance" in result.records[0].result.message
    after = cycle(engine, landing, "planted", jobs=["recommendations"], force=True)  # released: runs again
    assert after.records[0].result.status == "succeeded"
