"""The bad-input catalogue: each case ends in a clear message and loses no good row.

Every test lands a good file beside the bad input and checks that all of its rows load.
"""
from __future__ import annotations

import gzip
import os
import shutil
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select

import config
from jobs import ingest
from runner.cycle import run_cycle
from models import SOURCE_TABLES, assessments, ingested_files, rejected_rows, usage

pytestmark = pytest.mark.slow

GOOD = "student_id,app,date,minutes\ng1,ixl,2026-09-01,10\ng2,ixl,2026-09-01,20\ng3,lexia,2026-09-02,30\n"
HEADER = "student_id,app,date,minutes\n"


def settings():
    return config.parse({"districts": [{"id": "alpha", "apps": ["ixl", "lexia"]}]})


class Landing:
    def __init__(self, root: Path):
        self.root = root
        self.put("alpha/usage_good.csv", GOOD)

    def put(self, relpath: str, content: str | bytes) -> Path:
        path = self.root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return path


@pytest.fixture
def landing(tmp_path):
    return Landing(tmp_path / "landing")


def ingest_all(engine, landing):
    s = settings()
    return run_cycle(engine, s, districts=list(s.districts), jobs=["ingest"], as_of=date(2026, 11, 22),
                     landing_dir=landing.root)


def file_row(engine, relpath):
    with engine.connect() as conn:
        return conn.execute(select(ingested_files).where(ingested_files.c.path == relpath)).one()


def rejected(engine):
    with engine.connect() as conn:
        return [(r.path, r.line, r.reason) for r in conn.execute(select(rejected_rows).order_by(rejected_rows.c.id))]


def usage_minutes(engine):
    with engine.connect() as conn:
        return {(r.student_id, r.app): r.minutes for r in conn.execute(select(usage))}


def assert_good_rows_loaded(engine, extra=None):
    found = usage_minutes(engine)
    for key, minutes in {("g1", "ixl"): 10.0, ("g2", "ixl"): 20.0, ("g3", "lexia"): 30.0, **(extra or {})}.items():
        assert found.get(key) == minutes, key


def test_empty_file(engine, landing):
    landing.put("alpha/usage_empty.csv", "")
    result = ingest_all(engine, landing).records[0].result
    row = file_row(engine, "alpha/usage_empty.csv")
    assert (row.status, row.error) == ("failed", "the file is empty: a header row is required")
    assert result.status == "completed_with_errors" and "file failed: the file is empty" in result.message
    assert_good_rows_loaded(engine)


def test_header_only(engine, landing):
    landing.put("alpha/usage_header.csv", HEADER)
    ingest_all(engine, landing)
    row = file_row(engine, "alpha/usage_header.csv")
    assert (row.status, row.rows_loaded, row.notes) == ("loaded", 0, "header only: no rows")
    assert_good_rows_loaded(engine)


def test_missing_required_column_is_named(engine, landing):
    landing.put("alpha/usage_nominutes.csv", "student_id,app,date\ns9,ixl,2026-09-01\n")
    ingest_all(engine, landing)
    row = file_row(engine, "alpha/usage_nominutes.csv")
    assert row.status == "failed"
    assert row.error.startswith("missing required column(s) minutes for a usage file")
    assert_good_rows_loaded(engine)


def test_extra_columns_are_ignored_and_noted(engine, landing):
    landing.put("alpha/usage_extra.csv", "student_id,app,date,minutes,device\ns9,ixl,2026-09-03,5,ipad\n")
    ingest_all(engine, landing)
    row = file_row(engine, "alpha/usage_extra.csv")
    assert (row.status, row.rows_loaded, row.notes) == ("loaded", 1, "extra columns ignored: device")
    assert_good_rows_loaded(engine, {("s9", "ixl"): 5.0})


@pytest.mark.parametrize(
    "row, reason",
    [
        ("s9,ixl,2026-09-03,ten", "minutes 'ten' is not a number"),  # wrong type in a cell
        ("s9,ixl,2026-09-03,-1", "minutes '-1' is outside 0..1440"),
        ("s9,ixl,2026-09-03,1441", "minutes '1441' is outside 0..1440"),
        ("s9,ixl,2026-02-30,5", "date '2026-02-30' is not a date YYYY-MM-DD"),  # impossible date
        ("s9,ixl,2026-13-01,5", "date '2026-13-01' is not a date YYYY-MM-DD"),
        (",ixl,2026-09-03,5", "student_id is empty"),
        (f"{'s' * 65},ixl,2026-09-03,5", "student_id is longer than 64 characters"),
        ("s9,Lexia Core,2026-09-03,5", "app 'Lexia Core' does not match ^[a-z][a-z0-9_]{0,40}$"),
        ("s9,ixl,2026-09-03,5,extra", "expected 4 fields, got 5"),
    ],
)
def test_a_bad_usage_row_is_quarantined_with_line_and_reason(engine, landing, row, reason):
    landing.put("alpha/usage_mixed.csv", f"{HEADER}g4,ixl,2026-09-03,40\n{row}\ng5,ixl,2026-09-03,50\n")
    result = ingest_all(engine, landing).records[0].result
    assert rejected(engine) == [("alpha/usage_mixed.csv", 3, reason)]
    assert result.status == "completed_with_errors" and result.rows_rejected == 1
    assert_good_rows_loaded(engine, {("g4", "ixl"): 40.0, ("g5", "ixl"): 50.0})


