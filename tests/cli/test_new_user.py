"""What a new user trips over, tried as they would: the real trigger.py as a subprocess."""
from __future__ import annotations

import pytest

from tests.cli.test_trigger import run, workdir  # noqa: F401 (fixture)


def _plain(url: str) -> str:
    """The test server's URL as libpq, Docker images and hosting services write it."""
    return url.replace("postgresql+psycopg2://", "postgresql://", 1)


@pytest.mark.parametrize("form", ["postgresql://", "postgres://"])
def test_a_plain_postgresql_url_uses_the_driver_we_ship(workdir, pg_url, form):
    url = form + _plain(pg_url).removeprefix("postgresql://")
    done = run(["--as-of", "2026-11-22", "--jobs", "ingest,dailypull"], workdir, DATABASE_URL=url)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("url, says", [
    ("postgresql+psycopg://u@127.0.0.1/db", "asks for the driver 'psycopg', which this service does not ship"),
    ("mysql://u@127.0.0.1/db", "'mysql' is not a database this service runs on"),
    ("analytics.db", "is not a URL"),
    ("", "DATABASE_URL is empty"),
])
def test_a_database_url_that_cannot_work_gets_one_line_naming_the_form_to_use(workdir, url, says):
    done = run([], workdir, DATABASE_URL=url)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and says in lines[0], done.stderr
    assert "sqlite:///PATH" in lines[0] or "postgresql://" in lines[0]
