"""IMS OneRoster 1.0, 1.1 and 1.2 CSV bundles: the mapping rules from a bundle's tables to our
rows, as pure computations (a reader parses each CSV; a job writes the rows).

Input: each CSV as a frame of text cells, one column per header name as the file spells it
("sourcedId", "orgSourcedIds"; "" when empty), plus `line` (the CSV line number) and `raw`
(the row's text). Cells are compared trimmed; columns the rules do not name are ignored; a
missing required column is a ValueError naming it (and the header). Every rule is here, and
every value a rule leaves out is counted under a named reason, so nothing is dropped in
silence. A bad row gets every problem it has, "; "-separated, in the order below.

manifest.csv (propertyName, value):
  - oneroster.version must be 1.0, 1.1 or 1.2; every file.<table> must be bulk, delta or
    absent (any case); other properties (manifest.version, source.systemName ...) are ignored.
    A property listed twice with two values is an error. All problems in one ValueError.

users.csv (with roles.csv and orgs.csv) -> students, deleted students, the user map:
  - a sourcedId repeated in users.csv: the last row wins ("users listed twice, the last row
    kept"); an empty sourcedId, or one over 255 characters, is a bad row;
  - who is a student: 1.0/1.1: users.role is "student" (any case). 1.2: roles.csv has a row
    for the user (userSourcedId) with role "student" whose status is not tobedeleted (for a
    user who is itself tobedeleted, any student row); without roles.csv, users.role if the
    file has that column, else every user is left out ("users with no role (roles.csv
    absent), left out"). Others are left out, counted per role "users who are not students
    (<role>), left out" (1.2: the user's first active role, primary first; "no active role"
    when roles.csv has only tobedeleted rows for the user, "no role" when it has none);
  - student id: the id_rule column (sourcedId, identifier or username); empty, or over 64
    characters, is a bad row;
  - status tobedeleted (any case): a deleted row, not a student row; active or empty: a
    student row; enabledUser "false" is still loaded ("students with enabledUser false,
    loaded");
  - school_id: 1.0/1.1: of orgSourcedIds (comma-separated, entries trimmed of spaces and
    quotes) the first whose orgs.csv row has type "school"; the first listed when orgs.csv is
    not given or lists none of them as a school (the latter counted "schools taken as the
    first orgSourcedId (no orgs.csv school)"). 1.2: primaryOrgSourcedId; else the orgSourcedId
    of the user's active student row in roles.csv, roleType "primary" first, then file order
    ("schools taken from roles.csv (no primaryOrgSourcedId)"); else the 1.1 rule when users.csv
    has orgSourcedIds. None when nothing gives one ("students without a school"). Longer ids
    are left to the students rows' validation (analytics.landing_rows);
  - grade: the first value of grades (comma-separated), trimmed; None when empty; over 16
    characters is a bad row;
  - two users with the same student id: the last student row wins ("students whose <rule>
    another user also has, the last row kept"); both stay in the user map.

lineItems.csv -> line items (a result's scale), deleted line items:
  - a repeated sourcedId: the last row wins ("line items listed twice, the last row kept");
    an empty sourcedId, or one over 255 characters, is a bad row; tobedeleted: a deleted row;
  - resultValueMin and resultValueMax as numbers (NaN when empty); a cell that is not a
    finite number is a bad row; resultValueMax not above resultValueMin (0 when empty) is a
    bad row.

results.csv -> assessments, deleted assessments:
  - tobedeleted: a deleted row (student from the user map, assessment = lineItemSourcedId);
    an unknown student is counted "deleted results of unknown students, nothing to remove",
    an empty studentSourcedId or lineItemSourcedId "deleted results without a studentSourcedId
    or lineItemSourcedId, nothing to remove";
  - scoreStatus not in LOADED_SCORE_STATUSES (any case): counted "results <status>, not
    loaded", per status; no bad row;
  - student_id: the user map's student of studentSourcedId; empty or unknown is a bad row;
  - assessment_id: lineItemSourcedId; empty or over 64 characters is a bad row;
  - score: a finite number; when the line item is known (the last row per sourced_id of
    `items`) and has resultValueMax: (score - min) * 100 / (max - min), min 0 when empty
    ("scores scaled by the line item's resultValueMin/Max"); a known line item without a max,
    or an unknown one, gives the score as is ("results whose line item has no resultValueMax,
    score used as given", "results whose line item is unknown, score used as given"). Rounded
    to 4 decimals; outside 0..100 is a bad row quoting the score and the scale;
  - date: scoreDate's day: YYYY-MM-DD, alone or as the start of an ISO date-time (the day as
    written, no time-zone conversion); empty or not a date is a bad row;
  - a repeated (student_id, assessment_id): the last row wins ("results listed twice for a
    student and line item, the last row kept"; likewise "deleted results listed twice ...").
"""
from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analytics.identifiers import STUDENT_ID_MAX