@pytest.mark.parametrize(
    "score, reason",
    [("100.5", "score '100.5' is outside 0..100"), ("-3", "score '-3' is outside 0..100"),
     ("abc", "score 'abc' is not a number"), ("", "score is empty")],
)
def test_a_score_outside_0_to_100_or_not_a_number(engine, landing, score, reason):
    landing.put("alpha/assessments.csv", f"student_id,assessment_id,date,score\ns1,u1,2026-09-10,77\ns2,u1,2026-09-10,{score}\n")
    ingest_all(engine, landing)
    assert rejected(engine) == [("alpha/assessments.csv", 3, reason)]
    with engine.connect() as conn:
        assert conn.execute(select(assessments.c.student_id, assessments.c.score)).all() == [("s1", 77.0)]
    assert_good_rows_loaded(engine)


def test_usage_of_an_app_the_district_does_not_list_is_kept_and_reported(engine, landing):
    landing.put("alpha/usage_other.csv", f"{HEADER}s9,minecraft_edu,2026-09-03,25\n")
    ingest_all(engine, landing)
    assert file_row(engine, "alpha/usage_other.csv").notes == \
        "usage for apps the district does not list (kept): minecraft_edu (1 row)"
    assert_good_rows_loaded(engine, {("s9", "minecraft_edu"): 25.0})


@pytest.mark.parametrize("folder", ["x'; drop table usage; --", "oakwood", "Alpha", "..hidden"])
def test_a_folder_that_is_not_a_configured_district_is_not_read(engine, landing, folder):
    landing.put(f"{folder}/usage.csv", f"{HEADER}evil,ixl,2026-09-01,999\n")
    cycle = ingest_all(engine, landing)
    if not folder.startswith("."):
        assert cycle.unconfigured == [folder]
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(usage)).scalar_one() == 3  # the table is intact
        assert conn.execute(select(func.count()).select_from(ingested_files)).scalar_one() == 1
    assert ("evil", "ixl") not in usage_minutes(engine)
    assert_good_rows_loaded(engine)


