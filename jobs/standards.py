"""ingest's part for xAPI statements, Caliper events and OneRoster bundles (readers/standards.py
reads, analytics/standards.py and analytics/oneroster.py map; README "xAPI, Caliper and
OneRoster").

Statements and events are kept one row each in `learning_events` (an id loaded again
replaces its row, so a statement exported twice counts once); `usage` is then recomputed
from them for the (student, day) pairs the file touches (and those its statements replace or
void), with the days before and after, and `assessments` for the (student, assessment) pairs
it scores, so sessions that span files and statements voided later come out right. A
OneRoster bundle's users go to `students`, its results to `assessments`, through the same
validation and merge as any landing file; `tobedeleted` rows and, for a bulk table, rows an
earlier bundle of its series (its folder) gave that this one no longer lists, are removed.
"""
from __future__ import annotations

import hashlib
import re
from collections import Counter
from contextlib import ExitStack
from datetime import date, datetime, time, timedelta, timezone
from typing import Protocol
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from sqlalchemy import (BigInteger, Column, Date, Index, MetaData, SmallInteger, Table, and_, delete, exists, func,
                        literal, select, tuple_, update)

from analytics import oneroster as roster_rules
from analytics import standards as rules
from config import District
from models import (
    assessments, event_voids, ingested_files, learning_events, roster_line_items, roster_users, students, usage,
)
from models.schema import ID
from readers import standards as reader
from readers.landing import FileUnreadable, LandingFile
from readers.landing import fingerprint as fingerprint_file
from readers.limits import Limits
from storage.frames import bulk_insert, read_frame, upsert_from_select, upsert_rows

SOURCES = (reader.XAPI, reader.CALIPER, reader.ONEROSTER, reader.ONEROSTER_FOLDER)
EVENT_KINDS = (reader.XAPI, reader.CALIPER)
STUDENT_BATCH = 2_000
_EMPTY_BAD = pd.DataFrame({"line": pd.Series([], dtype="Int64"), "reason": pd.Series([], dtype=object),
                           "raw": pd.Series([], dtype=object)})


class Writer(Protocol):
    """What ingest gives this module to write through (jobs/ingest.py, _Writer)."""

    def rows(self, kind: str, chunks, present: set[str] | None = None) -> int:
        """Validate, stage and merge cells of one of our kinds by key; returns the rows merged."""

    def touched(self, *, usage_of: set[str] = frozenset(), days=(), schools_of: set[str] = frozenset()) -> None:
        """Usage of these students on these days changed (or was removed) besides the rows
        merged; these students' school may have: their rollups and weekly rows are recomputed."""

    def reject(self, bad: pd.DataFrame) -> None:
        """Quarantine rows (line, reason, raw) with this file."""


def is_standard(file: LandingFile) -> bool:
    return file.source in SOURCES


def fingerprint(file: LandingFile) -> tuple[str, int]:
    """(sha256, bytes) of a file, or of a bundle folder's files together."""
    if file.source == reader.ONEROSTER_FOLDER:
        return reader.bundle_fingerprint(file.path)
    return fingerprint_file(file.path)


def load(conn, district: District, file: LandingFile, size: int, file_id: int, writer: Writer,
         limits: Limits) -> tuple[int, Counter, list[str]]:
    """Read and write one file; returns (rows loaded, what the rules counted, notes)."""
    with ExitStack() as stack:
        path = reader.plaintext(file, stack, district.gpg_senders)
        limit = size if not file.encrypted else path.stat().st_size
        if file.source in EVENT_KINDS:
            return _load_events(conn, district, file, path, limit, file_id, writer, limits)
        return _load_roster(conn, district, file, path, file_id, writer, limits)


def adopt(conn, district: District, old_ids: list[int], file_id: int) -> None:
    """A file loaded again (--force, a retry) gets a new record: the rows its old record wrote
    are moved to the new one, so they are still known as this file's (and, for statements,
    as rows statements wrote: a recompute replaces them, never adds beside them)."""
    for table in (learning_events, event_voids, usage, assessments, students, roster_users, roster_line_items):
        conn.execute(update(table).where(table.c.district_id == district.id, table.c.file_id.in_(old_ids))
                     .values(file_id=file_id))


