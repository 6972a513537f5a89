"""Connections and the few write primitives every job shares, on SQLite and PostgreSQL.

Identifiers only ever reach SQL through SQLAlchemy `Table`/`Column` objects and the
dialect's own quoting; values always travel as bound parameters or COPY data.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
from sqlalchemy import Column, Engine, Table, create_engine, delete, event, func, inspect, select, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import DDLElement
from sqlalchemy.types import BigInteger, Date, DateTime, Float, Integer, LargeBinary, SmallInteger, String

from models import metadata

log = logging.getLogger(__name__)

DEFAULT_URL = "sqlite:///analytics.db"


class UnusableURL(ValueError):
    """DATABASE_URL names no database this service can open; the message says the form to use."""


URL_FORMS = "sqlite:///PATH (a file) or postgresql://USER:PASSWORD@HOST:PORT/DB"


def normalise_url(url: str) -> str:
    """The URL with the driver we ship: `postgresql://` and `postgres://` (the forms libpq,
    Docker images and hosting services hand out) mean psycopg2, which SQLAlchemy 2.1 would
    not pick by itself. Raise UnusableURL, naming the forms that work, for anything else."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    text = url.strip()
    if not text:
        raise UnusableURL(f"DATABASE_URL is empty; expected {URL_FORMS}")
    scheme, sep, rest = text.partition("://")
    if not sep:
        raise UnusableURL(f"DATABASE_URL is not a URL (it has no SCHEME://); expected {URL_FORMS}")
    name, _, driver = scheme.lower().partition("+")
    if name in ("postgres", "postgresql", "pgsql") and driver in ("", "psycopg2"):
        text = f"postgresql+psycopg2://{rest}"
    elif name in ("postgres", "postgresql"):
        raise UnusableURL(f"DATABASE_URL {describe(text)} asks for the driver {driver!r}, which this service does not "
                          f"ship; use postgresql://... (psycopg2)")
    elif name == "sqlite" and driver in ("", "pysqlite"):
        pass
    else:
        raise UnusableURL(f"DATABASE_URL {describe(text)}: {scheme!r} is not a database this service runs on; "
                          f"expected {URL_FORMS}")
    try:
        make_url(text)
    except ArgumentError:
        raise UnusableURL(f"DATABASE_URL {describe(text)} cannot be parsed; expected {URL_FORMS}") from None
    return text


def connect(url: str) -> Engine:
    """An Engine for `url`, with the fixed schema created if it is missing."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 60})
        _sqlite_transactions(engine)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    with engine.begin() as conn:
        if is_postgres(conn):  # instances starting at once take turns (SQLite: BEGIN IMMEDIATE)
            conn.execute(select(func.pg_advisory_xact_lock(lock_key("schema"))))
        metadata.create_all(conn)
        _add_missing_columns(conn)
    return engine


def _add_missing_columns(conn: Connection) -> None:
    """Give tables made by an earlier version the nullable columns added since: a
    newcomer, or an upgrade, runs no migration step."""
    inspector = inspect(conn)
    for table in metadata.sorted_tables:
        present = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in present and column.nullable:
                conn.execute(AddColumn(table, column))
                log.info("%s: column %s added", table.name, column.name)


def _sqlite_transactions(engine: Engine) -> None:
    """Let SQLAlchemy, not the sqlite3 module, open transactions, so DDL is transactional.

    The sqlite3 module neither begins a transaction before CREATE/ALTER/DROP nor lets a
    rollback undo them; emitting BEGIN ourselves makes a publish all-or-nothing.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")  # readers see the last commit, never a mix
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def is_postgres(conn: Connection | Engine) -> bool:
    return conn.dialect.name == "postgresql"


def snapshot(engine: Engine) -> Connection:
    """A connection whose reads all see one snapshot of the database (use with `with`).

    PostgreSQL reads at REPEATABLE READ, so an ingest committing between two SELECTs of a
    job is seen by neither; an SQLite transaction is a snapshot already.
    """
    conn = engine.connect()
    if is_postgres(conn):
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
    return conn


def _take_lease(engine: Engine, table: Table, key: Column, value: str, holder: str, lease_seconds: float,
                **columns) -> str | None:
    """Take the lease row `key == value` for `holder` unless another holder's has not expired.

    Returns None when taken, else the holder that has it. One transaction: on PostgreSQL the
    takers of one row take turns on an advisory lock; on SQLite BEGIN IMMEDIATE does it.
    """
    now = datetime.now(timezone.utc)
    with engine.begin() as conn:
        if is_postgres(conn):
            conn.execute(select(func.pg_advisory_xact_lock(lock_key(table.name, value))))
        conn.execute(delete(table).where(key == value, table.c.expires_at < now))
        other = conn.execute(select(table.c.holder).where(key == value)).scalar()
        if other is not None and holder_is_gone(other):
            log.info("%s %r: its holder %s is no longer running on this host: taken over", table.name, value, other)
            conn.execute(delete(table).where(key == value, table.c.holder == other))
            other = None
        if other is None:
            conn.execute(table.insert().values({key.name: value, "holder": holder,
                                                "expires_at": now + timedelta(seconds=lease_seconds), **columns}))
    return other


