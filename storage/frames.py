"""Frames in and out: bulk inserts (PostgreSQL COPY, SQLite executemany), reads into
DataFrames, upserts, and a district's rows replaced in one transaction.

Identifiers only ever reach SQL through SQLAlchemy `Table`/`Column` objects and the
dialect's own quoting; values always travel as bound parameters or COPY data.
"""
from __future__ import annotations

import io
import logging
import tempfile
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
from sqlalchemy import Table, delete, select, true
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.types import (
    BigInteger,
    Date,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
)

from analytics.landing_rows import NUL_SHOWN
from models.schema import StoredText
from storage.database import is_postgres

log = logging.getLogger(__name__)


def insert_missing(conn: Connection, table: Table, rows: list[dict]) -> None:
    """Insert rows whose primary key is not there yet; leave existing ones as they are."""
    if not rows:
        return
    dialect_insert = postgresql.insert if is_postgres(conn) else sqlite.insert
    conn.execute(dialect_insert(table).on_conflict_do_nothing(), rows)


def _sqlite_rows(frame: pd.DataFrame, table: Table) -> list[tuple]:
    """Rows as tuples of plain values in SQLAlchemy's SQLite storage format (None = NULL)."""
    columns = []
    for name in frame.columns:
        column_type = table.c[name].type
        values = frame[name]
        if isinstance(column_type, Date):
            values = pd.to_datetime(values).dt.strftime("%Y-%m-%d")
        elif isinstance(column_type, DateTime):
            values = pd.to_datetime(values, utc=True).dt.strftime("%Y-%m-%d %H:%M:%S.%f")
        elif isinstance(column_type, (Integer, SmallInteger, BigInteger)):
            values = values.astype("Int64")
        elif isinstance(column_type, Float):
            values = values.astype("float64")
        elif isinstance(column_type, String):  # empty text is NULL, as COPY reads it
            if isinstance(column_type, StoredText):  # NUL shown as \x00, as a bound value is
                values = values.astype("string").str.replace("\x00", NUL_SHOWN, regex=False)
            values = values.astype(object).where(values.astype("string").fillna("").ne(""))
        array = values.astype(object).to_numpy()
        columns.append(np.where(pd.isna(array), None, array))
    return list(zip(*columns))


def _copy_csv(frame: pd.DataFrame, table: Table) -> io.BytesIO:
    """The frame as CSV for PostgreSQL COPY, written by Arrow: NULL is an empty unquoted
    field, and every text value is quoted (so empty text, which we store as NULL, is made
    NULL first, and a \r or \n inside a value stays inside it)."""
    arrays = []
    for name in frame.columns:
        column_type = table.c[name].type
        values = frame[name]
        if isinstance(column_type, Date):
            array = pa.array(pd.to_datetime(values).astype("datetime64[s]"), from_pandas=True).cast(pa.date32())
        elif isinstance(column_type, DateTime):
            array = pa.array(pd.to_datetime(values, utc=True).astype("datetime64[us, UTC]"), from_pandas=True)
        elif isinstance(column_type, (Integer, SmallInteger, BigInteger)):
            array = pa.array(values.astype("Int64"), type=pa.int64(), from_pandas=True)
        elif isinstance(column_type, Float):
            array = pa.array(values.astype("float64"), type=pa.float64(), from_pandas=True)
        elif isinstance(column_type, LargeBinary):  # bytea's hex input form
            array = pa.array([None if v is None else "\\x" + bytes(v).hex() for v in values], type=pa.string())
        else:  # text: empty is NULL
            text = values.astype("string")
            if isinstance(column_type, StoredText):  # NUL shown as \x00 (COPY refuses a NUL), as a bound value is
                text = text.str.replace("\x00", NUL_SHOWN, regex=False)
            array = pa.array(text.mask(text.eq("")), type=pa.string(), from_pandas=True)
        arrays.append(array)
    buffer = io.BytesIO()
    pacsv.write_csv(pa.Table.from_arrays(arrays, names=list(frame.columns)), buffer,
                    pacsv.WriteOptions(include_header=False, quoting_style="needed"))
    buffer.seek(0)
    return buffer


COPY_SLICE = 250_000  # rows of a frame turned into COPY text at a time (bulk_insert)


class Prepared:
    """Rows made ready for `bulk_insert` ahead of time (e.g. on another thread): their
    columns in the INSERT's order and, for PostgreSQL, the COPY text."""

    def __init__(self, table: Table, frame: pd.DataFrame, postgres: bool):
        unknown = set(frame.columns) - set(table.c.keys())
        if unknown:
            raise ValueError(f"{table.name} has no column(s) {sorted(unknown)}")
        self.table = table
        self.frame = frame[[c for c in table.c.keys() if c in frame.columns]]  # the INSERT's column order
        self.copy = _copy_csv(self.frame, table) if postgres and len(frame) else None

    def __len__(self) -> int:
        return len(self.frame)