def dry_run(file: LandingFile, size: int, options, limits: Limits
            ) -> tuple[int, pd.DataFrame, Counter, set[str], Counter]:
    """What the rules make of one file, without a database (`--onboard --check`): (rows that
    would load, bad rows, what the rules counted, student ids, statements of use per app). A
    bundle's results are matched to its own users.csv only."""
    apps: Counter = Counter()
    counts: Counter = Counter()
    bad_parts: list[pd.DataFrame] = []
    students_of: set[str] = set()
    loaded = 0
    with ExitStack() as stack:
        path = reader.plaintext(file, stack)
        limit = size if not file.encrypted else path.stat().st_size
        if file.source in EVENT_KINDS:
            found = reader.JsonItems()
            chunks = reader.json_items(file, path, limit, limits, found)
            if file.source == reader.CALIPER:
                chunks = reader.caliper_items(chunks)
            for chunk in chunks:
                if file.source == reader.XAPI:
                    events, voided, bad, counted = rules.xapi_events(
                        chunk, actor_rules=options.actor, app_mapping=options.app_mapping,
                        assessment_verbs=options.assessment_verbs)
                else:
                    events, bad, counted = rules.caliper_events(
                        chunk, actor_rules=options.caliper_actor, app_mapping=options.app_mapping,
                        usage_types=options.caliper_usage_events)
                counts.update(counted)
                bad_parts.append(bad)
                loaded += len(events)
                students_of.update(events["student_id"])
                apps.update(events.loc[events["use"].astype(bool), "app"].value_counts().to_dict())
            bad_parts.append(_bad_frame(found.bad))
        else:
            bundle = reader.read_bundle(file, path, limits)
            try:
                manifest = roster_rules.parse_manifest(bundle.manifest)
            except ValueError as exc:
                raise FileUnreadable(f"manifest.csv: {exc}") from None
            bad_parts += [_bad_frame(rows) for rows in bundle.bad.values()]
            user_map: dict[str, str] = {}
            if manifest.files.get("users", "absent") != "absent" and "users" in bundle.tables:
                rows, _, users, bad, counted = _rules(
                    roster_rules.students_rows, bundle.tables["users"], roles=bundle.tables.get("roles"), orgs=bundle.tables.get("orgs"),
                    version=manifest.version, id_rule=options.oneroster_student_id)
                counts.update(counted)
                bad_parts.append(bad)
                loaded += len(rows)
                students_of.update(rows["student_id"])
                user_map = dict(zip(users["sourced_id"], users["student_id"]))
            if manifest.files.get("results", "absent") != "absent" and "results" in bundle.tables:
                items = (_rules(roster_rules.line_items, bundle.tables["lineItems"])[0] if "lineItems" in bundle.tables
                         else pd.DataFrame(columns=["sourced_id", "title", "result_min", "result_max"]))
                rows, _, bad, counted = _rules(roster_rules.results_rows, bundle.tables["results"], items=items,
                                               user_map=user_map)
                counts.update(counted)
                bad_parts.append(bad)
                loaded += len(rows)
    bad = pd.concat([b for b in bad_parts if len(b)], ignore_index=True) if any(len(b) for b in bad_parts) else _EMPTY_BAD
    return loaded, bad, counts, students_of, apps


def describe(options) -> list[str]:
    """The mapping rules in force, one line each (`--onboard --check`, README)."""
    table = ", ".join(f"{outside!r} -> {app}" for outside, app in options.apps) or "none (normalised names only)"
    verbs = ", ".join(v.removeprefix(rules.ADL) for v in options.assessment_verbs)
    return [
        f"time zone of a day: {options.timezone}",
        f"xAPI actor -> student id: {', '.join(options.actor)} (first that holds)",
        f"Caliper actor -> student id: {', '.join(options.caliper_actor)}",
        f"activity -> app: mapping table, then the platform's name, then the activity id's host; table: {table}",
        f"verbs that score an assessment: {verbs}" + (f" ({rules.ADL}...)" if any(
            v.startswith(rules.ADL) for v in options.assessment_verbs) else ""),
        f"Caliper events read as use: {', '.join(options.caliper_usage_events)}; GradeEvent -> assessments",
        f"minutes: result.duration when stated, else sessions of statements less than "
        f"{options.session_gap_minutes} minutes apart; each capped at {options.session_cap_minutes} minutes",
        f"OneRoster users.csv column -> student id: {options.oneroster_student_id}",
    ]


