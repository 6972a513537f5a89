"""A district's reporting database (README, "fetch"): the rows of a table or view added since
the last fetch, by a watermark column, written as a landing CSV file of the source's kind.

The connection URL comes from the environment variable the source names (never from
districts.yaml); the table is reflected, so its name and columns reach SQL only through
SQLAlchemy's quoting. The watermark is kept typed (an integer, a decimal, a timestamp, a day
or text, as JSON) and compared with the column's own type, never as text. Once a row past it
exists, the rows at the last watermark are read again with the new ones, so a row written
later with the same value (a tie) is not lost; ingest replaces repeated rows by key. Rows
with no watermark (NULL) are counted and not read. Rows are read in the watermark's order in
batches (memory follows a batch) into a hidden temporary file renamed once complete; a byte
budget (the district's monthly limit) ends the file early, at a batch, and the next fetch
goes on from there.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

from sqlalchemy import MetaData, Table, bindparam, create_engine, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import NoSuchTableError
from sqlalchemy.types import NullType

from readers.remote import RemoteError, RemoteUnavailable

BATCH = 50_000


@dataclass(frozen=True)
class Fetched:
    path: Path | None  # the landing file written (None: no new rows)
    rows: int
    bytes: int
    watermark: str | None  # the highest watermark written, encoded (encode_watermark)
    without_watermark: int = 0  # rows whose watermark is NULL: not read
    cut: bool = False  # the byte budget ended the file early


def encode_watermark(value) -> str:
    if isinstance(value, bool) or value is None:
        raise ValueError(f"not a watermark: {value!r}")
    if isinstance(value, int):
        return json.dumps({"type": "int", "value": value})
    if isinstance(value, Decimal):
        return json.dumps({"type": "decimal", "value": str(value)})
    if isinstance(value, float):
        return json.dumps({"type": "float", "value": value})
    if isinstance(value, datetime):
        return json.dumps({"type": "datetime", "value": value.isoformat()})
    if isinstance(value, date):
        return json.dumps({"type": "date", "value": value.isoformat()})
    return json.dumps({"type": "text", "value": str(value)})


def decode_watermark(text: str):
    data = json.loads(text)
    kind, value = data["type"], data["value"]
    return {"int": int, "decimal": Decimal, "float": float, "datetime": datetime.fromisoformat,
            "date": date.fromisoformat, "text": str}[kind](value)


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)


def _engine(variable: str, timeout: int):
    url = os.environ.get(variable)
    if not url:
        raise RemoteError(f"the environment variable {variable} (the reporting database's URL) is not set")
    if url.startswith(("postgres://", "postgresql://")):
        url = "postgresql+psycopg2://" + url.split("://", 1)[1]
    try:
        parsed = make_url(url)
    except Exception:  # its text may hold the password: say only which variable
        raise RemoteError(f"{variable} is not a database URL (dialect://user:password@host/database)") from None
    if parsed.get_backend_name() == "postgresql":  # the URL's own options (a search_path) stay
        own = parsed.query.get("options")
        own = " ".join(own) if isinstance(own, tuple) else (own or "")
        args = {"connect_timeout": timeout, "options": f"{own} -c statement_timeout={timeout * 1000}".strip()}
    elif parsed.get_backend_name() == "sqlite":
        args = {"timeout": timeout}
    else:
        args = {}
    return create_engine(parsed, pool_pre_ping=True, connect_args=args)


def fetch_new_rows(source, after: str | None, folder: Path, stamp: str, budget: int | None = None) -> Fetched:
    """Rows past the watermark `after` (all of them when None) into folder/<kind>_<name>_<stamp>.csv."""
    variable = source.option("url_env")
    engine = _engine(variable, int(source.option("timeout_seconds", 60)))
    try:
        schema, _, name = source.option("table").rpartition(".")
        try:
            table = Table(name, MetaData(), schema=schema or None, autoload_with=engine)
        except NoSuchTableError:
            raise RemoteError(f"the table {source.option('table')!r} does not exist (or is not visible)") from None
        except Exception as exc:  # an unreachable server, a timeout, wrong credentials: tried again
            first = str(getattr(exc, "orig", exc)).splitlines()
            raise RemoteUnavailable(f"the table {source.option('table')!r} cannot be read: "
                                    f"{first[0] if first else type(exc).__name__}") from None
        column = source.option("watermark")
        if column not in table.c:
            raise RemoteError(f"the table {source.option('table')!r} has no column {column!r} (watermark)")
        mark = table.c[column]
        kind = None if isinstance(mark.type, NullType) else mark.type

        def past(value, strictly: bool):
            """mark > value (or >=), in the column's type; SQLite keeps timestamps as text in
            several spellings ('2026-11-16 10:00:00', '...T10:00:00'): compared as julian days."""
            if engine.dialect.name == "sqlite" and isinstance(value, (datetime, date)):
                left, right = func.julianday(mark), func.julianday(bindparam("after", value.isoformat(sep=" ")
                                                                             if isinstance(value, datetime) else
                                                                             value.isoformat()))
            else:
                left, right = mark, bindparam("after", value, type_=kind)
            return left > right if strictly else left >= right

        previous = decode_watermark(after) if after is not None else None
        with engine.connect() as conn:
            without = conn.execute(select(func.count()).select_from(table).where(mark.is_(None))).scalar()
            query = select(table).where(mark.is_not(None)).order_by(mark)
            if after is not None:
                newer = conn.execute(select(func.count()).select_from(table).where(past(previous, True))).scalar()
                if not newer:
                    return Fetched(None, 0, 0, after, without)
                query = query.where(past(previous, False))
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{source.option('kind')}_{source.name}_{stamp}.csv"
        partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
        rows, last, cut = 0, None, False
        index = list(table.c.keys()).index(column)
        try:
            with engine.connect() as conn, open(partial, "w", newline="", encoding="utf-8") as out:
                writer = csv.writer(out)
                writer.writerow(table.c.keys())
                result = conn.execution_options(stream_results=True, yield_per=BATCH).execute(query)
                closing = False  # the budget is reached: only the rest of the last watermark's rows
                for batch in result.partitions(BATCH):
                    if closing:
                        batch = [row for row in batch if row[index] == last]
                        if not batch:
                            break
                    writer.writerows([[_text(v) for v in row] for row in batch])
                    rows += len(batch)
                    last = batch[-1][index]
                    if budget is not None and out.tell() >= budget and not closing and (
                            after is None or last != previous):  # past the re-read rows of the last watermark
                        cut = closing = True  # a tie group is never split: the next fetch goes on past it
            if rows == 0:
                return Fetched(None, 0, 0, after, without)
            os.replace(partial, target)
        finally:
            if partial.exists():
                partial.unlink()
        return Fetched(target, rows, target.stat().st_size, encode_watermark(last), without, cut)
    finally:
        engine.dispose()
