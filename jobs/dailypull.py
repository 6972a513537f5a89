"""dailypull: refresh `dataframe_<district_id>`, one row per student, one column per app.

The database does the heavy aggregation (minutes per student and app, active days); the
assembly, type codes and bands are `analytics/`. Publishing compares the new rows with the
published ones and, in one transaction, reshapes app columns if the app list changed,
deletes students that are gone, and rewrites only rows that changed (their `updated_at`
moves; unchanged rows keep theirs). A reader sees the old table or the new one.
"""
from __future__ import annotations

import hashlib
import logging

import numpy as np
import pandas as pd
from sqlalchemy import Table, delete, func, select, union

from analytics.dailypull import student_frame
from analytics.school_year import school_year_containing
from analytics.student_types import student_types
from analytics.usage_rollup import activity_summary, last_active_day
from config import District
from storage.ddl import AddColumn, DropColumn, existing_columns
from storage.database import code_point_order, is_postgres, snapshot
from storage.frames import bulk_insert, read_frame, read_frame_via_copy
from jobs import changes, ingest, rollup
from jobs.job import JobContext, JobResult, checkpoint, plural
from models import (
    SOURCE_TABLES, assessments, dailypull_state, dataframe_table, forecasts, score_averages, students, usage,
    usage_activity, usage_totals,
)

log = logging.getLogger(__name__)

_DELETE_BATCH = 5_000
PUBLISH_SLICE = 200_000  # students compared and written at a time on a full run (memory, not speed)


def run(engine, district: District, ctx: JobContext) -> JobResult:
    year = school_year_containing(ctx.as_of, ctx.settings.school_year_start)
    start = ctx.settings.school_year_start
    digest = _settings_digest(district, start)
    with snapshot(engine) as conn:
        mark = changes.latest_file(conn, district.id)  # loads take the lock: none lower commits later
        night, why_full = (None, "--force") if ctx.force else _night_scope(conn, district, start, year.start,
                                                                           ctx.as_of, digest)
        rolled = None
        if night is not None:
            inputs = _read_night_inputs(conn, district, year.start, ctx.as_of, night)
            if inputs is None:
                night, why_full = None, f"usage dated after {ctx.as_of} arrived"
        if night is None:
            rolled = rollup.read(conn, district.id, start, year.start, ctx.as_of) if not ctx.force else None
            inputs = _read_inputs(conn, district, year.start, ctx.as_of, rolled)
        # a later night may follow only the new data when these rows hold every student
        # computed from complete rollups with no usage after as-of
        followable = night is not None or rolled is not None or (
            rollup.is_complete(conn, district.id, start) and not _usage_after(conn, district.id, year, ctx.as_of))
    types = student_types(
        inputs["assessments"], inputs["forecasts"], inputs["averages"], year=year, as_of=ctx.as_of
    )
    frame = student_frame(
        inputs["ids"]["student_id"], inputs["roster"], types, inputs["activity"], inputs["app_minutes"],
        apps=district.apps, bands=district.bands,
    )
    state = dict(as_of=ctx.as_of, year_start=year.start, settings=digest, file_mark=mark) if followable else None
    written, removed, totals = publish(engine, district, frame, ctx, scope=night, state=state)
    unlisted = sorted(set(inputs["app_minutes"]["app"]) - set(district.apps))
    result = JobResult(rows_in=len(frame), rows_out=written)
    result.details = {"students": totals["students"], "types": totals["types"], "bands": totals["bands"],
                      "unlisted_apps": unlisted}
    if night is not None:
        result.message = (f"{plural(totals['students'], 'student')} ({year.label} to {ctx.as_of}); "
                          f"{plural(len(frame), 'student')} with new data recomputed, {plural(written, 'row')} written")
        result.details["from"] = "usage rollups, the students with new data"
    else:
        result.message = (f"{plural(len(frame), 'student')} ({year.label} to {ctx.as_of}); {plural(written, 'row')} "
                          f"written, {removed:,} removed")
        result.details["from"] = "usage rollups" if rolled is not None else "usage"
        result.details["full_because"] = why_full
    if night is None and rolled is None and not ctx.force:
        with engine.begin() as conn:  # once per district: later nights read the rollups
            ingest.lock_district(conn, district)
            if not rollup.is_complete(conn, district.id, start):
                rollup.rebuild(conn, district.id, start)
    if unlisted:
        result.message += f"; usage of apps not listed (no column): {', '.join(unlisted)}"
    return result


