"""Keeping a district's usage rollups (`usage_totals`, `usage_activity`) in step with `usage`.

Ingest folds the rows it writes into them in the same transaction; dailypull reads them
instead of the school year's rows when they can answer. `usage_rollup_state` says that a
district's rollups are complete for the current school_year_start setting: a district
whose first usage arrives after this was deployed starts complete (empty), an older one is
built once by dailypull.
"""
from __future__ import annotations

import logging
from datetime import date, datetime, timezone

import pandas as pd
from sqlalchemy import Column, MetaData, Table, delete, select, true
from sqlalchemy.dialects import postgresql, sqlite

from analytics.usage_rollup import activity_summary, last_active_day, merge_activity, rollup
from jobs import changes
from storage.database import is_postgres
from storage.frames import bulk_insert, read_frame, read_frame_via_copy
from models import usage, usage_activity, usage_rollup_state, usage_totals

log = logging.getLogger(__name__)

_READ_BATCH = 2_000  # students per query when recomputing some of them


def setting(start: tuple[int, int]) -> str:
    return f"{start[0]:02d}-{start[1]:02d}"


def is_complete(conn, district_id: str, start: tuple[int, int]) -> bool:
    found = conn.execute(select(usage_rollup_state.c.school_year_start)
                         .where(usage_rollup_state.c.district_id == district_id)).scalar()
    return found == setting(start)


def start_if_empty(conn, district_id: str, start: tuple[int, int]) -> bool:
    """Whether the district's rollups are complete; a district with no usage yet starts so."""
    if is_complete(conn, district_id, start):
        return True
    if conn.execute(select(usage.c.student_id).where(usage.c.district_id == district_id).limit(1)).first():
        return False  # rows from before the rollups: dailypull builds them once
    _mark_complete(conn, district_id, start)
    return True


def mark_incomplete(conn, district_id: str) -> None:
    """Usage was written without being folded in: dailypull must rebuild before reading them."""
    conn.execute(delete(usage_rollup_state).where(usage_rollup_state.c.district_id == district_id))


def _mark_complete(conn, district_id: str, start: tuple[int, int]) -> None:
    conn.execute(delete(usage_rollup_state).where(usage_rollup_state.c.district_id == district_id))
    conn.execute(usage_rollup_state.insert().values(
        district_id=district_id, school_year_start=setting(start), built_at=datetime.now(timezone.utc)))


def _upsert(conn, table: Table, frame: pd.DataFrame, district_id: str, set_) -> None:
    """Insert `frame`'s rows or update existing keys with `set_(table, excluded)`, in bulk
    (COPY into a temporary table on PostgreSQL, then one INSERT ... ON CONFLICT)."""
    incoming = Table(f"incoming_{table.name}", MetaData(), *(Column(c.name, c.type) for c in table.columns),
                     prefixes=["TEMPORARY"])
    incoming.create(conn)
    bulk_insert(conn, incoming, frame.assign(district_id=district_id))
    statement = (postgresql.insert if is_postgres(conn) else sqlite.insert)(table)
    statement = statement.from_select([c.name for c in table.columns], select(incoming).where(true()))
    statement = statement.on_conflict_do_update(
        index_elements=[c.name for c in table.primary_key.columns], set_=set_(table, statement.excluded))
    conn.execute(statement)
    incoming.drop(conn)


def _no_bitmaps() -> pd.DataFrame:
    return pd.DataFrame({"year_start": pd.Series([], dtype="datetime64[s]"), "student_id": pd.Series([], dtype="string"),
                         "days": pd.Series([], dtype=object)})


def _has_rows(conn, table: Table, district_id: str) -> bool:
    return conn.execute(select(table.c.district_id).where(table.c.district_id == district_id).limit(1)).first() is not None


