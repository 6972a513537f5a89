"""fetch against real servers on loopback, started by each test: moto's S3-compatible server,
OpenSSH's sshd, an HTTP server, and this machine's PostgreSQL as a reporting database; the
fetched files then go through ingest as any landed file. On SQLite and PostgreSQL."""
import logging
from datetime import date, datetime, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy import select

import config
from models import fetch_ledger, ingested_files, usage
from runner.cycle import run_cycle
from service import status
from tests.servers import http_server, reporting_table, s3_server, sshd

pytestmark = pytest.mark.slow

AS_OF = date(2026, 11, 20)
NOW = datetime(2026, 11, 20, 3, 0, tzinfo=timezone.utc)
SECRET = "s3-secret-never-logged-4f1c"
HEADER = "student_id,app,date,minutes\n"


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setenv("ANALYTICS_FETCH_BACKOFF_SECONDS", "0.05")


def settings(*sources, limit=None):
    entry = {"id": "harbor", "apps": ["ixl", "dreambox"], "sources": list(sources)}
    if limit:
        entry["fetch_monthly_bytes"] = limit
    return config.parse({"districts": [entry]})


def run(engine, landing, chosen, jobs=("fetch", "ingest"), force=False):
    return run_cycle(engine, chosen, districts=list(chosen.districts), jobs=list(jobs), as_of=AS_OF,
                     landing_dir=landing, force=force, now=NOW, clock=lambda: NOW).records


def ledger(engine):
    with engine.connect() as conn:
        return conn.execute(select(fetch_ledger.c.remote_path, fetch_ledger.c.status, fetch_ledger.c.bytes,
                                   fetch_ledger.c.local_path, fetch_ledger.c.error).order_by(fetch_ledger.c.id)).all()


def minutes(engine):
    with engine.connect() as conn:
        return {(r.student_id, r.app, r.date.isoformat()): r.minutes for r in conn.execute(select(usage))}


@pytest.fixture
def bucket(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    import boto3

    with s3_server() as endpoint:
        import urllib.request

        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=30)
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        client.create_bucket(Bucket="partner")
        yield endpoint, client


def test_s3_new_changed_and_unchanged_objects_then_ingest_loads_them(engine, tmp_path, bucket, service_keyring):
    endpoint, client = bucket
    source = {"url": "s3://partner/weekly", "endpoint_url": endpoint, "name": "partner"}
    client.put_object(Bucket="partner", Key="weekly/usage_2026-11-16.csv", Body=HEADER + "s1,ixl,2026-11-16,10\n")
    plain = tmp_path / "usage_2026-11-17.csv"
    plain.write_text(HEADER + "s2,dreambox,2026-11-17,25\n")
    service_keyring.encrypt(plain, tmp_path / "usage_2026-11-17.csv.gpg")
    client.put_object(Bucket="partner", Key="weekly/2026-11/usage_2026-11-17.csv.gpg",
                      Body=(tmp_path / "usage_2026-11-17.csv.gpg").read_bytes())
    landing = tmp_path / "landing"
    records = run(engine, landing, settings(source))
    assert [r.result.status for r in records] == ["succeeded", "succeeded"], [r.result.message for r in records]
    assert records[0].result.message.startswith("partner: 2 files fetched")
    assert minutes(engine) == {("s1", "ixl", "2026-11-16"): 10.0, ("s2", "dreambox", "2026-11-17"): 25.0}
    assert (landing / "harbor/partner/2026-11/usage_2026-11-17.csv.gpg").exists()  # decrypted by ingest, kept as is
    # nothing changed: nothing fetched; one object changed: that one
    again = run(engine, landing, settings(source))
    assert again[0].result.message == "partner: 0 files fetched (0 bytes), 2 unchanged"
    client.put_object(Bucket="partner", Key="weekly/usage_2026-11-16.csv", Body=HEADER + "s1,ixl,2026-11-16,12\n")
    changed = run(engine, landing, settings(source))
    assert changed[0].result.message.startswith("partner: 1 file fetched") and "1 unchanged" in changed[0].result.message
    assert minutes(engine)[("s1", "ixl", "2026-11-16")] == 12.0
    rows = [r for r in ledger(engine) if r.status == "fetched"]
    assert len(rows) == 3 and {r.status for r in ledger(engine)} == {"fetched", "checked"}
    assert rows[0].local_path == "harbor/partner/2026-11/usage_2026-11-17.csv.gpg" or \
        rows[0].local_path == "harbor/partner/usage_2026-11-16.csv"
    forced = run(engine, landing, settings(source), jobs=("fetch",), force=True)
    assert forced[0].result.message.startswith("partner: 2 files fetched")


