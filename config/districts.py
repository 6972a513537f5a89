"""districts.yaml: load, validate, and expose as frozen dataclasses.

Every problem in the file is collected and reported together, naming the district and
the key, before any job runs or the database is touched (CONTRACT.md, districts.yaml).
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from analytics.bands import BAND_ORDER as BAND_NAMES
from analytics.identifiers import check_app_id, check_district_id

log = logging.getLogger(__name__)


# Optional settings: their defaults, and whether a district may override them.
DEFAULTS: dict[str, int] = {
    "assessment_window_days": 30,
    "latest_window_days": 30,
    "most_used_top_n": 3,
    "stale_after_days": 14,
    "recommend_min_students": 200,  # type 1 students for the model basis (README, Recommendations)
    "recommend_min_schools": 6,
    "recommend_min_users": 30,  # users of an app in their window for its effect to be resolved
}
DEFAULT_BANDS = {"excellent": 88, "satisfactory": 69, "needs improvement": 55, "unsatisfactory": 0}
TOP_KEYS = {"school_year_start", "schedule", "bands", "districts", "web", "gpg_senders", *DEFAULTS}
DISTRICT_KEYS = {"id", "name", "apps", "enabled", "bands", "source", "clix", "standards", "sources",
                 "fetch_monthly_bytes", "gpg_senders", *DEFAULTS}
# An OpenPGP fingerprint: 40 hex digits (v4 keys) or 64 (v5 and v6), spaces between groups allowed.
FINGERPRINT = re.compile(r"[0-9A-F]{40}|[0-9A-F]{64}")
SOURCES = ("files", "clix")  # what the landing folder holds: our landing files, or CLIx school-server trees


class ConfigError(Exception):
    """districts.yaml (or a command-line value) is invalid; `problems` lists every one."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


@dataclass(frozen=True)
class ClixOptions:
    """How a CLIx school-server tree is read (README, "CLIx school-server trees")."""
    timezone: str = "Asia/Kolkata"  # the servers' naive local times are in this zone
    visit_cap_minutes: int = 30  # an activity visit counts at most this long (idle tabs)
    session_cap_minutes: int = 120  # a tool session (first to last event) counts at most this long
    staff_accounts: tuple[str, ...] = ("^administrator$", "-sp100$", "^demo")  # regexes on the username
    states: tuple[str, ...] = ("ct", "mz", "rj", "tg")  # state folders read; any other is reported


CLIX_KEYS = {"timezone", "visit_cap_minutes", "session_cap_minutes", "staff_accounts", "states"}

_ADL = "http://adlnet.gov/expapi/verbs/"


@dataclass(frozen=True)
class StandardsOptions:
    """How xAPI statements, Caliper events and OneRoster bundles map to our tables (README,
    "xAPI, Caliper and OneRoster"): every rule that turns an outside value into ours."""
    timezone: str = "UTC"  # the zone whose calendar day a session or a score falls on
    actor: tuple[str, ...] = ("account.name",)  # xAPI actor -> student id, rules tried in order
    caliper_actor: tuple[str, ...] = ("otherIdentifiers", "id.last_segment")  # Caliper Person -> student id
    apps: tuple[tuple[str, str], ...] = ()  # (platform name or activity-id prefix, app id): the mapping table
    assessment_verbs: tuple[str, ...] = tuple(_ADL + v for v in ("completed", "passed", "failed", "scored"))
    caliper_usage_events: tuple[str, ...] = ("SessionEvent", "NavigationEvent", "ViewEvent")
    session_gap_minutes: int = 30  # statements of one student and app less than this apart: one session
    session_cap_minutes: int = 120  # a session (or a stated duration) counts at most this long
    oneroster_student_id: str = "sourcedId"  # the users.csv column that is our student id

    @property
    def app_mapping(self) -> dict[str, str]:
        return dict(self.apps)


STANDARDS_KEYS = {"timezone", "actor", "caliper_actor", "apps", "assessment_verbs", "caliper_usage_events",
                  "session_gap_minutes", "session_cap_minutes", "oneroster_student_id"}
ACTOR_RULES = ("account.name", "mbox", "mbox_local", "mbox_sha1sum", "openid")  # analytics.standards
CALIPER_ACTOR_RULES = ("otherIdentifiers", "id.last_segment", "id")
ONEROSTER_ID_RULES = ("sourcedId", "identifier", "username")


