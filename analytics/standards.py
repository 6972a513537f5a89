"""Event standards: xAPI statements (ADL xAPI 1.0.3, IEEE 9274.1.1) and IMS Caliper 1.1/1.2
events as rows, and those rows as usage, as pure computations (a reader hands over each
value already parsed from JSON, with its line and raw text; a job writes the rows).

Every rule is here, and every value a rule leaves out is counted under a named reason in a
Counter, or becomes a bad row (line, reason, raw) whose reason quotes the value (cut to 200
characters): nothing is dropped in silence.

Times
  - a duration is ISO 8601 PnW or PnDTnHnMnS (letters in either case, a fraction with "."
    or "," on any component), in seconds; years and months (P1Y, P1M) are refused, they are
    not a fixed length of time; "P", "PT", "P1DT", weeks with other parts, negative or other
    text are refused;
  - a timestamp is an ISO 8601 date-time YYYY-MM-DD(T| )hh:mm[:ss[.f]] (a fraction of up
    to 9 digits after "." or ",") and an offset Z, +hh:mm, +hhmm or +hh; without an offset
    it is read as UTC (counted, for rows loaded); kept as a UTC timestamp (`at`), so it must
    lie between 1677 and 2262;
  - the day of a time is its calendar day in the district's time zone (an IANA name).

App ids (an app id matches ^[a-z][a-z0-9_]{0,40}$)
  - slug: lower case, accents removed, every run of other characters as "_", no "_" at the
    ends, "app_" in front of a leading digit, at most 41 characters; nothing left: none;
  - the host of an http(s) IRI: lower case, port and a leading "www" removed, the top-level
    domain dropped (and a second-level co, com, org, net, ac, edu, gov, k12 or sch under a
    2-letter one, as in lexia.co.uk), the last label left, slugged; an IP address, or an IRI
    that is not http(s) (urn:uuid:...), has no host app;
  - the app of an activity (xAPI: object id and context.platform; Caliper: edApp id and
    name), first that holds, each counted "apps by <rule>": the mapping table
    (standards.apps in districts.yaml; keys compared trimmed and case-insensitively: a key
    equal to the platform, else the longest key that begins the activity id); the platform's
    slug (a platform with nothing to slug falls through); the activity id's host; else none,
    a bad row. A mapped value that is not an app id is none too.

Students (a student id is at most 64 characters: a longer one is a bad row)
  - xAPI actor, rules tried in the district's order, the first non-empty wins:
    account.name (trimmed; an integer name as text), mbox (without "mailto:", lower case),
    mbox_local (the mbox's part before its last "@"), mbox_sha1sum (40 hex digits, lower
    case), openid (trimmed); a Group, or an objectType other than Agent, is no student;
  - Caliper Person (or its IRI), rules in order: otherIdentifiers (the first identifier of
    type SisSourcedId, then LisSourcedId, then OneRosterSourcedId, types compared
    case-insensitively), id.last_segment (the id's last non-empty segment between "/" and
    ":", query and fragment removed), id (the id itself; "@id" when there is no "id").

Scores (0..100, rounded to 4 decimals; outside 0..100 is not loaded)
  - xAPI result.score: scaled * 100; else (raw - min) / (max - min) * 100 when min and max
    are both given and max > min; a raw score without min and max is not loaded; an object
    with neither scaled nor raw is no score;
  - Caliper GradeEvent: generated.scoreGiven / generated.maxScore * 100 (maxScore > 0);
  - the assessment id is the activity id (xAPI object id; Caliper: the attempt's assignable,
    else the attempt); one over 64 characters becomes its first 47 characters, "~" and 16
    hex digits of its SHA-1 (counted).

xAPI statements -> events, voids, bad rows
  - event_id is the statement's id, else "sha1:" and the SHA-1 of its raw text (counted);
  - a statement whose verb is voided and whose object is a StatementRef is a void (its id,
    the voided id); a voiding statement with another object is a bad row;
  - a statement whose object is an Agent, a Group, a StatementRef or a SubStatement is
    about a statement or an agent, not use: counted, no row; an object without objectType
    is an Activity; an Activity without an id, or another objectType, is a bad row;
  - at is the timestamp, else the stored time (counted); a timestamp that is there but is
    not a date-time is a bad row (the stored time does not stand in for it);
  - duration_seconds is result.duration (NaN when absent; one that does not parse: a bad
    row); use is True;
  - verbs in assessment_verbs carry a score: one with a problem still loads as use (score
    NaN, no assessment id) and adds a bad row "score not loaded (the statement's use was
    loaded): ..."; an assessment verb without a score is counted; a score on another verb
    is counted, not loaded.

Caliper events -> events, bad rows (the reader unpacks envelopes: one event per item)
  - the type is "type" (else "@type"), its last segment after "/" or "#";
  - a type in usage_types is use (a GradeEvent listed there too is read as use): the actor
    is the student, at is eventTime, the app is the edApp's (an object with id and name, or
    an IRI), else the object's isPartOf, else the object's id; duration_seconds is NaN (a
    session's stated length is not used: sessions come from the gaps);
  - a GradeEvent is a score (use False): the attempt's assignee is the student; without an
    edApp the app comes from the assignable's isPartOf, the assignable, the attempt's
    isPartOf, then the attempt; no maxScore (or not above 0), no scoreGiven, or a score
    outside 0..100 is a bad row;
  - every other type is counted "Caliper <Type> events, not read";
  - event_id is the event's id, else "sha1:" and the SHA-1 of its raw text (counted).

Events -> usage (minutes per student, app and local day)
  - only use rows count (the others are counted);
  - a row with a duration covers [at - duration, at] (a duration over a year is refused);
    covered spans of one student and app that overlap are one session (counted), from the
    first start to the last end; a session of min(length, cap) minutes on the local day of
    its start;
  - a row without one whose time lies in [start, at] of a duration row of the same student
    and app is not counted again (counted);
  - the other rows, per student and app in time order, are sessions: a row less than
    gap_minutes after the one before joins its session; a session lasts from its first to
    its last row, capped at cap_minutes, on the local day of its first row; a session of one
    row is 0 minutes (counted);
  - usage sums minutes (4 decimals) and counts sessions per student, app and day.
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from datetime import date
from urllib.parse import urlsplit

import numpy as np
import pandas as pd

from analytics.identifiers import APP_ID, STUDENT_ID_MAX

ACTOR_RULES = ("account.name", "mbox", "mbox_local", "mbox_sha1sum", "openid")
CALIPER_ACTOR_RULES = ("otherIdentifiers", "id.last_segment", "id")
ADL = "http://adlnet.gov/expapi/verbs/"
VOIDED = ADL + "voided"
DEFAULT_ASSESSMENT_VERBS = (ADL + "completed", ADL + "passed", ADL + "failed", ADL + "scored")
DEFAULT_CALIPER_USAGE_TYPES = ("SessionEvent", "NavigationEvent", "ViewEvent")
EVENT_COLUMNS = ["event_id", "student_id", "app", "at", "duration_seconds", "use", "assessment_id", "score",
                 "line", "raw"]
VOID_COLUMNS = ["event_id", "voided_id", "line"]
USAGE_COLUMNS = ["student_id", "app", "date", "minutes", "sessions"]

NOT_USE = "statements about a statement or an agent, not use"
NO_ID = "statements without an id, keyed by their text"
NO_CALIPER_ID = "Caliper events without an id, keyed by their text"
STORED_USED = "statements without a timestamp, their stored time used"
NO_OFFSET = "timestamps without a UTC offset, read as UTC"
NO_SCORE = "assessment verbs without a score"
OTHER_SCORE = "scores on verbs that are not assessment verbs, not loaded"
SHORTENED = "activity ids over 64 characters, shortened"
VOIDS = "voiding statements"
INSIDE = "statements inside a stated duration, not counted again"
SINGLE = "sessions of one statement, 0 minutes"
NOT_USE_ROWS = "rows that are not use (scores), no minutes"
NO_TIME_ROWS = "use rows without a time, not counted"
SCORE_PROBLEM = "score not loaded (the statement's use was loaded): "
ADD_APP = "add it to standards.apps in districts.yaml"

_NOT_ACTIVITIES = {"Agent", "Group", "StatementRef", "SubStatement"}
_SECOND_LEVEL = {"co", "com", "org", "net", "ac", "edu", "gov", "k12", "sch"}
_CALIPER_ID_TYPES = ("SisSourcedId", "LisSourcedId", "OneRosterSourcedId")
_SHA1SUM = re.compile(r"[0-9a-f]{40}")
_NUM = r"(\d+(?:[.,]\d+)?)"
_DURATION = re.compile(rf"P(?:{_NUM}W|(?:{_NUM}Y)?(?:{_NUM}M)?(?:{_NUM}D)?"
                       rf"(?:(T)(?:{_NUM}H)?(?:{_NUM}M)?(?:{_NUM}S)?)?)", re.I)
_TIMESTAMP = re.compile(r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?"
                        r"(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)?")
_NS = 1_000_000_000
_EPOCH_DAY = date(1970, 1, 1).toordinal()
_FIRST_NS, _LAST_NS = pd.Timestamp.min.value, pd.Timestamp.max.value


# --- small helpers ------------------------------------------------------------------------

def _quote(value) -> str:
    """A value as a reason quotes it: text in quotes, anything else as JSON in single quotes
    (so counting reasons by kind, landing_rows.reason_category, leaves the value out); 200
    characters at most."""
    if isinstance(value, str):
        return repr(value[:200])
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)[:200]
    except ValueError:  # a circular structure: not from JSON, but say something
        text = repr(value)[:200]
    return "'" + text.replace("'", "\\u0027") + "'"


def _number(value) -> float | None:
    """A JSON number as a finite float; None for anything else (booleans, text, NaN, infinities)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _text(value) -> str | None:
    """Trimmed text, or None when empty or not text."""
    return value.strip() or None if isinstance(value, str) else None


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