def test_the_monthly_byte_limit_stops_fetching_and_status_says_so(engine, tmp_path, bucket):
    endpoint, client = bucket
    for day in (16, 17, 18):
        client.put_object(Bucket="partner", Key=f"usage_2026-11-{day}.csv", Body=HEADER + f"s1,ixl,2026-11-{day},5\n")
    size = len(HEADER + "s1,ixl,2026-11-16,5\n")
    chosen = settings({"url": "s3://partner", "endpoint_url": endpoint, "name": "partner"}, limit=2 * size + 3)
    records = run(engine, tmp_path / "landing", chosen)
    assert records[0].result.status == "completed_with_errors"
    assert "monthly limit reached" in records[0].result.message and "fetch_monthly_bytes" in records[0].result.message
    assert records[1].result.status == "succeeded"  # ingest still runs on what is there
    assert len(minutes(engine)) == 2
    data = status.collect(engine, chosen, today=AS_OF)
    (row,) = data["sources"]
    assert (row["bytes_this_month"], row["monthly_limit"], row["last_status"]) == (2 * size, 2 * size + 3, "checked")
    assert "monthly limit reached" in row["error"] and "Sources (fetch)" in status.render(data)


def test_a_failing_source_is_recorded_and_the_others_still_fetch(engine, tmp_path, bucket, caplog):
    endpoint, client = bucket
    client.put_object(Bucket="partner", Key="usage_a.csv", Body=HEADER + "s1,ixl,2026-11-16,5\n")
    chosen = settings({"url": "s3://no-such-bucket", "endpoint_url": endpoint, "name": "missing", "retries": 2},
                      {"url": "s3://partner", "endpoint_url": endpoint, "name": "partner"})
    with caplog.at_level(logging.INFO):
        records = run(engine, tmp_path / "landing", chosen)
    assert records[0].result.status == "completed_with_errors"
    assert "missing: failed:" in records[0].result.message and "partner: 1 file fetched" in records[0].result.message
    assert records[1].result.status == "succeeded" and minutes(engine) == {("s1", "ixl", "2026-11-16"): 5.0}
    failed = [r for r in ledger(engine) if r.status == "failed"]
    assert len(failed) == 1 and "NoSuchBucket" in failed[0].error or "does not exist" in failed[0].error
    assert "attempt 1 of" not in caplog.text  # a missing bucket is not tried again
    assert SECRET not in caplog.text and all(SECRET not in (r.error or "") for r in ledger(engine))


def test_sftp_with_a_key_and_with_the_wrong_key(engine, tmp_path, caplog):
    remote = tmp_path / "vendor" / "drop"
    remote.mkdir(parents=True)
    (remote / "usage_2026-11-18.csv").write_text(HEADER + "s3,ixl,2026-11-18,7\n")
    (remote / ".usage_partial.csv").write_text("still uploading")  # hidden: not fetched
    with sshd(tmp_path / "ssh") as (port, key, user, known):
        good = {"url": f"sftp://127.0.0.1:{port}{remote}", "key_file": str(key), "username": user, "name": "vendor",
                "known_hosts": str(known)}
        records = run(engine, tmp_path / "landing", settings(good))
        assert records[0].result.message.startswith("vendor: 1 file fetched"), records[0].result.message
        assert minutes(engine) == {("s3", "ixl", "2026-11-18"): 7.0}
        assert run(engine, tmp_path / "landing", settings(good))[0].result.message.endswith("1 unchanged")
        wrong = tmp_path / "wrong_key"
        import subprocess

        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)], check=True)
        bad = {**good, "key_file": str(wrong), "retries": 1}
        with caplog.at_level(logging.INFO):
            records = run(engine, tmp_path / "landing", settings(bad))
        stranger = tmp_path / "other_known_hosts"  # a server whose key we do not know is refused
        stranger.write_text(f"[127.0.0.1]:{port} " + (tmp_path / "wrong_key.pub").read_text())
        refused = run(engine, tmp_path / "landing", settings({**good, "known_hosts": str(stranger)}))
    assert records[0].result.status == "completed_with_errors"
    assert "vendor: failed: AuthenticationException" in records[0].result.message
    assert "attempt 1 of" not in caplog.text  # a refused key is not tried again
    assert wrong.read_text() not in caplog.text
    assert "does not match" in refused[0].result.message or "not in" in refused[0].result.message


