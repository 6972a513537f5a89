"""The CLIx mapping rules (analytics/clix.py), each worked out by hand."""
from datetime import date, datetime, timedelta, timezone

import pandas as pd
import pytest

from analytics import clix


@pytest.mark.parametrize("name, app", [
    ("Understanding Motion", "understanding_motion"),
    ("[u'Basic Astronomy']", "basic_astronomy"),
    ("PoliceQuad", "policequad"),
    ("Ice-cubes in Lemonade!", "ice_cubes_in_lemonade"),
    ("3D Shapes", "app_3d_shapes"),
    ("Géométrie", "geometrie"),
    ("", None),
])
def test_app_ids_follow_the_rule(name, app):
    assert clix.app_id(name) == app


def test_a_name_without_latin_letters_gets_a_stable_hashed_id():
    first = clix.app_id("गति को समझना")
    assert first == clix.app_id("गति को समझना") and first.startswith("unit_") and len(first) == 13
    assert clix.app_id("x" * 60) == "x" * 41


def test_times_as_the_servers_write_them():
    assert clix.parse_local("2018-06-05 11:59:12.024000") == datetime(2018, 6, 5, 11, 59, 12, 24000)
    assert clix.parse_local("2017-8-16 14:3:31") == datetime(2017, 8, 16, 14, 3, 31)
    assert clix.parse_local("16/08/2017") is None
    stamp = clix.parse_js_date("Wed Aug 16 2017 14:03:31 GMT+0530 (India Standard Time)")
    assert stamp == datetime(2017, 8, 16, 8, 33, 31, tzinfo=timezone.utc)
    assert clix.to_utc(datetime(2018, 9, 14, 10, 0), "Asia/Kolkata") == datetime(2018, 9, 14, 4, 30, tzinfo=timezone.utc)


def _visits(rows):
    frame = pd.DataFrame(rows, columns=["Unit", "VisitedOn", "OutTime", "TimeSpentInSeconds", "Buddies"])
    return frame.assign(line=range(2, 2 + len(frame)), raw="r")


def test_visits_are_capped_summed_per_day_and_counted():
    cells, bad, counts = clix.visits_usage(_visits([
        ("Motion", "2018-09-14 11:00:00", "", "600", ""),  # 10 min
        ("Motion", "2018-09-14 11:10:00", "", "21600", ""),  # 6 hours idle: 30
        ("Motion", "2018-09-15 23:50:00", "2018-09-16 00:10:00", "", "[u'meena']"),  # no seconds: 20 min, the 15th
        ("Motion", "yesterday", "", "60", ""),
    ]), "mz17-ravi", cap_minutes=30)
    rows = {(r.app, r.date): (float(r.minutes), int(r.sessions)) for r in cells.itertuples()}
    assert rows == {("motion", "2018-09-14"): (40.0, 2), ("motion", "2018-09-15"): (20.0, 1)}
    assert bad["line"].tolist() == [5] and "VisitedOn 'yesterday'" in bad["reason"].iloc[0]
    assert counts["visits"] == 3 and counts["visits over 30 minutes, capped"] == 1
    assert counts["visits with buddies (counted for the logged-in user only)"] == 1


def test_a_tool_session_runs_from_its_first_to_its_last_event_and_others_are_counted_not_used():
    events = [
        {"userId": 5, "sessionId": "s1", "createdAt": "2018-9-14 14:3:0",
         "appData": {"data_log": [{"timeStamp": "Fri Sep 14 2018 14:28:00 GMT+0530 (India Standard Time)"}]}},
        {"userId": 5, "sessionId": "s2", "createdAt": "2018-9-14 8:0:0",
         "appData": {"data_log": [{"timeStamp": "Fri Sep 14 2018 11:00:00 GMT+0530 (India Standard Time)"}]}},
        {"userId": 6, "sessionId": "s3", "createdAt": "2018-9-14 15:0:0"},
        {"userId": 0, "sessionId": "s4", "createdAt": "2018-9-14 15:0:0"},
    ]
    cells, bad, counts = clix.tool_usage(events, "5", "mz17-ravi", "PoliceQuad", cap_minutes=120, zone="Asia/Kolkata")
    assert cells[["app", "date", "minutes", "sessions"]].values.tolist() == [["policequad", "2018-09-14", "145", "2"]]
    assert counts["sessions over 120 minutes, capped"] == 1  # 25 + 120 (3 hours capped)
    assert counts["anonymous events (user 0), not counted"] == 1
    assert counts["buddy-login events (user 6 in user 5's file), not counted"] == 1
    _, bad, _ = clix.tool_usage(events[:1], "5", None, "PoliceQuad", cap_minutes=120, zone="Asia/Kolkata")
    assert bad["reason"].tolist() == ["user id 5 is in no users-analytics export of this server (yet)"]


