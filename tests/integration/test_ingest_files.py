"""Ingest of compressed files and of files that cannot be read, on SQLite and PostgreSQL."""
import gzip
from datetime import date

from sqlalchemy import func, select

import config
from jobs import ingest
from runner.cycle import run_cycle
from models import ingested_files, usage

USAGE = "student_id,app,date,minutes\n" + "".join(f"s{i},ixl,2026-09-01,{i % 50}\n" for i in range(300))


def settings():
    return config.parse({"districts": [{"id": "alpha", "apps": ["ixl"]}]})


def ingest_once(engine, landing):
    s = settings()
    return run_cycle(engine, s, districts=list(s.districts), jobs=["ingest"], as_of=date(2026, 11, 22),
                     landing_dir=landing).records[0].result


def manifest(engine):
    with engine.connect() as conn:
        return {r.path: (r.status, r.rows_loaded, r.error) for r in conn.execute(select(ingested_files))}


def test_gzip_csv_loads_like_csv(engine, tmp_path):
    (tmp_path / "alpha").mkdir()
    (tmp_path / "alpha" / "usage.csv.gz").write_bytes(gzip.compress(USAGE.encode()))
    result = ingest_once(engine, tmp_path)
    assert result.status == "succeeded" and result.rows_out == 300
    assert manifest(engine)["alpha/usage.csv.gz"] == ("loaded", 300, None)


def test_a_truncated_gzip_fails_and_the_other_files_load(engine, tmp_path):
    (tmp_path / "alpha").mkdir()
    whole = gzip.compress(USAGE.encode())
    (tmp_path / "alpha" / "usage_cut.csv.gz").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "alpha" / "usage_ok.csv").write_text("student_id,app,date,minutes\nz1,ixl,2026-09-01,5\n")
    result = ingest_once(engine, tmp_path)
    assert result.status == "completed_with_errors"
    status, loaded, error = manifest(engine)["alpha/usage_cut.csv.gz"]
    assert (status, loaded) == ("failed", 0) and error.startswith("the compressed file is truncated or corrupt")
    with engine.connect() as conn:  # nothing of the cut file, all of the good one
        assert conn.execute(select(func.count()).select_from(usage)).scalar_one() == 1


def test_an_empty_file_and_a_header_only_file(engine, tmp_path):
    (tmp_path / "alpha").mkdir()
    (tmp_path / "alpha" / "usage_empty.csv").write_text("")
    (tmp_path / "alpha" / "usage_header.csv").write_text("student_id,app,date,minutes\n")
    ingest_once(engine, tmp_path)
    found = manifest(engine)
    assert found["alpha/usage_empty.csv"] == ("failed", 0, "the file is empty: a header row is required")
    assert found["alpha/usage_header.csv"] == ("loaded", 0, None)


def test_a_file_that_changes_while_it_is_read_is_not_loaded_and_is_retried(engine, tmp_path, monkeypatch):
    (tmp_path / "alpha").mkdir()
    path = tmp_path / "alpha" / "usage.csv"
    path.write_text(USAGE)
    real_validate = ingest.validate

    def validate_while_the_sync_appends(kind, cells):
        with open(path, "a") as handle:  # a school server still writing the file
            handle.write("s999,ixl,2026-09-02,5\n")
        return real_validate(kind, cells)

    monkeypatch.setattr(ingest, "validate", validate_while_the_sync_appends)
    result = ingest_once(engine, tmp_path)
    [(status, loaded, error)] = manifest(engine).values()
    assert status == "failed" and error.startswith("the file changed while it was being read")
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(usage)).scalar_one() == 0

    monkeypatch.undo()
    result = ingest_once(engine, tmp_path)
    assert result.rows_out == 301


def test_each_file_takes_the_fastest_way_that_reads_and_merges_it_exactly(engine, tmp_path, monkeypatch):
    """New keys: Arrow reader, rows straight into `usage` (PostgreSQL). Keys loaded before:
    staging + merge (the later file wins). A blank line: the exact reader. Same result."""
    ways = []
    real = ingest._read_and_write

    def spy(conn, district, file, *args, fast, direct, **rest):
        ways.append((file.relpath.split("/")[-1], fast, direct))
        return real(conn, district, file, *args, fast=fast, direct=direct, **rest)

    monkeypatch.setattr(ingest, "_read_and_write", spy)
    folder = tmp_path / "alpha"
    folder.mkdir()
    (folder / "usage_1.csv").write_text(USAGE)
    ingest_once(engine, tmp_path)
    (folder / "usage_2.csv").write_text("student_id,app,date,minutes\ns1,ixl,2026-09-01,42\ns1,ixl,2026-09-02,7\n")
    ingest_once(engine, tmp_path)
    (folder / "usage_3.csv").write_text("student_id,app,date,minutes\ns2,ixl,2026-09-02,8\n\ns2,ixl,2026-09-03,9\n")
    ingest_once(engine, tmp_path)
    direct = engine.dialect.name == "postgresql"
    expected = [("usage_1.csv", True, direct)]
    expected += [("usage_2.csv", True, True), ("usage_2.csv", True, False)] if direct else [("usage_2.csv", True, False)]
    expected += [("usage_3.csv", True, direct), ("usage_3.csv", False, False)]
    assert ways == expected
    with engine.connect() as conn:
        minutes = dict(((r.student_id, str(r.date)), r.minutes) for r in conn.execute(select(usage)))
    assert len(minutes) == 300 + 3
    assert minutes[("s1", "2026-09-01")] == 42 and minutes[("s1", "2026-09-02")] == 7
    assert minutes[("s2", "2026-09-01")] == 2 and minutes[("s2", "2026-09-03")] == 9
    assert manifest(engine)["alpha/usage_3.csv"] == ("loaded", 2, None)