def add(conn, district_id: str, totals: pd.DataFrame, activity: pd.DataFrame) -> None:
    """Fold rows whose keys were not in `usage` before (their totals and active days). A
    district with no rollup rows yet (its first file) takes them with a plain bulk insert:
    there is nothing to add to or merge with."""
    totals = totals.drop(columns="weeks", errors="ignore")  # usage_weekly's, not stored here
    if len(totals):
        if _has_rows(conn, usage_totals, district_id):
            _upsert(conn, usage_totals, totals, district_id,
                    lambda table, excluded: {"minutes": table.c.minutes + excluded.minutes})
        else:
            bulk_insert(conn, usage_totals, totals.assign(district_id=district_id))
    if len(activity) and not _has_rows(conn, usage_activity, district_id):
        bulk_insert(conn, usage_activity, activity.assign(district_id=district_id))
    elif len(activity):
        years = sorted(pd.to_datetime(activity["year_start"]).dt.date.unique())
        students = sorted(activity["student_id"].dropna().unique())
        # Only these students' bitmaps: reading the district's every bitmap for each batch of
        # a file made a night quadratic in the district's size. Many students (a night names
        # ~115,000 of a million) are joined from a temporary table in one query: IN lists of
        # 2,000 ids took 58% of a 1M-student night's ingest (py-spy, 16.6 s).
        bitmaps = select(usage_activity.c.year_start, usage_activity.c.student_id, usage_activity.c.days).where(
            usage_activity.c.district_id == district_id, usage_activity.c.year_start.in_(years))
        if len(students) > _READ_BATCH:
            named = changes.students_table(conn, "rollup_students", pd.Series(students, dtype="string"))
            parts = [read_frame(conn, bitmaps.join_from(usage_activity, named,
                                                        named.c.student_id == usage_activity.c.student_id))]
            named.drop(conn)
        else:
            parts = [read_frame(conn, bitmaps.where(usage_activity.c.student_id.in_(students)))]
        parts = [part for part in parts if len(part)]
        old = pd.concat(parts, ignore_index=True) if parts else _no_bitmaps()
        old = old.assign(year_start=pd.to_datetime(old["year_start"]).astype("datetime64[s]"),
                         student_id=old["student_id"].astype("string"),
                         days=old["days"].map(bytes))
        merged = merge_activity(activity, old) if len(old) else activity
        if len(old):  # write only the bitmaps that changed
            before = old.set_index(["year_start", "student_id"])["days"]
            after = merged.set_index(["year_start", "student_id"])["days"]
            same = after.index.isin(before.index)
            same[same] = (after[same].to_numpy() == before.reindex(after.index[same]).to_numpy())
            merged = merged.loc[~same]
        if len(merged):
            _upsert(conn, usage_activity, merged, district_id, lambda table, excluded: {"days": excluded.days})


def recompute(conn, district_id: str, start: tuple[int, int], students: list[str]) -> None:
    """Recompute the rollups of these students from `usage` (after rows were replaced)."""
    for first in range(0, len(students), _READ_BATCH):
        batch = students[first:first + _READ_BATCH]
        for table in (usage_totals, usage_activity):
            conn.execute(delete(table).where(table.c.district_id == district_id, table.c.student_id.in_(batch)))
        rows = read_frame(conn, select(usage.c.student_id, usage.c.app, usage.c.date, usage.c.minutes)
                          .where(usage.c.district_id == district_id, usage.c.student_id.in_(batch)))
        if len(rows):
            add(conn, district_id, *rollup(rows, start))


def rebuild(conn, district_id: str, start: tuple[int, int]) -> None:
    """Build the district's rollups from all of its usage and mark them complete."""
    for table in (usage_totals, usage_activity):
        conn.execute(delete(table).where(table.c.district_id == district_id))
    students = [r[0] for r in conn.execute(select(usage.c.student_id).where(usage.c.district_id == district_id)
                                           .group_by(usage.c.student_id).order_by(usage.c.student_id))]
    recompute(conn, district_id, start, students)
    _mark_complete(conn, district_id, start)
    log.info("%s: usage rollups built for %d students", district_id, len(students))


def read(conn, district_id: str, start: tuple[int, int], year_start: date, as_of: date) -> dict | None:
    """dailypull's usage inputs from the rollups, or None when they cannot answer: they are
    not complete, or usage exists after `as_of` in the year (a past as-of, a clock ahead)."""
    if not is_complete(conn, district_id, start):
        return None
    activity = read_frame(conn, select(usage_activity.c.student_id, usage_activity.c.days).where(
        usage_activity.c.district_id == district_id, usage_activity.c.year_start == year_start))
    activity["days"] = activity["days"].map(bytes)
    latest = last_active_day(activity, year_start)
    if latest is not None and latest > as_of:
        return None
    totals = read_frame_via_copy(conn, select(usage_totals.c.year_start, usage_totals.c.student_id,
                                              usage_totals.c.app, usage_totals.c.minutes)
                                 .where(usage_totals.c.district_id == district_id))
    this_year = pd.to_datetime(totals["year_start"]).dt.date == year_start
    return {"app_minutes": totals.loc[this_year, ["student_id", "app", "minutes"]].reset_index(drop=True),
            "activity": activity_summary(activity, year_start, as_of),
            "usage_ids": totals[["student_id"]].drop_duplicates(ignore_index=True)}  # every school year's

