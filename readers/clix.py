"""CLIx school-server trees (../shared/formats/CLIX.md): which files of a synced tree are
analytics input, and reading each as chunks of our own kinds' cells.

    <YYYY>/<state>/<school code>-<server id>/gstudio/
        activity-timestamp-csvs/<server id>-<username>-activity-visits-<YYYYMMDD>-<HH>h<MM>m.csv  -> usage
        gstudio_tools_logs/<tool>/<user id>-<tool>.json                                        -> usage
        gstudio-exported-users-analytics-csvs/<code>-<server id>-<unit>-<YYYYMMDD>-<HH>h<MM>m.csv -> students, progress
        system-heartbeat/system-heartbeat-<YYYYMMDD>-<HHMMSS>.log                              -> school_heartbeats

Nothing in a tree is executed or imported: settings files (`*.py`), SQL dumps and every
other file are counted as ignored, and the folders that hold no analytics input (db, media,
...) are not entered. A year folder that is not four digits, a state not configured, a school
folder not `<code>-<server id>` is reported and not read. The mapping rules are in
analytics/clix.py.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd

from analytics import clix
from readers.landing import (
    Chunk, FileUnreadable, LandingFile, _bounded_lines, _check_width, _storable, _text_stream, discover, open_regular,
)
from readers.limits import Limits, LimitExceeded, json_depth

VISITS, USERS, TOOLS, HEARTBEAT = "clix_visits", "clix_users", "clix_tools", "clix_heartbeat"
KIND_OF = {VISITS: "usage", TOOLS: "usage", USERS: "students", HEARTBEAT: "heartbeats"}
FOLDERS = {"activity-timestamp-csvs": VISITS, "gstudio-exported-users-analytics-csvs": USERS,
           "gstudio_tools_logs": TOOLS, "system-heartbeat": HEARTBEAT}
NOT_INPUT = {"db", "media", "rcs-repo", "postgres-dump", "assessment-media", "nginx-logs", "unplatform"}
ORDER = {USERS: 0, VISITS: 1, TOOLS: 1, HEARTBEAT: 2}  # accounts first: tool logs name users by id

YEAR = re.compile(r"^\d{4}$")
SCHOOL = re.compile(r"^(?P<code>[A-Za-z0-9]+)-(?P<server>[A-Za-z0-9]+)$")
NAMES = {
    HEARTBEAT: re.compile(r"^system-heartbeat-(?P<d>\d{8})-(?P<t>\d{6})\.log$"),
    USERS: re.compile(r"^(?P<code>[A-Za-z0-9]+)-(?P<server>[A-Za-z0-9]+)-(?P<unit>.+)-(?P<d>\d{8})-(?P<h>\d{2})h(?P<m>\d{2})m\.csv$"),
    VISITS: re.compile(r"^(?P<server>[A-Za-z0-9]+)-(?P<user>.+)-activity-visits-(?P<d>\d{8})-(?P<h>\d{2})h(?P<m>\d{2})m\.csv$"),
    TOOLS: re.compile(r"^(?P<user>\d+)-(?P<tool>.+)\.json$"),
}
LAYOUT = {
    HEARTBEAT: "system-heartbeat-<YYYYMMDD>-<HHMMSS>.log",
    USERS: "<school code>-<server id>-<unit>-<YYYYMMDD>-<HH>h<MM>m.csv",
    VISITS: "<server id>-<username>-activity-visits-<YYYYMMDD>-<HH>h<MM>m.csv",
    TOOLS: "<user id>-<tool name>.json",
}
VISIT_COLUMNS = ("Unit", "VisitedOn", "OutTime", "TimeSpentInSeconds", "Buddies")
USER_COLUMNS = ("username", "user_id", "grade", "unit_name", "module_name", "total_lessons", "lessons_visited",
                "total_activities", "activities_visited", "attempted_quizitems", "correct_attempted_quizitems",
                "buddy_userids")
CHUNK_ROWS = 50_000
_UNREADABLE = re.compile("[\udc80-\udcff\x00]")


@dataclass
class TreeReport:
    """What discovery saw besides the input files: ignored files and folders by category,
    folders it would not read (and why), and the school folders, for sync health."""
    ignored: Counter = field(default_factory=Counter)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (folder, why)
    schools: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # folder -> (school id, server, state)

    def summary(self) -> str | None:
        parts = []
        if self.ignored:
            parts.append("not analytics input, ignored (never opened): "
                         + ", ".join(f"{what} {n:,}" for what, n in sorted(self.ignored.items())))
        if self.problems:
            parts.append(f"{len(self.problems)} folder{'s' if len(self.problems) > 1 else ''} not read: "
                         + "; ".join(f"{folder}: {why}" for folder, why in self.problems[:5]))
        return "; ".join(parts) or None


def discover_tree(landing_dir: Path, district_id: str, states: tuple[str, ...]) -> tuple[list[LandingFile], TreeReport]:
    """The input files of a district's CLIx trees (users-analytics exports first), and the report."""
    report = TreeReport()

    def enter(parts: tuple[str, ...]) -> bool:
        where = "/".join((district_id, *parts))
        depth = len(parts)
        name = parts[-1]
        if depth == 1 and not YEAR.match(name):
            report.problems.append((where, "not a year folder <YYYY>"))
            return False
        if depth == 2 and name not in states:
            report.problems.append((where, f"state {name!r} is not one of the configured states "
                                           f"({', '.join(states)}; districts.yaml clix.states)"))
            return False
        if depth == 3:
            match = SCHOOL.match(name)
            if not match:
                report.problems.append((where, "a school folder must be named <school code>-<server id>"))
                return False
            report.schools.setdefault(name, (match["code"], match["server"], parts[1]))
        if depth == 4 and name != "gstudio":
            report.ignored[f"{name} folders" if name in NOT_INPUT else "other folders"] += 1
            return False
        if depth == 5 and name not in FOLDERS:
            report.ignored[f"{name} folders" if name in NOT_INPUT else "other folders"] += 1
            return False
        return True

    found = []
    for file in discover(landing_dir, district_id, enter=enter):
        parts = file.relpath.split("/")[1:]
        if file.refused:
            found.append(file)
            continue
        if len(parts) < 6:  # a file above gstudio/<input folder>/: never input
            name = parts[-1].lower()
            report.ignored["settings files (*.py, never executed)" if name.endswith(".py")
                           else "SQL dumps" if name.endswith(".sql") else "other files"] += 1
            continue
        source = FOLDERS[parts[4]]
        school = parts[2]
        name = parts[-1]
        refused = None
        if source == TOOLS and len(parts) != 7:
            refused = "a tool log must be gstudio_tools_logs/<tool name>/<user id>-<tool name>.json: not read"
        elif not NAMES[source].match(name):
            if name.lower().endswith((".py", ".sql")):
                report.ignored["settings files (*.py, never executed)" if name.lower().endswith(".py")
                               else "SQL dumps"] += 1
                continue
            refused = f"the name does not follow the CLIx layout {LAYOUT[source]}: not read"
        found.append(dataclasses.replace(
            file, school=school, kind=KIND_OF[source], format="." + name.rsplit(".", 1)[-1].lower(),
            encrypted=False, source=source, refused=refused))
    found.sort(key=lambda f: (ORDER.get(f.source, 3), f.modified_at, f.relpath))
    return found, report


