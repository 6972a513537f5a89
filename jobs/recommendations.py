"""recommendations: a validated model per district, per-app effects, and what each type 1
student should use more (the method is in analytics/recommend.py and the README).

Heavy: one instance at a time per district across the fleet (a database-wide lock); a run
that cannot take it is recorded as skipped. Writes `model_runs` (every fit), and replaces
the district's `recommendations` and `app_effects` in one transaction when they changed.
"""
from __future__ import annotations

import hashlib
import logging
from datetime import date

import pandas as pd
from sqlalchemy import func, select

from analytics.school_year import school_year_containing
from config import District
from storage.ddl import existing_columns
from storage.database import snapshot
from storage.frames import insert_missing, read_frame, replace_district_rows
from jobs.job import SKIPPED, JobContext, JobResult, checkpoint, plural
from jobs.most_used import NotPublished
from models import (
    app_effects, assessments, dataframe_table, job_runs, model_runs, recommendations, score_averages, usage,
)

log = logging.getLogger(__name__)

RANDOM_STATE = 0
BASELINE = "dummy_mean"  # analytics.recommend.BASELINE (not imported here: scikit-learn loads slowly)
EFFECTS = "linear_effects"


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


def _prerequisites_missing(engine, district: District, as_of: date) -> list[str]:
    """dailypull and most_used must have succeeded for the district and the same as-of day."""
    with engine.connect() as conn:
        done = set(conn.execute(select(job_runs.c.job).where(
            job_runs.c.district_id == district.id, job_runs.c.as_of == as_of,
            job_runs.c.job.in_(("dailypull", "most_used")),
            job_runs.c.status.in_(("succeeded", "completed_with_errors")),
        ).distinct()).scalars())
    return [job for job in ("dailypull", "most_used") if job not in done]


def _read(engine, district: District, as_of: date, year) -> tuple[pd.DataFrame, pd.DataFrame]:
    table = dataframe_table(district.id, district.apps)
    with snapshot(engine) as conn:
        if existing_columns(conn, table.name) is None:
            raise NotPublished(f"{table.name} does not exist yet: run dailypull for {district.id} first")
        students = read_frame(conn, select(table.c.student_id, table.c.school_id, table.c.type, table.c.score,
                                           table.c.performance).where(table.c.type == 1))
        latest = read_frame(conn, select(assessments.c.student_id, func.max(assessments.c.date).label("latest_assessment"))
                            .where(assessments.c.district_id == district.id,
                                   assessments.c.date.between(year.start, as_of))
                            .group_by(assessments.c.student_id))
        prior = read_frame(conn, select(score_averages.c.student_id, score_averages.c.school_year,
                                        score_averages.c.score.label("prior_average"))
                           .where(score_averages.c.district_id == district.id,
                                  score_averages.c.school_year < year.label, score_averages.c.as_of <= as_of))
        daily = read_frame(conn, select(usage.c.student_id, usage.c.app, usage.c.date, usage.c.minutes)
                           .where(usage.c.district_id == district.id, usage.c.date.between(year.start, as_of),
                                  usage.c.app.in_(district.apps), usage.c.minutes > 0))
    prior = prior.sort_values(["student_id", "school_year"]).drop_duplicates("student_id", keep="last")
    students = (
        students.merge(latest, on="student_id", how="left", validate="1:1")
        .merge(prior[["student_id", "prior_average"]], on="student_id", how="left", validate="1:1")
        .astype({"type": "Int64"})
    )
    return students, daily


def _model_id(district: District, as_of: date, algorithm: str, fingerprint: str) -> str:
    return hashlib.sha256(f"{district.id}|{as_of}|{algorithm}|{fingerprint}".encode()).hexdigest()[:24]


