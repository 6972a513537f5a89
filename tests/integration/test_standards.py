"""xAPI statements, Caliper events and OneRoster bundles end to end on SQLite and PostgreSQL:
the folder of tests/standards_fixture.py (its docstring and EXPECTED hold the hand-worked values)."""
import gzip
import json
import shutil
from datetime import date, datetime, timezone

import pytest
from sqlalchemy import select

import config
from models import (assessments, dataframe_table, event_voids, ingested_files, learning_events, rejected_rows,
                    students, usage, usage_weekly)
from runner.cycle import run_cycle
from tests.standards_fixture import APPS, EXPECTED, STANDARDS, write

AS_OF = date(2026, 11, 20)
NOW = datetime(2026, 11, 20, 20, 0, tzinfo=timezone.utc)
JOBS = ["ingest", "dailypull", "most_used"]


def settings(**standards):
    entry = {"id": "riverside", "apps": APPS, "standards": {**STANDARDS, **standards}}
    return config.parse({"districts": [entry]})


def run(engine, landing, chosen=None, *, force=False):
    chosen = chosen or settings()
    return run_cycle(engine, chosen, districts=list(chosen.districts), jobs=JOBS, as_of=AS_OF, landing_dir=landing,
                     force=force, now=NOW, clock=lambda: NOW)


@pytest.fixture
def landing(tmp_path):
    write(tmp_path / "riverside")
    return tmp_path


def _usage(engine):
    with engine.connect() as conn:
        return {(r.student_id, r.app, r.date.isoformat()): (r.minutes, r.sessions) for r in conn.execute(select(usage))}


def _assessments(engine):
    with engine.connect() as conn:
        return {(r.student_id, r.assessment_id): (r.date.isoformat(), r.score) for r in conn.execute(select(assessments))}


def _weekly(engine):
    with engine.connect() as conn:
        return {(r.school_id, r.app, r.week_start.isoformat()): (r.students, r.minutes)
                for r in conn.execute(select(usage_weekly))}


def _rejected(engine):
    with engine.connect() as conn:
        return conn.execute(select(rejected_rows.c.path, rejected_rows.c.line, rejected_rows.c.reason)
                            .order_by(rejected_rows.c.path, rejected_rows.c.line)).all()


def test_every_format_loads_into_the_districts_tables(engine, landing):
    result = run(engine, landing)
    assert [r.result.status for r in result.records] == ["completed_with_errors", "succeeded", "succeeded"]
    assert _usage(engine) == EXPECTED["usage"]
    assert _assessments(engine) == EXPECTED["assessments"]
    assert _weekly(engine) == EXPECTED["weekly"]
    with engine.connect() as conn:
        assert {r.student_id: (r.school_id, r.grade) for r in conn.execute(select(students))} == EXPECTED["students"]
        files = {r.path.rsplit("/", 1)[1]: (r.status, r.rows_rejected, r.kind, r.notes or "")
                 for r in conn.execute(select(ingested_files))}
        table = dataframe_table("riverside", APPS)
        frame = {r.student_id: (r.type, r.score, r.total_minutes) for r in conn.execute(select(table))}
        voids = conn.execute(select(event_voids.c.voided_id)).scalars().all()
        events = conn.execute(select(learning_events.c.event_id)).scalars().all()
    assert {name: (status, rejected) for name, (status, rejected, _, _) in files.items()} == {
        name: ("loaded", n) for name, n in EXPECTED["rejected"].items()}
    assert {kind for _, _, kind, _ in files.values()} == {"xapi", "caliper", "oneroster"}
    assert voids == ["6a0c2a4e-0000-4000-8000-000000000010"]
    assert len(events) == len(set(events)) == 9 + 2 + 7  # file 1: 9 mapped; file 2: 2 new (one repeat); Caliper 7
    # type 1 students: the mean of their assessments this school year
    assert frame["s1"] == (1, pytest.approx((85 + 85 + 92) / 3), 62.0)
    assert frame["s5"][:2] == (1, 85.0) and frame["s6"] == (None, None, 0.0)
    assert "s7" not in frame or frame["s7"][0] is None
    notes = {name: note for name, (_, _, _, note) in files.items()}
    assert "statements about a statement or an agent, not use: 1" in notes["xapi-2026-11-02.json"]
    assert "apps by mapping table: 3" in notes["xapi-2026-11-02.json"]
    assert "Caliper MediaEvent events, not read: 1" in notes["caliper-2026-11-04.json"]
    assert "users who are not students (teacher), left out: 1" in notes["oneroster-2026-11-01.zip"]
    assert "tables not read (nothing of ours maps to them): classes.csv" in notes["oneroster-2026-11-01.zip"]
    assert "users marked tobedeleted, removed: 1" in notes["oneroster-delta-2026-11-10"]
    message = result.records[0].result.message
    assert "counted:" in message and "voiding statements 1" in message