# --- xAPI and Caliper ------------------------------------------------------------------------

MAX_EVENT_ID = 255  # longer statement and event ids are keyed by their SHA-1 (an index holds ~2.7 kB)
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")  # NUL and lone surrogates: no database stores them as text


def _stage_events() -> Table:
    columns = [c for c in learning_events.columns if c.name not in ("district_id", "source", "file_id")]
    return Table("stage_learning_events", MetaData(), *(Column(c.name, c.type) for c in columns),
                 Column("seq", BigInteger), prefixes=["TEMPORARY"])  # seq: position in the file (the last wins)


def _stage_keys() -> Table:
    table = Table("stage_event_days", MetaData(), Column("student_id", ID), Column("date", Date),
                  Column("own", SmallInteger), prefixes=["TEMPORARY"])
    Index("ix_stage_event_days", table.c.student_id, table.c.date)  # the DELETE's lookups: linear, not quadratic
    return table


def _bad_frame(rows: list[tuple]) -> pd.DataFrame:
    if not rows:
        return _EMPTY_BAD
    return pd.DataFrame({"line": pd.Series([r[0] for r in rows], dtype="Int64"),
                         "reason": pd.Series([r[1] for r in rows], dtype=object),
                         "raw": pd.Series([r[2] for r in rows], dtype=object)})


def _event_key(ids: pd.Series) -> pd.Series:
    """Statement or event ids as keys: an id over MAX_EVENT_ID characters as "sha1:<hex>"."""
    ids = ids.astype(object)
    long = ids.str.len() > MAX_EVENT_ID
    if long.any():
        ids = ids.where(~long, ids.loc[long].map(
            lambda v: "sha1:" + hashlib.sha1(v.encode("utf-8", "surrogatepass")).hexdigest()))
    return ids


def _unstorable(values: pd.Series) -> pd.Series:
    return values.map(lambda v: isinstance(v, str) and _UNSTORABLE.search(v) is not None).astype(bool)