# --- names -------------------------------------------------------------------------------

def name_time(file: LandingFile) -> datetime | None:
    """The naive local time a file's name carries (its export or heartbeat time)."""
    match = NAMES[file.source].match(file.relpath.rsplit("/", 1)[-1])
    if not match or "d" not in match.groupdict():
        return None
    digits = match["d"] + (match["t"] if "t" in match.groupdict() else match["h"] + match["m"] + "00")
    try:
        return datetime.strptime(digits, "%Y%m%d%H%M%S")
    except ValueError:
        return None


def school_parts(file: LandingFile) -> tuple[str, str]:
    """(school code, server id) from the file's school folder."""
    match = SCHOOL.match(file.school or "")
    return (match["code"], match["server"]) if match else ("", "")


# --- reading -------------------------------------------------------------------------------

@dataclass
class ClixContext:
    """What reading one file needs and gives besides usage or student cells."""
    timezone: str
    visit_cap_minutes: int
    session_cap_minutes: int
    staff_accounts: tuple[str, ...]
    accounts: dict[str, tuple[str, int]] = field(default_factory=dict)  # user id -> (username, staff) on this server
    progress: list[pd.DataFrame] = field(default_factory=list)
    new_accounts: list[pd.DataFrame] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)


def _csv_rows(text: io.TextIOBase, wanted: tuple[str, ...], required: tuple[str, ...], limits: Limits,
              what: str) -> Iterator[pd.DataFrame]:
    """A CSV file's rows in chunks, as (rows, bad rows): the wanted columns as text ("" when
    absent), line, raw; a row with bytes that are not UTF-8 or a NUL is a bad row, shown with
    U+FFFD, so no unreadable text reaches a mapping rule or the database."""
    reader = csv.reader(_bounded_lines(text, limits.line_bytes))
    header = next(reader, None)
    if header is None:
        raise FileUnreadable("the file is empty: a header row is required")
    _check_width(len(header), limits)
    names = [h.strip() for h in header]
    missing = [c for c in required if c not in names]
    if missing:
        raise FileUnreadable(f"not a CLIx {what}: missing column(s) {', '.join(missing)}; "
                             f"header starts {', '.join(names[:8]) or 'with nothing'}")
    index = {c: names.index(c) for c in wanted if c in names}
    while True:
        rows, bad = [], []
        for row in reader:
            if not row:
                continue
            raw = ",".join(row)[:4096]
            if _UNREADABLE.search(raw):
                why = "the row has a NUL byte" if "\x00" in raw else "the row has bytes that are not UTF-8"
                bad.append((reader.line_num, why, _storable(raw)))
            else:
                rows.append({**{c: (row[i] if i < len(row) else "") for c, i in index.items()},
                             "line": reader.line_num, "raw": raw})
            if len(rows) + len(bad) >= CHUNK_ROWS:
                break
        if not rows and not bad:
            return
        frame = pd.DataFrame(rows, columns=[*index, "line", "raw"])
        for column in wanted:
            if column not in frame:
                frame[column] = ""
        yield frame, clix._bad_frame(bad)


