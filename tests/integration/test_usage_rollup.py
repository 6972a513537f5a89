"""dailypull from the usage rollups gives the same table as from `usage`, and falls back to
`usage` when the rollups cannot answer; on SQLite and PostgreSQL."""
from datetime import date

import pytest
from sqlalchemy import delete, select, update

import config
from jobs import rollup
from runner.cycle import run_cycle
from models import dataframe_table, usage_rollup_state

HEADER = "student_id,app,date,minutes\n"


def settings():
    return config.parse({"districts": [{"id": "alpha", "apps": ["ixl", "dreambox"]}]})


def run(engine, landing, jobs, as_of=date(2026, 10, 1), force=False):
    s = settings()
    records = run_cycle(engine, s, districts=list(s.districts), jobs=jobs, as_of=as_of,
                        landing_dir=landing, force=force).records
    assert all(r.result.status == "succeeded" for r in records), [r.result.message for r in records]
    return records[-1].result


def published(engine):
    table = dataframe_table("alpha", ["ixl", "dreambox"])
    with engine.connect() as conn:
        return sorted(tuple(r)[:-1] for r in conn.execute(select(table).order_by(table.c.student_id)))


def same_as_from_usage(engine, landing, as_of=date(2026, 10, 1)):
    """dailypull as a night runs it, then from `usage` (--force): nothing differs."""
    night = run(engine, landing, ["dailypull"], as_of)
    table = published(engine)
    full = run(engine, landing, ["dailypull"], as_of, force=True)
    assert full.details["from"] == "usage" and full.rows_out == 0  # nothing to rewrite
    assert published(engine) == table
    # "usage rollups", or "usage rollups, the students with new data" on a night that follows them
    return night.details["from"].split(",")[0], table


@pytest.mark.parametrize("batch", [2_000, 1], ids=["ids-listed", "ids-joined"])
def test_nights_read_the_rollups_and_agree_with_a_rebuild(engine, tmp_path, monkeypatch, batch):
    """(With a batch of 1, every file's students' bitmaps are read through a joined
    temporary table, as a night naming thousands of students reads them.)"""
    monkeypatch.setattr(rollup, "_READ_BATCH", batch)
    folder = tmp_path / "alpha"
    folder.mkdir()
    (folder / "usage_1.csv").write_text(HEADER + "".join(
        f"s{i},{'ixl' if i % 2 else 'dreambox'},2026-09-{1 + i % 20:02d},{i % 7}\n" for i in range(60))
        + "s1,ixl,2026-07-30,50\n")  # last school year: not in this year's table
    run(engine, tmp_path, ["ingest"])
    source, table = same_as_from_usage(engine, tmp_path)
    assert source == "usage rollups" and len(table) == 60
    s1 = next(r for r in table if r[0] == "s1")
    assert s1[6:10] == (1.0, 1, date(2026, 9, 2), date(2026, 9, 2))  # total, active days, first, last

    # A later file replaces keys (one to 0 minutes), repeats a key and adds new ones: merged.
    (folder / "usage_2.csv").write_text(HEADER + "s1,ixl,2026-09-02,0\ns3,ixl,2026-09-04,30\n"
                                        "s3,ixl,2026-09-04,5\ns99,dreambox,2026-09-30,12\n")
    run(engine, tmp_path, ["ingest"])
    source, table = same_as_from_usage(engine, tmp_path)
    assert source == "usage rollups"
    rows = {r[0]: r for r in table}
    assert rows["s1"][6:8] == (0.0, 0) and rows["s3"][6] == 35.0 and rows["s99"][6] == 12.0

    # A new day straight into usage (PostgreSQL) and folded in.
    (folder / "usage_3.csv").write_text(HEADER + "s99,ixl,2026-10-01,8\ns100,ixl,2026-10-01,9\n")
    run(engine, tmp_path, ["ingest"])
    source, table = same_as_from_usage(engine, tmp_path)
    assert source == "usage rollups" and {r[0]: r[6] for r in table}["s99"] == 20.0

    # A past as-of: rows after it exist, so the rollups cannot answer.
    source, _ = same_as_from_usage(engine, tmp_path, as_of=date(2026, 9, 10))
    assert source == "usage"


