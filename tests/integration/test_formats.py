"""Every landing format, plain and encrypted, loads the same rows, on SQLite and PostgreSQL."""
import gzip
import json
from datetime import date

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select

import config
from storage.frames import read_frame
from runner.cycle import run_cycle
from models import assessments, ingested_files, usage

ROWS = [("s1", "ixl", "2026-09-01", 30.0, 1), ("s1", "lexia", "2026-09-02", 12.5, 2), ("s2", "ixl", "2026-09-01", 0.0, None)]
SCORES = [("s1", "unit1", "2026-09-10", 80.0), ("s2", "unit1", "2026-09-10", 67.5)]


def write_plain(path, fmt, columns, rows):
    frame = pd.DataFrame(rows, columns=columns)
    if fmt == ".csv":
        path.write_text(frame.to_csv(index=False))
    elif fmt == ".csv.gz":
        path.write_bytes(gzip.compress(frame.to_csv(index=False).encode()))
    elif fmt == ".jsonl":
        path.write_text("".join(json.dumps({k: v for k, v in zip(columns, row) if v is not None}) + "\n" for row in rows))
    elif fmt == ".parquet":
        table = pa.Table.from_pandas(frame.assign(date=pd.to_datetime(frame["date"]).dt.date), preserve_index=False)
        pq.write_table(table, path)
    return path


def load(engine, landing):
    s = config.parse({"districts": [{"id": "alpha", "apps": ["ixl", "lexia"]}]})
    return run_cycle(engine, s, districts=list(s.districts), jobs=["ingest"], as_of=date(2026, 11, 22),
                     landing_dir=landing).records[0].result


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "gpg"])
@pytest.mark.parametrize("fmt", [".csv", ".csv.gz", ".parquet", ".jsonl"])
def test_each_format_loads_the_same_rows(engine, tmp_path, fmt, encrypted, request):
    folder = tmp_path / "landing" / "alpha"
    folder.mkdir(parents=True)
    files = [
        write_plain(tmp_path / f"usage{fmt}", fmt, ["student_id", "app", "date", "minutes", "sessions"], ROWS),
        write_plain(tmp_path / f"assessments{fmt}", fmt, ["student_id", "assessment_id", "date", "score"], SCORES),
    ]
    for plain in files:
        if encrypted:
            request.getfixturevalue("service_keyring").encrypt(plain, folder / (plain.name + ".gpg"))
        else:
            plain.rename(folder / plain.name)

    result = load(engine, tmp_path / "landing")
    assert (result.status, result.rows_out, result.rows_rejected) == ("succeeded", 5, 0)
    with engine.connect() as conn:
        got = read_frame(conn, select(usage.c.student_id, usage.c.app, usage.c.date, usage.c.minutes, usage.c.sessions)
                         .order_by(usage.c.student_id, usage.c.app))
        scores = conn.execute(select(assessments.c.student_id, assessments.c.score).order_by(assessments.c.student_id)).all()
        endings = sorted(r.format for r in conn.execute(select(ingested_files.c.format)))
    assert [tuple(r) for r in got.astype(object).where(got.notna(), None).itertuples(index=False)] == [
        ("s1", "ixl", date(2026, 9, 1), 30.0, 1), ("s1", "lexia", date(2026, 9, 2), 12.5, 2),
        ("s2", "ixl", date(2026, 9, 1), 0.0, None),
    ]
    assert [tuple(r) for r in scores] == [("s1", 80.0), ("s2", 67.5)]
    assert endings == [fmt + (".gpg" if encrypted else "")] * 2


def test_decryption_leaves_no_plaintext_behind(engine, tmp_path, service_keyring, monkeypatch):
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(private_tmp))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)  # let tempfile read TMPDIR again
    folder = tmp_path / "landing" / "alpha"
    folder.mkdir(parents=True)
    plain = write_plain(tmp_path / "usage.csv", ".csv", ["student_id", "app", "date", "minutes", "sessions"], ROWS)
    service_keyring.encrypt(plain, folder / "usage.csv.gpg")
    (folder / "usage_broken.csv.gpg").write_bytes(b"not openpgp at all")
    load(engine, tmp_path / "landing")
    assert list(private_tmp.iterdir()) == []  # both the good and the failed decryption cleaned up


def test_stale_decryption_folders_of_dead_processes_are_removed(tmp_path):
    from readers.decrypt import remove_stale_folders

    dead = tmp_path / "analytics-decrypt-999999999-abc"
    dead.mkdir()
    (dead / "plaintext").write_text("secret rows")
    mine = tmp_path / f"analytics-decrypt-{__import__('os').getpid()}-xyz"
    mine.mkdir()
    assert remove_stale_folders(str(tmp_path)) == 1
    assert not dead.exists() and mine.exists()


def test_a_full_disk_while_decrypting_fails_the_file_cleanly(engine, tmp_path, service_keyring, monkeypatch):
    import os
    import tempfile as real_tempfile

    from readers import decrypt

    folder = tmp_path / "landing" / "alpha"
    folder.mkdir(parents=True)
    plain = write_plain(tmp_path / "usage.csv", ".csv", ["student_id", "app", "date", "minutes", "sessions"], ROWS)
    service_keyring.encrypt(plain, folder / "usage.csv.gpg")
    made = []

    real_mkdtemp = real_tempfile.mkdtemp

    def full_disk_folder(*args, prefix=None, **kwargs):
        path = real_mkdtemp(*args, prefix=prefix, **kwargs)
        if prefix and prefix.startswith(decrypt.PREFIX):
            os.symlink("/dev/full", os.path.join(path, "plaintext"))  # every write: ENOSPC
            made.append(path)
        return path

    monkeypatch.setattr(decrypt.tempfile, "mkdtemp", full_disk_folder)
    result = load(engine, tmp_path / "landing")
    assert result.status == "completed_with_errors" and result.rows_out == 0
    with engine.connect() as conn:
        status, error = conn.execute(select(ingested_files.c.status, ingested_files.c.error)).one()
    assert status == "failed" and error.startswith("gpg could not decrypt the file")
    assert made and not any(os.path.exists(p) for p in made)  # the private folder is gone


def test_an_unwritable_temporary_folder_fails_the_file_cleanly(engine, tmp_path, service_keyring, monkeypatch):
    import tempfile

    folder = tmp_path / "landing" / "alpha"
    folder.mkdir(parents=True)
    plain = write_plain(tmp_path / "usage.csv", ".csv", ["student_id", "app", "date", "minutes", "sessions"], ROWS)
    service_keyring.encrypt(plain, folder / "usage.csv.gpg")
    (tmp_path / "not-a-folder").write_text("")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "not-a-folder"))  # TMPDIR that cannot hold folders
    result = load(engine, tmp_path / "landing")
    assert result.rows_out == 0
    with engine.connect() as conn:
        status, error = conn.execute(select(ingested_files.c.status, ingested_files.c.error)).one()
    assert status == "failed" and error.startswith("cannot make a private temporary folder to decrypt into")
