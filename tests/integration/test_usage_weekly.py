"""usage_weekly, kept by ingest file by file, equals a rebuild from `usage` after every kind of
change (new days straight into the table, replaced keys, a school change, a database from
before the table); values worked out by hand; on SQLite and PostgreSQL."""
from datetime import date

from sqlalchemy import delete, select

import config
from jobs import weekly
from models import usage_weekly
from runner.cycle import run_cycle

HEADER = "student_id,app,date,minutes\n"


def settings():
    return config.parse({"districts": [{"id": "alpha", "apps": ["ixl", "dreambox"]}]})


def ingest(engine, landing):
    s = settings()
    records = run_cycle(engine, s, districts=list(s.districts), jobs=["ingest"], as_of=date(2026, 10, 1),
                        landing_dir=landing).records
    assert records[0].result.status == "succeeded", records[0].result.message


def rows(engine):
    with engine.connect() as conn:
        return {(r.school_id, r.app, r.week_start.isoformat()): (r.students, r.minutes)
                for r in conn.execute(select(usage_weekly))}


def rebuilt(engine):
    """The table as a whole rebuild from usage gives it."""
    with engine.begin() as conn:
        conn.execute(delete(usage_weekly))
        weekly.ensure(conn, "alpha")
    return rows(engine)


def test_each_file_keeps_the_weeks_it_touches(engine, tmp_path):
    folder = tmp_path / "alpha"
    folder.mkdir()
    (folder / "students_1.csv").write_text("student_id,school_id\ns1,north\ns2,north\ns3,south\n")
    # Mon 7 Sep 2026 .. Sun 13 Sep is one week; Mon 14 Sep starts the next
    (folder / "usage_1.csv").write_text(HEADER + "s1,ixl,2026-09-07,10\ns1,ixl,2026-09-13,5\ns2,ixl,2026-09-09,0\n"
                                        "s3,ixl,2026-09-14,20\ns4,dreambox,2026-09-14,7\n")
    ingest(engine, tmp_path)
    expected = {("north", "ixl", "2026-09-07"): (1, 15.0),  # s2's 0 minutes: a row, not a student
                ("south", "ixl", "2026-09-14"): (1, 20.0),
                ("", "dreambox", "2026-09-14"): (1, 7.0)}  # s4 has no school
    assert rows(engine) == expected
    # a later file replaces a key (15 -> 10 minutes in the first week) and adds a day
    (folder / "usage_2.csv").write_text(HEADER + "s1,ixl,2026-09-13,0\ns2,ixl,2026-09-15,30\n")
    ingest(engine, tmp_path)
    expected |= {("north", "ixl", "2026-09-07"): (1, 10.0), ("north", "ixl", "2026-09-14"): (1, 30.0)}
    assert rows(engine) == expected == rebuilt(engine)
    # s3 moves school: the weeks s3 used follow
    (folder / "students_2.csv").write_text("student_id,school_id\ns3,north\n")
    ingest(engine, tmp_path)
    expected.pop(("south", "ixl", "2026-09-14"))
    expected[("north", "ixl", "2026-09-14")] = (2, 50.0)
    assert rows(engine) == expected == rebuilt(engine)


def test_a_database_from_before_the_table_is_built_at_the_next_ingest(engine, tmp_path):
    folder = tmp_path / "alpha"
    folder.mkdir()
    (folder / "usage_1.csv").write_text(HEADER + "s1,ixl,2026-09-07,10\ns1,ixl,2026-09-21,5\n")
    ingest(engine, tmp_path)
    with engine.begin() as conn:
        conn.execute(delete(usage_weekly))
    (folder / "usage_2.csv").write_text(HEADER + "s2,ixl,2026-09-28,3\n")
    ingest(engine, tmp_path)
    assert rows(engine) == {("", "ixl", "2026-09-07"): (1, 10.0), ("", "ixl", "2026-09-21"): (1, 5.0),
                            ("", "ixl", "2026-09-28"): (1, 3.0)}


def test_weeks_start_on_monday():
    assert weekly.monday(date(2026, 9, 13)) == date(2026, 9, 7)  # a Sunday
    assert weekly.monday(date(2026, 9, 14)) == date(2026, 9, 14)
    assert weekly.weeks_of(["2026-09-13", date(2026, 9, 7), None, "2026-09-14T10:00:00"]) == [
        date(2026, 9, 7), date(2026, 9, 14)]