@dataclass(frozen=True)
class Source:
    """One place a district publishes its data, fetched into its landing folder before ingest
    (README, "fetch"). Credentials never live here: they come from the environment."""
    name: str  # the ledger's name for it, and the landing sub-folder its files land in
    type: str  # s3 | sftp | https | sql
    url: str  # s3://bucket/prefix, sftp://[user@]host[:port]/path, https://host/path; sql: none
    options: tuple[tuple[str, Any], ...] = ()

    def option(self, key: str, default: Any = None) -> Any:
        return dict(self.options).get(key, default)


SOURCE_TYPES = ("s3", "sftp", "https", "sql")
SOURCE_KEYS = {"name", "url", "include", "timeout_seconds", "retries",  # every type
               "endpoint_url", "profile", "region",  # s3
               "key_file", "username", "known_hosts",  # sftp
               "url_env", "table", "watermark", "kind"}  # sql
SECRET_KEYS = {"password", "secret", "aws_secret_access_key", "aws_access_key_id", "token", "passphrase", "key"}
_SOURCE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,40}$")


@dataclass(frozen=True)
class District:
    id: str
    name: str
    apps: tuple[str, ...]
    enabled: bool
    bands: dict[str, float]  # band name -> inclusive lower bound, highest band first
    assessment_window_days: int
    latest_window_days: int
    most_used_top_n: int
    stale_after_days: int
    recommend_min_students: int
    recommend_min_schools: int
    recommend_min_users: int
    source: str = "files"  # "files" or "clix"
    clix: ClixOptions = ClixOptions()
    standards: StandardsOptions = StandardsOptions()
    sources: tuple[Source, ...] = ()
    fetch_monthly_bytes: int | None = None  # bytes fetched in a calendar month (UTC) at most; None: no limit
    # fingerprints of the keys whose good signature a .gpg file must carry; (): none needed
    gpg_senders: tuple[str, ...] = ()

    def __hash__(self) -> int:  # bands is a dict; ids are unique within a config
        return hash(self.id)


@dataclass(frozen=True)
class Settings:
    school_year_start: tuple[int, int]  # (month, day)
    daily_at: str  # "HH:MM" UTC
    districts: tuple[District, ...]
    web_host: str = "127.0.0.1"  # web: where --serve serves the dashboard too (README, Dashboard)
    web_port: int | None = None  # None: --serve serves no dashboard

    def district(self, district_id: str) -> District:
        for d in self.districts:
            if d.id == district_id:
                return d
        raise KeyError(district_id)


