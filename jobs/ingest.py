"""ingest: load a district's landing files into the source tables, each file once.

Per file, in one transaction: its manifest row in `ingested_files`, its good rows merged
into the source table by key (a later file replaces what its rows key), and its bad rows in
`rejected_rows`. So a crash never leaves a file half-counted. Within a file, usage rows
with the same key are summed; for other kinds the last row wins.
"""
from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from psycopg2 import DataError as PsycopgDataError
from psycopg2 import Error as PsycopgError
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError
from sqlalchemy import Column, Integer, MetaData, Table, bindparam, delete, exists, func, literal, select, update

from analytics.landing_rows import (
    DAY_FIRST, KINDS, NUL_SHOWN, US_STYLE, reason_category, slashed_day_examples, validate,
)
from analytics.usage_rollup import Folded
from analytics.usage_rollup import rollup as rollup_of
from analytics.usage_weeks import schools as schools_among
from analytics.usage_weeks import week_sums, weekly_rows
from config import District, Settings
from config.secrets import MASK, redact, secret_values
from storage.database import is_postgres, lock_key
from storage.frames import Prepared, bulk_insert, upsert_from_select, upsert_rows
from readers.decrypt import remove_stale_folders
from jobs import changes, clix, rollup, standards, weekly
from jobs.job import COMPLETED_WITH_ERRORS, JobContext, JobResult, checkpoint, plural
from readers import clix as clix_tree
from readers import standards as standard_files
from readers.landing import FileReader, FileUnreadable, LandingFile, NeedsExactReader, discover, fingerprint
from readers.limits import Limits, bounded_raw
from models import SOURCE_TABLES, ingested_files, rejected_rows, usage
from jobs.progress import Progress

log = logging.getLogger(__name__)

LOADED, DUPLICATE, FAILED_FILE = "loaded", "duplicate", "failed"
UNREADABLE = "unreadable"  # the sha256 recorded for a file that could not even be opened
REFUSED = "refused"  # ... and for one that discovery would not open (README, Reliability)


class FileChanged(Exception):
    pass


@dataclass
class FileOutcome:
    status: str  # loaded | duplicate | failed | skipped
    rows_loaded: int = 0
    rows_rejected: int = 0
    reasons: Counter | None = None
    error: str | None = None
    nothing_loaded: str | None = None  # loaded, but every row was rejected: the note saying why
    counted: Counter | None = None  # school-server files: what the mapping rules counted (left out, capped)


def unconfigured_folders(landing_dir: Path, settings: Settings) -> list[str]:
    """Folders under LANDING_DIR that are not a configured district (they are not read)."""
    root = Path(landing_dir)
    if not root.is_dir():
        return []
    known = {d.id for d in settings.districts}
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in known)


def run(engine, district: District, ctx: JobContext) -> JobResult:
    remove_stale_folders()
    report = None
    if district.source == "clix":
        files, report = clix_tree.discover_tree(ctx.landing_dir, district.id, district.clix.states)
        for folder, why in report.problems:
            log.warning("%s: %s: %s; not read", district.id, folder, why)
    else:
        files = standard_files.claim(discover(ctx.landing_dir, district.id))
    with engine.begin() as conn:  # a database from before usage_weekly: built once
        weekly.ensure(conn, district.id)
    if ctx.force:  # replay files in the order they were first loaded, then new ones by arrival
        with engine.connect() as conn:
            loaded_at = dict(conn.execute(_current_file_ids(district)).all())
        files.sort(key=lambda f: (loaded_at.get(f.relpath, float("inf")), f.modified_at, f.relpath))
    current = {} if ctx.force else _current_versions(engine, district)
    counts: Counter = Counter()
    reasons: Counter = Counter()
    counted: Counter = Counter()
    result = JobResult()
    failed: list[tuple[str, str]] = []  # (relpath, error) of the files that failed
    nothing: list[tuple[str, str]] = []  # (relpath, note) of the files that loaded no row of several
    bar = Progress(f"ingest {district.id}", len(files))
    for file, outcome in _outcomes(engine, district, files, ctx, current, bar):
        counts[outcome.status] += 1
        result.rows_out += outcome.rows_loaded
        result.rows_rejected += outcome.rows_rejected
        reasons.update(outcome.reasons or {})
        counted.update(outcome.counted or {})
        if outcome.status == FAILED_FILE:
            reasons[f"file failed: {outcome.error}"] += 1
            failed.append((file.relpath, outcome.error))
            log.warning("%s: %s: failed: %s", district.id, file.relpath, outcome.error)
        elif outcome.nothing_loaded:
            nothing.append((file.relpath, outcome.nothing_loaded))
            log.warning("%s: %s: loaded no row: %s", district.id, file.relpath, outcome.nothing_loaded)
    bar.close()
    result.rows_in = result.rows_out + result.rows_rejected
    if counts[FAILED_FILE] or result.rows_rejected:
        result.status = COMPLETED_WITH_ERRORS
    # A failed file is tried again on every run until it loads (it is never skipped as
    # unchanged), so this run's failures are the landing folder's files still failing; the
    # manifest adds those that failed earlier and are no longer there, never loaded.
    gone = _failed_and_gone(engine, district, {f.relpath for f in files})
    result.details = {"files": dict(counts), "top_reasons": reasons.most_common(5),
                      "failed_files": failed + gone, "files_with_nothing_loaded": nothing}
    parts = [f"{counts[s]} {s}" for s in (LOADED, DUPLICATE, FAILED_FILE, "skipped") if counts[s]]
    result.message = f"files: {', '.join(parts) or 'none'}"
    if failed:
        result.message += "; failed: " + _names([path for path, _ in failed], district)
    if nothing:
        labels = {_nothing_label(note) for _, note in nothing}
        why = f" ({labels.pop()})" if len(labels) == 1 else ""
        result.message += (f"; {len(nothing)} file{'s' if len(nothing) > 1 else ''} loaded no row{why}: "
                           + _names([path for path, _ in nothing], district))
    if reasons:
        result.message += "; top reasons: " + "; ".join(f"{r} ({n})" for r, n in reasons.most_common(3))
    if counted:
        result.message += "; counted: " + ", ".join(f"{what} {n:,}" for what, n in sorted(counted.items()))
        result.details["counted"] = dict(counted)
    if report is not None:
        if report.summary():
            result.message += "; " + report.summary()
        with engine.begin() as conn:
            sync, _ = clix.publish_sync(conn, district, report.schools, ctx.as_of, ctx.now)
        result.message += "; " + clix.sync_summary(sync)
        result.details.update(counted=dict(counted), tree_problems=report.problems, ignored=dict(report.ignored))
    return result


