"""The xAPI and Caliper rules (analytics/standards.py), each worked out by hand from the specs."""
import copy
import hashlib
import json
from datetime import date

import numpy as np
import pandas as pd
import pytest

from analytics import standards as s

EXPERIENCED = s.ADL + "experienced"
COMPLETED = s.ADL + "completed"
SCORED = s.ADL + "scored"
ANN = {"objectType": "Agent", "account": {"homePage": "https://sis.oakwood.k12.us", "name": "1001"}}


# --- durations and timestamps ---------------------------------------------------------------

@pytest.mark.parametrize("text, seconds", [
    ("PT4M30S", 270.0), ("PT1H", 3600.0), ("PT0.5S", 0.5), ("P1DT2H", 93600.0), ("PT90M", 5400.0),
    ("PT1,5S", 1.5), ("P2W", 1209600.0), ("pt4m30s", 270.0), ("PT1.5M", 90.0), ("P0D", 0.0),
])
def test_durations_in_iso_forms(text, seconds):
    assert s.parse_duration(text) == seconds


@pytest.mark.parametrize("text, message", [
    ("P1M", "years or months are not a fixed length of time"),
    ("P1Y2D", "years or months are not a fixed length of time"),
    ("PT", "'PT'"), ("P", "'P'"), ("P1DT", "'P1DT'"), ("-PT1S", "'-PT1S'"), ("four minutes", "'four minutes'"),
    ("P1W2D", "'P1W2D'"),
])
def test_bad_durations_are_refused_quoting_the_text(text, message):
    with pytest.raises(ValueError, match=message):
        s.parse_duration(text)


@pytest.mark.parametrize("text, utc, had_offset", [
    ("2026-11-02T09:15:00Z", "2026-11-02 09:15:00", True),
    ("2026-11-02T09:15:00+05:30", "2026-11-02 03:45:00", True),
    ("2026-11-02T09:15:00-0500", "2026-11-02 14:15:00", True),
    ("2026-11-02T09:15:00.123456789Z", "2026-11-02 09:15:00.123456789", True),
    ("2026-11-02 09:15:00.5", "2026-11-02 09:15:00.5", False),
    ("2026-11-02T09:15:00", "2026-11-02 09:15:00", False),
])
def test_timestamps_with_an_offset_or_read_as_utc(text, utc, had_offset):
    assert s.parse_timestamp(text) == (pd.Timestamp(utc, tz="UTC"), had_offset)


@pytest.mark.parametrize("text", ["2026-11-02", "yesterday", "2026-13-02T09:15:00Z", "02/11/2026 09:15",
                                  "2026-11-02T09:15:00.1234567890Z", "2026-11-02T09:15:00+25:00"])
def test_bad_timestamps_are_refused(text):
    with pytest.raises(ValueError, match="timestamp '"):
        s.parse_timestamp(text)


def test_the_local_day_of_utc_times():
    at = pd.Series(pd.to_datetime(["2026-11-02T05:59:00Z", "2026-11-02T06:00:00Z"], utc=True), index=[7, 8])
    expected = pd.Series([date(2026, 11, 1), date(2026, 11, 2)], index=[7, 8], dtype=object)
    pd.testing.assert_series_equal(s.local_day(at, "America/Chicago"), expected)


# --- app ids --------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("DreamBox Learning", "dreambox_learning"), ("3D Shapes", "app_3d_shapes"), ("Géométrie!", "geometrie"),
    ("--Lexia Core5--", "lexia_core5"), ("!!!", None), ("x" * 40 + " y", "x" * 40),
])
def test_slugs(text, expected):
    assert s.slug(text) == expected


@pytest.mark.parametrize("iri, app", [
    ("https://www.dreambox.com/x", "dreambox"), ("https://play.ixl.com/a", "ixl"), ("https://lexia.co.uk/", "lexia"),
    ("http://localhost:8080/x", "localhost"), ("HTTPS://WWW.Foo-Bar.COM:443/", "foo_bar"),
    ("urn:uuid:2b1f5c2e-0000-4000-8000-000000000001", None), ("ftp://files.ixl.com/a", None), ("https:///x", None),
    ("http://10.0.0.5/lesson", None),
])
def test_the_app_of_an_iris_host(iri, app):
    assert s.host_app(iri) == app