def load(path: str | Path) -> Settings:
    """Read and validate districts.yaml; raise ConfigError listing every problem."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(source, ["file not found (set DISTRICTS_FILE or create it)"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, [f"cannot be read: {exc}"]) from None
    return parse(yaml_load(text, source), source=source)


MAX_FILE_CHARS = 1 << 20  # districts.yaml of a thousand districts is ~100 KB


def yaml_load(text: str, source: str) -> Any:
    """Parse YAML text like yaml.safe_load, refusing a key given twice in one mapping, and
    anchors and aliases (`&a`, `*a`: a few lines of them expand to gigabytes, an alias bomb)."""
    if len(text) > MAX_FILE_CHARS:
        raise ConfigError(source, [f"is {len(text):,} characters long; at most {MAX_FILE_CHARS:,} are read"])
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(source, [f"is not valid YAML: {_yaml_problem(exc, text)}"[:500]]) from None


def _at(line: int, column: int) -> str:
    return f"line {line + 1}, column {column + 1}"


def _yaml_problem(exc: yaml.YAMLError, text: str) -> str:
    """One line: where (line and column, from 1) and what, e.g. "line 5, column 3: mapping
    values are not allowed here". PyYAML's own text names the input "<unicode string>" (it
    was given text, not the file) and spreads over several lines; the caller names the file."""
    if isinstance(exc, yaml.reader.ReaderError):  # a character YAML does not allow; position in characters
        start = text.rfind("\n", 0, exc.position) + 1
        where = _at(text.count("\n", 0, exc.position), exc.position - start)
        return f"{where}: unacceptable character #x{exc.character:04x}: {exc.reason}"
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem:
            context = exc.context
            other = exc.context_mark
            if other is not None and (mark is None or (other.line, other.column) != (mark.line, mark.column)):
                context += f" at {_at(other.line, other.column)}"
            problem += f" ({context})"
        if "'\\t'" in problem:  # PyYAML writes the character as '\t'
            problem += "; YAML indents with spaces, not tabs"
        return f"{_at(mark.line, mark.column)}: {problem}" if mark is not None else problem
    return " ".join(str(exc).replace('in "<unicode string>", ', "").split())


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.safe_load, except that a key given twice in one mapping is an error, not a
    silent overwrite (two `enabled:` lines are a typo to report)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent) or getattr(self.peek_event(), "anchor", None) is not None:
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "anchors and aliases (&name, *name) are not allowed in districts.yaml: write "
                            "each value out", event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice in one mapping", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse(raw: Any, *, source: str = "districts.yaml") -> Settings:
    problems: list[str] = []
    if not isinstance(raw, dict):
        raise ConfigError(source, [f"must be a mapping of settings; got {type(raw).__name__}"])

    for key in sorted(set(raw) - TOP_KEYS, key=str):
        problems.append(f"unknown key {key!r}; expected one of {sorted(TOP_KEYS)}")

    start = _school_year_start(raw.get("school_year_start", "08-01"), problems)
    daily_at = _schedule(raw.get("schedule", {"daily_at": "02:00"}), problems)
    bands = _bands(raw.get("bands", DEFAULT_BANDS), "bands", problems)
    defaults = {k: _positive_int(raw.get(k, v), k, problems) for k, v in DEFAULTS.items()}
    senders = _fingerprints(raw.get("gpg_senders", []), "gpg_senders", problems)

    districts: list[District] = []
    entries = raw.get("districts")
    if entries is None:
        problems.append("missing key 'districts' (a list, may be empty: districts: [])")
        entries = []
    elif not isinstance(entries, list):
        problems.append(f"'districts' must be a list; got {type(entries).__name__}")
        entries = []
    seen: set[str] = set()
    for position, entry in enumerate(entries, start=1):
        district = _district(entry, position, bands, defaults, senders, problems)
        district_id = entry.get("id") if isinstance(entry, dict) else None
        if isinstance(district_id, str):
            if district_id in seen:
                problems.append(f"district {district_id!r}: duplicate id (entry {position})")
                continue
            seen.add(district_id)
        if district is not None:
            districts.append(district)

    web = raw.get("web", {})
    web_host, web_port = "127.0.0.1", None
    if not isinstance(web, dict) or set(web) - {"port", "host"}:
        problems.append(f"web must be a mapping of port (and host); got {web!r}")
    else:
        web_host = web.get("host", "127.0.0.1")
        if "port" in web:
            web_port = _positive_int(web["port"], "web: port", problems)
        if not isinstance(web_host, str) or not web_host:
            problems.append(f"web: host must be an address like 127.0.0.1; got {web_host!r}")
    if problems:
        raise ConfigError(source, problems)
    return Settings(school_year_start=start, daily_at=daily_at, districts=tuple(districts), web_host=web_host,
                    web_port=web_port)


def _school_year_start(value: Any, problems: list[str]) -> tuple[int, int]:
    match = re.fullmatch(r"(\d\d)-(\d\d)", value) if isinstance(value, str) else None
    if match:
        month, day = int(match[1]), int(match[2])
        try:
            date(2001, month, day)  # a non-leap year: 02-29 would not start every year
            return month, day
        except ValueError:
            pass
    problems.append(f"school_year_start must be a day as \"MM-DD\" (e.g. \"08-01\"); got {value!r}")
    return 8, 1


def _schedule(value: Any, problems: list[str]) -> str:
    if not isinstance(value, dict):
        problems.append(f"schedule must be a mapping with daily_at; got {value!r}")
        return "02:00"
    for key in sorted(set(value) - {"daily_at"}, key=str):
        problems.append(f"schedule: unknown key {key!r}; expected 'daily_at'")
    at = value.get("daily_at", "02:00")
    match = re.fullmatch(r"(\d\d):(\d\d)", at) if isinstance(at, str) else None
    if not match or int(match[1]) > 23 or int(match[2]) > 59:
        problems.append(f"schedule.daily_at must be a UTC time as \"HH:MM\"; got {at!r}")
        return "02:00"
    return at


def _bands(value: Any, where: str, problems: list[str]) -> dict[str, float]:
    expected = f"four strictly decreasing lower bounds {list(BAND_NAMES)} ending at 0"
    if not isinstance(value, dict):
        problems.append(f"{where} must be a mapping of {expected}; got {value!r}")
        return dict(DEFAULT_BANDS)
    unknown = sorted(set(value) - set(BAND_NAMES), key=str)
    missing = [b for b in BAND_NAMES if b not in value]
    if unknown or missing:
        problems.append(
            f"{where} must name exactly {list(BAND_NAMES)}"
            + (f"; unknown {unknown}" if unknown else "")
            + (f"; missing {missing}" if missing else "")
        )
        return dict(DEFAULT_BANDS)
    bounds = [value[b] for b in BAND_NAMES]
    numeric = all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)
    if (
        not numeric
        or any(b != b or b < 0 or b > 100 for b in bounds)  # b != b: NaN
        or any(hi <= lo for hi, lo in zip(bounds, bounds[1:]))
        or bounds[-1] != 0
    ):
        problems.append(f"{where} must be {expected}, within 0..100; got {bounds}")
        return dict(DEFAULT_BANDS)
    return {b: float(value[b]) for b in BAND_NAMES}


def _positive_int(value: Any, where: str, problems: list[str]) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        problems.append(f"{where} must be a whole number of at least 1; got {value!r}")
        return 1
    return value


def _district(
    entry: Any, position: int, bands: dict[str, float], defaults: dict[str, int], senders: tuple[str, ...],
    problems: list[str],
) -> District | None:
    if not isinstance(entry, dict):
        problems.append(f"districts entry {position} must be a mapping with id and apps; got {entry!r}")
        return None
    district_id = entry.get("id")
    label = f"district {district_id!r}" if isinstance(district_id, str) else f"districts entry {position}"
    before = len(problems)

    for key in sorted(set(entry) - DISTRICT_KEYS, key=str):
        problems.append(f"{label}: unknown key {key!r}; expected one of {sorted(DISTRICT_KEYS)}")
    if district_id is None:
        problems.append(f"{label}: missing key 'id'")
    elif problem := check_district_id(district_id):
        problems.append(f"{label}: {problem}")

    apps = entry.get("apps")
    if not isinstance(apps, list) or not apps:
        problems.append(f"{label}: apps must be a non-empty list of app ids; got {apps!r}")
        apps = []
    for app in apps:
        if problem := check_app_id(app):
            problems.append(f"{label}: apps: {problem}")
    repeated = sorted({a for a in apps if isinstance(a, str) and apps.count(a) > 1})
    if repeated:
        problems.append(f"{label}: apps lists {repeated} more than once")

    name = entry.get("name", district_id)
    if not isinstance(name, str) or not name.strip():
        problems.append(f"{label}: name must be non-empty text; got {name!r}")
    enabled = entry.get("enabled", True)
    if not isinstance(enabled, bool):
        problems.append(f"{label}: enabled must be true or false; got {enabled!r}")
    district_bands = _bands(entry["bands"], f"{label}: bands", problems) if "bands" in entry else bands
    settings = {
        k: _positive_int(entry[k], f"{label}: {k}", problems) if k in entry else v
        for k, v in defaults.items()
    }
    source = entry.get("source", "files")
    if source not in SOURCES:
        problems.append(f"{label}: source must be one of {list(SOURCES)}; got {source!r}")
    clix = _clix(entry.get("clix", {}), label, problems)
    if "clix" in entry and source != "clix":
        problems.append(f"{label}: clix options are given but source is {source!r} (set source: clix)")
    standards = _standards(entry.get("standards", {}), label, problems)
    sources = _sources(entry.get("sources", []), label, problems)
    limit = entry.get("fetch_monthly_bytes")
    if limit is not None:
        limit = _positive_int(limit, f"{label}: fetch_monthly_bytes", problems)
    if "gpg_senders" in entry:  # the district's own list replaces the top-level one
        senders = _fingerprints(entry["gpg_senders"], f"{label}: gpg_senders", problems)
    if len(problems) > before:
        return None
    return District(
        id=district_id, name=name, apps=tuple(apps), enabled=enabled, bands=district_bands, **settings,
        source=source, clix=clix, standards=standards, sources=sources, fetch_monthly_bytes=limit,
        gpg_senders=senders,
    )


def _fingerprints(value: Any, where: str, problems: list[str]) -> tuple[str, ...]:
    """gpg_senders: OpenPGP fingerprints, as `gpg --fingerprint` prints them (spaces between
    groups are fine), kept upper-case without spaces, as gpg's status lines write them."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.append(f"{where} must be a list of OpenPGP fingerprints (40 hex digits, as gpg --fingerprint "
                        f"prints them); got {value!r}")
        return ()
    out: list[str] = []
    for text in value:
        fingerprint = "".join(text.split()).upper()
        if not FINGERPRINT.fullmatch(fingerprint):
            short = re.fullmatch(r"(0X)?[0-9A-F]{8}|(0X)?[0-9A-F]{16}", fingerprint)
            problems.append(f"{where}: {text!r} is " + ("a key id, not a fingerprint" if short else "not a fingerprint")
                            + ": give the 40 hex digits gpg --fingerprint prints for the sender's key")
        elif fingerprint in out:
            problems.append(f"{where}: {text!r} is listed twice")
        else:
            out.append(fingerprint)
    return tuple(out)


