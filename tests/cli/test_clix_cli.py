"""A CLIx tree through the real CLI, on SQLite and PostgreSQL: a cycle, a rerun that loads
nothing new, and --status --reminders (the fixture: tests/clix_fixture.py)."""
from __future__ import annotations

import json

import pytest

from tests.cli.test_trigger import run
from tests.clix_fixture import AS_OF, EXPECTED, write_tree

DISTRICTS = """districts:
  - id: mizoram
    name: CLIx Mizoram
    apps: [understanding_motion, policequad]
    source: clix
    clix: {timezone: Asia/Kolkata, visit_cap_minutes: 30, session_cap_minutes: 120}
"""


@pytest.fixture
def place(tmp_path, db_url):
    (tmp_path / "districts.yaml").write_text(DISTRICTS)
    write_tree(tmp_path / "landing" / "mizoram")
    return tmp_path, db_url


def cli(place, *args):
    folder, url = place
    return run([*args, "--as-of", AS_OF], folder, DATABASE_URL=url)


def test_a_tree_through_the_cli_then_a_rerun_then_the_sync_page(place):
    first = cli(place)
    assert first.returncode == 0, first.stderr
    assert "ingest           mizoram   succeeded" in first.stdout
    assert "files: 15 loaded, 1 duplicate" in first.stdout and "sync: 1 ok, 1 missed Friday, 1 late, 1 silent" in first.stdout
    second = cli(place)
    assert second.returncode == 0 and "files: 16 skipped" in second.stdout
    page = cli(place, "--status", "--reminders")
    assert page.returncode == 0, page.stderr
    for school, state in EXPECTED["sync"].items():
        assert f"{school}  {state}" in page.stdout
    assert "Remind before Friday 2018-10-12 (in 12 days)" in page.stdout
    data = json.loads(cli(place, "--status", "--json", "--reminders").stdout)
    assert {s["school"]: s["state"] for s in data["school_servers"]} == EXPECTED["sync"]
    assert data["reminders"]["schools"][0]["why"] == "nothing received this month"


def test_reminders_go_with_status(place):
    result = cli(place, "--reminders")
    assert result.returncode == 2 and "--reminders with --status" in result.stderr