def test_a_truncated_gzip(engine, landing):
    whole = gzip.compress((HEADER + "s9,ixl,2026-09-03,5\n" * 2000).encode())
    landing.put("alpha/usage_cut.csv.gz", whole[: len(whole) // 2])
    ingest_all(engine, landing)
    row = file_row(engine, "alpha/usage_cut.csv.gz")
    assert row.status == "failed" and row.error.startswith("the compressed file is truncated or corrupt")
    assert_good_rows_loaded(engine)
    assert ("s9", "ixl") not in usage_minutes(engine)  # nothing of the cut file


def test_a_corrupt_parquet_file(engine, landing):
    landing.put("alpha/usage.parquet", b"PAR1" + os.urandom(200) + b"PAR1")
    ingest_all(engine, landing)
    row = file_row(engine, "alpha/usage.parquet")
    assert row.status == "failed" and row.error.startswith("not a readable Parquet file")
    assert_good_rows_loaded(engine)


def test_a_gpg_file_encrypted_to_another_key(engine, landing, keyrings, service_keyring, tmp_path):
    _, other = keyrings
    plain = tmp_path / "plain.csv"
    plain.write_text(f"{HEADER}s9,ixl,2026-09-03,5\n")
    other.encrypt(plain, landing.root / "alpha" / "usage_partner.csv.gpg")
    ingest_all(engine, landing)
    row = file_row(engine, "alpha/usage_partner.csv.gpg")
    assert row.status == "failed"
    assert row.error.startswith("gpg could not decrypt the file:") and "No secret key" in row.error
    assert_good_rows_loaded(engine)


def test_a_wrong_passphrase_fails_without_showing_it(engine, landing, service_keyring, tmp_path, monkeypatch, caplog):
    plain = tmp_path / "plain.csv"
    plain.write_text(f"{HEADER}s9,ixl,2026-09-03,5\n")
    service_keyring.encrypt(plain, landing.root / "alpha" / "usage_partner.csv.gpg")
    monkeypatch.setenv("ANALYTICS_GPG_PASSPHRASE", "wrong-horse-4711")
    result = ingest_all(engine, landing).records[0].result
    row = file_row(engine, "alpha/usage_partner.csv.gpg")
    assert row.status == "failed" and row.error.startswith("gpg could not decrypt the file:")
    assert "Bad passphrase" in row.error or "bad passphrase" in row.error.lower()
    assert "wrong-horse-4711" not in row.error + result.message + caplog.text
    assert_good_rows_loaded(engine)

    monkeypatch.setenv("ANALYTICS_GPG_PASSPHRASE", service_keyring.passphrase)  # fixed: retried, loads
    ingest_all(engine, landing)
    assert file_row(engine, "alpha/usage_partner.csv.gpg").status == "loaded"
    assert_good_rows_loaded(engine, {("s9", "ixl"): 5.0})


def test_bytes_that_are_not_utf8(engine, landing):
    landing.put("alpha/usage_latin1.csv", HEADER.encode() + b"s\xe9bastien,ixl,2026-09-03,5\ns8,ixl,2026-09-03,6\n")
    ingest_all(engine, landing)
    assert rejected(engine) == [("alpha/usage_latin1.csv", 2, "bytes are not valid UTF-8")]
    with engine.connect() as conn:
        raw = conn.execute(select(rejected_rows.c.raw)).scalar_one()
    assert raw == "s\ufffdbastien,ixl,2026-09-03,5"
    assert_good_rows_loaded(engine, {("s8", "ixl"): 6.0})


def test_duplicate_keys_within_a_file(engine, landing):
    landing.put("alpha/usage_twice.csv", f"{HEADER}s9,ixl,2026-09-03,5\ns9,ixl,2026-09-03,7\n")
    landing.put("alpha/assessments.csv",
                "student_id,assessment_id,date,score\ns9,u1,2026-09-10,50\ns9,u1,2026-09-11,60\n")
    ingest_all(engine, landing)
    assert file_row(engine, "alpha/usage_twice.csv").notes == \
        "1 row repeated a (student, app, date) key: minutes summed"
    assert file_row(engine, "alpha/assessments.csv").notes == "1 row repeated a key: the last one of each was kept"
    with engine.connect() as conn:
        assert conn.execute(select(assessments.c.date, assessments.c.score)).all() == [(date(2026, 9, 11), 60.0)]
    assert_good_rows_loaded(engine, {("s9", "ixl"): 12.0})


def test_the_same_file_under_two_names(engine, landing):
    shutil.copy(landing.root / "alpha/usage_good.csv", landing.put("alpha/resent/usage_again.csv", ""))
    result = ingest_all(engine, landing).records[0].result
    row = file_row(engine, "alpha/resent/usage_again.csv")
    assert (row.status, row.notes) == ("duplicate", "same bytes as alpha/usage_good.csv")
    assert result.details["files"] == {"loaded": 1, "duplicate": 1}
    assert_good_rows_loaded(engine)


def test_a_file_that_changes_while_it_is_read(engine, landing, monkeypatch):
    path = landing.put("alpha/usage_growing.csv", f"{HEADER}s9,ixl,2026-09-03,5\n")
    real_validate = ingest.validate

    def validate_while_the_sync_appends(kind, cells):
        if cells["student_id"].eq("s9").any():
            with open(path, "a") as handle:
                handle.write("s10,ixl,2026-09-03,6\n")
        return real_validate(kind, cells)

    monkeypatch.setattr(ingest, "validate", validate_while_the_sync_appends)
    monkeypatch.setattr(ingest, "SMALL_FILE_BYTES", -1)  # one at a time: validation runs while the file is read
    ingest_all(engine, landing)
    row = file_row(engine, "alpha/usage_growing.csv")
    assert row.status == "failed"
    assert row.error == "the file changed while it was being read; it will be loaded on the next run"
    assert ("s9", "ixl") not in usage_minutes(engine)
    assert_good_rows_loaded(engine)

    monkeypatch.undo()
    ingest_all(engine, landing)
    assert_good_rows_loaded(engine, {("s9", "ixl"): 5.0, ("s10", "ixl"): 6.0})


def test_a_small_file_that_changes_while_it_is_read_with_others_fails_alone(engine, landing, monkeypatch):
    """The same among small files loaded together (jobs.ingest, "small files"): each is read
    whole, then checked; one that changed meanwhile fails alone, the others load."""
    path = landing.put("alpha/usage_growing.csv", f"{HEADER}s9,ixl,2026-09-03,5\n")
    landing.put("alpha/usage_other.csv", f"{HEADER}s11,ixl,2026-09-03,7\n")

    class Appending(ingest.FileReader):
        def chunks(self):
            for chunk in super().chunks():
                if self.file.path == path and chunk.cells["student_id"].eq("s9").any():
                    with open(path, "a") as handle:
                        handle.write("s10,ixl,2026-09-03,6\n")
                yield chunk

    batches = []
    real_batch = ingest._ingest_batch
    monkeypatch.setattr(ingest, "_ingest_batch", lambda *a, **k: batches.append(real_batch(*a, **k)) or batches[-1])
    monkeypatch.setattr(ingest, "FileReader", Appending)
    ingest_all(engine, landing)
    assert batches and batches[0] is not None  # loaded together
    row = file_row(engine, "alpha/usage_growing.csv")
    assert (row.status, row.error) == ("failed", "the file changed while it was being read; it will be loaded on the "
                                                 "next run")
    assert ("s9", "ixl") not in usage_minutes(engine)
    assert_good_rows_loaded(engine, {("s11", "ixl"): 7.0})

    monkeypatch.undo()
    ingest_all(engine, landing)
    assert_good_rows_loaded(engine, {("s9", "ixl"): 5.0, ("s10", "ixl"): 6.0, ("s11", "ixl"): 7.0})


def test_an_unknown_kind_or_format_is_recorded_not_guessed(engine, landing):
    landing.put("alpha/readme.txt", "hello")
    landing.put("alpha/usage.xlsx", "PK")
    ingest_all(engine, landing)
    assert file_row(engine, "alpha/readme.txt").error.startswith("file name must start with one of usage")
    assert file_row(engine, "alpha/usage.xlsx").error.startswith("file name must end with one of .csv.gz")
    assert_good_rows_loaded(engine)


def test_rows_of_every_kind_record_the_file_they_came_from(engine, landing):
    ingest_all(engine, landing)
    with engine.connect() as conn:
        file_id = conn.execute(select(ingested_files.c.file_id)).scalar_one()
        assert {r.file_id for r in conn.execute(select(SOURCE_TABLES["usage"].c.file_id))} == {file_id}


def test_a_nul_character_is_quarantined_and_a_carriage_return_in_a_quoted_field_loads(engine, landing):
    landing.put("alpha/usage_odd.csv", HEADER.encode() + b'"s\r2",ixl,2026-09-03,5\ns\x003,ixl,2026-09-03,6\n')
    result = ingest_all(engine, landing).records[0].result
    # the quoted carriage return starts a new physical line, so the NUL row is on line 4
    assert rejected(engine) == [("alpha/usage_odd.csv", 4, "contains a NUL character")]
    assert result.status == "completed_with_errors"
    assert_good_rows_loaded(engine, {("s\r2", "ixl"): 5.0})


def test_a_roster_without_optional_columns_keeps_what_others_said(engine, landing):
    landing.put("alpha/students.csv", "student_id,school_id,grade\ns1,north,3\n")
    ingest_all(engine, landing)
    later = landing.put("alpha/students_enrolled.csv", "student_id\ns1\ns2\n")
    os.utime(later, (2_000_000_000, 2_000_000_000))
    ingest_all(engine, landing)
    with engine.connect() as conn:
        roster = {r.student_id: (r.school_id, r.grade) for r in conn.execute(select(SOURCE_TABLES["students"]))}
    assert roster == {"s1": ("north", "3"), "s2": (None, None)}


def test_a_file_that_cannot_be_opened_is_a_failure_not_a_skip(engine, landing, monkeypatch):
    landing.put("alpha/usage_locked.csv", f"{HEADER}s9,ixl,2026-09-03,5\n")
    real = ingest.fingerprint

    def refuse(path):
        if path.name == "usage_locked.csv":
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(ingest, "fingerprint", refuse)
    result = ingest_all(engine, landing).records[0].result
    assert result.status == "completed_with_errors" and result.details["files"] == {"loaded": 1, "failed": 1}
    assert "cannot be read: Permission denied" in result.message
    assert_good_rows_loaded(engine)

    monkeypatch.undo()  # readable again: it loads, and its failure record is replaced
    ingest_all(engine, landing)
    assert file_row(engine, "alpha/usage_locked.csv").status == "loaded"


def test_json_escapes_for_a_nul_or_a_lone_surrogate_are_quarantined(engine, landing):
    landing.put("alpha/usage_escapes.jsonl",
                '{"student_id": "a\\u0000b", "app": "ixl", "date": "2026-09-03", "minutes": 5}\n'
                '{"student_id": "c\\udc80", "app": "ixl", "date": "2026-09-03", "minutes": 6}\n'
                '{"student_id": "ok", "app": "ixl", "date": "2026-09-03", "minutes": 7}\n')
    ingest_all(engine, landing)
    row = file_row(engine, "alpha/usage_escapes.jsonl")
    assert (row.status, row.rows_loaded, row.rows_rejected) == ("loaded", 1, 2)
    assert [(line, reason) for path, line, reason in rejected(engine) if path.endswith("escapes.jsonl")] == [
        (1, "contains a NUL character"), (2, "bytes are not valid UTF-8")]
    assert_good_rows_loaded(engine, {("ok", "ixl"): 7.0})
