"""districts.yaml validation: each mistake has its own message; all are reported together."""
import copy
from datetime import date

import pytest

import config
from config import ConfigError

VALID = {
    "school_year_start": "08-01",
    "schedule": {"daily_at": "02:00"},
    "bands": {"excellent": 88, "satisfactory": 69, "needs improvement": 55, "unsatisfactory": 0},
    "districts": [
        {"id": "springfield", "name": "Springfield Unified", "apps": ["dreambox", "lexia"],
         "bands": {"excellent": 90, "satisfactory": 70, "needs improvement": 60, "unsatisfactory": 0}},
        {"id": "shelbyville", "apps": ["ixl"], "enabled": False, "most_used_top_n": 5},
    ],
}


def problems(raw):
    with pytest.raises(ConfigError) as info:
        config.parse(raw)
    return info.value.problems


def changed(**district_changes):
    raw = copy.deepcopy(VALID)
    raw["districts"][0].update(district_changes)
    return raw


def test_valid_file_gives_settings_with_defaults_and_overrides():
    settings = config.parse(VALID)
    spring, shelby = settings.districts
    assert settings.school_year_start == (8, 1) and settings.daily_at == "02:00"
    assert spring.bands == {"excellent": 90.0, "satisfactory": 70.0, "needs improvement": 60.0, "unsatisfactory": 0.0}
    assert shelby.bands["excellent"] == 88.0 and shelby.name == "shelbyville" and not shelby.enabled
    assert (spring.most_used_top_n, shelby.most_used_top_n, spring.assessment_window_days) == (3, 5, 30)


def test_unknown_top_level_key():
    raw = copy.deepcopy(VALID) | {"shedule": {}}
    assert problems(raw) == ["unknown key 'shedule'; expected one of "
                             "['assessment_window_days', 'bands', 'districts', 'gpg_senders', 'latest_window_days', "
                             "'most_used_top_n', 'recommend_min_schools', 'recommend_min_students', "
                             "'recommend_min_users', 'schedule', 'school_year_start', 'stale_after_days', 'web']"]


def test_unknown_district_key_names_the_district():
    [problem] = problems(changed(app=["x"]))
    assert problem.startswith("district 'springfield': unknown key 'app'")


def test_duplicate_id():
    raw = copy.deepcopy(VALID)
    raw["districts"][1]["id"] = "springfield"
    assert problems(raw) == ["district 'springfield': duplicate id (entry 2)"]


@pytest.mark.parametrize("bad_id", ["Springfield", "x'; drop table usage; --", "9lives", "a" * 32, "", "beta\n"])
def test_bad_district_id(bad_id):
    [problem] = problems(changed(id=bad_id))
    assert "district id must match ^[a-z][a-z0-9_]{0,30}$" in problem and repr(bad_id) in problem


def test_bad_app_id():
    [problem] = problems(changed(apps=["dreambox", "Lexia Core"]))
    assert problem == "district 'springfield': apps: app id must match ^[a-z][a-z0-9_]{0,40}$; got 'Lexia Core'"


def test_an_app_id_with_a_trailing_newline_is_refused():
    [problem] = problems(changed(apps=["ixl\n"]))
    assert problem.endswith("got 'ixl\\n'")


def test_a_key_given_twice_is_an_error(tmp_path):
    path = tmp_path / "districts.yaml"
    path.write_text("districts:\n  - id: a\n    apps: [ixl]\n    enabled: true\n    enabled: false\n")
    with pytest.raises(ConfigError, match="key 'enabled' is given twice in one mapping"):
        config.load(path)


def test_empty_and_repeated_apps():
    assert problems(changed(apps=[])) == ["district 'springfield': apps must be a non-empty list of app ids; got []"]
    assert problems(changed(apps=["ixl", "ixl"])) == ["district 'springfield': apps lists ['ixl'] more than once"]


@pytest.mark.parametrize(
    "bands",
    [
        {"excellent": 40, "satisfactory": 30, "needs improvement": 70, "unsatisfactory": 0},  # not decreasing
        {"excellent": 88, "satisfactory": 69, "needs improvement": 69, "unsatisfactory": 0},  # not strictly
        {"excellent": 88, "satisfactory": 69, "needs improvement": 55, "unsatisfactory": 5},  # not ending at 0
        {"excellent": 120, "satisfactory": 69, "needs improvement": 55, "unsatisfactory": 0},  # above 100
        {"excellent": "high", "satisfactory": 69, "needs improvement": 55, "unsatisfactory": 0},
    ],
)
def test_bands_must_be_four_strictly_decreasing_bounds_ending_at_0(bands):
    [problem] = problems(changed(bands=bands))
    assert problem.startswith("district 'springfield': bands must be four strictly decreasing lower bounds")
    assert str(list(bands.values())) in problem


