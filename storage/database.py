"""Connections: the database URL and its forms, the engine with the fixed schema created,
SQLite's transactions, snapshots, advisory-lock keys."""
from __future__ import annotations

import hashlib
import logging
import os

from sqlalchemy import Engine, String, create_engine, event, func, inspect, select, text
from sqlalchemy.engine import Connection

from models import metadata
from storage.ddl import AddColumn, SetStorage

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
    """An Engine for `url`, with the fixed schema created if it is missing.

    The schema is first looked at in a read-only transaction: when nothing is missing (every
    start but the first and an upgrade's), nothing is written, so an instance starts while
    another one holds SQLite's write lock for a long file (WAL readers never wait)."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": sqlite_busy_seconds()})
        _sqlite_transactions(engine)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    if _schema_complete(engine):
        return engine
    with engine.begin() as conn:
        if is_postgres(conn):  # instances starting at once take turns (SQLite: BEGIN IMMEDIATE)
            conn.execute(select(func.pg_advisory_xact_lock(lock_key("schema"))))
        metadata.create_all(conn)
        _add_missing_columns(conn)
        if is_postgres(conn):
            _set_storage_parameters(conn)
    return engine


def sqlite_busy_seconds() -> float:
    """How long an SQLite statement waits for another connection's write lock before
    "database is locked": ANALYTICS_SQLITE_BUSY_SECONDS (default 60)."""
    return float(os.environ.get("ANALYTICS_SQLITE_BUSY_SECONDS", "60"))


def read_only(engine: Engine) -> Connection:
    """A connection for reads alone (use with `with`): on SQLite its transactions begin
    DEFERRED, so they take no write lock and never wait for a writer (WAL); on PostgreSQL
    a plain connection."""
    return engine.connect().execution_options(sqlite_read_only=True)


def _schema_complete(engine: Engine) -> bool:
    with read_only(engine) as conn:
        inspector = inspect(conn)
        present = set(inspector.get_table_names())
        for table in metadata.sorted_tables:
            if table.name not in present:
                return False
            columns = {c["name"] for c in inspector.get_columns(table.name)}
            if any(c.name not in columns for c in table.columns):
                return False
    return True


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


def _set_storage_parameters(conn: Connection) -> None:
    """Give tables made by an earlier version the storage parameters set since (models'
    `postgresql_with`, e.g. the free space that lets recommendations' nightly period UPDATE
    stay on the row's page); rows written later follow them."""
    for table in metadata.sorted_tables:
        wanted = {name: int(value) for name, value in (table.dialect_options["postgresql"]["with"] or {}).items()}
        if not wanted:
            continue
        present = conn.execute(text("SELECT reloptions FROM pg_class WHERE oid = to_regclass(:name)"),
                               {"name": table.name}).scalar() or []
        if set(present) != {f"{name}={value}" for name, value in wanted.items()}:
            conn.execute(SetStorage(table, wanted))
            log.info("%s: storage parameters set (%s)", table.name, wanted)


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
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        # Writers take the write lock at BEGIN, so two never deadlock upgrading a read;
        # a connection for reads alone (read_only) takes none.
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("sqlite_read_only") else "BEGIN IMMEDIATE")


def is_postgres(conn: Connection | Engine) -> bool:
    return conn.dialect.name == "postgresql"


def code_point_order(conn: Connection | Engine, *columns) -> list:
    """ORDER BY terms that sort the same on every database: text in code-point order
    (PostgreSQL: COLLATE "C", whatever the database's own collation; SQLite's BINARY
    already is), other types as they are. For reads whose row order reaches a computation
    (a float sum, a model's rows): the same rows then give the same bits."""
    if not is_postgres(conn):
        return list(columns)
    return [c.collate("C") if isinstance(c.type, String) else c for c in columns]


def snapshot(engine: Engine) -> Connection:
    """A connection whose reads all see one snapshot of the database (use with `with`).

    PostgreSQL reads at REPEATABLE READ, so an ingest committing between two SELECTs of a
    job is seen by neither; an SQLite transaction is a snapshot already.
    """
    conn = engine.connect()
    if is_postgres(conn):
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
    return conn


def lock_key(*parts: str) -> int:
    """A stable signed 64-bit key for a PostgreSQL advisory lock, from names."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def describe(url: str) -> str:
    """The URL for messages, with any password hidden."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unparseable DATABASE_URL)"


def analyze(conn: Connection, table) -> None:
    """Refresh PostgreSQL's statistics of a table just filled (a temporary table is never
    analyzed by autovacuum), so the next plans know its size; nothing on SQLite."""
    if not is_postgres(conn):
        return
    from psycopg2 import sql

    name = sql.Identifier(*((table.schema, table.name) if table.schema else (table.name,)))
    with conn.connection.driver_connection.cursor() as cursor:
        cursor.execute(sql.SQL("ANALYZE {}").format(name))
