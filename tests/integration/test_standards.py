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