def test_bands_with_a_missing_or_unknown_name():
    bands = {"excellent": 88, "satisfactory": 69, "needs_improvement": 55, "unsatisfactory": 0}
    [problem] = problems(changed(bands=bands))
    assert "unknown ['needs_improvement']" in problem and "missing ['needs improvement']" in problem


@pytest.mark.parametrize("start", ["8-01", "13-01", "02-29", "02-30", 801, "August"])
def test_bad_school_year_start(start):
    raw = copy.deepcopy(VALID) | {"school_year_start": start}
    assert problems(raw) == [f'school_year_start must be a day as "MM-DD" (e.g. "08-01"); got {start!r}']


def test_bad_schedule_and_window():
    raw = copy.deepcopy(VALID) | {"schedule": {"daily_at": "25:00"}, "latest_window_days": 0}
    assert problems(raw) == [
        "schedule.daily_at must be a UTC time as \"HH:MM\"; got '25:00'",
        "latest_window_days must be a whole number of at least 1; got 0",
    ]


def test_several_mistakes_are_all_reported_together():
    raw = copy.deepcopy(VALID)
    raw["school_year_start"] = "13-01"
    raw["districts"][0]["apps"] = ["BadApp"]
    raw["districts"][1]["enabled"] = "yes"
    raw["districts"].append({"id": "springfield", "apps": ["ixl"]})
    found = problems(raw)
    assert len(found) == 4
    assert any("school_year_start" in p for p in found)
    assert any(p.startswith("district 'springfield': apps: app id") for p in found)
    assert any(p.startswith("district 'shelbyville': enabled must be true or false") for p in found)
    assert any(p == "district 'springfield': duplicate id (entry 3)" for p in found)


def test_message_names_the_file(tmp_path):
    path = tmp_path / "districts.yaml"
    path.write_text("districts:\n  - id: Bad\n    apps: [ixl]\n")
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert str(info.value).startswith(f"{path}: district 'Bad': district id must match")