MAPPING = {"https://play.ixl.com/": "ixl_math", " HTTPS://play.ixl.com/ela ": "ixl_ela", "Zearn Math": "zearn"}


@pytest.mark.parametrize("activity, platform, expected", [
    ("https://play.ixl.com/math/7", None, ("ixl_math", "mapping table")),  # the table beats the host (ixl)
    ("https://play.ixl.com/ELA/3", None, ("ixl_ela", "mapping table")),  # the longest key, case-insensitively
    ("https://www.dreambox.com/x", "zearn math ", ("zearn", "mapping table")),  # a key equal to the platform
    ("https://www.dreambox.com/x", "Khan Academy", ("khan_academy", "platform")),
    ("https://www.dreambox.com/x", None, ("dreambox", "activity host")),
    ("https://www.dreambox.com/x", "***", ("dreambox", "activity host")),  # nothing to slug: falls through
    ("urn:uuid:1", None, (None, "unmapped")),
    ("urn:uuid:1", "", (None, "unmapped")),
    (None, None, (None, "unmapped")),
])
def test_the_app_of_an_activity(activity, platform, expected):
    assert s.map_app(activity, platform, MAPPING) == expected


def test_a_mapped_value_that_is_no_app_id_is_unmapped():
    assert s.map_app("urn:x:1", None, {"urn:x:": "Not An Id"}) == (None, "unmapped")


# --- students -------------------------------------------------------------------------------

SHA = "1C0AF3D4E5F60718293A4B5C6D7E8F9012345678"


@pytest.mark.parametrize("actor, rules, student", [
    (ANN, ("account.name",), "1001"),
    ({"account": {"homePage": "h", "name": "  s-22 "}}, ("account.name",), "s-22"),
    ({"mbox": "MAILTO:Ann.Lee@Oakwood.org"}, ("mbox",), "ann.lee@oakwood.org"),
    ({"mbox": "mailto:Ann.Lee@Oakwood.org"}, ("mbox_local",), "ann.lee"),
    ({"mbox_sha1sum": SHA}, ("mbox_sha1sum",), SHA.lower()),
    ({"openid": "https://id.oakwood.org/ann"}, ("openid",), "https://id.oakwood.org/ann"),
    ({"mbox": "mailto:a@b.org", "account": {"name": "77"}}, ("account.name", "mbox"), "77"),  # order of the rules
    ({"mbox": "mailto:a@b.org"}, ("account.name", "mbox"), "a@b.org"),  # the first rule that yields
    ({"mbox": "mailto:a@b.org"}, ("account.name",), None),
    ({"objectType": "Group", "account": {"name": "class 7b"}}, ("account.name",), None),
    ({"mbox_sha1sum": "not hex"}, ("mbox_sha1sum",), None),
    ("1001", ("account.name",), None),
])
def test_the_student_of_an_xapi_actor(actor, rules, student):
    assert s.actor_student(actor, rules) == student


def test_an_unknown_actor_rule_is_an_error():
    with pytest.raises(ValueError, match="'email'"):
        s.actor_student(ANN, ("email",))


PERSON = {"id": "https://example.edu/users/554433?x=1#me", "type": "Person", "otherIdentifiers": [
    {"type": "SystemIdentifier", "identifierType": "LisSourcedId", "identifier": "lis-9"},
    {"type": "SystemIdentifier", "identifierType": "SisSourcedId", "identifier": "sis-1"},
]}


@pytest.mark.parametrize("entity, rules, student", [
    (PERSON, ("otherIdentifiers",), "sis-1"),  # SisSourcedId is preferred wherever it stands
    ({"id": "x", "otherIdentifiers": PERSON["otherIdentifiers"][:1]}, ("otherIdentifiers",), "lis-9"),
    ({"id": "x", "otherIdentifiers": []}, ("otherIdentifiers",), None),
    (PERSON, ("id.last_segment",), "554433"),
    ("urn:uuid:abc", ("id.last_segment",), "abc"),
    ({"id": "https://example.edu/users/554433/"}, ("id.last_segment",), "554433"),
    (PERSON, ("id",), "https://example.edu/users/554433?x=1#me"),
    ({"id": "urn:uuid:abc"}, ("otherIdentifiers", "id"), "urn:uuid:abc"),
    (None, ("id",), None),
])
def test_the_student_of_a_caliper_person(entity, rules, student):
    assert s.caliper_student(entity, rules) == student


