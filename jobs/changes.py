"""Which students changed since a district's last publish, so a night follows the new data.

Ingest records the students each usage file names (`changed_students`) and that the file
was recorded (`changes_logged`), in the file's own transaction. dailypull and most_used then
recompute only those students, when every file loaded since their last run was recorded; any other
file (assessments, a roster, a CLIx tree, xAPI, a removal) makes its next run a full one.
So a path that writes source rows without recording them costs a full run, never a stale row.
Each recorded file also keeps the earliest day it wrote (`changes_logged.first_date`): a
recommendations re-score follows only the files that wrote days before the students'
assessments (`dated_since`), and reads the assessment files' rows by their own file_id.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date

import pandas as pd
from sqlalchemy import Column, MetaData, Table, delete, exists, func, or_, select

from analytics import refit
from storage.database import analyze
from storage.frames import bulk_insert, read_frame
from models import changed_students, changes_logged, dailypull_state, ingested_files, most_used_state, recommend_state
from models.schema import ID

_WROTE_NOTHING = ("duplicate", "failed")  # ingested_files statuses whose transaction wrote no rows
_OWN_FILE_IDS = ("assessments", "forecasts", "score_averages")  # kinds whose rows carry their file_id and date


def record(conn, district_id: str, file_id: int, students: Iterable[str], first_date: date | None = None) -> None:
    """The usage file `file_id` named these students (every one of them); `first_date`: the
    earliest day of the rows it wrote (None: not known)."""
    names = pd.Series(sorted(set(students)), dtype="string")
    bulk_insert(conn, changed_students, pd.DataFrame({"district_id": district_id, "file_id": file_id,
                                                      "student_id": names}))
    conn.execute(changes_logged.insert().values(district_id=district_id, file_id=file_id, first_date=first_date))


def record_many(conn, district_id: str, file_ids: list[int], named: pd.DataFrame,
                first_dates: Mapping[int, date] | None = None) -> None:
    """`record` for several usage files at once: `named` has file_id, student_id (each pair
    once), for the files `file_ids` (a file that named no student is recorded too);
    `first_dates`: each file's earliest day (a file without one: not known)."""
    bulk_insert(conn, changed_students, named.sort_values(["file_id", "student_id"], ignore_index=True)
                .assign(district_id=district_id, student_id=lambda f: f["student_id"].astype("string")))
    first_dates = first_dates or {}
    conn.execute(changes_logged.insert(), [{"district_id": district_id, "file_id": file_id,
                                            "first_date": first_dates.get(file_id)} for file_id in file_ids])


def latest_file(conn, district_id: str) -> int:
    """The district's last file id whose load may have written rows (0 before any): what a
    publish has seen. Loads hold the district's lock, so none with a lower id commits later;
    failed and duplicate records (written without it) wrote no rows and do not count."""
    return int(conn.execute(select(func.coalesce(func.max(ingested_files.c.file_id), 0))
                            .where(ingested_files.c.district_id == district_id,
                                   ingested_files.c.status.not_in(_WROTE_NOTHING))).scalar())


def since(conn, district_id: str, mark: int) -> tuple[pd.Series | None, str]:
    """The students named by the files loaded after `mark`, or None (and why) when a file
    loaded since was not recorded, so only a full run is right."""
    unrecorded = _first_unrecorded(conn, district_id, mark)
    if unrecorded is not None:
        return None, f"{unrecorded} was loaded since the last publish and is not a usage file it can follow"
    return _named(conn, district_id, changed_students.c.file_id > mark), ""


def dated_since(conn, district_id: str, mark: int, before: date) -> tuple[pd.Series | None, str]:
    """The students who may have usage rows dated before `before` that a file loaded after
    `mark` wrote: those named by such a file whose earliest day is before `before` (or not
    known). None, and why, when a file loaded since may have written rows it does
    not follow: any file but a recorded usage file or a file of assessments, forecasts or
    averages (whose rows carry their own file_id and date, for the caller to read)."""
    unfollowed = _first_unrecorded(conn, district_id, mark, followed_kinds=_OWN_FILE_IDS)
    if unfollowed is not None:
        return None, f"{unfollowed} was loaded since and is not a file whose rows it can follow"
    early = select(changes_logged.c.file_id).where(
        changes_logged.c.district_id == district_id, changes_logged.c.file_id > mark,
        or_(changes_logged.c.first_date.is_(None), changes_logged.c.first_date < before))
    return _named(conn, district_id, changed_students.c.file_id.in_(early)), ""


def _first_unrecorded(conn, district_id: str, mark: int, followed_kinds: tuple[str, ...] = ()) -> str | None:
    """The path of the first file loaded after `mark` that may have written rows and was not
    recorded, other than files of `followed_kinds` (None: there is none)."""
    later = [ingested_files.c.district_id == district_id, ingested_files.c.file_id > mark,
             ingested_files.c.status.not_in(_WROTE_NOTHING),
             ~exists().where(changes_logged.c.district_id == district_id,
                             changes_logged.c.file_id == ingested_files.c.file_id)]
    if followed_kinds:
        later.append(or_(ingested_files.c.kind.is_(None), ingested_files.c.kind.not_in(followed_kinds)))
    return conn.execute(select(ingested_files.c.path).where(*later)
                        .order_by(ingested_files.c.file_id).limit(1)).scalar()


def _named(conn, district_id: str, files) -> pd.Series:
    """The students named by the recorded files that `files` (a condition on
    changed_students.file_id) selects, each once."""
    frame = read_frame(conn, select(changed_students.c.student_id).where(
        changed_students.c.district_id == district_id, files).distinct())
    return frame["student_id"].astype("string")


def forget_followed(conn, district_id: str) -> None:
    """Drop what every job that follows the log (dailypull, most_used, recommendations) has
    followed: up to the lowest of their marks. A job without a mark runs in full next time
    and needs none."""
    marks = [mark for table in (dailypull_state, most_used_state) for mark in conn.execute(
        select(table.c.file_mark).where(table.c.district_id == district_id)).scalars()]
    latest = conn.execute(select(dailypull_state.c.as_of).where(dailypull_state.c.district_id == district_id)).scalar()
    for mark, fitted in conn.execute(select(recommend_state.c.scored_mark, recommend_state.c.fitted_as_of).where(
            recommend_state.c.district_id == district_id)).all():
        # a fit the next run will refit by age reads everything and needs no log: so a
        # recommendations job that stopped running does not keep the log growing
        if mark is not None and (latest is None or (latest - fitted).days < refit.REFIT_AFTER_DAYS):
            marks.append(mark)
    if marks:
        for table in (changed_students, changes_logged):
            conn.execute(delete(table).where(table.c.district_id == district_id, table.c.file_id <= min(marks)))


def students_table(conn, name: str, students: pd.Series) -> Table:
    """A temporary table of a night's students, to join on (an IN list of 100k ids is not)."""
    table = Table(name, MetaData(), Column("student_id", ID, primary_key=True), prefixes=["TEMPORARY"])
    table.drop(conn, checkfirst=True)
    table.create(conn)
    bulk_insert(conn, table, pd.DataFrame({"student_id": students}))
    analyze(conn, table)
    return table
