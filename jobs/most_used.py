"""most_used: each student's most used apps per window, and the district's app summary.

Reads what dailypull published (type, band, last day of usage) and the latest assessment
of each student; works out each student's windows (analytics/most_used.py), and lets the
database do the rest, so the school year's usage never comes into Python: the windows go
into a temporary table, the database sums each student's minutes per window and app
(a join of `usage` on the windows), ranks them, and compares the new top apps with the
published ones. `most_used_software` and `district_app_summary` are rewritten for the
district in one transaction, and only when something changed. Memory follows the number
of students (their windows), never the number of usage rows.
"""
from __future__ import annotations

import hashlib
import logging

import pandas as pd
from sqlalchemy import (
    Column, MetaData, String, Table, and_, delete, exists, func, literal, or_, select, union_all,
)

from analytics.most_used import ALL, YEAR_TO_DATE, student_windows
from analytics.school_year import school_year_containing
from config import District
from storage.ddl import existing_columns
from storage.database import analyze, is_postgres, snapshot
from storage.frames import bulk_insert, read_frame, read_frame_via_copy, replace_district_rows
from jobs import changes
from jobs.job import JobContext, JobResult, checkpoint, plural
from models import (
    assessments, dataframe_table, district_app_summary, most_used_minutes, most_used_software, most_used_state,
    most_used_windows, usage,
)

log = logging.getLogger(__name__)

TOLERANCE = 1e-9  # minutes and shares this close are the same (sums added in another order)


class NotPublished(RuntimeError):
    pass


def _scratch(name: str, *columns: Column) -> Table:
    return Table(name, MetaData(), *columns, prefixes=["TEMPORARY"])


def _top_table() -> Table:
    columns = [Column(c.name, c.type, primary_key=c.primary_key) for c in most_used_software.columns
               if c.name not in ("district_id", "computed_at")]
    return _scratch("most_used_top", *columns)


def _settings_digest(district: District, year_start) -> str:
    """What the rows depend on besides the data: the apps, windows, top n and school year."""
    text = repr((tuple(district.apps), district.assessment_window_days, district.latest_window_days,
                 district.most_used_top_n, str(year_start)))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def run(engine, district: District, ctx: JobContext) -> JobResult:
    year = school_year_containing(ctx.as_of, ctx.settings.school_year_start)
    table = dataframe_table(district.id, district.apps)
    digest = _settings_digest(district, year.start)
    with snapshot(engine) as conn:
        if existing_columns(conn, table.name) is None:
            raise NotPublished(f"{table.name} does not exist yet: run dailypull for {district.id} first")
        file_mark = changes.latest_file(conn, district.id)
        scope, why_full = (None, "--force") if ctx.force else _night_scope(conn, district, table, year.start,
                                                                             ctx.as_of, digest)
        scope_t = None if scope is None else changes.students_table(conn, "most_used_scope", scope)

        def theirs(statement, source):
            if scope_t is None:
                return statement
            return statement.join_from(source, scope_t, scope_t.c.student_id == source.c.student_id)

        students = read_frame_via_copy(conn, theirs(select(table.c.student_id, table.c.type, table.c.performance,
                                                           table.c.last_active), table))
        latest = read_frame(conn, theirs(select(assessments.c.student_id,
                                                func.max(assessments.c.date).label("latest_assessment")), assessments)
                            .where(assessments.c.district_id == district.id,
                                   assessments.c.date.between(year.start, ctx.as_of))
                            .group_by(assessments.c.student_id))
    students = students.merge(latest, on="student_id", how="left", validate="1:1").astype({"type": "Int64"})
    windows = student_windows(
        students, year_start=year.start, as_of=ctx.as_of,
        assessment_days=district.assessment_window_days, latest_days=district.latest_window_days,
    )
    del students, latest

    with engine.begin() as conn:
        if is_postgres(conn):  # the reads below and the comparison see one snapshot
            conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        scope_t = None if scope is None else changes.students_table(conn, "most_used_scope", scope)
        for kept in (most_used_minutes, most_used_windows):  # the students recomputed: all, or the night's
            mine = kept.c.district_id == district.id
            if scope_t is None:
                conn.execute(delete(kept).where(mine))
            else:
                conn.execute(delete(kept).where(mine, kept.c.student_id.in_(select(scope_t.c.student_id))))
        bulk_insert(conn, most_used_windows, windows[["student_id", "window", "window_start", "window_end", "type",
                                                      "performance"]].assign(district_id=district.id))
        del windows
        _sum_minutes(conn, district, scope_t)
        if scope is None and is_postgres(conn):
            # Statistics of what was just written, before the queries that join it (without
            # them, a first run at 1M students spent 15 minutes in the summary's join) and for
            # a night's plans, which start from its students by these keys.
            for kept in (most_used_windows, most_used_minutes):
                analyze(conn, kept)
        top_t = _top_table()
        top_t.drop(conn, checkfirst=True)
        top_t.create(conn)
        _rank(conn, district.id, top_t, district.most_used_top_n, scope_t)
        stamp = {"computed_at": ctx.clock()}  # the moment they are written, not the cycle's start
        written = _replace_top(conn, district.id, top_t, stamp, scope_t)
        summary = _summary(conn, district.id).assign(district_id=district.id)
        written += replace_district_rows(conn, district_app_summary, district.id, summary, stamp=stamp)
        counts = dict(conn.execute(select(top_t.c.window, func.count()).where(top_t.c.rank == 1)
                                   .group_by(top_t.c.window)).all())
        mine = (most_used_minutes.c.district_id == district.id) & (most_used_minutes.c.window == "year_to_date")
        rows_in = conn.execute(_only(select(func.coalesce(func.sum(most_used_minutes.c.usage_rows), 0)).where(mine),
                                     most_used_minutes, scope_t)).scalar()
        top_t.drop(conn)
        if scope_t is not None:
            scope_t.drop(conn)
        conn.execute(delete(most_used_state).where(most_used_state.c.district_id == district.id))
        conn.execute(most_used_state.insert().values(district_id=district.id, as_of=ctx.as_of, settings=digest,
                                                     file_mark=file_mark))
        changes.forget_followed(conn, district.id)
        checkpoint("most_used.written")
    result = JobResult(rows_in=int(rows_in), rows_out=written)
    ranked = ", ".join(f"{window} {plural(n, 'student')}" for window, n in sorted(counts.items()))
    if scope is None:
        result.message = (f"students ranked: {ranked}" if ranked
                          else "no student has usage in the school year: none ranked")
        result.details = {"full_because": why_full}
    else:
        result.message = (f"{plural(len(scope), 'student')} with new data re-ranked"
                          + (f" ({ranked})" if ranked else ""))
        result.details = {"night": len(scope)}
    result.message += f"; {plural(written, 'row')} written" if written else "; unchanged: nothing written"
    return result