# --- scores -----------------------------------------------------------------------------------

@pytest.mark.parametrize("score, expected", [
    ({"scaled": 0.85}, (85.0, None)),
    ({"scaled": 0.5, "raw": 1, "min": 0, "max": 10}, (50.0, None)),  # scaled wins
    ({"raw": 15, "min": 0, "max": 20}, (75.0, None)),
    ({"raw": 7, "min": 5, "max": 11}, (33.3333, None)),  # 2/6, 4 decimals
    ({"raw": 1, "min": 0, "max": 1}, (100.0, None)),
    ({"raw": 15}, (None, "a raw score without min and max cannot be scaled")),
    ({"raw": 15, "max": 20}, (None, "a raw score without min and max cannot be scaled")),
    ({"raw": 15, "min": 20, "max": 20}, (None, "score max 20 is not above min 20")),
    ({"scaled": 1.2}, (None, "score 120 (scaled 1.2) is outside 0..100")),
    ({"scaled": -0.5}, (None, "score -50 (scaled -0.5) is outside 0..100")),
    ({"raw": 25, "min": 0, "max": 20}, (None, "score 125 (raw 25 of 0..20) is outside 0..100")),
    ({"scaled": "high"}, (None, "scaled 'high' is not a number")),
    ({"raw": "9", "min": 0, "max": 10}, (None, "raw '9' is not a number")),
    ({"scaled": True}, (None, "scaled 'true' is not a number")),
    (None, (None, None)),
    ({}, (None, None)),
])
def test_scores_scaled_to_0_100(score, expected):
    assert s.scaled_score(score) == expected


def test_long_activity_ids_are_shortened_to_64_characters():
    short = "https://ixl.com/math/7/fractions"
    assert s.assessment_key(short) == short and s.assessment_key("a" * 64) == "a" * 64
    long = "https://assess.oakwood.org/forms/2026/fall/grade-7/mathematics/unit-3/quiz"
    key = s.assessment_key(long)
    assert key == long[:47] + "~" + hashlib.sha1(long.encode()).hexdigest()[:16] and len(key) == 64


# --- xAPI statements ------------------------------------------------------------------------

def statement(**parts):
    base = {"id": "s-1", "actor": ANN, "verb": {"id": EXPERIENCED},
            "object": {"objectType": "Activity", "id": "https://www.dreambox.com/lesson/12"},
            "timestamp": "2026-11-02T09:15:00Z"}
    return {k: v for k, v in {**base, **parts}.items() if v is not None}


def text(values):
    """Text cells as the module keeps them: Python str (or None) in an object column."""
    return pd.Series(values, dtype=object)


def items(*values):
    return [(line, json.dumps(v), v) for line, v in enumerate(values, start=1)]


def xapi(*values, rules=("account.name",), mapping=None):
    return s.xapi_events(items(*values), actor_rules=rules, app_mapping=mapping or {},
                         assessment_verbs=s.DEFAULT_ASSESSMENT_VERBS)


