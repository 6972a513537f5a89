"""CLIx school-server trees: the mapping rules from the servers' own files to our tables,
as pure computations (readers/clix.py reads the files; jobs/ingest.py writes the rows).

Every rule is here and in the README ("CLIx school-server trees"), and every row a rule
leaves out is counted under a named reason, so nothing is dropped in silence:
  - app id: the unit's name (activity visits) or the tool's name (tool logs), lower case,
    accents removed, every run of other characters as "_"; one that starts with a digit gets
    "app_" in front; text with no Latin letter or digit becomes "unit_<8 hex of its SHA-1>";
    at most 41 characters;
  - minutes: a visit's TimeSpentInSeconds (else OutTime - VisitedOn), capped at
    visit_cap_minutes; a tool session's first to last event, capped at session_cap_minutes;
  - the day is the local day (the tree's time zone) the visit or session began; stored
    timestamps are converted from local time to UTC;
  - student id: "<server id>-<username>"; tool logs name users by id, mapped to the username
    through the users-analytics exports of the same server;
  - staff and demo accounts (regular expressions on the username) are left out and counted;
    so are anonymous events (user 0) and buddy logins (events of another user in a file).
"""
from __future__ import annotations

import calendar
import hashlib
import math
import re
import unicodedata
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

USAGE_COLUMNS = ["student_id", "app", "date", "minutes", "sessions", "line", "raw"]
EXPECTED_MONTHLY_BYTES = (10 * 1024 ** 2, 100 * 1024 ** 2)  # "monthly thin data is 10-100 MB"
OK, LATE, MISSED_FRIDAY, SILENT = "ok", "late", "missed Friday", "silent"

_LOCAL = re.compile(r"^\s*(\d{4})-(\d{1,2})-(\d{1,2})[ T](\d{1,2}):(\d{1,2}):(\d{1,2})(?:\.(\d{1,6}))?\s*$")
_JS_DATE = re.compile(r"^\s*\w{3} (\w{3}) (\d{1,2}) (\d{4}) (\d{1,2}):(\d{2}):(\d{2}) GMT([+-])(\d{2})(\d{2})")
_MONTHS = {m: i for i, m in enumerate(calendar.month_abbr) if m}
_WRAPPED = re.compile(r"^\[\s*u?(['\"])(.*)\1\s*\]$", re.S)


# --- names ----------------------------------------------------------------------------

def clean_text(value) -> str:
    """A cell as text, without Python 2's list wrapping: "[u'Understanding Motion']" -> "Understanding Motion"."""
    text = "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value).strip()
    match = _WRAPPED.match(text)
    return match[2].strip() if match else text


def app_id(name: str) -> str | None:
    """The app id of a unit or tool name (the rule above); None for an empty name."""
    text = clean_text(name)
    if not text:
        return None
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    slug = re.sub(r"[^a-z0-9]+", "_", ascii_text).strip("_")
    if not slug:
        return "unit_" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]
    if not slug[0].isalpha():
        slug = "app_" + slug
    return slug[:41].rstrip("_")


def is_staff(username: str, rules: tuple[str, ...]) -> bool:
    return any(re.search(rule, username) for rule in rules)


def student_id(server_id: str, username: str) -> str:
    return f"{server_id}-{username}"


# --- times ----------------------------------------------------------------------------

def parse_local(text) -> datetime | None:
    """A naive local time as the servers write it ("2018-06-05 11:59:12.024000", or unpadded
    "2017-8-16 14:3:31"); None when it is not one."""
    match = _LOCAL.match(str(text)) if text is not None else None
    if not match:
        return None
    y, mo, d, h, mi, s = (int(g) for g in match.groups()[:6])
    micro = int((match[7] or "0").ljust(6, "0"))
    try:
        return datetime(y, mo, d, h, mi, s, micro)
    except ValueError:
        return None