def _bad_frame(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame({"line": pd.Series([r[0] for r in rows], dtype="Int64"),
                         "reason": pd.Series([r[1] for r in rows], dtype=object),
                         "raw": pd.Series([r[2] for r in rows], dtype=object)})


# --- times ------------------------------------------------------------------------------

MAX_DURATION_SECONDS = 366 * 86400  # a stated duration longer than this is refused (no length of use)


def parse_duration(text: str) -> float:
    """An ISO 8601 duration (PnW or PnDTnHnMnS) in seconds; ValueError for anything else."""
    match = _DURATION.fullmatch(text.strip()) if isinstance(text, str) else None
    if not match:
        raise ValueError(f"duration {_quote(text)} is not an ISO 8601 duration such as PT4M30S (PnW or PnDTnHnMnS)")
    weeks, years, months, days, t, hours, minutes, seconds = match.groups()
    if years is not None or months is not None:
        raise ValueError(f"duration {_quote(text)}: years or months are not a fixed length of time")
    parts = [(weeks, 604800), (days, 86400), (hours, 3600), (minutes, 60), (seconds, 1)]
    given = [(float(n.replace(",", ".")), unit) for n, unit in parts if n is not None]
    if not given or (t and hours is None and minutes is None and seconds is None):
        raise ValueError(f"duration {_quote(text)} has no number of weeks, days, hours, minutes or seconds")
    total = sum(n * unit for n, unit in given)
    if not math.isfinite(total) or total > MAX_DURATION_SECONDS:
        raise ValueError(f"duration {_quote(text)} is longer than a year: not a length of use")
    return total


def parse_timestamp(text: str) -> tuple[pd.Timestamp, bool]:
    """An ISO 8601 date-time as (a UTC Timestamp, whether it had an offset); read as UTC when
    it has none; ValueError for anything else."""
    nanoseconds, had_offset = _timestamp_ns(text)
    return pd.Timestamp(nanoseconds, unit="ns", tz="UTC"), had_offset


def _timestamp_ns(text: str) -> tuple[int, bool]:
    """parse_timestamp as nanoseconds since 1970 UTC (the events' loop reads one a row)."""
    match = _TIMESTAMP.fullmatch(text.strip()) if isinstance(text, str) else None
    if not match:
        raise ValueError(f"timestamp {_quote(text)} is not an ISO 8601 date-time such as 2026-11-02T09:15:00Z")
    y, mo, d, h, mi, sec, fraction, zulu, sign, off_h, off_m = match.groups()
    try:
        if int(off_h or 0) > 23 or int(off_m or 0) > 59:
            raise ValueError("the offset is out of range")
        day = date(int(y), int(mo), int(d)).toordinal() - _EPOCH_DAY
        if int(h) > 23 or int(mi) > 59 or int(sec or 0) > 59:
            raise ValueError("the time of day is out of range")
    except ValueError as error:
        raise ValueError(f"timestamp {_quote(text)} is not a valid date-time ({error})") from None
    offset = (int(off_h or 0) * 60 + int(off_m or 0)) * (-1 if sign == "-" else 1)
    seconds = day * 86400 + int(h) * 3600 + int(mi) * 60 + int(sec or 0) - offset * 60
    nanoseconds = seconds * _NS + int((fraction or "0").ljust(9, "0"))
    if not _FIRST_NS <= nanoseconds <= _LAST_NS:
        raise ValueError(f"timestamp {_quote(text)} is outside what a timestamp holds (1677-09-22 to 2262-04-11)")
    return nanoseconds, bool(zulu or sign)


def _local_midnights(at_ns: np.ndarray, zone: str) -> pd.DatetimeIndex:
    """The local day (naive midnight, datetime64[ns]) of each UTC time given in nanoseconds."""
    return pd.to_datetime(at_ns, utc=True).tz_convert(zone).tz_localize(None).normalize()


def local_day(at: pd.Series, zone: str) -> pd.Series:
    """The calendar day (datetime.date, object dtype) of each UTC time of `at` in `zone`
    (an IANA name); a naive time is read as UTC. Keeps `at`'s index."""
    return pd.to_datetime(at, utc=True).dt.tz_convert(zone).dt.date.astype(object)


# --- app ids ------------------------------------------------------------------------------

def slug(text: str) -> str | None:
    """The app-id slug of a name ("DreamBox Learning" -> "dreambox_learning"); None when nothing is left."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    out = re.sub(r"[^a-z0-9]+", "_", ascii_text).strip("_")
    if not out:
        return None
    if out[0].isdigit():
        out = "app_" + out
    return out[:41].rstrip("_")


def host_app(iri: str) -> str | None:
    """The app id of an http(s) IRI's host (https://www.dreambox.com/x -> dreambox,
    https://lexia.co.uk/ -> lexia); None for other IRIs, IP addresses and hosts with nothing left."""
    if not isinstance(iri, str):
        return None
    try:
        parts = urlsplit(iri.strip())
        host = parts.hostname
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not host:
        return None
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    labels = [label for label in host.lower().split(".") if label]
    if len(labels) > 1 and labels[0] == "www":
        labels = labels[1:]
    if len(labels) > 1:
        top = labels.pop()
        if len(top) == 2 and top.isalpha() and len(labels) > 0 and labels[-1] in _SECOND_LEVEL:
            labels.pop()
    return slug(labels[-1]) if labels else None


class _Apps:
    """map_app for one mapping table, normalised once and remembering what it found
    (a district's statements repeat a few thousand activity ids)."""

    def __init__(self, mapping: dict[str, str]):
        self.table = {key.strip().lower(): value for key, value in (mapping or {}).items()
                      if isinstance(key, str) and key.strip()}
        self.prefixes = sorted(self.table, key=len, reverse=True)
        self.seen: dict[tuple, tuple[str | None, str]] = {}

    def __call__(self, activity_id, platform) -> tuple[str | None, str]:
        key = (_text(activity_id), _text(platform))  # text only: JSON may put a list there
        if key not in self.seen:
            self.seen[key] = self._find(*key)
        return self.seen[key]

    def _find(self, activity_id, platform) -> tuple[str | None, str]:
        platform = _text(platform)
        activity = _text(activity_id)
        app, rule = None, "unmapped"
        if platform is not None and platform.lower() in self.table:
            app, rule = self.table[platform.lower()], "mapping table"
        elif activity is not None and any(activity.lower().startswith(p) for p in self.prefixes):
            low = activity.lower()
            app, rule = self.table[next(p for p in self.prefixes if low.startswith(p))], "mapping table"
        elif platform is not None and slug(platform) is not None:
            app, rule = slug(platform), "platform"
        elif activity is not None and host_app(activity) is not None:
            app, rule = host_app(activity), "activity host"
        if not isinstance(app, str) or not APP_ID.fullmatch(app):
            return None, "unmapped"
        return app, rule


def map_app(activity_id: str | None, platform: str | None, mapping: dict[str, str]) -> tuple[str | None, str]:
    """(app id, rule) of an activity: rule is "mapping table", "platform", "activity host" or
    "unmapped" (app None)."""
    return _Apps(mapping)(activity_id, platform)


# --- students -------------------------------------------------------------------------------

def _mbox(actor: dict) -> str | None:
    box = _text(actor.get("mbox"))
    if box is None:
        return None
    if box.lower().startswith("mailto:"):
        box = box[len("mailto:"):]
    return box.strip().lower() or None


def _mbox_local(actor: dict) -> str | None:
    box = _mbox(actor)
    return box.rpartition("@")[0].strip() or None if box and "@" in box else None


def _account_name(actor: dict) -> str | None:
    account = actor.get("account")
    name = account.get("name") if isinstance(account, dict) else None
    if isinstance(name, int) and not isinstance(name, bool):
        return str(name)
    return _text(name)


def _sha1sum(actor: dict) -> str | None:
    value = _text(actor.get("mbox_sha1sum"))
    return value.lower() if value and _SHA1SUM.fullmatch(value.lower()) else None


_ACTOR = {"account.name": _account_name, "mbox": _mbox, "mbox_local": _mbox_local, "mbox_sha1sum": _sha1sum,
          "openid": lambda actor: _text(actor.get("openid"))}


def _check_rules(rules: tuple[str, ...], known: tuple[str, ...], what: str) -> None:
    unknown = [r for r in rules if r not in known]
    if unknown:
        raise ValueError(f"{what} rules must be among {', '.join(known)}; got {', '.join(map(repr, unknown))}")


def actor_student(actor, rules: tuple[str, ...]) -> str | None:
    """The student id of an xAPI Agent by the first of `rules` (ACTOR_RULES) that gives one;
    None for a Group, another objectType, or an agent no rule fits."""
    _check_rules(rules, ACTOR_RULES, "actor")
    if not isinstance(actor, dict) or actor.get("objectType", "Agent") != "Agent":
        return None
    for rule in rules:
        value = _ACTOR[rule](actor)
        if value:
            return value
    return None


def _caliper_id(entity) -> str | None:
    if isinstance(entity, dict):
        return _text(entity.get("id")) or _text(entity.get("@id"))
    return _text(entity)


def _other_identifier(entity: dict) -> str | None:
    items = entity.get("otherIdentifiers")
    items = [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []
    for wanted in _CALIPER_ID_TYPES:
        for item in items:
            kind = item.get("identifierType")
            value = _text(item.get("identifier"))
            if isinstance(kind, str) and kind.strip().lower() == wanted.lower() and value:
                return value
    return None


def _last_segment(entity: dict) -> str | None:
    iri = _caliper_id(entity)
    if iri is None:
        return None
    segments = [s.strip() for s in re.split(r"[/:]", re.split(r"[?#]", iri, maxsplit=1)[0]) if s.strip()]
    return segments[-1] if segments else None


_CALIPER = {"otherIdentifiers": _other_identifier, "id.last_segment": _last_segment, "id": _caliper_id}


def caliper_student(entity, rules: tuple[str, ...]) -> str | None:
    """The student id of a Caliper Person (or its IRI) by the first of `rules`
    (CALIPER_ACTOR_RULES) that gives one; None when none does."""
    _check_rules(rules, CALIPER_ACTOR_RULES, "Caliper actor")
    if isinstance(entity, str):
        entity = {"id": entity}
    if not isinstance(entity, dict):
        return None
    for rule in rules:
        value = _CALIPER[rule](entity)
        if value:
            return value
    return None


# --- scores -----------------------------------------------------------------------------------

def _in_range(value: float, source: str) -> tuple[float | None, str | None]:
    value = round(value, 4) + 0.0  # + 0.0: no -0.0
    if not 0 <= value <= 100:
        return None, f"score {value:g} ({source}) is outside 0..100"
    return value, None


def scaled_score(score: dict | None) -> tuple[float | None, str | None]:
    """(score 0..100, None) of an xAPI result.score, (None, problem) when it cannot be
    loaded, (None, None) when there is no score."""
    if score is None:
        return None, None
    if not isinstance(score, dict):
        return None, f"result.score {_quote(score)} is not an object"
    if score.get("scaled") is not None:
        scaled = _number(score["scaled"])
        if scaled is None:
            return None, f"scaled {_quote(score['scaled'])} is not a number"
        return _in_range(scaled * 100, f"scaled {scaled:g}")
    if score.get("raw") is None:
        return None, None
    if score.get("min") is None or score.get("max") is None:
        return None, "a raw score without min and max cannot be scaled"
    numbers = {k: _number(score[k]) for k in ("raw", "min", "max")}
    for k, n in numbers.items():
        if n is None:
            return None, f"{k} {_quote(score[k])} is not a number"
    raw, low, high = numbers["raw"], numbers["min"], numbers["max"]
    if high <= low:
        return None, f"score max {high:g} is not above min {low:g}"
    return _in_range((raw - low) / (high - low) * 100, f"raw {raw:g} of {low:g}..{high:g}")


def assessment_key(activity_id: str) -> str:
    """The activity id when at most 64 characters, else its first 47, "~" and 16 hex of its SHA-1."""
    if len(activity_id) <= 64:
        return activity_id
    return activity_id[:47] + "~" + _sha1(activity_id)[:16]


# --- statements and events -> rows ------------------------------------------------------------

class _Rows:
    """The columns of the events being built, the voids and the bad rows."""

    def __init__(self):
        self.columns = {c: [] for c in EVENT_COLUMNS}
        self.voids: list[tuple] = []
        self.bad: list[tuple] = []

    def event(self, **row) -> None:
        for column, value in row.items():
            self.columns[column].append(value)

    def events(self) -> pd.DataFrame:
        c = self.columns
        return pd.DataFrame({
            "event_id": pd.Series(c["event_id"], dtype=object),
            "student_id": pd.Series(c["student_id"], dtype=object),
            "app": pd.Series(c["app"], dtype=object),
            "at": pd.to_datetime(pd.Series(c["at"], dtype="int64"), unit="ns", utc=True).astype("datetime64[ns, UTC]"),
            "duration_seconds": pd.Series(c["duration_seconds"], dtype="float64"),
            "use": pd.Series(c["use"], dtype=bool),
            "assessment_id": pd.Series(c["assessment_id"], dtype=object),
            "score": pd.Series(c["score"], dtype="float64"),
            "line": pd.Series(c["line"], dtype="int64"),
            "raw": pd.Series(c["raw"], dtype=object),
        }, columns=EVENT_COLUMNS)

    def void_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"event_id": pd.Series([v[0] for v in self.voids], dtype=object),
                             "voided_id": pd.Series([v[1] for v in self.voids], dtype=object),
                             "line": pd.Series([v[2] for v in self.voids], dtype="int64")})


