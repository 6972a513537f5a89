"""recommendations: a validated model per district, per-app effects, and what each type 1
student should use more (the method is in analytics/recommend.py and the README).

Heavy: one instance at a time per district across the fleet (a database-wide lock); a run
that cannot take it is recorded as skipped. Writes `model_runs` (every fit), and replaces
the district's `recommendations`, `recommendation_reasons` and `app_effects` in one
transaction when they changed.
"""
from __future__ import annotations

import hashlib
import logging
import os
from datetime import date

import numpy as np
import pandas as pd
from sqlalchemy import func, select

from analytics.school_year import school_year_containing
from config import District
from storage.ddl import existing_columns
from storage.database import code_point_order, snapshot
from storage.frames import insert_missing, read_frame, read_frames, replace_district_rows
from jobs.job import SKIPPED, JobContext, JobResult, checkpoint, plural
from jobs.most_used import NotPublished
from models import (
    app_effects, assessments, dataframe_table, job_runs, model_runs, recommendation_reasons, recommendations,
    score_averages, usage,
)

log = logging.getLogger(__name__)

RANDOM_STATE = 0
EFFECTS = "adjusted_effects"


def run(engine, district: District, ctx: JobContext) -> JobResult:
    """Heavy: the cycle runs it holding the fleet-wide lock (runner.jobrun.HEAVY)."""
    missing = _prerequisites_missing(engine, district, ctx.as_of)
    if missing:
        return JobResult(status=SKIPPED, message=f"not run: needs {' and '.join(missing)} to have succeeded "
                                                 f"for {ctx.as_of} first")
    if not ctx.force and _up_to_date(engine, district, ctx.as_of):
        return JobResult(status=SKIPPED, message=f"up to date: already computed for {ctx.as_of} and nothing it "
                                                 "reads has changed since (--force recomputes)")
    return _run(engine, district, ctx)


def _up_to_date(engine, district: District, as_of: date) -> bool:
    """Whether recommendations succeeded for this day after the last change to their inputs."""
    ok = ("succeeded", "completed_with_errors")
    mine = (job_runs.c.district_id == district.id) & (job_runs.c.as_of == as_of)
    with engine.connect() as conn:
        computed = conn.execute(select(func.max(job_runs.c.finished_at)).where(
            mine, job_runs.c.job == "recommendations", job_runs.c.status.in_(ok))).scalar()
        changed = conn.execute(select(func.max(job_runs.c.finished_at)).where(
            mine, job_runs.c.job.in_(("dailypull", "most_used")), job_runs.c.status.in_(ok),
            job_runs.c.rows_out > 0)).scalar()
    return computed is not None and (changed is None or computed > changed)


