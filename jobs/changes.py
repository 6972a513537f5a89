"""Which students changed since a district's last publish, so a night follows the new data.

Ingest records the students each usage file names (`changed_students`) and that the file
was recorded (`changes_logged`), in the file's own transaction. dailypull and most_used then
recompute only those students, when every file loaded since their last run was recorded; any other
file (assessments, a roster, a CLIx tree, xAPI, a removal) makes its next run a full one.
So a path that writes source rows without recording them costs a full run, never a stale row.
"""
from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
from sqlalchemy import Column, MetaData, Table, delete, exists, func, select

from storage.database import analyze
from storage.frames import bulk_insert, read_frame
from models import changed_students, changes_logged, dailypull_state, ingested_files, most_used_state
from models.schema import ID

_WROTE_NOTHING = ("duplicate", "failed")  # ingested_files statuses whose transaction wrote no rows


def record(conn, district_id: str, file_id: int, students: Iterable[str]) -> None:
    """The usage file `file_id` named these students (every one of them)."""
    names = pd.Series(sorted(set(students)), dtype="string")
    bulk_insert(conn, changed_students, pd.DataFrame({"district_id": district_id, "file_id": file_id,
                                                      "student_id": names}))
    conn.execute(changes_logged.insert().values(district_id=district_id, file_id=file_id))


def record_many(conn, district_id: str, file_ids: list[int], named: pd.DataFrame) -> None:
    """`record` for several usage files at once: `named` has file_id, student_id (each pair
    once), for the files `file_ids` (a file that named no student is recorded too)."""
    bulk_insert(conn, changed_students, named.sort_values(["file_id", "student_id"], ignore_index=True)
                .assign(district_id=district_id, student_id=lambda f: f["student_id"].astype("string")))
    conn.execute(changes_logged.insert(), [{"district_id": district_id, "file_id": file_id} for file_id in file_ids])


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
    later = (ingested_files.c.district_id == district_id) & (ingested_files.c.file_id > mark) \
        & ingested_files.c.status.not_in(_WROTE_NOTHING)
    unrecorded = conn.execute(
        select(ingested_files.c.path).where(later, ~exists().where(
            changes_logged.c.district_id == district_id, changes_logged.c.file_id == ingested_files.c.file_id))
        .order_by(ingested_files.c.file_id).limit(1)).scalar()
    if unrecorded is not None:
        return None, f"{unrecorded} was loaded since the last publish and is not a usage file it can follow"
    frame = read_frame(conn, select(changed_students.c.student_id).where(
        changed_students.c.district_id == district_id, changed_students.c.file_id > mark).distinct())
    return frame["student_id"].astype("string"), ""


def forget_followed(conn, district_id: str) -> None:
    """Drop what every job that follows the log (dailypull, most_used) has followed: up to
    the lower of their marks. A job without a mark runs full next time and needs none."""
    marks = [mark for table in (dailypull_state, most_used_state) for mark in conn.execute(
        select(table.c.file_mark).where(table.c.district_id == district_id)).scalars()]
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
