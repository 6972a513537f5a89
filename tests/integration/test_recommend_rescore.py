"""Recommendations' nights on SQLite and PostgreSQL: refit or re-score (README,
"recommendations"; the rule is analytics/refit.py).

The planted district of test_recommendations (360 type 1 students in 6 schools, assessed on
2026-10-15, a real effect of `boost`) is fitted on 2026-11-22; later cycles either re-score
every student from that fit, with no new fit, or refit, and say which rule decided.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

import config
from analytics import scoring
from runner.cycle import run_cycle
from models import (
    app_effects, changes_logged, ingested_files, job_runs, model_runs, recommend_peers, recommend_state,
    recommendation_reasons, recommendations,
)
from tests.integration.test_recommendations import APPS, AS_OF, JOBS, district_files, table

pytestmark = pytest.mark.slow

BANDS = [(88, "excellent"), (69, "satisfactory"), (55, "needs improvement"), (0, "unsatisfactory")]


def cycle(engine, landing, as_of, *, jobs=JOBS, force=False, **district):
    s = config.parse({"districts": [{"id": "planted", "apps": APPS, **district}]})
    result = run_cycle(engine, s, districts=list(s.districts), jobs=jobs, as_of=as_of, landing_dir=landing,
                       now=datetime.combine(as_of, datetime.min.time(), timezone.utc) + timedelta(hours=2), force=force)
    record = result.records[-1]
    assert record.job == "recommendations" and record.result.status == "succeeded", record.result.message
    return record.result


@pytest.fixture
def fitted(engine, tmp_path):
    landing = tmp_path / "landing"
    hours = district_files(landing, "planted", 360, planted=True, seed=1)
    first = cycle(engine, landing, AS_OF)
    assert first.message.startswith("refitted: no stored fit for the district; 360 type 1 students")
    return landing, hours


def model_ids(engine):
    return set(table(engine, model_runs, "planted")["model_id"])


def band(score: pd.Series) -> pd.Series:
    bounds = [b for b, _ in BANDS][::-1]
    return pd.Series(np.array([n for _, n in BANDS][::-1])[np.searchsorted(bounds, score, side="right") - 1],
                     index=score.index)


def test_a_night_rescores_from_the_stored_fit(engine, fitted):
    landing, hours = fitted
    fits, effects = model_ids(engine), table(engine, app_effects, "planted")
    [state] = table(engine, recommend_state, "planted").to_dict("records")
    # the night: every student used boost yesterday, and 8 of them were assessed again today
    # (2.2% of the assessment rows): their windows now end today and hold yesterday's use
    night = date(2026, 11, 23)
    ids = hours.index
    pd.DataFrame({"student_id": ids, "app": "boost", "date": (night - timedelta(days=1)).isoformat(),
                  "minutes": 20.0}).to_csv(landing / "planted" / "usage_night.csv", index=False)
    again = ids[:8]
    retest = (hours.loc[again, "score"].clip(0, 100).round(3) + 6.0).to_numpy()  # a little better than before
    pd.DataFrame({"student_id": again, "assessment_id": "unit2", "date": night.isoformat(), "score": retest}).to_csv(
        landing / "planted" / "assessments_night.csv", index=False)
    result = cycle(engine, landing, night)
    assert result.message.startswith(
        "re-scored from the fit of 2026-11-22 (1 day old, under 7; 0 of 360 type 1 students added or removed and "
        "8 of 360 assessment rows added or changed, within 5%; same settings); 360 type 1 students, 8 of them "
        "re-scored (their inputs changed since the scoring of 2026-11-22; the others keep their rows, with the "
        "period moved); ")
    assert model_ids(engine) == fits  # nothing fitted
    pd.testing.assert_frame_equal(table(engine, app_effects, "planted"), effects)
    [after] = table(engine, recommend_state, "planted").to_dict("records")
    scored = ("scored_as_of", "scored_mark")
    assert {k: v for k, v in after.items() if k not in scored} == {k: v for k, v in state.items() if k not in scored}
    assert str(after["scored_as_of"]) == "2026-11-23" and after["scored_mark"] > state["scored_mark"]

    # by hand: the same fitted effects, each student's band and window minutes of boost
    first = hours["score"].clip(0, 100).round(3)
    score = first.where(~first.index.isin(again), (first + first + 6.0) / 2)  # type 1: the mean of this year's
    window = (hours["boost"] * 60 / 5).round(3) * 5  # 5 days before 10-15, all in its window
    window[again] = 20.0  # cut at 11-23: only yesterday's use is in its window
    features = pd.DataFrame({"performance": band(score), "used_before": True, "win_boost": window}).rename_axis(
        "student_id").sort_index()
    # the amounts suggested are the fit's: its bands' median use, kept in recommend_peers
    at_fit = features.assign(performance=band(first), win_boost=(hours["boost"] * 60 / 5).round(3) * 5)
    resolved = sorted(effects.loc[effects["status"] == scoring.RESOLVED, "app"])
    medians = scoring.peer_medians(at_fit, resolved)
    kept = table(engine, recommend_peers, "planted").pivot(index="band", columns="app", values="minutes")
    pd.testing.assert_frame_equal(kept.reindex(index=medians.index, columns=medians.columns), medians,
                                  check_names=False, rtol=1e-12)
    assert resolved == ["boost"] and medians.notna().sum().sum() >= 2
    picks, reasons = scoring.score_students(features, effects, APPS, chosen=True, district_reason=None,
                                            medians=medians)
    recs = table(engine, recommendations, "planted").sort_values(["student_id", "rank"], ignore_index=True)
    pd.testing.assert_frame_equal(
        recs[["student_id", "rank", "app", "current_minutes", "suggested_minutes", "expected_gain", "gain_low",
              "gain_high"]],
        picks.rename(columns={"gain": "expected_gain"}).reset_index(drop=True), check_dtype=False, rtol=1e-9)
    why = table(engine, recommendation_reasons, "planted").set_index("student_id")["reason"].sort_index()
    pd.testing.assert_series_equal(why, reasons.sort_index(), check_names=False, check_index_type=False,
                                   check_dtype=False)
    assert set(recs["model_id"]) == {state["effects_model_id"]} == set(effects["model_id"])
    assert set(recs["period_start"].astype(str)) == {"2026-11-24"}
    assert (recs.loc[recs["student_id"].isin(again), "current_minutes"] == 20.0).all()
    assert recs["student_id"].isin(again).any()


def test_more_than_five_percent_new_type_1_students_refit(engine, fitted):
    landing, _ = fitted
    folder = landing / "planted"

    def newcomers(name, first, n, day):
        ids = [f"n{i:03d}" for i in range(first, first + n)]
        pd.DataFrame({"student_id": ids, "app": "boost", "date": "2026-11-10", "minutes": 45.0}).to_csv(
            folder / f"usage_{name}.csv", index=False)
        pd.DataFrame({"student_id": ids, "school_id": [f"school{i % 6}" for i in range(n)], "grade": "5"}).to_csv(
            folder / f"students_{name}.csv", index=False)
        pd.DataFrame({"student_id": ids, "assessment_id": "unit1", "date": day, "score": 70.0}).to_csv(
            folder / f"assessments_{name}.csv", index=False)

    fits = model_ids(engine)
    newcomers("a", 0, 18, "2026-11-20")  # 18 of 360: 5.0%, not more
    small = cycle(engine, landing, date(2026, 11, 23))
    assert small.message.startswith("re-scored from the fit of 2026-11-22 (1 day old, under 7; 18 of 360 type 1 "
                                    "students added or removed")
    assert model_ids(engine) == fits
    assert table(engine, recommendations, "planted")["student_id"].isin([f"n{i:03d}" for i in range(18)]).any() or \
        table(engine, recommendation_reasons, "planted")["student_id"].isin(["n000"]).any()  # every one scored
    newcomers("b", 18, 1, "2026-11-21")  # 19 of 360: 5.3%
    big = cycle(engine, landing, date(2026, 11, 24))
    assert big.message.startswith("refitted: 19 of the fit's 360 type 1 students added or removed since 2026-11-22 "
                                  "(5.3%, over 5%); 379 type 1 students")
    runs = table(engine, model_runs, "planted")
    assert set(runs.loc[~runs["model_id"].isin(fits), "as_of"].astype(str)) == {"2026-11-24"}
    [state] = table(engine, recommend_state, "planted").to_dict("records")
    assert (str(state["fitted_as_of"]), state["students"]) == ("2026-11-24", 379)


def test_a_fit_seven_days_older_than_the_day_refits(engine, fitted):
    landing, _ = fitted
    fits = model_ids(engine)
    six = cycle(engine, landing, date(2026, 11, 28))
    assert six.message.startswith("re-scored from the fit of 2026-11-22 (6 days old, under 7;")
    assert model_ids(engine) == fits
    seven = cycle(engine, landing, date(2026, 11, 29))
    assert seven.message.startswith("refitted: the fit of 2026-11-22 is 7 days older than the as-of day (refit at 7)")
    assert model_ids(engine) > fits


def test_a_settings_change_refits(engine, fitted):
    landing, _ = fitted
    fits = model_ids(engine)
    changed = cycle(engine, landing, AS_OF, jobs=["recommendations"], recommend_min_users=25)
    assert changed.message.startswith("refitted: the settings the fit of 2026-11-22 depends on changed")
    # the same data and day: the same fits (model_id), the new settings stored
    assert model_ids(engine) == fits
    back = cycle(engine, landing, AS_OF, jobs=["recommendations"])  # and back: refits again
    assert back.message.startswith("refitted: the settings the fit of 2026-11-22 depends on changed")


def test_force_refits(engine, fitted):
    landing, _ = fitted
    night = cycle(engine, landing, date(2026, 11, 23), force=True)
    assert night.message.startswith("refitted: --force; 360 type 1 students")
    runs = table(engine, model_runs, "planted")
    assert "2026-11-23" in set(runs["as_of"].astype(str))


def test_a_too_small_district_rescores_with_its_reason_and_refits_once_large_enough(engine, tmp_path):
    landing = tmp_path / "landing"
    district_files(landing, "planted", 20, planted=True, seed=3)
    first = cycle(engine, landing, AS_OF)
    assert first.message.startswith("refitted: no stored fit for the district; 20 type 1 students; district too small")
    night = cycle(engine, landing, date(2026, 11, 23))
    assert night.message.startswith("re-scored from the fit of 2026-11-22")
    assert set(table(engine, recommendation_reasons, "planted")["reason"]) == {scoring.TOO_SMALL}
    [run] = table(engine, model_runs, "planted").to_dict("records")
    assert set(table(engine, recommendation_reasons, "planted")["model_id"]) == {run["model_id"]}


def published(engine):
    """recommendations and recommendation_reasons of the planted district, without the stamps."""
    recs = table(engine, recommendations, "planted").drop(columns="computed_at")
    why = table(engine, recommendation_reasons, "planted").drop(columns="computed_at")
    return (recs.sort_values(["student_id", "rank"], ignore_index=True),
            why.sort_values("student_id", ignore_index=True))


def test_a_night_rescores_only_the_students_whose_inputs_changed(engine, fitted):
    """A night's usage of the new day changes nobody's picks; a row re-sent for a day before
    an assessment, a new key before it and a new assessment each change one student's. Those
    three are re-scored, every other row keeps its values with its period moved, and the
    whole district re-scored from the same fit gives the same rows."""
    landing, hours = fitted
    folder = landing / "planted"
    night = date(2026, 11, 23)
    before_recs, before_why = published(engine)
    ids = hours.index
    pd.DataFrame({"student_id": ids, "app": "boost", "date": night.isoformat(), "minutes": 20.0}).to_csv(
        folder / "usage_night.csv", index=False)
    # two students suggested more boost, each a few minutes short of the amount: one day of
    # their window re-sent with 1 minute more, and a new day with 2 minutes
    short = before_recs.loc[(before_recs["app"] == "boost")
                            & (before_recs["suggested_minutes"] - before_recs["current_minutes"] > 10)]
    one, two = short["student_id"].iloc[:2]
    resent = (hours.loc[one, "boost"] * 60 / 5).round(3) + 1.0  # 2026-10-14 was 1/5 of the window's use
    pd.DataFrame({"student_id": [one, two], "app": "boost", "date": ["2026-10-14", "2026-10-13"],
                  "minutes": [resent, 2.0]}).to_csv(folder / "usage_late.csv", index=False)
    third = next(i for i in ids if i not in (one, two))
    pd.DataFrame({"student_id": [third], "assessment_id": "unit2", "date": [night.isoformat()],
                  "score": [70.0]}).to_csv(folder / "assessments_night.csv", index=False)

    # dailypull and most_used follow the change log first; it is kept until recommendations has too
    cycle_jobs = [j for j in JOBS if j != "recommendations"]
    s = config.parse({"districts": [{"id": "planted", "apps": APPS}]})
    run_cycle(engine, s, districts=list(s.districts), jobs=cycle_jobs, as_of=night, landing_dir=landing,
              now=datetime(2026, 11, 23, 2, tzinfo=timezone.utc))
    logged = table(engine, changes_logged, "planted").merge(
        table(engine, ingested_files, "planted")[["file_id", "path"]], on="file_id")
    firsts = dict(zip(logged["path"], logged["first_date"].astype(str)))
    assert firsts == {"planted/usage_night.csv": "2026-11-23", "planted/usage_late.csv": "2026-10-13"}

    result = cycle(engine, landing, night, jobs=["recommendations"])
    assert "; 360 type 1 students, 3 of them re-scored (their inputs changed since the scoring of 2026-11-22; " \
           "the others keep their rows, with the period moved); " in result.message, result.message
    assert table(engine, changes_logged, "planted").empty  # every follower has followed it

    recs, why = published(engine)
    assert set(recs["period_start"].astype(str)) == {"2026-11-24"} and set(recs["period_end"].astype(str)) == {"2026-12-23"}  # the 30 days after it
    values = ["student_id", "rank", "app", "current_minutes", "suggested_minutes", "expected_gain", "gain_low",
              "gain_high", "model_id"]
    changed = [one, two, third]
    pd.testing.assert_frame_equal(recs.loc[~recs["student_id"].isin(changed), values].reset_index(drop=True),
                                  before_recs.loc[~before_recs["student_id"].isin(changed), values]
                                  .reset_index(drop=True))
    pd.testing.assert_frame_equal(why.loc[~why["student_id"].isin(changed)].reset_index(drop=True),
                                  before_why.loc[~before_why["student_id"].isin(changed)].reset_index(drop=True))
    boost = recs.loc[recs["app"] == "boost"].set_index("student_id")
    was = short.set_index("student_id")
    for student, more in ((one, 1.0), (two, 2.0)):  # the same suggestion, from a little more use
        assert boost.loc[student, "current_minutes"] == pytest.approx(was.loc[student, "current_minutes"] + more)
        assert boost.loc[student, "suggested_minutes"] == was.loc[student, "suggested_minutes"]
        assert boost.loc[student, "expected_gain"] < was.loc[student, "expected_gain"]

    # the whole district re-scored from the same fit: nothing to change
    with engine.begin() as conn:
        conn.execute(recommend_state.update().values(table_settings="other"))
        conn.execute(job_runs.delete().where(job_runs.c.job == "recommendations", job_runs.c.as_of == night))
    whole = cycle(engine, landing, night, jobs=["recommendations"])
    assert "; 360 type 1 students, all re-scored (dataframe_planted was published with other settings (bands) " \
           "since the last scoring); " in whole.message, whole.message
    assert whole.rows_out == 0
    after_recs, after_why = published(engine)
    pd.testing.assert_frame_equal(after_recs, recs)
    pd.testing.assert_frame_equal(after_why, why)


def test_a_night_rescores_everyone_when_it_cannot_tell_who_changed(engine, fitted):
    """Rows deleted behind the job, then a roster file: each night re-scores every type 1
    student and says why; the deleted student's rows come back."""
    landing, hours = fitted
    recs, why = published(engine)
    gone = recs["student_id"].iloc[0]
    with engine.begin() as conn:
        conn.execute(recommendations.delete().where(recommendations.c.student_id == gone))
    night = cycle(engine, landing, date(2026, 11, 23))
    assert "; 360 type 1 students, all re-scored (the published rows are not as the scoring of 2026-11-22 left " \
           "them); " in night.message, night.message
    back, _ = published(engine)
    values = [c for c in recs.columns if not c.startswith("period")]
    pd.testing.assert_frame_equal(back[values], recs[values])
    pd.DataFrame({"student_id": hours.index[:3], "school_id": "school0", "grade": "5"}).to_csv(
        landing / "planted" / "students_moved.csv", index=False)
    roster = cycle(engine, landing, date(2026, 11, 24))
    assert "; 360 type 1 students, all re-scored (planted/students_moved.csv was loaded since and is not a file " \
           "whose rows it can follow); " in roster.message, roster.message