def _settings_digest(district: District, start: tuple[int, int]) -> str:
    """What the published rows depend on besides the data: the app list, bands, year start."""
    text = repr((tuple(district.apps), sorted(district.bands.items()), tuple(start)))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _usage_after(conn, district_id: str, year, as_of) -> bool:
    return conn.execute(select(usage.c.student_id).where(
        usage.c.district_id == district_id, usage.c.date > as_of, usage.c.date <= year.end).limit(1)).first() is not None


def _night_scope(conn, district: District, start: tuple[int, int], year_start, as_of, digest: str
                 ) -> tuple[pd.Series | None, str]:
    """The students a night must recompute, or None and why the run must be full.

    A night follows the new data when the last publish was computed, for a day up to this
    one, with the same settings and school year, from complete rollups; the published table
    still has its rows; and every file loaded since named its students (`jobs.changes`).
    Then the students to recompute are those, and the students with an assessment, forecast
    or average dated after the last publish's day, up to this one (they count from today).
    """
    state = conn.execute(select(dailypull_state).where(dailypull_state.c.district_id == district.id)).first()
    if state is None:
        return None, "no earlier publish to follow on from"
    if state.settings != digest or state.year_start != year_start or state.as_of > as_of:
        return None, "the settings, the school year or the day differ from the last publish's"
    table = dataframe_table(district.id, district.apps)
    if existing_columns(conn, table.name) is None or \
            conn.execute(select(func.count()).select_from(table)).scalar() != state.students:
        return None, f"{table.name} is not as the last publish left it"
    if not rollup.is_complete(conn, district.id, start):
        return None, "the usage rollups are not complete"
    changed, why = changes.since(conn, district.id, state.file_mark)
    if changed is None:
        return None, why
    dated = [select(assessments.c.student_id).where(assessments.c.district_id == district.id,
                                                    assessments.c.date > state.as_of, assessments.c.date <= as_of),
             select(forecasts.c.student_id).where(forecasts.c.district_id == district.id,
                                                  forecasts.c.date > state.as_of, forecasts.c.date <= as_of),
             select(score_averages.c.student_id).where(score_averages.c.district_id == district.id,
                                                       score_averages.c.as_of > state.as_of,
                                                       score_averages.c.as_of <= as_of)]
    newly_dated = read_frame(conn, union(*dated))["student_id"].astype("string")
    scope = pd.concat([changed, newly_dated], ignore_index=True).drop_duplicates().sort_values(ignore_index=True)
    return scope, ""


def _read_inputs(conn, district: District, start, as_of, rolled: dict | None) -> dict[str, pd.DataFrame]:
    """Everything dailypull needs for one district, aggregated where the database can.

    `rolled`: the usage inputs from the rollups (`jobs.rollup.read`), or None to aggregate
    the school year's rows of `usage`.
    """
    in_district = {name: t.c.district_id == district.id for name, t in SOURCE_TABLES.items()}
    in_year = usage.c.date.between(start, as_of)
    # GROUP BY, not a bare SELECT: the database reads usage's key in order and hands over one
    # row per student, instead of the union de-duplicating a million rows.
    others = [select(t.c.student_id).where(in_district[name]).group_by(t.c.student_id)
              for name, t in SOURCE_TABLES.items() if rolled is None or t is not usage]
    if rolled is None:
        rolled = {
            "app_minutes": read_frame(conn, select(usage.c.student_id, usage.c.app,
                                                   func.sum(usage.c.minutes).label("minutes"))
                                      .where(in_district["usage"], in_year)
                                      .group_by(usage.c.student_id, usage.c.app)),
            "activity": read_frame(conn, select(
                usage.c.student_id,
                func.count(usage.c.date.distinct()).label("active_days"),
                func.min(usage.c.date).label("first_active"),
                func.max(usage.c.date).label("last_active"),
            ).where(in_district["usage"], in_year, usage.c.minutes > 0).group_by(usage.c.student_id)),
        }
        ids = read_frame(conn, union(*others))
    else:
        ids = pd.concat([read_frame(conn, union(*others)), rolled["usage_ids"]], ignore_index=True)
    return {
        "ids": ids,
        "roster": read_frame(conn, select(students.c.student_id, students.c.school_id, students.c.grade)
                             .where(in_district["students"])),
        "app_minutes": rolled["app_minutes"],
        "activity": rolled["activity"],
        "assessments": read_frame(conn, select(assessments.c.student_id, assessments.c.date, assessments.c.score)
                                  .where(in_district["assessments"], assessments.c.date.between(start, as_of))
                                  .order_by(*code_point_order(conn, assessments.c.student_id,
                                                              assessments.c.assessment_id))),
        "forecasts": read_frame(conn, select(forecasts.c.student_id, forecasts.c.date, forecasts.c.score)
                                .where(in_district["forecasts"], forecasts.c.date.between(start, as_of))),
        "averages": read_frame(conn, select(score_averages.c.student_id, score_averages.c.school_year,
                                            score_averages.c.as_of, score_averages.c.score)
                               .where(in_district["score_averages"])),
    }