def _failed_and_gone(engine, district: District, present: set[str]) -> list[tuple[str, str]]:
    """(relpath, error) of each path not in the landing folder now whose latest manifest row
    is `failed` (no later version loaded), as the status page lists them."""
    latest = (select(func.max(ingested_files.c.file_id)).where(ingested_files.c.district_id == district.id)
              .group_by(ingested_files.c.path))
    with engine.connect() as conn:
        rows = conn.execute(select(ingested_files.c.path, ingested_files.c.error).where(
            ingested_files.c.file_id.in_(latest), ingested_files.c.status == FAILED_FILE,
        ).order_by(ingested_files.c.path)).all()
    return [(r.path, f"{r.error} (no longer in the landing folder)") for r in rows if r.path not in present]


def _names(relpaths: list[str], district: District, most: int = 5) -> str:
    """Paths under the district's folder, at most `most` of them, for a one-line message."""
    names = [p.removeprefix(f"{district.id}/") for p in relpaths]
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def _nothing_label(note: str) -> str:
    if note.startswith(_US_ONLY):
        return "every date US-style"
    if note.startswith(_SLASHED_ONLY):
        return "every date DD/MM/YYYY or MM/DD/YYYY"
    return "every row rejected"


_US_ONLY = "every date is US-style"
_SLASHED_ONLY = "every date is DD/MM/YYYY or MM/DD/YYYY"


def _rejections_note(loaded: int, rejected: int, reasons: Counter, examples: dict[str, str]) -> str | None:
    """The note on a file whose rows were rejected for a day written with slashes, or that
    loaded no row of several: what the nightly summary lists it with."""
    slashed = {style: sum(n for category, n in reasons.items() if category.endswith(f"({style})"))
               for style in (US_STYLE, DAY_FIRST)}
    total = sum(slashed.values())
    style = (f"DD/MM/YYYY or MM/DD/YYYY (e.g. {examples[DAY_FIRST]})" if slashed[DAY_FIRST]
             else f"US-style (MM/DD/YYYY, e.g. {examples[US_STYLE]})" if total else "")
    rows = f"{loaded + rejected} row{'s' if loaded + rejected != 1 else ''}"
    slashed_part = f"rejected for a date that is {style}: {total} of {rows}; dates must be YYYY-MM-DD"
    if loaded == 0 and rejected and total == rejected:  # each kind has one day column: a row counts once
        return f"every date is {style}; dates must be YYYY-MM-DD: 0 of {rows} loaded"
    if loaded == 0 and rejected:
        top = "".join(f"; top reason: {r} ({n} of {rows})" for r, n in reasons.most_common(1))
        return f"no row loaded: every row was rejected{top}" + (f"; {slashed_part}" if total else "")
    return slashed_part if total else None


def _current_file_ids(district: District):
    """path, file_id of each path's version whose rows are in the tables (its latest loaded)."""
    return (
        select(ingested_files.c.path, func.max(ingested_files.c.file_id).label("file_id"))
        .where(ingested_files.c.district_id == district.id, ingested_files.c.status.in_((LOADED, DUPLICATE)))
        .group_by(ingested_files.c.path)
    )


def _latest_version(conn, district: District, relpath: str):
    """The manifest row of the version of `relpath` whose rows are in the tables, if any."""
    return conn.execute(
        select(ingested_files.c.file_id, ingested_files.c.sha256, ingested_files.c.status)
        .where(ingested_files.c.district_id == district.id, ingested_files.c.path == relpath,
               ingested_files.c.status.in_((LOADED, DUPLICATE)))
        .order_by(ingested_files.c.file_id.desc()).limit(1)
    ).first()


def _current_with(district: District, shas):
    """Manifest rows (sha256, path) with these bytes that are their path's current version
    (its latest loaded or duplicate) and loaded, oldest first. Found through the sha256
    index, one path's versions at a time: not every path's latest version of the district
    for each file, which made a first night of 50,000 files quadratic."""
    later = ingested_files.alias("later")
    return select(ingested_files.c.sha256, ingested_files.c.path).where(
        ingested_files.c.district_id == district.id,
        ingested_files.c.sha256.in_(shas),
        ingested_files.c.status == LOADED,
        ~exists().where(later.c.district_id == district.id, later.c.path == ingested_files.c.path,
                        later.c.status.in_((LOADED, DUPLICATE)), later.c.file_id > ingested_files.c.file_id),
    ).order_by(ingested_files.c.file_id)


def _loaded_elsewhere(conn, district: District, file: LandingFile, sha: str) -> str | None:
    """Another path whose current (latest loaded) version has exactly these bytes."""
    same = _current_with(district, [sha]).where(ingested_files.c.path != file.relpath)
    if file.source is None or standards.is_standard(file):
        first = conn.execute(same.limit(1)).first()
        return None if first is None else first.path
    # a school-server tree: one delivery is the same bytes under the same name in the same
    # school's folder, whichever year folder holds it (two schools' heartbeats may match byte for byte)
    tail = file.relpath.split("/")[2:]
    return next((r.path for r in conn.execute(same) if r.path.split("/")[2:] == tail), None)


def lock_district(conn, district: District) -> None:
    """Serialise concurrent ingests of one district until this transaction ends.

    PostgreSQL: a transaction-level advisory lock on a stable 64-bit key. SQLite: the
    transaction already holds the database's write lock (BEGIN IMMEDIATE).
    """
    if is_postgres(conn):
        conn.execute(select(func.pg_advisory_xact_lock(lock_key("ingest", district.id))))