def _event_id(value: dict, raw: str, counts: Counter, reason: str) -> str:
    given = _text(value.get("id"))
    if given is not None:
        return given
    counts[reason] += 1
    return "sha1:" + _sha1(raw)


def _time(value, what: str) -> tuple[int | None, bool, str | None]:
    """(UTC nanoseconds, had an offset, None) of a date-time, or (None, False, the reason it is not one)."""
    try:
        nanoseconds, had_offset = _timestamp_ns(value)
    except ValueError:
        return None, False, f"{what} {_quote(value)} is not an ISO 8601 date-time such as 2026-11-02T09:15:00Z"
    return nanoseconds, had_offset, None


def _student_problem(student: str | None, rules: tuple[str, ...], who: str, entity) -> str | None:
    if student is None:
        return f"{who} maps to no student id (rules: {', '.join(rules)}): {_quote(entity)}"
    if len(student) > STUDENT_ID_MAX:
        return f"student id {_quote(student)} is longer than {STUDENT_ID_MAX} characters"
    return None


def xapi_events(items: Iterable[tuple[int, str, object]], *, actor_rules: tuple[str, ...],
                app_mapping: dict[str, str], assessment_verbs
                ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, Counter]:
    """xAPI statements, as (line, raw text, parsed JSON value), as (events, voids, bad, counts).

    events: EVENT_COLUMNS: event_id, student_id, app (str), at (datetime64[ns, UTC]),
    duration_seconds (float seconds, NaN when not stated), use (True), assessment_id (str or
    None), score (float 0..100 or NaN), line (int), raw (str).
    voids: event_id (the voiding statement's), voided_id, line.
    bad: line (Int64), reason, raw."""
    _check_rules(actor_rules, ACTOR_RULES, "actor")
    apps = _Apps(app_mapping)
    verbs = frozenset(assessment_verbs)
    rows, counts = _Rows(), Counter()
    for line, raw, value in items:
        _statement(line, raw, value, rows, counts, actor_rules=actor_rules, apps=apps, verbs=verbs)
    return rows.events(), rows.void_frame(), _bad_frame(rows.bad), counts


