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

import logging

import pandas as pd
from sqlalchemy import (
    Column, Date, Float, Integer, MetaData, SmallInteger, String, Table, and_, delete, func, literal, select,
    union_all,
)

from analytics.most_used import ALL, student_windows
from analytics.school_year import school_year_containing
from config import District
from storage.ddl import existing_columns
from storage.database import is_postgres, snapshot
from storage.frames import bulk_insert, read_frame, read_frame_via_copy, replace_district_rows
from jobs.job import JobContext, JobResult, checkpoint, plural
from models import assessments, dataframe_table, district_app_summary, most_used_software, usage
from models.schema import ID

log = logging.getLogger(__name__)

TOLERANCE = 1e-9  # minutes and shares this close are the same (sums added in another order)


class NotPublished(RuntimeError):
    pass


def _scratch(name: str, *columns: Column) -> Table:
    return Table(name, MetaData(), *columns, prefixes=["TEMPORARY"])


def _windows_table() -> Table:
    return _scratch("most_used_windows",
                    Column("student_id", ID, primary_key=True), Column("window", String(16), primary_key=True),
                    Column("window_start", Date, nullable=False), Column("window_end", Date, nullable=False),
                    Column("type", SmallInteger), Column("performance", String(32)))


def _sums_table() -> Table:
    return _scratch("most_used_sums",
                    Column("student_id", ID, primary_key=True), Column("window", String(16), primary_key=True),
                    Column("app", String(41), primary_key=True), Column("minutes", Float, nullable=False),
                    Column("usage_rows", Integer, nullable=False))


def _top_table() -> Table:
    columns = [Column(c.name, c.type, primary_key=c.primary_key) for c in most_used_software.columns
               if c.name not in ("district_id", "computed_at")]
    return _scratch("most_used_top", *columns)