def _record(conn, district: District, file: LandingFile, sha: str, started: datetime, **values) -> None:
    """Write (insert or update) the manifest row of a file that did not load."""
    if values.get("error"):
        values = {**values, "error": redact(values["error"]).replace("\x00", NUL_SHOWN)[:2000]}
    row = {
        "district_id": district.id, "path": file.relpath, "school": file.school, "sha256": sha,
        "bytes": file.bytes, "kind": file.kind, "format": file.ending, "arrived_at": file.modified_at,
        "started_at": started, "finished_at": datetime.now(timezone.utc),
        "rows_loaded": 0, "rows_rejected": 0, "error": None, "notes": None, **values,
    }
    upsert_rows(conn, ingested_files, [row], key=["district_id", "path", "sha256"])


@dataclass(frozen=True)
class _Loaded:
    """What the manifest has of the version of a path whose rows are in the tables."""
    sha256: str
    bytes: int
    arrived_at: datetime | None  # the file's modification time when it was loaded

    def quick_match(self, file: LandingFile) -> bool:
        """Same size and modification time as that version (rsync's quick check)."""
        if self.arrived_at is None:
            return False
        loaded = self.arrived_at if self.arrived_at.tzinfo else self.arrived_at.replace(tzinfo=timezone.utc)
        return self.bytes == file.bytes and loaded == file.modified_at


def _current_versions(engine, district: District) -> dict[str, _Loaded]:
    """The version of each path whose rows are in the tables, in one query, so a night with a
    year of files behind it neither reads them again nor opens a transaction for them."""
    current = _current_file_ids(district).subquery()
    with engine.connect() as conn:
        rows = conn.execute(select(ingested_files.c.path, ingested_files.c.sha256, ingested_files.c.bytes,
                                   ingested_files.c.arrived_at)
                            .where(ingested_files.c.file_id.in_(select(current.c.file_id)))).all()
    return {r.path: _Loaded(r.sha256, r.bytes, r.arrived_at) for r in rows}


def _ingest_file(engine, district: District, file: LandingFile, ctx: JobContext,
                 current: _Loaded | None = None) -> FileOutcome:
    """Load one file in its own transaction. `current`: the version the manifest had for its
    path when the job started; a file with its size and modification time is skipped unread,
    one with its bytes is skipped without a transaction (else checked again under the lock)."""
    if current is not None and not ctx.force and current.quick_match(file):
        return FileOutcome("skipped")
    started = datetime.now(timezone.utc)
    clock = time.perf_counter()
    if file.refused:  # never opened: a link out of the folder, a FIFO, a mount point
        with engine.begin() as conn:
            _record(conn, district, file, REFUSED, started, status=FAILED_FILE, error=file.refused)
        return FileOutcome(FAILED_FILE, error=file.refused)
    try:
        sha, size = standards.fingerprint(file) if standards.is_standard(file) else fingerprint(file.path)
    except OSError as exc:
        error = f"cannot be read: {exc.strerror or exc}"
        with engine.begin() as conn:
            _record(conn, district, file, UNREADABLE, started, status=FAILED_FILE, error=error)
        return FileOutcome(FAILED_FILE, error=error)
    if current is not None and current.sha256 == sha and not ctx.force:  # loaded before this job began
        return FileOutcome("skipped")

    try:
        with engine.begin() as conn:
            lock_district(conn, district)
            latest = _latest_version(conn, district, file.relpath)
            if latest is not None and latest.sha256 == sha and not ctx.force:
                return FileOutcome("skipped")
            if file.problem:
                _record(conn, district, file, sha, started, status=FAILED_FILE, error=file.problem)
                return FileOutcome(FAILED_FILE, error=file.problem)
            original = _loaded_elsewhere(conn, district, file, sha)
            if original is not None:
                _record(conn, district, file, sha, started, status=DUPLICATE, notes=f"same bytes as {original}")
                log.info("%s: %s: duplicate of %s, not loaded again", district.id, file.relpath, original)
                return FileOutcome(DUPLICATE)
            outcome = _load(conn, district, file, sha, size, started, ctx.settings.school_year_start)
    except (FileUnreadable, FileChanged) as exc:
        error = str(exc)
    except (DataError, PsycopgDataError) as exc:  # a value the checks let through but the database refuses
        error = f"the database refused a value in this file: {str(getattr(exc, 'orig', exc)).splitlines()[0]}"
        log.exception("%s: %s: %s", district.id, file.relpath, error)
    except (SQLAlchemyError, PsycopgError):  # the database itself: the district's ingest fails
        raise
    except Exception as exc:  # anything else inside one file's load (MemoryError, RecursionError, a bug): that file's failure
        error = f"could not be loaded: {type(exc).__name__}: {str(exc)[:500]}"
        log.exception("%s: %s: %s", district.id, file.relpath, error)
    else:
        log.info(
            "%s: %s: %d rows loaded, %d rejected in %.2fs",
            district.id, file.relpath, outcome.rows_loaded, outcome.rows_rejected, time.perf_counter() - clock,
        )
        return outcome
    with engine.begin() as conn:
        _record(conn, district, file, sha, started, status=FAILED_FILE, error=error)
    return FileOutcome(FAILED_FILE, error=error)


# --- small files, loaded together -----------------------------------------------------------
#
# A first night of a school district is tens of thousands of small files (a school server's
# export a day), and one transaction each cost ~50 ms of fixed work (validation and rollups
# of three rows in pandas, a manifest lookup, temporary tables, a week of usage_weekly, a
# commit): 50,000 files took hours. Runs of consecutive small usage CSV files whose paths were
# never loaded are loaded together instead: each read (and fingerprinted, and re-checked) on
# its own, so a file that cannot be read fails alone as it would have; then, in one
# transaction, their manifest rows, their rows validated and written at once, their bad rows,
# the rollups, the change log and the weeks of usage_weekly. Exactly once holds as for a
# single file (a crash leaves none of them counted), and the order is the files' order. When
# a batch cannot be written as such (a key that is loaded already or repeats, a value the
# database refuses, a concurrent instance that loaded one of its paths), its transaction
# rolls back and its files are loaded one at a time, as always.

SMALL_FILE_BYTES = 256 << 10  # files up to this size join a batch ...
BATCH_FILES = 500  # ... of at most this many files
BATCH_BYTES = 8 << 20  # ... and this many bytes


class _NotBatchable(Exception):
    """The batch cannot be written together: its files are loaded one at a time."""