def _statement(line: int, raw: str, value, rows: _Rows, counts: Counter, *, actor_rules, apps: _Apps, verbs) -> None:
    """One statement's event, void or bad row (or a count), added to `rows`."""
    def bad(reason: str) -> None:
        rows.bad.append((line, reason, raw))

    if not isinstance(value, dict):
        return bad(f"not a JSON object: {_quote(value)}")
    verb = value.get("verb")
    verb_id = _text(verb.get("id")) if isinstance(verb, dict) else None
    if verb_id is None:
        return bad(f"no verb.id: verb {_quote(verb)}")
    obj = value.get("object")
    kind = obj.get("objectType", "Activity") if isinstance(obj, dict) else None
    if not isinstance(kind, str):
        return bad(f"object {_quote(obj)} has no objectType that is text")
    if verb_id == VOIDED:
        target = _text(obj.get("id")) if kind == "StatementRef" else None
        if target is None:
            return bad(f"a voiding statement whose object is not a StatementRef with an id: {_quote(obj)}")
        counts[VOIDS] += 1
        rows.voids.append((_event_id(value, raw, counts, NO_ID), target, line))
        return None
    if kind in _NOT_ACTIVITIES:
        counts[NOT_USE] += 1
        return None
    if kind != "Activity":
        return bad(f"object {_quote(obj)} is not an Activity, Agent, Group, StatementRef or SubStatement")
    activity = _text(obj.get("id"))
    if activity is None:
        return bad(f"the activity has no id: {_quote(obj)}")
    student = actor_student(value.get("actor"), actor_rules)
    problem = _student_problem(student, actor_rules, "the actor", value.get("actor"))
    if problem:
        return bad(problem)
    stamp, used_stored = value.get("timestamp"), False
    if stamp is None and value.get("stored") is not None:
        stamp, used_stored = value["stored"], True
    if stamp is None:
        return bad("the statement has no timestamp and no stored time")
    at, had_offset, problem = _time(stamp, "stored time" if used_stored else "timestamp")
    if problem:
        return bad(problem)
    context = value.get("context")
    platform = context.get("platform") if isinstance(context, dict) else None
    app, rule = apps(activity, platform)
    if app is None:
        where = f"platform {_quote(platform)}" if platform is not None else "no platform"
        return bad(f"activity {_quote(activity)} ({where}) maps to no app id: {ADD_APP}")
    result = value.get("result") if isinstance(value.get("result"), dict) else {}
    seconds = math.nan
    if result.get("duration") is not None:
        try:
            seconds = parse_duration(result["duration"])
        except ValueError:
            return bad(f"result.duration {_quote(result['duration'])} is not an ISO 8601 duration such as PT4M30S")
    score, assessment = math.nan, None
    if verb_id in verbs:
        scaled, problem = scaled_score(result.get("score"))
        if problem:
            bad(SCORE_PROBLEM + problem)
        elif scaled is None:
            counts[NO_SCORE] += 1
        else:
            score, assessment = scaled, assessment_key(activity)
            _add(counts, SHORTENED, int(assessment != activity))
    elif result.get("score") is not None:
        counts[OTHER_SCORE] += 1
    _add(counts, STORED_USED, int(used_stored))
    _add(counts, NO_OFFSET, int(not had_offset))
    counts[f"apps by {rule}"] += 1
    rows.event(event_id=_event_id(value, raw, counts, NO_ID), student_id=student, app=app, at=at,
               duration_seconds=seconds, use=True, assessment_id=assessment, score=score, line=line, raw=raw)
    return None