def run(engine, district: District, ctx: JobContext) -> JobResult:
    year = school_year_containing(ctx.as_of, ctx.settings.school_year_start)
    table = dataframe_table(district.id, district.apps)
    with snapshot(engine) as conn:
        if existing_columns(conn, table.name) is None:
            raise NotPublished(f"{table.name} does not exist yet: run dailypull for {district.id} first")
        students = read_frame_via_copy(conn, select(table.c.student_id, table.c.type, table.c.performance,
                                                    table.c.last_active))
        latest = read_frame(conn, select(assessments.c.student_id, func.max(assessments.c.date).label("latest_assessment"))
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
        windows_t, sums_t, top_t = _windows_table(), _sums_table(), _top_table()
        for scratch in (windows_t, sums_t, top_t):
            scratch.drop(conn, checkfirst=True)
            scratch.create(conn)
        bulk_insert(conn, windows_t, windows[["student_id", "window", "window_start", "window_end", "type",
                                              "performance"]])
        del windows
        if is_postgres(conn):
            conn.exec_driver_sql(f"ANALYZE {windows_t.name}")
        _sum_minutes(conn, district, windows_t, sums_t)
        _rank(conn, windows_t, sums_t, top_t, district.most_used_top_n)
        summary = _summary(conn, windows_t, sums_t).assign(district_id=district.id)
        stamp = {"computed_at": ctx.clock()}  # the moment they are written, not the cycle's start
        written = _replace_top(conn, district.id, top_t, stamp)
        written += replace_district_rows(conn, district_app_summary, district.id, summary, stamp=stamp)
        counts = dict(conn.execute(select(sums_t.c.window, func.count(sums_t.c.student_id.distinct()))
                                   .group_by(sums_t.c.window)).all())
        rows_in = conn.execute(select(func.coalesce(func.sum(sums_t.c.usage_rows), 0))
                               .where(sums_t.c.window == "year_to_date")).scalar()
        for scratch in (top_t, sums_t, windows_t):
            scratch.drop(conn)
        checkpoint("most_used.written")
    result = JobResult(rows_in=int(rows_in), rows_out=written)
    ranked = ", ".join(f"{window} {plural(n, 'student')}" for window, n in sorted(counts.items()))
    result.message = (f"students ranked: {ranked}" if ranked else "no student has usage in the school year: none ranked")
    result.message += f"; {plural(written, 'row')} written" if written else "; unchanged: nothing written"
    return result


def _sum_minutes(conn, district: District, windows_t: Table, sums_t: Table) -> None:
    """Minutes per student, window and listed app where more than 0, summed by the database."""
    joined = (
        select(windows_t.c.student_id, windows_t.c.window, usage.c.app,
               func.sum(usage.c.minutes).label("minutes"), func.count().label("usage_rows"))
        .select_from(windows_t.join(usage, and_(
            usage.c.district_id == district.id, usage.c.student_id == windows_t.c.student_id,
            usage.c.date.between(windows_t.c.window_start, windows_t.c.window_end))))
        .where(usage.c.app.in_(list(district.apps)), usage.c.minutes > 0)
        .group_by(windows_t.c.student_id, windows_t.c.window, usage.c.app)
    )
    conn.execute(sums_t.insert().from_select(["student_id", "window", "app", "minutes", "usage_rows"], joined))
    if is_postgres(conn):
        conn.exec_driver_sql(f"ANALYZE {sums_t.name}")


def _rank(conn, windows_t: Table, sums_t: Table, top_t: Table, top_n: int) -> None:
    """The top `top_n` apps of each student and window by minutes; ties go to the lower app
    id by code point on both databases (a PostgreSQL database's own collation might not)."""
    app_order = sums_t.c.app.collate("C") if is_postgres(conn) else sums_t.c.app
    partition = [sums_t.c.student_id, sums_t.c.window]
    ranked = select(
        sums_t.c.student_id, sums_t.c.window, sums_t.c.app, sums_t.c.minutes,
        func.row_number().over(partition_by=partition, order_by=[sums_t.c.minutes.desc(), app_order]).label("rank"),
        func.sum(sums_t.c.minutes).over(partition_by=partition).label("total"),
    ).subquery()
    top = (
        select(ranked.c.student_id, windows_t.c.type, ranked.c.window, ranked.c.rank, ranked.c.app,
               ranked.c.minutes, (ranked.c.minutes / ranked.c.total).label("share"),
               windows_t.c.window_start, windows_t.c.window_end)
        .select_from(ranked.join(windows_t, and_(windows_t.c.student_id == ranked.c.student_id,
                                                 windows_t.c.window == ranked.c.window)))
        .where(ranked.c.rank <= top_n)
    )
    conn.execute(top_t.insert().from_select(
        ["student_id", "type", "window", "rank", "app", "minutes", "share", "window_start", "window_end"], top))


def _summary(conn, windows_t: Table, sums_t: Table) -> pd.DataFrame:
    """Per window and band, and for all: each app's students, minutes and share (a small frame)."""
    joined = sums_t.join(windows_t, and_(windows_t.c.student_id == sums_t.c.student_id,
                                         windows_t.c.window == sums_t.c.window))
    banded = (select(sums_t.c.window, windows_t.c.performance.label("performance"), sums_t.c.app,
                     func.count().label("students"), func.sum(sums_t.c.minutes).label("minutes"))
              .select_from(joined).where(windows_t.c.performance.is_not(None))
              .group_by(sums_t.c.window, windows_t.c.performance, sums_t.c.app))
    everyone = (select(sums_t.c.window, literal(ALL, String).label("performance"), sums_t.c.app,
                       func.count().label("students"), func.sum(sums_t.c.minutes).label("minutes"))
                .group_by(sums_t.c.window, sums_t.c.app))
    summary = read_frame(conn, union_all(banded, everyone))
    if summary.empty:
        return pd.DataFrame(columns=["window", "performance", "app", "students", "minutes", "share"])
    summary = summary.astype({"students": "int64", "minutes": "float64"})
    total = summary.groupby(["window", "performance"])["minutes"].transform("sum")
    summary["share"] = (summary["minutes"] / total).where(total > 0, 0.0)
    return summary.sort_values(["window", "performance", "minutes", "app"], ascending=[True, True, False, True],
                               ignore_index=True)


def _replace_top(conn, district_id: str, top_t: Table, stamp: dict) -> int:
    """Make `most_used_software` hold exactly the new top rows for the district; nothing is
    written when they equal the published ones (so a rerun leaves `computed_at` as it was).
    The comparison and the copy run in the database. Returns the rows written."""
    published = most_used_software
    mine = published.c.district_id == district_id
    new_rows = conn.execute(select(func.count()).select_from(top_t)).scalar()
    old_rows = conn.execute(select(func.count()).where(mine)).scalar()
    if new_rows == old_rows:
        def close(a, b):
            return func.abs(a - b) <= TOLERANCE

        same = conn.execute(select(func.count()).select_from(top_t.join(published, and_(
            mine, published.c.student_id == top_t.c.student_id, published.c.window == top_t.c.window,
            published.c.rank == top_t.c.rank))).where(
            published.c.app == top_t.c.app, published.c.type.is_not_distinct_from(top_t.c.type),
            close(published.c.minutes, top_t.c.minutes), close(published.c.share, top_t.c.share),
            published.c.window_start == top_t.c.window_start, published.c.window_end == top_t.c.window_end,
        )).scalar()
        if same == new_rows:
            return 0
    conn.execute(delete(published).where(mine))
    conn.execute(published.insert().from_select(
        ["district_id", *(c.name for c in top_t.columns), "computed_at"],
        select(literal(district_id, String).label("district_id"), *top_t.c,
               literal(stamp["computed_at"], published.c.computed_at.type).label("computed_at"))))
    return new_rows
