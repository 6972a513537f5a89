"""Messages about input that a person has to fix, naming the file and what to change: a
semicolon- or tab-delimited CSV; a file whose every date is US-style (it loads no row, and
says so in `ingested_files` and in the job's summary); the files that failed, listed on
every run until they load."""
from __future__ import annotations

import gzip
import json
import os
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select

import config
from runner.cycle import run_cycle
from readers.landing import FileReader, FileUnreadable, NeedsExactReader
from models import ingested_files, rejected_rows, usage
from tests.integration.test_fast_reader import landing_file

GOOD = "student_id,app,date,minutes\ng1,ixl,2026-09-01,10\ng2,lexia,2026-09-02,20\n"
SEMICOLON = "student_id;app;date;minutes\ns1;ixl;2026-09-01;10\n"
COMMA_ONLY = "the files must be comma-separated CSV (export with ',' as the delimiter)"
US_ROWS = [("s1", "ixl", "09/21/2025", "10"), ("s2", "ixl", "09/22/2025", "20"), ("s3", "lexia", "10/01/2025", "30")]
US_NOTE = "every date is US-style (MM/DD/YYYY, e.g. 09/21/2025); dates must be YYYY-MM-DD: 0 of 3 rows loaded"


def settings():
    return config.parse({"districts": [{"id": "alpha", "apps": ["ixl", "lexia"]}]})


def put(root: Path, relpath: str, content: str | bytes, mtime: float = 1_700_000_000) -> Path:
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    os.utime(path, (mtime, mtime))
    return path


@pytest.fixture
def landing(tmp_path):
    root = tmp_path / "landing"
    put(root, "alpha/usage_good.csv", GOOD)
    return root


def ingest(engine, landing):
    s = settings()
    [record] = run_cycle(engine, s, districts=list(s.districts), jobs=["ingest"], as_of=date(2026, 11, 22),
                         landing_dir=landing).records
    return record.result


def file_row(engine, relpath):
    with engine.connect() as conn:
        return conn.execute(select(ingested_files).where(ingested_files.c.path == relpath)
                            .order_by(ingested_files.c.file_id.desc()).limit(1)).one()


# --- a CSV with another delimiter ---------------------------------------------------------

@pytest.mark.parametrize("name, text, delimiter", [
    ("semicolon", SEMICOLON, "semicolon"),
    ("tab, CRLF", "Student_ID\tapp\tdate\tminutes\r\ns1\tixl\t2026-09-01\t10\r\n", "tab"),
])
@pytest.mark.parametrize("fast", [True, False], ids=["fast reader", "exact reader"])
def test_both_csv_readers_say_a_header_looks_delimited_otherwise(tmp_path, name, text, delimiter, fast):
    path = tmp_path / "usage_export.csv"
    path.write_text(text, newline="")
    file = landing_file(path)
    header = text.splitlines()[0]
    with pytest.raises(NeedsExactReader if fast else FileUnreadable) as info:
        with FileReader(file, file.bytes, fast=fast) as reader:
            list(reader.chunks())
    assert str(info.value) == f"header has {header!r}: it looks {delimiter}-delimited; {COMMA_ONLY}"


def test_a_delimited_header_that_would_still_lack_a_column_says_both(tmp_path):
    path = tmp_path / "usage_export.csv"
    path.write_text("student;app;date;minutes\ns1;ixl;2026-09-01;10\n")
    file = landing_file(path)
    with pytest.raises(FileUnreadable) as info:
        with FileReader(file, file.bytes) as reader:
            list(reader.chunks())
    assert str(info.value) == (f"header has 'student;app;date;minutes': it looks semicolon-delimited; {COMMA_ONLY}; "
                               "split on ';' it would still lack student_id")


def test_a_one_column_header_that_is_not_delimited_keeps_the_missing_column_message(tmp_path):
    path = tmp_path / "usage_export.csv"
    path.write_text("a;b\n1;2\n")
    file = landing_file(path)
    with pytest.raises(FileUnreadable, match=r"^missing required column\(s\) student_id, app, date, minutes"):
        with FileReader(file, file.bytes) as reader:
            list(reader.chunks())


def test_a_semicolon_file_fails_saying_so_and_is_listed_with_its_reason(engine, landing):
    put(landing, "alpha/school_a/usage_semi.csv.gz", gzip.compress(SEMICOLON.encode()))
    result = ingest(engine, landing)
    row = file_row(engine, "alpha/school_a/usage_semi.csv.gz")
    error = f"header has 'student_id;app;date;minutes': it looks semicolon-delimited; {COMMA_ONLY}"
    assert (row.status, row.error) == ("failed", error)
    assert result.details["failed_files"] == [("alpha/school_a/usage_semi.csv.gz", error)]
    assert result.details["files_with_nothing_loaded"] == []
    assert result.message.startswith("files: 1 loaded, 1 failed; failed: school_a/usage_semi.csv.gz; top reasons:")
    assert f"file failed: {error} (1)" in result.message
    with engine.connect() as conn:
        assert sorted(r.student_id for r in conn.execute(select(usage))) == ["g1", "g2"]


