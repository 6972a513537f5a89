"""most_used: each student's most used apps per window, and the district's app summary.

Reads what dailypull published (type, band, last day of usage) and the usage and
assessments of the school year; writes `most_used_software` and `district_app_summary` for
the district in one transaction, and only when something changed.
"""
from __future__ import annotations

import logging

from sqlalchemy import func, select

from analytics.most_used import app_summary, student_windows, top_apps, window_minutes
from analytics.school_year import school_year_containing
from config import District
from storage.ddl import existing_columns
from storage.database import snapshot
from storage.frames import read_frame, replace_district_rows
from jobs.job import JobContext, JobResult, checkpoint, plural
from models import assessments, dataframe_table, district_app_summary, most_used_software, usage

log = logging.getLogger(__name__)


class NotPublished(RuntimeError):
    pass


def run(engine, district: District, ctx: JobContext) -> JobResult:
    year = school_year_containing(ctx.as_of, ctx.settings.school_year_start)
    table = dataframe_table(district.id, district.apps)
    with snapshot(engine) as conn:
        if existing_columns(conn, table.name) is None:
            raise NotPublished(f"{table.name} does not exist yet: run dailypull for {district.id} first")
        students = read_frame(conn, select(table.c.student_id, table.c.type, table.c.performance, table.c.last_active))
        latest = read_frame(conn, select(assessments.c.student_id, func.max(assessments.c.date).label("latest_assessment"))
                            .where(assessments.c.district_id == district.id,
                                   assessments.c.date.between(year.start, ctx.as_of))
                            .group_by(assessments.c.student_id))
        daily = read_frame(conn, select(usage.c.student_id, usage.c.app, usage.c.date, usage.c.minutes)
                           .where(usage.c.district_id == district.id, usage.c.date.between(year.start, ctx.as_of),
                                  usage.c.app.in_(district.apps), usage.c.minutes > 0))
    students = students.merge(latest, on="student_id", how="left", validate="1:1").astype({"type": "Int64"})
    windows = student_windows(
        students, year_start=year.start, as_of=ctx.as_of,
        assessment_days=district.assessment_window_days, latest_days=district.latest_window_days,
    )
    minutes = window_minutes(daily, windows, district.apps)
    top = top_apps(minutes, district.most_used_top_n).assign(district_id=district.id)
    summary = app_summary(minutes).assign(district_id=district.id)

    with engine.begin() as conn:
        stamp = {"computed_at": ctx.clock()}  # the moment they are written, not the cycle's start
        written = replace_district_rows(conn, most_used_software, district.id, top, stamp=stamp)
        written += replace_district_rows(conn, district_app_summary, district.id, summary, stamp=stamp)
        checkpoint("most_used.written")
    result = JobResult(rows_in=len(daily), rows_out=written)
    counts = top.groupby("window")["student_id"].nunique().to_dict()
    ranked = ", ".join(f"{window} {plural(n, 'student')}" for window, n in sorted(counts.items()))
    result.message = (f"students ranked: {ranked}" if ranked else "no student has usage in the school year: none ranked")
    result.message += f"; {plural(written, 'row')} written" if written else "; unchanged: nothing written"
    return result