def _cores() -> int:
    """The cores this process may run on (its CPU affinity): BLAS and OpenMP threads for the
    fits. The job is heavy, so the fleet-wide lock lets one run at a time."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def _figure(score, name: str) -> float | None:
    """A Score's figure for model_runs: NULL when there is none (no score, or a model stopped
    before every fold was scored)."""
    value = None if score is None else getattr(score, name)
    return None if value is None or not np.isfinite(value) else float(value)


def _prerequisites_missing(engine, district: District, as_of: date) -> list[str]:
    """dailypull and most_used must have succeeded for the district and the same as-of day."""
    with engine.connect() as conn:
        done = set(conn.execute(select(job_runs.c.job).where(
            job_runs.c.district_id == district.id, job_runs.c.as_of == as_of,
            job_runs.c.job.in_(("dailypull", "most_used")),
            job_runs.c.status.in_(("succeeded", "completed_with_errors")),
        ).distinct()).scalars())
    return [job for job in ("dailypull", "most_used") if job not in done]


def _read(engine, district: District, as_of: date, year) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Type 1 students (with their latest earlier-year average), this year's assessments and
    usage up to the as-of day.

    Every read is in key order (student_id, then the rest of the table's key; text in
    code-point order on both databases): the model's rows, and the order its sums are
    summed in, are then the same whatever the tables' physical order (a reload, a VACUUM
    FULL, a dailypull that rewrote the rows), so the same data give bit-identical output."""
    table = dataframe_table(district.id, district.apps)
    apps = sorted(district.apps)
    with snapshot(engine) as conn:
        if existing_columns(conn, table.name) is None:
            raise NotPublished(f"{table.name} does not exist yet: run dailypull for {district.id} first")
        students = read_frame(conn, select(table.c.student_id, table.c.school_id, table.c.grade, table.c.type,
                                           table.c.score, table.c.performance).where(table.c.type == 1)
                              .order_by(*code_point_order(conn, table.c.student_id)))
        scores = read_frame(conn, select(assessments.c.student_id, assessments.c.date, assessments.c.score)
                            .where(assessments.c.district_id == district.id,
                                   assessments.c.date.between(year.start, as_of))
                            .order_by(*code_point_order(conn, assessments.c.student_id, assessments.c.date,
                                                        assessments.c.assessment_id)))
        prior = read_frame(conn, select(score_averages.c.student_id, score_averages.c.school_year,
                                        score_averages.c.score.label("prior_average"))
                           .where(score_averages.c.district_id == district.id,
                                  score_averages.c.school_year < year.label, score_averages.c.as_of <= as_of)
                           .order_by(*code_point_order(conn, score_averages.c.student_id,
                                                       score_averages.c.school_year)))
        daily = _read_usage(conn, select(usage.c.student_id, usage.c.app, usage.c.date, usage.c.minutes).where(
            usage.c.district_id == district.id, usage.c.date.between(year.start, as_of),
            usage.c.app.in_(apps), usage.c.minutes > 0,
            usage.c.student_id.in_(select(table.c.student_id).where(table.c.type == 1)))
            .order_by(*code_point_order(conn, usage.c.student_id, usage.c.app, usage.c.date)),
            students["student_id"], apps)
    prior = prior.sort_values(["student_id", "school_year"], kind="stable").drop_duplicates("student_id", keep="last")
    students = (
        students.merge(prior[["student_id", "prior_average"]], on="student_id", how="left", validate="1:1")
        .astype({"type": "Int64"})
    )
    return students, scores, daily


def _read_usage(conn, statement, student_ids: pd.Series, apps) -> pd.DataFrame:
    """The usage rows of `statement` (student_id, app, date, minutes), compact: student_id
    and app categorical (codes into the type 1 students and the district's apps), date
    datetime64[s], minutes float64; read in blocks, so the year's rows are never held as
    text or Python values (1M students x a year: ~16M rows, ~21 bytes each here)."""
    students = pd.Index(pd.unique(student_ids.astype(str)))
    apps = pd.Index(list(apps))
    who, app, day, minutes = [], [], [], []
    for block in read_frames(conn, statement):
        codes = students.get_indexer(block["student_id"].astype(str))
        known = codes >= 0
        who.append(codes[known].astype("int32"))
        app.append(apps.get_indexer(block["app"].astype(str))[known].astype("int16"))
        day.append(pd.to_datetime(block["date"]).to_numpy().astype("datetime64[s]")[known])
        minutes.append(block["minutes"].to_numpy(dtype="float64")[known])
    def joined(parts, dtype):
        return np.concatenate(parts) if parts else np.array([], dtype=dtype)
    return pd.DataFrame({
        "student_id": pd.Categorical.from_codes(joined(who, "int32"), categories=students),
        "app": pd.Categorical.from_codes(joined(app, "int16"), categories=apps),
        "date": joined(day, "datetime64[s]"),
        "minutes": joined(minutes, "float64"),
    })


def _model_id(district: District, as_of: date, algorithm: str, fingerprint: str) -> str:
    return hashlib.sha256(f"{district.id}|{as_of}|{algorithm}|{fingerprint}".encode()).hexdigest()[:24]