@contextmanager
def _holding(engine: Engine, table: Table, mine, lease_seconds: float, name: str) -> Iterator[None]:
    """While the block runs, push the lease rows `mine` forward every third of the lease from a
    thread (a holder that dies stops renewing); delete them when it ends."""
    stop = threading.Event()

    def renew():
        while not stop.wait(lease_seconds / 3):
            try:
                with engine.begin() as conn:
                    conn.execute(update(table).where(mine).values(
                        expires_at=datetime.now(timezone.utc) + timedelta(seconds=lease_seconds)))
            except Exception:  # a missed renewal only shortens the lease
                log.warning("could not renew %s", name, exc_info=True)

    thread = threading.Thread(target=renew, name=name, daemon=True)
    thread.start()
    release = True
    try:
        yield
    except LeftToExpire:  # work under it may still be running elsewhere: stop renewing, keep the row
        release = False
        raise
    finally:
        stop.set()
        thread.join()
        if release:
            with engine.begin() as conn:
                conn.execute(delete(table).where(mine))


class LeftToExpire(Exception):
    """Thrown into a held lease (a claim) to stop renewing it without releasing it: whatever
    runs under it elsewhere keeps it until the lease expires."""


def _retry(attempt, wait_seconds: float):
    """Call `attempt` until it returns something true or `wait_seconds` have passed."""
    deadline = time.monotonic() + wait_seconds
    while True:
        result = attempt()
        if result or time.monotonic() >= deadline:
            return result
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


@contextmanager
def claim(engine: Engine, district_id: str, holder: str, lease_seconds: float) -> Iterator[str | None]:
    """Claim a district for this instance while the block runs.

    Yields None when the claim is ours, else the holder that has it. The lease is renewed
    while the block runs; a holder that dies stops renewing, and the district is free again
    once its lease has expired.
    """
    from models import job_claims

    other = _take_lease(engine, job_claims, job_claims.c.district_id, district_id, holder, lease_seconds,
                        claimed_at=datetime.now(timezone.utc))
    if other is not None:
        yield other
        return
    mine = (job_claims.c.district_id == district_id) & (job_claims.c.holder == holder)
    with _holding(engine, job_claims, mine, lease_seconds, f"claim-{district_id}"):
        yield None


def holder_name() -> str:
    """This process, as claims and locks name it: HOST:PID."""
    return f"{socket.gethostname()}:{os.getpid()}"


def holder_is_gone(holder: str) -> bool:
    """Whether `holder` (HOST:PID, or HOST:PID:TAG) names a process of this host that no
    longer exists: its lease need not be waited out. A holder on another host, or one whose
    process id is alive (even if reused by another program), keeps its lease until it ends."""
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


@contextmanager
def exclusive(engine: Engine, *names: str, wait_seconds: float = 0.0,
              lease_seconds: float | None = None) -> Iterator[bool]:
    """Hold the database-wide lock `names` while the block runs; yields whether it was taken.

    PostgreSQL: a session advisory lock on a connection of its own, released when the block
    ends or the process dies. SQLite: a lease row in service_locks, renewed while the block
    runs and deleted when it ends; a holder that died loses it when the lease expires.
    Waits up to `wait_seconds` for it.
    """
    if engine.dialect.name == "postgresql":
        key = lock_key(*names)
        with engine.connect() as conn:

            def attempt() -> bool:
                taken = conn.execute(select(func.pg_try_advisory_lock(key))).scalar_one()
                conn.commit()
                return bool(taken)

            taken = _retry(attempt, wait_seconds)
            try:
                yield taken
            finally:
                if taken:
                    conn.execute(select(func.pg_advisory_unlock(key)))
                    conn.commit()
        return
    from models import service_locks

    lease = lease_seconds or float(os.environ.get("ANALYTICS_LEASE_SECONDS", "600"))
    name, holder = "/".join(names), f"{holder_name()}:{uuid.uuid4().hex[:8]}"
    taken = _retry(lambda: _take_lease(engine, service_locks, service_locks.c.name, name, holder, lease) is None,
                   wait_seconds)
    if not taken:
        yield False
        return
    mine = (service_locks.c.name == name) & (service_locks.c.holder == holder)
    with _holding(engine, service_locks, mine, lease, f"lock-{name}"):
        yield True