def _zone(value: Any, where: str, problems: list[str], example: str) -> str | None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        if not isinstance(value, str) or not value:
            raise ValueError
        ZoneInfo(value)
        return value
    except (ValueError, ZoneInfoNotFoundError):
        problems.append(f"{where}: timezone must be an IANA time zone like \"{example}\"; got {value!r}")
        return None


def _rules(value: Any, allowed: tuple[str, ...], where: str, problems: list[str]) -> tuple[str, ...] | None:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        problems.append(f"{where} must be a non-empty list of rules from {list(allowed)}; got {value!r}")
        return None
    unknown = [v for v in value if v not in allowed]
    if unknown:
        problems.append(f"{where}: unknown rule(s) {unknown}; expected rules from {list(allowed)}")
        return None
    return tuple(value)


def _standards(value: Any, label: str, problems: list[str]) -> StandardsOptions:
    where = f"{label}: standards"
    if not isinstance(value, dict):
        problems.append(f"{where} must be a mapping of {sorted(STANDARDS_KEYS)}; got {value!r}")
        return StandardsOptions()
    for key in sorted(set(value) - STANDARDS_KEYS, key=str):
        problems.append(f"{where}: unknown key {key!r}; expected one of {sorted(STANDARDS_KEYS)}")
    options: dict[str, Any] = {}
    if "timezone" in value and (zone := _zone(value["timezone"], where, problems, "America/Chicago")):
        options["timezone"] = zone
    for key, allowed in (("actor", ACTOR_RULES), ("caliper_actor", CALIPER_ACTOR_RULES)):
        if key in value and (rules := _rules(value[key], allowed, f"{where}: {key}", problems)):
            options[key] = rules
    if "oneroster_student_id" in value:
        rule = value["oneroster_student_id"]
        if rule not in ONEROSTER_ID_RULES:
            problems.append(f"{where}: oneroster_student_id must be one of {list(ONEROSTER_ID_RULES)}; got {rule!r}")
        else:
            options["oneroster_student_id"] = rule
    if "apps" in value:
        table = value["apps"]
        if not isinstance(table, dict):
            problems.append(f"{where}: apps must map a platform name or activity-id prefix to an app id; "
                            f"got {table!r}")
        else:
            pairs = []
            for outside, app in table.items():
                if not isinstance(outside, str) or not outside.strip():
                    problems.append(f"{where}: apps: {outside!r} must be non-empty text")
                elif problem := check_app_id(app):
                    problems.append(f"{where}: apps: {outside!r}: {problem}")
                else:
                    pairs.append((outside.strip(), app))
            options["apps"] = tuple(pairs)
    for key in ("assessment_verbs", "caliper_usage_events"):
        if key in value:
            items = value[key]
            if not isinstance(items, list) or not all(isinstance(v, str) and v.strip() for v in items):
                problems.append(f"{where}: {key} must be a list of " + ("verb IRIs" if key == "assessment_verbs"
                                                                        else "Caliper event types") + f"; got {items!r}")
            else:
                options[key] = tuple(v.strip() for v in items)
    for key in ("session_gap_minutes", "session_cap_minutes"):
        if key in value:
            options[key] = _positive_int(value[key], f"{where}: {key}", problems)
    return StandardsOptions(**options)