log = logging.getLogger(__name__)

STUDENT_ID_RULES = ("sourcedId", "identifier", "username")
LOADED_SCORE_STATUSES = ("fully graded",)
VERSIONS = ("1.0", "1.1", "1.2")
FILE_MODES = ("bulk", "delta", "absent")
SOURCED_ID_MAX = 255  # roster_users.sourced_id and roster_line_items.sourced_id
GRADE_MAX = 16

STUDENT_COLUMNS = ["student_id", "school_id", "grade", "line", "raw"]
DELETED_STUDENT_COLUMNS = ["student_id", "sourced_id", "line"]
USER_MAP_COLUMNS = ["sourced_id", "student_id"]
ITEM_COLUMNS = ["sourced_id", "title", "result_min", "result_max", "line"]
DELETED_ITEM_COLUMNS = ["sourced_id", "line"]
ASSESSMENT_COLUMNS = ["student_id", "assessment_id", "date", "score", "line", "raw"]
DELETED_ASSESSMENT_COLUMNS = ["student_id", "assessment_id", "line"]

_DELETED = "tobedeleted"
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


# --- manifest.csv ----------------------------------------------------------------------

@dataclass(frozen=True)
class Manifest:
    version: str  # "1.0", "1.1" or "1.2" (oneroster.version)
    files: dict[str, str]  # table name ("users", "results", "lineItems", "roles", ...) -> bulk | delta | absent


def parse_manifest(rows: Sequence[tuple[str, str]]) -> Manifest:
    """manifest.csv's (propertyName, value) rows as a Manifest; ValueError naming every problem."""
    problems: list[str] = []
    values: dict[str, str] = {}
    for number, row in enumerate(rows, start=1):
        if len(row) != 2:
            problems.append(f"row {number} must be propertyName,value; got {list(row)!r}")
            continue
        name, value = str(row[0]).strip(), str(row[1]).strip()
        if name in values and values[name] != value:
            problems.append(f"{name} is listed twice, as {values[name]!r} and as {value!r}")
        values[name] = value
    version = values.get("oneroster.version")
    if version is None:
        problems.append("oneroster.version is missing; expected 1.0, 1.1 or 1.2")
    elif version not in VERSIONS:
        problems.append(f"oneroster.version must be 1.0, 1.1 or 1.2; got {version!r}")
    files: dict[str, str] = {}
    for name, value in values.items():
        if not name.startswith("file."):
            continue
        table, mode = name[len("file."):], value.lower()
        if not table:
            problems.append(f"property {name!r} names no table")
        elif mode not in FILE_MODES:
            problems.append(f"{name} must be bulk, delta or absent; got {value!r}")
        else:
            files[table] = mode
    if problems:
        raise ValueError("manifest.csv: " + "; ".join(problems))
    return Manifest(version=version, files=files)


# --- cells, problems, counts -------------------------------------------------------------

