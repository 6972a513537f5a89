"""Least privilege, identifiers and secrets: each promise a test that fails if broken."""
from __future__ import annotations

import ast
import re
import subprocess
import uuid
from datetime import date
from pathlib import Path
from urllib.parse import unquote

import pytest
import sqlalchemy as sa

import config
from runner.cycle import run_cycle
from models import dataframe_table
from models.schema import POSTGRES_IDENTIFIER_BYTES, app_column, dataframe_table_name
from tests.integration.test_recommendations import APPS, district_files

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def test_the_dashboard_role_reads_every_output_table_and_can_neither_write_nor_create(pg_url, tmp_path):
    schema = unquote(pg_url.split("search_path%3D")[1])
    role = f"dash_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(pg_url)
    from storage import database
    database.connect(pg_url).dispose()  # the service's tables exist before the script runs
    url = engine.url.set(drivername="postgresql", query={}).render_as_string(hide_password=False)
    done = subprocess.run(["psql", url, "-q", "-v", f"dashboard={role}", "-v", "password=dash-pw",
                           "-v", f"schema={schema}", "-f", str(REPO / "deploy" / "dashboard_role.sql")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    try:
        district_files(tmp_path / "landing", "delta", 60, planted=True, seed=5)  # published after the grant
        settings = config.parse({"districts": [{"id": "delta", "apps": APPS}]})
        run_cycle(engine, settings, districts=list(settings.districts),
                  jobs=["ingest", "dailypull", "most_used", "recommendations"], as_of=date(2026, 11, 22),
                  landing_dir=tmp_path / "landing")
        outputs = ["dataframe_delta", "most_used_software", "district_app_summary", "recommendations",
                   "app_effects", "model_runs", "job_runs", "ingested_files"]
        with engine.connect() as conn:
            conn.execute(sa.text(f'SET ROLE "{role}"'))
            for table in outputs:
                assert conn.execute(sa.text(f"select count(*) from {table}")).scalar() >= 0
            assert conn.execute(sa.text("select count(*) from dataframe_delta")).scalar() == 63
            for statement in ("delete from usage", "insert into job_runs (cycle_id, job, status, started_at) "
                              "values ('x', 'x', 'x', now())", "create table sneaky (x int)",
                              "drop table dataframe_delta"):
                with pytest.raises(sa.exc.ProgrammingError, match="permission denied|must be owner"):
                    with conn.begin_nested():
                        conn.execute(sa.text(statement))
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP OWNED BY "{role}"'))
            conn.execute(sa.text(f'DROP ROLE "{role}"'))
        engine.dispose()


def test_identifiers_off_the_patterns_never_become_tables_or_columns():
    for bad in ("Springfield", "x; drop table usage", "a" * 32, "beta\n", ""):
        with pytest.raises(ValueError):
            dataframe_table(bad, ["ixl"])
    for bad in ("Lexia Core", "ixl; --", "x" * 42, "ixl\n"):
        with pytest.raises(ValueError):
            app_column(bad)
    longest = dataframe_table_name("d" * 31)
    assert len(longest.encode()) <= POSTGRES_IDENTIFIER_BYTES
    assert len(app_column("a" * 41).encode()) <= POSTGRES_IDENTIFIER_BYTES


SQL_FORMATTING = re.compile(r"""(text|execute|exec_driver_sql)\(\s*f["']|\.format\(""")


def test_no_sql_text_is_built_by_formatting_identifiers():
    """Every module outside tests: no f-string or .format() handed to text()/execute(); the
    only hand-written DDL compiles identifiers through the dialect's preparer."""
    offenders = []
    for path in REPO.rglob("*.py"):
        if {"tests", ".venv", "bench"} & set(path.relative_to(REPO).parts):
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if SQL_FORMATTING.search(line) and "sql.SQL(" not in line:
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not offenders, offenders
    compiled = (REPO / "storage" / "ddl.py").read_text()
    assert "compiler.preparer.format_table" in compiled and "compiler.preparer.quote" in compiled


def test_the_copy_statement_quotes_identifiers_with_psycopg2_sql():
    tree = ast.parse((REPO / "storage" / "frames.py").read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "copy_expert"]
    assert calls, "the COPY path is where it was"
    assert "sql.Identifier" in (REPO / "storage" / "frames.py").read_text()