def test_the_change_log_waits_for_recommendations_only_while_its_fit_is_young(engine, fitted):
    """dailypull and most_used follow the log and prune it; a file recommendations has not
    followed stays, until the fit is old enough that its next run refits (and reads all)."""
    landing, hours = fitted
    s = config.parse({"districts": [{"id": "planted", "apps": APPS}]})
    followers = [j for j in JOBS if j != "recommendations"]

    def night(day: date):
        pd.DataFrame({"student_id": hours.index[:5], "app": "boost", "date": day.isoformat(), "minutes": 10.0}) \
            .to_csv(landing / "planted" / f"usage_{day}.csv", index=False)
        run_cycle(engine, s, districts=list(s.districts), jobs=followers, as_of=day, landing_dir=landing,
                  now=datetime.combine(day, datetime.min.time(), timezone.utc) + timedelta(hours=2))
        logged = table(engine, changes_logged, "planted").merge(table(engine, ingested_files, "planted"),
                                                                on="file_id")
        return sorted(logged["path"])

    assert night(date(2026, 11, 23)) == ["planted/usage_2026-11-23.csv"]  # kept for recommendations
    assert night(date(2026, 11, 28)) == ["planted/usage_2026-11-23.csv", "planted/usage_2026-11-28.csv"]
    assert night(date(2026, 11, 29)) == []  # the fit of 11-22 is 7 days old: its next run refits
    assert cycle(engine, landing, date(2026, 11, 29)).message.startswith("refitted: the fit of 2026-11-22 is 7 days")


