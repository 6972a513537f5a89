"""A small CLIx school-server tree in the documented layout (../shared/formats/CLIX.md), with
every case the reader must handle; the expected rows are worked out by hand in EXPECTED.

    python tests/clix_fixture.py LANDING_DIR/<district>    # writes it (the README's session)

Four schools in Mizoram (mz); times are India local (UTC+05:30); as of 2018-09-30, whose
month's 2nd and 4th Fridays are 14 and 28 September:
  2031017-mz17  heartbeats on both Fridays (the second file empty), files synced 28 Sep -> ok
  2031018-mz18  a heartbeat on 7 Sep only, files synced 10 Sep (20 days)                -> late
  2031019-mz19  a heartbeat on 14 Sep, files synced 25 Sep, nothing on the 28th         -> missed Friday
  2031020-mz20  files and a heartbeat in August only                                   -> silent
mz17 holds: a users-analytics export (two students, an administrator and a -sp100 staff
account), ravi's visits (a 10-minute visit, an idle 6-hour one capped at 30, a 5-minute
visit with a buddy), an administrator's visits (staff: left out), a tool log of ravi's
(a 25-minute session, a buddy-login event of meena's, an anonymous event) and an anonymous
tool log; settings files, an SQL dump and media, which are never read. The 2019 backup
carries ravi's visits file again, byte for byte (a duplicate). A state folder `xx` and a
school folder `school7` are reported, not read.
"""
from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

IST = timezone(timedelta(hours=5, minutes=30))
AS_OF = "2018-09-30"
APPS = ["understanding_motion", "policequad"]

USERS_HEADER = ("server_id,school_name,school_code,module_name,unit_name,username,user_id,first_name,last_name,"
                "roll_no,grade,enrollment_status,buddy_userids,buddy_usernames,total_lessons,lessons_visited,"
                "percentage_lessons_visited,total_activities,activities_visited,percentage_activities_visited,"
                "total_quizitems,visited_quizitems,attempted_quizitems,unattempted_quizitems,"
                "correct_attempted_quizitems,activity_1_visited,activity_2_visited\n")
VISITS_HEADER = "Unit,Lesson,Activity,Language,VisitedOn,OutTime,OutAction,TimeSpentInSeconds,Buddies\n"

HEARTBEAT = """Info-msg : hostname (hostname).
school-server
Info-msg : server id (cat /home/core/server_settings.py).
mz17
Info-msg : free memory (free -h).
              total        used        free      shared  buff/cache   available
Mem:           7.7G        1.2G        5.1G         88M        1.4G        6.1G
Info-msg : disk usage (df -h).
Filesystem      Size  Used Avail Use% Mounted on
udev            3.9G     0  3.9G   0% /dev
/dev/sda1       458G   12G  423G   3% /
Info-msg : uptime (uptime).
 10:00:01 up 2 days,  3:04,  1 user,  load average: 0.00, 0.01, 0.05
"""

EXPECTED = {
    "usage": {  # (student, app, day) -> minutes
        ("mz17-ravi", "understanding_motion", "2018-09-14"): 40.0,  # 10 + an idle 6-hour visit capped at 30
        ("mz17-ravi", "basic_astronomy", "2018-09-14"): 5.0,
        ("mz17-ravi", "policequad", "2018-09-14"): 25.0,  # 14:03 to 14:28
        ("mz18-asha", "understanding_motion", "2018-09-07"): 10.0,
        ("mz19-kiran", "understanding_motion", "2018-09-20"): 12.0,
    },
    "students": {"mz17-ravi": ("2031017", "8"), "mz17-meena": ("2031017", "8"), "mz18-asha": ("2031018", "9"),
                 "mz19-kiran": ("2031019", "9"), "mz20-leela": ("2031020", "7")},
    "sync": {"2031017-mz17": "ok", "2031018-mz18": "late", "2031019-mz19": "missed Friday", "2031020-mz20": "silent"},
}


def _at(day: str, hour: int = 12) -> float:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=IST).timestamp()


