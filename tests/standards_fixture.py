"""A landing folder in the ecosystem's formats, written from the specifications (xAPI 1.0.3,
Caliper 1.2, OneRoster 1.1), with the expected rows worked out by hand in EXPECTED.

    python tests/standards_fixture.py LANDING_DIR/<district>    # writes it (the README's session)

District riverside, apps dreambox, lexia, ixl; standards: timezone America/Chicago (CST,
UTC-6, after 1 November 2026), actor rules [account.name, mbox_local], apps table
{"Lexia Core5": lexia}; session gap 30 and cap 120 minutes (the defaults). Files, in the
order they arrive:

  sis/oneroster-2026-11-01.zip         bulk: 5 students, a teacher (left out), line items, results
  lms/xapi-2026-11-02.json             an array of 15 statements (6 rejected, see below)
  lms/xapi-2026-11-03.jsonl.gz         a voiding statement, a late statement that joins a
                                       session of the first file, a repeat, a broken line
  lms/caliper-2026-11-04.json          two envelopes: a session, a grade, a media event
  sis/oneroster-delta-2026-11-10/      a folder bundle, delta: s7 tobedeleted, s2 moves to
                                       sch-a in grade 06, a result deleted, one added

Usage by hand (times UTC; local day = UTC - 6 h):
  s1 dreambox 2 Nov: 15:00, 15:10, 15:25 (file 1) and 15:40 (file 2) -> one session, 40 min;
                     16:30 alone -> a session of one statement, 0 min: 40 min, 2 sessions
  s1 lexia 2 Nov:    PT2M stated at 18:00 -> 2 min (its score scaled 1.2 is rejected, its use kept)
  s1 ixl 2 Nov:      PT10M at 17:00 -> 10 min after file 1, voided by file 2 -> no row
  s2 lexia 2 Nov:    PT4M30S stated at 14:04:30 (14:00-14:04:30); an `attempted` at 14:02 lies inside
                     it and is not counted again -> 4.5 min
  s2 ixl 2 Nov:      PT1H stated at 2026-11-02T20:00-06:00 (02:00 UTC on 3 Nov): began 19:00 local
                     on 2 Nov -> 60 min on 2 Nov
  s1 dreambox 3 Nov: P0DT0H20M at 15:20 -> 20 min
  s5 dreambox 4 Nov: LoggedIn 15:00, NavigatedTo 15:12, Viewed 15:20, LoggedOut 15:30, and the
                     second envelope's NavigatedTo 15:45 -> 45 min (the GradeEvent is the grader's)
  s6 lexia 4 Nov:    one ViewEvent (edApp "Lexia Core5", student from otherIdentifiers) -> 0 min
"""
from __future__ import annotations

import gzip
import io
import json
import os
import sys
import zipfile
from datetime import datetime, timezone
from pathlib import Path

APPS = ["dreambox", "lexia", "ixl"]
AS_OF = "2026-11-20"
STANDARDS = {"timezone": "America/Chicago", "actor": ["account.name", "mbox_local"], "apps": {"Lexia Core5": "lexia"}}
ADL = "http://adlnet.gov/expapi/verbs/"
HOME = "https://lms.riverside.example.org"
FRACTIONS = "https://www.dreambox.com/lessons/fractions-1"
UNIT3 = "https://www.lexialearning.com/core5/unit-3"
QUIZ = "https://www.dreambox.com/assessments/unit-4-quiz"
VOIDED_ID = "6a0c2a4e-0000-4000-8000-000000000010"


def _account(name):
    return {"objectType": "Agent", "account": {"homePage": HOME, "name": name}}


def _statement(number, actor, verb, activity, timestamp, *, platform=None, result=None, object_type=None):
    statement = {"id": f"6a0c2a4e-0000-4000-8000-{number:012d}", "actor": actor,
                 "verb": {"id": ADL + verb, "display": {"en-US": verb}},
                 "object": {"objectType": object_type or "Activity", "id": activity}, "timestamp": timestamp}
    if platform:
        statement["context"] = {"platform": platform}
    if result:
        statement["result"] = result
    return statement


