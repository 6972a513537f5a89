"""A CLIx school-server tree end to end on SQLite and PostgreSQL: the fixture of
tests/clix_fixture.py (its docstring and EXPECTED hold the hand-worked values)."""
from datetime import date, datetime, timezone

import pytest
from sqlalchemy import select

import config
from analytics.school_year import school_year_containing  # noqa: F401  (the as-of's year: 2018-19)
from models import (clix_accounts, dataframe_table, ingested_files, most_used_software, progress, school_heartbeats,
                    school_sync, students, usage)
from runner.cycle import run_cycle
from service import status
from tests.clix_fixture import APPS, EXPECTED, write_tree

AS_OF = date(2018, 9, 30)
NOW = datetime(2018, 9, 30, 20, 0, tzinfo=timezone.utc)
JOBS = ["ingest", "dailypull", "most_used"]


def settings(**clix):
    entry = {"id": "mizoram", "apps": APPS, "source": "clix"}
    if clix:
        entry["clix"] = clix
    return config.parse({"districts": [entry]})


def run(engine, landing, chosen=None, *, force=False):
    chosen = chosen or settings()
    return run_cycle(engine, chosen, districts=list(chosen.districts), jobs=JOBS, as_of=AS_OF, landing_dir=landing,
                     force=force, now=NOW, clock=lambda: NOW)


@pytest.fixture
def tree(tmp_path):
    write_tree(tmp_path / "mizoram")
    return tmp_path


def _usage(engine):
    with engine.connect() as conn:
        return {(r.student_id, r.app, r.date.isoformat()): r.minutes for r in conn.execute(select(usage))}


def test_a_tree_loads_into_the_same_tables_as_our_own_files(engine, tree):
    result = run(engine, tree)
    ingest = result.records[0].result
    assert [r.result.status for r in result.records] == ["succeeded"] * 3
    assert _usage(engine) == EXPECTED["usage"]
    with engine.connect() as conn:
        assert {r.student_id: (r.school_id, r.grade) for r in conn.execute(select(students))} == EXPECTED["students"]
        table = dataframe_table("mizoram", APPS)
        frame = {r.student_id: (r.total_minutes, r.app_understanding_motion, r.app_policequad)
                 for r in conn.execute(select(table))}
        ranked = conn.execute(select(most_used_software.c.student_id, most_used_software.c.rank,
                                     most_used_software.c.app).where(most_used_software.c.student_id == "mz17-ravi")
                              .order_by(most_used_software.c.rank)).all()
        sync = {r.school: r.state for r in conn.execute(select(school_sync))}
        beats = conn.execute(select(school_heartbeats).order_by(school_heartbeats.c.seen_at)).all()
        staff = {r.username: r.staff for r in conn.execute(select(clix_accounts))}
        units = conn.execute(select(progress.c.student_id, progress.c.app, progress.c.lessons_visited,
                                    progress.c.quiz_items_correct, progress.c.exported_at)
                             .where(progress.c.student_id == "mz17-ravi")).all()
        manifest = {r.path.split("/", 1)[1]: r.status for r in conn.execute(select(ingested_files))}
    # basic_astronomy is not configured: kept in usage, listed, no column
    assert frame["mz17-ravi"] == (65.0, 40.0, 25.0) and frame["mz18-asha"] == (10.0, 10.0, 0.0)
    assert frame["mz17-meena"] == (0.0, 0.0, 0.0) and "mz17-administrator" not in frame
    assert [(r.rank, r.app) for r in ranked] == [(1, "understanding_motion"), (2, "policequad")]
    assert sync == EXPECTED["sync"]
    ok = [b for b in beats if b.server_id == "mz17"]
    assert [b.seen_at.replace(tzinfo=None) for b in ok] == [datetime(2018, 9, 14, 4, 30), datetime(2018, 9, 28, 4, 0)]
    assert (ok[0].disk_used_bytes, ok[0].disk_free_bytes, ok[0].uptime_seconds) == (12 * 1024 ** 3, 423 * 1024 ** 3,
                                                                                   183840)
    assert ok[1].disk_used_bytes is None and ok[1].note.startswith("empty file")
    assert staff == {"ravi": 0, "meena": 0, "administrator": 1, "teacher-sp100": 1, "asha": 0, "kiran": 0, "leela": 0}
    assert [(u.app, u.lessons_visited, u.quiz_items_correct) for u in units] == [("understanding_motion", 3, 3)]
    assert units[0].exported_at.replace(tzinfo=None) == datetime(2018, 9, 20, 4, 30)  # 10:00 IST
    # the 2019 backup's copy is one delivery; two schools' identical heartbeats are two
    assert manifest["2019/mz/2031017-mz17/gstudio/activity-timestamp-csvs/mz17-ravi-activity-visits-20180920-10h05m.csv"] \
        == "duplicate"
    assert sum(status == "loaded" for status in manifest.values()) == 15
    assert not any("local_settings" in p or "pg_dump" in p or "/xx/" in p or "school7" in p for p in manifest)
    message = ingest.message
    for counted in ("anonymous events (user 0), not counted 3", "buddy-login events (user 6 in user 5's file), "
                    "not counted 1", "staff or demo account rows, left out 2", "staff or demo account visits, left out 1",
                    "visits over 30 minutes, capped 1", "settings files (*.py, never executed) 2",
                    "state 'xx' is not one of the configured states", "mizoram/2018/mz/school7: a school folder must be",
                    "sync: 1 ok, 1 missed Friday, 1 late, 1 silent"):
        assert counted in message
    assert "basic_astronomy" in result.records[1].result.message