def _batchable(file: LandingFile, known: _Loaded | None, ctx: JobContext) -> bool:
    """A small plain usage CSV of ours whose path has no loaded version (its keys are new,
    unless another path has them), not under --force."""
    return (not ctx.force and known is None and file.source is None and file.kind == "usage"
            and file.format == ".csv" and not file.encrypted and file.problem is None
            and file.bytes <= SMALL_FILE_BYTES)


def _outcomes(engine, district: District, files: list[LandingFile], ctx: JobContext, current: dict, bar):
    """(file, outcome) of every file, in the files' order: runs of small files in batches,
    every other file in a transaction of its own."""
    batch: list[LandingFile] = []

    def flush():
        outcomes = _ingest_batch(engine, district, batch, ctx) if len(batch) > 1 else None
        if outcomes is None:  # one at a time
            outcomes = (_ingest_file(engine, district, f, ctx, current.get(f.relpath)) for f in batch)
        yield from zip(list(batch), outcomes)
        batch.clear()
        held[0] = 0

    held = [0]  # bytes in the batch

    for done, file in enumerate(files, start=1):
        bar.update(done, file.relpath.split("/")[-1])
        known = current.get(file.relpath)
        if known is not None and not ctx.force and known.quick_match(file):
            yield file, FileOutcome("skipped")
        elif _batchable(file, known, ctx):
            batch.append(file)
            held[0] += file.bytes
            if len(batch) >= BATCH_FILES or held[0] >= BATCH_BYTES:
                yield from flush()
        else:
            yield from flush()
            yield file, _ingest_file(engine, district, file, ctx, known)
    yield from flush()


@dataclass
class _Read:
    """One file of a batch, read: its cells, or why it failed."""
    file: LandingFile
    started: datetime
    sha: str = UNREADABLE
    size: int = 0
    cells: list | None = None  # its chunks' cells (kind columns, line, raw)
    malformed: list | None = None  # its chunks' malformed rows
    notes: list | None = None
    error: str | None = None


def _read_small(file: LandingFile) -> _Read:
    """Fingerprint and read one small file whole, with the exact reader (a few rows: Python's
    csv module is quicker to start than Arrow's), checking it did not change meanwhile."""
    read = _Read(file, datetime.now(timezone.utc))
    try:
        read.sha, read.size = fingerprint(file.path)
    except OSError as exc:
        read.error = f"cannot be read: {exc.strerror or exc}"
        return read
    kind = KINDS[file.kind]
    try:
        with FileReader(file, read.size, fast=False) as reader:
            chunks = list(reader.chunks())
            if not reader.unchanged(read.sha):
                raise FileChanged("the file changed while it was being read; it will be loaded on the next run")
            read.notes = list(reader.notes)
    except (FileUnreadable, FileChanged) as exc:
        read.error = str(exc)
        return read
    except Exception as exc:  # anything else inside one file's read: that file's failure, as one at a time
        read.error = f"could not be loaded: {type(exc).__name__}: {str(exc)[:500]}"
        log.exception("%s: %s: %s", file.district_id, file.relpath, read.error)
        return read
    keep = [*kind.columns, "line", "raw"]
    read.cells = [c.cells[[name for name in c.cells.columns if name in keep]] for c in chunks]
    read.malformed = [c.malformed for c in chunks if len(c.malformed)]
    return read


def _no_cells(kind) -> pd.DataFrame:
    """The cells of files that have a header and no row."""
    return pd.DataFrame({**{c: pd.Series([], dtype=object) for c in kind.required},
                         "line": pd.Series([], dtype="Int64"), "raw": pd.Series([], dtype=object)})


_LINE_BITS = 32  # a batch's rows carry (file's position << 32) + line: validation keeps `line`


def _ingest_batch(engine, district: District, batch: list[LandingFile], ctx: JobContext) -> list[FileOutcome] | None:
    """Load a run of small usage files together (see above); their outcomes in order, or None
    when they must be loaded one at a time (nothing of them is then written)."""
    clock = time.perf_counter()
    reads = [_read_small(file) for file in batch]
    try:
        with engine.begin() as conn:
            lock_district(conn, district)
            outcomes = _write_batch(conn, district, reads, ctx.settings.school_year_start)
    except _NotBatchable as exc:
        log.debug("%s: %d files loaded one at a time: %s", district.id, len(batch), exc)
        return None
    except Exception as exc:  # a value the database refuses, a bug, the database itself: one at a
        # time, each file's own handling applies (its failure alone; the database's fails the district)
        log.info("%s: %d files loaded one at a time: %s: %s", district.id, len(batch), type(exc).__name__,
                 str(exc).splitlines()[0][:300] if str(exc) else "")
        return None
    seconds = time.perf_counter() - clock
    for read, outcome in zip(reads, outcomes):
        if outcome.status == LOADED:
            log.info("%s: %s: %d rows loaded, %d rejected (one of %d files loaded together in %.2fs)",
                     district.id, read.file.relpath, outcome.rows_loaded, outcome.rows_rejected, len(batch), seconds)
    return outcomes