# --- a file whose every date is US-style ------------------------------------------------------

def us_file(root: Path, fmt: str) -> str:
    if fmt == ".parquet":
        table = pa.table({c: [r[i] for r in US_ROWS] for i, c in enumerate(("student_id", "app", "date", "minutes"))})
        path = root / "alpha/usage_us.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
        return "alpha/usage_us.parquet"
    if fmt == ".jsonl":
        text = "".join(json.dumps(dict(zip(("student_id", "app", "date", "minutes"), r))) + "\n" for r in US_ROWS)
    else:
        text = "student_id,app,date,minutes\n" + "".join(",".join(r) + "\n" for r in US_ROWS)
    relpath = f"alpha/usage_us{fmt}"
    put(root, relpath, gzip.compress(text.encode()) if fmt == ".csv.gz" else text)
    return relpath


@pytest.mark.parametrize("fmt", [".csv", ".csv.gz", ".jsonl", ".parquet"])
def test_a_file_whose_every_date_is_us_style_says_so_in_its_manifest_row_and_the_summary(engine, landing, fmt):
    relpath = us_file(landing, fmt)
    result = ingest(engine, landing)
    row = file_row(engine, relpath)
    assert (row.status, row.rows_loaded, row.rows_rejected, row.notes) == ("loaded", 0, 3, US_NOTE)
    with engine.connect() as conn:
        reasons = [r.reason for r in conn.execute(select(rejected_rows.c.reason).where(rejected_rows.c.path == relpath)
                                                  .order_by(rejected_rows.c.line))]
    assert reasons == [f"date '{d}' is not a date YYYY-MM-DD (looks US-style MM/DD/YYYY)" for _, _, d, _ in US_ROWS]
    assert result.status == "completed_with_errors"
    assert result.details["files_with_nothing_loaded"] == [(relpath, US_NOTE)]
    assert result.details["failed_files"] == []
    name = relpath.removeprefix("alpha/")
    assert result.message.startswith(f"files: 2 loaded; 1 file loaded no row (every date US-style): {name}; top reasons: "
                                     "date is not a date YYYY-MM-DD (looks US-style MM/DD/YYYY) (3)")


def test_a_corrected_file_loads_and_is_no_longer_listed(engine, landing):
    relpath = us_file(landing, ".csv")
    ingest(engine, landing)
    put(landing, relpath, "student_id,app,date,minutes\ns1,ixl,2025-09-21,10\n", mtime=1_700_000_100)
    result = ingest(engine, landing)
    row = file_row(engine, relpath)
    assert (row.status, row.rows_loaded, row.rows_rejected, row.notes) == ("loaded", 1, 0, None)
    assert result.details["files_with_nothing_loaded"] == [] and "no row" not in result.message


def test_any_kind_of_file_and_day_first_dates_are_named(engine, landing):
    put(landing, "alpha/assessments_uk.csv",
        "student_id,assessment_id,date,score\ns1,a1,21/09/2025,80\ns2,a1,01/10/2025,70\n")
    result = ingest(engine, landing)
    note = "every date is DD/MM/YYYY or MM/DD/YYYY (e.g. 21/09/2025); dates must be YYYY-MM-DD: 0 of 2 rows loaded"
    assert file_row(engine, "alpha/assessments_uk.csv").notes == note
    assert result.details["files_with_nothing_loaded"] == [("alpha/assessments_uk.csv", note)]
    assert "1 file loaded no row (every date DD/MM/YYYY or MM/DD/YYYY): assessments_uk.csv" in result.message


def test_a_file_with_every_row_rejected_for_another_reason_is_flagged_too(engine, landing):
    put(landing, "alpha/usage_bad.csv", "student_id,app,date,minutes\ns1,ixl,2026-09-01,ten\ns2,ixl,09/21/2025,5\n")
    result = ingest(engine, landing)
    note = ("no row loaded: every row was rejected; top reason: minutes is not a number (1 of 2 rows); "
            "rejected for a date that is US-style (MM/DD/YYYY, e.g. 09/21/2025): 1 of 2 rows; dates must be YYYY-MM-DD")
    row = file_row(engine, "alpha/usage_bad.csv")
    assert (row.status, row.rows_loaded, row.rows_rejected, row.notes) == ("loaded", 0, 2, note)
    assert result.details["files_with_nothing_loaded"] == [("alpha/usage_bad.csv", note)]
    assert "; 1 file loaded no row (every row rejected): usage_bad.csv; " in result.message