def test_the_database_counts_the_changes_as_the_rule_defines_them(engine, fitted):
    """jobs.recommendations counts the refit rule's changes in SQL; analytics.refit.changes_since
    is the rule's definition on the rows: both agree on rewritten, added, later and new rows."""
    from analytics import refit
    from analytics.school_year import school_year_containing
    from jobs import recommendations as job
    from models import assessments, dataframe_table

    landing, hours = fitted
    folder = landing / "planted"
    ids = list(hours.index)
    pd.DataFrame({"student_id": ids[:4], "assessment_id": "unit1", "date": "2026-10-15", "score": 50.0}).to_csv(
        folder / "assessments_rewritten.csv", index=False)  # the fit's rows, written again
    pd.DataFrame({"student_id": ids[4:7], "assessment_id": "unit2", "date": "2026-11-23", "score": 60.0}).to_csv(
        folder / "assessments_later.csv", index=False)  # after the fit's day
    pd.DataFrame({"student_id": ["n1", "n2"], "assessment_id": "unit1", "date": "2026-11-20", "score": 70.0}).to_csv(
        folder / "assessments_new.csv", index=False)  # new type 1 students
    day = date(2026, 11, 23)
    cycle(engine, landing, day)
    s = config.parse({"districts": [{"id": "planted", "apps": APPS}]})
    [district] = s.districts
    fit, _ = job._stored_fit(engine, district)
    assert fit.fitted_as_of == date(2026, 11, 22)  # the night re-scored: the fit is the first one
    year = school_year_containing(day, s.school_year_start)
    table = dataframe_table("planted", APPS)
    with engine.connect() as conn:
        n, _, counted = job._changes(conn, district, table, year, day, fit)
        typed = pd.read_sql(select(table.c.student_id).where(table.c.type == 1), conn)["student_id"]
        rows = pd.read_sql(select(assessments.c.student_id, assessments.c.date, assessments.c.file_id).where(
            assessments.c.district_id == "planted", assessments.c.date.between(year.start, day)), conn)
    assert counted == refit.changes_since(fit, pd.Index(typed), rows)
    # 4 + 3 + 2 rows the fit did not read; added: the 2 new students and the 4 whose only row
    # was rewritten (they count as added and removed: more change, never less)
    assert (n, counted.assessments_changed, counted.added, counted.removed) == (362, 9, 6, 4)