def _require(frame: pd.DataFrame, file: str, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        header = [str(c) for c in frame.columns if c not in ("line", "raw")]
        raise ValueError(f"{file}: no column {', '.join(missing)} (the rules need it); "
                         f"the header has {', '.join(header) or 'nothing'}")


def _text(frame: pd.DataFrame, column: str) -> pd.Series:
    """A column's cells as trimmed text (object dtype), "" for missing cells or a missing column."""
    if column not in frame.columns:
        return pd.Series("", index=frame.index, dtype=object)
    return frame[column].astype(object).fillna("").astype(str).str.strip().astype(object)


def _number(cells: pd.Series) -> pd.Series:
    """Text cells as float64: NaN when empty or not a finite number."""
    parsed = pd.to_numeric(cells.mask(cells.eq("")), errors="coerce").astype("float64")
    return parsed.where(np.isfinite(parsed))


def _fmt(values: pd.Series) -> pd.Series:
    """Numbers as short text, at most 4 decimals: 85.0 -> "85", 87.5 -> "87.5"."""
    if not len(values):
        return pd.Series([], index=values.index, dtype=object)
    return (values.round(4) + 0.0).map("{:.4f}".format).astype(object).str.rstrip("0").str.rstrip(".")


def _quoted(cells: pd.Series) -> pd.Series:
    return "'" + cells.astype(str).str.slice(0, 40) + "'"


def _none(index: pd.Index) -> pd.Series:
    return pd.Series(pd.NA, index=index, dtype="string")


def _add(reason: pd.Series, mask: pd.Series, message: str | pd.Series) -> pd.Series:
    """`reason` with `message` (text, or a Series of texts for the masked rows) added where
    `mask` holds, after any problem found before."""
    mask = mask.fillna(False).astype(bool)
    if not mask.any():
        return reason
    text = message.reindex(reason.index) if isinstance(message, pd.Series) else pd.Series(message, index=reason.index)
    text = text.astype("string")
    return reason.mask(mask, (reason + "; " + text).fillna(text))


def _bad_frame(frame: pd.DataFrame, reason: pd.Series) -> pd.DataFrame:
    """The rows with a reason as [line (Int64), reason, raw], like analytics.clix's bad rows."""
    flagged = reason.notna().to_numpy()
    return pd.DataFrame({"line": pd.Series(frame["line"].to_numpy()[flagged], dtype="Int64"),
                         "reason": pd.Series(reason.to_numpy()[flagged], dtype=object),
                         "raw": pd.Series(frame["raw"].to_numpy()[flagged], dtype=object)})


def _tally(counts: Counter, reason: str, mask: pd.Series) -> None:
    number = int(mask.sum())
    if number:
        counts[reason] += number


def _count_each(counts: Counter, reasons: pd.Series) -> None:
    counts.update({key: int(n) for key, n in reasons.value_counts().items()})


def _frame(columns: Sequence[str], data: dict) -> pd.DataFrame:
    """Text columns as object with None for missing; numbers and `line` as they come."""
    frame = pd.DataFrame({c: pd.Series(data[c]).reset_index(drop=True) for c in columns}, columns=list(columns))
    text = [c for c in columns if c not in ("line", "result_min", "result_max")]
    return frame.astype({c: object for c in text}).pipe(
        lambda f: f.assign(**{c: f[c].where(f[c].notna(), None) for c in text}))


def _last_wins(frame: pd.DataFrame, keys: list[str], counts: Counter, reason: str) -> pd.DataFrame:
    repeated = frame.duplicated(keys, keep="last")
    _tally(counts, reason, repeated)
    return frame.loc[~repeated].reset_index(drop=True)


# --- users.csv (+ roles.csv, orgs.csv) -> students --------------------------------------------

def _roles_frame(roles: pd.DataFrame) -> pd.DataFrame:
    """roles.csv as [user, role, student, deleted, secondary, org], in file order."""
    role = _text(roles, "role")
    return pd.DataFrame({
        "user": _text(roles, "userSourcedId"),
        "role": role,
        "student": role.str.lower().eq("student"),
        "deleted": _text(roles, "status").str.lower().eq(_DELETED),
        "secondary": _text(roles, "roleType").str.lower().ne("primary"),
        "org": _text(roles, "orgSourcedId"),
    }).reset_index(drop=True)


def _who(users: pd.DataFrame, sourced: pd.Series, deleted: pd.Series, roles: pd.DataFrame | None,
         version: str) -> tuple[pd.Series, pd.Series]:
    """(is a student, the count key of a non-student) per user."""
    if version != "1.2" or (roles is None and "role" in users.columns):
        role = _text(users, "role")
        label = "users who are not students (" + role.mask(role.eq(""), "no role") + "), left out"
        return role.str.lower().eq("student"), label
    if roles is None:
        return (pd.Series(False, index=users.index),
                pd.Series("users with no role (roles.csv absent), left out", index=users.index, dtype=object))
    table = _roles_frame(roles)
    active = set(table.loc[table["student"] & ~table["deleted"], "user"])
    any_status = set(table.loc[table["student"], "user"])
    student = sourced.isin(active) | (deleted & sourced.isin(any_status))
    first_role = (table.loc[table["role"].ne("") & ~table["deleted"]]
                  .sort_values("secondary", kind="stable")
                  .drop_duplicates("user")
                  .set_index("user")["role"])
    listed = sourced.isin(set(table["user"]))
    role = sourced.map(first_role).astype(object).fillna(listed.map({True: "no active role", False: "no role"}))
    return student, "users who are not students (" + role + "), left out"


def _listed_school(lists: pd.Series, orgs: pd.DataFrame | None) -> tuple[pd.Series, pd.Series]:
    """The 1.1 rule on orgSourcedIds: (school or NaN, taken as the first listed for want of an
    orgs.csv school)."""
    entries = lists.str.split(",").explode().astype(object).fillna("")
    entries = entries.str.strip().str.strip('"').str.strip()
    entries = entries.loc[entries.ne("")]
    first = entries.groupby(level=0).first().reindex(lists.index)
    if orgs is None:
        return first, pd.Series(False, index=lists.index)
    schools = set(_text(orgs, "sourcedId").loc[_text(orgs, "type").str.lower().eq("school")])
    school = entries.loc[entries.isin(schools)].groupby(level=0).first().reindex(lists.index)
    return school.fillna(first), school.isna() & first.notna()


def _schools(users: pd.DataFrame, sourced: pd.Series, roles: pd.DataFrame | None, orgs: pd.DataFrame | None,
             version: str) -> tuple[pd.Series, pd.Series, pd.Series]:
    """(school_id or NaN, taken as the first orgSourcedId, taken from roles.csv) per user."""
    listed, first_taken = _listed_school(_text(users, "orgSourcedIds"), orgs)
    if version != "1.2":
        return listed, first_taken, pd.Series(False, index=users.index)
    primary = _text(users, "primaryOrgSourcedId")
    school = primary.mask(primary.eq(""))
    if roles is not None:
        table = _roles_frame(roles)
        orgs_of = (table.loc[table["student"] & ~table["deleted"] & table["org"].ne("")]
                   .sort_values("secondary", kind="stable")
                   .drop_duplicates("user")
                   .set_index("user")["org"])
        role_org = sourced.map(orgs_of)
    else:
        role_org = pd.Series(np.nan, index=users.index, dtype=object)
    from_roles = school.isna() & role_org.notna()
    school = school.fillna(role_org)
    first_taken = first_taken & school.isna()
    return school.fillna(listed), first_taken, from_roles


def students_rows(users: pd.DataFrame, *, roles: pd.DataFrame | None, orgs: pd.DataFrame | None, version: str,
                  id_rule: str = "sourcedId"
                  ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame, Counter]:
    """users.csv as (students, deleted, user_map, bad, counts), by the rules above.

    users: sourcedId, the id_rule column, role (1.0/1.1; 1.2 without roles.csv), and as
    present status, enabledUser, orgSourcedIds, primaryOrgSourcedId (1.2), grades, plus line,
    raw. roles (1.2): userSourcedId, role, and as present status, roleType, orgSourcedId.
    orgs: sourcedId, type.
    Output, text cells (None when missing):
      students [student_id, school_id, grade, line, raw]; deleted [student_id, sourced_id,
      line]; user_map [sourced_id, student_id] for every student and deleted row; bad [line
      (Int64), reason, raw]; counts: what was left out, by reason.
    """
    if version not in VERSIONS:
        raise ValueError(f"OneRoster version must be 1.0, 1.1 or 1.2; got {version!r}")
    if id_rule not in STUDENT_ID_RULES:
        raise ValueError(f"the student id rule must be one of {list(STUDENT_ID_RULES)}; got {id_rule!r}")
    _require(users, "users.csv", dict.fromkeys(["sourcedId", id_rule] + (["role"] if version != "1.2" else [])))
    if roles is not None and version == "1.2":
        _require(roles, "roles.csv", ["userSourcedId", "role"])
    if orgs is not None:
        _require(orgs, "orgs.csv", ["sourcedId", "type"])
    counts: Counter = Counter()
    users = users.reset_index(drop=True)
    repeated = _text(users, "sourcedId").pipe(lambda s: s.ne("") & s.duplicated(keep="last"))
    _tally(counts, "users listed twice, the last row kept", repeated)
    users = users.loc[~repeated].reset_index(drop=True)

    sourced = _text(users, "sourcedId")
    deleted = _text(users, "status").str.lower().eq(_DELETED)
    student, label = _who(users, sourced, deleted, roles, version)
    ids = _text(users, id_rule)
    grade = _text(users, "grades").str.split(",").str[0].astype(object).fillna("")
    grade = grade.str.strip().str.strip('"').str.strip()

    reason = _none(users.index)
    reason = _add(reason, sourced.eq(""), "the user's sourcedId is empty")
    reason = _add(reason, sourced.str.len() > SOURCED_ID_MAX,
                  "the user's sourcedId " + _quoted(sourced) + f" is longer than {SOURCED_ID_MAX} characters")
    _count_each(counts, label.loc[~student & reason.isna()])
    reason = _add(reason, student & ids.eq(""), f"the user's {id_rule} is empty")
    reason = _add(reason, student & (ids.str.len() > STUDENT_ID_MAX),
                  f"the user's {id_rule} " + _quoted(ids) + f" is longer than {STUDENT_ID_MAX} characters")
    reason = _add(reason, student & ~deleted & (grade.str.len() > GRADE_MAX),
                  "the first of the user's grades " + _quoted(grade) + f" is longer than {GRADE_MAX} characters")

    good = student & reason.isna()
    gone, kept = good & deleted, good & ~deleted
    school, first_taken, from_roles = _schools(users, sourced, roles, orgs, version)
    disabled = _text(users, "enabledUser").str.lower().eq("false")
    _tally(counts, "students with enabledUser false, loaded", kept & disabled)
    _tally(counts, "schools taken as the first orgSourcedId (no orgs.csv school)", kept & first_taken)
    _tally(counts, "schools taken from roles.csv (no primaryOrgSourcedId)", kept & from_roles)
    _tally(counts, "students without a school", kept & school.isna())

    students = _frame(STUDENT_COLUMNS, {"student_id": ids[kept], "school_id": school[kept],
                                        "grade": grade[kept].mask(grade[kept].eq("")),
                                        "line": users.loc[kept, "line"], "raw": users.loc[kept, "raw"]})
    students = _last_wins(students, ["student_id"], counts,
                          f"students whose {id_rule} another user also has, the last row kept")
    removed = _frame(DELETED_STUDENT_COLUMNS, {"student_id": ids[gone], "sourced_id": sourced[gone],
                                               "line": users.loc[gone, "line"]})
    user_map = _frame(USER_MAP_COLUMNS, {"sourced_id": sourced[good], "student_id": ids[good]})
    return students, removed, user_map, _bad_frame(users, reason), counts


# --- lineItems.csv -> line items ----------------------------------------------------------------

def line_items(items: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, Counter]:
    """lineItems.csv as (items, deleted, bad, counts), by the rules above.

    items: sourcedId, and as present status, title, resultValueMin, resultValueMax, plus
    line, raw. Output: items [sourced_id, title (None when empty), result_min, result_max
    (float64, the line item's score scale, NaN when not given), line]; deleted [sourced_id,
    line]; bad [line (Int64), reason, raw]; counts.
    """
    _require(items, "lineItems.csv", ["sourcedId"])
    counts: Counter = Counter()
    items = items.reset_index(drop=True)
    repeated = _text(items, "sourcedId").pipe(lambda s: s.ne("") & s.duplicated(keep="last"))
    _tally(counts, "line items listed twice, the last row kept", repeated)
    items = items.loc[~repeated].reset_index(drop=True)

    sourced = _text(items, "sourcedId")
    deleted = _text(items, "status").str.lower().eq(_DELETED)
    low_text, high_text = _text(items, "resultValueMin"), _text(items, "resultValueMax")
    low, high = _number(low_text), _number(high_text)
    live = ~deleted

    reason = _none(items.index)
    reason = _add(reason, sourced.eq(""), "the line item's sourcedId is empty")
    reason = _add(reason, sourced.str.len() > SOURCED_ID_MAX,
                  "the line item's sourcedId " + _quoted(sourced) + f" is longer than {SOURCED_ID_MAX} characters")
    reason = _add(reason, live & low_text.ne("") & low.isna(),
                  "resultValueMin " + _quoted(low_text) + " is not a number")
    reason = _add(reason, live & high_text.ne("") & high.isna(),
                  "resultValueMax " + _quoted(high_text) + " is not a number")
    floor = low.fillna(0.0)
    reason = _add(reason, live & high.notna() & (high <= floor),
                  "resultValueMax " + _quoted(high_text) + " is not above resultValueMin "
                  + _quoted(low_text.mask(low_text.eq(""), "0")) + low_text.eq("").map({True: " (empty)", False: ""}))

    good = reason.isna()
    kept, gone = good & live, good & deleted
    title = _text(items, "title")
    table = _frame(ITEM_COLUMNS, {"sourced_id": sourced[kept], "title": title[kept].mask(title[kept].eq("")),
                                  "result_min": low[kept], "result_max": high[kept], "line": items.loc[kept, "line"]})
    removed = _frame(DELETED_ITEM_COLUMNS, {"sourced_id": sourced[gone], "line": items.loc[gone, "line"]})
    return table, removed, _bad_frame(items, reason), counts


# --- results.csv -> assessments ---------------------------------------------------------------

def _scales(items: pd.DataFrame) -> pd.DataFrame:
    """The line items frame as [result_min, result_max] by sourced_id, the last row per id."""
    if "sourced_id" not in items.columns or not len(items):
        return pd.DataFrame({"result_min": pd.Series(dtype="float64"), "result_max": pd.Series(dtype="float64")},
                            index=pd.Index([], dtype=object))
    known = items.assign(sourced_id=items["sourced_id"].astype(object).astype(str).str.strip())
    known = known.drop_duplicates("sourced_id", keep="last").set_index("sourced_id")
    return pd.DataFrame({c: pd.to_numeric(known[c], errors="coerce").astype("float64") if c in known.columns
                         else np.nan for c in ("result_min", "result_max")}, index=known.index)


def results_rows(results: pd.DataFrame, *, items: pd.DataFrame, user_map: Mapping[str, str]
                 ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, Counter]:
    """results.csv as (assessments, deleted, bad, counts), by the rules above.

    results: lineItemSourcedId, studentSourcedId, scoreStatus, score, scoreDate, and as
    present status, plus line, raw. items: the line_items frame (sourced_id, result_min,
    result_max), this bundle's and earlier ones'. user_map: users.csv sourcedId -> student id.
    Output, text cells for the assessments rows' validation (analytics.landing_rows):
      assessments [student_id, assessment_id, date (YYYY-MM-DD), score (0..100, "85",
      "87.5"), line, raw]; deleted [student_id, assessment_id, line]; bad [line (Int64),
      reason, raw]; counts.
    """
    _require(results, "results.csv", ["lineItemSourcedId", "studentSourcedId", "scoreStatus", "score", "scoreDate"])
    counts: Counter = Counter()
    results = results.reset_index(drop=True)
    deleted = _text(results, "status").str.lower().eq(_DELETED)
    named = _text(results, "studentSourcedId")
    student = named.map(dict(user_map))
    item = _text(results, "lineItemSourcedId")

    unnamed = deleted & (named.eq("") | item.eq(""))
    _tally(counts, "deleted results without a studentSourcedId or lineItemSourcedId, nothing to remove", unnamed)
    _tally(counts, "deleted results of unknown students, nothing to remove", deleted & ~unnamed & student.isna())
    gone = deleted & ~unnamed & student.notna()
    removed = _frame(DELETED_ASSESSMENT_COLUMNS, {"student_id": student[gone], "assessment_id": item[gone],
                                                  "line": results.loc[gone, "line"]})
    removed = _last_wins(removed, ["student_id", "assessment_id"], counts,
                         "deleted results listed twice for a student and line item, the last row kept")

    status = _text(results, "scoreStatus").str.lower()
    loaded = status.isin([s.lower() for s in LOADED_SCORE_STATUSES])
    skipped = ~deleted & ~loaded
    _count_each(counts, ("results " + status.mask(status.eq(""), "without a scoreStatus") + ", not loaded")[skipped])
    check = ~deleted & loaded

    scales = _scales(items)
    known = item.isin(scales.index)
    low, high = item.map(scales["result_min"]).fillna(0.0), item.map(scales["result_max"])
    scaled = known & high.notna()
    score_text = _text(results, "score")
    given = _number(score_text)
    score = given.where(~scaled, (given - low) * 100 / (high - low)).round(4)
    day_text = _text(results, "scoreDate")
    day = day_text.str.slice(0, 10)
    is_day = (day.str.fullmatch(_DAY.pattern).astype(bool) & day_text.str.slice(10, 11).isin(["", "T", "t", " "])
              & pd.to_datetime(day.where(day.str.fullmatch(_DAY.pattern).astype(bool)), format="%Y-%m-%d",
                               errors="coerce").notna())

    reason = _none(results.index)
    reason = _add(reason, check & named.eq(""), "studentSourcedId is empty")
    reason = _add(reason, check & named.ne("") & student.isna(),
                  "studentSourcedId " + _quoted(named) + " is in no users.csv loaded")
    reason = _add(reason, check & item.eq(""), "lineItemSourcedId is empty")
    reason = _add(reason, check & (item.str.len() > STUDENT_ID_MAX),
                  "lineItemSourcedId " + _quoted(item) + f" is longer than {STUDENT_ID_MAX} characters")
    reason = _add(reason, check & score_text.eq(""), "score is empty")
    reason = _add(reason, check & score_text.ne("") & given.isna(), "score " + _quoted(score_text) + " is not a number")
    outside = check & given.notna() & ~score.between(0, 100)  # NaN: a stored scale with max = min
    if outside.any():
        on_scale = outside & scaled
        reason = _add(reason, on_scale, "score " + _quoted(score_text[on_scale]) + " on the line item's scale "
                      + _fmt(low[on_scale]) + ".." + _fmt(high[on_scale]) + " is " + _fmt(score[on_scale])
                      + ", outside 0..100")
        reason = _add(reason, outside & ~scaled, "score " + _quoted(score_text[outside & ~scaled])
                      + " is outside 0..100 (no resultValueMax to scale it by)")
    reason = _add(reason, check & day_text.eq(""), "scoreDate is empty")
    reason = _add(reason, check & day_text.ne("") & ~is_day,
                  "scoreDate " + _quoted(day_text) + " is not a date YYYY-MM-DD")

    good = check & reason.isna()
    _tally(counts, "scores scaled by the line item's resultValueMin/Max", good & scaled)
    _tally(counts, "results whose line item has no resultValueMax, score used as given", good & known & ~scaled)
    _tally(counts, "results whose line item is unknown, score used as given", good & ~known)
    assessments = _frame(ASSESSMENT_COLUMNS, {
        "student_id": student[good], "assessment_id": item[good], "date": day[good],
        "score": _fmt(score[good]),
        "line": results.loc[good, "line"], "raw": results.loc[good, "raw"]})
    assessments = _last_wins(assessments, ["student_id", "assessment_id"], counts,
                             "results listed twice for a student and line item, the last row kept")
    return assessments, removed, _bad_frame(results, reason), counts