def _storable(events: pd.DataFrame, counts: Counter) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The events a database can key and store, and bad rows for the others: a NUL or a lone
    surrogate in an id, or a student id over 64 characters."""
    long_ids = events["event_id"].str.len() > MAX_EVENT_ID
    if long_ids.any():
        counts[f"ids over {MAX_EVENT_ID} characters, keyed by their SHA-1"] += int(long_ids.sum())
        events = events.assign(event_id=_event_key(events["event_id"]))
    reasons = pd.Series(None, index=events.index, dtype=object)
    for column in ("event_id", "student_id", "app", "assessment_id"):
        unstorable = _unstorable(events[column])
        reasons = reasons.where(~unstorable | reasons.notna(), f"{column} has a NUL or a lone surrogate (\\ud800-\\udfff)")
    long = events["student_id"].map(lambda v: isinstance(v, str) and len(v) > 64).astype(bool)
    reasons = reasons.where(~long | reasons.notna(), events["student_id"].map(
        lambda v: f"student id {str(v)[:80]!r}... is longer than 64 characters"))
    bad = reasons.notna()
    if not bad.any():
        return events, _EMPTY_BAD
    rejected = pd.DataFrame({"line": events.loc[bad, "line"].astype("Int64"), "reason": reasons.loc[bad],
                             "raw": events.loc[bad, "raw"]})
    return events.loc[~bad], rejected


def _load_events(conn, district: District, file: LandingFile, path, limit: int, file_id: int, writer: Writer,
                 limits: Limits) -> tuple[int, Counter, list[str]]:
    options = district.standards
    found = reader.JsonItems()
    chunks = reader.json_items(file, path, limit, limits, found)
    if file.source == reader.CALIPER:
        chunks = reader.caliper_items(chunks)
    counts: Counter = Counter()
    stage = _stage_events()
    stage.create(conn)
    voids = []
    pairs: list[pd.DataFrame] = []  # (student_id, date) of the file's statements: one row a pair, not a statement
    scored: list[pd.DataFrame] = []  # (student_id, assessment_id) the file's statements score
    staged = 0
    for chunk in chunks:
        if file.source == reader.XAPI:
            events, voided, bad, counted = rules.xapi_events(
                chunk, actor_rules=options.actor, app_mapping=options.app_mapping,
                assessment_verbs=options.assessment_verbs)
            voids.append(voided)
        else:
            events, bad, counted = rules.caliper_events(
                chunk, actor_rules=options.caliper_actor, app_mapping=options.app_mapping,
                usage_types=options.caliper_usage_events)
        counts.update(counted)
        events, unstorable = _storable(events, counts)
        writer.reject(bad)
        writer.reject(unstorable)
        if len(events):
            staged += bulk_insert(conn, stage, events.drop(columns=["raw"]).assign(
                use=events["use"].astype(int), line=events["line"].astype(int),
                seq=np.arange(staged, staged + len(events))))
            pairs.append(_days_of(events, options.timezone))
            scored.append(events.loc[events["assessment_id"].notna(), ["student_id", "assessment_id"]].drop_duplicates())
            if len(pairs) > 20:  # held: one row per (student, day), not per statement
                pairs = [pd.concat(pairs, ignore_index=True).drop_duplicates()]
                scored = [pd.concat(scored, ignore_index=True).drop_duplicates()]
    writer.reject(_bad_frame(found.bad))
    voided = pd.concat(voids, ignore_index=True) if voids else pd.DataFrame(columns=["event_id", "voided_id", "line"])
    if len(voided):
        voided = voided.assign(event_id=_event_key(voided["event_id"]), voided_id=_event_key(voided["voided_id"]))
        storable = ~(_unstorable(voided["event_id"]) | _unstorable(voided["voided_id"]))
        writer.reject(pd.DataFrame({"line": voided.loc[~storable, "line"].astype("Int64"),
                                    "reason": "a voiding statement's id has a NUL or a lone surrogate",
                                    "raw": ""}))
        voided = voided.loc[storable.astype(bool)]

    distinct = conn.execute(select(func.count(func.distinct(stage.c.event_id)))).scalar_one()
    if staged > distinct:
        counts["statements or events repeated in the file, the last kept"] += staged - distinct
    # what these ids said before (another file, or an earlier version of this one): their days
    # and scores are recomputed too, so a statement sent again with another time or actor moves
    before = read_frame(conn, select(learning_events.c.student_id, learning_events.c.at,
                                     learning_events.c.duration_seconds, learning_events.c.assessment_id).where(
        learning_events.c.district_id == district.id, learning_events.c.event_id.in_(select(stage.c.event_id))))
    if len(before):
        counts["statements or events loaded before from another file (or an earlier version), replaced"] += len(before)
    last = select(func.max(stage.c.seq)).group_by(stage.c.event_id)
    columns = [c.name for c in stage.columns if c.name != "seq"]
    upsert_from_select(conn, learning_events, ["district_id", "source", "file_id", *columns], select(
        literal(district.id).label("district_id"), literal(file.source).label("source"),
        literal(file_id).label("file_id"),
        *(stage.c[c] for c in columns)).where(stage.c.seq.in_(last)))
    stage.drop(conn)
    if len(voided):
        voided = voided.drop_duplicates("voided_id", keep="last")
        upsert_rows(conn, event_voids, [{"district_id": district.id, "voided_id": v, "event_id": e, "file_id": file_id}
                                        for v, e in zip(voided["voided_id"], voided["event_id"])],
                    key=["district_id", "voided_id"])
        ids = list(voided["voided_id"])
        for first in range(0, len(ids), 500):  # what the voided statements had given
            before = pd.concat([before, read_frame(conn, select(
                learning_events.c.student_id, learning_events.c.at, learning_events.c.duration_seconds,
                learning_events.c.assessment_id).where(
                learning_events.c.district_id == district.id, learning_events.c.event_id.in_(ids[first:first + 500])))],
                ignore_index=True)
    if len(before):
        pairs.append(_days_of(before, options.timezone))
        scored.append(before.loc[before["assessment_id"].notna(), ["student_id", "assessment_id"]])
    if not pairs:
        return distinct, counts, found.notes
    own = pd.concat(pairs, ignore_index=True).drop_duplicates()
    # the days before and after are recomputed too (a session may run over midnight into a
    # day this file does not touch), but there a row of a usage file keeps its key
    around = pd.concat([own.assign(date=own["date"].map(lambda d: d - timedelta(days=1))),
                        own.assign(date=own["date"].map(lambda d: d + timedelta(days=1)))])
    days = pd.concat([own.assign(own=1), around.assign(own=0)], ignore_index=True)
    days = days.sort_values(["student_id", "date", "own"]).drop_duplicates(["student_id", "date"], keep="last")
    _rewrite(conn, district, days, writer, counts)
    scored = pd.concat(scored, ignore_index=True).drop_duplicates() if scored else pd.DataFrame(
        columns=["student_id", "assessment_id"])
    _rescore(conn, district, scored, writer)
    return distinct, counts, found.notes


def _days_of(events: pd.DataFrame, zone: str) -> pd.DataFrame:
    """(student_id, date) of each event's local day, and of its start (a stated duration
    may begin the day before)."""
    at = pd.to_datetime(events["at"], utc=True)
    start = at - pd.to_timedelta(events["duration_seconds"].astype("float64").fillna(0), unit="s")
    return pd.concat([pd.DataFrame({"student_id": events["student_id"].astype(object), "date": rules.local_day(at, zone)}),
                      pd.DataFrame({"student_id": events["student_id"].astype(object),
                                    "date": rules.local_day(start, zone)})]).drop_duplicates()


def _event_files(district: District):
    return select(ingested_files.c.file_id).where(ingested_files.c.district_id == district.id,
                                                  ingested_files.c.kind.in_(EVENT_KINDS))


def _rewrite(conn, district: District, days: pd.DataFrame, writer: Writer, counts: Counter) -> None:
    """Recompute usage for these (student_id, date, own) pairs from the statements kept. On a
    day the file's statements touch (own 1) the recomputed rows replace any row of their key
    (the later file replaces); on a day around it (own 0) only rows statements wrote."""
    options = district.standards
    zone = ZoneInfo(options.timezone)
    keys = _stage_keys()
    keys.create(conn)
    bulk_insert(conn, keys, days.assign(date=pd.to_datetime(days["date"])))
    pair = and_(keys.c.student_id == usage.c.student_id, keys.c.date == usage.c.date)
    conn.execute(delete(usage).where(usage.c.district_id == district.id, usage.c.file_id.in_(_event_files(district)),
                                     exists().where(pair)))
    days = days.sort_values(["student_id", "date"], ignore_index=True)
    students_of = list(days["student_id"].drop_duplicates())
    bounds = days["student_id"].to_numpy()
    voided = select(event_voids.c.voided_id).where(event_voids.c.district_id == district.id)

    def batches():
        """Usage cells of the recomputed days, one batch of students at a time (memory
        follows a batch, not the file)."""
        for first in range(0, len(students_of), STUDENT_BATCH):
            batch = students_of[first:first + STUDENT_BATCH]
            lo, hi = np.searchsorted(bounds, batch[0], "left"), np.searchsorted(bounds, batch[-1], "right")
            mine = days.iloc[lo:hi]  # the batch's pairs: days is sorted by student
            first_day, last_day = min(mine["date"]), max(mine["date"])
            low = datetime.combine(first_day - timedelta(days=1), time(), zone).astimezone(timezone.utc)
            high = datetime.combine(last_day + timedelta(days=2), time(), zone).astimezone(timezone.utc)
            events = read_frame(conn, select(
                learning_events.c.student_id, learning_events.c.app, learning_events.c.at,
                learning_events.c.duration_seconds, learning_events.c.use, learning_events.c.line,
            ).where(learning_events.c.district_id == district.id, learning_events.c.student_id.in_(batch),
                    learning_events.c.at >= low, learning_events.c.at < high,
                    learning_events.c.event_id.not_in(voided)).order_by(
                learning_events.c.student_id, learning_events.c.app, learning_events.c.at, learning_events.c.event_id))
            if not len(events):
                continue
            events = events.assign(at=pd.to_datetime(events["at"], utc=True), use=events["use"].astype(bool))
            daily, counted = rules.sessions_usage(events, gap_minutes=options.session_gap_minutes,
                                                  cap_minutes=options.session_cap_minutes, zone=options.timezone)
            counts.update(counted)
            daily = daily.merge(mine, on=["student_id", "date"], how="inner")
            if (daily["own"] == 0).any():  # around the file's days, a usage file's row keeps its key
                held = read_frame(conn, select(usage.c.student_id, usage.c.app, usage.c.date).where(
                    usage.c.district_id == district.id, usage.c.student_id.in_(batch),
                    usage.c.date >= first_day, usage.c.date <= last_day,
                    usage.c.file_id.not_in(_event_files(district))))
                if len(held):
                    held = set(zip(held["student_id"], held["app"], pd.to_datetime(held["date"]).dt.date))
                    kept = [k in held for k in zip(daily["student_id"], daily["app"], daily["date"])]
                    daily = daily.loc[~(pd.Series(kept, index=daily.index) & (daily["own"] == 0))]
            if len(daily):
                yield _usage_cells(daily, counts), _EMPTY_BAD

    writer.rows("usage", batches())
    writer.touched(usage_of=set(students_of), days=set(days["date"]))
    keys.drop(conn)


def _usage_cells(daily: pd.DataFrame, counts: Counter) -> pd.DataFrame:
    """Usage rows from sessions as text cells of our usage kind (validated like any file's)."""
    over = daily["minutes"] > 1440
    if over.any():
        counts["days over 1440 minutes, capped at 1440"] += int(over.sum())
    cells = pd.DataFrame({
        "student_id": daily["student_id"].astype(object), "app": daily["app"].astype(object),
        "date": daily["date"].map(date.isoformat).astype(object),
        "minutes": daily["minutes"].clip(upper=1440).map(lambda m: f"{m:.4f}".rstrip("0").rstrip(".")).astype(object),
        "sessions": daily["sessions"].astype(int).astype(str).astype(object),
        "line": pd.array(np.zeros(len(daily), dtype=int), dtype="Int64"),
    })
    return cells.assign(raw="usage from statements: " + cells["student_id"] + " " + cells["app"] + " "
                        + cells["date"] + " " + cells["minutes"] + " minutes")


def _rescore(conn, district: District, pairs: pd.DataFrame, writer: Writer) -> None:
    """The (student, assessment) pairs this file's statements (or the statements they replace
    or void) score: each gets its latest score, on its local day; a pair no statement scores
    any more loses the row statements gave it. Other pairs are left as they are."""
    keys = sorted(set(zip(pairs["student_id"], pairs["assessment_id"])))
    voided = select(event_voids.c.voided_id).where(event_voids.c.district_id == district.id)
    for first in range(0, len(keys), 500):
        part = keys[first:first + 500]
        scored = read_frame(conn, select(
            learning_events.c.student_id, learning_events.c.assessment_id, learning_events.c.at,
            learning_events.c.score, learning_events.c.line, learning_events.c.event_id,
        ).where(learning_events.c.district_id == district.id,
                tuple_(learning_events.c.student_id, learning_events.c.assessment_id).in_(part),
                learning_events.c.event_id.not_in(voided)))
        keep = set()
        if len(scored):
            scored = scored.assign(at=pd.to_datetime(scored["at"], utc=True)).sort_values(["at", "event_id"])
            latest = scored.drop_duplicates(["student_id", "assessment_id"], keep="last")
            cells = pd.DataFrame({
                "student_id": latest["student_id"].astype(object),
                "assessment_id": latest["assessment_id"].astype(object),
                "date": rules.local_day(latest["at"], district.standards.timezone).map(date.isoformat).astype(object),
                "score": latest["score"].map(lambda s: f"{s:.4f}".rstrip("0").rstrip(".")).astype(object),
                "line": pd.array(latest["line"].fillna(0).astype(int), dtype="Int64"),
            })
            cells = cells.assign(raw="score from statements: " + cells["student_id"] + " " + cells["assessment_id"])
            writer.rows("assessments", [(cells, _EMPTY_BAD)])
            keep = set(zip(latest["student_id"], latest["assessment_id"]))
        gone = [k for k in part if k not in keep]
        if gone:
            conn.execute(delete(assessments).where(
                assessments.c.district_id == district.id, assessments.c.file_id.in_(_event_files(district)),
                tuple_(assessments.c.student_id, assessments.c.assessment_id).in_(gone)))


# --- OneRoster -------------------------------------------------------------------------------

def _load_roster(conn, district: District, file: LandingFile, path, file_id: int, writer: Writer,
                 limits: Limits) -> tuple[int, Counter, list[str]]:
    bundle = reader.read_bundle(file, path, limits)
    try:
        manifest = roster_rules.parse_manifest(bundle.manifest)
    except ValueError as exc:
        raise FileUnreadable(f"manifest.csv: {exc}") from None
    notes: list[str] = []
    counts: Counter = Counter()
    mode = {t: manifest.files.get(t, "absent") for t in ("users", "roles", "orgs", "lineItems", "results")}
    for table, how in mode.items():
        if how != "absent" and table not in bundle.tables:
            raise FileUnreadable(f"manifest.csv says file.{table} is {how}, but the bundle has no {table}.csv")
        if how == "absent" and table in bundle.tables:
            notes.append(f"{table}.csv is in the bundle but manifest.csv says file.{table} is absent: not read")
    if bundle.not_read:
        notes.append("tables not read (nothing of ours maps to them): " + ", ".join(sorted(bundle.not_read)))
    for table, bad in bundle.bad.items():
        if mode.get(table, "absent") != "absent":
            writer.reject(_bad_frame(bad))
    loaded = 0
    # a bulk table replaces what the earlier bundles of its series gave: the bundles in the same
    # folder (one SIS export's run); another folder's bundles (another school's SIS) are not touched
    series = file.relpath.rsplit("/", 1)[0]
    roster_files = [r.file_id for r in conn.execute(select(ingested_files.c.file_id, ingested_files.c.path).where(
        ingested_files.c.district_id == district.id, ingested_files.c.kind == reader.ONEROSTER,
        ingested_files.c.file_id != file_id)) if r.path.rsplit("/", 1)[0] == series]
    if mode["users"] != "absent":
        rows, deleted, user_map, bad, counted = _rules(
            roster_rules.students_rows, bundle.tables["users"],
            roles=bundle.tables.get("roles") if mode["roles"] != "absent" else None,
            orgs=bundle.tables.get("orgs") if mode["orgs"] != "absent" else None, version=manifest.version,
            id_rule=district.standards.oneroster_student_id)
        counts.update(counted)
        writer.reject(bad)
        if len(user_map):
            user_map = user_map.drop_duplicates("sourced_id", keep="last")
            _upsert_frame(conn, roster_users, user_map.assign(district_id=district.id, file_id=file_id),
                          ["district_id", "sourced_id"])
        cells = rows.assign(line=rows["line"].astype("Int64"))
        loaded += writer.rows("students", [(cells, _EMPTY_BAD)], present={"student_id", "school_id", "grade"})
        removed = set(deleted["student_id"]) if len(deleted) else set()
        if mode["users"] == "bulk":  # the complete set: students the series gave and this one lists no more
            earlier = {r[0] for r in conn.execute(select(students.c.student_id).where(
                students.c.district_id == district.id, students.c.file_id.in_(roster_files)))}
            column = district.standards.oneroster_student_id
            listed = set(bundle.tables["users"][column]) if column in bundle.tables["users"] else set()
            dropped = earlier - set(rows["student_id"]) - listed  # a row listed but quarantined is not dropped
            if dropped:
                counts["students of an earlier bulk users.csv not in this one, removed"] += len(dropped)
            removed |= dropped
        if len(deleted):
            counts["users marked tobedeleted, removed"] += len(deleted)
        _delete_keys(conn, students, district, [(s,) for s in sorted(removed)], ["student_id"])
        writer.touched(schools_of=set(rows["student_id"]) | removed)
    if mode["lineItems"] != "absent":
        items, deleted, bad, counted = _rules(roster_rules.line_items, bundle.tables["lineItems"])
        counts.update(counted)
        writer.reject(bad)
        if mode["lineItems"] == "bulk":
            conn.execute(delete(roster_line_items).where(roster_line_items.c.district_id == district.id,
                                                         roster_line_items.c.file_id.in_(roster_files)))
        if len(items):
            items = items.drop_duplicates("sourced_id", keep="last")
            _upsert_frame(conn, roster_line_items, items[["sourced_id", "title", "result_min", "result_max"]].assign(
                district_id=district.id, file_id=file_id), ["district_id", "sourced_id"])
        _delete_keys(conn, roster_line_items, district, [(s,) for s in deleted["sourced_id"]] if len(deleted) else [],
                     ["sourced_id"])
    if mode["results"] != "absent":
        items = read_frame(conn, select(roster_line_items.c.sourced_id, roster_line_items.c.title,
                                        roster_line_items.c.result_min, roster_line_items.c.result_max).where(
            roster_line_items.c.district_id == district.id))
        user_map = dict(conn.execute(select(roster_users.c.sourced_id, roster_users.c.student_id).where(
            roster_users.c.district_id == district.id)).all())
        rows, deleted, bad, counted = _rules(roster_rules.results_rows, bundle.tables["results"], items=items,
                                             user_map=user_map)
        counts.update(counted)
        writer.reject(bad)
        loaded += writer.rows("assessments", [(rows.assign(line=rows["line"].astype("Int64")), _EMPTY_BAD)])
        removed = set(zip(deleted["student_id"], deleted["assessment_id"])) if len(deleted) else set()
        if len(deleted):
            counts["results marked tobedeleted, removed"] += len(deleted)
        if mode["results"] == "bulk":
            earlier = set(conn.execute(select(assessments.c.student_id, assessments.c.assessment_id).where(
                assessments.c.district_id == district.id, assessments.c.file_id.in_(roster_files))).all())
            results = bundle.tables["results"]
            listed = set(zip(results["studentSourcedId"].map(user_map), results["lineItemSourcedId"])) if {
                "studentSourcedId", "lineItemSourcedId"} <= set(results.columns) else set()
            dropped = earlier - set(zip(rows["student_id"], rows["assessment_id"])) - listed
            if dropped:
                counts["results of an earlier bulk results.csv not in this one, removed"] += len(dropped)
            removed |= dropped
        _delete_keys(conn, assessments, district, sorted(removed), ["student_id", "assessment_id"])
    return loaded, counts, notes


def _rules(function, *args, **kwargs):
    """A OneRoster rule; a table it cannot read (a required column missing) fails the bundle."""
    try:
        return function(*args, **kwargs)
    except ValueError as exc:
        raise FileUnreadable(str(exc)) from None


def _upsert_frame(conn, table: Table, frame: pd.DataFrame, key: list[str]) -> None:
    records = [{k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()}
               for r in frame.to_dict("records")]
    for first in range(0, len(records), 5_000):
        upsert_rows(conn, table, records[first:first + 5_000], key=key)


def _delete_keys(conn, table: Table, district: District, keys: list[tuple], columns: list[str]) -> None:
    for first in range(0, len(keys), 500):
        part = keys[first:first + 500]
        where = (table.c[columns[0]].in_([k[0] for k in part]) if len(columns) == 1
                 else tuple_(*(table.c[c] for c in columns)).in_(part))
        conn.execute(delete(table).where(table.c.district_id == district.id, where))