def _sources(value: Any, label: str, problems: list[str]) -> tuple[Source, ...]:
    """The district's `sources:`, each checked: its type from the URL (or `sql`), its keys,
    no credentials (they come from the environment: README, "fetch")."""
    from urllib.parse import urlsplit

    if not isinstance(value, list):
        problems.append(f"{label}: sources must be a list of sources; got {value!r}")
        return ()
    out: list[Source] = []
    for position, entry in enumerate(value, start=1):
        where = f"{label}: sources[{position}]"
        if not isinstance(entry, dict) or "url" not in entry:
            problems.append(f"{where} must be a mapping with a url (s3://, sftp://, https:// or sql); got {entry!r}")
            continue
        secrets = sorted(k for k in entry if isinstance(k, str) and k.lower() in SECRET_KEYS)
        if secrets:
            problems.append(f"{where}: {', '.join(secrets)}: credentials are never read from districts.yaml; "
                            "set them in the environment (README, fetch)")
        for key in sorted(set(entry) - SOURCE_KEYS - SECRET_KEYS, key=str):
            problems.append(f"{where}: unknown key {key!r}; expected some of {sorted(SOURCE_KEYS)}")
        url = entry["url"]
        kind = "sql" if url == "sql" else (urlsplit(url).scheme if isinstance(url, str) else None)
        kind = "https" if kind == "http" else kind
        if kind not in SOURCE_TYPES:
            problems.append(f"{where}: url must start with s3://, sftp://, https:// (or http://), or be sql; got {url!r}")
            continue
        parts = urlsplit(url) if kind != "sql" else None
        if parts is not None and (not parts.netloc or (parts.password is not None)):
            problems.append(f"{where}: url {url!r} must name a host (or bucket) and carry no password")
            continue
        if kind == "sftp" and "key_file" not in entry:
            problems.append(f"{where}: an sftp source needs key_file (the private key's path)")
        if kind == "sql":
            for key in ("url_env", "table", "watermark", "kind"):
                if not isinstance(entry.get(key), str) or not entry.get(key):
                    problems.append(f"{where}: a sql source needs {key}")
            if entry.get("kind") not in (None, "usage", "assessments", "forecasts", "score_averages", "students"):
                problems.append(f"{where}: kind must be one of usage, assessments, forecasts, score_averages, "
                                f"students; got {entry.get('kind')!r}")
        name = entry.get("name") or re.sub(r"[^a-z0-9_-]+", "-", (f"sql-{entry.get('table')}" if kind == "sql" else
                                                                  f"{kind}-{parts.netloc}").lower()).strip("-")
        name = str(name)[:41]
        if not _SOURCE_NAME.match(name):
            problems.append(f"{where}: name must match {_SOURCE_NAME.pattern}; got {name!r}")
        if any(s.name == name for s in out):
            problems.append(f"{where}: two sources are named {name!r} (give each a name)")
        for key in ("timeout_seconds", "retries"):
            if key in entry:
                _positive_int(entry[key], f"{where}: {key}", problems)
        options = tuple(sorted((k, v) for k, v in entry.items() if k not in ("name", "url") and k in SOURCE_KEYS))
        out.append(Source(name=name, type=kind, url=url, options=options))
    return tuple(out)