def test_a_quoted_header_keeps_the_fast_reader_and_loads_the_same_rows(engine, tmp_path, monkeypatch):
    """pyarrow's CSV writer quotes the header and every text value: the Arrow reader reads
    such a file itself (no hand-over to the exact reader), into the same rows as the same
    rows written without quotes."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    ways = []
    real = ingest._read_and_write

    def spy(conn, district, file, *args, fast, direct, **rest):
        ways.append((file.relpath, fast))
        return real(conn, district, file, *args, fast=fast, direct=direct, **rest)

    monkeypatch.setattr(ingest, "_read_and_write", spy)
    ids = [f"s{i}" for i in range(300)] + ["s,1", 's"2']
    rows = pa.table({"student_id": ids, "app": ["ixl"] * 302, "date": ["2026-09-01"] * 300 + ["2026-09-02"] * 2,
                     "minutes": [i % 50 for i in range(302)]})
    for district in ("plain", "quoted"):
        (tmp_path / district).mkdir()
    (tmp_path / "plain" / "usage.csv").write_text(USAGE + '"s,1",ixl,2026-09-02,0\n"s""2",ixl,2026-09-02,1\n')
    pacsv.write_csv(rows, tmp_path / "quoted" / "usage.csv")  # quoting_style "needed": every text value
    assert (tmp_path / "quoted" / "usage.csv").read_bytes().startswith(
        b'"student_id","app","date","minutes"\n"s0","ixl","2026-09-01",0\n')
    s = config.parse({"districts": [{"id": "plain", "apps": ["ixl"]}, {"id": "quoted", "apps": ["ixl"]}]})
    run_cycle(engine, s, districts=list(s.districts), jobs=["ingest"], as_of=date(2026, 11, 22), landing_dir=tmp_path)
    with engine.connect() as conn:
        loaded = {d: sorted((r.student_id, r.app, str(r.date), r.minutes)
                            for r in conn.execute(select(usage).where(usage.c.district_id == d)))
                  for d in ("plain", "quoted")}
    assert loaded["quoted"] == loaded["plain"] and len(loaded["plain"]) == 302
    assert ("s,1", "ixl", "2026-09-02", 0) in loaded["quoted"] and ('s"2', "ixl", "2026-09-02", 1) in loaded["quoted"]
    assert sorted(ways) == [("plain/usage.csv", True), ("quoted/usage.csv", True)]  # no second, exact read


def test_an_unchanged_file_is_skipped_unread_and_force_reads_it(engine, tmp_path, monkeypatch):
    """Same size and modification time as the version loaded: skipped without being read
    (rsync's quick check); a new modification time: read and fingerprinted; --force: read."""
    import os

    folder = tmp_path / "alpha"
    folder.mkdir()
    path = folder / "usage.csv"
    path.write_text(USAGE)
    ingest_once(engine, tmp_path)
    read = []
    real = ingest.fingerprint
    monkeypatch.setattr(ingest, "fingerprint", lambda p: read.append(p.name) or real(p))

    ingest_once(engine, tmp_path)
    assert read == []  # not even hashed

    loaded = path.stat()  # the same bytes, touched: hashed, recognised, not loaded again
    os.utime(path, ns=(loaded.st_atime_ns, loaded.st_mtime_ns + 1_000_000_000))
    result = ingest_once(engine, tmp_path)
    assert read == ["usage.csv"] and result.details["files"] == {"skipped": 1}

    edited = USAGE.replace("s1,ixl,2026-09-01,1\n", "s1,ixl,2026-09-01,9\n")
    assert len(edited) == len(USAGE)
    path.write_text(edited)  # same size, and the loaded version's modification time put back
    os.utime(path, ns=(loaded.st_atime_ns, loaded.st_mtime_ns))
    ingest_once(engine, tmp_path)

    def s1_minutes():
        with engine.connect() as conn:
            return conn.execute(select(usage.c.minutes).where(usage.c.student_id == "s1")).scalar_one()

    assert s1_minutes() == 1
    s = settings()
    run_cycle(engine, s, districts=list(s.districts), jobs=["ingest"], as_of=date(2026, 11, 22),
              landing_dir=tmp_path, force=True)
    assert s1_minutes() == 9  # --force reads every file