def test_a_rerun_loads_nothing_new_and_force_gives_the_same_tables(engine, tree):
    run(engine, tree)
    before = _usage(engine)
    again = run(engine, tree).records[0].result
    assert again.rows_out == 0 and "16 skipped" in again.message
    assert _usage(engine) == before
    run(engine, tree, force=True)
    assert _usage(engine) == before == EXPECTED["usage"]


def test_the_caps_the_time_zone_and_the_staff_rule_are_settings(engine, tree):
    chosen = settings(visit_cap_minutes=60, session_cap_minutes=10, staff_accounts=["^administrator$"],
                      timezone="UTC")
    run(engine, tree, chosen)
    minutes = _usage(engine)
    assert minutes[("mz17-ravi", "understanding_motion", "2018-09-14")] == 70.0  # 10 + 60
    assert minutes[("mz17-ravi", "policequad", "2018-09-14")] == 10.0
    with engine.connect() as conn:
        names = {r.student_id for r in conn.execute(select(students))}
        seen = conn.execute(select(school_heartbeats.c.seen_at).where(school_heartbeats.c.server_id == "mz18")).scalar()
    assert "mz17-teacher-sp100" in names and "mz17-administrator" not in names
    assert seen.replace(tzinfo=None) == datetime(2018, 9, 7, 10, 0)  # read as UTC


def test_a_later_export_replaces_progress_and_an_older_one_does_not(engine, tree):
    run(engine, tree)
    folder = tree / "mizoram/2018/mz/2031017-mz17/gstudio/gstudio-exported-users-analytics-csvs"
    text = (folder / "2031017-mz17-understanding-motion-20180920-10h00m.csv").read_text()
    (folder / "2031017-mz17-understanding-motion-20180925-10h00m.csv").write_text(
        text.replace(",6,3,50,12,5,", ",6,5,83,12,5,"))  # ravi and meena: 5 lessons now
    (folder / "2031017-mz17-understanding-motion-20180901-10h00m.csv").write_text(
        text.replace(",6,3,50,12,5,", ",6,1,17,12,5,"))  # an older export, synced later
    run(engine, tree)
    with engine.connect() as conn:
        lessons = {r.student_id: r.lessons_visited for r in conn.execute(select(progress))}
    assert lessons["mz17-ravi"] == 5 and lessons["mz17-meena"] == 5 and lessons["mz18-asha"] == 3