def bulk_insert(conn: Connection, table: Table, frame: pd.DataFrame | Prepared) -> int:
    """Insert every row of `frame` (columns named as in `table`) in the caller's transaction.

    PostgreSQL: COPY (the native bulk path). SQLite: one executemany.
    """
    if not isinstance(frame, Prepared) and is_postgres(conn) and len(frame) > COPY_SLICE:
        # a slice's COPY text at a time: 3M recommendation rows' text is ~1 GB at once
        return sum(bulk_insert(conn, table, frame.iloc[start:start + COPY_SLICE])
                   for start in range(0, len(frame), COPY_SLICE))
    prepared = frame if isinstance(frame, Prepared) else Prepared(table, frame, is_postgres(conn))
    if not len(prepared):
        return 0
    frame = prepared.frame
    if is_postgres(conn):
        from psycopg2 import sql

        statement = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv)").format(
            sql.Identifier(*((table.schema, table.name) if table.schema else (table.name,))),
            sql.SQL(", ").join(sql.Identifier(c) for c in frame.columns),
        )
        raw = conn.connection.driver_connection
        with raw.cursor() as cursor:
            cursor.copy_expert(statement, prepared.copy if prepared.copy is not None else _copy_csv(frame, table),
                               size=1 << 20)
    else:
        statement = table.insert().compile(dialect=conn.dialect, column_keys=list(frame.columns))
        conn.exec_driver_sql(str(statement), _sqlite_rows(frame, table))
    return len(frame)


def read_frame(conn: Connection, statement) -> pd.DataFrame:
    """Run a Core select and return its rows as a DataFrame with the select's column names."""
    if is_postgres(conn):  # psycopg2 already returns Python values: skip SQLAlchemy's row layer
        compiled = statement.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
        with conn.connection.driver_connection.cursor() as cursor:
            cursor.execute(str(compiled), compiled.params)
            keys = [column.name for column in cursor.description]
            rows = cursor.fetchall()
    else:
        result = conn.execute(statement)
        keys = list(result.keys())
        rows = result.fetchall()
    if not rows:
        return pd.DataFrame(columns=keys)
    # Plain tuples: pandas would treat SQLAlchemy's Row as a namedtuple, field by field (slow).
    return pd.DataFrame.from_records([tuple(row) for row in rows], columns=keys)


def _arrow_types(statement) -> dict:
    """Arrow types of a select's columns, for reading its COPY text."""
    types = {}
    for column in statement.selected_columns:
        kind = column.type
        if isinstance(kind, Date):
            types[column.name] = pa.date32()
        elif isinstance(kind, DateTime):
            types[column.name] = pa.timestamp("us", tz="UTC")
        elif isinstance(kind, (Integer, SmallInteger, BigInteger)):
            types[column.name] = pa.int64()
        elif isinstance(kind, Float):
            types[column.name] = pa.float64()
        elif isinstance(kind, String):
            types[column.name] = pa.string()
        else:  # pragma: no cover - callers select these types only
            raise TypeError(f"read_frame_via_copy: column {column.name} of type {kind}")
    return types


def _copy_out(conn: Connection, statement, target) -> None:
    compiled = statement.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    raw = conn.connection.driver_connection
    with raw.cursor() as cursor:
        query = cursor.mogrify(str(compiled), compiled.params).decode()
        cursor.copy_expert(f"COPY ({query}) TO STDOUT WITH (FORMAT csv, HEADER true)", target)


def _arrow_frame(table, types: dict) -> pd.DataFrame:
    frame = table.to_pandas(types_mapper={pa.string(): pd.StringDtype("pyarrow"), pa.int64(): pd.Int64Dtype()}.get)
    for name, kind in types.items():
        if kind == pa.date32():
            frame[name] = pd.to_datetime(frame[name]).astype("datetime64[s]")
    return frame


_CSV_OPTIONS = dict(parse_options=pacsv.ParseOptions(newlines_in_values=True))


def _convert(types: dict) -> pacsv.ConvertOptions:
    return pacsv.ConvertOptions(column_types=types, strings_can_be_null=True, quoted_strings_can_be_null=False,
                                null_values=[""])


def read_frame_via_copy(conn: Connection, statement) -> pd.DataFrame:
    """Like `read_frame`, for wide or long results: on PostgreSQL the rows come as COPY
    text parsed by Arrow (several times faster than row objects), typed from the select's
    columns (text as string, numbers as float64/Int64, days as datetime64[s]; NULL as missing)."""
    if not is_postgres(conn):
        return read_frame(conn, statement)
    types = _arrow_types(statement)
    buffer = io.BytesIO()
    _copy_out(conn, statement, buffer)
    buffer.seek(0)
    return _arrow_frame(pacsv.read_csv(buffer, convert_options=_convert(types), **_CSV_OPTIONS), types)