def parse_js_date(text) -> datetime | None:
    """JavaScript's Date.toString() ("Wed Aug 16 2017 14:03:31 GMT+0530 (India Standard
    Time)") as an aware time; None when it is not one."""
    match = _JS_DATE.match(str(text)) if text is not None else None
    if not match or match[1] not in _MONTHS:
        return None
    sign = 1 if match[7] == "+" else -1
    offset = timedelta(hours=int(match[8]), minutes=int(match[9])) * sign
    try:
        return datetime(int(match[3]), _MONTHS[match[1]], int(match[2]), int(match[4]), int(match[5]),
                        int(match[6]), tzinfo=timezone(offset))
    except ValueError:
        return None


def to_utc(local: datetime, zone: str) -> datetime:
    """A naive local time of the tree's zone as UTC."""
    return local.replace(tzinfo=ZoneInfo(zone)).astimezone(timezone.utc)


# --- activity visits -> usage -----------------------------------------------------------

def _usage_frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=USAGE_COLUMNS).astype(object)


def _bad_frame(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame({"line": pd.Series([r[0] for r in rows], dtype="Int64"),
                         "reason": pd.Series([r[1] for r in rows], dtype=object),
                         "raw": pd.Series([r[2] for r in rows], dtype=object)})


def _aggregate(parts: list[tuple], student: str) -> pd.DataFrame:
    """(app, day, minutes, line) per visit or session -> one usage row per (app, day): minutes
    summed, sessions counted, the first line kept (the file's rule: a key's rows are summed)."""
    if not parts:
        return _usage_frame([])
    frame = pd.DataFrame(parts, columns=["app", "date", "minutes", "line"])
    grouped = frame.groupby(["app", "date"], sort=True).agg(minutes=("minutes", "sum"), sessions=("line", "size"),
                                                             first=("line", "min"), last=("line", "max"))
    rows = [{"student_id": student, "app": app, "date": day.isoformat(), "minutes": f"{g.minutes:.4f}".rstrip("0").rstrip("."),
             "sessions": str(int(g.sessions)), "line": int(g.first),
             "raw": f"{student} {app} {day.isoformat()}: {int(g.sessions)} visits or sessions, lines {int(g.first)}-{int(g.last)}"}
            for (app, day), g in grouped.iterrows()]
    return _usage_frame(rows)


def visits_usage(raw: pd.DataFrame, student: str, *, cap_minutes: int) -> tuple[pd.DataFrame, pd.DataFrame, Counter]:
    """An activity-visits CSV's rows (text cells Unit, VisitedOn, OutTime, TimeSpentInSeconds,
    Buddies, with line and raw) as usage rows of `student`, bad rows, and counts."""
    counts: Counter = Counter()
    parts, bad = [], []
    cap = cap_minutes * 60
    lengths = pd.to_numeric(raw["TimeSpentInSeconds"], errors="coerce")  # once, not a Series per row
    for row, seconds in zip(raw.itertuples(index=False), lengths):
        app = app_id(row.Unit)
        start = parse_local(row.VisitedOn)
        if app is None or start is None:
            why = "Unit is empty" if app is None else f"VisitedOn {str(row.VisitedOn)[:40]!r} is not a time YYYY-MM-DD HH:MM:SS"
            bad.append((row.line, why, row.raw))
            continue
        if pd.isna(seconds) or seconds < 0:
            end = parse_local(row.OutTime)
            seconds = (end - start).total_seconds() if end is not None and end >= start else None
        if seconds is None:
            bad.append((row.line, "neither TimeSpentInSeconds nor OutTime gives the visit's length", row.raw))
            continue
        counts["visits"] += 1
        if seconds > cap:
            counts[f"visits over {cap_minutes} minutes, capped"] += 1
        if clean_text(row.Buddies) not in ("", "[]", "None", "nan"):
            counts["visits with buddies (counted for the logged-in user only)"] += 1
        parts.append((app, start.date(), min(float(seconds), cap) / 60, row.line))
    return _aggregate(parts, student), _bad_frame(bad), counts


# --- tool logs -> usage ------------------------------------------------------------------

def tool_usage(events: list, file_user: str, student: str | None, tool: str, *, cap_minutes: int, zone: str
               ) -> tuple[pd.DataFrame, pd.DataFrame, Counter]:
    """A tool log's objects (a JSON array; an object's position from 1 is its "line") as
    usage rows: each session (sessionId) counts from its first to its last event, capped.
    Events of user 0 (anonymous) and of another user (a buddy login) are counted, not used.
    `student`: the file user's student id, None when no users-analytics export names them."""
    counts: Counter = Counter()
    app = app_id(tool)
    sessions: dict[str, list[datetime]] = {}
    first_line: dict[str, int] = {}
    bad = []
    local = ZoneInfo(zone)
    for line, event in enumerate(events, start=1):
        raw = str(event)[:4096]
        if not isinstance(event, dict):
            bad.append((line, "not a JSON object", raw))
            continue
        user = str(event.get("userId", "")).strip()
        if user in ("0", ""):
            counts["anonymous events (user 0), not counted"] += 1
            continue
        if user != file_user:
            counts[f"buddy-login events (user {user} in user {file_user}'s file), not counted"] += 1
            continue
        if student is None:
            bad.append((line, f"user id {file_user} is in no users-analytics export of this server (yet)", raw))
            continue
        times = []
        created = parse_local(event.get("createdAt"))
        if created is not None:
            times.append(created.replace(tzinfo=local))
        log = (event.get("appData") or {}).get("data_log") if isinstance(event.get("appData"), dict) else None
        for entry in log if isinstance(log, list) else []:
            stamp = parse_js_date(entry.get("timeStamp")) if isinstance(entry, dict) else None
            if stamp is not None:
                times.append(stamp.astimezone(local))
        if not times:
            bad.append((line, "no createdAt or timeStamp that is a time", raw))
            continue
        key = str(event.get("sessionId") or f"line {line}")
        sessions.setdefault(key, []).extend(times)
        first_line.setdefault(key, line)
    parts = []
    cap = cap_minutes * 60
    for key, times in sessions.items():
        seconds = (max(times) - min(times)).total_seconds()
        counts["sessions"] += 1
        if seconds > cap:
            counts[f"sessions over {cap_minutes} minutes, capped"] += 1
        parts.append((app, min(times).date(), min(seconds, cap) / 60, first_line[key]))
    return _aggregate(parts, student or ""), _bad_frame(bad), counts


# --- users-analytics -> students, progress, accounts -------------------------------------------

def _count(value) -> int | None:
    try:
        number = float(clean_text(value))
    except ValueError:
        return None
    return int(number) if math.isfinite(number) and number >= 0 else None


def users_rows(raw: pd.DataFrame, *, server_id: str, school_id: str, exported_at: datetime, unit_slug: str,
               staff_rules: tuple[str, ...]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame, Counter]:
    """A users-analytics export's rows as (students cells, progress rows, accounts, bad rows,
    counts). Staff and demo accounts go to accounts only (staff = 1), counted."""
    counts: Counter = Counter()
    students, progress, accounts, bad = [], [], [], []
    for row in raw.itertuples(index=False):
        username = clean_text(row.username)
        if not username:
            bad.append((row.line, "username is empty", row.raw))
            continue
        staff = is_staff(username, staff_rules)
        user_id = clean_text(row.user_id)
        if user_id:
            accounts.append({"server_id": server_id, "user_id": user_id, "username": username, "staff": int(staff)})
        if staff:
            counts["staff or demo account rows, left out"] += 1
            continue
        who = student_id(server_id, username)
        grade = clean_text(getattr(row, "grade", ""))
        students.append({"student_id": who, "school_id": school_id, "grade": grade, "line": row.line, "raw": row.raw})
        unit = clean_text(getattr(row, "unit_name", "")) or unit_slug
        progress.append({
            "student_id": who, "unit": unit, "app": app_id(unit) or app_id(unit_slug),
            "module": clean_text(getattr(row, "module_name", "")) or None,
            "total_lessons": _count(getattr(row, "total_lessons", None)),
            "lessons_visited": _count(getattr(row, "lessons_visited", None)),
            "total_activities": _count(getattr(row, "total_activities", None)),
            "activities_visited": _count(getattr(row, "activities_visited", None)),
            "quiz_items_attempted": _count(getattr(row, "attempted_quizitems", None)),
            "quiz_items_correct": _count(getattr(row, "correct_attempted_quizitems", None)),
            "exported_at": exported_at,
        })
        if clean_text(getattr(row, "buddy_userids", "")) not in ("", "[]", "None"):
            counts["students with buddies listed (not merged)"] += 1
    student_frame = pd.DataFrame(students, columns=["student_id", "school_id", "grade", "line", "raw"]).astype(object)
    if len(student_frame):
        student_frame = student_frame.drop_duplicates("student_id", keep="last")
    progress_frame = pd.DataFrame(progress, columns=["student_id", "unit", "app", "module", "total_lessons",
                                                     "lessons_visited", "total_activities", "activities_visited",
                                                     "quiz_items_attempted", "quiz_items_correct", "exported_at"])
    if len(progress_frame):
        progress_frame = progress_frame.drop_duplicates(["student_id", "unit"], keep="last")
    account_frame = pd.DataFrame(accounts, columns=["server_id", "user_id", "username", "staff"])
    if len(account_frame):
        account_frame = account_frame.drop_duplicates(["server_id", "user_id"], keep="last")
    return student_frame, progress_frame, account_frame, _bad_frame(bad), counts


# --- heartbeats ----------------------------------------------------------------------------

_SIZE = re.compile(r"^(\d+(?:[.,]\d+)?)([KMGTP]?)i?B?$", re.I)
_UPTIME = re.compile(r"\bup\s+(?:(\d+)\s+days?,\s*)?(?:(\d+):(\d+)|(\d+)\s+min)", re.I)


def size_bytes(text: str) -> int | None:
    """A size as `df -h` prints it ("12G", "1.5T", "512M", "0") in bytes, 1024-based."""
    match = _SIZE.match(text.strip())
    if not match:
        return None
    power = " KMGTP".index(match[2].upper() or " ")
    return int(float(match[1].replace(",", ".")) * 1024 ** power)


def heartbeat(text: str) -> dict:
    """What a heartbeat log says beyond "the server was on": disk used and free on / (from
    `df -h`), uptime in seconds (from `uptime`), and a note when the file is empty or cut."""
    out = {"disk_used_bytes": None, "disk_free_bytes": None, "uptime_seconds": None, "note": None}
    if not text.strip():
        out["note"] = "empty file: the server was seen (it was switched off while writing?)"
        return out
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[-1] == "/" and fields[-2].endswith("%"):
            used, free = size_bytes(fields[-4]), size_bytes(fields[-3])
            if used is not None and free is not None:
                out["disk_used_bytes"], out["disk_free_bytes"] = used, free
        match = _UPTIME.search(line) if out["uptime_seconds"] is None else None
        if match:
            days = int(match[1] or 0)
            minutes = int(match[2]) * 60 + int(match[3]) if match[2] else int(match[4])
            out["uptime_seconds"] = days * 86400 + minutes * 60
    missing = [what for what, key in (("df", "disk_used_bytes"), ("uptime", "uptime_seconds")) if out[key] is None]
    if missing:
        out["note"] = f"cut short or incomplete: no {' or '.join(missing)} output (the server was seen)"
    return out


# --- sync health -------------------------------------------------------------------------

def sync_fridays(year: int, month: int) -> tuple[date, date]:
    """The month's 2nd and 4th Fridays: the days a school switches its server on to sync."""
    first = date(year, month, 1)
    friday = first + timedelta(days=(calendar.FRIDAY - first.weekday()) % 7)
    return friday + timedelta(days=7), friday + timedelta(days=21)


def next_sync_friday(day: date) -> date:
    """The first 2nd or 4th Friday on or after `day`."""
    year, month = day.year, day.month
    while True:
        for friday in sync_fridays(year, month):
            if friday >= day:
                return friday
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


def volume(bytes_this_month: int) -> str:
    low, high = EXPECTED_MONTHLY_BYTES
    return "below" if bytes_this_month < low else "above" if bytes_this_month > high else "within"


def school_sync(schools: pd.DataFrame, files: pd.DataFrame, heartbeats: pd.DataFrame, *, as_of: date, zone: str,
                stale_after_days: int) -> pd.DataFrame:
    """One row per school server as of `as_of` (the school_sync table, without district and
    computed_at).

    schools: school (folder), school_id, server_id, state_code. files: school, source
    (clix_visits | clix_users | clix_tools | clix_heartbeat), arrived_at (UTC; the synced
    file's modification time), bytes. heartbeats: server_id, seen_at (UTC).
    "This month" is as_of's month in the tree's zone, up to the end of as_of.
    State, first that holds: silent (no file and no heartbeat this month), late (no file for
    stale_after_days), missed Friday (a 2nd or 4th Friday up to as_of without a heartbeat), ok.
    """
    local = ZoneInfo(zone)
    month_start = date(as_of.year, as_of.month, 1)
    second, fourth = sync_fridays(as_of.year, as_of.month)
    after = as_of + timedelta(days=1)
    end = datetime(after.year, after.month, after.day, tzinfo=local).astimezone(timezone.utc)
    start = datetime(month_start.year, month_start.month, 1, tzinfo=local).astimezone(timezone.utc)
    files = files.assign(arrived_at=pd.to_datetime(files["arrived_at"], utc=True)) if len(files) else files
    heartbeats = heartbeats.assign(seen_at=pd.to_datetime(heartbeats["seen_at"], utc=True)) if len(heartbeats) \
        else heartbeats
    rows = []
    for school in schools.itertuples(index=False):
        mine = files.loc[(files["school"] == school.school) & (files["arrived_at"] < end)] if len(files) else files
        beats = heartbeats.loc[(heartbeats["server_id"] == school.server_id) & (heartbeats["seen_at"] < end)] \
            if len(heartbeats) else heartbeats
        seen_days = {t.astimezone(local).date() for t in beats["seen_at"]} if len(beats) else set()
        month_days = {d for d in seen_days if d >= month_start}

        def last(source):
            times = mine.loc[mine["source"] == source, "arrived_at"] if len(mine) else []
            return max(times).to_pydatetime() if len(times) else None

        last_sync = max(mine["arrived_at"]).to_pydatetime() if len(mine) else None
        this_month = mine.loc[mine["arrived_at"] >= start] if len(mine) else mine
        days_since = (as_of - last_sync.astimezone(local).date()).days if last_sync else None
        seen = {f: (None if f > as_of else int(f in seen_days)) for f in (second, fourth)}
        if not len(this_month) and not month_days:
            state = SILENT
        elif days_since is None or days_since >= stale_after_days:
            state = LATE
        elif 0 in seen.values():
            state = MISSED_FRIDAY
        else:
            state = OK
        month_bytes = int(this_month["bytes"].sum()) if len(this_month) else 0
        rows.append({
            "school": school.school, "school_id": school.school_id, "server_id": school.server_id,
            "state_code": school.state_code, "as_of": as_of,
            "last_heartbeat_at": max(beats["seen_at"]).to_pydatetime() if len(beats) else None,
            "last_visits_file_at": last("clix_visits"), "last_users_file_at": last("clix_users"),
            "last_tool_log_at": last("clix_tools"), "last_heartbeat_file_at": last("clix_heartbeat"),
            "last_sync_at": last_sync, "days_since_sync": days_since,
            "server_on_days": len(month_days),
            "second_friday": second, "seen_second_friday": seen[second],
            "fourth_friday": fourth, "seen_fourth_friday": seen[fourth],
            "bytes_this_month": month_bytes, "volume": volume(month_bytes), "state": state,
        })
    return pd.DataFrame(rows)