def _clix(value: Any, label: str, problems: list[str]) -> ClixOptions:
    where = f"{label}: clix"
    if not isinstance(value, dict):
        problems.append(f"{where} must be a mapping of {sorted(CLIX_KEYS)}; got {value!r}")
        return ClixOptions()
    for key in sorted(set(value) - CLIX_KEYS, key=str):
        problems.append(f"{where}: unknown key {key!r}; expected one of {sorted(CLIX_KEYS)}")
    options = {}
    if zone := _zone(value.get("timezone", ClixOptions.timezone), where, problems, "Asia/Kolkata"):
        options["timezone"] = zone
    for key in ("visit_cap_minutes", "session_cap_minutes"):
        if key in value:
            options[key] = _positive_int(value[key], f"{where}: {key}", problems)
    if "staff_accounts" in value:
        rules = value["staff_accounts"]
        if not isinstance(rules, list) or not all(isinstance(r, str) for r in rules):
            problems.append(f"{where}: staff_accounts must be a list of regular expressions; got {rules!r}")
        else:
            for rule in rules:
                try:
                    re.compile(rule)
                except re.error as exc:
                    problems.append(f"{where}: staff_accounts: {rule!r} is not a regular expression ({exc})")
            options["staff_accounts"] = tuple(rules)
    if "states" in value:
        states = value["states"]
        if not isinstance(states, list) or not all(isinstance(c, str) and re.fullmatch(r"[a-z]{2,3}", c)
                                                     for c in states):
            problems.append(f"{where}: states must be a list of lower-case state codes like mz; got {states!r}")
        else:
            options["states"] = tuple(states)
    return ClixOptions(**options)