def _write_batch(conn, district: District, reads: list[_Read], start: tuple[int, int]) -> list[FileOutcome]:
    kind = KINDS["usage"]
    paths = [r.file.relpath for r in reads]
    if conn.execute(select(ingested_files.c.file_id).where(  # loaded by another instance since the job began
            ingested_files.c.district_id == district.id, ingested_files.c.path.in_(paths),
            ingested_files.c.status.in_((LOADED, DUPLICATE))).limit(1)).first():
        raise _NotBatchable("a path of the batch has a loaded version now")
    shas = sorted({r.sha for r in reads if r.error is None})
    elsewhere: dict[str, str] = {}
    for sha, path in conn.execute(_current_with(district, shas)) if shas else ():
        elsewhere.setdefault(sha, path)
    outcomes: list[FileOutcome | None] = [None] * len(reads)
    loading: list[int] = []
    here: dict[str, str] = {}  # sha -> path of an earlier file of this batch that loads
    for i, read in enumerate(reads):
        file = read.file
        if read.error is not None:
            _record(conn, district, file, read.sha, read.started, status=FAILED_FILE, error=read.error)
            outcomes[i] = FileOutcome(FAILED_FILE, error=read.error)
            continue
        original = elsewhere.get(read.sha) or here.get(read.sha)
        if original is not None:
            _record(conn, district, file, read.sha, read.started, status=DUPLICATE, notes=f"same bytes as {original}")
            log.info("%s: %s: duplicate of %s, not loaded again", district.id, file.relpath, original)
            outcomes[i] = FileOutcome(DUPLICATE)
            continue
        here[read.sha] = file.relpath
        loading.append(i)
    if not loading:
        return outcomes
    # a retry (failed before, or unreadable): its earlier record is replaced, as one at a time
    wanted = {(reads[i].file.relpath, s) for i in loading for s in (reads[i].sha, UNREADABLE)}
    earlier = [r.file_id for r in conn.execute(select(ingested_files.c.file_id, ingested_files.c.path,
                                                      ingested_files.c.sha256).where(
        ingested_files.c.district_id == district.id, ingested_files.c.path.in_([paths[i] for i in loading])))
               if (r.path, r.sha256) in wanted]
    if earlier:
        conn.execute(delete(rejected_rows).where(rejected_rows.c.file_id.in_(earlier)))
        conn.execute(delete(ingested_files).where(ingested_files.c.file_id.in_(earlier)))
    file_ids = conn.execute(
        ingested_files.insert().returning(ingested_files.c.file_id, sort_by_parameter_order=True),
        [dict(district_id=district.id, path=reads[i].file.relpath, school=reads[i].file.school, sha256=reads[i].sha,
              bytes=reads[i].size, kind=reads[i].file.kind, format=reads[i].file.ending, status="loading",
              arrived_at=reads[i].file.modified_at, started_at=reads[i].started) for i in loading],
    ).scalars().all()

    fold = rollup.start_if_empty(conn, district.id, start)
    if not fold:
        rollup.mark_incomplete(conn, district.id)
    cells, malformed = [], []
    for position, i in enumerate(loading):
        offset = position << _LINE_BITS
        cells += [c.assign(line=c["line"] + offset) for c in reads[i].cells]
        malformed += [m.assign(line=m["line"] + offset) for m in reads[i].malformed]
    good, bad = validate(kind, pd.concat(cells, ignore_index=True) if cells else _no_cells(kind))
    if malformed:
        bad = pd.concat([*malformed, bad], ignore_index=True)
    of_good = (good["line"].to_numpy(dtype="int64") >> _LINE_BITS)
    of_bad = (bad["line"].to_numpy(dtype="int64") >> _LINE_BITS)
    ids = np.asarray(file_ids, dtype="int64")
    rows = good.drop(columns="line").assign(district_id=district.id, file_id=ids[of_good])
    try:  # straight into usage: the keys are new, or the batch goes back to one file at a time
        _copy_new_rows(conn, usage, Prepared(usage, rows, is_postgres(conn)))
    except (_KeysExist, IntegrityError):  # IntegrityError: SQLite's word for it
        raise _NotBatchable("a key of the batch is loaded already, or repeats") from None
    if len(bad):
        bad = bad.assign(line=bad["line"].to_numpy(dtype="int64") & ((1 << _LINE_BITS) - 1))
        bulk_insert(conn, rejected_rows, bad.assign(
            file_id=ids[of_bad], district_id=district.id, path=[paths[loading[p]] for p in of_bad],
            raw=storable_raw(bad["raw"]), reason=storable_raw(bad["reason"])))
    checkpoint("ingest.staged")
    if fold:
        totals, activity = rollup_of(good, start)
        rollup.add(conn, district.id, totals, activity)
        named = pd.DataFrame({"file_id": ids[of_good], "student_id": good["student_id"]}).drop_duplicates()
        first = good["date"].groupby(ids[of_good]).min()
        changes.record_many(conn, district.id, [int(i) for i in ids], named,
                            {int(i): pd.Timestamp(day).date() for i, day in first.items()})
    weekly.recompute(conn, district.id, weekly.weeks_of(good["date"].dt.date.unique()))

    _finish_batch(conn, district, reads, loading, ids, good, bad, of_good, of_bad, outcomes)
    checkpoint("ingest.merged")
    return outcomes


def _finish_batch(conn, district: District, reads: list[_Read], loading: list[int], ids: np.ndarray,
                  good: pd.DataFrame, bad: pd.DataFrame, of_good: np.ndarray, of_bad: np.ndarray,
                  outcomes: list) -> None:
    """Each loaded file's counts and notes, from the batch's rows at once (a file's rows by its
    position in `loading`), into its manifest row and its outcome."""
    count = len(loading)
    loaded_of = np.bincount(of_good, minlength=count)
    rejected_of = np.bincount(of_bad, minlength=count)
    bad_of = {position: part for position, part in bad.groupby(of_bad, sort=True)} if len(bad) else {}
    outside = ~good["app"].isin(district.apps).to_numpy()
    unlisted_of = ({position: part.value_counts() for position, part in good["app"].loc[outside].groupby(
        of_good[outside], sort=True)} if outside.any() else {})
    finished = datetime.now(timezone.utc)
    updates = []
    for position, i in enumerate(loading):
        theirs = bad_of.get(position)
        reasons: Counter = Counter(reason_category(theirs["reason"])) if theirs is not None else Counter()
        examples = slashed_day_examples(theirs["reason"]) if theirs is not None else {}
        notes = list(reads[i].notes)
        if position in unlisted_of:
            notes.append(_unlisted_note(sorted(unlisted_of[position].to_dict().items())))
        loaded_here, rejected_here = int(loaded_of[position]), int(rejected_of[position])
        if loaded_here == 0 and rejected_here == 0:
            notes.append("header only: no rows")
        rejections = _rejections_note(loaded_here, rejected_here, reasons, examples)
        if rejections:
            notes.append(rejections)
        updates.append(dict(b_file_id=int(ids[position]), b_loaded=loaded_here, b_rejected=rejected_here,
                            b_notes=redact("; ".join(notes))[:4000] or None))
        outcomes[i] = FileOutcome(LOADED, rows_loaded=loaded_here, rows_rejected=rejected_here, reasons=reasons,
                                  nothing_loaded=rejections if loaded_here == 0 and rejected_here else None)
    conn.execute(update(ingested_files).where(ingested_files.c.file_id == bindparam("b_file_id")).values(
        status=LOADED, rows_loaded=bindparam("b_loaded"), rows_rejected=bindparam("b_rejected"),
        notes=bindparam("b_notes", type_=ingested_files.c.notes.type), finished_at=finished), updates)


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