def test_https_a_listing_and_a_download_cut_halfway(engine, tmp_path, caplog):
    site = tmp_path / "site"
    (site / "exports").mkdir(parents=True)
    (site / "exports/usage_1.csv").write_text(HEADER + "s4,ixl,2026-11-18,3\n")
    (site / "exports/usage_2.csv").write_text(HEADER + "".join(f"s{i},ixl,2026-11-18,1\n" for i in range(500)))
    landing = tmp_path / "landing"
    with http_server(site, cut={"exports/usage_2.csv"}) as base:
        listing = {"url": f"{base}/exports/", "name": "portal", "retries": 2}
        with caplog.at_level(logging.INFO):
            records = run(engine, landing, settings(listing))
    assert records[0].result.status == "completed_with_errors"
    assert "portal: 1 file fetched" in records[0].result.message  # the cut one costs only itself
    assert "usage_2.csv: failed: ClientPayloadError" in records[0].result.message
    assert "attempt 1 of 2 failed" in caplog.text  # a cut connection is tried again, with backoff
    assert sorted(p.name for p in (landing / "harbor/portal").iterdir()) == ["usage_1.csv"]  # no partial file
    assert minutes(engine) == {("s4", "ixl", "2026-11-18"): 3.0}
    with http_server(site) as base:
        single = {"url": f"{base}/exports/usage_2.csv", "name": "portal"}
        records = run(engine, landing, settings(single))
    assert records[0].result.message.startswith("portal: 1 file fetched")
    assert len(minutes(engine)) == 500 and minutes(engine)[("s4", "ixl", "2026-11-18")] == 1.0  # the later file


@pytest.fixture
def reporting(monkeypatch):
    """A schema in this machine's PostgreSQL holding the original product's reporting table."""
    import os

    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        pytest.skip("the reporting database is PostgreSQL (TEST_DATABASE_URL)")
    monkeypatch.setenv("REPORTING_DATABASE_URL", url)
    with reporting_table(url) as made:
        yield made


def test_a_reporting_table_by_watermark(engine, tmp_path, reporting):
    admin, table = reporting
    insert = sa.text(f"INSERT INTO {table} VALUES (:s, :a, :d, :m, :u)")
    with admin.begin() as conn:
        conn.execute(insert, [{"s": "s5", "a": "ixl", "d": "2026-11-16", "m": 11, "u": "2026-11-16T20:00:00Z"},
                              {"s": "s6", "a": "dreambox", "d": "2026-11-16", "m": 4, "u": "2026-11-16T21:00:00Z"}])
    source = {"url": "sql", "url_env": "REPORTING_DATABASE_URL", "table": table, "watermark": "updated_at",
              "kind": "usage", "name": "reporting"}
    landing = tmp_path / "landing"
    records = run(engine, landing, settings(source))
    assert records[0].result.message.startswith("reporting: 1 file fetched"), records[0].result.message
    assert minutes(engine) == {("s5", "ixl", "2026-11-16"): 11.0, ("s6", "dreambox", "2026-11-16"): 4.0}
    assert run(engine, landing, settings(source))[0].result.message.endswith("1 unchanged")  # no new rows
    with admin.begin() as conn:  # a correction and a new row, both past the watermark
        conn.execute(insert, [{"s": "s5", "a": "ixl", "d": "2026-11-16", "m": 13, "u": "2026-11-17T08:00:00Z"},
                              {"s": "s7", "a": "ixl", "d": "2026-11-17", "m": 2, "u": "2026-11-17T09:00:00Z"}])
    run(engine, landing, settings(source), jobs=("fetch", "ingest"))
    assert minutes(engine) == {("s5", "ixl", "2026-11-16"): 13.0, ("s6", "dreambox", "2026-11-16"): 4.0,
                               ("s7", "ixl", "2026-11-17"): 2.0}
    rows = [r for r in ledger(engine) if r.status == "fetched"]
    assert len(rows) == 2 and all(r.local_path.startswith("harbor/reporting/usage_reporting_") for r in rows)
    with engine.connect() as conn:
        notes = conn.execute(select(ingested_files.c.notes)).scalars().all()
    assert any("extra columns ignored: updated_at" in (n or "") for n in notes)


def test_keys_that_would_land_outside_the_folder_do_not(engine, tmp_path, bucket):
    endpoint, client = bucket
    for key in ("../usage_up.csv", "a/../../usage_up2.csv", "/usage_abs.csv", "ok/usage_fine.csv"):
        client.put_object(Bucket="partner", Key=key, Body=HEADER + "s9,ixl,2026-11-16,1\n")
    landing = tmp_path / "landing"
    run(engine, landing, settings({"url": "s3://partner", "endpoint_url": endpoint, "name": "partner"}),
        jobs=("fetch",))
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("usage_*.csv"))
    assert all(p.startswith("landing/harbor/partner/") for p in written), written
    assert "landing/harbor/partner/ok/usage_fine.csv" in written