# --- editing districts.yaml as text, so comments, order and the other districts stay -----

def _districts_block(lines: list[str]) -> tuple[int, int]:
    """(index of the `districts:` line, index just past its block)."""
    start = next((i for i, line in enumerate(lines) if re.match(r"districts\s*:", line)), None)
    if start is None:
        raise ConfigError("districts.yaml", ["missing key 'districts'"])
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or lines[end][0] in " \t#-"):
        end += 1
    while end > start + 1 and not lines[end - 1].strip():  # trailing blank lines stay after the block
        end -= 1
    return start, end


def _yaml_scalar(value: str) -> str:
    return yaml.safe_dump(value, default_style=None, width=10_000).strip().removesuffix("\n...").strip()


def add_district_text(text: str, district_id: str, apps: list[str], name: str | None) -> str:
    """districts.yaml's text with one more district at the end of the list; nothing else changes."""
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    start, end = _districts_block(lines)
    items = [line for line in lines[start + 1:end] if line.lstrip().startswith("- ")]
    indent = items[0][: len(items[0]) - len(items[0].lstrip())] if items else "  "
    entry = [f"{indent}- id: {district_id}\n"]
    if name:
        entry.append(f"{indent}  name: {_yaml_scalar(name)}\n")
    entry += [f"{indent}  apps: [{', '.join(apps)}]\n", f"{indent}  enabled: true\n"]
    if re.match(r"districts\s*:\s*\[\s*\]", lines[start]):  # "districts: []" becomes a block list
        lines[start] = "districts:\n"
    return "".join(lines[:end] + entry + lines[end:])


def set_enabled_text(text: str, district_id: str, enabled: bool) -> str:
    """districts.yaml's text with the district's `enabled` set; nothing else changes."""
    lines = text.splitlines(keepends=True)
    start, end = _districts_block(lines)
    first = next((i for i in range(start + 1, end)
                  if re.match(rf"\s*-\s+id\s*:\s*['\"]?{re.escape(district_id)}['\"]?\s*(#.*)?$", lines[i])), None)
    if first is None:
        raise ConfigError("districts.yaml", [f"district {district_id!r} is not in the list (or not as '- id: ...')"])
    item_indent = len(lines[first]) - len(lines[first].lstrip())
    last = first + 1
    while last < end and (not lines[last].strip() or len(lines[last]) - len(lines[last].lstrip()) > item_indent):
        last += 1
    value = "true" if enabled else "false"
    for i in range(first + 1, last):
        match = re.match(r"(\s*)enabled\s*:\s*\S+(.*)$", lines[i].rstrip("\n"))
        if match:
            lines[i] = f"{match[1]}enabled: {value}{match[2]}\n"
            return "".join(lines)
    field_indent = " " * (item_indent + 2)
    lines.insert(first + 1, f"{field_indent}enabled: {value}\n")
    return "".join(lines)


def write_text_checked(path: str | Path, text: str) -> Settings:
    """Validate `text` as districts.yaml, then replace the file atomically; return the settings."""
    path = Path(path)
    settings = parse(yaml_load(text, str(path)), source=str(path))
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
    return settings
