"""Small files loaded together (jobs.ingest, "small files") end exactly where loading them one
at a time ends: the same rows, rejections, notes, manifest, rollups, change log and weekly
rows, on SQLite and PostgreSQL, for good files, bad rows, bad files, duplicates, a retried
failure, and keys that repeat across files (which send the batch back to one at a time)."""
from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

import config
from jobs import ingest
from models import (
    changed_students, changes_logged, ingested_files, rejected_rows, usage, usage_activity, usage_totals, usage_weekly,
)
from runner.cycle import run_cycle

HEADER = "student_id,app,date,minutes\n"


def settings():
    return config.parse({"districts": [{"id": "alpha", "apps": ["ixl", "lexia"]}]})


def put(root: Path, relpath: str, content: str | bytes, mtime: int) -> None:
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    os.utime(path, (mtime, mtime))


def landing(root: Path, night: int) -> None:
    """A night's landing folder: many small files, and among them every kind of trouble."""
    base = 1_000_000 * night
    for n in range(60):
        rows = "".join(f"n{night}s{n}{k % 2},{'ixl' if k % 2 else 'lexia'},2026-09-{1 + (n + k) % 28:02d},{5 + k}.25\n"
                       for k in range(3))
        put(root, f"alpha/school_{n % 4}/usage_{night}_{n:03d}.csv", HEADER + rows, base + n)
    t = base + 100
    put(root, f"alpha/usage_{night}_bad_rows.csv", HEADER + f"b{night}1,ixl,2026-09-01,-5\nb{night}2,ixl,09/21/2026,5\n"
        f"b{night}3,zzz,2026-09-01,5\nb{night}4,ixl,2026-09-02\nb{night}5,ix\x00l,2026-09-02,3\n", t)
    put(root, f"alpha/usage_{night}_all_us.csv", HEADER + f"u{night},ixl,09/21/2026,5\nv{night},ixl,09/22/2026,5\n", t + 1)
    put(root, f"alpha/usage_{night}_header.csv", "student_id,app\nx,y\n", t + 2)
    put(root, f"alpha/usage_{night}_empty.csv", HEADER, t + 3)
    put(root, f"alpha/usage_{night}_copy.csv", (root / f"alpha/school_0/usage_{night}_000.csv").read_bytes(), t + 4)
    put(root, f"alpha/usage_{night}_sessions.csv", f"student_id,app,date,minutes,sessions,device\n"
                                                   f"e{night},ixl,2026-09-03,7,2,ipad\n", t + 5)
    put(root, f"alpha/usage_{night}_latin1.csv", HEADER.encode() + f"l{night}".encode() + b"\xe9,ixl,2026-09-03,5\n",
        t + 6)
    put(root, f"alpha/usage_{night}_wide.csv", HEADER + "w,ixl,2026-09-03,1," + "x" * 10 + "\n", t + 7)
    put(root, f"alpha/usage_{night}_twin.csv", (root / f"alpha/usage_{night}_copy.csv").read_bytes(), t + 8)


def repeated_keys(root: Path) -> None:
    """Two files of a night with the same key: the later one replaces it, one at a time."""
    put(root, "alpha/usage_9_first.csv", HEADER + "r1,ixl,2026-09-05,10\n", 9_000_000)
    put(root, "alpha/usage_9_second.csv", HEADER + "r1,ixl,2026-09-05,20\nr2,ixl,2026-09-05,1\n", 9_000_001)


def fixed(root: Path) -> None:
    """The header file corrected: a retry replaces its failed record."""
    put(root, "alpha/usage_1_header.csv", HEADER + "h1,ixl,2026-09-04,8\n", 8_000_000)


def state(engine) -> dict[str, pd.DataFrame]:
    """Every table ingest writes, with file ids as paths and without times and row ids."""
    with engine.connect() as conn:
        paths = dict(conn.execute(sa.select(ingested_files.c.file_id, ingested_files.c.path)).all())
        out = {}
        for table, key in ((ingested_files, ["path", "sha256"]), (usage, ["student_id", "app", "date"]),
                           (rejected_rows, ["path", "line"]), (usage_totals, ["student_id", "app"]),
                           (usage_activity, ["student_id"]), (usage_weekly, ["school_id", "app", "week_start"]),
                           (changed_students, ["path", "student_id"]), (changes_logged, ["path"])):
            frame = pd.read_sql(sa.select(table), conn)
            if "file_id" in frame:
                frame = frame.assign(path=frame["file_id"].map(paths)).drop(columns="file_id")
            frame = frame.drop(columns=[c for c in frame.columns if c.endswith("_at") or c == "id"])
            out[table.name] = frame.sort_values(key, ignore_index=True)[sorted(frame.columns)]
    return out