def insert_missing(conn: Connection, table: Table, rows: list[dict]) -> None:
    """Insert rows whose primary key is not there yet; leave existing ones as they are."""
    if not rows:
        return
    dialect_insert = postgresql.insert if is_postgres(conn) else sqlite.insert
    conn.execute(dialect_insert(table).on_conflict_do_nothing(), rows)


def lock_key(*parts: str) -> int:
    """A stable signed 64-bit key for a PostgreSQL advisory lock, from names."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


# --- frames in and out -------------------------------------------------------------------

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
            array = pa.array(text.mask(text.eq("")), type=pa.string(), from_pandas=True)
        arrays.append(array)
    buffer = io.BytesIO()
    pacsv.write_csv(pa.Table.from_arrays(arrays, names=list(frame.columns)), buffer,
                    pacsv.WriteOptions(include_header=False, quoting_style="needed"))
    buffer.seek(0)
    return buffer


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


def read_frame_via_copy(conn: Connection, statement) -> pd.DataFrame:
    """Like `read_frame`, for wide or long results: on PostgreSQL the rows come as COPY
    text parsed by Arrow (several times faster than row objects), typed from the select's
    columns (text as string, numbers as float64/Int64, days as datetime64[s]; NULL as missing)."""
    if not is_postgres(conn):
        return read_frame(conn, statement)
    columns = list(statement.selected_columns)
    types = {}
    for column in columns:
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
    compiled = statement.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    raw = conn.connection.driver_connection
    buffer = io.BytesIO()
    with raw.cursor() as cursor:
        query = cursor.mogrify(str(compiled), compiled.params).decode()
        cursor.copy_expert(f"COPY ({query}) TO STDOUT WITH (FORMAT csv, HEADER true)", buffer)
    buffer.seek(0)
    table = pacsv.read_csv(buffer, parse_options=pacsv.ParseOptions(newlines_in_values=True),
                           convert_options=pacsv.ConvertOptions(
        column_types=types, strings_can_be_null=True, quoted_strings_can_be_null=False, null_values=[""]))
    frame = table.to_pandas(types_mapper={pa.string(): pd.StringDtype("pyarrow"), pa.int64(): pd.Int64Dtype()}.get)
    for name, kind in types.items():
        if kind == pa.date32():
            frame[name] = pd.to_datetime(frame[name]).astype("datetime64[s]")
    return frame


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


# --- quoted DDL for reshaping a district's table ------------------------------------------

class AddColumn(DDLElement):
    inherit_cache = False

    def __init__(self, table: Table, column: Column):
        self.table, self.column = table, column


class DropColumn(DDLElement):
    inherit_cache = False

    def __init__(self, table: Table, column_name: str):
        self.table, self.column_name = table, column_name


@compiles(AddColumn)
def _add_column(element, compiler, **kw):
    spec = compiler.get_column_specification(element.column)
    default = " DEFAULT 0" if not element.column.nullable else ""
    return f"ALTER TABLE {compiler.preparer.format_table(element.table)} ADD COLUMN {spec}{default}"


@compiles(DropColumn)
def _drop_column(element, compiler, **kw):
    return (
        f"ALTER TABLE {compiler.preparer.format_table(element.table)} "
        f"DROP COLUMN {compiler.preparer.quote(element.column_name)}"
    )


def existing_columns(conn: Connection, table_name: str) -> list[str] | None:
    """Column names of `table_name` as it stands in the database, or None if it is absent."""
    inspector = inspect(conn)
    if not inspector.has_table(table_name):
        return None
    return [c["name"] for c in inspector.get_columns(table_name)]


def describe(url: str) -> str:
    """The URL for messages, with any password hidden."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unparseable DATABASE_URL)"


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
                          *, stamp: dict) -> int:
    """Make `table` hold exactly `frame`'s rows for the district, in the caller's transaction.

    `stamp` (e.g. {"computed_at": now}) is added to written rows. Nothing is written when
    the published rows already equal `frame`, so a rerun leaves them, stamps included, as
    they were. Returns the number of rows written.
    """
    compared = [c for c in frame.columns if c not in stamp]
    published = read_frame(conn, select(*(table.c[c] for c in compared)).where(table.c.district_id == district_id))
    if len(published) == len(frame) and _canonical(published, table, compared).equals(
        _canonical(frame, table, compared)
    ):
        return 0
    conn.execute(delete(table).where(table.c.district_id == district_id))
    return bulk_insert(conn, table, frame.assign(**stamp))