def test_a_statement_becomes_an_event_row():
    first = statement(result={"duration": "PT4M30S"})
    second = statement(id="s-2", actor={"mbox": "mailto:Bo@Oakwood.org"}, verb={"id": COMPLETED},
                       object={"id": "https://play.ixl.com/math/7"}, context={"platform": "IXL"},
                       timestamp="2026-11-02T10:00:00+05:30", result={"score": {"scaled": 0.85}})
    events, voids, bad, counts = xapi(first, second, rules=("account.name", "mbox"))
    expected = pd.DataFrame({
        "event_id": text(["s-1", "s-2"]), "student_id": text(["1001", "bo@oakwood.org"]),
        "app": text(["dreambox", "ixl"]),
        "at": pd.to_datetime(["2026-11-02T09:15:00Z", "2026-11-02T04:30:00Z"], utc=True).astype("datetime64[ns, UTC]"),
        "duration_seconds": [270.0, np.nan], "use": [True, True],
        "assessment_id": text([None, "https://play.ixl.com/math/7"]),
        "score": [np.nan, 85.0], "line": [1, 2], "raw": text([json.dumps(first), json.dumps(second)]),
    })
    pd.testing.assert_frame_equal(events, expected)
    assert voids.empty and bad.empty and list(voids.columns) == ["event_id", "voided_id", "line"]
    assert counts == {"apps by activity host": 1, "apps by platform": 1}


def test_the_inputs_are_not_changed():
    values = [statement(result={"duration": "PT1H", "score": {"raw": 3}}, verb={"id": SCORED}),
              statement(actor={"objectType": "Group"}), ["not", "a", "statement"]]
    given = items(*values)
    kept = copy.deepcopy(given)
    s.xapi_events(given, actor_rules=("account.name",), app_mapping=MAPPING, assessment_verbs=[SCORED])
    assert given == kept


def test_each_actor_form_and_a_group():
    values = [statement(actor={"account": {"homePage": "h", "name": "1001"}}),
              statement(actor={"mbox": "mailto:Ann@Oakwood.org"}),
              statement(actor={"mbox_sha1sum": SHA}),
              statement(actor={"openid": "https://id.oakwood.org/ann"}),
              statement(actor={"objectType": "Group", "member": [ANN]})]
    events, _, bad, _ = xapi(*values, rules=s.ACTOR_RULES)
    assert events["student_id"].tolist() == ["1001", "ann@oakwood.org", SHA.lower(), "https://id.oakwood.org/ann"]
    assert bad["line"].tolist() == [5]
    assert bad["reason"].iloc[0].startswith("the actor maps to no student id (rules: account.name, mbox, mbox_local, "
                                            "mbox_sha1sum, openid): '{\"objectType\": \"Group\"")


def test_timestamps_without_an_offset_and_the_stored_fallback_are_counted():
    events, _, bad, counts = xapi(statement(timestamp="2026-11-02T09:15:00"),
                                  statement(timestamp=None, stored="2026-11-02T09:20:00.250Z"),
                                  statement(timestamp="yesterday", stored="2026-11-02T09:20:00Z"),
                                  statement(timestamp=None))
    assert events["at"].tolist() == [pd.Timestamp("2026-11-02T09:15:00Z"), pd.Timestamp("2026-11-02T09:20:00.250Z")]
    assert counts[s.NO_OFFSET] == 1 and counts[s.STORED_USED] == 1
    assert bad["reason"].tolist() == [
        "timestamp 'yesterday' is not an ISO 8601 date-time such as 2026-11-02T09:15:00Z",
        "the statement has no timestamp and no stored time"]


def test_a_voiding_statement_is_a_void_and_other_statement_refs_are_not_use():
    void = statement(id="s-9", verb={"id": s.VOIDED}, object={"objectType": "StatementRef", "id": "s-1"})
    ref = statement(id="s-10", object={"objectType": "StatementRef", "id": "s-1"})
    about = [statement(object={"objectType": "Agent", "mbox": "mailto:t@o.org"}),
             statement(object={"objectType": "SubStatement", "actor": ANN, "verb": {"id": EXPERIENCED},
                               "object": {"id": "https://ixl.com/a"}})]
    broken = statement(verb={"id": s.VOIDED}, object={"id": "https://ixl.com/a"})
    events, voids, bad, counts = xapi(void, ref, *about, broken)
    assert events.empty
    expected = pd.DataFrame({"event_id": text(["s-9"]), "voided_id": text(["s-1"]), "line": [1]})
    pd.testing.assert_frame_equal(voids, expected)
    assert counts[s.NOT_USE] == 3 and counts[s.VOIDS] == 1
    assert bad["line"].tolist() == [5]
    assert bad["reason"].iloc[0].startswith("a voiding statement whose object is not a StatementRef")