def test_a_row_written_later_at_the_last_watermark_is_not_lost(engine, tmp_path, reporting):
    admin, table = reporting
    insert = sa.text(f"INSERT INTO {table} VALUES (:s, :a, :d, :m, :u)")
    row = {"a": "ixl", "d": "2026-11-16", "m": 5}
    with admin.begin() as conn:
        conn.execute(insert, [{**row, "s": "t1", "u": "2026-11-16T20:00:00Z"}])
    source = {"url": "sql", "url_env": "REPORTING_DATABASE_URL", "table": table, "watermark": "updated_at",
              "kind": "usage", "name": "reporting"}
    landing = tmp_path / "landing"
    run(engine, landing, settings(source))
    with admin.begin() as conn:  # same watermark as the last fetched row (a tie), then a newer row
        conn.execute(insert, [{**row, "s": "t2", "u": "2026-11-16T20:00:00Z"}])
    assert run(engine, landing, settings(source))[0].result.message.endswith("1 unchanged")  # nothing past it yet
    with admin.begin() as conn:
        conn.execute(insert, [{**row, "s": "t3", "u": "2026-11-16T21:00:00Z"}])
    run(engine, landing, settings(source))
    assert set(minutes(engine)) == {("t1", "ixl", "2026-11-16"), ("t2", "ixl", "2026-11-16"), ("t3", "ixl", "2026-11-16")}


def test_a_sqlite_reporting_view_with_an_integer_watermark_and_null_rows(engine, tmp_path, monkeypatch):
    path = tmp_path / "reporting.db"
    admin = sa.create_engine(f"sqlite:///{path}")
    with admin.begin() as conn:
        conn.execute(sa.text("CREATE TABLE raw (student_id TEXT, app TEXT, date TEXT, minutes REAL, version INTEGER, "
                             "changed DATETIME)"))
        conn.execute(sa.text("CREATE VIEW usage_view AS SELECT student_id, app, date, minutes, version + 0 AS version "
                             "FROM raw"))  # an expression column: no type affinity in SQLite
        conn.execute(sa.text("INSERT INTO raw VALUES ('v1', 'ixl', '2026-11-16', 3, 9, '2026-11-16 10:00:00'), "
                             "('v2', 'ixl', '2026-11-16', 4, NULL, '2026-11-16 10:00:00')"))
    monkeypatch.setenv("REPORTING_DB_URL", f"sqlite:///{path}")
    source = {"url": "sql", "url_env": "REPORTING_DB_URL", "table": "usage_view", "watermark": "version",
              "kind": "usage", "name": "view"}
    landing = tmp_path / "landing"
    first = run(engine, landing, settings(source))[0].result
    assert "1 row without a watermark (version is NULL): not read" in first.message
    with admin.begin() as conn:
        conn.execute(sa.text("INSERT INTO raw VALUES ('v3', 'ixl', '2026-11-17', 5, 10, '2026-11-17 10:00:00')"))
    run(engine, landing, settings(source))  # 10 > 9 as numbers (as text '10' < '9')
    assert set(minutes(engine)) == {("v1", "ixl", "2026-11-16"), ("v3", "ixl", "2026-11-17")}
    by_time = {**source, "table": "raw", "watermark": "changed", "name": "raw"}
    run(engine, landing, settings(by_time))
    with admin.begin() as conn:  # SQLite keeps the timestamp as text with a space: compared as a timestamp
        conn.execute(sa.text("INSERT INTO raw VALUES ('v4', 'ixl', '2026-11-18', 6, 11, '2026-11-17 11:00:00')"))
    assert run(engine, landing, settings(by_time))[0].result.message.startswith("raw: 1 file fetched")
    assert ("v4", "ixl", "2026-11-18") in minutes(engine)
    admin.dispose()


def test_an_object_larger_than_the_limit_waits_and_smaller_ones_come(engine, tmp_path, bucket):
    endpoint, client = bucket
    client.put_object(Bucket="partner", Key="a_usage_big.csv", Body=HEADER + "".join(
        f"b{i},ixl,2026-11-16,1\n" for i in range(200)))
    client.put_object(Bucket="partner", Key="usage_small.csv", Body=HEADER + "s1,ixl,2026-11-16,5\n")
    chosen = settings({"url": "s3://partner", "endpoint_url": endpoint, "name": "partner"}, limit=1000)
    message = run(engine, tmp_path / "landing", chosen)[0].result.message
    assert "partner: 1 file fetched" in message and "larger than the whole limit" in message
    assert minutes(engine) == {("s1", "ixl", "2026-11-16"): 5.0}
    (row,) = status.collect(engine, chosen, today=AS_OF)["sources"]
    assert "larger than the whole limit" in row["error"]
    client.delete_object(Bucket="partner", Key="a_usage_big.csv")  # the next run has nothing wrong: status clears
    run(engine, tmp_path / "landing", chosen)
    (row,) = status.collect(engine, chosen, today=AS_OF)["sources"]
    assert row["error"] is None and row["last_status"] == "checked"