def _first_file() -> list[dict]:
    s1, s2 = _account("s1"), {"objectType": "Agent", "mbox": "mailto:S2@riverside.example.org"}
    return [
        _statement(1, s1, "experienced", FRACTIONS, "2026-11-02T15:00:00Z"),
        _statement(2, s1, "progressed", FRACTIONS, "2026-11-02T15:10:00.000Z"),
        _statement(3, s1, "completed", FRACTIONS, "2026-11-02T15:25:00Z", result={"score": {"scaled": 0.85}}),
        _statement(4, s1, "experienced", FRACTIONS, "2026-11-02T16:30:00Z"),
        _statement(5, s2, "completed", UNIT3, "2026-11-02T14:04:30Z", platform="Lexia Core5",
                   result={"duration": "PT4M30S", "score": {"raw": 18, "min": 0, "max": 20}}),
        _statement(6, s2, "attempted", UNIT3, "2026-11-02T14:02:00Z", platform="Lexia Core5"),
        _statement(7, s2, "experienced", "https://www.ixl.com/math/grade-5/fractions", "2026-11-02T20:00:00-06:00",
                   result={"duration": "PT1H"}),
        _statement(8, {"objectType": "Agent", "mbox_sha1sum": "ebd31e95054c018b10727ccffd2ef2ec3a016ee9"},
                   "experienced", FRACTIONS, "2026-11-02T15:00:00Z"),
        _statement(9, {"objectType": "Agent", "openid": "https://openid.example.org/s4"},
                   "experienced", FRACTIONS, "2026-11-02T15:00:00Z"),
        _statement(10, s1, "experienced", "https://www.ixl.com/math/a", "2026-11-02T17:00:00Z",
                   result={"duration": "PT10M"}),
        _statement(11, s1, "experienced", "urn:uuid:7d1e0b5c-2f7a-4c1e-9a53-0c4a1b2d3e4f", "2026-11-02T15:00:00Z"),
        _statement(12, {"objectType": "Group", "member": [_account("s1"), _account("s2")]},
                   "experienced", FRACTIONS, "2026-11-02T15:00:00Z"),
        _statement(13, s1, "experienced", FRACTIONS, "2026-11-02T15:05:00Z", result={"duration": "PT"}),
        _statement(14, s1, "commented", "6a0c2a4e-0000-4000-8000-000000000003", "2026-11-02T15:30:00Z",
                   object_type="StatementRef"),
        _statement(15, s1, "passed", "https://www.lexialearning.com/core5/unit-4", "2026-11-02T18:00:00Z",
                   platform="Lexia Core5", result={"duration": "PT2M", "score": {"scaled": 1.2}}),
    ]


def _second_file() -> list[str]:
    s1 = _account("s1")
    void = {"id": "6a0c2a4e-0000-4000-8000-000000000016", "actor": {"mbox": "mailto:lrs-admin@riverside.example.org"},
            "verb": {"id": ADL + "voided", "display": {"en-US": "voided"}},
            "object": {"objectType": "StatementRef", "id": VOIDED_ID}, "timestamp": "2026-11-03T09:00:00Z"}
    lines = [json.dumps(void),
             json.dumps(_statement(17, s1, "experienced", FRACTIONS, "2026-11-02T15:40:00Z")),
             json.dumps(_statement(18, s1, "completed", "https://www.dreambox.com/lessons/fractions-2",
                                   "2026-11-03T15:20:00Z", result={"duration": "P0DT0H20M"})),
             json.dumps(_first_file()[0]),  # statement 1 again: replaced, counted once
             '{"id": "broken", "actor": ']
    return lines


