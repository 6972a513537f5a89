"""The shared write paths, on SQLite and PostgreSQL."""
from datetime import date, datetime, timezone

import pandas as pd
import pytest
from sqlalchemy import select

from storage.frames import bulk_insert, read_frame
from models import job_runs, rejected_rows, usage


def test_bulk_insert_matches_columns_by_name_whatever_their_order(engine):
    frame = pd.DataFrame({
        "raw": ["a,b", None], "line": [3, 4], "reason": ["r1", "r2"],
        "path": ["d/x.csv", "d/x.csv"], "district_id": ["d", "d"], "file_id": [7, 7],
    })
    with engine.begin() as conn:
        assert bulk_insert(conn, rejected_rows, frame) == 2
        rows = conn.execute(select(rejected_rows.c.file_id, rejected_rows.c.line, rejected_rows.c.reason,
                                   rejected_rows.c.raw).order_by(rejected_rows.c.line)).all()
    assert [tuple(r) for r in rows] == [(7, 3, "r1", "a,b"), (7, 4, "r2", None)]


def test_bulk_insert_round_trips_dates_timestamps_and_missing_values(engine):
    frame = pd.DataFrame({
        "district_id": ["d", "d"], "student_id": ["s,1", 'q"uote'], "app": ["ixl", "ixl"],
        "date": pd.to_datetime(["2026-09-01", "2026-09-02"]), "minutes": [12.5, 0.1 + 0.2],
        "sessions": pd.Series([3, pd.NA], dtype="Int64"), "file_id": [1, 1],
    })
    with engine.begin() as conn:
        bulk_insert(conn, usage, frame)
        bulk_insert(conn, job_runs, pd.DataFrame({
            "cycle_id": ["c"], "job": ["ingest"], "status": ["succeeded"],
            "started_at": [datetime(2026, 11, 22, 2, 0, 0, 123456, tzinfo=timezone.utc)],
        }))
        back = read_frame(conn, select(usage.c.student_id, usage.c.date, usage.c.minutes, usage.c.sessions)
                          .order_by(usage.c.date))
        started = conn.execute(select(job_runs.c.started_at)).scalar_one()
    assert back["student_id"].tolist() == ["s,1", 'q"uote']
    assert back["date"].tolist() == [date(2026, 9, 1), date(2026, 9, 2)]
    assert back["minutes"].tolist() == [12.5, 0.1 + 0.2]  # exact, not rounded through text
    assert back["sessions"].tolist()[0] == 3 and pd.isna(back["sessions"].tolist()[1])
    assert started.replace(tzinfo=timezone.utc) == datetime(2026, 11, 22, 2, 0, 0, 123456, tzinfo=timezone.utc)


def test_bulk_insert_refuses_unknown_columns(engine):
    with engine.begin() as conn, pytest.raises(ValueError, match=r"rejected_rows has no column\(s\) \['nope'\]"):
        bulk_insert(conn, rejected_rows, pd.DataFrame({"nope": [1]}))


@pytest.mark.parametrize("text", ["carriage\rreturn", "line\nbreak", "both\r\n", 'quote",comma', "\\N", ""])
def test_bulk_insert_keeps_awkward_text_exactly(engine, text):
    frame = pd.DataFrame({"file_id": [1], "district_id": ["d"], "path": ["p"], "line": [2], "reason": ["r"],
                          "raw": [text]})
    with engine.begin() as conn:
        bulk_insert(conn, rejected_rows, frame)
        stored = conn.execute(select(rejected_rows.c.raw)).scalar_one()
    assert stored == (text or None)  # an empty cell is NULL, as everywhere in the service


def test_instances_creating_the_schema_at_once_take_turns(db_url):
    """Two processes starting on an empty database both create the tables: neither fails."""
    import subprocess
    import sys

    code = "import sys; from storage import database; database.connect(sys.argv[1]).dispose()"
    processes = [subprocess.Popen([sys.executable, "-c", code, db_url], stderr=subprocess.PIPE, text=True)
                 for _ in range(4)]
    errors = [p.communicate(timeout=120)[1] for p in processes]
    assert all(p.returncode == 0 for p in processes), errors


def test_reading_through_copy_gives_the_values_of_a_plain_read(engine):
    from storage.frames import read_frame_via_copy

    frame = pd.DataFrame({
        "district_id": ["d", "d", "d"], "student_id": ["007", 'q"uote,', "line\nbreak"], "app": ["ixl"] * 3,
        "date": pd.to_datetime(["2026-09-01", "2026-09-02", "2026-09-03"]), "minutes": [12.5, 0.1 + 0.2, 0.0],
        "sessions": pd.Series([3, pd.NA, 0], dtype="Int64"), "file_id": [1, 1, 2],
    })
    with engine.begin() as conn:
        bulk_insert(conn, usage, frame)
        statement = (select(usage.c.student_id, usage.c.date, usage.c.minutes, usage.c.sessions, usage.c.file_id)
                     .where(usage.c.app.in_(["ixl", "lexia"])).order_by(usage.c.date))
        fast, plain = read_frame_via_copy(conn, statement), read_frame(conn, statement)
    assert fast["student_id"].tolist() == plain["student_id"].tolist() == ["007", 'q"uote,', "line\nbreak"]
    assert pd.to_datetime(fast["date"]).tolist() == pd.to_datetime(plain["date"]).tolist()
    assert fast["minutes"].tolist() == plain["minutes"].tolist() == [12.5, 0.1 + 0.2, 0.0]
    assert [None if pd.isna(v) else int(v) for v in fast["sessions"]] == [3, None, 0]
    assert fast["file_id"].tolist() == [1, 1, 2]