def test_bad_values_are_quarantined_with_their_line_and_reason(engine, landing):
    run(engine, landing)
    rows = _rejected(engine)
    first = [(line, reason) for path, line, reason in rows if path.endswith("xapi-2026-11-02.json")]
    reasons = " | ".join(reason for _, reason in first)
    assert len(first) == 6
    for expected in ("maps to no student", "urn:uuid:7d1e0b5c", "'PT'", "score not loaded"):
        assert expected in reasons
    assert all(line > 1 for line, _ in first)  # the line each statement starts on in the array
    second = [(line, reason) for path, line, reason in rows if path.endswith(".jsonl.gz")]
    assert [line for line, _ in second] == [5] and "not valid JSON" in second[0][1]
    roster = [reason for path, _, reason in rows if path.endswith(".zip")]
    assert any("s9" in r for r in roster) and any("outside 0..100" in r or "125" in r for r in roster)


def test_after_the_first_file_only_and_a_rerun_changes_nothing(engine, tmp_path):
    folder = write(tmp_path / "riverside")
    for name in ("lms/xapi-2026-11-03.jsonl.gz", "lms/caliper-2026-11-04.json"):
        (folder / name).unlink()
    shutil.rmtree(folder / "sis")
    run(engine, tmp_path)
    assert _usage(engine) == EXPECTED["usage_after_first_file"]
    write(tmp_path / "riverside")
    run(engine, tmp_path)
    assert _usage(engine) == EXPECTED["usage"]  # the voided statement's 10 minutes are gone; 15:40 joined 15:25
    before = (_usage(engine), _assessments(engine), _weekly(engine))
    again = run(engine, tmp_path).records[0].result
    assert again.rows_out == 0 and "5 skipped" in again.message
    run(engine, tmp_path, force=True)
    assert (_usage(engine), _assessments(engine), _weekly(engine)) == before


def test_the_session_rule_is_a_setting(engine, landing):
    run(engine, landing, settings(session_gap_minutes=10, session_cap_minutes=30))
    minutes = _usage(engine)
    # gap 10: 15:00, 15:10 (10 apart: not less than the gap) split; 15:25, 15:40 (15 apart) split too
    assert minutes[("s1", "dreambox", "2026-11-02")] == (0.0, 5)
    # cap 30: the stated hour counts 30
    assert minutes[("s2", "ixl", "2026-11-02")] == (30.0, 1)


def test_a_voiding_statement_that_arrives_first_still_voids(engine, tmp_path):
    folder = tmp_path / "riverside" / "lms"
    folder.mkdir(parents=True)
    void = {"id": "v1", "actor": {"mbox": "mailto:admin@example.org"},
            "verb": {"id": "http://adlnet.gov/expapi/verbs/voided"}, "object": {"objectType": "StatementRef", "id": "x1"},
            "timestamp": "2026-11-05T00:00:00Z"}
    (folder / "xapi-a.jsonl").write_text(json.dumps(void) + "\n")
    run(engine, tmp_path)
    late = {"id": "x1", "actor": {"account": {"homePage": "https://h", "name": "s1"}},
            "verb": {"id": "http://adlnet.gov/expapi/verbs/experienced"},
            "object": {"id": "https://www.ixl.com/a"}, "timestamp": "2026-11-04T15:00:00Z",
            "result": {"duration": "PT15M"}}
    kept = {**late, "id": "x2", "timestamp": "2026-11-04T17:00:00Z", "result": {"duration": "PT5M"}}
    (folder / "xapi-b.json").write_text(json.dumps({"statements": [late, kept], "more": ""}))
    run(engine, tmp_path)
    assert _usage(engine) == {("s1", "ixl", "2026-11-04"): (5.0, 1)}