def _caliper() -> list[dict]:
    context = "http://purl.imsglobal.org/ctx/caliper/v1p2"
    dreambox = {"id": "https://www.dreambox.com", "type": "SoftwareApplication"}
    s5 = {"id": "https://riverside.example.edu/users/s5", "type": "Person"}

    def event(number, kind, action, when, actor=s5, **more):
        return {"@context": context, "id": f"urn:uuid:c0ffee00-0000-4000-8000-{number:012d}", "type": kind,
                "actor": actor, "action": action, "object": {"id": "https://www.dreambox.com/lessons/place-value",
                                                             "type": "DigitalResource"},
                "eventTime": when, "edApp": dreambox, **more}

    grade = event(5, "GradeEvent", "Graded", "2026-11-04T15:31:00.000Z", actor=dreambox,
                  object={"id": "https://www.dreambox.com/attempts/9", "type": "Attempt", "assignee": s5,
                          "assignable": {"id": QUIZ, "type": "Assessment"}},
                  generated={"id": "https://www.dreambox.com/scores/9", "type": "Score", "scoreGiven": 17,
                             "maxScore": 20})
    s6 = {"id": "https://riverside.example.edu/users/uuid-9f2c", "type": "Person",
          "otherIdentifiers": [{"type": "SystemIdentifier", "identifierType": "SisSourcedId", "identifier": "s6"}]}
    first = {"sensor": "https://www.dreambox.com/sensors/1", "sendTime": "2026-11-04T16:05:00.000Z",
             "dataVersion": context, "data": [
                 event(1, "SessionEvent", "LoggedIn", "2026-11-04T15:00:00.000Z"),
                 event(2, "NavigationEvent", "NavigatedTo", "2026-11-04T15:12:00.000Z"),
                 event(3, "ViewEvent", "Viewed", "2026-11-04T15:20:00.000Z"),
                 event(4, "SessionEvent", "LoggedOut", "2026-11-04T15:30:00.000Z"),
                 grade,
                 event(6, "MediaEvent", "Started", "2026-11-04T15:21:00.000Z"),
                 event(7, "ViewEvent", "Viewed", "2026-11-04T16:00:00.000Z", actor=s6,
                       edApp={"id": "https://core5.example.net", "type": "SoftwareApplication", "name": "Lexia Core5"}),
             ]}
    second = {"sensor": "https://www.dreambox.com/sensors/1", "sendTime": "2026-11-04T16:10:00.000Z",
              "dataVersion": context, "data": [event(8, "NavigationEvent", "NavigatedTo", "2026-11-04T15:45:00.000Z")]}
    return [first, second]


def _csv(rows: list[list[str]]) -> str:
    import csv

    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


USERS_HEADER = ["sourcedId", "status", "dateLastModified", "enabledUser", "orgSourcedIds", "role", "username",
                "userIds", "givenName", "familyName", "middleName", "identifier", "email", "sms", "phone",
                "agentSourcedIds", "grades", "password"]
RESULTS_HEADER = ["sourcedId", "status", "dateLastModified", "lineItemSourcedId", "studentSourcedId", "scoreStatus",
                  "score", "scoreDate", "comment"]


def _user(sourced_id, orgs, role, grades, status=""):
    return [sourced_id, status, "2026-10-30T00:00:00Z" if status else "", "true", orgs, role, sourced_id, "",
            sourced_id.upper(), "Student", "", f"id-{sourced_id}", f"{sourced_id}@riverside.example.org", "", "", "",
            grades, ""]


def _result(sourced_id, item, student, status, score, day, row_status=""):
    return [sourced_id, row_status, "2026-11-09T00:00:00Z" if row_status else "", item, student, status, score, day, ""]


def _manifest(files: dict[str, str]) -> str:
    rows = [["propertyName", "value"], ["manifest.version", "1.0"], ["oneroster.version", "1.1"]]
    for name in ("academicSessions", "categories", "classes", "classResources", "courses", "courseResources",
                 "demographics", "enrollments", "lineItems", "orgs", "resources", "results", "users"):
        rows.append([f"file.{name}", files.get(name, "absent")])
    rows += [["source.systemName", "Riverside SIS"], ["source.systemCode", "rsis"]]
    return _csv(rows)