def _load(conn, district: District, file: LandingFile, sha: str, size: int, started: datetime,
          start: tuple[int, int]) -> FileOutcome:
    previous = select(ingested_files.c.file_id).where(  # a retry, a reload or --force: replace its record
        ingested_files.c.district_id == district.id, ingested_files.c.path == file.relpath,
        ingested_files.c.sha256.in_((sha, UNREADABLE)),
    )
    ids = [row.file_id for row in conn.execute(previous)]
    conn.execute(delete(rejected_rows).where(rejected_rows.c.file_id.in_(ids)))
    conn.execute(delete(ingested_files).where(ingested_files.c.file_id.in_(ids)))
    file_id = conn.execute(
        ingested_files.insert().values(
            district_id=district.id, path=file.relpath, school=file.school, sha256=sha,
            bytes=size, kind=file.kind, format=file.ending, status="loading",
            arrived_at=file.modified_at, started_at=started,
        ).returning(ingested_files.c.file_id)
    ).scalar_one()
    if ids and standards.is_standard(file):  # what the replaced record wrote is this record's now
        standards.adopt(conn, district, ids, file_id)

    counted: Counter = Counter()
    if standards.is_standard(file):  # xAPI, Caliper, OneRoster: their own reader and rules, our merge
        writer = _Writer(conn, district, file, file_id, start)
        loaded, counted, notes = standards.load(conn, district, file, size, file_id, writer, Limits.from_environment())
        writer.finish()
        if standards.fingerprint(file) != (sha, size):
            raise FileChanged("the file changed while it was being read; it will be loaded on the next run")
        notes = [*notes, *writer.notes, *(f"{what}: {n:,}" for what, n in sorted(counted.items()))]
        if loaded == 0 and writer.rejected == 0:
            notes.append("nothing to load")
        conn.execute(update(ingested_files).where(ingested_files.c.file_id == file_id).values(
            status=LOADED, rows_loaded=loaded, rows_rejected=writer.rejected,
            notes=redact("; ".join(notes))[:4000] or None, finished_at=datetime.now(timezone.utc)))
        checkpoint("ingest.merged")
        nothing = f"no row loaded: every row was rejected; top reason: {writer.reasons.most_common(1)[0][0]}" \
            if loaded == 0 and writer.rejected else None
        return FileOutcome(LOADED, rows_loaded=loaded, rows_rejected=writer.rejected, reasons=writer.reasons,
                           counted=counted, nothing_loaded=nothing)
    if file.source == clix_tree.HEARTBEAT:  # a school server's heartbeat: one row, no rows to validate
        notes = clix.load_heartbeat(conn, district, file, size, file_id, Limits.from_environment())
        conn.execute(update(ingested_files).where(ingested_files.c.file_id == file_id).values(
            status=LOADED, rows_loaded=1, rows_rejected=0, notes="; ".join(notes) or None,
            finished_at=datetime.now(timezone.utc)))
        return FileOutcome(LOADED, rows_loaded=1)
    # Fastest first; each later plan is what the one before hands over to, after rolling
    # back what it wrote: (Arrow reader, rows straight into the table) -> (Arrow reader,
    # staging + merge) -> (exact reader, staging + merge).
    fast, direct = True, _direct_ok(conn, file)
    while True:
        try:
            with conn.begin_nested():
                counted.clear()
                loaded, rejected, reasons, notes, examples = _read_and_write(
                    conn, district, file, sha, size, file_id, start, fast=fast, direct=direct, counted=counted)
            break
        except NeedsExactReader as exc:
            log.debug("%s: the exact reader takes over: %s", file.relpath, exc)
            fast = direct = False
        except _KeysExist:
            log.debug("%s: some of its keys are loaded already: staging and merging", file.relpath)
            direct = False
    if loaded == 0 and rejected == 0:
        notes.append("header only: no rows")
    rejections = _rejections_note(loaded, rejected, reasons, examples)
    if rejections:
        notes.append(rejections)
    conn.execute(
        update(ingested_files).where(ingested_files.c.file_id == file_id).values(
            status=LOADED, rows_loaded=loaded, rows_rejected=rejected,
            notes=redact("; ".join(notes))[:4000] or None, finished_at=datetime.now(timezone.utc),
        )
    )
    checkpoint("ingest.merged")
    return FileOutcome(LOADED, rows_loaded=loaded, rows_rejected=rejected, reasons=reasons,
                       nothing_loaded=rejections if loaded == 0 and rejected else None, counted=counted)


class _KeysExist(Exception):
    """A row written straight into the table met an existing key (or a repeat within the
    file): the file goes through staging and merging instead."""


def _direct_ok(conn, file: LandingFile) -> bool:
    """Whether usage rows may be COPYed straight into `usage` (PostgreSQL), which a unique
    violation rolls back: the usual new day of usage has keys nobody has loaded yet."""
    return is_postgres(conn) and file.kind == "usage"