def test_sqlite_timestamp_ties_budget_cuts_and_retried_connections(engine, tmp_path, monkeypatch, caplog):
    path = tmp_path / "reporting.db"
    admin = sa.create_engine(f"sqlite:///{path}")
    with admin.begin() as conn:
        conn.execute(sa.text("CREATE TABLE raw (student_id TEXT, app TEXT, date TEXT, minutes REAL, changed DATETIME)"))
        conn.execute(sa.text("INSERT INTO raw VALUES ('a', 'ixl', '2026-11-16', 1, '2026-11-16 10:00:00')"))
    monkeypatch.setenv("REPORTING_DB_URL", f"sqlite:///{path}")
    source = {"url": "sql", "url_env": "REPORTING_DB_URL", "table": "raw", "watermark": "changed", "kind": "usage",
              "name": "raw"}
    landing = tmp_path / "landing"
    run(engine, landing, settings(source))
    with admin.begin() as conn:  # CURRENT_TIMESTAMP's spelling: a tie, then a newer row
        conn.execute(sa.text("INSERT INTO raw VALUES ('b_tie', 'ixl', '2026-11-16', 1, '2026-11-16 10:00:00'), "
                             "('c', 'ixl', '2026-11-16', 1, '2026-11-16 11:00:00')"))
    run(engine, landing, settings(source))
    assert {k[0] for k in minutes(engine)} == {"a", "b_tie", "c"}
    assert run(engine, landing, settings(source))[0].result.message.endswith("1 unchanged")  # not re-read every run
    # a bulk load under one timestamp larger than the budget: never split, and the next fetch goes past it
    from readers import reporting

    monkeypatch.setattr(reporting, "BATCH", 2)
    with admin.begin() as conn:
        conn.execute(sa.text("INSERT INTO raw VALUES " + ", ".join(
            f"('bulk{i}', 'ixl', '2026-11-17', 1, '2026-11-17 09:00:00')" for i in range(6))))
    limited = settings(source, limit=400)
    run(engine, landing, limited)
    assert {k[0] for k in minutes(engine)} >= {f"bulk{i}" for i in range(6)}
    with admin.begin() as conn:
        conn.execute(sa.text("INSERT INTO raw VALUES ('later', 'ixl', '2026-11-18', 1, '2026-11-18 09:00:00')"))
    with engine.begin() as conn:  # a new month: the limit has room again
        conn.execute(fetch_ledger.update().values(fetched_at=datetime(2026, 10, 1, tzinfo=timezone.utc)))
    run(engine, landing, limited)
    assert ("later", "ixl", "2026-11-18") in minutes(engine)
    admin.dispose()
    # a server that refuses connections is tried again (not a permanent failure)
    monkeypatch.setenv("REPORTING_PG_URL", "postgresql://nobody@127.0.0.1:1/none")
    down = {**source, "url_env": "REPORTING_PG_URL", "name": "down", "retries": 2, "timeout_seconds": 5}
    with caplog.at_level(logging.INFO):
        message = run(engine, landing, settings(down), jobs=("fetch",))[0].result.message
    assert "down: failed:" in message and "attempt 1 of 2 failed" in caplog.text


def test_a_server_with_several_host_keys_is_asked_for_the_one_known_hosts_holds(engine, tmp_path):
    remote = tmp_path / "drop"
    remote.mkdir()
    (remote / "usage_k.csv").write_text(HEADER + "k1,ixl,2026-11-18,2\n")
    with sshd(tmp_path / "ssh", host_key_types=("ed25519", "ecdsa"), only_known=1) as (port, key, user, known):
        assert "ecdsa" in known.read_text() and "ed25519" not in known.read_text()
        source = {"url": f"sftp://127.0.0.1:{port}{remote}", "key_file": str(key), "username": user,
                  "known_hosts": str(known), "name": "vendor"}
        message = run(engine, tmp_path / "landing", settings(source))[0].result.message
    assert message.startswith("vendor: 1 file fetched"), message