def test_an_unmapped_activity_is_a_bad_row_naming_the_fix():
    _, _, bad, _ = xapi(statement(object={"id": "urn:uuid:2b1f5c2e"}),
                        statement(object={"id": "urn:uuid:2b1f5c2e"}, context={"platform": "###"}))
    assert bad["reason"].tolist() == [
        "activity 'urn:uuid:2b1f5c2e' (no platform) maps to no app id: add it to standards.apps in districts.yaml",
        "activity 'urn:uuid:2b1f5c2e' (platform '###') maps to no app id: add it to standards.apps in districts.yaml"]


def test_the_mapping_table_beats_the_host():
    events, _, _, counts = xapi(statement(object={"id": "https://play.ixl.com/math/7"}), mapping=MAPPING)
    assert events["app"].tolist() == ["ixl_math"] and counts == {"apps by mapping table": 1}


def test_statements_that_are_not_rows():
    values = [[1, 2], "text", statement(verb=None), statement(verb={"display": {"en": "did"}}),
              statement(result={"duration": "P1M"}), statement(object={"objectType": "Person", "id": "x"})]
    events, _, bad, _ = xapi(*values)
    assert events.empty
    assert bad["line"].tolist() == [1, 2, 3, 4, 5, 6]
    assert bad["reason"].tolist()[:2] == ["not a JSON object: '[1, 2]'", "not a JSON object: 'text'"]
    assert bad["reason"].iloc[3] == """no verb.id: verb '{"display": {"en": "did"}}'"""
    assert bad["reason"].iloc[4] == "result.duration 'P1M' is not an ISO 8601 duration such as PT4M30S"
    assert bad["line"].dtype == "Int64" and bad["raw"].iloc[0] == "[1, 2]"


def test_a_score_that_cannot_be_loaded_still_loads_the_use():
    values = [statement(verb={"id": COMPLETED}, result={"score": {"raw": 17}}),
              statement(verb={"id": SCORED}, result={"score": {"scaled": 1.2}}),
              statement(verb={"id": COMPLETED}, result={"score": {"raw": 17, "min": 0, "max": 20}}),
              statement(verb={"id": s.ADL + "passed"}),
              statement(result={"score": {"scaled": 0.4}})]
    events, _, bad, counts = xapi(*values)
    assert events["score"].tolist()[:2] == [pytest.approx(np.nan, nan_ok=True)] * 2
    assert events["score"].iloc[2] == 85.0 and np.isnan(events["score"].iloc[4])
    assert events["assessment_id"].tolist() == [None, None, "https://www.dreambox.com/lesson/12", None, None]
    assert bad["line"].tolist() == [1, 2]
    assert bad["reason"].tolist() == [
        "score not loaded (the statement's use was loaded): a raw score without min and max cannot be scaled",
        "score not loaded (the statement's use was loaded): score 120 (scaled 1.2) is outside 0..100"]
    assert counts[s.NO_SCORE] == 1 and counts[s.OTHER_SCORE] == 1


def test_statements_without_an_id_are_keyed_by_their_text_and_long_ids_shortened():
    long = "https://assess.oakwood.org/forms/2026/fall/grade-7/mathematics/unit-3/quiz"
    value = statement(id=None, verb={"id": SCORED}, object={"id": long}, result={"score": {"scaled": 0.5}})
    events, _, _, counts = xapi(value)
    assert events["event_id"].tolist() == ["sha1:" + hashlib.sha1(json.dumps(value).encode()).hexdigest()]
    assert events["assessment_id"].tolist() == [s.assessment_key(long)]
    assert counts[s.NO_ID] == 1 and counts[s.SHORTENED] == 1


# --- Caliper events ----------------------------------------------------------------------------

STUDENT = {"id": "https://example.edu/users/554433", "type": "Person"}
EDAPP = {"id": "https://example.edu/lms", "type": "SoftwareApplication", "name": "Canvas LMS"}


