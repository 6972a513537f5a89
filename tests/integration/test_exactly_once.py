"""Which version of a key wins, whatever the order files arrive in, reloads and reverts."""
import os
import threading
from datetime import date
from pathlib import Path

from sqlalchemy import func, select

import config
from runner.cycle import run_cycle
from models import ingested_files, usage

HEADER = "student_id,app,date,minutes\n"


def settings():
    return config.parse({"districts": [{"id": "alpha", "apps": ["ixl"]}]})


def put(root: Path, relpath: str, text: str, mtime: int) -> Path:
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.utime(path, (mtime, mtime))
    return path


def ingest_all(engine, root, force=False):
    s = settings()
    return run_cycle(engine, s, districts=list(s.districts), jobs=["ingest"], as_of=date(2026, 11, 22),
                     landing_dir=root, force=force).records[0].result


def minutes(engine):
    with engine.connect() as conn:
        return conn.execute(select(usage.c.minutes).where(usage.c.student_id == "s1")).scalar_one()


def test_a_file_changed_back_to_an_earlier_version_is_loaded_again(engine, tmp_path):
    put(tmp_path, "alpha/usage.csv", f"{HEADER}s1,ixl,2026-09-01,30\n", 1_000)
    ingest_all(engine, tmp_path)
    put(tmp_path, "alpha/usage.csv", f"{HEADER}s1,ixl,2026-09-01,45\n", 2_000)
    ingest_all(engine, tmp_path)
    assert minutes(engine) == 45.0
    put(tmp_path, "alpha/usage.csv", f"{HEADER}s1,ixl,2026-09-01,30\n", 3_000)  # reverted, byte for byte
    result = ingest_all(engine, tmp_path)
    assert result.details["files"] == {"loaded": 1}
    assert minutes(engine) == 30.0


def test_force_replays_in_the_order_files_were_loaded_not_by_modification_time(engine, tmp_path):
    put(tmp_path, "alpha/usage_a.csv", f"{HEADER}s1,ixl,2026-09-01,30\n", 2_000)
    ingest_all(engine, tmp_path)
    put(tmp_path, "alpha/usage_b.csv", f"{HEADER}s1,ixl,2026-09-01,45\n", 1_000)  # arrived later, older mtime
    ingest_all(engine, tmp_path)
    assert minutes(engine) == 45.0
    ingest_all(engine, tmp_path, force=True)
    assert minutes(engine) == 45.0


def test_a_duplicate_only_of_the_current_version_of_another_path(engine, tmp_path):
    put(tmp_path, "alpha/usage_a.csv", f"{HEADER}s1,ixl,2026-09-01,30\n", 1_000)
    ingest_all(engine, tmp_path)
    put(tmp_path, "alpha/usage_a.csv", f"{HEADER}s1,ixl,2026-09-01,45\n", 2_000)  # a's bytes move on
    ingest_all(engine, tmp_path)
    put(tmp_path, "alpha/usage_b.csv", f"{HEADER}s1,ixl,2026-09-01,30\n", 3_000)  # a's old bytes, now new
    result = ingest_all(engine, tmp_path)
    assert result.details["files"] == {"skipped": 1, "loaded": 1}
    assert minutes(engine) == 30.0


def test_two_ingests_at_once_load_each_file_once(engine, tmp_path):
    rows = "".join(f"s{i},ixl,2026-09-01,{i % 60}\n" for i in range(30_000))
    put(tmp_path, "alpha/usage_big.csv", HEADER + rows, 1_000)
    put(tmp_path, "alpha/usage_small.csv", f"{HEADER}s1,ixl,2026-09-02,5\n", 2_000)
    results, errors = [], []

    from datetime import datetime, timezone

    from jobs import ingest
    from jobs.job import JobContext

    s = settings()
    ctx = JobContext(settings=s, as_of=date(2026, 11, 22), now=datetime.now(timezone.utc), landing_dir=tmp_path)

    def one():  # the ingest job itself, below the cycle's district claims: its own per-file lock
        try:
            results.append(ingest.run(engine, s.districts[0], ctx))
        except Exception as exc:  # pragma: no cover - the assertion below shows it
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and all(r.status == "succeeded" for r in results), [r.message for r in results]
    files = sorted(r.details["files"].get("loaded", 0) for r in results)
    assert sum(files) == 2  # each file loaded by exactly one of the two
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ingested_files)).scalar_one() == 2
        assert conn.execute(select(func.count()).select_from(usage)).scalar_one() == 30_001