def test_many_weeks_in_one_pass_equal_a_query_a_week(engine, tmp_path, monkeypatch):
    """A year's file sums its weeks in one pass (Mondays worked out by the database); the
    rows equal those of a query a week, Sundays, Mondays and a new calendar year included."""
    import random
    from datetime import timedelta

    rng = random.Random(5)
    days = [date(2026, 12, 1) + timedelta(days=n) for n in range(0, 60)]  # Tue 12-01 .. Thu 01-29
    lines = {(f"s{rng.randrange(30)}", rng.choice(["ixl", "dreambox"]), rng.choice(days).isoformat())
             for _ in range(400)}
    folder = tmp_path / "alpha"
    folder.mkdir()
    (folder / "students.csv").write_text("student_id,school_id,grade\n" + "".join(
        f"s{n},school{n % 3},4\n" for n in range(0, 30, 2)))  # the odd ones have no school
    (folder / "usage.csv").write_text(HEADER + "".join(f"{s},{a},{d},{rng.choice([0, 5, 30])}\n"
                                                       for s, a, d in sorted(lines)))
    ingest(engine, tmp_path)
    one_pass = rows(engine)
    assert len({week for _, _, week in one_pass}) > weekly._ONE_PASS  # the file took the one pass
    assert all(date.fromisoformat(week).weekday() == 0 for _, _, week in one_pass)
    assert "2026-12-28" in {week for _, _, week in one_pass}  # the week across the new year
    monkeypatch.setattr(weekly, "_ONE_PASS", 10_000)
    assert rebuilt(engine) == one_pass


def test_weeks_new_to_the_district_come_from_the_file_and_equal_a_rebuild(engine, tmp_path, monkeypatch):
    """A file of new keys (PostgreSQL writes it straight into usage) takes the weeks the
    district had no usage in from its own rows, and recomputes the others from usage; both
    equal a rebuild, across the school year's start in mid-week (Sat 1 Aug 2026) too."""
    folder = tmp_path / "alpha"
    folder.mkdir()
    (folder / "students.csv").write_text("student_id,school_id\ns1,north\ns2,north\ns3,south\n")
    (folder / "usage_1.csv").write_text(HEADER + "s1,ixl,2026-09-07,10\ns2,dreambox,2026-09-08,4\n")
    ingest(engine, tmp_path)
    (folder / "usage_2.csv").write_text(HEADER + "".join((
        "s1,ixl,2026-07-31,3\n", "s1,ixl,2026-08-01,2\n", "s3,ixl,2026-08-02,0\n",  # a week in two school years
        "s1,ixl,2026-09-08,5\n", "s3,ixl,2026-09-09,6\n",  # the week usage_1 has: recomputed
        "s2,ixl,2026-09-14,1\n", "s4,dreambox,2026-09-20,9\n", "s2,ixl,2026-09-15,0\n")))  # a new week
    recomputed, recompute = [], weekly.recompute
    monkeypatch.setattr(weekly, "recompute", lambda conn, district_id, weeks, now=None: (
        recomputed.extend(weeks), recompute(conn, district_id, weeks, now))[1])
    ingest(engine, tmp_path)
    if engine.dialect.name == "postgresql":  # straight into usage: only the week usage_1 had is read again
        assert recomputed == [date(2026, 9, 7)]
    else:  # staged and merged: every week of the file
        assert recomputed == [date(2026, 7, 27), date(2026, 9, 7), date(2026, 9, 14)]
    monkeypatch.undo()
    assert rows(engine) == {
        ("north", "ixl", "2026-07-27"): (1, 5.0), ("south", "ixl", "2026-07-27"): (0, 0.0),
        ("north", "ixl", "2026-09-07"): (1, 15.0), ("north", "dreambox", "2026-09-07"): (1, 4.0),
        ("south", "ixl", "2026-09-07"): (1, 6.0),
        ("north", "ixl", "2026-09-14"): (1, 1.0), ("", "dreambox", "2026-09-14"): (1, 9.0),
    } == rebuilt(engine)