def _read_and_write(conn, district: District, file: LandingFile, sha: str, size: int, file_id: int,
                    start: tuple[int, int], *, fast: bool, direct: bool, counted: Counter | None = None
                    ) -> tuple[int, int, Counter, list[str], dict[str, str]]:
    kind = KINDS[file.kind]
    target = SOURCE_TABLES[file.kind]
    fold = file.kind == "usage" and rollup.start_if_empty(conn, district.id, start)
    if file.kind == "usage" and not fold:  # rows the rollups will not have: they are not complete
        rollup.mark_incomplete(conn, district.id)
    # The rollups of the rows written straight into usage, merged in bulk, with their weeks
    # (usage_weekly's rows of the weeks that had no usage before, without reading them again).
    folded = Folded()
    stage = None if direct else _stage_table(file.kind)
    if stage is not None:
        stage.create(conn)
    loaded = rejected = 0
    reasons: Counter = Counter()
    examples: dict[str, str] = {}  # the first day written US-style or day first, for the file's note
    unlisted: Counter = Counter()
    weeks: set = set()  # the weeks of usage_weekly this file's usage touches (direct path)
    first_day: list = []  # each chunk's earliest day (direct path): the file's, for the change log
    postgres = is_postgres(conn)
    table = target if direct else stage
    school_of = weekly.schools_of(conn, district.id) if direct else None
    weekly_of_file: list[pd.DataFrame] = []  # usage_weekly's rows of the file's rows (direct path)

    def prepared_chunks():
        """Validated chunks with their COPY text, made on a reader thread while the
        database takes the previous chunk (parsing and COPY overlap on two cores)."""
        checkpoint("ingest.reading")  # on the reader thread, before the header
        for chunk in reader.chunks():
            good, bad = validate(kind, chunk.cells)
            bad = pd.concat([chunk.malformed, bad], ignore_index=True) if len(chunk.malformed) else bad
            if direct:
                rows = good.drop(columns="line").assign(district_id=district.id, file_id=file_id)
                weeks.update(weekly.weeks_of(good["date"].unique()))
                if len(good):
                    first_day.append(pd.Timestamp(good["date"].min()).date())
                outside = good["app"].loc[~good["app"].isin(district.apps)]
                unlisted.update(outside.value_counts().to_dict())
                # new keys only: their sums and active days add to the rollups, their weeks to usage_weekly
                totals, activity = rollup_of(good, start, weeks=True)
                folded.add(totals, activity, week_sums(good, schools_among(good["student_id"], school_of)))
            else:
                rows = good
            yield Prepared(table, rows, postgres), bad
        # Still on this thread, while the last chunks are written: the check that the file did
        # not change, and the file's rollups merged and its weekly rows.
        if not reader.unchanged(sha):
            raise FileChanged("the file changed while it was being read; it will be loaded on the next run")
        merged = folded.result()
        if merged is not None:
            weekly_of_file.append(weekly_rows(merged[0], folded.week_sums(), school_of))

    tree = clix.context(conn, district, file) if file.source is not None else None
    with FileReader(file, size, fast=fast, senders=district.gpg_senders) as reader:
        if tree is not None:
            reader.custom = lambda *where: clix_tree.chunks(*where, tree)
        with ahead(prepared_chunks()) as chunks:
            for rows, bad in chunks:
                loaded += _copy_new_rows(conn, table, rows) if direct else bulk_insert(conn, table, rows)
                if len(bad):
                    rejected += _reject(conn, district, file, file_id, bad, reasons)
                    if len(examples) < 2:
                        examples = slashed_day_examples(bad["reason"]) | examples
        notes = list(reader.notes)
        if tree is not None:
            notes += clix.write_extras(conn, district, tree, file_id)
            if counted is not None:
                counted.update(tree.counts)
    checkpoint("ingest.staged")
    if direct:
        if unlisted:
            notes.append(_unlisted_note(sorted(unlisted.items())))
        merged = folded.result()
        if fold and merged is not None:
            rollup.add(conn, district.id, *merged)
        if fold and tree is None:  # a night's dailypull and most_used recompute just these students
            changes.record(conn, district.id, file_id, [] if merged is None else merged[0]["student_id"].unique(),
                           min(first_day, default=None))
        weekly.follow_new_rows(conn, district.id, sorted(weeks), weekly_of_file[0] if weekly_of_file else None)
    else:
        notes += _merge(conn, district, kind, stage, target, file_id, present=reader.columns)
        named = _follow(conn, district, file.kind, stage, start, fold)
        if named is not None and tree is None:
            changes.record(conn, district.id, file_id, named, conn.execute(select(func.min(stage.c.date))).scalar())
        stage.drop(conn)
    return loaded, rejected, reasons, notes, examples


def _reject(conn, district: District, file: LandingFile, file_id: int, bad: pd.DataFrame, reasons: Counter) -> int:
    """Quarantine rows (line, reason, raw) of a file; their reasons are counted in `reasons`."""
    if not len(bad):
        return 0
    reasons.update(reason_category(bad["reason"]))
    return bulk_insert(conn, rejected_rows, bad.assign(
        file_id=file_id, district_id=district.id, path=file.relpath, raw=storable_raw(bad["raw"]),
        reason=storable_raw(bad["reason"])))


def _follow(conn, district: District, kind: str, stage: Table, start: tuple[int, int], fold: bool
            ) -> list[str] | None:
    """After a staged merge: the rollups of the students a usage file names (keys may have
    been replaced), and the weekly rows of its weeks, or of the weeks a students file's
    students used. Returns the students a usage file named when the rollups took them in."""
    if kind == "usage":
        students = None
        if fold:
            students = sorted(r[0] for r in conn.execute(select(stage.c.student_id).distinct()))
            rollup.recompute(conn, district.id, start, students)
        weekly.recompute(conn, district.id, weekly.weeks_of(r[0] for r in conn.execute(select(stage.c.date).distinct())))
        return students
    if kind == "students":
        students = [r[0] for r in conn.execute(select(stage.c.student_id).distinct())]
        weekly.recompute(conn, district.id, weekly.weeks_of_students(conn, district.id, sorted(students)))


class _Writer:
    """What jobs/standards.py writes through (standards.Writer): rows of our kinds, validated,
    staged and merged by key as any landing file's; rejected rows; and, at the end, the
    rollups and weekly rows of what changed."""

    def __init__(self, conn, district: District, file: LandingFile, file_id: int, start: tuple[int, int]):
        self.conn, self.district, self.file, self.file_id, self.start = conn, district, file, file_id, start
        self.rejected = 0
        self.reasons: Counter = Counter()
        self.notes: list[str] = []
        self._usage_of: set[str] = set()
        self._days: set = set()
        self._schools_of: set[str] = set()
        self._fold: bool | None = None

    def reject(self, bad: pd.DataFrame) -> None:
        self.rejected += _reject(self.conn, self.district, self.file, self.file_id, bad, self.reasons)

    def rows(self, kind_name: str, chunks, present: set[str] | None = None) -> int:
        conn, district = self.conn, self.district
        kind = KINDS[kind_name]
        if kind_name == "usage" and self._fold is None:
            self._fold = rollup.start_if_empty(conn, district.id, self.start)
            if not self._fold:
                rollup.mark_incomplete(conn, district.id)
        stage = _stage_table(kind_name)
        stage.create(conn)
        for cells, malformed in chunks:
            good, bad = validate(kind, cells)
            self.reject(pd.concat([malformed, bad], ignore_index=True) if len(malformed) else bad)
            bulk_insert(conn, stage, good)
        staged = conn.execute(select(func.count()).select_from(stage)).scalar_one()
        self.notes += _merge(conn, district, kind, stage, SOURCE_TABLES[kind_name], self.file_id,
                             present=present or set(kind.columns))
        written = [r[0] for r in conn.execute(select(stage.c.student_id).distinct())]
        if kind_name == "usage":
            self._usage_of.update(written)
            self._days.update(r[0] for r in conn.execute(select(stage.c.date).distinct()))
        elif kind_name == "students":
            self._schools_of.update(written)
        stage.drop(conn)
        return staged

    def touched(self, *, usage_of=frozenset(), days=(), schools_of=frozenset()) -> None:
        self._usage_of.update(usage_of)
        self._days.update(days)
        self._schools_of.update(schools_of)

    def finish(self) -> None:
        conn, district = self.conn, self.district
        if self._usage_of:
            if self._fold is None:
                self._fold = rollup.start_if_empty(conn, district.id, self.start)
                if not self._fold:
                    rollup.mark_incomplete(conn, district.id)
            if self._fold:
                rollup.recompute(conn, district.id, self.start, sorted(self._usage_of))
        weeks = set(weekly.weeks_of(self._days))
        if self._schools_of:
            weeks |= set(weekly.weeks_of_students(conn, district.id, sorted(self._schools_of)))
        weekly.recompute(conn, district.id, sorted(weeks))


