"""dailypull: refresh `dataframe_<district_id>`, one row per student, one column per app.

The database does the heavy aggregation (minutes per student and app, active days); the
assembly, type codes and bands are `analytics/`. Publishing compares the new rows with the
published ones and, in one transaction, reshapes app columns if the app list changed,
deletes students that are gone, and rewrites only rows that changed (their `updated_at`
moves; unchanged rows keep theirs). A reader sees the old table or the new one.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from sqlalchemy import Table, delete, func, select, union

from analytics.dailypull import student_frame
from analytics.school_year import school_year_containing
from analytics.student_types import student_types
from config import District
from storage.ddl import AddColumn, DropColumn, existing_columns
from storage.database import snapshot
from storage.frames import bulk_insert, read_frame, read_frame_via_copy
from jobs import ingest, rollup
from jobs.job import JobContext, JobResult, checkpoint, plural
from models import SOURCE_TABLES, assessments, dataframe_table, forecasts, score_averages, students, usage

log = logging.getLogger(__name__)

_DELETE_BATCH = 5_000


def run(engine, district: District, ctx: JobContext) -> JobResult:
    year = school_year_containing(ctx.as_of, ctx.settings.school_year_start)
    start = ctx.settings.school_year_start
    with snapshot(engine) as conn:
        rolled = None if ctx.force else rollup.read(conn, district.id, start, year.start, ctx.as_of)
        inputs = _read_inputs(conn, district, year.start, ctx.as_of, rolled)
    types = student_types(
        inputs["assessments"], inputs["forecasts"], inputs["averages"], year=year, as_of=ctx.as_of
    )
    frame = student_frame(
        inputs["ids"]["student_id"], inputs["roster"], types, inputs["activity"], inputs["app_minutes"],
        apps=district.apps, bands=district.bands,
    )
    written, removed = publish(engine, district, frame, ctx)
    unlisted = sorted(set(inputs["app_minutes"]["app"]) - set(district.apps))
    result = JobResult(rows_in=len(frame), rows_out=written)
    result.details = {
        "students": len(frame),
        "types": frame["type"].value_counts(dropna=False).sort_index().to_dict(),
        "bands": frame["performance"].value_counts(dropna=False).to_dict(),
        "unlisted_apps": unlisted,
    }
    result.message = (f"{plural(len(frame), 'student')} ({year.label} to {ctx.as_of}); {plural(written, 'row')} "
                      f"written, {removed:,} removed")
    result.details["from"] = "usage rollups" if rolled is not None else "usage"
    if rolled is None and not ctx.force:
        with engine.begin() as conn:  # once per district: later nights read the rollups
            ingest.lock_district(conn, district)
            if not rollup.is_complete(conn, district.id, start):
                rollup.rebuild(conn, district.id, start)
    if unlisted:
        result.message += f"; usage of apps not listed (no column): {', '.join(unlisted)}"
    return result


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
                                  .order_by(assessments.c.student_id, assessments.c.assessment_id)),
        "forecasts": read_frame(conn, select(forecasts.c.student_id, forecasts.c.date, forecasts.c.score)
                                .where(in_district["forecasts"], forecasts.c.date.between(start, as_of))),
        "averages": read_frame(conn, select(score_averages.c.student_id, score_averages.c.school_year,
                                            score_averages.c.as_of, score_averages.c.score)
                               .where(in_district["score_averages"])),
    }


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


def publish(engine, district: District, frame: pd.DataFrame, ctx: JobContext) -> tuple[int, int]:
    """Make `dataframe_<id>` hold exactly `frame` (plus updated_at), in one transaction.

    Returns (rows written, rows removed).
    """
    table = dataframe_table(district.id, district.apps)
    with engine.begin() as conn:
        columns = existing_columns(conn, table.name)
        if columns is None:
            table.create(conn)
            published = pd.DataFrame(columns=[c.name for c in table.columns])
        else:
            _reshape(conn, table, columns)
            published = read_frame_via_copy(conn, select(table))

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
        checkpoint("dailypull.written")
    log.debug("%s: %d rows written, %d removed", table.name, len(rows), len(gone))
    return len(rows), len(gone)


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