def test_users_analytics_rows_leave_staff_out_and_keep_their_ids():
    raw = pd.DataFrame([
        {"username": "ravi", "user_id": "5", "grade": "8", "unit_name": "Understanding Motion",
         "module_name": "[u'Motion']", "total_lessons": "6", "lessons_visited": "3", "total_activities": "12",
         "activities_visited": "5", "attempted_quizitems": "4", "correct_attempted_quizitems": "3", "buddy_userids": "[]"},
        {"username": "teacher-sp100", "user_id": "2", "grade": "", "unit_name": "Understanding Motion"},
        {"username": "administrator", "user_id": "1", "grade": "", "unit_name": "Understanding Motion"},
    ]).fillna("").assign(line=[2, 3, 4], raw="r")
    at = datetime(2018, 9, 20, 4, 30, tzinfo=timezone.utc)
    students, progress, accounts, bad, counts = clix.users_rows(
        raw, server_id="mz17", school_id="2031017", exported_at=at, unit_slug="understanding-motion",
        staff_rules=("^administrator$", "-sp100$"))
    assert students[["student_id", "school_id", "grade"]].values.tolist() == [["mz17-ravi", "2031017", "8"]]
    assert progress.iloc[0][["unit", "app", "module", "lessons_visited", "quiz_items_correct"]].tolist() == \
        ["Understanding Motion", "understanding_motion", "Motion", 3, 3]
    assert sorted(accounts[["user_id", "staff"]].values.tolist()) == [["1", 1], ["2", 1], ["5", 0]]
    assert counts["staff or demo account rows, left out"] == 2 and bad.empty


def test_a_heartbeat_gives_disk_and_uptime_and_an_empty_one_a_note():
    text = ("Info-msg : disk usage (df -h).\nFilesystem Size Used Avail Use% Mounted on\n"
            "/dev/sda1 458G 12G 423G 3% /\nInfo-msg : uptime (uptime).\n 10:00:01 up 2 days,  3:04,  1 user\n")
    assert clix.heartbeat(text) == {"disk_used_bytes": 12 * 1024 ** 3, "disk_free_bytes": 423 * 1024 ** 3,
                                    "uptime_seconds": 2 * 86400 + 3 * 3600 + 4 * 60, "note": None}
    assert clix.heartbeat("")["note"].startswith("empty file")
    cut = clix.heartbeat("Info-msg : hostname (hostname).\nschool\n Up 5 min\n")
    assert cut["uptime_seconds"] == 300 and "no df output" in cut["note"]


def test_the_second_and_fourth_fridays():
    assert clix.sync_fridays(2018, 9) == (date(2018, 9, 14), date(2018, 9, 28))  # 1 Sep 2018: a Saturday
    assert clix.sync_fridays(2026, 5) == (date(2026, 5, 8), date(2026, 5, 22))  # 1 May 2026: a Friday
    assert clix.next_sync_friday(date(2018, 9, 29)) == date(2018, 10, 12)
    assert clix.next_sync_friday(date(2018, 9, 28)) == date(2018, 9, 28)


def test_sync_states_by_hand():
    ist = timezone(timedelta(hours=5, minutes=30))
    at = lambda d, h=12: datetime(2018, 9, d, h, tzinfo=ist).astimezone(timezone.utc)  # noqa: E731
    schools = pd.DataFrame([(f"1-s{i}", "1", f"s{i}", "mz") for i in range(1, 5)],
                           columns=["school", "school_id", "server_id", "state_code"])
    files = pd.DataFrame([("1-s1", "clix_visits", at(28), 40 * 1024 ** 2), ("1-s2", "clix_users", at(10), 10),
                          ("1-s3", "clix_visits", at(25), 10), ("1-s4", "clix_users", datetime(2018, 8, 20, tzinfo=timezone.utc), 10)],
                         columns=["school", "source", "arrived_at", "bytes"])
    beats = pd.DataFrame([("s1", at(14)), ("s1", at(28, 9)), ("s2", at(7)), ("s3", at(14)), ("s3", at(13)),
                          ("s1", at(30, 20))],  # after the end of as_of? no: 30 Sep 20:00 IST is within as_of
                         columns=["server_id", "seen_at"])
    out = clix.school_sync(schools, files, beats, as_of=date(2018, 9, 30), zone="Asia/Kolkata",
                           stale_after_days=14).set_index("school")
    assert out["state"].to_dict() == {"1-s1": "ok", "1-s2": "late", "1-s3": "missed Friday", "1-s4": "silent"}
    assert out.loc["1-s1", ["server_on_days", "days_since_sync", "volume"]].tolist() == [3, 2, "within"]
    assert out.loc["1-s3", ["seen_second_friday", "seen_fourth_friday", "server_on_days"]].tolist() == [1, 0, 2]
    early = clix.school_sync(schools, files, beats, as_of=date(2018, 9, 20), zone="Asia/Kolkata", stale_after_days=14)
    assert early.set_index("school").loc["1-s3", "seen_fourth_friday"] is None  # still to come
