"""`usage_weekly` (README, "usage_weekly"): use over time per school, app and week starting
Monday, kept by ingest in the same transaction as the rows it follows: a file that writes
usage recomputes the weeks its days fall in; a students file recomputes the weeks in which
its students have usage (their school may have changed). A district with usage and no weekly
rows (a database from before the table) is built whole once.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import date, datetime, timedelta, timezone

import pandas as pd
from sqlalchemy import Column, Date, MetaData, Table, and_, case, delete, distinct, func, literal, select

from storage.frames import bulk_insert, read_frame_via_copy
from models import students, usage, usage_weekly

log = logging.getLogger(__name__)

_STUDENT_BATCH = 500


def monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def weeks_of(days: Iterable) -> list[date]:
    """The Mondays of the weeks these days fall in, sorted."""
    out = set()
    for day in days:
        if day is None:
            continue
        if isinstance(day, datetime):
            day = day.date()
        elif not isinstance(day, date):
            day = date.fromisoformat(str(day)[:10])
        out.add(monday(day))
    return sorted(out)


def weeks_of_students(conn, district_id: str, student_ids: list[str]) -> list[date]:
    """The weeks in which these students have usage."""
    days = set()
    for first in range(0, len(student_ids), _STUDENT_BATCH):
        batch = student_ids[first:first + _STUDENT_BATCH]
        days |= {r[0] for r in conn.execute(select(usage.c.date).distinct().where(
            usage.c.district_id == district_id, usage.c.student_id.in_(batch)))}
    return weeks_of(days)


_ONE_PASS = 4  # more weeks than this are summed in one pass over usage, not a query a week


def _monday_of(day):
    """The Monday on or before a day, in SQL (PostgreSQL's ISO weeks start on Monday)."""
    return func.date(day, "-6 days", "weekday 1")


def recompute(conn, district_id: str, weeks: list[date], now: datetime | None = None) -> None:
    """Replace the district's rows of these weeks with sums over `usage` (school from `students`).

    A few weeks (a night's file) take a query each; more (a year's file) one pass over the
    district's usage grouped by week: a query a week reads the district's rows once a week."""
    now = now or datetime.now(timezone.utc)
    if len(weeks) > _ONE_PASS:
        _recompute_in_one_pass(conn, district_id, weeks, now)
        return
    for week in weeks:
        end = week + timedelta(days=7)
        conn.execute(delete(usage_weekly).where(usage_weekly.c.district_id == district_id,
                                                usage_weekly.c.week_start == week))
        school = func.coalesce(students.c.school_id, "")
        rows = (
            select(
                literal(district_id).label("district_id"), school.label("school_id"), usage.c.app,
                literal(week, Date).label("week_start"),
                func.count(distinct(case((usage.c.minutes > 0, usage.c.student_id)))).label("students"),
                func.sum(usage.c.minutes).label("minutes"),
                literal(now, usage_weekly.c.computed_at.type).label("computed_at"),
            )
            .select_from(usage.outerjoin(students, and_(students.c.district_id == usage.c.district_id,
                                                        students.c.student_id == usage.c.student_id)))
            .where(usage.c.district_id == district_id, usage.c.date >= week, usage.c.date < end)
            .group_by(school, usage.c.app)
        )
        conn.execute(usage_weekly.insert().from_select(
            ["district_id", "school_id", "app", "week_start", "students", "minutes", "computed_at"], rows))


def _recompute_in_one_pass(conn, district_id: str, weeks: list[date], now: datetime) -> None:
    from storage.database import is_postgres

    conn.execute(delete(usage_weekly).where(usage_weekly.c.district_id == district_id,
                                            usage_weekly.c.week_start.in_(weeks)))
    if is_postgres(conn):
        week = func.cast(func.date_trunc("week", usage.c.date), Date)
    else:
        week = _monday_of(usage.c.date)
    school = func.coalesce(students.c.school_id, "")
    by_week = (
        select(
            usage.c.district_id.label("district_id"), school.label("school_id"), usage.c.app,
            week.label("week_start"), usage.c.student_id, usage.c.minutes,
        )
        .select_from(usage.outerjoin(students, and_(students.c.district_id == usage.c.district_id,
                                                    students.c.student_id == usage.c.student_id)))
        .where(usage.c.district_id == district_id, usage.c.date >= weeks[0],
               usage.c.date < weeks[-1] + timedelta(days=7))
    ).subquery()
    rows = (
        select(
            by_week.c.district_id, by_week.c.school_id, by_week.c.app, by_week.c.week_start,
            func.count(distinct(case((by_week.c.minutes > 0, by_week.c.student_id)))).label("students"),
            func.sum(by_week.c.minutes).label("minutes"),
            literal(now, usage_weekly.c.computed_at.type).label("computed_at"),
        )
        .where(by_week.c.week_start.in_(weeks))
        .group_by(by_week.c.district_id, by_week.c.school_id, by_week.c.app, by_week.c.week_start)
    )
    conn.execute(usage_weekly.insert().from_select(
        ["district_id", "school_id", "app", "week_start", "students", "minutes", "computed_at"], rows))


def schools_of(conn, district_id: str) -> pd.Series:
    """The district's students' schools (index student_id, values school_id; students without
    a school left out), for `analytics.usage_weeks`."""
    frame = read_frame_via_copy(conn, select(students.c.student_id, students.c.school_id).where(
        students.c.district_id == district_id, students.c.school_id.is_not(None)))
    return pd.Series(pd.Categorical(frame["school_id"].astype(object).to_numpy()),
                     index=pd.Index(frame["student_id"].astype("string")))


def follow_new_rows(conn, district_id: str, weeks: list[date], rows: pd.DataFrame | None,
                    now: datetime | None = None) -> None:
    """The weeks of a file whose rows were all new keys (written straight into `usage`): a week
    in which the district had no usage before (no weekly row) takes its rows from `rows`
    (`analytics.usage_weeks.weekly_rows` of the file's rows), the others are recomputed from
    `usage` (`recompute`). Without `rows`, every week is recomputed."""
    now = now or datetime.now(timezone.utc)
    if rows is None or not weeks:
        recompute(conn, district_id, weeks, now)
        return
    had = set(conn.execute(select(usage_weekly.c.week_start).distinct().where(
        usage_weekly.c.district_id == district_id, usage_weekly.c.week_start.in_(weeks))).scalars())
    had = {date.fromisoformat(str(w)[:10]) if not isinstance(w, date) else w for w in had}
    recompute(conn, district_id, sorted(had), now)
    new = rows.loc[~pd.to_datetime(rows["week_start"]).dt.date.isin(had)]
    if not len(new):
        return
    # Through a temporary table: a bulk insert writes empty text as NULL, and the school of a
    # student without one is "" here, as in `recompute`.
    incoming = Table("incoming_usage_weekly", MetaData(), *(Column(c.name, c.type) for c in usage_weekly.columns),
                     prefixes=["TEMPORARY"])
    incoming.create(conn)
    bulk_insert(conn, incoming, new.assign(district_id=district_id, computed_at=now))
    names = [c.name for c in usage_weekly.columns]
    conn.execute(usage_weekly.insert().from_select(names, select(
        *(func.coalesce(incoming.c.school_id, "").label(n) if n == "school_id" else incoming.c[n] for n in names))))
    incoming.drop(conn)


def ensure(conn, district_id: str) -> int:
    """Build the district's weekly rows whole when it has usage and none (returns the weeks built)."""
    if conn.execute(select(usage_weekly.c.week_start).where(usage_weekly.c.district_id == district_id).limit(1)).first():
        return 0
    bounds = conn.execute(select(func.min(usage.c.date), func.max(usage.c.date))
                          .where(usage.c.district_id == district_id)).first()
    if bounds is None or bounds[0] is None:
        return 0
    first, last = (date.fromisoformat(str(b)[:10]) if not isinstance(b, date) else b for b in bounds)
    weeks = []
    week = monday(first)
    while week <= last:
        weeks.append(week)
        week += timedelta(days=7)
    recompute(conn, district_id, weeks)
    log.info("%s: usage_weekly built for %d weeks", district_id, len(weeks))
    return len(weeks)
