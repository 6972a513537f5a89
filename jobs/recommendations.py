"""recommendations: a validated model per district, per-app effects, and what each type 1
student should use more (the method is in analytics/recommend.py and the README).

Heavy: one instance at a time per district across the fleet (a database-wide lock); a run
that cannot take it is recorded as skipped. A run either refits (`model_runs` for every fit,
`app_effects`, `recommend_peers` and `recommend_state`: what the fit was made from) or, when
the rule of analytics/refit.py allows, re-scores from the stored fit without fitting anything:
the students whose inputs changed since the last scoring when it can tell who they are, else
every type 1 student. Both replace the district's `recommendations` and
`recommendation_reasons` in one transaction when they changed, through the same
analytics.scoring.score_students."""
from __future__ import annotations

import hashlib
import logging
import os
from datetime import date, timedelta

import numpy as np
import pandas as pd
from sqlalchemy import case, delete, distinct, func, or_, select, update

from analytics import refit, scoring
from analytics.school_year import school_year_containing
from config import District
from storage.ddl import existing_columns
from storage.database import code_point_order, snapshot
from storage.frames import insert_missing, read_frame, read_frames, replace_district_rows
from jobs import changes
from jobs.job import SKIPPED, JobContext, JobResult, checkpoint, plural
from jobs.most_used import NotPublished
from models import (
    app_effects, assessments, dailypull_state, dataframe_table, ingested_files, job_runs, model_runs, recommend_peers,
    recommend_state,
    recommendation_reasons, recommendations, score_averages, usage,
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
    year = school_year_containing(ctx.as_of, ctx.settings.school_year_start)
    digest = _settings_digest(district, year)
    fit, stored = _stored_fit(engine, district)
    if not ctx.force and _up_to_date(engine, district, ctx.as_of) and (fit is None or fit.settings == digest):
        return JobResult(status=SKIPPED, message=f"up to date: already computed for {ctx.as_of} and nothing it "
                                                 "reads has changed since (--force recomputes)")
    why = refit.before_reading(fit, as_of=ctx.as_of, settings=digest, force=ctx.force)
    if why is None and stored["scored_as_of"] is None:  # written before the medians were kept with the fit
        why = f"the fit of {fit.fitted_as_of} was stored without its bands' median use (an earlier release)"
    if why is None:
        done = _rescore(engine, district, ctx, year, fit, stored)
        if isinstance(done, JobResult):
            return done
        why = done
    return _run(engine, district, ctx, year=year, digest=digest, why=why)


def _settings_digest(district: District, year) -> str:
    """What a fit depends on besides the data: the apps, the assessment window, the minimums
    of the model basis and the school year. (The method's own constants are the code's: a
    release that changes them refits at the age limit, or at once with --force.)"""
    text = repr((tuple(sorted(district.apps)), district.assessment_window_days, district.recommend_min_students,
                 district.recommend_min_schools, district.recommend_min_users, str(year.start)))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _stored_fit(engine, district: District) -> tuple[refit.Fit | None, dict | None]:
    """The district's recommend_state row, as the rule's Fit and as stored."""
    with engine.connect() as conn:
        row = conn.execute(select(recommend_state).where(recommend_state.c.district_id == district.id)).mappings().first()
    if row is None:
        return None, None
    row = dict(row)
    return refit.Fit(fitted_as_of=row["fitted_as_of"], settings=row["settings"], students=row["students"],
                     assessments=row["assessments"], file_mark=row["file_mark"],
                     too_small=row["effects_model_id"] is None), row  # effects are fitted unless too small


def _file_mark(conn, district: District) -> int:
    """The highest ingested_files.file_id of the district: rows written later have a higher one."""
    return int(conn.execute(select(func.coalesce(func.max(ingested_files.c.file_id), 0))
                            .where(ingested_files.c.district_id == district.id)).scalar())


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


def _run(engine, district: District, ctx: JobContext, *, year, digest: str, why: str) -> JobResult:
    """The full path: read, fit, score every type 1 student, write (and store the fit)."""
    from analytics import recommend

    with engine.connect() as conn:  # before the inputs: a file loaded meanwhile counts as a change
        mark = _file_mark(conn, district)
    students, scores, daily = _read(engine, district, ctx.as_of, year)
    assessed = int(scores["student_id"].isin(students["student_id"]).sum())  # the type 1 students' rows
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

    explaining = effects_id = None
    if not outcome.scores:
        explaining = record("none", outcome.verdicts["none"], "none")
    for name, score in outcome.scores.items():
        basis = ("baseline" if name == recommend.BASELINE else "model" if name == outcome.chosen else "unused")
        model_id = record(name, outcome.verdicts[name], basis, score)
        if name == outcome.chosen:
            explaining = model_id
    effects = pd.DataFrame(columns=[c.name for c in app_effects.c if c.name != "district_id"])
    if outcome.effects is not None:
        resolved = int(outcome.effects["status"].eq(scoring.RESOLVED).sum())
        effects_id = record(
            EFFECTS, f"per-app effects: least squares adjusted for prior score, earlier use, school and grade, "
                     f"clustered by school, corrected for {int(outcome.effects['tested'].sum())} apps tested; "
                     f"{plural(resolved, 'app')} resolved with higher scores"
                     + (f"; fitted on a sample of {outcome.trained_on:,} of the {n:,} type 1 students (the smallest "
                        "hashes of student_id)" if outcome.trained_on < n else ""), "effects")
        effects = outcome.effects.drop(columns=["tested"]).assign(model_id=effects_id, evidence=scoring.EVIDENCE)
        if explaining is None:
            explaining = min((r for r in runs if r["basis"] == "unused"),
                             key=lambda r: np.inf if r["cv_mae"] is None else r["cv_mae"])["model_id"]
        if outcome.chosen:
            explaining = effects_id  # what each gain is: the app's adjusted effect x extra hours
    picks, why_not = _publishable(district, ctx, outcome.picks, outcome.reasons, explaining)
    state = dict(district_id=district.id, fitted_as_of=ctx.as_of, settings=digest, model_id=explaining,
                 effects_model_id=effects_id, chosen=outcome.chosen, district_reason=outcome.district_reason,
                 students=n, assessments=assessed, file_mark=mark, fitted_at=ctx.clock())
    peers = _peer_rows(district, outcome.medians)

    checkpoint("recommendations.fitted")  # fitted and scored, no transaction open
    with engine.begin() as conn:
        insert_missing(conn, model_runs, runs)
        written = _write(conn, district, ctx, picks, why_not)
        written += replace_district_rows(conn, app_effects, district.id, effects.assign(district_id=district.id),
                                         stamp={})
        conn.execute(delete(recommend_state).where(recommend_state.c.district_id == district.id))
        conn.execute(recommend_state.insert().values(**state))
        replace_district_rows(conn, recommend_peers, district.id, peers, stamp={})
        _scored(conn, district, ctx.as_of, mark)
        checkpoint("recommendations.written")
    result = JobResult(rows_in=n, rows_out=written)
    chosen = f"{outcome.chosen} passed the gate" if outcome.chosen else (outcome.district_reason or "")
    result.message = f"refitted: {why}; {plural(n, 'type 1 student')}; {chosen}; " + _counts(picks, why_not)
    return result


def _rescore(engine, district: District, ctx: JobContext, year, fit: refit.Fit, stored: dict) -> JobResult | str:
    """The type 1 students' recommendations from the stored fit (its gate verdict,
    app_effects and the bands' median use, recommend_peers), without fitting: the result, or
    why the data call for a refit after all.

    Re-scores only the students whose inputs changed since the rows were last scored
    (`_scope`), and moves every other row's period to the as-of day in one UPDATE; when it
    cannot tell who changed, every type 1 student. Reads only what the picks use: the
    students' bands and schools, their assessment days this year, the usage of the apps with
    a resolved effect in the windows before those days, and their first day of use this year."""
    table = dataframe_table(district.id, district.apps)
    with snapshot(engine) as conn:
        if existing_columns(conn, table.name) is None:
            raise NotPublished(f"{table.name} does not exist yet: run dailypull for {district.id} first")
        mark = _file_mark(conn, district)
        n, schools, changed = _changes(conn, district, table, year, ctx.as_of, fit)
        too_small = n < district.recommend_min_students or schools < district.recommend_min_schools
        if (why := refit.after_reading(fit, changed, too_small=too_small)) is not None:
            return why
        effects = read_frame(conn, select(app_effects.c.app, app_effects.c.effect, app_effects.c.ci_low,
                                          app_effects.c.ci_high, app_effects.c.status, app_effects.c.model_id)
                             .where(app_effects.c.district_id == district.id))
        if set(effects["model_id"]) != ({stored["effects_model_id"]} - {None}):
            return f"the stored app_effects are not those of the fit of {fit.fitted_as_of}"
        medians = _stored_medians(conn, district)
        scope, whole = _scope(conn, district, table, year, ctx.as_of, stored)
        students = None if scope is None else changes.students_table(conn, "recommend_scope", scope)
        features = _features(conn, district, table, year, ctx.as_of, effects, stored, students)
        rescored = len(features)
        if students is not None:
            students.drop(conn)
    picks, reasons = scoring.score_students(features, effects, sorted(district.apps), chosen=stored["chosen"] is not None,
                                            district_reason=stored["district_reason"], medians=medians)
    picks, why_not = _publishable(district, ctx, picks, reasons, stored["model_id"])
    checkpoint("recommendations.fitted")  # scored, no transaction open
    with engine.begin() as conn:
        if scope is None:
            written = _write(conn, district, ctx, picks, why_not)
        else:  # the scope's rows, then every other row's period
            students = changes.students_table(conn, "recommend_scope", scope)
            written = _write(conn, district, ctx, picks, why_not, students=students) + _move_period(conn, district, ctx)
            students.drop(conn)
        _scored(conn, district, ctx.as_of, mark)
        checkpoint("recommendations.written")
    chosen = f"{stored['chosen']} passed the gate" if stored["chosen"] else (stored["district_reason"] or "")
    scored = (f"{plural(n, 'type 1 student')}, all re-scored ({whole})" if scope is None else
              f"{plural(n, 'type 1 student')}, {rescored:,} of them re-scored (their inputs changed since the "
              f"scoring of {stored['scored_as_of']}; the others keep their rows, with the period moved)")
    return JobResult(rows_in=n, rows_out=written, message=(
        f"re-scored from the fit of {fit.fitted_as_of} ({refit.rescore_reason(fit, changed, ctx.as_of)}); "
        f"{scored}; {chosen} (at the fit); " + _counts(picks, why_not, scope is not None)))


def _changes(conn, district: District, table, year, as_of: date, fit: refit.Fit) -> tuple[int, int, refit.Changes]:
    """The type 1 students now, their schools, and how they and their assessment rows differ
    from the fit's: analytics.refit.changes_since's counts, counted by the database (the
    rows are not read)."""
    typed = select(table.c.student_id).where(table.c.type == 1)
    n, schools = conn.execute(select(func.count(), func.count(distinct(table.c.school_id)))
                              .where(table.c.type == 1)).one()
    seen = (assessments.c.file_id <= fit.file_mark) & (assessments.c.date <= fit.fitted_as_of)
    rows, rows_seen, kept = conn.execute(select(
        func.count(), func.count(case((seen, 1))), func.count(distinct(case((seen, assessments.c.student_id)))),
    ).where(assessments.c.district_id == district.id, assessments.c.date.between(year.start, as_of),
            assessments.c.student_id.in_(typed))).one()
    return int(n), int(schools), refit.Changes(
        students=int(n), added=int(n) - int(kept), removed=max(fit.students - int(kept), 0), assessments=int(rows),
        assessments_changed=int(rows) - int(rows_seen))


def _scope(conn, district: District, table, year, as_of: date, stored: dict) -> tuple[pd.Series | None, str]:
    """The students whose rows a re-score must recompute, or None and why every type 1
    student must be.

    Since the last scoring (its day and file mark, recommend_state), a student's picks
    change only if their band or school changed, or the assessment days or the usage before
    those days: the students of an assessment row written by a later file or dated after
    that day (a student becomes type 1 only so), and of a usage file whose earliest day is
    before it (jobs.changes.dated_since: features count only days before an assessment made
    by then, so a night's file of that day or later names nobody). Anything else loaded
    since (a roster, a CLIx tree, xAPI, a removal: a student stops being type 1 only so),
    another bands setting behind dailypull's table, a day before the last scoring's, or
    published rows not as the last scoring left them: every student."""
    last = stored["scored_as_of"]
    if last > as_of:
        return None, f"the as-of day is before the last scoring's ({last})"
    state = _table_settings(conn, district)
    if state is None or state != stored["table_settings"]:
        return None, f"{table.name} was published with other settings (bands) since the last scoring"
    if _published_students(conn, district) != stored["scored_students"]:
        return None, f"the published rows are not as the scoring of {last} left them"
    named, why = changes.dated_since(conn, district.id, stored["scored_mark"], last)
    if named is None:
        return None, why
    assessed = read_frame(conn, select(assessments.c.student_id).where(
        assessments.c.district_id == district.id, assessments.c.date.between(year.start, as_of),
        or_(assessments.c.file_id > stored["scored_mark"], assessments.c.date > last)).distinct())
    return (pd.concat([named, assessed["student_id"].astype("string")], ignore_index=True)
            .drop_duplicates().sort_values(ignore_index=True)), ""


def _table_settings(conn, district: District) -> str | None:
    """dailypull_state.settings: the digest of the bands (and apps, school year) behind the
    published table's `performance`."""
    return conn.execute(select(dailypull_state.c.settings).where(dailypull_state.c.district_id == district.id)).scalar()


def _published_students(conn, district: District) -> int:
    """Students with published rows: a reason, or recommendations (each has a rank 1)."""
    reasons = select(func.count()).select_from(recommendation_reasons).where(
        recommendation_reasons.c.district_id == district.id)
    picked = select(func.count()).select_from(recommendations).where(
        recommendations.c.district_id == district.id, recommendations.c.rank == 1)
    return int(conn.execute(reasons).scalar()) + int(conn.execute(picked).scalar())


def _features(conn, district: District, table, year, as_of: date, effects: pd.DataFrame, stored: dict,
              students) -> pd.DataFrame:
    """The type 1 students' scoring features (performance, used_before, win_<app> of each
    resolved app), all of them or those in the table `students`. The usage reads are not
    narrowed to the type 1 students in SQL (that join cost PostgreSQL 2 s of 2.4 at 100,000
    students); other students' rows are dropped on arrival."""
    def narrow(statement, column):
        return statement if students is None else statement.where(column.in_(select(students.c.student_id)))

    typed = read_frame(conn, narrow(select(table.c.student_id, table.c.school_id, table.c.performance)
                                    .where(table.c.type == 1), table.c.student_id))
    scores = read_frame(conn, narrow(select(assessments.c.student_id, assessments.c.date, assessments.c.score)
                                     .where(assessments.c.district_id == district.id,
                                            assessments.c.date.between(year.start, as_of)), assessments.c.student_id))
    ids = pd.Index(typed["student_id"].astype(str))
    rows = scoring.assessment_rows(typed.assign(student_id=ids, type=1, grade=None, prior_average=np.nan), scores)
    good = [a for a in sorted(district.apps)  # in id order, as the full path takes them
            if a in set(effects.loc[effects["status"] == scoring.RESOLVED, "app"])]
    features = rows[["performance"]].assign(used_before=False)
    if not stored["chosen"] or not len(rows):
        return features
    cutoffs = rows["cutoff"]
    if good:  # the windows' usage of the apps a pick can name, nothing else
        first = max(cutoffs.min().date() - timedelta(days=district.assessment_window_days), year.start)
        daily = _read_usage(conn, narrow(select(usage.c.student_id, usage.c.app, usage.c.date, usage.c.minutes).where(
            usage.c.district_id == district.id, usage.c.date.between(first, min(cutoffs.max().date(), as_of)),
            usage.c.app.in_(good), usage.c.minutes > 0), usage.c.student_id)
            .order_by(*code_point_order(conn, usage.c.student_id, usage.c.app, usage.c.date)), ids, good)
        windows = scoring.usage_features(rows, daily, good, window_days=district.assessment_window_days,
                                         year_start=year.start)
        features = features.join(windows[[scoring.win(a) for a in good]])
        del daily, windows
    first_use = read_frame(conn, narrow(select(usage.c.student_id, func.min(usage.c.date).label("first_use")).where(
        usage.c.district_id == district.id, usage.c.date.between(year.start, as_of),
        usage.c.app.in_(district.apps), usage.c.minutes > 0), usage.c.student_id).group_by(usage.c.student_id))
    first_use = pd.to_datetime(first_use.set_index(first_use["student_id"].astype(str))["first_use"])
    return features.assign(used_before=(first_use.reindex(features.index) < cutoffs).to_numpy())


def _stored_medians(conn, district: District) -> pd.DataFrame:
    """The fit's bands' median window minutes (recommend_peers): index band, columns apps."""
    rows = read_frame(conn, select(recommend_peers.c.band, recommend_peers.c.app, recommend_peers.c.minutes)
                      .where(recommend_peers.c.district_id == district.id))
    return rows.pivot(index="band", columns="app", values="minutes") if len(rows) else pd.DataFrame()


def _peer_rows(district: District, medians: pd.DataFrame | None) -> pd.DataFrame:
    """recommend_peers' rows of a fit's medians (a band and app without an amount: no row)."""
    if medians is None or medians.empty:
        return pd.DataFrame(columns=["district_id", "band", "app", "minutes"])
    long = medians.rename_axis(index="band", columns="app").stack().rename("minutes").reset_index()
    return long.loc[long["minutes"].notna()].assign(district_id=district.id)[["district_id", "band", "app", "minutes"]]


def _move_period(conn, district: District, ctx: JobContext) -> int:
    """Every row's period to the as-of day's (rows written by this run have it already)."""
    start, end = scoring.period(ctx.as_of, district.assessment_window_days)
    return conn.execute(update(recommendations).where(
        recommendations.c.district_id == district.id,
        or_(recommendations.c.period_start.is_distinct_from(start), recommendations.c.period_end.is_distinct_from(end)),
    ).values(period_start=start, period_end=end, computed_at=ctx.clock())).rowcount


def _scored(conn, district: District, as_of: date, mark: int) -> None:
    """What the published rows were scored from, for the next night's scope; and the change
    log, which this job follows too, forgotten up to every follower's mark."""
    conn.execute(update(recommend_state).where(recommend_state.c.district_id == district.id)
                 .values(scored_as_of=as_of, scored_mark=mark, table_settings=_table_settings(conn, district),
                         scored_students=_published_students(conn, district)))
    changes.forget_followed(conn, district.id)


def _publishable(district: District, ctx: JobContext, picks: pd.DataFrame, reasons: pd.Series,
                 model_id: str | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """score_students' picks and reasons as the rows of recommendations and recommendation_reasons."""
    start, end = scoring.period(ctx.as_of, district.assessment_window_days)
    rows = picks.assign(
        district_id=district.id, expected_gain=picks["gain"], basis="model", model_id=model_id,
        period_start=start, period_end=end, evidence=scoring.EVIDENCE, caveat=scoring.CAVEAT,
    )[["district_id", "student_id", "rank", "app", "current_minutes", "suggested_minutes", "expected_gain",
       "gain_low", "gain_high", "period_start", "period_end", "evidence", "caveat", "basis", "model_id"]]
    why = reasons.rename("reason").rename_axis("student_id").reset_index().assign(
        district_id=district.id, model_id=model_id)
    return rows, why


def _write(conn, district: District, ctx: JobContext, picks: pd.DataFrame, why: pd.DataFrame, *, students=None) -> int:
    """Replace the district's rows (or those of the students in the table `students`)."""
    written = replace_district_rows(conn, recommendations, district.id, picks, stamp={"computed_at": ctx.clock()},
                                    students=students)
    return written + replace_district_rows(conn, recommendation_reasons, district.id, why,
                                           stamp={"computed_at": ctx.clock()}, students=students)


def _counts(picks: pd.DataFrame, why: pd.DataFrame, scoped: bool = False) -> str:
    of = " of those re-scored" if scoped else ""
    return (f"{plural(picks['student_id'].nunique(), 'student')}{of} with recommendations, "
            f"{plural(len(why), 'student')} without (each with its reason)")