def test_a_second_bulk_roster_removes_what_it_no_longer_has(engine, landing):
    run(engine, landing)
    import zipfile
    from tests import standards_fixture as fixture

    bulk = fixture._bulk()
    bulk["users.csv"] = fixture._csv([fixture.USERS_HEADER, fixture._user("s1", "sch-b", "student", "05")])
    bulk["results.csv"] = fixture._csv([fixture.RESULTS_HEADER,
                                        fixture._result("r1", "li-1", "s1", "fully graded", "19", "2026-11-12")])
    with zipfile.ZipFile(landing / "riverside/sis/oneroster-2026-11-15.zip", "w") as archive:
        for name, text in bulk.items():
            archive.writestr(name, text)
    run(engine, landing)
    with engine.connect() as conn:
        assert {r.student_id: r.school_id for r in conn.execute(select(students))} == {"s1": "sch-b"}
    scores = _assessments(engine)
    assert scores[("s1", "li-1")] == ("2026-11-12", 95.0)
    assert ("s1", "li-2") not in scores and ("s2", "li-2") not in scores  # not in the new bulk results
    assert ("s1", "https://www.dreambox.com/lessons/fractions-1") in scores  # statements' scores stay
    weekly = _weekly(engine)
    assert weekly[("sch-b", "dreambox", "2026-11-02")] == (1, 60.0)  # s1 moved school: the week follows


def test_an_encrypted_gzipped_xapi_file_loads(engine, tmp_path, service_keyring):
    folder = tmp_path / "riverside" / "lms"
    folder.mkdir(parents=True)
    statement = {"id": "e1", "actor": {"account": {"homePage": "https://h", "name": "s1"}},
                 "verb": {"id": "http://adlnet.gov/expapi/verbs/experienced"},
                 "object": {"id": "https://www.dreambox.com/a"}, "timestamp": "2026-11-04T15:00:00Z",
                 "result": {"duration": "PT7M"}}
    plain = tmp_path / "xapi-e.jsonl.gz"
    plain.write_bytes(gzip.compress((json.dumps(statement) + "\n").encode()))
    service_keyring.encrypt(plain, folder / "xapi-e.jsonl.gz.gpg")
    run(engine, tmp_path)
    assert _usage(engine) == {("s1", "dreambox", "2026-11-04"): (7.0, 1)}


def test_a_file_that_cannot_be_read_fails_alone(engine, tmp_path):
    folder = tmp_path / "riverside" / "lms"
    folder.mkdir(parents=True)
    (folder / "xapi-broken.json").write_text('[{"id": "a", ')
    (folder / "caliper-x.csv").write_text("a,b\n")
    (folder / "oneroster-x.zip").write_bytes(b"not a zip")
    good = {"id": "g1", "actor": {"account": {"homePage": "https://h", "name": "s1"}},
            "verb": {"id": "http://adlnet.gov/expapi/verbs/experienced"},
            "object": {"id": "https://www.ixl.com/a"}, "timestamp": "2026-11-04T15:00:00Z",
            "result": {"duration": "PT3M"}}
    (folder / "xapi-good.jsonl").write_text(json.dumps(good) + "\n")
    result = run(engine, tmp_path).records[0].result
    with engine.connect() as conn:
        errors = {r.path.rsplit("/", 1)[1]: r.error for r in conn.execute(
            select(ingested_files).where(ingested_files.c.status == "failed"))}
    assert set(errors) == {"xapi-broken.json", "caliper-x.csv", "oneroster-x.zip"}
    assert "not closed" in errors["xapi-broken.json"] or "not valid JSON" in errors["xapi-broken.json"]
    assert ".json" in errors["caliper-x.csv"] and "zip" in errors["oneroster-x.zip"]
    assert _usage(engine) == {("s1", "ixl", "2026-11-04"): (3.0, 1)}
    assert result.status == "completed_with_errors"