def _only(statement, source: Table, scope_t: Table | None):
    """`statement` restricted to the night's students (all students when `scope_t` is None)."""
    if scope_t is None:
        return statement
    return statement.where(source.c.student_id.in_(select(scope_t.c.student_id)))


def _night_scope(conn, district: District, table: Table, year_start, as_of, digest: str
                 ) -> tuple[pd.Series | None, str]:
    """The students a night must re-rank, or None and why the run must be full.

    A night follows on from the last run when it was for a day up to this one with the same
    settings and school year, and every file loaded since named its students (jobs.changes).
    Its students: those, the students whose type, band or last day of usage in the published
    table is not what their kept windows were made from (a forecast or average that became
    known, a row dailypull rewrote), those with an assessment dated after the last run's day,
    up to this one (a type 1 student's window ends on the latest), and those gone from the
    table. Minutes change only through files, so a file the log cannot follow makes it full.
    """
    state = conn.execute(select(most_used_state).where(most_used_state.c.district_id == district.id)).first()
    if state is None:
        return None, "no earlier run to follow on from"
    if state.settings != digest or state.as_of > as_of:
        return None, "the settings, the school year or the day differ from the last run's"
    changed, why = changes.since(conn, district.id, state.file_mark)
    if changed is None:
        return None, why
    parts = [changed]
    kept = most_used_windows  # each student's year-to-date row holds the type, band and last day it used
    last_day = func.coalesce(table.c.last_active, literal(year_start, kept.c.window_end.type))
    parts.append(read_frame(conn, select(table.c.student_id).select_from(table.outerjoin(kept, and_(
        kept.c.district_id == district.id, kept.c.student_id == table.c.student_id,
        kept.c.window == YEAR_TO_DATE))).where(or_(
            kept.c.student_id.is_(None), table.c.type.is_distinct_from(kept.c.type),
            table.c.performance.is_distinct_from(kept.c.performance), last_day != kept.c.window_end)))["student_id"])
    ranked = most_used_windows
    parts.append(read_frame(conn, select(ranked.c.student_id).where(
        ranked.c.district_id == district.id, ranked.c.window == YEAR_TO_DATE,
        ~exists().where(table.c.student_id == ranked.c.student_id)))["student_id"])
    scope = pd.concat([p.astype("string") for p in parts], ignore_index=True)
    return scope.drop_duplicates().sort_values(ignore_index=True), ""


def _sum_minutes(conn, district: District, scope_t: Table | None) -> None:
    """Minutes per student, window and listed app where more than 0, summed by the database,
    for the students whose windows were just written (all of them, or the night's)."""
    windows = most_used_windows
    source = windows if scope_t is None else scope_t.join(windows, and_(  # a night starts from its students,
        windows.c.district_id == district.id, windows.c.student_id == scope_t.c.student_id))  # so usage by key
    joined = (
        select(literal(district.id, String).label("district_id"), windows.c.student_id, windows.c.window,
               usage.c.app, func.sum(usage.c.minutes).label("minutes"), func.count().label("usage_rows"))
        .select_from(source.join(usage, and_(
            usage.c.district_id == windows.c.district_id, usage.c.student_id == windows.c.student_id,
            usage.c.date.between(windows.c.window_start, windows.c.window_end))))
        .where(windows.c.district_id == district.id, usage.c.app.in_(list(district.apps)), usage.c.minutes > 0)
        .group_by(windows.c.student_id, windows.c.window, usage.c.app)
    )
    conn.execute(most_used_minutes.insert().from_select(
        ["district_id", "student_id", "window", "app", "minutes", "usage_rows"], joined))