def caliper_list():
    return [
        {"id": "urn:uuid:e1", "type": "SessionEvent", "action": "LoggedIn", "actor": STUDENT, "edApp": EDAPP,
         "object": EDAPP, "eventTime": "2026-11-02T15:00:00.000Z"},
        {"id": "urn:uuid:e2", "type": "NavigationEvent", "action": "NavigatedTo", "actor": STUDENT,
         "edApp": "https://www.dreambox.com/app", "object": {"id": "https://www.dreambox.com/l/1"},
         "eventTime": "2026-11-02T15:05:00.000Z"},
        {"id": "urn:uuid:e3", "type": "http://purl.imsglobal.org/caliper/v1/ViewEvent", "action": "Viewed",
         "actor": "https://example.edu/users/554433",
         "object": {"id": "https://reader.lexia.co.uk/b/9", "isPartOf": {"id": "https://lexia.co.uk/core5"}},
         "eventTime": "2026-11-02T15:06:00Z"},
        {"id": "urn:uuid:e4", "type": "GradeEvent", "action": "Graded", "edApp": EDAPP,
         "actor": {"id": "https://example.edu/autograder", "type": "SoftwareApplication"},
         "object": {"id": "https://example.edu/attempts/1", "type": "Attempt", "assignee": STUDENT,
                    "assignable": {"id": "https://example.edu/quizzes/3", "type": "Assessment"}},
         "generated": {"id": "https://example.edu/scores/1", "type": "Score", "scoreGiven": 17, "maxScore": 20},
         "eventTime": "2026-11-02T15:30:00Z"},
        {"id": "urn:uuid:e5", "type": "MediaEvent", "action": "Started", "actor": STUDENT, "edApp": EDAPP,
         "object": {"id": "https://example.edu/video/1"}, "eventTime": "2026-11-02T15:40:00Z"},
    ]


def caliper(*values, mapping=None):
    return s.caliper_events(items(*values), actor_rules=("otherIdentifiers", "id.last_segment"),
                            app_mapping=mapping or {}, usage_types=s.DEFAULT_CALIPER_USAGE_TYPES)


def test_caliper_use_events_and_a_grade():
    given = caliper_list()
    kept = copy.deepcopy(given)
    events, bad, counts = caliper(*given)
    assert given == kept and bad.empty
    assert list(events.columns) == s.EVENT_COLUMNS
    assert events["event_id"].tolist() == ["urn:uuid:e1", "urn:uuid:e2", "urn:uuid:e3", "urn:uuid:e4"]
    assert events["student_id"].tolist() == ["554433"] * 4
    assert events["app"].tolist() == ["canvas_lms", "dreambox", "lexia", "canvas_lms"]
    assert events["use"].tolist() == [True, True, True, False]
    assert events["score"].tolist()[3] == 85.0 and events["score"].isna().tolist() == [True] * 3 + [False]
    assert events["assessment_id"].tolist() == [None, None, None, "https://example.edu/quizzes/3"]
    assert events["duration_seconds"].isna().all()
    assert events["at"].iloc[2] == pd.Timestamp("2026-11-02T15:06:00Z")
    assert counts == {"Caliper MediaEvent events, not read": 1, "apps by platform": 2, "apps by activity host": 2}


def test_caliper_events_that_are_bad_rows():
    grade = caliper_list()[3]
    no_max = {**grade, "generated": {"scoreGiven": 17}}
    zero_max = {**grade, "generated": {"scoreGiven": 17, "maxScore": 0}}
    over = {**grade, "generated": {"scoreGiven": 25, "maxScore": 20}}
    no_time = {k: v for k, v in caliper_list()[0].items() if k != "eventTime"}
    no_student = {**caliper_list()[0], "actor": {"id": "", "type": "Person"}}
    unmapped = {**caliper_list()[2], "object": {"id": "urn:uuid:b9"}}
    _, bad, _ = caliper(no_max, zero_max, over, no_time, no_student, unmapped)
    assert bad["reason"].tolist() == [
        "GradeEvent without a maxScore cannot be scaled",
        "GradeEvent without a maxScore cannot be scaled: maxScore '0'",
        "score 125 (scoreGiven 25 of maxScore 20) is outside 0..100",
        "the event has no eventTime",
        """the actor maps to no student id (rules: otherIdentifiers, id.last_segment): '{"id": "", "type": "Person"}'""",
        "object 'urn:uuid:b9' (no edApp) maps to no app id: add it to standards.apps in districts.yaml"]