def _write(path: Path, text: str, synced: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    os.utime(path, (_at(synced), _at(synced)))
    return path


def _users(code: str, server: str, rows: list[tuple[str, int, str]]) -> str:
    lines = [USERS_HEADER]
    for username, user_id, grade in rows:
        lines.append(f"{server},School {code},{code},[u'Understanding Motion'],Understanding Motion,{username},"
                     f"{user_id},First,Last,1,{grade},active,[],[],6,3,50,12,5,41.7,10,4,4,6,3,1,0\n")
    return "".join(lines)


def write_tree(district: Path) -> Path:
    """Write the tree under `district` (LANDING_DIR/<district id>)."""
    mz = district / "2018" / "mz"
    # -- mz17: ok
    g = mz / "2031017-mz17" / "gstudio"
    synced = "2018-09-28"
    _write(g / "gstudio-exported-users-analytics-csvs" / "2031017-mz17-understanding-motion-20180920-10h00m.csv",
           _users("2031017", "mz17", [("ravi", 5, "8"), ("meena", 6, "8"), ("administrator", 1, ""),
                                       ("teacher-sp100", 2, "")]), synced)
    visits = VISITS_HEADER + (
        "Understanding Motion,L1,A1,en,2018-09-14 11:00:00.000000,2018-09-14 11:10:00.000000,next,600,\n"
        "Understanding Motion,L1,A2,en,2018-09-14 11:10:00.000000,2018-09-14 17:10:00.000000,close,21600,\n"
        "[u'Basic Astronomy'],L2,A1,en,2018-09-14 12:00:00.024000,2018-09-14 12:05:00.024000,next,300,[u'meena']\n")
    _write(g / "activity-timestamp-csvs" / "mz17-ravi-activity-visits-20180920-10h05m.csv", visits, synced)
    _write(g / "activity-timestamp-csvs" / "mz17-administrator-activity-visits-20180920-10h05m.csv",
           VISITS_HEADER + "Understanding Motion,L1,A1,en,2018-09-14 09:00:00,2018-09-14 09:20:00,next,1200,\n", synced)
    events = [
        {"appName": "PoliceQuad", "userId": 5, "sessionId": "s1", "buddyIds": [], "language": "en",
         "createdAt": "2018-9-14 14:3:0",
         "appData": {"data_log": [{"timeStamp": "Fri Sep 14 2018 14:03:00 GMT+0530 (India Standard Time)"},
                                  {"timeStamp": "Fri Sep 14 2018 14:28:00 GMT+0530 (India Standard Time)"}]}},
        {"appName": "PoliceQuad", "userId": 6, "sessionId": "s2", "buddyIds": [5], "createdAt": "2018-9-14 15:0:0",
         "appData": {"data_log": []}},
        {"appName": "PoliceQuad", "userId": 0, "sessionId": "s3", "createdAt": "2018-9-14 15:30:0"},
    ]
    _write(g / "gstudio_tools_logs" / "PoliceQuad" / "5-PoliceQuad.json", json.dumps(events), synced)
    _write(g / "gstudio_tools_logs" / "PoliceQuad" / "0-PoliceQuad.json", json.dumps(
        [{"appName": "PoliceQuad", "userId": 0, "sessionId": "a1", "createdAt": "2018-9-14 9:0:0"},
         {"appName": "PoliceQuad", "userId": 0, "sessionId": "a1", "createdAt": "2018-9-14 9:40:0"}]), synced)
    _write(g / "system-heartbeat" / "system-heartbeat-20180914-100000.log", HEARTBEAT, "2018-09-14")
    _write(g / "system-heartbeat" / "system-heartbeat-20180928-093000.log", "", synced)  # switched off while writing
    _write(g / "local_settings.py", "raise SystemExit('never run me')\n", synced)
    _write(g / "server_settings.py", "GSTUDIO_INSTITUTE_ID = 'mz17'\n", synced)
    _write(g / "git-commit-details.log", "commit 0123abc\n", synced)
    _write(g / "postgres-dump" / "pg_dump_all.sql", "DROP DATABASE gstudio;\n", synced)
    _write(g / "media" / "a" / "b.png", "not an image\n", synced)
    # the 2019 backup carries ravi's visits again, byte for byte
    _write(district / "2019" / "mz" / "2031017-mz17" / "gstudio" / "activity-timestamp-csvs"
           / "mz17-ravi-activity-visits-20180920-10h05m.csv", visits, "2018-09-29")
    # -- mz18: late
    g = mz / "2031018-mz18" / "gstudio"
    _write(g / "gstudio-exported-users-analytics-csvs" / "2031018-mz18-understanding-motion-20180910-09h00m.csv",
           _users("2031018", "mz18", [("asha", 7, "9")]), "2018-09-10")
    _write(g / "activity-timestamp-csvs" / "mz18-asha-activity-visits-20180910-09h10m.csv",
           VISITS_HEADER + "Understanding Motion,L1,A1,en,2018-09-07 10:00:00,2018-09-07 10:10:00,next,600,\n",
           "2018-09-10")
    _write(g / "system-heartbeat" / "system-heartbeat-20180907-100000.log", HEARTBEAT, "2018-09-10")
    # -- mz19: missed the 4th Friday
    g = mz / "2031019-mz19" / "gstudio"
    _write(g / "gstudio-exported-users-analytics-csvs" / "2031019-mz19-understanding-motion-20180925-09h00m.csv",
           _users("2031019", "mz19", [("kiran", 8, "9")]), "2018-09-25")
    _write(g / "activity-timestamp-csvs" / "mz19-kiran-activity-visits-20180925-09h10m.csv",
           VISITS_HEADER + "Understanding Motion,L1,A1,en,2018-09-20 10:00:00,,next,720,\n", "2018-09-25")
    _write(g / "system-heartbeat" / "system-heartbeat-20180914-110000.log", HEARTBEAT, "2018-09-25")
    # -- mz20: silent this month
    g = mz / "2031020-mz20" / "gstudio"
    _write(g / "gstudio-exported-users-analytics-csvs" / "2031020-mz20-understanding-motion-20180820-09h00m.csv",
           _users("2031020", "mz20", [("leela", 9, "7")]), "2018-08-20")
    _write(g / "system-heartbeat" / "system-heartbeat-20180810-100000.log", HEARTBEAT, "2018-08-20")
    # -- reported, not read
    _write(district / "2018" / "xx" / "2031099-xx1" / "gstudio" / "activity-timestamp-csvs" /
           "xx1-zed-activity-visits-20180901-10h00m.csv", VISITS_HEADER, synced)
    _write(mz / "school7" / "gstudio" / "system-heartbeat" / "system-heartbeat-20180914-100000.log", HEARTBEAT, synced)
    return district


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/clix_fixture.py LANDING_DIR/<district id>")
    print(write_tree(Path(sys.argv[1])))