def _bulk() -> dict[str, str]:
    return {
        "manifest.csv": _manifest({"users": "bulk", "orgs": "bulk", "lineItems": "bulk", "results": "bulk",
                                   "classes": "bulk"}),
        "orgs.csv": _csv([["sourcedId", "status", "dateLastModified", "name", "type", "identifier", "parentSourcedId"],
                          ["d1", "", "", "Riverside Unified", "district", "RU", ""],
                          ["sch-a", "", "", "Adams Elementary", "school", "A", "d1"],
                          ["sch-b", "", "", "Brook Elementary", "school", "B", "d1"]]),
        "users.csv": _csv([USERS_HEADER,
                           _user("s1", "d1,sch-a", "student", "05"),
                           _user("s2", "sch-b", "student", "05,06"),
                           _user("s5", "sch-a", "student", "04"),
                           _user("s7", "sch-b", "student", "03"),
                           _user("s8", "sch-a", "student", "02"),
                           _user("t1", "sch-a", "teacher", "")]),
        "classes.csv": _csv([["sourcedId", "status", "dateLastModified", "title", "grades", "courseSourcedId",
                              "classCode", "classType", "location", "schoolSourcedId", "termSourcedIds", "subjects",
                              "subjectCodes", "periods"],
                             ["c1", "", "", "Math 5", "05", "co1", "M5", "scheduled", "", "sch-a", "t1", "", "", ""]]),
        "lineItems.csv": _csv([["sourcedId", "status", "dateLastModified", "title", "description", "assignDate",
                                "dueDate", "classSourcedId", "categorySourcedId", "gradingPeriodSourcedId",
                                "resultValueMin", "resultValueMax"],
                               ["li-1", "", "", "Unit 3 test", "", "2026-10-13", "2026-10-20", "c1", "cat1", "t1",
                                "0", "20"],
                               ["li-2", "", "", "Reading check", "", "2026-10-14", "2026-10-21", "c1", "cat1", "t1",
                                "", ""]]),
        "results.csv": _csv([RESULTS_HEADER,
                             _result("r1", "li-1", "s1", "fully graded", "17", "2026-10-20"),
                             _result("r2", "li-1", "s2", "fully graded", "15", "2026-10-20"),
                             _result("r3", "li-1", "s5", "not submitted", "", "2026-10-20"),
                             _result("r4", "li-2", "s1", "fully graded", "92", "2026-10-21"),
                             _result("r5", "li-1", "s9", "fully graded", "12", "2026-10-20"),
                             _result("r6", "li-1", "s7", "fully graded", "25", "2026-10-20")]),
    }


def _delta() -> dict[str, str]:
    return {
        "manifest.csv": _manifest({"users": "delta", "results": "delta"}),
        "users.csv": _csv([USERS_HEADER, _user("s7", "sch-b", "student", "03", status="tobedeleted"),
                           _user("s2", "sch-a", "student", "06", status="active")]),
        "results.csv": _csv([RESULTS_HEADER,
                             _result("r2", "li-1", "s2", "fully graded", "15", "2026-10-20", row_status="tobedeleted"),
                             _result("r7", "li-2", "s2", "fully graded", "80", "2026-11-09", row_status="active")]),
    }


def _stamp(path: Path, when: str) -> None:
    moment = datetime.fromisoformat(when).replace(tzinfo=timezone.utc).timestamp()
    for item in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(item, (moment, moment))