def _run(engine, district: District, ctx: JobContext) -> JobResult:
    # scikit-learn takes ~2 s to import: only this job needs it, not --status, --health or cron's
    # other jobs, so it is imported here.
    from analytics import recommend

    year = school_year_containing(ctx.as_of, ctx.settings.school_year_start)
    students, daily = _read(engine, district, ctx.as_of, year)
    features = recommend.student_features(
        students, daily, apps=district.apps, year_start=year.start, as_of=ctx.as_of,
        assessment_days=district.assessment_window_days,
    )
    columns = recommend.feature_columns(district.apps)
    X, y = features[columns], features["score"].astype("float64")
    fingerprint = hashlib.sha256(
        pd.util.hash_pandas_object(features[[*columns, "score"]], index=True).to_numpy().tobytes()
    ).hexdigest()
    n = len(features)
    runs: list[dict] = []
    effects = pd.DataFrame(columns=["app", "effect", "ci_low", "ci_high", "students", "model_id"])
    chosen = None

    def record(algorithm: str, verdict: str, score=None, baseline=None) -> str:
        model_id = _model_id(district, ctx.as_of, algorithm, fingerprint)
        runs.append(dict(
            model_id=model_id, district_id=district.id, trained_at=ctx.clock(), algorithm=algorithm, students=n,
            cv_mae=None if score is None else score.cv_mae, baseline_mae=None if baseline is None else baseline.cv_mae,
            cv_r2=None if score is None else score.cv_r2, as_of=ctx.as_of, verdict=verdict,
        ))
        return model_id

    if n < recommend.MIN_STUDENTS:
        explaining = record("none", f"too few type 1 students to validate a model ({n} < {recommend.MIN_STUDENTS}): "
                                    "recommendations come from higher-band peers")
    else:
        models = recommend.candidate_models(RANDOM_STATE)
        schools = features["school_id"] if features["school_id"].notna().all() else None
        scores = recommend.cross_validate(X, y, schools, models, RANDOM_STATE)
        chosen, verdicts = recommend.gate(scores)
        ids = {name: record(name, verdicts[name], scores[name], scores[recommend.BASELINE]) for name in models}
        candidates = [m for m in models if m != recommend.BASELINE]
        explaining = ids[chosen] if chosen else ids[min(candidates, key=lambda m: scores[m].cv_mae)]
        effects = recommend.app_effects(features, district.apps, random_state=RANDOM_STATE)
        effects = effects.assign(model_id=record(
            EFFECTS, "per-app effects: ridge of score on window hours and prior average, "
                              "200 bootstrap resamples", None, scores[recommend.BASELINE]))
    basis = "model" if chosen else "peers"
    for row in runs:
        row["basis"] = run_basis(row, basis, explaining)

    targets = recommend.next_band_targets(features, recommend.peer_medians(features, district.apps), district.apps)
    if chosen:
        fitted = models[chosen].fit(X, y)
        picks = recommend.model_recommendations(fitted, features, targets, district.apps)
        picks = picks.assign(expected_gain=picks["gain"])
    else:
        picks = recommend.peer_recommendations(features, targets, district.apps).assign(expected_gain=None)
    picks = picks.assign(district_id=district.id, basis=basis, model_id=explaining)[
        ["district_id", "student_id", "rank", "app", "current_minutes", "suggested_minutes", "expected_gain",
         "basis", "model_id"]
    ]

    with engine.begin() as conn:
        insert_missing(conn, model_runs, runs)
        written = replace_district_rows(conn, recommendations, district.id, picks, stamp={"computed_at": ctx.clock()})
        written += replace_district_rows(conn, app_effects, district.id, effects.assign(district_id=district.id),
                                         stamp={})
        checkpoint("recommendations.written")
    best = next((r for r in runs if r["model_id"] == explaining), None)
    result = JobResult(rows_in=n, rows_out=written)
    result.message = (
        f"{plural(n, 'type 1 student')}; basis {basis}; {plural(picks['student_id'].nunique(), 'student')} "
        "with recommendations" + (f"; {best['algorithm']}: {best['verdict']}" if best else "")
    )
    return result


def run_basis(row: dict, basis: str, explaining: str) -> str:
    """What a `model_runs` row was to the recommendations published with it: `model` (the
    fit they came from), `peers` (they came from higher-band peers; this row says why: too
    few students, or the best candidate, which failed the gate), `baseline` (the yardstick a
    candidate must beat, never a basis), `effects` (the fit behind `app_effects`), or
    `unused` (a candidate that another one beat, or that failed the gate while another passed)."""
    if row["algorithm"] == BASELINE:
        return "baseline"
    if row["algorithm"] == EFFECTS:
        return "effects"
    if row["model_id"] == explaining:
        return basis
    return "unused"
