"""Recommendations end to end on SQLite and PostgreSQL, on planted districts.

planted: 360 type 1 students in 6 schools; score = 40 + 10/hour of `boost` in the
  assessment window - 3/hour of `drag` + 0 x `idle` + noise (sd 4). Plus students of
  types 2, 3 and 4, who must never get recommendations.
noise:   the same usage, scores that ignore it.
tiny:    20 type 1 students: too small for the model basis; every student gets the reason.
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
from models import app_effects, model_runs, recommendation_reasons, recommendations

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
    for app in APPS:  # each student's window minutes spread over 5 days before the assessment day
        for k in range(5):
            usage.append(pd.DataFrame({"student_id": ids, "app": app,
                                       "date": (ASSESSED - timedelta(days=1 + 3 * k)).isoformat(),
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


def test_a_usage_model_beats_the_baseline_and_every_row_says_what_it_is(engine, planted):
    runs = table(engine, model_runs, "planted").set_index("algorithm")
    assert set(runs.index) == {"baseline_ridge", "usage_ridge", "usage_boosting", "adjusted_effects"}
    assert (runs["students"] == 360).all() and (runs["validation"] == "grouped_cv").all()
    chosen = runs.loc[runs["verdict"].str.startswith("chosen")]
    assert len(chosen) == 1 and chosen["basis"].iloc[0] == "model"
    other = ({"usage_ridge", "usage_boosting"} - set(chosen.index)).pop()
    assert runs["basis"].to_dict() == {"baseline_ridge": "baseline", chosen.index[0]: "model", other: "unused",
                                       "adjusted_effects": "effects"}
    # both figures on every fitted row: its own MAE and the baseline's on the same folds
    assert (runs["baseline_mae"] == runs.loc["baseline_ridge", "cv_mae"]).all()
    assert chosen["cv_mae"].iloc[0] < 0.98 * chosen["baseline_mae"].iloc[0]
    recs = table(engine, recommendations, "planted")
    assert (recs["basis"] == "model").all() and recs["expected_gain"].notna().all()
    assert (recs["gain_low"] <= recs["expected_gain"]).all() and (recs["expected_gain"] <= recs["gain_high"]).all()
    assert set(recs["model_id"]) == {runs.loc["adjusted_effects", "model_id"]}  # one estimate behind every gain
    assert set(recs["evidence"]) == {"promising"} and recs["caveat"].str.contains("not a proven cause").all()
    assert set(recs["period_start"].astype(str)) == {"2026-11-23"} and set(recs["period_end"].astype(str)) == {
        "2026-12-22"}


def test_app_effects_rank_the_planted_apps_with_honest_intervals(engine, planted):
    effects = table(engine, app_effects, "planted").set_index("app")
    assert effects.loc["boost", "effect"] > effects.loc["idle", "effect"] > effects.loc["drag", "effect"]
    assert 8 < effects.loc["boost", "effect"] < 12  # planted: +10 points per hour
    assert effects.loc["boost", "status"] == "resolved: higher scores"
    assert effects.loc["idle", "ci_low"] < 0 < effects.loc["idle", "ci_high"]
    assert effects.loc["drag", "status"] == "resolved: lower scores"  # planted: -3 per hour
    assert (effects["students"] == 360).all()
    # the corrected interval is wider than the app's own 95% one
    assert ((effects["ci_high"] - effects["ci_low"]) > (effects["ci95_high"] - effects["ci95_low"])).all()


def test_only_the_app_that_works_is_recommended_to_its_low_users(engine, planted):
    _, hours = planted
    recs = table(engine, recommendations, "planted")
    assert set(recs["app"]) == {"boost"}  # idle's interval includes 0, drag lowers scores
    low = hours.index[hours["boost"] < hours["boost"].quantile(0.25)]
    assert recs.set_index("student_id")["app"].reindex(low).eq("boost").mean() > 0.9
    assert (recs["suggested_minutes"] > recs["current_minutes"]).all() and (recs["gain_low"] > 0).all()
    reasons = table(engine, recommendation_reasons, "planted")
    assert set(reasons["student_id"]).isdisjoint(recs["student_id"])
    assert len(reasons) + recs["student_id"].nunique() == 360
    assert set(reasons["reason"]) <= {"already at the suggested use of each app with a resolved effect"}


def test_types_2_to_4_never_get_recommendations(engine, planted):
    recs = table(engine, recommendations, "planted")
    assert not set(recs["student_id"]) & {"x2", "x3", "x4"}


def test_a_rerun_gives_identical_tables(engine, planted):
    landing, _ = planted
    before = {t.name: table(engine, t, "planted").sort_values(list(t.primary_key.columns.keys()), ignore_index=True)
              for t in (recommendations, recommendation_reasons, app_effects, model_runs)}
    again = cycle(engine, landing, "planted", jobs=["recommendations"], now=datetime(2026, 11, 23, tzinfo=timezone.utc))
    assert again.records[0].result.status == "skipped" and "up to date" in again.records[0].result.message
    recomputed = cycle(engine, landing, "planted", jobs=["recommendations"], force=True,
                       now=datetime(2026, 11, 23, tzinfo=timezone.utc))
    assert recomputed.records[0].result.status == "succeeded" and recomputed.records[0].result.rows_out == 0
    for t in (recommendations, recommendation_reasons, app_effects, model_runs):
        after = table(engine, t, "planted").sort_values(list(t.primary_key.columns.keys()), ignore_index=True)
        pd.testing.assert_frame_equal(after, before[t.name])


def test_a_pure_noise_district_says_nothing_and_says_why(engine, tmp_path):
    landing = tmp_path / "landing"
    district_files(landing, "noise", 360, planted=False, seed=2)
    result = cycle(engine, landing, "noise")
    assert result.records[-1].result.status == "succeeded"
    runs = table(engine, model_runs, "noise")
    basis = runs.set_index("algorithm")["basis"]
    assert basis.to_dict() == {"baseline_ridge": "baseline", "usage_ridge": "unused", "usage_boosting": "unused",
                               "adjusted_effects": "effects"}
    candidates = runs.loc[runs["algorithm"].isin(["usage_ridge", "usage_boosting"]), "verdict"]
    assert candidates.str.startswith("fails the gate").all()
    assert table(engine, recommendations, "noise").empty  # no slot filled by a peer gap
    reasons = table(engine, recommendation_reasons, "noise")
    assert len(reasons) == 360
    assert set(reasons["reason"]) == {"usage did not predict scores beyond prior score, school and grade"}


def test_too_few_students_get_no_model_and_a_reason_each(engine, tmp_path):
    landing = tmp_path / "landing"
    district_files(landing, "tiny", 20, planted=True, seed=3)
    cycle(engine, landing, "tiny")
    [run] = table(engine, model_runs, "tiny").to_dict("records")
    assert (run["algorithm"], run["basis"], run["students"]) == ("none", "none", 20)
    assert run["verdict"].startswith("district too small for the model basis: 20 type 1 students and 6 schools "
                                     "(needs 200 and 6)")
    assert table(engine, app_effects, "tiny").empty and table(engine, recommendations, "tiny").empty
    assert set(table(engine, recommendation_reasons, "tiny")["reason"]) == {"district too small"}


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


def test_the_report_says_what_each_figure_is(engine, planted):
    from service.report import district_report

    text = district_report(engine, settings("planted").district("planted"))
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("  recommendations: "))
    assert "usage_ridge" in header or "usage_boosting" in header
    assert "chosen: passes the gate" in header and "vs baseline" in header
    assert any("evidence promising: an association adjusted for prior score, earlier use, school and grade, not a "
               "proven cause" in line and "for 2026-11-23 to 2026-12-22" in line for line in lines)
    students = [line for line in lines if line.startswith("    ") and "(promising evidence): boost" in line]
    assert len(students) == 3 and all("associated +" in line and "interval +" in line for line in students)
    effects = next(line for line in lines if line.startswith("  app effects"))
    assert "boost +" in effects and "resolved: higher scores" in effects and "not causes" in effects


def test_a_district_over_the_training_cap_fits_on_the_sample_and_scores_everyone(engine, planted, monkeypatch):
    from analytics import recommend

    landing, _ = planted
    monkeypatch.setattr(recommend, "TRAIN_MAX_STUDENTS", 300)
    result = cycle(engine, landing, "planted", jobs=["recommendations"], force=True,
                   now=datetime(2026, 11, 23, tzinfo=timezone.utc))
    assert result.records[0].result.status == "succeeded"
    runs = table(engine, model_runs, "planted")
    runs = runs.sort_values("trained_at").tail(4).set_index("algorithm")  # the rerun's 4 fits
    assert (runs["students"] == 360).all()
    for algorithm in ("baseline_ridge", "usage_ridge", "usage_boosting"):
        assert "a sample of 300 of the 360 type 1 students" in runs.loc[algorithm, "verdict"], algorithm
    assert "fitted on a sample of 300 of the 360 type 1 students" in runs.loc["adjusted_effects", "verdict"]
    effects = table(engine, app_effects, "planted").set_index("app")
    assert effects.loc["boost", "status"] == "resolved: higher scores" and effects["students"].max() <= 300
    recs, reasons = table(engine, recommendations, "planted"), table(engine, recommendation_reasons, "planted")
    assert recs["student_id"].nunique() + len(reasons) == 360  # all scored, not only the sample
    assert set(recs["model_id"]) == {runs.loc["adjusted_effects", "model_id"]}


def test_a_candidate_stopped_by_the_screen_has_no_figure_of_its_own(engine, tmp_path):
    landing = tmp_path / "landing"
    district_files(landing, "noise", 360, planted=False, seed=2)
    cycle(engine, landing, "noise")
    runs = table(engine, model_runs, "noise").set_index("algorithm")
    stopped = runs["verdict"].str.contains("cannot pass the gate|screened out", regex=True)
    assert stopped.any()  # pure noise: a candidate is behind the baseline in 3 folds early on
    assert runs.loc[stopped, "cv_mae"].isna().all() and runs.loc[stopped, "cv_r2"].isna().all()
    assert runs.loc[~stopped].drop(index="adjusted_effects")["cv_mae"].notna().all()
    assert runs["baseline_mae"].notna().all()