def test_caliper_events_without_an_id_are_keyed_by_their_text():
    value = {k: v for k, v in caliper_list()[1].items() if k != "id"}
    events, _, counts = caliper(value)
    assert events["event_id"].tolist() == ["sha1:" + hashlib.sha1(json.dumps(value).encode()).hexdigest()]
    assert counts[s.NO_CALIPER_ID] == 1


# --- sessions and usage --------------------------------------------------------------------------

def events(*rows):
    """(student, app, UTC time, duration seconds or None[, use]) -> an events frame."""
    rows = [r if len(r) == 5 else (*r, True) for r in rows]
    return pd.DataFrame({
        "student_id": [r[0] for r in rows], "app": [r[1] for r in rows],
        "at": pd.to_datetime([r[2] for r in rows], utc=True),
        "duration_seconds": pd.Series([r[3] for r in rows], dtype="float64"), "use": [r[4] for r in rows]})


def usage(*rows):
    return pd.DataFrame({"student_id": pd.Series([r[0] for r in rows], dtype=object),
                         "app": pd.Series([r[1] for r in rows], dtype=object),
                         "date": pd.Series([r[2] for r in rows], dtype=object),
                         "minutes": pd.Series([r[3] for r in rows], dtype="float64"),
                         "sessions": pd.Series([r[4] for r in rows], dtype="int64")})


def sessions(frame, zone="UTC", gap=30, cap=120):
    return s.sessions_usage(frame, gap_minutes=gap, cap_minutes=cap, zone=zone)


DAY = date(2026, 11, 2)


def test_statements_less_than_the_gap_apart_are_one_session():
    frame = events(*[("ann", "ixl", f"2026-11-02T{t}Z", None) for t in ("10:10", "10:00", "10:25", "11:30")])
    kept = frame.copy()
    out, counts = sessions(frame)
    pd.testing.assert_frame_equal(out, usage(("ann", "ixl", DAY, 25.0, 2)))  # 10:00-10:25, and 11:30 alone
    assert counts == {s.SINGLE: 1}
    pd.testing.assert_frame_equal(frame, kept)


def test_a_gap_of_exactly_gap_minutes_starts_a_new_session():
    out, counts = sessions(events(("ann", "ixl", "2026-11-02T10:00Z", None), ("ann", "ixl", "2026-11-02T10:30Z", None),
                                  ("ann", "ixl", "2026-11-02T10:45Z", None)))
    pd.testing.assert_frame_equal(out, usage(("ann", "ixl", DAY, 15.0, 2)))
    assert counts == {s.SINGLE: 1}


def test_a_three_hour_chain_is_capped():
    chain = pd.date_range("2026-11-02T09:00Z", "2026-11-02T12:00Z", freq="20min")
    out, counts = sessions(events(*[("ann", "ixl", t, None) for t in chain]))
    pd.testing.assert_frame_equal(out, usage(("ann", "ixl", DAY, 120.0, 1)))
    assert counts == {"sessions capped at 120 minutes": 1}


def test_a_stated_duration_is_its_own_session_and_holds_the_statements_inside_it():
    frame = events(("ann", "ixl", "2026-11-02T10:20Z", 1200.0),  # PT20M: 10:00-10:20
                   ("ann", "ixl", "2026-11-02T10:05Z", None),  # inside: not counted again
                   ("ann", "ixl", "2026-11-02T10:00Z", None),  # at the start: inside too
                   ("ann", "ixl", "2026-11-02T10:35Z", None),  # outside: a session alone
                   ("bo", "ixl", "2026-11-02T10:10Z", None))  # another student: not held
    out, counts = sessions(frame)
    pd.testing.assert_frame_equal(out, usage(("ann", "ixl", DAY, 20.0, 2), ("bo", "ixl", DAY, 0.0, 1)))
    assert counts == {s.INSIDE: 2, s.SINGLE: 2}