def test_a_oneroster_1_2_folder_with_roles_loads(engine, tmp_path):
    from tests import standards_fixture as fixture

    folder = tmp_path / "riverside" / "sis" / "export-2026-11-01"
    folder.mkdir(parents=True)
    manifest = fixture._manifest({"users": "bulk", "roles": "bulk", "orgs": "bulk"}).replace(
        "oneroster.version,1.1", "oneroster.version,1.2").replace("file.users,bulk", "file.users,bulk\nfile.roles,bulk")
    (folder / "manifest.csv").write_text(manifest)
    (folder / "orgs.csv").write_text(fixture._csv([
        ["sourcedId", "status", "dateLastModified", "name", "type", "identifier", "parentSourcedId"],
        ["sch-a", "", "", "Adams", "school", "A", ""], ["sch-b", "", "", "Brook", "school", "B", ""]]))
    header = ["sourcedId", "status", "dateLastModified", "enabledUser", "username", "userIds", "givenName",
              "familyName", "middleName", "identifier", "email", "sms", "phone", "agentSourcedIds", "grades", "password",
              "userMasterIdentifier", "resourceSourcedIds", "preferredGivenName", "preferredMiddleName",
              "preferredFamilyName", "primaryOrgSourcedId", "pronouns"]

    def user(sourced_id, grades, primary):
        return [sourced_id, "", "", "true", sourced_id, "", "A", "B", "", f"id-{sourced_id}", "", "", "", "", grades,
                "", "", "", "", "", "", primary, ""]

    (folder / "users.csv").write_text(fixture._csv([header, user("u1", "07", "sch-b"), user("u2", "08", ""),
                                                    user("t9", "", "sch-a")]))
    (folder / "roles.csv").write_text(fixture._csv([
        ["sourcedId", "status", "dateLastModified", "userSourcedId", "roleType", "role", "beginDate", "endDate",
         "orgSourcedId", "userProfileSourcedId"],
        ["ro1", "", "", "u1", "primary", "student", "", "", "sch-a", ""],
        ["ro2", "", "", "u2", "primary", "student", "", "", "sch-a", ""],
        ["ro3", "", "", "t9", "primary", "teacher", "", "", "sch-a", ""]]))
    run(engine, tmp_path, settings(oneroster_student_id="identifier"))
    with engine.connect() as conn:
        found = {r.student_id: (r.school_id, r.grade) for r in conn.execute(select(students))}
        kinds = conn.execute(select(ingested_files.c.kind, ingested_files.c.format, ingested_files.c.status)).all()
    # u1: primaryOrgSourcedId; u2: none, so its primary role's org; t9 a teacher; ids by the identifier column
    assert found == {"id-u1": ("sch-b", "07"), "id-u2": ("sch-a", "08")}
    assert [tuple(k) for k in kinds] == [("oneroster", "folder", "loaded")]


# --- cases a review found: each failed before its fix ------------------------------------------

def _st(sid, student, when, duration=None, activity="https://www.dreambox.com/a", verb="experienced", score=None):
    statement = {"id": sid, "actor": {"account": {"homePage": "https://h", "name": student}},
                 "verb": {"id": f"http://adlnet.gov/expapi/verbs/{verb}"}, "object": {"id": activity},
                 "timestamp": when}
    result = {**({"duration": duration} if duration else {}), **({"score": {"scaled": score}} if score else {})}
    return {**statement, **({"result": result} if result else {})}


def _lines(path, *statements):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(s) + "\n" for s in statements))