def test_some_us_style_dates_among_good_rows_are_noted_but_not_listed(engine, landing):
    put(landing, "alpha/usage_mixed.csv", "student_id,app,date,minutes\ns1,ixl,2026-09-01,5\ns2,ixl,09/21/2025,5\n")
    result = ingest(engine, landing)
    row = file_row(engine, "alpha/usage_mixed.csv")
    assert (row.rows_loaded, row.rows_rejected) == (1, 1)
    assert row.notes == ("rejected for a date that is US-style (MM/DD/YYYY, e.g. 09/21/2025): 1 of 2 rows; "
                         "dates must be YYYY-MM-DD")
    assert result.details["files_with_nothing_loaded"] == []


def test_a_header_only_file_is_not_listed(engine, landing):
    put(landing, "alpha/usage_empty.csv", "student_id,app,date,minutes\n")
    result = ingest(engine, landing)
    assert file_row(engine, "alpha/usage_empty.csv").notes == "header only: no rows"
    assert result.details["files_with_nothing_loaded"] == [] and result.status == "succeeded"


# --- failed files, listed until they load -------------------------------------------------------

def test_a_failed_file_is_listed_every_night_until_a_version_of_it_loads(engine, landing):
    put(landing, "alpha/usage_semi.csv", SEMICOLON)
    error = f"header has 'student_id;app;date;minutes': it looks semicolon-delimited; {COMMA_ONLY}"
    first = ingest(engine, landing)
    assert first.details["failed_files"] == [("alpha/usage_semi.csv", error)]

    second = ingest(engine, landing)  # the next night, the file unchanged: still failing, still listed
    assert second.details["files"] == {"skipped": 1, "failed": 1}
    assert second.details["failed_files"] == [("alpha/usage_semi.csv", error)]
    assert "failed: usage_semi.csv" in second.message

    put(landing, "alpha/usage_semi.csv", SEMICOLON.replace(";", ","), mtime=1_700_000_100)  # re-exported right
    third = ingest(engine, landing)
    assert third.details["files"] == {"skipped": 1, "loaded": 1}
    assert third.details["failed_files"] == [] and "failed" not in third.message
    assert file_row(engine, "alpha/usage_semi.csv").status == "loaded"

    fourth = ingest(engine, landing)
    assert fourth.details["failed_files"] == []


def test_a_failed_file_no_longer_in_the_landing_folder_stays_listed(engine, landing):
    path = put(landing, "alpha/usage_semi.csv", SEMICOLON)
    ingest(engine, landing)
    path.unlink()
    result = ingest(engine, landing)
    assert result.details["files"] == {"skipped": 1}
    assert result.details["failed_files"] == [(
        "alpha/usage_semi.csv",
        f"header has 'student_id;app;date;minutes': it looks semicolon-delimited; {COMMA_ONLY} "
        "(no longer in the landing folder)",
    )]
    assert result.status == "succeeded"  # nothing failed on this run


def test_a_file_that_loaded_then_failed_then_came_back_is_listed_only_while_it_fails(engine, landing):
    good = put(landing, "alpha/usage_x.csv", GOOD.replace("g", "x"), mtime=1_700_000_010)
    ingest(engine, landing)
    put(landing, "alpha/usage_x.csv", SEMICOLON, mtime=1_700_000_020)
    assert [p for p, _ in ingest(engine, landing).details["failed_files"]] == ["alpha/usage_x.csv"]
    put(landing, "alpha/usage_x.csv", GOOD.replace("g", "x"), mtime=1_700_000_010)  # the loaded version, as it was
    result = ingest(engine, landing)
    assert result.details["files"] == {"skipped": 2} and result.details["failed_files"] == []
    assert good.exists()


def test_the_footer_lists_failed_files_and_files_that_loaded_no_row(engine, landing):
    from service import report

    put(landing, "alpha/school_a/usage_semi.csv", SEMICOLON)
    relpath = us_file(landing, ".csv")
    s = settings()
    cycle = run_cycle(engine, s, districts=list(s.districts), jobs=["ingest"], as_of=date(2026, 11, 22),
                      landing_dir=landing)
    footer = report.cycle_summary(cycle).splitlines()
    failed = footer.index("files that failed to load (listed every cycle until a version of the same path loads):")
    assert footer[failed + 1] == ("  alpha: alpha/school_a/usage_semi.csv: header has 'student_id;app;date;minutes': "
                                  f"it looks semicolon-delimited; {COMMA_ONLY}")
    empty = footer.index("files that loaded no row (every row rejected):")
    assert footer[empty + 1] == f"  alpha: {relpath}: {US_NOTE}"