def write(root: Path) -> Path:
    """Write the folder under `root` (the district's landing folder); return it."""
    root = Path(root)
    (root / "sis").mkdir(parents=True, exist_ok=True)
    (root / "lms").mkdir(parents=True, exist_ok=True)
    bundle = root / "sis/oneroster-2026-11-01.zip"
    with zipfile.ZipFile(bundle, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in _bulk().items():
            archive.writestr(name, text)
    _stamp(bundle, "2026-11-01T06:00:00")
    first = root / "lms/xapi-2026-11-02.json"
    first.write_text(json.dumps(_first_file(), indent=2) + "\n")
    _stamp(first, "2026-11-03T06:00:00")
    second = root / "lms/xapi-2026-11-03.jsonl.gz"
    second.write_bytes(gzip.compress(("\n".join(_second_file()) + "\n").encode()))
    _stamp(second, "2026-11-04T06:00:00")
    caliper = root / "lms/caliper-2026-11-04.json"
    caliper.write_text(json.dumps(_caliper(), indent=1) + "\n")
    _stamp(caliper, "2026-11-05T06:00:00")
    delta = root / "sis/oneroster-delta-2026-11-10"
    delta.mkdir(exist_ok=True)
    for name, text in _delta().items():
        (delta / name).write_text(text)
    _stamp(delta, "2026-11-10T06:00:00")
    return root


EXPECTED = {
    "usage": {  # (student, app, day) -> (minutes, sessions), after every file
        ("s1", "dreambox", "2026-11-02"): (40.0, 2),
        ("s1", "lexia", "2026-11-02"): (2.0, 1),
        ("s2", "lexia", "2026-11-02"): (4.5, 1),
        ("s2", "ixl", "2026-11-02"): (60.0, 1),
        ("s1", "dreambox", "2026-11-03"): (20.0, 1),
        ("s5", "dreambox", "2026-11-04"): (45.0, 1),
        ("s6", "lexia", "2026-11-04"): (0.0, 1),
    },
    "usage_after_first_file": {
        ("s1", "dreambox", "2026-11-02"): (25.0, 2),
        ("s1", "lexia", "2026-11-02"): (2.0, 1),
        ("s1", "ixl", "2026-11-02"): (10.0, 1),
        ("s2", "lexia", "2026-11-02"): (4.5, 1),
        ("s2", "ixl", "2026-11-02"): (60.0, 1),
    },
    "assessments": {  # (student, assessment) -> (day, score)
        ("s1", FRACTIONS): ("2026-11-02", 85.0),  # scaled 0.85
        ("s2", UNIT3): ("2026-11-02", 90.0),  # raw 18 of 0..20
        ("s5", QUIZ): ("2026-11-04", 85.0),  # Caliper scoreGiven 17 of maxScore 20
        ("s1", "li-1"): ("2026-10-20", 85.0),  # OneRoster 17 of resultValueMax 20
        ("s1", "li-2"): ("2026-10-21", 92.0),  # no resultValueMax: as given
        ("s2", "li-2"): ("2026-11-09", 80.0),  # the delta's; its li-1 result was deleted
    },
    "students": {  # student -> (school, grade); s7 deleted by the delta, t1 a teacher
        "s1": ("sch-a", "05"), "s2": ("sch-a", "06"), "s5": ("sch-a", "04"), "s8": ("sch-a", "02"),
    },
    "weekly": {  # (school, app, Monday) -> (students with minutes, minutes)
        ("sch-a", "dreambox", "2026-11-02"): (2, 105.0),
        ("sch-a", "lexia", "2026-11-02"): (2, 6.5),
        ("sch-a", "ixl", "2026-11-02"): (1, 60.0),
        ("", "lexia", "2026-11-02"): (0, 0.0),
    },
    "rejected": {  # file name -> lines rejected
        "xapi-2026-11-02.json": 6, "xapi-2026-11-03.jsonl.gz": 1, "caliper-2026-11-04.json": 0,
        "oneroster-2026-11-01.zip": 2, "oneroster-delta-2026-11-10": 0,
    },
}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/standards_fixture.py LANDING_DIR/<district>")
    print(write(Path(sys.argv[1])))