def test_a_district_loaded_before_the_rollups_gets_them_built_once(engine, tmp_path):
    folder = tmp_path / "alpha"
    folder.mkdir()
    (folder / "usage_1.csv").write_text(HEADER + "s1,ixl,2026-09-01,10\ns2,dreambox,2026-09-02,20\n")
    run(engine, tmp_path, ["ingest"])
    with engine.begin() as conn:  # as a database from before this change looks
        conn.execute(delete(usage_rollup_state))
    first = run(engine, tmp_path, ["dailypull"])
    assert first.details["from"] == "usage"
    (folder / "usage_2.csv").write_text(HEADER + "s1,ixl,2026-09-03,5\n")
    run(engine, tmp_path, ["ingest"])
    source, table = same_as_from_usage(engine, tmp_path)
    assert source == "usage rollups" and {r[0]: r[6] for r in table} == {"s1": 15.0, "s2": 20.0}


def test_usage_written_without_folding_makes_the_rollups_incomplete(engine, tmp_path):
    """Rollups kept for another school_year_start (another instance's config, say) are not
    folded into; the ingest says so, and the next dailypull rebuilds instead of trusting them."""
    folder = tmp_path / "alpha"
    folder.mkdir()
    (folder / "usage_1.csv").write_text(HEADER + "s1,ixl,2026-09-01,10\n")
    run(engine, tmp_path, ["ingest"])
    with engine.begin() as conn:
        conn.execute(update(usage_rollup_state).values(school_year_start="07-01"))
    (folder / "usage_2.csv").write_text(HEADER + "s1,ixl,2026-09-02,5\n")
    run(engine, tmp_path, ["ingest"])
    with engine.connect() as conn:
        assert conn.execute(select(usage_rollup_state)).first() is None
    assert run(engine, tmp_path, ["dailypull"]).details["from"] == "usage"
    source, table = same_as_from_usage(engine, tmp_path)
    assert source == "usage rollups" and {r[0]: r[6] for r in table} == {"s1": 15.0}


def test_a_file_read_in_many_chunks_gives_the_rollups_of_one_chunk(engine, tmp_path, monkeypatch):
    """The chunks' rollups are merged in bulk, not into a running total per chunk: the same
    file read as one chunk and as dozens gives the same usage_totals and usage_activity."""
    import readers.landing as landing
    from analytics import usage_rollup
    from jobs import ingest
    from models import usage_activity, usage_totals

    from datetime import timedelta

    # unique keys (so PostgreSQL writes them straight into usage and folds them in), two school years
    text = HEADER + "".join(f"s{i % 97},{'ixl' if i % 3 else 'dreambox'},{date(2026, 7, 20) + timedelta(i // 97 * 3)},"
                            f"{i % 11}\n" for i in range(3_000))
    s = config.parse({"districts": [{"id": "one", "apps": ["ixl", "dreambox"]},
                                    {"id": "many", "apps": ["ixl", "dreambox"]}]})
    chunks = {}
    real_validate = ingest.validate
    for district, block in (("one", None), ("many", 1 << 11)):
        (tmp_path / district).mkdir()
        (tmp_path / district / "usage.csv").write_text(text)
        with monkeypatch.context() as patch:
            if block:
                patch.setattr(landing, "_ARROW_BLOCK", block)
                patch.setattr(ingest, "Folded", lambda: usage_rollup.Folded(pending_rows=500))  # merges along the way
            seen = []
            patch.setattr(ingest, "validate", lambda kind, cells: seen.append(len(cells)) or real_validate(kind, cells))
            records = run_cycle(engine, s, districts=[d for d in s.districts if d.id == district], jobs=["ingest"],
                                as_of=date(2026, 12, 1), landing_dir=tmp_path).records
        assert records[0].result.status == "succeeded" and records[0].result.rows_out == 3_000
        chunks[district] = len(seen)
    assert chunks["one"] == 1 and chunks["many"] > 20

    def rollups(table, district):
        columns = [c for c in table.columns if c.name not in ("district_id",)]
        with engine.connect() as conn:
            return sorted(tuple(bytes(v) if isinstance(v, (bytes, memoryview)) else v for v in r)
                          for r in conn.execute(select(*columns).where(table.c.district_id == district)))

    for table in (usage_totals, usage_activity):
        assert rollups(table, "many") == rollups(table, "one") and rollups(table, "one")