def nights(engine, root: Path) -> list:
    s = settings()
    results = []
    for step in (lambda: landing(root, 1), lambda: landing(root, 2), lambda: repeated_keys(root), lambda: fixed(root)):
        step()
        results.append(run_cycle(engine, s, districts=list(s.districts), jobs=["ingest"], as_of=date(2026, 11, 22),
                                 landing_dir=root).records[0].result)
    return results


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_small_files_loaded_together_end_where_one_at_a_time_ends(db, request, tmp_path, monkeypatch):
    from storage import database

    def url(name):
        return request.getfixturevalue("make_pg_url")() if db == "postgresql" else f"sqlite:///{tmp_path / name}.db"

    engine = database.connect(url("alone"))
    monkeypatch.setattr(ingest, "SMALL_FILE_BYTES", -1)  # no file is small: one at a time
    alone = nights(engine, tmp_path / "alone")
    expected = state(engine)
    engine.dispose()

    monkeypatch.undo()
    calls = []
    real = ingest._ingest_batch
    monkeypatch.setattr(ingest, "_ingest_batch", lambda *a, **k: calls.append(real(*a, **k)) or calls[-1])
    engine = database.connect(url("together"))
    together = nights(engine, tmp_path / "together")
    got = state(engine)
    engine.dispose()

    assert any(outcomes is not None for outcomes in calls)  # batches were written together ...
    assert any(outcomes is None for outcomes in calls)  # ... and the repeated key sent one back
    for name, frame in expected.items():
        pd.testing.assert_frame_equal(got[name], frame, obj=name)
    for a, b in zip(alone, together):
        assert (a.status, a.rows_in, a.rows_out, a.rows_rejected, a.message) == \
               (b.status, b.rows_in, b.rows_out, b.rows_rejected, b.message)
        assert a.details == b.details


def _trigger(folder: Path, url: str, **env):
    import subprocess
    import sys

    from tests.cli.test_trigger import REPO

    environment = {k: v for k, v in os.environ.items() if not k.startswith("ANALYTICS_")}
    environment.update(DATABASE_URL=url, **env)
    return subprocess.run([sys.executable, str(REPO / "trigger.py"), "--as-of", "2026-11-22", "--jobs", "ingest"],
                          cwd=folder, env=environment, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("point", ["ingest.staged", "ingest.merged"])
def test_a_crash_inside_a_batch_counts_none_of_its_files_and_a_rerun_loads_them_once(point, db_url, tmp_path):
    """SIGKILL in the middle of a batch's transaction (the real trigger.py, ANALYTICS_CRASH_AT):
    none of its files is counted, no row of them is there, and the rerun ends where a clean
    run ends."""
    from storage import database

    (tmp_path / "districts.yaml").write_text("districts:\n  - id: alpha\n    apps: [ixl, lexia]\n")
    landing(tmp_path / "landing", 1)
    crashed = _trigger(tmp_path, db_url, ANALYTICS_CRASH_AT=point)
    assert crashed.returncode == -9, crashed.stderr[-2000:]
    engine = database.connect(db_url)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(usage)).scalar_one() == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(ingested_files)
                            .where(ingested_files.c.status != "failed")).scalar_one() == 0
    rerun = _trigger(tmp_path, db_url)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    after = state(engine)
    engine.dispose()
    clean_url = f"sqlite:///{tmp_path / 'clean.db'}"
    assert _trigger(tmp_path, clean_url).returncode == 0
    clean = database.connect(clean_url)
    expected = state(clean)
    clean.dispose()
    for name, frame in expected.items():
        pd.testing.assert_frame_equal(after[name], frame, obj=name, check_dtype=False)


@pytest.mark.slow
def test_a_first_night_of_many_small_files_takes_a_transaction_per_batch_not_per_file(pg_url, tmp_path):
    """The real trigger.py on 1,200 small files (and a bad one among them): each file loaded
    once, the bad one failed alone, and the rows written by 3 transactions (batches of at most
    500 files; PostgreSQL's xmin names the transaction that wrote a row), not 1,200 (a
    transaction a file made a first night of 50,000 files 3.7 hours). A count, not a clock:
    the speed is bench/small_files.py's."""
    (tmp_path / "districts.yaml").write_text("districts:\n  - id: alpha\n    apps: [ixl, lexia]\n")
    for n in range(1_200):
        put(tmp_path, f"landing/alpha/school_{n % 7}/usage_{n:04d}.csv",
            HEADER + f"s{n},ixl,2026-09-{1 + n % 28:02d},5\ns{n},lexia,2026-09-{1 + n % 28:02d},6\n", 1_000 + n)
    put(tmp_path, "landing/alpha/usage_0600_bad.csv", "student_id;app;date;minutes\n", 1_600)

    def ingest_night():
        done = _trigger(tmp_path, pg_url)
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    first = ingest_night()
    assert "files: 1200 loaded, 1 failed" in first.stdout, first.stdout[-2000:]
    engine = sa.create_engine(pg_url)
    with engine.connect() as conn:
        statuses = dict(conn.execute(sa.select(ingested_files.c.status, sa.func.count())
                                     .group_by(ingested_files.c.status)).all())
        rows, keys, transactions = conn.execute(sa.text(
            "select count(*), count(distinct (student_id, app, date)), count(distinct xmin::text) from usage")).one()
    assert statuses == {"loaded": 1_200, "failed": 1}
    assert rows == keys == 2_400
    assert transactions == 3, transactions  # batches of 500, 500 and 201 files (the bad one fails alone in its own)
    again = ingest_night()
    assert "files: 1 failed, 1200 skipped" in again.stdout, again.stdout[-2000:]
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(usage)).scalar_one() == 2_400
    engine.dispose()
