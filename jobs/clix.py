"""ingest's part for CLIx school-server trees (readers/clix.py reads, analytics/clix.py maps):
the accounts that tool logs need, progress rows, heartbeats, and each school's sync health
(`school_sync`, which `--status` also computes for its own day)."""
from __future__ import annotations

from collections import Counter
from datetime import date, datetime

import pandas as pd
from sqlalchemy import delete, select, tuple_

from analytics import clix as rules
from config import District
from storage.frames import read_frame, replace_district_rows, upsert_rows
from models import clix_accounts, ingested_files, progress, school_heartbeats, school_sync
from readers import clix as tree
from readers.landing import LandingFile
from readers.limits import Limits

KEPT = ("loaded", "duplicate")


def context(conn, district: District, file: LandingFile) -> tree.ClixContext:
    """The reading context of one file: its server's accounts, for tool logs."""
    options = district.clix
    ctx = tree.ClixContext(options.timezone, options.visit_cap_minutes, options.session_cap_minutes,
                           options.staff_accounts)
    if file.source == tree.TOOLS:
        _, server = tree.school_parts(file)
        rows = conn.execute(select(clix_accounts.c.user_id, clix_accounts.c.username, clix_accounts.c.staff).where(
            clix_accounts.c.district_id == district.id, clix_accounts.c.server_id == server)).all()
        ctx.accounts = {r.user_id: (r.username, int(r.staff)) for r in rows}
    return ctx


def write_extras(conn, district: District, ctx: tree.ClixContext, file_id: int) -> list[str]:
    """Accounts and progress rows a users-analytics export gave; notes on what was counted."""
    notes = list(ctx.notes)
    accounts = pd.concat(ctx.new_accounts, ignore_index=True) if ctx.new_accounts else pd.DataFrame()
    if len(accounts):
        accounts = accounts.drop_duplicates(["server_id", "user_id"], keep="last")
        upsert_rows(conn, clix_accounts, [{**r, "district_id": district.id, "file_id": file_id}
                                          for r in accounts.to_dict("records")],
                    key=["district_id", "server_id", "user_id"])
    rows = pd.concat(ctx.progress, ignore_index=True) if ctx.progress else pd.DataFrame()
    if len(rows):
        rows = rows.drop_duplicates(["student_id", "unit"], keep="last")
        keys = list(zip(rows["student_id"], rows["unit"]))
        newer = {}
        for start in range(0, len(keys), 500):
            part = keys[start:start + 500]
            newer.update({(r.student_id, r.unit): pd.Timestamp(r.exported_at) for r in conn.execute(
                select(progress.c.student_id, progress.c.unit, progress.c.exported_at).where(
                    progress.c.district_id == district.id,
                    tuple_(progress.c.student_id, progress.c.unit).in_(part)))})
        exported = pd.Timestamp(rows["exported_at"].iloc[0])
        stale = {k for k in keys if k in newer and _utc(newer[k]) > _utc(exported)}
        keep = rows.loc[[k not in stale for k in keys]]
        records = [{k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()}
                   for r in keep.to_dict("records")]
        upsert_rows(conn, progress, [{**r, "district_id": district.id, "file_id": file_id} for r in records],
                    key=["district_id", "student_id", "unit"])
        if stale:
            ctx.counts["progress rows older than the export already loaded, kept the later"] += len(stale)
    notes += [f"{what}: {n:,}" for what, n in sorted(ctx.counts.items())]
    return notes


def _utc(stamp: pd.Timestamp) -> pd.Timestamp:
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def load_heartbeat(conn, district: District, file: LandingFile, size: int, file_id: int, limits: Limits) -> list[str]:
    """One heartbeat: the server was on at the file name's time; disk and uptime when given."""
    code, server = tree.school_parts(file)
    facts = tree.read_heartbeat(file.path, size, limits)
    seen = rules.to_utc(tree.name_time(file), district.clix.timezone)
    upsert_rows(conn, school_heartbeats, [{"district_id": district.id, "school_id": code, "server_id": server,
                                          "seen_at": seen, **facts, "file_id": file_id}],
                key=["district_id", "server_id", "seen_at"])
    return [facts["note"]] if facts["note"] else []


def _source(relpath: str) -> str | None:
    parts = relpath.split("/")
    return tree.FOLDERS.get(parts[5]) if len(parts) > 6 else None


def sync_frame(conn, district: District, as_of: date, schools: dict[str, tuple[str, str, str]] | None = None
               ) -> pd.DataFrame:
    """Each school server's sync health as of `as_of` (analytics.clix.school_sync), for the
    schools of the tree (`schools`, from discovery) and every school the manifest knows."""
    files = read_frame(conn, select(ingested_files.c.path, ingested_files.c.school, ingested_files.c.bytes,
                                    ingested_files.c.arrived_at).where(
        ingested_files.c.district_id == district.id, ingested_files.c.status.in_(KEPT)))
    beats = read_frame(conn, select(school_heartbeats.c.server_id, school_heartbeats.c.seen_at).where(
        school_heartbeats.c.district_id == district.id))
    known = dict(schools or {})
    for path in files["path"] if len(files) else []:
        parts = path.split("/")
        if len(parts) > 4:
            match = tree.SCHOOL.match(parts[3])
            if match:
                known.setdefault(parts[3], (match["code"], match["server"], parts[2]))
    frame = pd.DataFrame([{"school": s, "school_id": c, "server_id": v, "state_code": st}
                          for s, (c, v, st) in sorted(known.items())],
                         columns=["school", "school_id", "server_id", "state_code"])
    if len(files):
        files = files.assign(source=files["path"].map(_source))
    else:
        files = pd.DataFrame(columns=["school", "source", "arrived_at", "bytes"])
    return rules.school_sync(frame, files, beats, as_of=as_of, zone=district.clix.timezone,
                             stale_after_days=district.stale_after_days)


def publish_sync(conn, district: District, schools: dict, as_of: date, now: datetime) -> tuple[pd.DataFrame, int]:
    """Replace the district's school_sync rows with their state as of `as_of`."""
    frame = sync_frame(conn, district, as_of, schools)
    if frame.empty:
        conn.execute(delete(school_sync).where(school_sync.c.district_id == district.id))
        return frame, 0
    frame = frame.assign(district_id=district.id)
    written = replace_district_rows(conn, school_sync, district.id, frame, stamp={"computed_at": now})
    return frame, written


def sync_summary(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "sync: no school folder yet"
    counts = Counter(frame["state"])
    return "sync: " + ", ".join(f"{counts[s]} {s}" for s in (rules.OK, rules.MISSED_FRIDAY, rules.LATE, rules.SILENT)
                                if counts[s])