def test_a_statement_repeated_on_one_line_keeps_the_last(engine, tmp_path):
    folder = tmp_path / "riverside"
    folder.mkdir()
    first, second = _st("a", "s1", "2026-11-04T15:00:00Z", "PT5M"), _st("b", "s1", "2026-11-04T16:00:00Z", "PT3M")
    (folder / "xapi-min.json").write_text(json.dumps([first, second, {**first, "result": {"duration": "PT8M"}}]))
    result = run(engine, tmp_path, settings(timezone="UTC")).records[0].result
    assert result.status == "succeeded", result.message
    assert _usage(engine) == {("s1", "dreambox", "2026-11-04"): (11.0, 2)}  # 8 (the last copy of a) + 3


def test_a_statement_sent_again_with_another_time_or_actor_moves(engine, tmp_path):
    folder = tmp_path / "riverside"
    chosen = settings(timezone="UTC")
    _lines(folder / "xapi-1.jsonl", _st("x1", "s1", "2026-11-04T15:00:00Z", "PT10M", score=0.7, verb="completed"))
    run(engine, tmp_path, chosen)
    _lines(folder / "xapi-2.jsonl", _st("x1", "s2", "2026-11-09T15:00:00Z", "PT10M", score=0.7, verb="completed"))
    run(engine, tmp_path, chosen)
    assert _usage(engine) == {("s2", "dreambox", "2026-11-09"): (10.0, 1)}
    assert _assessments(engine) == {("s2", "https://www.dreambox.com/a"): ("2026-11-09", 70.0)}


def test_a_late_statement_before_midnight_takes_the_session_from_the_next_day(engine, tmp_path):
    folder = tmp_path / "riverside"
    chosen = settings(timezone="UTC")
    _lines(folder / "xapi-1.jsonl", _st("a", "s1", "2026-11-05T00:10:00Z"), _st("b", "s1", "2026-11-05T00:30:00Z"))
    run(engine, tmp_path, chosen)
    assert _usage(engine) == {("s1", "dreambox", "2026-11-05"): (20.0, 1)}
    _lines(folder / "xapi-2.jsonl", _st("c", "s1", "2026-11-04T23:55:00Z"))
    run(engine, tmp_path, chosen)
    assert _usage(engine) == {("s1", "dreambox", "2026-11-04"): (35.0, 1)}  # one session, begun on the 4th


def test_around_a_files_days_a_usage_files_row_and_a_corrected_score_keep_their_keys(engine, tmp_path):
    folder = tmp_path / "riverside"
    chosen = settings(timezone="UTC")
    _lines(folder / "xapi-1.jsonl", _st("a", "s1", "2026-11-04T15:00:00Z", "PT10M", score=0.8, verb="completed"),
           _st("b", "s1", "2026-11-03T15:00:00Z", "PT10M"))
    run(engine, tmp_path, chosen)
    (folder / "usage_fix.csv").write_text("student_id,app,date,minutes\ns1,dreambox,2026-11-03,25\n")
    (folder / "assessments_fix.csv").write_text(
        "student_id,assessment_id,date,score\ns1,https://www.dreambox.com/a,2026-11-04,90\n")
    run(engine, tmp_path, chosen)
    _lines(folder / "xapi-2.jsonl", _st("c", "s1", "2026-11-04T18:00:00Z", "PT2M", activity="https://www.ixl.com/b"))
    run(engine, tmp_path, chosen)  # touches 4 Nov (and the 3rd and 5th around it)
    minutes = _usage(engine)
    assert minutes[("s1", "dreambox", "2026-11-03")][0] == 25.0  # the usage file's row stays
    assert minutes[("s1", "ixl", "2026-11-04")][0] == 2.0
    assert _assessments(engine)[("s1", "https://www.dreambox.com/a")] == ("2026-11-04", 90.0)