def test_a_claim_left_to_expire_keeps_its_row_and_a_released_one_does_not(engine):
    from runner.leases import LeftToExpire, claim
    from models import job_claims

    def holders():
        with engine.connect() as conn:
            return [r.holder for r in conn.execute(select(job_claims.c.holder))]

    with claim(engine, "alpha", "me", 600) as other:
        assert other is None and holders() == ["me"]
    assert holders() == []
    with pytest.raises(LeftToExpire):  # work under it may still run elsewhere (a Dask task)
        with claim(engine, "alpha", "me", 600):
            raise LeftToExpire()
    assert holders() == ["me"]
    with claim(engine, "alpha", "someone else", 600) as other:
        assert other == "me"  # not free until its lease expires


@pytest.mark.parametrize("rows", [1, 2, 100])
def test_reading_in_blocks_gives_the_rows_of_a_plain_read(engine, rows):
    from storage.frames import read_frames

    frame = pd.DataFrame({
        "district_id": "d", "student_id": [f"s{i}" for i in range(7)], "app": "ixl",
        "date": pd.to_datetime([f"2026-09-0{i + 1}" for i in range(7)]), "minutes": [0.1 * i for i in range(7)],
        "sessions": pd.Series([1] * 7, dtype="Int64"), "file_id": 1,
    })
    with engine.begin() as conn:
        bulk_insert(conn, usage, frame)
        statement = select(usage.c.student_id, usage.c.date, usage.c.minutes).order_by(usage.c.student_id)
        blocks = list(read_frames(conn, statement, rows=rows))
        plain = read_frame(conn, statement)
    assert len(blocks) >= (2 if rows < 7 else 1)
    both = pd.concat(blocks, ignore_index=True)
    assert both["student_id"].astype(str).tolist() == plain["student_id"].tolist()
    assert pd.to_datetime(both["date"]).tolist() == pd.to_datetime(plain["date"]).tolist()
    assert both["minutes"].tolist() == plain["minutes"].tolist()


def test_a_database_made_by_an_earlier_version_gains_what_was_added_since(db_url):
    """Nullable columns added to a table since, and (PostgreSQL) its storage parameters, are
    given to a database an earlier release made, at the next start; rows stay."""
    from sqlalchemy import inspect, text

    from models import changes_logged, recommend_state
    from storage import database
    from storage.ddl import DropColumn

    first = database.connect(db_url)
    with first.begin() as conn:
        conn.execute(changes_logged.insert().values(district_id="alpha", file_id=7, first_date=date(2026, 9, 1)))
        conn.execute(DropColumn(recommend_state, "scored_as_of"))
        conn.execute(DropColumn(changes_logged, "first_date"))
        if database.is_postgres(conn):
            conn.execute(text("ALTER TABLE recommendations RESET (fillfactor)"))
    first.dispose()
    again = database.connect(db_url)
    with again.connect() as conn:
        assert "scored_as_of" in {c["name"] for c in inspect(conn).get_columns("recommend_state")}
        assert conn.execute(select(changes_logged.c.file_id, changes_logged.c.first_date)).all() == [(7, None)]
        if database.is_postgres(conn):
            options = conn.execute(text("SELECT reloptions FROM pg_class WHERE oid = to_regclass('recommendations')"))
            assert options.scalar() == ["fillfactor=50"]
    again.dispose()


def test_bulk_insert_of_more_rows_than_a_slice_writes_every_row_once(engine, monkeypatch):
    from storage import frames

    monkeypatch.setattr(frames, "COPY_SLICE", 2)  # 5 rows: slices of 2, 2 and 1 on PostgreSQL
    frame = pd.DataFrame({"district_id": "alpha", "student_id": [f"s{i}" for i in range(5)], "app": "reader",
                          "date": date(2026, 9, 1), "minutes": [1.0, 2.0, 3.0, 4.0, 5.0], "file_id": 1})
    with engine.begin() as conn:
        assert bulk_insert(conn, usage, frame) == 5
    with engine.connect() as conn:
        back = read_frame(conn, select(usage.c.student_id, usage.c.minutes).order_by(usage.c.student_id))
    assert back.to_dict("list") == {"student_id": [f"s{i}" for i in range(5)], "minutes": [1.0, 2.0, 3.0, 4.0, 5.0]}