def _rank(conn, district_id: str, top_t: Table, top_n: int, scope_t: Table | None) -> None:
    """The top `top_n` apps of each student and window by minutes; ties go to the lower app
    id by code point on both databases (a PostgreSQL database's own collation might not)."""
    sums, windows = most_used_minutes, most_used_windows
    app_order = sums.c.app.collate("C") if is_postgres(conn) else sums.c.app
    partition = [sums.c.student_id, sums.c.window]
    ranked = _only(select(
        sums.c.student_id, sums.c.window, sums.c.app, sums.c.minutes,
        func.row_number().over(partition_by=partition, order_by=[sums.c.minutes.desc(), app_order]).label("rank"),
        func.sum(sums.c.minutes).over(partition_by=partition).label("total"),
    ).where(sums.c.district_id == district_id), sums, scope_t).subquery()
    top = (
        select(ranked.c.student_id, windows.c.type, ranked.c.window, ranked.c.rank, ranked.c.app,
               ranked.c.minutes, (ranked.c.minutes / ranked.c.total).label("share"),
               windows.c.window_start, windows.c.window_end)
        .select_from(ranked.join(windows, and_(windows.c.district_id == district_id,
                                               windows.c.student_id == ranked.c.student_id,
                                               windows.c.window == ranked.c.window)))
        .where(ranked.c.rank <= top_n)
    )
    conn.execute(top_t.insert().from_select(
        ["student_id", "type", "window", "rank", "app", "minutes", "share", "window_start", "window_end"], top))


def _summary(conn, district_id: str) -> pd.DataFrame:
    """Per window and band, and for all: each app's students, minutes and share (a small
    frame), from every student's kept minutes."""
    sums, windows = most_used_minutes, most_used_windows
    joined = sums.join(windows, and_(windows.c.district_id == sums.c.district_id,
                                     windows.c.student_id == sums.c.student_id, windows.c.window == sums.c.window))
    banded = (select(sums.c.window, windows.c.performance.label("performance"), sums.c.app,
                     func.count().label("students"), func.sum(sums.c.minutes).label("minutes"))
              .select_from(joined).where(sums.c.district_id == district_id, windows.c.performance.is_not(None))
              .group_by(sums.c.window, windows.c.performance, sums.c.app))
    everyone = (select(sums.c.window, literal(ALL, String).label("performance"), sums.c.app,
                       func.count().label("students"), func.sum(sums.c.minutes).label("minutes"))
                .where(sums.c.district_id == district_id).group_by(sums.c.window, sums.c.app))
    summary = read_frame(conn, union_all(banded, everyone))
    if summary.empty:
        return pd.DataFrame(columns=["window", "performance", "app", "students", "minutes", "share"])
    summary = summary.astype({"students": "int64", "minutes": "float64"})
    total = summary.groupby(["window", "performance"])["minutes"].transform("sum")
    summary["share"] = (summary["minutes"] / total).where(total > 0, 0.0)
    return summary.sort_values(["window", "performance", "minutes", "app"], ascending=[True, True, False, True],
                               ignore_index=True)


def _replace_top(conn, district_id: str, top_t: Table, stamp: dict, scope_t: Table | None) -> int:
    """Make `most_used_software` hold exactly the new top rows for the students recomputed
    (all, or the night's); nothing is written when they equal the published ones (so a
    rerun leaves `computed_at` as it was). The comparison and the copy run in the database.
    Returns the rows written."""
    published = most_used_software
    mine = _only(select(func.count()).where(published.c.district_id == district_id), published, scope_t)
    new_rows = conn.execute(select(func.count()).select_from(top_t)).scalar()
    old_rows = conn.execute(mine).scalar()
    if new_rows == old_rows:
        def close(a, b):
            return func.abs(a - b) <= TOLERANCE

        same = conn.execute(select(func.count()).select_from(top_t.join(published, and_(
            published.c.district_id == district_id, published.c.student_id == top_t.c.student_id,
            published.c.window == top_t.c.window, published.c.rank == top_t.c.rank))).where(
            published.c.app == top_t.c.app, published.c.type.is_not_distinct_from(top_t.c.type),
            close(published.c.minutes, top_t.c.minutes), close(published.c.share, top_t.c.share),
            published.c.window_start == top_t.c.window_start, published.c.window_end == top_t.c.window_end,
        )).scalar()
        if same == new_rows:
            return 0
    gone = delete(published).where(published.c.district_id == district_id)
    conn.execute(gone if scope_t is None else gone.where(published.c.student_id.in_(select(scope_t.c.student_id))))
    conn.execute(published.insert().from_select(
        ["district_id", *(c.name for c in top_t.columns), "computed_at"],
        select(literal(district_id, String).label("district_id"), *top_t.c,
               literal(stamp["computed_at"], published.c.computed_at.type).label("computed_at"))))
    return new_rows