def _run(engine, district: District, ctx: JobContext) -> JobResult:
    # scikit-learn takes ~2 s to import: only this job needs it, not --status, --health or cron's
    # other jobs, so it is imported here.
    from analytics import recommend

    year = school_year_containing(ctx.as_of, ctx.settings.school_year_start)
    students, scores, daily = _read(engine, district, ctx.as_of, year)
    checkpoint("recommendations.read")  # before the fits: a job that lost its lock stops here
    outcome = recommend.recommend(
        students, scores, daily, sorted(district.apps), window_days=district.assessment_window_days, year_start=year.start,
        min_students=district.recommend_min_students, min_schools=district.recommend_min_schools,
        min_users=district.recommend_min_users, random_state=RANDOM_STATE, threads=_cores(),
        train_max_students=recommend.TRAIN_MAX_STUDENTS,
    )
    del students, scores, daily  # what was read is not needed to write: freed first (1M students: ~0.5 GB)
    fingerprint = hashlib.sha256(pd.util.hash_pandas_object(outcome.features, index=True).to_numpy().tobytes()
                                 ).hexdigest()
    outcome.features = None  # and the features (1M students x 40 apps: ~0.7 GB)
    if outcome.trained_on < outcome.students:  # the same data fitted on another sample is another fit
        fingerprint += f"|sample {outcome.trained_on}"
    n = outcome.students
    runs: list[dict] = []

    def record(algorithm: str, verdict: str, basis: str, score=None) -> str:
        model_id = _model_id(district, ctx.as_of, algorithm, fingerprint)
        baseline = outcome.scores.get(recommend.BASELINE)
        runs.append(dict(
            model_id=model_id, district_id=district.id, trained_at=ctx.clock(), algorithm=algorithm, students=n,
            cv_mae=_figure(score, "cv_mae"), baseline_mae=_figure(baseline, "cv_mae"), cv_r2=_figure(score, "cv_r2"), as_of=ctx.as_of, verdict=verdict, basis=basis,
            validation=outcome.design,
        ))
        return model_id

    explaining = None
    if not outcome.scores:
        explaining = record("none", outcome.verdicts["none"], "none")
    for name, score in outcome.scores.items():
        basis = ("baseline" if name == recommend.BASELINE else "model" if name == outcome.chosen else "unused")
        model_id = record(name, outcome.verdicts[name], basis, score)
        if name == outcome.chosen:
            explaining = model_id
    effects = pd.DataFrame(columns=[c.name for c in app_effects.c if c.name != "district_id"])
    if outcome.effects is not None:
        resolved = int(outcome.effects["status"].eq("resolved: higher scores").sum())
        effects_id = record(
            EFFECTS, f"per-app effects: least squares adjusted for prior score, earlier use, school and grade, "
                     f"clustered by school, corrected for {int(outcome.effects['tested'].sum())} apps tested; "
                     f"{plural(resolved, 'app')} resolved with higher scores"
                     + (f"; fitted on a sample of {outcome.trained_on:,} of the {n:,} type 1 students (the smallest "
                        "hashes of student_id)" if outcome.trained_on < n else ""), "effects")
        effects = outcome.effects.drop(columns=["tested"]).assign(model_id=effects_id, evidence=recommend.EVIDENCE)
        if explaining is None:
            explaining = min((r for r in runs if r["basis"] == "unused"),
                             key=lambda r: np.inf if r["cv_mae"] is None else r["cv_mae"])["model_id"]
        if outcome.chosen:
            explaining = effects_id  # what each gain is: the app's adjusted effect x extra hours
    start, end = recommend.period(ctx.as_of, district.assessment_window_days)
    picks = outcome.picks.assign(
        district_id=district.id, expected_gain=outcome.picks["gain"], basis="model", model_id=explaining,
        period_start=start, period_end=end, evidence=recommend.EVIDENCE, caveat=recommend.CAVEAT,
    )[["district_id", "student_id", "rank", "app", "current_minutes", "suggested_minutes", "expected_gain",
       "gain_low", "gain_high", "period_start", "period_end", "evidence", "caveat", "basis", "model_id"]]
    why = outcome.reasons.rename("reason").rename_axis("student_id").reset_index().assign(
        district_id=district.id, model_id=explaining)

    checkpoint("recommendations.fitted")  # fitted and scored, no transaction open
    with engine.begin() as conn:
        insert_missing(conn, model_runs, runs)
        written = replace_district_rows(conn, recommendations, district.id, picks, stamp={"computed_at": ctx.clock()})
        written += replace_district_rows(conn, recommendation_reasons, district.id, why,
                                         stamp={"computed_at": ctx.clock()})
        written += replace_district_rows(conn, app_effects, district.id, effects.assign(district_id=district.id),
                                         stamp={})
        checkpoint("recommendations.written")
    result = JobResult(rows_in=n, rows_out=written)
    chosen = f"{outcome.chosen} passed the gate" if outcome.chosen else (outcome.district_reason or "")
    result.message = (
        f"{plural(n, 'type 1 student')}; {chosen}; {plural(picks['student_id'].nunique(), 'student')} "
        f"with recommendations, {plural(len(why), 'student')} without (each with its reason)"
    )
    return result