def _empty_malformed() -> pd.DataFrame:
    return pd.DataFrame({"line": pd.Series([], dtype="Int64"), "reason": pd.Series([], dtype=object),
                         "raw": pd.Series([], dtype=object)})


def chunks(file: LandingFile, path: Path, limit: int, limits: Limits, ctx: ClixContext) -> Iterator[Chunk]:
    """The file as chunks of usage or students cells (the kinds' own columns, as text)."""
    from readers.landing import BoundedReader

    code, server = school_parts(file)
    name = file.relpath.rsplit("/", 1)[-1]
    match = NAMES[file.source].match(name)
    with open_regular(path) as handle:
        binary = BoundedReader(handle, limit)
        if file.source == VISITS:
            if match["server"] != server:
                ctx.notes.append(f"the name's server id {match['server']!r} is not the folder's {server!r}; "
                                 "the folder's is used")
            username = match["user"]
            staff = clix.is_staff(username, ctx.staff_accounts)
            student = clix.student_id(server, username)
            text = _text_stream(binary, ".csv", limit, limits)
            for raw, unreadable in _csv_rows(text, VISIT_COLUMNS, ("Unit", "VisitedOn", "TimeSpentInSeconds"),
                                             limits, "activity-visits CSV"):
                if staff:
                    ctx.counts["staff or demo account visits, left out"] += len(raw) + len(unreadable)
                    continue
                cells, bad, counts = clix.visits_usage(raw, student, cap_minutes=ctx.visit_cap_minutes)
                ctx.counts.update(counts)
                yield Chunk(cells=cells, malformed=_both(unreadable, bad))
        elif file.source == TOOLS:
            data = binary.read(limits.chunk_bytes + 1)
            if len(data) > limits.chunk_bytes:
                raise LimitExceeded(f"a tool log over {limits.chunk_bytes:,} bytes (ANALYTICS_MAX_CHUNK_BYTES) is not read")
            text = data.decode("utf-8", errors="replace")
            if json_depth(text, limits.json_depth) > limits.json_depth:
                raise LimitExceeded(f"the JSON nests deeper than {limits.json_depth} (ANALYTICS_MAX_JSON_DEPTH)")
            try:
                events = json.loads(text) if text.strip() else []
            except json.JSONDecodeError as exc:
                raise FileUnreadable(f"not valid JSON: {exc}") from None
            if isinstance(events, dict):
                events = [events]
            if not isinstance(events, list):
                raise FileUnreadable("a tool log must be a JSON array of objects")
            user = match["user"]
            tool = file.relpath.split("/")[-2]
            account = ctx.accounts.get(user)
            if user == "0":
                ctx.counts["anonymous events (user 0), not counted"] += len(events)
                return
            if account is not None and account[1]:
                ctx.counts["staff or demo account events, left out"] += len(events)
                return
            student = clix.student_id(server, account[0]) if account else None
            cells, bad, counts = clix.tool_usage(events, user, student, tool, cap_minutes=ctx.session_cap_minutes,
                                                 zone=ctx.timezone)
            ctx.counts.update(counts)
            yield Chunk(cells=cells, malformed=bad)
        elif file.source == USERS:
            local = name_time(file)
            exported = clix.to_utc(local, ctx.timezone)
            text = _text_stream(binary, ".csv", limit, limits)
            for raw, unreadable in _csv_rows(text, USER_COLUMNS, ("username", "user_id"), limits,
                                             "users-analytics CSV"):
                students, progress, accounts, bad, counts = clix.users_rows(
                    raw, server_id=server, school_id=code, exported_at=exported, unit_slug=match["unit"],
                    staff_rules=ctx.staff_accounts)
                ctx.counts.update(counts)
                ctx.progress.append(progress)
                ctx.new_accounts.append(accounts)
                yield Chunk(cells=students, malformed=_both(unreadable, bad))
        else:
            raise FileUnreadable(f"{file.source} files are not read as chunks")


def _both(first: pd.DataFrame, second: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([first, second], ignore_index=True) if len(first) else second


def read_heartbeat(path: Path, limit: int, limits: Limits) -> dict:
    """A heartbeat log's facts (analytics.clix.heartbeat), reading at most 1 MiB of it."""
    from readers.landing import BoundedReader

    with open_regular(path) as handle:
        data = BoundedReader(handle, min(limit, 1 << 20)).read()
    return clix.heartbeat(data.decode("utf-8", errors="replace"))
