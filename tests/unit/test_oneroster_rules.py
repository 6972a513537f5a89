"""The OneRoster mapping rules (analytics/oneroster.py), each worked out by hand from the
OneRoster 1.1 CSV tables and the 1.2 CSV binding."""
import csv
import textwrap

import numpy as np
import pandas as pd
import pytest

from analytics import oneroster
from analytics.landing_rows import KINDS, validate


def table(text: str, *, dtype=object) -> pd.DataFrame:
    """A CSV as the reader hands it over: text cells named by the header, plus line and raw."""
    lines = textwrap.dedent(text).strip().splitlines()
    header = [name.strip() for name in next(csv.reader([lines[0]]))]
    rows = [next(csv.reader([line])) for line in lines[1:]]
    frame = pd.DataFrame(rows, columns=header, dtype=dtype)
    return frame.assign(line=range(2, 2 + len(rows)), raw=lines[1:])


def bad_rows(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame({"line": pd.Series([r[0] for r in rows], dtype="Int64"),
                         "reason": pd.Series([r[1] for r in rows], dtype=object),
                         "raw": pd.Series([r[2] for r in rows], dtype=object)})


def text_frame(columns: list[str], rows: list[list]) -> pd.DataFrame:
    """Expected output: text cells as object (None when missing), line as int."""
    frame = pd.DataFrame(rows, columns=columns, dtype=object)
    numbers = {"line": "int64", "result_min": "float64", "result_max": "float64"}
    return frame.astype({c: numbers[c] for c in columns if c in numbers})


# --- manifest.csv ---------------------------------------------------------------------------

MANIFEST = [("manifest.version", "1.0"), ("oneroster.version", "1.1"), ("file.academicSessions", "bulk"),
            ("file.categories", "absent"), ("file.classes", "bulk"), ("file.courses", "bulk"),
            ("file.enrollments", "bulk"), ("file.lineItems", "Delta"), ("file.orgs", "bulk"),
            ("file.results", "delta"), ("file.users", "bulk"), ("source.systemName", "Springfield SIS"),
            ("source.systemCode", "")]


def test_a_manifest_gives_the_version_and_each_files_mode():
    manifest = oneroster.parse_manifest(MANIFEST)
    assert manifest.version == "1.1"
    assert manifest.files == {"academicSessions": "bulk", "categories": "absent", "classes": "bulk", "courses": "bulk",
                              "enrollments": "bulk", "lineItems": "delta", "orgs": "bulk", "results": "delta",
                              "users": "bulk"}


@pytest.mark.parametrize("rows, message", [
    ([("oneroster.version", "2.0")], "oneroster.version must be 1.0, 1.1 or 1.2; got '2.0'"),
    ([("manifest.version", "1.0")], "oneroster.version is missing"),
    ([("oneroster.version", "1.2"), ("file.users", "full")], "file.users must be bulk, delta or absent; got 'full'"),
    ([("oneroster.version", "1.1"), ("oneroster.version", "1.2")], "oneroster.version is listed twice"),
])
def test_a_bad_manifest_is_a_clear_error(rows, message):
    with pytest.raises(ValueError, match="^manifest.csv: .*" + message.replace("(", r"\(").replace(".", r"\.")):
        oneroster.parse_manifest(rows)


def test_every_manifest_problem_is_reported_together():
    with pytest.raises(ValueError) as error:
        oneroster.parse_manifest([("oneroster.version", "1.3"), ("file.users", "full"), ("file.results", "")])
    assert str(error.value) == ("manifest.csv: oneroster.version must be 1.0, 1.1 or 1.2; got '1.3'; "
                                "file.users must be bulk, delta or absent; got 'full'; "
                                "file.results must be bulk, delta or absent; got ''")


# --- users.csv 1.1 -------------------------------------------------------------------------

USERS_11 = """\
sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,userIds,givenName,familyName,middleName,identifier,email,sms,phone,agentSourcedIds,grades,password
u1,active,2026-09-01T00:00:00Z,true,"district1, school1",student,ravi.k,,Ravi,Kumar,,S-1001,,,,,"05,06",
t1,active,2026-09-01T00:00:00Z,true,school1,teacher,ms.lee,,Ann,Lee,,T-01,,,,,,
u2,tobedeleted,2026-09-01T00:00:00Z,true,school1,student,meena,,Meena,Das,,S-1002,,,,,05,
u3,,2026-09-01T00:00:00Z,false,school2,Student,anil,,Anil,Rao,,S-1003,,,,,,
"""
ORGS = """\
sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId
district1,active,2026-08-01T00:00:00Z,Springfield District,district,,
school1,active,2026-08-01T00:00:00Z,Lincoln Elementary,school,,district1
school2,active,2026-08-01T00:00:00Z,Adams Middle,school,,district1
"""


@pytest.mark.parametrize("dtype", [object, None], ids=["object cells", "pandas default text"])
def test_users_11_students_teachers_and_deleted_students(dtype):
    users, orgs = table(USERS_11, dtype=dtype), table(ORGS, dtype=dtype)
    before = users.copy(deep=True), orgs.copy(deep=True)
    students, deleted, user_map, bad, counts = oneroster.students_rows(users, roles=None, orgs=orgs, version="1.1",
                                                                        id_rule="sourcedId")
    raw = USERS_11.splitlines()
    pd.testing.assert_frame_equal(students, text_frame(oneroster.STUDENT_COLUMNS, [
        ["u1", "school1", "05", 2, raw[1]],  # district1 is listed first, school1 is the school
        ["u3", "school2", None, 5, raw[4]],
    ]))
    pd.testing.assert_frame_equal(deleted, text_frame(["student_id", "sourced_id", "line"], [["u2", "u2", 4]]))
    pd.testing.assert_frame_equal(user_map, text_frame(["sourced_id", "student_id"],
                                                       [["u1", "u1"], ["u2", "u2"], ["u3", "u3"]]))
    pd.testing.assert_frame_equal(bad, bad_rows([]))
    assert counts == {"users who are not students (teacher), left out": 1,
                      "students with enabledUser false, loaded": 1}
    pd.testing.assert_frame_equal(users, before[0])
    pd.testing.assert_frame_equal(orgs, before[1])


def test_the_student_id_follows_the_rule_and_the_map_keeps_the_sourced_id():
    students, deleted, user_map, _, _ = oneroster.students_rows(table(USERS_11), roles=None, orgs=table(ORGS),
                                                                version="1.1", id_rule="identifier")
    assert students["student_id"].tolist() == ["S-1001", "S-1003"]
    assert deleted.values.tolist() == [["S-1002", "u2", 4]]
    assert user_map.values.tolist() == [["u1", "S-1001"], ["u2", "S-1002"], ["u3", "S-1003"]]
    students, *_ = oneroster.students_rows(table(USERS_11), roles=None, orgs=None, version="1.1", id_rule="username")
    assert students["student_id"].tolist() == ["ravi.k", "anil"]


def test_without_an_orgs_school_the_first_org_listed_is_the_school():
    students, *_, counts = oneroster.students_rows(table(USERS_11), roles=None, orgs=None, version="1.1",
                                                   id_rule="sourcedId")
    assert students["school_id"].tolist() == ["district1", "school2"]
    assert "schools taken as the first orgSourcedId (no orgs.csv school)" not in counts
    only_district = table(ORGS).iloc[[0]]
    students, *_, counts = oneroster.students_rows(table(USERS_11), roles=None, orgs=only_district, version="1.1",
                                                   id_rule="sourcedId")
    assert students["school_id"].tolist() == ["district1", "school2"]
    assert counts["schools taken as the first orgSourcedId (no orgs.csv school)"] == 2


def test_bad_users_are_named_and_repeats_keep_the_last_row():
    users = table("""\
        sourcedId,status,enabledUser,orgSourcedIds,role,username,identifier,grades
        u1,active,true,school1,student,ravi.k,,05
        u4,active,true,,student,x,S-4,kindergarten-transitional
        u5,active,true,school1,student,y,S-5,05
        u5,active,true,school2,student,y,S-5,06
        ,active,true,school1,student,z,S-6,05
        """)
    students, _, user_map, bad, counts = oneroster.students_rows(users, roles=None, orgs=table(ORGS), version="1.1",
                                                                 id_rule="identifier")
    raw = users["raw"].tolist()
    pd.testing.assert_frame_equal(bad, bad_rows([
        (2, "the user's identifier is empty", raw[0]),
        (3, "the first of the user's grades 'kindergarten-transitional' is longer than 16 characters", raw[1]),
        (6, "the user's sourcedId is empty", raw[4]),
    ]))
    assert students.values.tolist() == [["S-5", "school2", "06", 5, raw[3]]]
    assert user_map.values.tolist() == [["u5", "S-5"]]
    assert counts == {"users listed twice, the last row kept": 1}


def test_a_student_without_orgs_has_no_school_and_is_counted():
    users = table("""\
        sourcedId,status,enabledUser,orgSourcedIds,role,username,identifier,grades
        u1,active,true,,student,ravi.k,S-1,
        """)
    students, *_, counts = oneroster.students_rows(users, roles=None, orgs=None, version="1.0", id_rule="sourcedId")
    assert students[["student_id", "school_id", "grade"]].values.tolist() == [["u1", None, None]]
    assert counts == {"students without a school": 1}


# --- users.csv and roles.csv 1.2 ---------------------------------------------------------------

USERS_12 = """\
sourcedId,status,dateLastModified,enabledUser,username,userIds,givenName,familyName,middleName,identifier,email,sms,phone,agentSourcedIds,grades,password,userMasterIdentifier,resourceSourcedIds,preferredGivenName,preferredMiddleName,preferredFamilyName,primaryOrgSourcedId,pronouns
s1,active,2026-09-01T00:00:00Z,true,ravi.k,,Ravi,Kumar,,S-1001,,,,,07,,,,,,,school1,
s2,active,2026-09-01T00:00:00Z,true,meena,,Meena,Das,,S-1002,,,,,08,,,,,,,,
t1,active,2026-09-01T00:00:00Z,true,ms.lee,,Ann,Lee,,T-01,,,,,,,,,,,,school1,
s3,active,2026-09-01T00:00:00Z,true,anil,,Anil,Rao,,S-1003,,,,,06,,,,,,,school2,
s4,tobedeleted,2026-09-01T00:00:00Z,true,gita,,Gita,Sen,,S-1004,,,,,06,,,,,,,,
x1,active,2026-09-01T00:00:00Z,true,guest,,Guest,User,,,,,,,,,,,,,,,
"""
ROLES_12 = """\
sourcedId,status,dateLastModified,userSourcedId,roleType,role,beginDate,endDate,orgSourcedId,userProfileSourcedId
r1,active,2026-09-01T00:00:00Z,s1,primary,student,2026-08-01,,school1,
r2,active,2026-09-01T00:00:00Z,s2,secondary,student,2026-08-01,,school9,
r3,active,2026-09-01T00:00:00Z,s2,primary,student,2026-08-01,,school2,
r4,active,2026-09-01T00:00:00Z,t1,primary,teacher,2026-08-01,,school1,
r5,tobedeleted,2026-09-01T00:00:00Z,s3,primary,student,2026-08-01,,school2,
r6,tobedeleted,2026-09-01T00:00:00Z,s4,primary,student,2026-08-01,,school2,
"""


def test_users_12_are_students_by_their_roles():
    users, roles = table(USERS_12), table(ROLES_12)
    before = users.copy(deep=True), roles.copy(deep=True)
    students, deleted, user_map, bad, counts = oneroster.students_rows(users, roles=roles, orgs=None, version="1.2",
                                                                        id_rule="sourcedId")
    raw = USERS_12.splitlines()
    pd.testing.assert_frame_equal(students, text_frame(oneroster.STUDENT_COLUMNS, [
        ["s1", "school1", "07", 2, raw[1]],  # primaryOrgSourcedId
        ["s2", "school2", "08", 3, raw[2]],  # no primaryOrgSourcedId: the primary student role's org
    ]))
    pd.testing.assert_frame_equal(deleted, text_frame(["student_id", "sourced_id", "line"], [["s4", "s4", 6]]))
    assert user_map.values.tolist() == [["s1", "s1"], ["s2", "s2"], ["s4", "s4"]]
    assert bad.empty
    assert counts == {"users who are not students (teacher), left out": 1,
                      "users who are not students (no active role), left out": 1,  # s3: its role is tobedeleted
                      "users who are not students (no role), left out": 1,  # x1
                      "schools taken from roles.csv (no primaryOrgSourcedId)": 1}
    pd.testing.assert_frame_equal(users, before[0])
    pd.testing.assert_frame_equal(roles, before[1])


def test_users_12_without_roles_csv_use_a_role_column_or_are_all_left_out():
    users = table(USERS_12)
    students, deleted, user_map, bad, counts = oneroster.students_rows(users, roles=None, orgs=None, version="1.2",
                                                                        id_rule="sourcedId")
    assert students.empty and deleted.empty and user_map.empty and bad.empty
    assert counts == {"users with no role (roles.csv absent), left out": 6}
    with_role = users.assign(role=["student", "student", "teacher", "student", "student", "guest"])
    students, *_, counts = oneroster.students_rows(with_role, roles=None, orgs=None, version="1.2",
                                                   id_rule="identifier")
    assert students[["student_id", "school_id"]].values.tolist() == [["S-1001", "school1"], ["S-1002", None],
                                                                     ["S-1003", "school2"]]
    assert counts == {"users who are not students (teacher), left out": 1,
                      "users who are not students (guest), left out": 1, "students without a school": 1}


def test_a_missing_column_or_rule_is_an_error():
    with pytest.raises(ValueError, match="users.csv: no column role"):
        oneroster.students_rows(table(USERS_12), roles=None, orgs=None, version="1.1", id_rule="sourcedId")
    with pytest.raises(ValueError, match="must be one of"):
        oneroster.students_rows(table(USERS_11), roles=None, orgs=None, version="1.1", id_rule="email")


# --- lineItems.csv ----------------------------------------------------------------------------

ITEMS = """\
sourcedId,status,dateLastModified,title,description,assignDate,dueDate,classSourcedId,categorySourcedId,gradingPeriodSourcedId,resultValueMin,resultValueMax
li1,active,2026-10-01T00:00:00Z,Fractions quiz,,2026-10-01,2026-10-15,c1,cat1,gp1,0,20
li2,active,2026-10-01T00:00:00Z,Reading check,,2026-10-01,2026-10-15,c1,cat1,gp1,,
li3,active,2026-10-01T00:00:00Z,Spelling,,2026-10-01,2026-10-15,c1,cat1,gp1,0,twenty
li4,tobedeleted,2026-10-01T00:00:00Z,Old quiz,,2026-10-01,2026-10-15,c1,cat1,gp1,0,10
li5,active,2026-10-01T00:00:00Z,Flat,,2026-10-01,2026-10-15,c1,cat1,gp1,10,10
li6,active,2026-10-01T00:00:00Z,Essay,,2026-10-01,2026-10-15,c1,cat1,gp1,10,20
"""


def test_line_items_give_each_ones_scale():
    items = table(ITEMS)
    before = items.copy(deep=True)
    kept, deleted, bad, counts = oneroster.line_items(items)
    raw = ITEMS.splitlines()
    pd.testing.assert_frame_equal(kept, text_frame(oneroster.ITEM_COLUMNS, [
        ["li1", "Fractions quiz", 0.0, 20.0, 2],
        ["li2", "Reading check", np.nan, np.nan, 3],
        ["li6", "Essay", 10.0, 20.0, 7],
    ]))
    pd.testing.assert_frame_equal(deleted, text_frame(["sourced_id", "line"], [["li4", 5]]))
    pd.testing.assert_frame_equal(bad, bad_rows([
        (4, "resultValueMax 'twenty' is not a number", raw[3]),
        (6, "resultValueMax '10' is not above resultValueMin '10'", raw[5]),
    ]))
    assert counts == {}
    pd.testing.assert_frame_equal(items, before)


# --- results.csv ------------------------------------------------------------------------------

RESULTS = """\
sourcedId,status,dateLastModified,lineItemSourcedId,studentSourcedId,scoreStatus,score,scoreDate,comment
r1,active,2026-11-02T10:00:00Z,li1,u1,fully graded,17,2026-11-02,
r2,active,2026-11-02T10:00:00Z,li1,u3,not submitted,,2026-11-02,
r3,active,2026-11-02T10:00:00Z,li1,u9,fully graded,15,2026-11-02,
r4,active,2026-11-02T10:00:00Z,li1,u3,fully graded,25,2026-11-02,
r5,tobedeleted,2026-11-02T10:00:00Z,li1,u2,fully graded,12,2026-11-01,
r6,active,2026-11-03T10:00:00Z,li7,u3,Fully Graded,87.5,2026-11-03T09:30:00Z,late
"""
USER_MAP = {"u1": "u1", "u2": "u2", "u3": "u3"}


def items_frame() -> pd.DataFrame:
    return oneroster.line_items(table(ITEMS))[0]


def test_results_are_scaled_to_percent_and_every_one_left_out_is_named():
    results, items = table(RESULTS), items_frame()
    before = results.copy(deep=True), items.copy(deep=True), dict(USER_MAP)
    assessments, deleted, bad, counts = oneroster.results_rows(results, items=items, user_map=USER_MAP)
    raw = RESULTS.splitlines()
    pd.testing.assert_frame_equal(assessments, text_frame(oneroster.ASSESSMENT_COLUMNS, [
        ["u1", "li1", "2026-11-02", "85", 2, raw[1]],  # 17 of 0..20
        ["u3", "li7", "2026-11-03", "87.5", 7, raw[6]],  # li7 unknown: as given; the date-time's day
    ]))
    pd.testing.assert_frame_equal(deleted, text_frame(["student_id", "assessment_id", "line"], [["u2", "li1", 6]]))
    pd.testing.assert_frame_equal(bad, bad_rows([
        (4, "studentSourcedId 'u9' is in no users.csv loaded", raw[3]),
        (5, "score '25' on the line item's scale 0..20 is 125, outside 0..100", raw[4]),
    ]))
    assert counts == {"results not submitted, not loaded": 1,
                      "scores scaled by the line item's resultValueMin/Max": 1,
                      "results whose line item is unknown, score used as given": 1}
    pd.testing.assert_frame_equal(results, before[0])
    pd.testing.assert_frame_equal(items, before[1])
    assert USER_MAP == before[2]


def test_the_assessments_rows_pass_the_usual_validation():
    assessments, *_ = oneroster.results_rows(table(RESULTS), items=items_frame(), user_map=USER_MAP)
    cells = assessments.assign(line=assessments["line"].astype("Int64"))
    good, rejected = validate(KINDS["assessments"], cells)
    assert rejected.empty
    assert good["score"].tolist() == [85.0, 87.5]


def test_a_minimum_shifts_the_scale_and_no_maximum_leaves_the_score_as_given():
    results = table("""\
        sourcedId,status,lineItemSourcedId,studentSourcedId,scoreStatus,score,scoreDate
        r1,active,li6,u1,fully graded,15,2026-11-02
        r2,active,li2,u1,fully graded,72.25,2026-11-02
        r3,active,li6,u3,fully graded,12.34567,2026-11-02
        """)
    assessments, _, bad, counts = oneroster.results_rows(results, items=items_frame(), user_map=USER_MAP)
    # (15 - 10) * 100 / (20 - 10) = 50; (12.34567 - 10) * 100 / 10 = 23.4567
    assert assessments[["assessment_id", "score"]].values.tolist() == [["li6", "50"], ["li2", "72.25"],
                                                                       ["li6", "23.4567"]]
    assert bad.empty
    assert counts == {"scores scaled by the line item's resultValueMin/Max": 2,
                      "results whose line item has no resultValueMax, score used as given": 1}


def test_bad_results_get_every_problem_named():
    results = table("""\
        sourcedId,status,lineItemSourcedId,studentSourcedId,scoreStatus,score,scoreDate
        r1,active,li1,u1,fully graded,seventeen,2026-11-02
        r2,active,,u1,fully graded,10,11/02/2026
        r3,active,li7,,fully graded,150,
        r4,active,li1,u1,fully graded,10,2026-02-30
        r5,active,li1,u1,exempt,,
        r6,active,li1,u1,,,
        """)
    assessments, _, bad, counts = oneroster.results_rows(results, items=items_frame(), user_map=USER_MAP)
    assert assessments.empty
    assert dict(zip(bad["line"], bad["reason"])) == {
        2: "score 'seventeen' is not a number",
        3: "lineItemSourcedId is empty; scoreDate '11/02/2026' is not a date YYYY-MM-DD",
        4: "studentSourcedId is empty; score '150' is outside 0..100 (no resultValueMax to scale it by); "
           "scoreDate is empty",
        5: "scoreDate '2026-02-30' is not a date YYYY-MM-DD",
    }
    assert counts == {"results exempt, not loaded": 1, "results without a scoreStatus, not loaded": 1}


def test_repeated_results_keep_the_last_and_unknown_deletions_are_counted():
    results = table("""\
        sourcedId,status,lineItemSourcedId,studentSourcedId,scoreStatus,score,scoreDate
        r1,active,li1,u1,fully graded,10,2026-11-02
        r1,active,li1,u1,fully graded,18,2026-11-04
        r2,tobedeleted,li1,u9,,,
        r3,tobedeleted,,,,,
        """)
    assessments, deleted, bad, counts = oneroster.results_rows(results, items=items_frame(), user_map=USER_MAP)
    assert assessments[["student_id", "date", "score", "line"]].values.tolist() == [["u1", "2026-11-04", "90", 3]]
    assert deleted.empty and bad.empty
    assert counts == {"scores scaled by the line item's resultValueMin/Max": 2,
                      "results listed twice for a student and line item, the last row kept": 1,
                      "deleted results of unknown students, nothing to remove": 1,
                      "deleted results without a studentSourcedId or lineItemSourcedId, nothing to remove": 1}
