"""xAPI, Caliper and OneRoster files through the real CLI, on SQLite and PostgreSQL: a cycle
and a rerun, and the dry run that lists every mapping rule (the fixture: tests/standards_fixture.py)."""
from __future__ import annotations

import pytest

from tests.cli.test_trigger import run
from tests.standards_fixture import AS_OF, write

DISTRICTS = """districts:
  - id: riverside
    name: Riverside Unified
    apps: [dreambox, lexia, ixl]
    standards:
      timezone: America/Chicago
      actor: [account.name, mbox_local]
      apps: {"Lexia Core5": lexia}
"""


@pytest.fixture
def place(tmp_path, db_url):
    (tmp_path / "districts.yaml").write_text(DISTRICTS)
    write(tmp_path / "landing" / "riverside")
    return tmp_path, db_url


def cli(place, *args):
    folder, url = place
    return run([*args, "--as-of", AS_OF], folder, DATABASE_URL=url)


def test_a_cycle_then_a_rerun(place):
    first = cli(place)
    assert first.returncode == 0, first.stderr
    assert "ingest           riverside  completed_with_errors" in first.stdout
    assert "files: 5 loaded" in first.stdout and "voiding statements 1" in first.stdout
    second = cli(place)
    assert second.returncode == 0 and "files: 5 skipped" in second.stdout


def test_the_dry_run_lists_the_districts_mapping_rules_and_what_maps_to_nothing(place):
    result = cli(place, "--onboard", "riverside", "--apps", "dreambox,lexia,ixl", "--check")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "mapping rules (districts.yaml standards:, as districts.yaml sets them)" in out
    assert "time zone of a day: America/Chicago" in out
    assert "xAPI actor -> student id: account.name, mbox_local (first that holds)" in out
    assert "table: 'Lexia Core5' -> lexia" in out
    assert "each capped at 120 minutes" in out
    assert "the actor maps to no student id (rules: account.name, mbox_local):: 3" in out  # sha1sum, openid, group
    assert "maps to no app id" in out and "apps by mapping table: 4" in out
    assert "apps in usage but not in --apps" not in out
