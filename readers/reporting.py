"""A district's reporting database (README, "fetch"): the rows of a table or view added since
the last fetch, by a watermark column, written as a landing CSV file of the source's kind
(with the rows at the last watermark again, so a row written later with the same value is
not lost).

The connection URL comes from the environment variable the source names (never from
districts.yaml); the table is reflected, so its name and columns reach SQL only through
SQLAlchemy's quoting. Rows are read in the watermark's order in batches, so memory follows a
batch, and written to a hidden temporary file renamed once complete.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from sqlalchemy import MetaData, Table, create_engine, func, select

from readers.remote import RemoteError

BATCH = 50_000


@dataclass(frozen=True)
class Fetched:
    path: Path | None  # the landing file written (None: no new rows)
    rows: int
    bytes: int
    watermark: str | None  # the highest watermark written


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def fetch_new_rows(source, after: str | None, folder: Path, stamp: str) -> Fetched:
    """Rows with watermark > `after` (all of them when None) into folder/<kind>_<name>_<stamp>.csv."""
    variable = source.option("url_env")
    url = os.environ.get(variable)
    if not url:
        raise RemoteError(f"the environment variable {variable} (the reporting database's URL) is not set")
    if url.startswith(("postgres://", "postgresql://")):
        url = "postgresql+psycopg2://" + url.split("://", 1)[1]
    engine = create_engine(url, pool_pre_ping=True)
    try:
        schema, _, name = source.option("table").rpartition(".")
        try:
            table = Table(name, MetaData(), schema=schema or None, autoload_with=engine)
        except Exception as exc:  # NoSuchTableError, an unreachable server, wrong credentials
            raise RemoteError(f"the table {source.option('table')!r} cannot be read: "
                              f"{str(getattr(exc, 'orig', exc)).splitlines()[0] if str(exc) else type(exc).__name__}") from None
        column = source.option("watermark")
        if column not in table.c:
            raise RemoteError(f"the table {source.option('table')!r} has no column {column!r} (watermark)")
        query = select(table).order_by(table.c[column])
        if after is not None:
            # rows at the last watermark are read again with the new ones: a row written later
            # with the same value (a tie) is not lost; ingest replaces the repeated rows by key.
            # With no row past it, nothing is written (the source is unchanged).
            with engine.connect() as conn:
                newer = conn.execute(select(func.count()).select_from(table).where(table.c[column] > after)).scalar()
            if not newer:
                return Fetched(None, 0, 0, after)
            query = query.where(table.c[column] >= after)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{source.option('kind')}_{source.name}_{stamp}.csv"
        partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
        rows, last = 0, None
        index = list(table.c.keys()).index(column)
        try:
            with engine.connect() as conn, open(partial, "w", newline="", encoding="utf-8") as out:
                writer = csv.writer(out)
                writer.writerow(table.c.keys())
                result = conn.execution_options(stream_results=True, yield_per=BATCH).execute(query)
                for batch in result.partitions(BATCH):
                    writer.writerows([[_text(v) for v in row] for row in batch])
                    rows += len(batch)
                    last = batch[-1][index]
            if rows == 0:
                return Fetched(None, 0, 0, after)
            os.replace(partial, target)
        finally:
            if partial.exists():
                partial.unlink()
        return Fetched(target, rows, target.stat().st_size, _text(last))
    finally:
        engine.dispose()