def test_missing_file_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        config.load(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("districts: [\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        config.load(tmp_path / "bad.yaml")


BROKEN = "districts:\n  - id: springfield\n    apps: [ixl]\n  - id: shelbyville\n    apps: x: y\n"


def test_a_yaml_syntax_error_names_the_file_line_and_column_on_one_line(tmp_path):
    path = tmp_path / "districts.yaml"
    path.write_text(BROKEN)
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert info.value.source == str(path)
    assert info.value.problems == ["is not valid YAML: line 5, column 12: mapping values are not allowed here"]
    assert str(info.value) == f"{path}: is not valid YAML: line 5, column 12: mapping values are not allowed here"
    assert "<unicode string>" not in str(info.value)


@pytest.mark.parametrize("text, problem", [
    ("districts: [\n", "line 2, column 1: expected the node content, but found '<stream end>' "
                       "(while parsing a flow node)"),
    ("districts: [a, b\nbands: {}\n", "line 2, column 6: expected ',' or ']', but got ':' "
                                      "(while parsing a flow sequence at line 1, column 12)"),
    ("districts:\n\t- id: a\n", "line 2, column 1: found character '\\t' that cannot start any token "
                                "(while scanning for the next token); YAML indents with spaces, not tabs"),
    ("districts: []\nschedule: \x07\n", "line 2, column 11: unacceptable character #x0007: "
                                         "special characters are not allowed"),
    ("districts: []\nbands: *nope\n", "line 2, column 8: anchors and aliases (&name, *name) are not allowed in districts.yaml: write each value out"),
])
def test_each_kind_of_yaml_error_says_where_in_one_line(text, problem):
    with pytest.raises(ConfigError) as info:
        config.yaml_load(text, "districts.yaml")
    assert info.value.problems == [f"is not valid YAML: {problem}"]
    assert "<unicode string>" not in str(info.value) and "\n" not in str(info.value)


def test_a_key_given_twice_says_where(tmp_path):
    path = tmp_path / "districts.yaml"
    path.write_text("districts:\n  - id: a\n    apps: [ixl]\n    enabled: true\n    enabled: false\n")
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert str(info.value) == f"{path}: is not valid YAML: line 5, column 5: key 'enabled' is given twice in one mapping"


def test_onboarding_into_a_broken_file_names_it_and_changes_nothing(tmp_path):
    from lifecycle import onboarding as lifecycle

    path = tmp_path / "districts.yaml"
    path.write_text(BROKEN)
    with pytest.raises(ConfigError) as info:
        lifecycle.onboard(path, lambda: pytest.fail("no database before the file is valid"), tmp_path, "oakwood",
                          ["ixl"], None, date(2026, 11, 22))
    assert str(info.value) == f"{path}: is not valid YAML: line 5, column 12: mapping values are not allowed here"
    assert path.read_text() == BROKEN


# --- sources (fetch) and standards ------------------------------------------------------------

def test_sources_are_typed_by_url_and_named():
    chosen = config.parse(changed(sources=[
        {"url": "s3://partner/weekly", "endpoint_url": "http://127.0.0.1:9000"},
        {"url": "sftp://vendor.example.org:2222/out", "key_file": "/k"},
        {"url": "http://portal.example.org/exports/", "name": "portal"},
        {"url": "sql", "url_env": "REPORTING_URL", "table": "r.t", "watermark": "w", "kind": "usage"}],
        fetch_monthly_bytes=1000)).district("springfield")
    assert [(s.name, s.type) for s in chosen.sources] == [
        ("s3-partner", "s3"), ("sftp-vendor-example-org-2222", "sftp"), ("portal", "https"), ("sql-r-t", "sql")]
    assert chosen.fetch_monthly_bytes == 1000 and chosen.sources[0].option("endpoint_url") == "http://127.0.0.1:9000"


def test_credentials_unknown_keys_and_bad_urls_in_sources_are_refused_by_name():
    found = problems(changed(sources=[
        {"url": "s3://b", "aws_secret_access_key": "x"}, {"url": "s3://b", "colour": "red", "name": "b2"},
        {"url": "ftp://old.example.org/"}, {"url": "sftp://h/p"}, {"url": "sftp://u:pw@h/p", "key_file": "/k"},
        {"url": "sql", "table": "t"}]))
    text = "\n".join(found)
    assert "sources[1]: aws_secret_access_key: credentials are never read from districts.yaml" in text
    assert "sources[2]: unknown key 'colour'" in text
    assert "sources[3]: url must start with s3://, sftp://, https://" in text
    assert "sources[4]: an sftp source needs key_file" in text
    assert "sources[5]: url 'sftp://u:pw@h/p' must name a host (or bucket) and carry no password" in text
    assert "sources[6]: a sql source needs url_env" in text and "a sql source needs watermark" in text


def test_standards_rules_are_checked_by_name():
    found = "\n".join(problems(changed(standards={"actor": ["email"], "apps": {"Lexia": "Bad-Id"},
                                                  "timezone": "Mars/Olympus", "colour": 1})))
    assert "standards: actor: unknown rule(s) ['email']" in found
    assert "standards: apps: 'Lexia':" in found and "Mars/Olympus" in found and "unknown key 'colour'" in found


def test_gpg_senders_are_checked_in_districts_yaml():
    with pytest.raises(ConfigError) as raised:
        config.parse({"gpg_senders": ["0x9D450D0437EEF06B"],
                      "districts": [{"id": "alpha", "apps": ["ixl"], "gpg_senders": "ABCD"}]})
    assert raised.value.problems == [
        "gpg_senders: '0x9D450D0437EEF06B' is a key id, not a fingerprint: give the 40 hex digits gpg "
        "--fingerprint prints for the sender's key",
        "district 'alpha': gpg_senders must be a list of OpenPGP fingerprints (40 hex digits, as gpg "
        "--fingerprint prints them); got 'ABCD'",
    ]
    fpr = "8FCE CD07 D8BF 4C98 CEF0  2322 BB88 2831 114A CD36"
    s = config.parse({"gpg_senders": [fpr], "districts": [{"id": "alpha", "apps": ["ixl"]}]})
    assert s.district("alpha").gpg_senders == ("8FCECD07D8BF4C98CEF02322BB882831114ACD36",)