def _read_night_inputs(conn, district: District, year_start, as_of, scope: pd.Series
                       ) -> dict[str, pd.DataFrame] | None:
    """dailypull's inputs for the night's students only: their rollups and their rows; None
    when one of them has usage after as-of (then the rollups cannot answer: a full run)."""
    night = changes.students_table(conn, "dailypull_scope", scope)

    def theirs(statement, table):
        return statement.join_from(table, night, night.c.student_id == table.c.student_id) \
            .where(table.c.district_id == district.id)

    totals = read_frame_via_copy(conn, theirs(select(usage_totals.c.student_id, usage_totals.c.app,
                                                     usage_totals.c.minutes), usage_totals)
                                 .where(usage_totals.c.year_start == year_start))
    activity = read_frame(conn, theirs(select(usage_activity.c.student_id, usage_activity.c.days), usage_activity)
                          .where(usage_activity.c.year_start == year_start))
    activity["days"] = activity["days"].map(bytes)
    latest = last_active_day(activity, year_start)
    if latest is not None and latest > as_of:  # a file from ahead of the clock: the full path handles it
        night.drop(conn)
        return None
    inputs = {
        "ids": pd.DataFrame({"student_id": scope}),
        "app_minutes": totals,
        "activity": activity_summary(activity, year_start, as_of),
        "roster": read_frame(conn, theirs(select(students.c.student_id, students.c.school_id, students.c.grade),
                                          students)),
        "assessments": read_frame(conn, theirs(select(assessments.c.student_id, assessments.c.date,
                                                      assessments.c.score), assessments)
                                  .where(assessments.c.date.between(year_start, as_of))
                                  .order_by(*code_point_order(conn, assessments.c.student_id,
                                                              assessments.c.assessment_id))),
        "forecasts": read_frame(conn, theirs(select(forecasts.c.student_id, forecasts.c.date, forecasts.c.score),
                                             forecasts).where(forecasts.c.date.between(year_start, as_of))),
        "averages": read_frame(conn, theirs(select(score_averages.c.student_id, score_averages.c.school_year,
                                                   score_averages.c.as_of, score_averages.c.score), score_averages)),
    }
    night.drop(conn)
    return inputs


def _comparable(frame: pd.DataFrame, table: Table) -> pd.DataFrame:
    """The published or new rows with one dtype per column, so that they can be compared."""
    out = {}
    for column in table.columns:
        if column.name == "updated_at" or column.name not in frame:
            continue
        values = frame[column.name]
        python_type = column.type.python_type
        if python_type is float:
            out[column.name] = pd.to_numeric(values).astype("float64")
        elif python_type is int:
            out[column.name] = pd.to_numeric(values).astype("Int64")
        elif column.name in ("first_active", "last_active"):
            out[column.name] = pd.to_datetime(values).astype("datetime64[s]")
        else:
            out[column.name] = values.astype("string")
    return pd.DataFrame(out, index=frame.index)


def _changed_rows(new: pd.DataFrame, old: pd.DataFrame) -> pd.Series:
    """For each row of `new` (aligned with `old` on index), whether any value differs."""
    changed = pd.Series(False, index=new.index)
    for name in new.columns:
        a, b = new[name], old[name]
        if a.dtype == "float64":
            same = np.isclose(a.to_numpy(), b.to_numpy(), rtol=1e-9, atol=1e-9, equal_nan=True)
        else:
            same = (a == b).fillna(False).to_numpy() | (a.isna() & b.isna()).to_numpy()
        changed |= ~same
    return changed


