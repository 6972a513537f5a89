"""ingest: load a district's landing files into the source tables, each file once.

Per file, in one transaction: its manifest row in `ingested_files`, its good rows merged
into the source table by key (a later file replaces what its rows key), and its bad rows in
`rejected_rows`. So a crash never leaves a file half-counted. Within a file, usage rows
with the same key are summed; for other kinds the last row wins.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from sqlalchemy import Column, Integer, MetaData, Table, and_, delete, func, literal, select, update

from analytics.landing_rows import KINDS, reason_category, validate
from config import District, Settings
from database import bulk_insert, upsert_from_select, upsert_rows
from jobs.decrypt import remove_stale_folders
from jobs.job import COMPLETED_WITH_ERRORS, SUCCEEDED, JobContext, JobResult
from jobs.landing import FileReader, FileUnreadable, LandingFile, discover, fingerprint
from models import SOURCE_TABLES, ingested_files, rejected_rows

log = logging.getLogger(__name__)

LOADED, DUPLICATE, FAILED_FILE = "loaded", "duplicate", "failed"


class FileChanged(Exception):
    pass


@dataclass
class FileOutcome:
    status: str  # loaded | duplicate | failed | skipped
    rows_loaded: int = 0
    rows_rejected: int = 0
    reasons: Counter | None = None
    error: str | None = None


def unconfigured_folders(landing_dir: Path, settings: Settings) -> list[str]:
    """Folders under LANDING_DIR that are not a configured district (they are not read)."""
    root = Path(landing_dir)
    if not root.is_dir():
        return []
    known = {d.id for d in settings.districts}
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in known)


def run(engine, district: District, ctx: JobContext) -> JobResult:
    remove_stale_folders()
    files = discover(ctx.landing_dir, district.id)
    counts: Counter = Counter()
    reasons: Counter = Counter()
    result = JobResult()
    for file in files:
        outcome = _ingest_file(engine, district, file, ctx)
        counts[outcome.status] += 1
        result.rows_out += outcome.rows_loaded
        result.rows_rejected += outcome.rows_rejected
        reasons.update(outcome.reasons or {})
        if outcome.status == FAILED_FILE:
            reasons[f"file failed: {outcome.error}"] += 1
            log.warning("%s: %s: failed: %s", district.id, file.relpath, outcome.error)
    result.rows_in = result.rows_out + result.rows_rejected
    if counts[FAILED_FILE] or result.rows_rejected:
        result.status = COMPLETED_WITH_ERRORS
    result.details = {"files": dict(counts), "top_reasons": reasons.most_common(5)}
    parts = [f"{counts[s]} {s}" for s in (LOADED, DUPLICATE, FAILED_FILE, "skipped") if counts[s]]
    result.message = f"files: {', '.join(parts) or 'none'}"
    if reasons:
        result.message += "; top reasons: " + "; ".join(f"{r} ({n})" for r, n in reasons.most_common(3))
    return result


def _manifest_row(conn, district: District, file: LandingFile, sha: str):
    return conn.execute(
        select(ingested_files.c.file_id, ingested_files.c.status).where(
            ingested_files.c.district_id == district.id,
            ingested_files.c.path == file.relpath,
            ingested_files.c.sha256 == sha,
        )
    ).first()


def _loaded_elsewhere(conn, district: District, file: LandingFile, sha: str) -> str | None:
    return conn.execute(
        select(ingested_files.c.path).where(
            ingested_files.c.district_id == district.id,
            ingested_files.c.sha256 == sha,
            ingested_files.c.status == LOADED,
            ingested_files.c.path != file.relpath,
        ).order_by(ingested_files.c.file_id).limit(1)
    ).scalar()


def _record(conn, district: District, file: LandingFile, sha: str, started: datetime, **values) -> None:
    """Write (insert or update) the manifest row of a file that did not load."""
    row = {
        "district_id": district.id, "path": file.relpath, "school": file.school, "sha256": sha,
        "bytes": file.bytes, "kind": file.kind, "format": file.ending, "arrived_at": file.modified_at,
        "started_at": started, "finished_at": datetime.now(timezone.utc),
        "rows_loaded": 0, "rows_rejected": 0, "error": None, "notes": None, **values,
    }
    upsert_rows(conn, ingested_files, [row], key=["district_id", "path", "sha256"])


def _ingest_file(engine, district: District, file: LandingFile, ctx: JobContext) -> FileOutcome:
    started = datetime.now(timezone.utc)
    clock = time.perf_counter()
    try:
        sha, size = fingerprint(file.path)
    except OSError as exc:
        return FileOutcome("skipped", error=f"cannot be read now: {exc}")

    with engine.begin() as conn:
        known = _manifest_row(conn, district, file, sha)
        if known is not None and known.status in (LOADED, DUPLICATE) and not ctx.force:
            return FileOutcome("skipped")
        if file.problem:
            _record(conn, district, file, sha, started, status=FAILED_FILE, error=file.problem)
            return FileOutcome(FAILED_FILE, error=file.problem)
        original = _loaded_elsewhere(conn, district, file, sha)
        if original is not None:
            _record(conn, district, file, sha, started, status=DUPLICATE, notes=f"same bytes as {original}")
            log.info("%s: %s: duplicate of %s, not loaded again", district.id, file.relpath, original)
            return FileOutcome(DUPLICATE)

    try:
        with engine.begin() as conn:
            outcome = _load(conn, district, file, sha, size, started)
    except (FileUnreadable, FileChanged) as exc:
        with engine.begin() as conn:
            _record(conn, district, file, sha, started, status=FAILED_FILE, error=str(exc))
        return FileOutcome(FAILED_FILE, error=str(exc))
    log.info(
        "%s: %s: %d rows loaded, %d rejected in %.2fs",
        district.id, file.relpath, outcome.rows_loaded, outcome.rows_rejected, time.perf_counter() - clock,
    )
    return outcome


def _stage_table(kind_name: str) -> Table:
    """A temporary table shaped like the kind's source table, plus the row's line number."""
    source = SOURCE_TABLES[kind_name]
    kind = KINDS[kind_name]
    return Table(
        f"stage_{kind_name}",
        MetaData(),
        Column("line", Integer, nullable=False),
        *(Column(c.name, c.type) for c in source.columns if c.name in kind.columns),
        prefixes=["TEMPORARY"],
    )


def _load(conn, district: District, file: LandingFile, sha: str, size: int, started: datetime) -> FileOutcome:
    kind = KINDS[file.kind]
    target = SOURCE_TABLES[file.kind]
    previous = _manifest_row(conn, district, file, sha)
    if previous is not None:  # a retry of a failed file, or --force: replace its record
        conn.execute(delete(rejected_rows).where(rejected_rows.c.file_id == previous.file_id))
        conn.execute(delete(ingested_files).where(ingested_files.c.file_id == previous.file_id))
    file_id = conn.execute(
        ingested_files.insert().values(
            district_id=district.id, path=file.relpath, school=file.school, sha256=sha,
            bytes=size, kind=file.kind, format=file.ending, status="loading",
            arrived_at=file.modified_at, started_at=started,
        ).returning(ingested_files.c.file_id)
    ).scalar_one()

    stage = _stage_table(file.kind)
    stage.create(conn)
    loaded = rejected = 0
    reasons: Counter = Counter()
    with FileReader(file, size) as reader:
        for chunk in reader.chunks():
            good, bad = validate(kind, chunk.cells)
            bad = pd.concat([chunk.malformed, bad], ignore_index=True) if len(chunk.malformed) else bad
            loaded += bulk_insert(conn, stage, good)
            if len(bad):
                rejected += bulk_insert(conn, rejected_rows, bad.assign(
                    file_id=file_id, district_id=district.id, path=file.relpath
                ))
                reasons.update(reason_category(bad["reason"]))
        notes = list(reader.notes)
        if not reader.unchanged(sha):
            raise FileChanged("the file changed while it was being read; it will be loaded on the next run")

    notes += _merge(conn, district, kind, stage, target, file_id)
    stage.drop(conn)
    if loaded == 0 and rejected == 0:
        notes.append("header only: no rows")
    conn.execute(
        update(ingested_files).where(ingested_files.c.file_id == file_id).values(
            status=LOADED, rows_loaded=loaded, rows_rejected=rejected,
            notes="; ".join(notes) or None, finished_at=datetime.now(timezone.utc),
        )
    )
    return FileOutcome(LOADED, rows_loaded=loaded, rows_rejected=rejected, reasons=reasons)


def _merge(conn, district: District, kind, stage: Table, target: Table, file_id: int) -> list[str]:
    """Merge the staged rows into the source table by key; return notes on what was folded."""
    key = [c.name for c in target.primary_key.columns if c.name != "district_id"]
    values = [c for c in kind.columns if c not in key]
    staged = conn.execute(select(func.count()).select_from(stage)).scalar_one()
    distinct = conn.execute(
        select(func.count()).select_from(select(*(stage.c[k] for k in key)).group_by(*(stage.c[k] for k in key)).subquery())
    ).scalar_one()
    notes = []
    head = [literal(district.id).label("district_id"), *(stage.c[k] for k in key)]
    tail = [literal(file_id).label("file_id")]
    if kind.name == "usage":
        rows = select(*head, func.sum(stage.c.minutes).label("minutes"),
                      func.sum(stage.c.sessions).label("sessions"), *tail).group_by(*(stage.c[k] for k in key))
        if staged > distinct:
            notes.append(f"{staged - distinct} rows repeated a (student, app, date) key: minutes summed")
        unlisted = conn.execute(
            select(stage.c.app, func.count()).where(stage.c.app.not_in(district.apps)).group_by(stage.c.app).order_by(stage.c.app)
        ).all()
        if unlisted:
            notes.append("usage for apps the district does not list (kept): "
                         + ", ".join(f"{app} ({n} rows)" for app, n in unlisted))
    else:
        last = select(func.max(stage.c.line)).group_by(*(stage.c[k] for k in key))
        rows = select(*head, *(stage.c[v] for v in values), *tail).where(stage.c.line.in_(last))
        if staged > distinct:
            notes.append(f"{staged - distinct} rows repeated a key: the last one of each was kept")
    upsert_from_select(conn, target, [c.name for c in rows.selected_columns], rows)
    return notes
