"""Shared fixtures: a database per test on SQLite and on PostgreSQL.

PostgreSQL tests use TEST_DATABASE_URL, each in a schema of its own that is dropped after.
When TEST_DATABASE_URL is set and the server cannot be reached, those tests fail (CI sets
it); when it is not set at all, they are skipped with a note saying how to run them.

Under pytest-xdist (`-n 2`, the README's test command) each worker runs its PostgreSQL tests
in a database of its own, made from TEST_DATABASE_URL's at the worker's start and dropped at
its end: a schema of one's own is not enough, because PostgreSQL's advisory locks (the
recommendations fleet lock, the ingest and claim locks, keyed by district and most tests'
district is `alpha`) are per database, so two workers in one database would take each
other's locks.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path
from urllib.parse import quote

import hypothesis
import pytest
import sqlalchemy as sa

from storage import database
PG_URL = os.environ.get("TEST_DATABASE_URL")
_WORKER_DATABASE: str | None = None  # the database this xdist worker made (dropped at its end)
_BASE_URL = PG_URL  # TEST_DATABASE_URL as given, where the worker's database is made and dropped


def _admin_engine(url: str):
    return sa.create_engine(url, isolation_level="AUTOCOMMIT")


def pytest_configure(config):
    """An xdist worker: a PostgreSQL database of its own (see the module's docstring), made
    like TEST_DATABASE_URL's (template0, its encoding and locale); TEST_DATABASE_URL is set to
    it, for this process, the tests that read it and the trigger.py they start. When the
    server cannot be reached, nothing is made here and the tests fail as they do without
    xdist."""
    global PG_URL, _WORKER_DATABASE
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not PG_URL or not worker:
        return
    base = sa.engine.make_url(PG_URL)
    name = f"{base.database}_{worker}_{os.environ.get('PYTEST_XDIST_TESTRUNUID', uuid.uuid4().hex)[:8]}"
    admin = _admin_engine(PG_URL)
    try:
        with admin.connect() as conn:
            encoding, collate, ctype = conn.execute(sa.text(
                "select pg_encoding_to_char(encoding), datcollate, datctype from pg_database "
                "where datname = current_database()")).one()
            exists = conn.execute(sa.text("select 1 from pg_database where datname = :name"), {"name": name}).first()
            if not exists:  # it does when xdist restarted a crashed worker of this run: the run's own
                conn.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE template0 ENCODING \'{encoding}\' '
                                     f"LC_COLLATE '{collate}' LC_CTYPE '{ctype}'"))
    except sa.exc.OperationalError:
        return  # unreachable: make_pg_url fails each PostgreSQL test, saying so
    finally:
        admin.dispose()
    _WORKER_DATABASE = name
    PG_URL = base.set(database=name).render_as_string(hide_password=False)
    os.environ["TEST_DATABASE_URL"] = PG_URL


def pytest_unconfigure(config):
    """Drop the worker's database (only one this process made: its name is remembered)."""
    if _WORKER_DATABASE is None:
        return
    admin = _admin_engine(_BASE_URL)
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{_WORKER_DATABASE}" WITH (FORCE)'))
    finally:
        admin.dispose()

# No property test fails because the machine is busy: hypothesis' per-example deadline
# (200 ms by default) is a wall-clock limit, so it is off; pytest-timeout is the hang guard.
hypothesis.settings.register_profile("no-deadline", deadline=None)
hypothesis.settings.load_profile("no-deadline")

CLI = Path(__file__).parent / "cli"


def pytest_collection_modifyitems(items):
    """Every test of tests/cli runs the real trigger.py as a subprocess: slow (the fast tier,
    `pytest -m "not slow"`, leaves them out; integration modules mark themselves)."""
    for item in items:
        if CLI in Path(item.fspath).parents:
            item.add_marker(pytest.mark.slow)


def _with_search_path(url: str, schema: str) -> str:
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options={quote(f'-csearch_path={schema}')}"


@pytest.fixture
def make_pg_url():
    """A factory of PostgreSQL URLs, each with a fresh schema as search_path (all dropped after)."""
    if not PG_URL:
        pytest.skip("TEST_DATABASE_URL is not set (CI sets it; see README, 'Tests')")
    admin = sa.create_engine(PG_URL)
    schemas = []

    def make() -> str:
        schema = f"t_{uuid.uuid4().hex[:12]}"
        try:
            with admin.begin() as conn:
                conn.execute(sa.schema.CreateSchema(schema))
        except sa.exc.OperationalError as exc:
            pytest.fail(f"TEST_DATABASE_URL is set but PostgreSQL cannot be reached: {exc.orig}")
        schemas.append(schema)
        return _with_search_path(PG_URL, schema)

    yield make
    with admin.begin() as conn:
        for schema in schemas:
            conn.execute(sa.schema.DropSchema(schema, cascade=True))
    admin.dispose()


@pytest.fixture
def pg_url(make_pg_url):
    """A PostgreSQL URL whose search_path is a fresh schema (dropped afterwards)."""
    return make_pg_url()


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


# --- OpenPGP: a throwaway keyring made by the tests, with the real gpg --------------------

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Keyring:
    home: Path
    recipient: str
    passphrase: str

    def encrypt(self, plain: Path, out: Path) -> Path:
        subprocess.run(
            ["gpg", "--homedir", str(self.home), "--batch", "--yes", "--trust-model", "always",
             "--recipient", self.recipient, "--output", str(out), "--encrypt", str(plain)],
            check=True, capture_output=True,
        )
        return out


def _make_keyring(home: Path, name: str, passphrase: str) -> Keyring:
    home.mkdir(mode=0o700)
    # No passphrase cache: every decryption must present the passphrase again.
    (home / "gpg-agent.conf").write_text("default-cache-ttl 0\nmax-cache-ttl 0\nallow-loopback-pinentry\n")
    recipient = f"{name}@example.org"
    subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback", "--passphrase", passphrase,
         "--quick-gen-key", f"{name} <{recipient}>", "future-default", "default", "never"],
        check=True, capture_output=True,
    )
    return Keyring(home, recipient, passphrase)


@pytest.fixture(scope="session")
def keyrings(tmp_path_factory):
    """(the service's keyring, another party's keyring), each with a fresh key."""
    if not shutil.which("gpg"):
        pytest.fail("gpg is not installed: apt-get install gnupg")
    base = tmp_path_factory.mktemp("gpg")
    service = _make_keyring(base / "service", "analytics-service", "correct horse battery staple")
    other = _make_keyring(base / "other", "someone-else", "another secret")
    yield service, other
    for ring in (service, other):
        subprocess.run(["gpgconf", "--homedir", str(ring.home), "--kill", "gpg-agent"], capture_output=True)


@pytest.fixture
def service_keyring(keyrings, monkeypatch):
    """The service's keyring in GNUPGHOME and its passphrase in ANALYTICS_GPG_PASSPHRASE."""
    service, _ = keyrings
    monkeypatch.setenv("GNUPGHOME", str(service.home))
    monkeypatch.setenv("ANALYTICS_GPG_PASSPHRASE", service.passphrase)
    return service