def test_force_after_a_mapping_change_replaces_rather_than_adds(engine, tmp_path):
    folder = tmp_path / "riverside"
    _lines(folder / "xapi-1.jsonl", _st("a", "s1", "2026-11-04T15:00:00Z", "PT10M"),
           _st("b", "s1", "2026-11-05T02:00:00Z", "PT10M"))
    run(engine, tmp_path, settings(timezone="UTC"))
    changed = config.parse({"districts": [{"id": "riverside", "apps": ["dreambox_math"], "standards": {
        "apps": {"https://www.dreambox.com/": "dreambox_math"}, "timezone": "America/Chicago"}}]})
    run(engine, tmp_path, changed, force=True)
    assert _usage(engine) == {("s1", "dreambox_math", "2026-11-04"): (20.0, 2)}  # 09:00 and 20:00 CST
    assert _weekly(engine) == {("", "dreambox_math", "2026-11-02"): (1, 20.0)}


def test_bulk_rosters_of_other_folders_stay_and_a_copy_is_a_duplicate(engine, tmp_path):
    import zipfile
    from tests import standards_fixture as fixture

    def bundle(path, *users):
        path.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("manifest.csv", fixture._manifest({"users": "bulk"}))
            archive.writestr("users.csv", fixture._csv([fixture.USERS_HEADER, *users]))

    folder = tmp_path / "riverside" / "sis"
    bundle(folder / "school-a/oneroster-a.zip", fixture._user("a1", "sch-a", "student", "05"))
    bundle(folder / "school-b/oneroster-b.zip", fixture._user("b1", "sch-b", "student", "05"))
    run(engine, tmp_path)
    shutil.copy(folder / "school-a/oneroster-a.zip", folder / "school-a/oneroster-a-copy.zip")
    run(engine, tmp_path)
    with engine.connect() as conn:
        found = {r.student_id for r in conn.execute(select(students))}
        status = {r.path.rsplit("/", 1)[1]: r.status for r in conn.execute(select(ingested_files))}
    assert found == {"a1", "b1"}
    assert status["oneroster-a-copy.zip"] == "duplicate"


def test_a_sync_tools_manifest_leaves_its_folder_alone_and_an_empty_export_loads(engine, tmp_path):
    folder = tmp_path / "riverside" / "school1"
    folder.mkdir(parents=True)
    (folder / "manifest.csv").write_text("file,sha256\nusage_1.csv,abc\n")
    (folder / "usage_1.csv").write_text("student_id,app,date,minutes\ns1,ixl,2026-11-04,12\n")
    (folder / "xapi-empty.json").write_text("")
    run(engine, tmp_path)
    with engine.connect() as conn:
        status = {r.path.rsplit("/", 1)[1]: (r.status, r.notes) for r in conn.execute(select(ingested_files))}
    assert status["usage_1.csv"][0] == "loaded" and _usage(engine)[("s1", "ixl", "2026-11-04")][0] == 12.0
    assert status["xapi-empty.json"][0] == "loaded" and "empty" in status["xapi-empty.json"][1]


def test_unstorable_text_and_huge_values_cost_only_their_statement(engine, tmp_path):
    folder = tmp_path / "riverside"
    folder.mkdir()
    good = _st("ok", "s1", "2026-11-04T15:00:00Z", "PT5M")
    lines = [json.dumps(good), json.dumps(_st("n", "s\u0000x", "2026-11-04T15:00:00Z", "PT5M")),
             json.dumps(_st("u", "s2", "2026-11-04T15:00:00Z", "PT5M")).replace('"s2"', '"s\\ud800"'),
             json.dumps(_st("d", "s3", "2026-11-04T15:00:00Z", "PT99999999999S")),
             json.dumps(_st("i" * 6000, "s4", "2026-11-04T15:00:00Z", "PT4M"))]
    (folder / "xapi-odd.jsonl").write_text("\n".join(lines) + "\n")
    result = run(engine, tmp_path, settings(timezone="UTC")).records[0].result
    assert result.status == "completed_with_errors", result.message
    assert _usage(engine) == {("s1", "dreambox", "2026-11-04"): (5.0, 1), ("s4", "dreambox", "2026-11-04"): (4.0, 1)}
    assert [line for _, line, _ in _rejected(engine)] == [2, 3, 4]
    with engine.connect() as conn:
        ids = conn.execute(select(learning_events.c.event_id)).scalars().all()
    assert sorted(ids)[-1].startswith("sha1:")