def test_a_long_duration_is_capped_and_counted_on_the_day_it_started():
    # PT3H ending 2026-11-02 07:00Z started 04:00Z = 22:00 CST on 1 November
    out, counts = sessions(events(("ann", "ixl", "2026-11-02T07:00Z", 10800.0)), zone="America/Chicago")
    pd.testing.assert_frame_equal(out, usage(("ann", "ixl", date(2026, 11, 1), 120.0, 1)))
    assert counts == {"durations capped at 120 minutes": 1}


def test_a_session_crossing_local_midnight_counts_on_its_first_day():
    # 05:50Z and 06:10Z are 23:50 and 00:10 in Chicago (CST, UTC-6, after 1 November 2026)
    frame = events(("ann", "ixl", "2026-11-02T05:50Z", None), ("ann", "ixl", "2026-11-02T06:10Z", None))
    out, _ = sessions(frame, zone="America/Chicago")
    pd.testing.assert_frame_equal(out, usage(("ann", "ixl", date(2026, 11, 1), 20.0, 1)))


def test_students_and_apps_are_kept_apart():
    frame = events(("bo", "ixl", "2026-11-02T10:07Z", None), ("ann", "ixl", "2026-11-02T10:00Z", None),
                   ("ann", "lexia", "2026-11-02T10:05Z", None), ("ann", "ixl", "2026-11-02T10:10Z", None),
                   ("ann", "ixl", "2026-11-03T10:00Z", None), ("ann", "ixl", "2026-11-02T10:01Z", None, False))
    out, counts = sessions(frame)
    pd.testing.assert_frame_equal(out, usage(("ann", "ixl", DAY, 10.0, 1), ("ann", "ixl", date(2026, 11, 3), 0.0, 1),
                                             ("ann", "lexia", DAY, 0.0, 1), ("bo", "ixl", DAY, 0.0, 1)))
    assert counts == {s.SINGLE: 3, s.NOT_USE_ROWS: 1}


def test_no_events_no_usage():
    out, counts = sessions(events())
    pd.testing.assert_frame_equal(out, usage())
    assert not counts


def test_caliper_events_flow_into_usage():
    frame, _, _ = caliper(*caliper_list())
    out, counts = sessions(frame, zone="America/Chicago")
    pd.testing.assert_frame_equal(out, usage(("554433", "canvas_lms", DAY, 0.0, 1), ("554433", "dreambox", DAY, 0.0, 1),
                                             ("554433", "lexia", DAY, 0.0, 1)))
    assert counts[s.NOT_USE_ROWS] == 1


def test_overlapping_stated_durations_are_one_session_not_added():
    # completed and terminated, each PT30M ending 10:30 (10:00-10:30), and PT20M ending 10:40
    # (10:20-10:40) overlaps them: one session 10:00-10:40; PT5M ending 11:00 stands alone
    frame = events(("ann", "ixl", "2026-11-02T10:30Z", 1800.0), ("ann", "ixl", "2026-11-02T10:30Z", 1800.0),
                   ("ann", "ixl", "2026-11-02T10:40Z", 1200.0), ("ann", "ixl", "2026-11-02T11:00Z", 300.0),
                   ("bo", "ixl", "2026-11-02T10:30Z", 1800.0))
    out, counts = sessions(frame)
    pd.testing.assert_frame_equal(out, usage(("ann", "ixl", DAY, 45.0, 2), ("bo", "ixl", DAY, 30.0, 1)))
    assert counts == {s.OVERLAPPING: 2}


def test_a_duration_over_a_year_and_an_objecttype_that_is_not_text_are_bad_rows():
    with pytest.raises(ValueError, match="longer than a year"):
        s.parse_duration("PT99999999999S")
    assert s.parse_duration("P366D") == 366 * 86400
    events_, _, bad, _ = xapi(statement(result={"duration": "P200000D"}),
                              statement(id="s-2", object={"objectType": ["Activity"], "id": "https://x.org/a"}),
                              statement(id="s-3"))
    assert events_["event_id"].tolist() == ["s-3"]
    assert bad["line"].tolist() == [1, 2]
    assert "P200000D" in bad["reason"][0] and "objectType" in bad["reason"][1]