def test_status_shows_each_schools_sync_health_and_whom_to_remind(engine, tree):
    run(engine, tree)
    data = status.collect(engine, settings(), today=AS_OF, reminders=True)
    states = {s["school"]: s["state"] for s in data["school_servers"]}
    assert states == EXPECTED["sync"]
    mz19 = next(s for s in data["school_servers"] if s["school"] == "2031019-mz19")
    assert (mz19["second_friday"], mz19["seen_second_friday"], mz19["seen_fourth_friday"]) == ("2018-09-14", 1, 0)
    reminders = data["reminders"]
    assert (reminders["friday"], reminders["days_until"]) == ("2018-10-12", 12)
    assert [(s["school"], s["why"]) for s in reminders["schools"]] == [
        ("2031020-mz20", "nothing received this month"), ("2031018-mz18", "no file for 20 days"),
        ("2031019-mz19", "server not seen on 2018-09-28"), ("2031017-mz17", "on track: a routine reminder")]
    text = status.render(data)
    assert "2031019-mz19  missed Friday" in text and "Remind before Friday 2018-10-12 (in 12 days)" in text
    later = status.collect(engine, settings(), today=date(2018, 10, 20))  # nothing since: every school late or silent
    assert {s["state"] for s in later["school_servers"]} == {"silent"}


def test_a_tool_log_whose_user_no_export_names_is_rejected_with_the_reason(engine, tree):
    folder = tree / "mizoram/2018/mz/2031018-mz18/gstudio/gstudio_tools_logs/Turtle"
    folder.mkdir(parents=True)
    (folder / "99-Turtle.json").write_text('[{"userId": 99, "sessionId": "t", "createdAt": "2018-9-8 10:0:0"}]')
    (folder / "7-Turtle.json").write_text('{"not": "an array"')
    result = run(engine, tree).records[0].result
    from models import rejected_rows
    with engine.connect() as conn:
        reasons = [r.reason for r in conn.execute(select(rejected_rows))]
        failed = {r.path.rsplit("/", 1)[1]: r.error for r in conn.execute(
            select(ingested_files).where(ingested_files.c.status == "failed"))}
    assert reasons == ["user id 99 is in no users-analytics export of this server (yet)"]
    assert failed["7-Turtle.json"].startswith("not valid JSON")
    assert result.status == "completed_with_errors" and _usage(engine) == EXPECTED["usage"]  # the rest loads


def test_a_row_that_is_not_utf8_is_rejected_and_the_rest_of_its_file_loads(engine, tree):
    folder = tree / "mizoram/2018/mz/2031017-mz17/gstudio/activity-timestamp-csvs"
    (folder / "mz17-meena-activity-visits-20180921-10h05m.csv").write_bytes(
        b"Unit,Lesson,Activity,Language,VisitedOn,OutTime,OutAction,TimeSpentInSeconds,Buddies\n"
        b"Motion\xff\xfe,L1,A1,en,2018-09-14 11:00:00,,next,600,\n"
        b"Motion,L1,A1,en,2018-09-14 12:00:00,,next,1\x0020,\n"
        b"Motion,L1,A1,en,2018-09-15 12:00:00,,next,120,\n")
    run(engine, tree)
    from models import rejected_rows
    with engine.connect() as conn:
        rejected = [(r.line, r.reason, r.raw) for r in conn.execute(select(rejected_rows).order_by(rejected_rows.c.line))]
    assert rejected == [(2, "the row has bytes that are not UTF-8", "Motion\ufffd\ufffd,L1,A1,en,2018-09-14 11:00:00,,next,600,"),
                        (3, "the row has a NUL byte", "Motion,L1,A1,en,2018-09-14 12:00:00,,next,1\\x0020,")]
    assert _usage(engine)[("mz17-meena", "motion", "2018-09-15")] == 2.0