def _copy_new_rows(conn, target: Table, rows: Prepared) -> int:
    from psycopg2.errors import UniqueViolation

    try:
        return bulk_insert(conn, target, rows)
    except UniqueViolation:
        raise _KeysExist() from None


@contextmanager
def ahead(items: Iterator, depth: int = 1):
    """Iterate `items` on a thread, at most `depth` items ahead of the consumer; an
    exception there is raised here. Leaving the block early stops the thread.

    A stop signal (Stopping, KeyboardInterrupt: not an Exception) leaves at once, without
    waiting for the thread to finish the item it is on (a header of 80,000 columns, a large
    block): that work is not wanted, and SIGTERM must be honoured promptly. The thread, a
    daemon, ends at its next hand-over; the process never waits for it."""
    handoff: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def offer(message) -> bool:
        """Hand a message over unless the consumer has left."""
        while not stop.is_set():
            try:
                handoff.put(message, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for item in items:
                if not offer(("item", item)):
                    return
            offer(("end", done))
        except BaseException as exc:  # handed to the consumer, raised there
            offer(("error", exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:  # a generator's own cleanup (files) runs now, on this thread
                close()

    def consume():
        while True:
            what, value = handoff.get()
            if what == "end":
                return
            if what == "error":
                raise value
            yield value

    thread = threading.Thread(target=produce, name="ingest-reader", daemon=True)
    thread.start()
    stopped = False
    try:
        yield consume()
    except BaseException as exc:
        stopped = not isinstance(exc, Exception)  # a stop signal: not waiting for the thread
        raise
    finally:
        stop.set()
        while not stopped and thread.is_alive():  # unblock a producer waiting to put
            try:
                handoff.get(timeout=0.1)
            except queue.Empty:
                pass
        if not stopped:
            thread.join()


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def storable_raw(raw: pd.Series) -> pd.Series:
    """Rejected rows' text (and reasons, which quote cells) as stored: NUL shown as \\x00,
    cut to ANALYTICS_MAX_RAW_CHARS characters (marked when cut), every secret value of the
    environment masked."""
    limit = Limits.from_environment().raw_chars
    text = raw.map(lambda v: _LONE_SURROGATE.sub("\ufffd", v) if isinstance(v, str) else v)  # a quoted JSON escape
    text = text.astype("string").str.replace("\x00", NUL_SHOWN, regex=False)  # a reason may quote a NUL cell
    long = text.str.len() > limit
    if long.any():  # few rows: cut each as bounded_raw does
        text = text.where(~long, text.loc[long].map(lambda value: bounded_raw(value, limit)).astype("string"))
    for value in secret_values():
        text = text.str.replace(value, MASK, regex=False)
    return text


def _unlisted_note(counts) -> str:
    return "usage for apps the district does not list (kept): " + ", ".join(f"{app} ({plural(n, 'row')})" for app, n in counts)


def _merge(conn, district: District, kind, stage: Table, target: Table, file_id: int, *,
           present: set[str]) -> list[str]:
    """Merge the staged rows into the source table by key; return notes on what was folded.

    Only the columns the file has are written: a roster without grades keeps the grades.
    """
    key = [stage.c[c.name] for c in target.primary_key.columns if c.name != "district_id"]
    values = [c for c in kind.columns if c not in {k.name for k in key} and c in present]
    staged = conn.execute(select(func.count()).select_from(stage)).scalar_one()
    per_key = select(*key).group_by(*key).subquery()
    distinct = conn.execute(select(func.count()).select_from(per_key)).scalar_one()
    notes = []
    head = [literal(district.id).label("district_id"), *key]
    tail = [literal(file_id).label("file_id")]
    if kind.name == "usage":
        rows = select(*head, *(func.sum(stage.c[v]).label(v) for v in values), *tail).group_by(*key)
        if staged > distinct:
            notes.append(f"{plural(staged - distinct, 'row')} repeated a (student, app, date) key: minutes summed")
            daily = select(func.sum(stage.c.minutes).label("minutes")).group_by(*key).subquery()
            over = conn.execute(select(func.count()).select_from(daily).where(daily.c.minutes > 1440)).scalar_one()
            if over:
                notes.append(f"{over} of those keys sum to more than 1440 minutes a day")
        unlisted = conn.execute(
            select(stage.c.app, func.count()).where(stage.c.app.not_in(district.apps))
            .group_by(stage.c.app).order_by(stage.c.app)
        ).all()
        if unlisted:
            notes.append(_unlisted_note(unlisted))
    else:
        last = select(func.max(stage.c.line)).group_by(*key)
        rows = select(*head, *(stage.c[v] for v in values), *tail).where(stage.c.line.in_(last))
        if staged > distinct:
            notes.append(f"{plural(staged - distinct, 'row')} repeated a key: the last one of each was kept")
    upsert_from_select(conn, target, [c.name for c in rows.selected_columns], rows)
    return notes