def publish(engine, district: District, frame: pd.DataFrame, ctx: JobContext, *, scope: pd.Series | None = None,
            state: dict | None = None) -> tuple[int, int, dict]:
    """Make `dataframe_<id>` hold exactly `frame` (plus updated_at), in one transaction; with
    `scope` (a night's students), make those students' rows equal `frame` and leave the rest.
    `state`: what this publish was computed from, kept for the next night (None: the next
    run is full). Returns (rows written, rows removed, the district's counts after).
    """
    table = dataframe_table(district.id, district.apps)
    written = removed = 0
    checkpoint("dailypull.publishing")  # computed, no transaction open
    with engine.begin() as conn:
        columns = existing_columns(conn, table.name)
        if columns is None:
            table.create(conn)
            written, removed = _write_changes(conn, table, frame, frame.iloc[:0], ctx)
        elif scope is None:  # the whole district, a slice of students at a time (memory)
            _reshape(conn, table, columns)
            frame = frame.sort_values("student_id", ignore_index=True)
            key = table.c.student_id.collate("C") if is_postgres(conn) else table.c.student_id
            for first in range(0, max(len(frame), 1), PUBLISH_SLICE):
                part = frame.iloc[first:first + PUBLISH_SLICE]
                where = []  # the slices' bounds cover every id, so students gone from the district go too
                if first > 0:
                    where.append(key >= part["student_id"].iloc[0])
                if first + PUBLISH_SLICE < len(frame):
                    where.append(key < frame["student_id"].iloc[first + PUBLISH_SLICE])
                published = read_frame_via_copy(conn, select(table).where(*where))
                w, r = _write_changes(conn, table, part, published, ctx)
                written, removed = written + w, removed + r
        else:  # the settings digest matched, so the columns are the district's
            night = changes.students_table(conn, "dailypull_scope", scope)
            published = read_frame_via_copy(conn, select(table).join_from(
                table, night, night.c.student_id == table.c.student_id))
            night.drop(conn)
            written, removed = _write_changes(conn, table, frame, published, ctx)
        checkpoint("dailypull.written")  # the rows are written, not yet committed
        totals = _district_counts(conn, table)
        conn.execute(delete(dailypull_state).where(dailypull_state.c.district_id == district.id))
        if state is not None:
            conn.execute(dailypull_state.insert().values(district_id=district.id, students=totals["students"],
                                                         published_at=ctx.clock(), **state))
            changes.forget_followed(conn, district.id)
    log.debug("%s: %d rows written, %d removed", table.name, written, removed)
    return written, removed, totals


def _write_changes(conn, table: Table, frame: pd.DataFrame, published: pd.DataFrame, ctx: JobContext
                   ) -> tuple[int, int]:
    """Make the published rows `published` (read from `table`) equal `frame`: delete the
    students gone and the rows that changed, insert the changed and new ones. Returns
    (rows written, rows removed)."""
    new = _comparable(frame, table).set_index("student_id", drop=False)
    old = _comparable(published, table).set_index("student_id", drop=False)
    gone = old.index.difference(new.index)
    both = new.index.intersection(old.index)
    changed = both[_changed_rows(new.loc[both], old.loc[both]).to_numpy()]
    fresh = new.index.difference(old.index)
    stale = gone.append(changed)
    for start in range(0, len(stale), _DELETE_BATCH):
        batch = stale[start:start + _DELETE_BATCH]
        conn.execute(delete(table).where(table.c.student_id.in_(list(batch))))
    rows = frame.set_index("student_id", drop=False).loc[changed.append(fresh)]
    bulk_insert(conn, table, rows.assign(updated_at=ctx.clock()).reset_index(drop=True))  # when written
    return len(rows), len(gone)


def _district_counts(conn, table: Table) -> dict:
    """Students, and students per type and band, of the published table (by the database)."""
    types = {(None if k is None else int(k)): int(n) for k, n in conn.execute(
        select(table.c.type, func.count()).group_by(table.c.type)).all()}
    bands = {k: int(n) for k, n in conn.execute(select(table.c.performance, func.count())
                                                .group_by(table.c.performance)).all()}
    return {"students": sum(types.values()), "types": dict(sorted(types.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))),
            "bands": dict(sorted(bands.items(), key=lambda kv: (-kv[1], str(kv[0]))))}


def _reshape(conn, table: Table, columns: list[str]) -> None:
    """Add and drop `app_` columns so the published table matches the district's app list."""
    wanted = {c.name for c in table.columns if c.name.startswith("app_")}
    present = {c for c in columns if c.startswith("app_")}
    for name in sorted(wanted - present):
        conn.execute(AddColumn(table, table.c[name]))
        log.info("%s: app column %s added", table.name, name)
    for name in sorted(present - wanted):
        conn.execute(DropColumn(table, name))
        log.info("%s: app column %s dropped", table.name, name)