def _part_of(entity) -> str | None:
    return _caliper_id(entity.get("isPartOf")) if isinstance(entity, dict) else None


def caliper_events(items: Iterable[tuple[int, str, object]], *, actor_rules: tuple[str, ...],
                   app_mapping: dict[str, str], usage_types) -> tuple[pd.DataFrame, pd.DataFrame, Counter]:
    """Caliper events, as (line, raw text, parsed JSON event), as (events, bad, counts);
    events and bad as in xapi_events (GradeEvents: use False, duration NaN)."""
    _check_rules(actor_rules, CALIPER_ACTOR_RULES, "Caliper actor")
    apps = _Apps(app_mapping)
    usage = frozenset(usage_types)
    rows, counts = _Rows(), Counter()
    for line, raw, event in items:
        _caliper_event(line, raw, event, rows, counts, actor_rules=actor_rules, apps=apps, usage=usage)
    return rows.events(), _bad_frame(rows.bad), counts


def _caliper_event(line: int, raw: str, event, rows: _Rows, counts: Counter, *, actor_rules, apps: _Apps,
                   usage) -> None:
    """One Caliper event's row or bad row (or a count), added to `rows`."""
    def bad(reason: str) -> None:
        rows.bad.append((line, reason, raw))

    if not isinstance(event, dict):
        return bad(f"not a JSON object: {_quote(event)}")
    kind = _text(event.get("type")) or _text(event.get("@type"))
    if kind is None:
        return bad(f"the event has no type: type {_quote(event.get('type'))}")
    name = re.split(r"[/#]", kind)[-1]
    obj = event.get("object")
    grade = name == "GradeEvent" and name not in usage
    if name not in usage and not grade:
        counts[f"Caliper {name} events, not read"] += 1
        return None
    if grade:
        if not isinstance(obj, dict):
            return bad(f"a GradeEvent whose object is not an Attempt: {_quote(obj)}")
        who, entity = "the attempt's assignee", obj.get("assignee")
        assignable = obj.get("assignable")
        candidates = [_part_of(assignable), _caliper_id(assignable), _part_of(obj), _caliper_id(obj)]
    else:
        who, entity = "the actor", event.get("actor")
        candidates = [_part_of(obj), _caliper_id(obj)]
    student = caliper_student(entity, actor_rules)
    problem = _student_problem(student, actor_rules, who, entity)
    if problem:
        return bad(problem)
    if event.get("eventTime") is None:
        return bad("the event has no eventTime")
    at, had_offset, problem = _time(event["eventTime"], "eventTime")
    if problem:
        return bad(problem)
    ed_app = event.get("edApp")
    if ed_app is not None:
        activity = _caliper_id(ed_app)
        platform = ed_app.get("name") if isinstance(ed_app, dict) else None
        where = f"edApp {_quote(activity)} (name {_quote(platform)})"
    else:
        activity, platform = next((c for c in candidates if c), None), None
        where = f"object {_quote(activity)} (no edApp)"
    app, rule = apps(activity, platform)
    if app is None:
        return bad(f"{where} maps to no app id: {ADD_APP}")
    score, assessment = math.nan, None
    if grade:
        generated = event.get("generated") if isinstance(event.get("generated"), dict) else {}
        top, given = _number(generated.get("maxScore")), _number(generated.get("scoreGiven"))
        if top is None or top <= 0:
            seen = generated.get("maxScore")
            shown = f": maxScore {_quote(seen)}" if seen is not None else ""
            return bad("GradeEvent without a maxScore cannot be scaled" + shown)
        if given is None:
            return bad(f"GradeEvent scoreGiven {_quote(generated.get('scoreGiven'))} is not a number")
        score, problem = _in_range(given / top * 100, f"scoreGiven {given:g} of maxScore {top:g}")
        if problem:
            return bad(problem)
        key = _caliper_id(assignable) or _caliper_id(obj)
        if key is None:
            return bad(f"a GradeEvent whose attempt has no assignable and no id: {_quote(obj)}")
        assessment = assessment_key(key)
        _add(counts, SHORTENED, int(assessment != key))
    _add(counts, NO_OFFSET, int(not had_offset))
    counts[f"apps by {rule}"] += 1
    rows.event(event_id=_event_id(event, raw, counts, NO_CALIPER_ID), student_id=student, app=app, at=at,
               duration_seconds=math.nan, use=not grade, assessment_id=assessment, score=score, line=line, raw=raw)
    return None


