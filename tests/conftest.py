"""Shared fixtures: a database per test on SQLite and on PostgreSQL.

PostgreSQL tests use TEST_DATABASE_URL, each in a schema of its own that is dropped after.
When TEST_DATABASE_URL is set and the server cannot be reached, those tests fail (CI sets
it); when it is not set at all, they are skipped with a note saying how to run them.
"""
from __future__ import annotations

import os
import uuid
from urllib.parse import quote

import pytest
import sqlalchemy as sa

import database

PG_URL = os.environ.get("TEST_DATABASE_URL")


def _with_search_path(url: str, schema: str) -> str:
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options={quote(f'-csearch_path={schema}')}"


@pytest.fixture
def pg_url():
    """A PostgreSQL URL whose search_path is a fresh schema (dropped afterwards)."""
    if not PG_URL:
        pytest.skip("TEST_DATABASE_URL is not set (CI sets it; see README, 'Tests')")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL)
    try:
        with admin.begin() as conn:
            conn.execute(sa.schema.CreateSchema(schema))
    except sa.exc.OperationalError as exc:
        pytest.fail(f"TEST_DATABASE_URL is set but PostgreSQL cannot be reached: {exc.orig}")
    try:
        yield _with_search_path(PG_URL, schema)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.schema.DropSchema(schema, cascade=True))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'analytics.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request):
    """The URL of an empty database, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def engine(db_url):
    engine = database.connect(db_url)
    yield engine
    engine.dispose()
