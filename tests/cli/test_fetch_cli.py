"""A district with an S3 source and a reporting-database source runs a whole cycle through the
real CLI with no file placed by hand; `--status` shows its sources. The S3-compatible server
(moto) and the reporting table (a schema of this machine's PostgreSQL) are started by the test."""
from __future__ import annotations

import json
import os
import urllib.request

import pytest
import sqlalchemy as sa

from tests.cli.test_trigger import run
from tests.servers import reporting_table, s3_server

HEADER = "student_id,app,date,minutes\n"


@pytest.fixture
def reporting():
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        pytest.skip("the reporting database is PostgreSQL (TEST_DATABASE_URL)")
    with reporting_table(url, watermark="row_version bigint") as (admin, table):
        with admin.begin() as conn:
            conn.execute(sa.text(f"INSERT INTO {table} VALUES ('r1', 'lexia', '2026-11-16', 40, 1), "
                                 "('r2', 'ixl', '2026-11-17', 15, 2)"))
        yield url, table


def test_a_cycle_fetches_from_s3_and_a_reporting_table_then_the_tables_follow(tmp_path, db_url, reporting):
    import boto3

    reporting_url, table = reporting
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "cli-secret-3b9e", "AWS_DEFAULT_REGION": "us-east-1",
           "REPORTING_DATABASE_URL": reporting_url, "ANALYTICS_FETCH_BACKOFF_SECONDS": "0.1"}
    with s3_server() as endpoint:
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=30)
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                              aws_secret_access_key="cli-secret-3b9e")
        client.create_bucket(Bucket="partner")
        client.put_object(Bucket="partner", Key="daily/usage_2026-11-18.csv",
                          Body=HEADER + "p1,ixl,2026-11-18,20\np2,lexia,2026-11-18,5\n")
        (tmp_path / "districts.yaml").write_text(f"""districts:
  - id: harbor
    apps: [ixl, lexia]
    fetch_monthly_bytes: 100000000
    sources:
      - {{url: "s3://partner/daily", endpoint_url: "{endpoint}", name: partner}}
      - {{url: sql, url_env: REPORTING_DATABASE_URL, table: {table}, watermark: row_version, kind: usage, name: reporting}}
""")
        first = run(["--as-of", "2026-11-20"], tmp_path, DATABASE_URL=db_url, **env)
        assert first.returncode == 0, first.stderr
        assert "fetch            harbor" in first.stdout or "fetch" in first.stdout.split("ingest")[0]
        assert "partner: 1 file fetched" in first.stdout and "reporting: 1 file fetched" in first.stdout
        second = run(["--as-of", "2026-11-20"], tmp_path, DATABASE_URL=db_url, **env)
        assert "partner: 0 files fetched (0 bytes), 1 unchanged" in second.stdout
        page = run(["--status", "--json", "--as-of", "2026-11-20"], tmp_path, DATABASE_URL=db_url, **env)
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        table_rows = conn.execute(sa.text("SELECT student_id, total_minutes FROM dataframe_harbor ORDER BY student_id")).all()
    engine.dispose()
    assert [tuple(r) for r in table_rows] == [("p1", 20.0), ("p2", 5.0), ("r1", 40.0), ("r2", 15.0)]
    sources = {s["source"]: s for s in json.loads(page.stdout)["sources"]}
    assert set(sources) == {"partner", "reporting"} and sources["partner"]["last_status"] == "checked" and sources["partner"]["last_fetched_at"]
    assert sources["partner"]["bytes_this_month"] > 0 and sources["partner"]["monthly_limit"] == 100000000
    assert "cli-secret-3b9e" not in first.stdout + first.stderr + second.stdout + second.stderr