# --- events -> usage ---------------------------------------------------------------------------

def sessions_usage(events: pd.DataFrame, *, gap_minutes: float, cap_minutes: float, zone: str
                   ) -> tuple[pd.DataFrame, Counter]:
    """Usage of events (student_id, app, at as UTC, duration_seconds in seconds or NaN, use)
    as (usage, counts): usage is student_id, app, date (datetime.date, the local day in
    `zone`), minutes (float), sessions (int), sorted by student_id, app, date."""
    counts: Counter = Counter()
    use = events["use"].eq(True).to_numpy()
    _add(counts, NOT_USE_ROWS, int((~use).sum()))
    rows = events.loc[use, ["student_id", "app", "at", "duration_seconds"]]
    at = pd.to_datetime(rows["at"], utc=True).dt.as_unit("ns")
    timed = at.notna().to_numpy()
    _add(counts, NO_TIME_ROWS, int((~timed).sum()))
    rows, at = rows.loc[timed], at.loc[timed]
    at_ns = at.astype("int64").to_numpy()
    seconds = pd.to_numeric(rows["duration_seconds"], errors="coerce").to_numpy(dtype="float64")
    group = rows.groupby(["student_id", "app"], sort=False).ngroup().to_numpy()
    cap = cap_minutes * 60
    label = f"{cap_minutes:g}"

    # 1. a stated duration is a session of its own, on the day it started; stated durations of
    #    one student and app that overlap are one session, from the first start to the last end
    stated = np.flatnonzero(~np.isnan(seconds))
    starts = at_ns[stated] - np.rint(seconds[stated] * _NS).astype("int64")
    order = np.lexsort((starts, group[stated]))
    span_group, span_start, span_end = group[stated][order], starts[order], at_ns[stated][order]
    reach = pd.Series(span_end).groupby(span_group).cummax().to_numpy()  # the latest end so far in the group
    opens = np.ones(len(order), dtype=bool)
    opens[1:] = (span_group[1:] != span_group[:-1]) | (span_start[1:] > reach[:-1])
    _add(counts, OVERLAPPING, int((~opens).sum()))
    first = np.flatnonzero(opens)
    ends = np.maximum.reduceat(span_end, first) if len(first) else span_end[:0]
    length = (ends - span_start[first]) / _NS
    _add(counts, f"durations capped at {label} minutes", int((length > cap).sum()))
    parts = [(stated[order][first], span_start[first], np.minimum(length, cap) / 60)]

    # 2. statements inside a stated duration are not counted again
    loose = np.flatnonzero(np.isnan(seconds))
    inside = _inside(group[stated], starts, at_ns[stated], group[loose], at_ns[loose])
    _add(counts, INSIDE, int(inside.sum()))
    loose = loose[~inside]

    # 3. the others form sessions by the gap between one statement and the next
    order = loose[np.lexsort((at_ns[loose], group[loose]))]
    times, groups = at_ns[order], group[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = (groups[1:] != groups[:-1]) | (np.diff(times) >= gap_minutes * 60 * _NS)
    first = np.flatnonzero(new)
    last = np.append(first[1:], len(order))[:len(first)] - 1
    length = (times[last] - times[first]) / _NS
    _add(counts, f"sessions capped at {label} minutes", int((length > cap).sum()))
    _add(counts, SINGLE, int((first == last).sum()))
    parts.append((order[first], times[first], np.minimum(length, cap) / 60))

    # 4. minutes and sessions per student, app and local day
    position = np.concatenate([p[0] for p in parts])
    sessions = pd.DataFrame({
        "student_id": rows["student_id"].to_numpy()[position],
        "app": rows["app"].to_numpy()[position],
        "day": _local_midnights(np.concatenate([p[1] for p in parts]), zone),
        "minutes": np.concatenate([p[2] for p in parts]),
    })
    usage = (sessions.groupby(["student_id", "app", "day"], sort=True)
             .agg(minutes=("minutes", "sum"), sessions=("minutes", "size"))
             .reset_index())
    return pd.DataFrame({
        "student_id": usage["student_id"].astype(object),
        "app": usage["app"].astype(object),
        "date": pd.Series(usage["day"].dt.date, dtype=object),
        "minutes": usage["minutes"].round(4).astype("float64"),
        "sessions": usage["sessions"].astype("int64"),
    }, columns=USAGE_COLUMNS), counts


OVERLAPPING = "stated durations overlapping another of the same student and app, joined"


def _add(counts: Counter, reason: str, n: int) -> None:
    if n:
        counts[reason] += n


def _inside(span_group: np.ndarray, span_start: np.ndarray, span_end: np.ndarray, point_group: np.ndarray,
            point_at: np.ndarray) -> np.ndarray:
    """For each point, whether a span of its group holds it (start <= at <= end): spans and
    points sorted together by group and time (a span before a point at the same time), the
    running latest end of the spans begun so far reaches the point."""
    if not len(span_start) or not len(point_at):
        return np.zeros(len(point_at), dtype=bool)
    groups = np.concatenate([span_group, point_group])
    times = np.concatenate([span_start, point_at])
    is_point = np.concatenate([np.zeros(len(span_start), bool), np.ones(len(point_at), bool)])
    ends = np.concatenate([span_end, np.full(len(point_at), np.iinfo("int64").min)])
    order = np.lexsort((is_point, times, groups))
    reach = pd.Series(ends[order]).groupby(groups[order]).cummax().to_numpy()
    held = np.zeros(len(point_at), dtype=bool)
    points = is_point[order]
    held[order[points] - len(span_start)] = reach[points] >= times[order][points]
    return held