def read_frames(conn: Connection, statement, *, rows: int = 500_000) -> Iterator[pd.DataFrame]:
    """A select's rows as DataFrames of about `rows` rows each, so a caller that reduces each
    one (to codes, to sums) never holds the whole result as text or Python values: on
    PostgreSQL through COPY into a temporary file read back by Arrow in blocks (typed as in
    `read_frame_via_copy`); on SQLite through a cursor `rows` at a time (as `read_frame`)."""
    if is_postgres(conn):
        types = _arrow_types(statement)
        with tempfile.TemporaryFile() as spool:
            _copy_out(conn, statement, spool)
            spool.seek(0)
            reader = pacsv.open_csv(spool, read_options=pacsv.ReadOptions(block_size=rows * 48),
                                    convert_options=_convert(types), **_CSV_OPTIONS)
            for batch in reader:
                yield _arrow_frame(pa.Table.from_batches([batch]), types)
        return
    result = conn.execution_options(yield_per=rows).execute(statement)
    keys = list(result.keys())
    for part in result.partitions():
        yield pd.DataFrame.from_records([tuple(row) for row in part], columns=keys)


def upsert_from_select(conn: Connection, table: Table, columns: Sequence[str], select_stmt) -> None:
    """INSERT INTO table (columns) SELECT ... ON CONFLICT (primary key) DO UPDATE."""
    dialect_insert = postgresql.insert if is_postgres(conn) else sqlite.insert
    key = [c.name for c in table.primary_key.columns]
    # SQLite needs a WHERE in the SELECT to parse ON CONFLICT as the upsert clause.
    statement = dialect_insert(table).from_select(list(columns), select_stmt.where(true()))
    statement = statement.on_conflict_do_update(
        index_elements=key,
        set_={c: statement.excluded[c] for c in columns if c not in key},
    )
    conn.execute(statement)


def upsert_rows(conn: Connection, table: Table, rows: Iterable[dict], key: Sequence[str]) -> None:
    """Insert rows, or update them where `key` (a unique constraint's columns) already exists."""
    rows = list(rows)
    if not rows:
        return
    dialect_insert = postgresql.insert if is_postgres(conn) else sqlite.insert
    statement = dialect_insert(table)
    statement = statement.on_conflict_do_update(
        index_elements=list(key),
        set_={c: statement.excluded[c] for c in rows[0] if c not in key},
    )
    conn.execute(statement, rows)


def _canonical(frame: pd.DataFrame, table: Table, columns: list[str]) -> pd.DataFrame:
    """Rows as text, one spelling per value, sorted by the table's key: for comparing."""
    out = {}
    for name in columns:
        column_type = table.c[name].type
        values = frame[name]
        if isinstance(column_type, Date):
            values = pd.to_datetime(values).dt.strftime("%Y-%m-%d")
        elif isinstance(column_type, Float):
            values = pd.to_numeric(values).astype("float64").round(9)
        elif isinstance(column_type, (Integer, SmallInteger, BigInteger)):
            values = pd.to_numeric(values).astype("Int64")
        out[name] = values.astype("string").fillna("<null>")
    key = [c.name for c in table.primary_key.columns if c.name in columns]
    return pd.DataFrame(out, index=frame.index).sort_values(key, ignore_index=True)


def replace_district_rows(conn: Connection, table: Table, district_id: str, frame: pd.DataFrame,
                          *, stamp: dict, students: Table | None = None) -> int:
    """Make `table` hold exactly `frame`'s rows for the district, in the caller's transaction;
    with `students` (a table with a student_id column), for those students only, and the
    district's other rows are left as they are.

    `stamp` (e.g. {"computed_at": now}) is added to written rows. Nothing is written when
    the published rows already equal `frame`, so a rerun leaves them, stamps included, as
    they were. Returns the number of rows written.
    """
    compared = [c for c in frame.columns if c not in stamp]
    mine = [table.c.district_id == district_id]
    if students is not None:
        mine.append(table.c.student_id.in_(select(students.c.student_id)))
    statement = select(*(table.c[c] for c in compared)).where(*mine)
    # Through COPY where every column's type allows it: a district's millions of rows are not
    # held as Python tuples to be compared (both reads give the same canonical text).
    copyable = all(isinstance(table.c[c].type, (Date, DateTime, Integer, SmallInteger, BigInteger, Float, String))
                   for c in compared)
    published = read_frame_via_copy(conn, statement) if copyable else read_frame(conn, statement)
    if len(published) == len(frame) and _canonical(published, table, compared).equals(
        _canonical(frame, table, compared)
    ):
        return 0
    conn.execute(delete(table).where(*mine))
    return bulk_insert(conn, table, frame.assign(**stamp))
