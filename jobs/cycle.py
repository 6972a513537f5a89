"""One cycle: every selected job for every selected district, each recorded in `job_runs`.

A job that raises is recorded as failed and the district's later jobs are skipped; other
districts go on. By default the districts run here, one after another; `executor` runs
them in a pool of local processes or on a Dask cluster instead (jobs/executors.py), through
the same job runner (`run_job`), so locks, records and publishing are the same.
"""
from __future__ import annotations

import gc
import hashlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path

from sqlalchemy import update

from config import District, Settings
from database import claim, exclusive, holder_name
from jobs import JOBS
from jobs.ingest import unconfigured_folders
from jobs.job import FAILED, RUNNING, SKIPPED, JobContext, JobResult
from models import job_runs

log = logging.getLogger(__name__)


class UsageError(ValueError):
    """A command-line selection names something that does not exist (exit code 2)."""


class Stopping(BaseException):
    """Raised in the main thread on SIGTERM/SIGINT: the running transaction rolls back, the
    job is recorded as interrupted, and the cycle ends (a BaseException, so that no job's
    `except Exception` swallows it)."""


LEASE_SECONDS = float(os.environ.get("ANALYTICS_LEASE_SECONDS", "600"))
# Heavy jobs run one at a time across every instance sharing the database; a run waits this
# long for its turn, then is recorded as skipped.
HEAVY = {"recommendations"}
HEAVY_WAIT_SECONDS = float(os.environ.get("ANALYTICS_HEAVY_WAIT_SECONDS", "3600"))


def in_shard(district_id: str, shard: tuple[int, int] | None) -> bool:
    """Whether shard I of N (1-based) runs this district: a stable hash of the id, mod N."""
    if shard is None:
        return True
    index, count = shard
    return int(hashlib.sha256(district_id.encode()).hexdigest()[:12], 16) % count == index - 1


def utc_now() -> datetime:
    """The default clock (a module-level function, so a context holding it can be pickled)."""
    return datetime.now(timezone.utc)


def as_of_day(moment: datetime) -> date:
    """The as-of day of a cycle started at `moment`: its calendar day in UTC. A plain cycle
    and `--serve` both take their default as-of day from here, so the same moment gives
    the same day whatever the machine's time zone."""
    if moment.tzinfo is None:
        raise ValueError("as_of_day needs an aware datetime (UTC)")
    return moment.astimezone(timezone.utc).date()


@dataclass
class JobRecord:
    job: str
    district_id: str
    result: JobResult
    seconds: float
    worker: str = ""  # where it ran when not in this process (a Dask worker's address)


@dataclass
class CycleResult:
    cycle_id: str
    as_of: date
    records: list[JobRecord] = field(default_factory=list)
    unconfigured: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # said loudly in the summary (no landing folder...)

    @property
    def failed(self) -> bool:
        return any(r.result.status == FAILED for r in self.records)


def select_districts(settings: Settings, ids: list[str] | None,
                     shard: tuple[int, int] | None = None) -> list[District]:
    """The enabled districts (of this shard), or exactly those named (each must exist and be enabled)."""
    if not ids:
        return [d for d in settings.districts if d.enabled and in_shard(d.id, shard)]
    known = {d.id: d for d in settings.districts}
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise UsageError(f"--district: not in districts.yaml: {', '.join(map(repr, unknown))}; "
                         f"configured: {', '.join(known) or 'none'}")
    disabled = [i for i in ids if not known[i].enabled]
    if disabled:
        raise UsageError(f"--district: disabled in districts.yaml (enabled: false): {', '.join(disabled)}")
    return [known[i] for i in dict.fromkeys(ids)]


def select_jobs(names: list[str] | None) -> list[str]:
    """Job names in cycle order; all of them when `names` is empty."""
    if not names:
        return list(JOBS)
    unknown = [n for n in names if n not in JOBS]
    if unknown:
        raise UsageError(f"--jobs: unknown job(s) {', '.join(map(repr, unknown))}; expected some of {', '.join(JOBS)}")
    return [j for j in JOBS if j in names]


def run_cycle(
    engine,
    settings: Settings,
    *,
    districts: list[District],
    jobs: list[str],
    as_of: date,
    landing_dir: Path,
    force: bool = False,
    now: datetime | None = None,
    heartbeat: Callable[[], None] = lambda: None,
    clock: Callable[[], datetime] = utc_now,
    executor=None,
) -> CycleResult:
    """Run `jobs` for `districts`; `executor` (jobs.executors.Executor) says where: None, or
    local with 1 worker, runs them here one after another."""
    now = now or clock()
    cycle_id = f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
    ctx = JobContext(settings=settings, as_of=as_of, now=now, landing_dir=Path(landing_dir),
                     force=force, cycle_id=cycle_id, clock=clock)
    cycle = CycleResult(cycle_id=cycle_id, as_of=as_of)
    if "ingest" in jobs:
        cycle.unconfigured = unconfigured_folders(ctx.landing_dir, settings)
        for name in cycle.unconfigured:
            log.warning("landing folder %r is not a configured district: its files are not read", name)
        cycle.warnings += missing_landing(ctx.landing_dir, districts)
    if not districts:
        cycle.warnings.append("no district to run: districts.yaml enables none (enable one, or add one with "
                              "--onboard ID --apps A,B once LANDING_DIR/ID/ has files)")
    for warning in cycle.warnings:
        log.warning("%s", warning)
    if executor is not None and executor.parallel:
        from jobs import executors  # Dask, when asked for, is imported there and only then

        cycle.records = executors.run(engine, ctx, districts, jobs, executor, heartbeat=heartbeat)
        return cycle
    holder = holder_name()
    for district in districts:
        with claim(engine, district.id, holder, LEASE_SECONDS) as other:
            if other is not None:
                cycle.records += skip_claimed(engine, ctx, jobs, district.id, other)
                continue
            failed_job = None
            for job in jobs:
                if failed_job:
                    cycle.records.append(skip_job(engine, ctx, job, district.id, f"not run: {failed_job} failed"))
                    continue
                heartbeat()
                record = run_job(engine, ctx, job, district)
                heartbeat()
                cycle.records.append(record)
                if record.result.status == FAILED:
                    failed_job = job
    return cycle


def missing_landing(landing_dir: Path, districts: list[District]) -> list[str]:
    """Warnings for a landing folder that is not there: ingest would read nothing, and say
    `files: none` as if all were well."""
    root = Path(landing_dir)
    if not districts:
        return []
    if not root.is_dir():
        return [f"LANDING_DIR {root.resolve()} does not exist: no file was read for any district "
                "(set LANDING_DIR to the folder the schools sync into)"]
    return [f"{d.id}: no folder {(root / d.id).resolve()}: nothing to ingest (is the school servers' sync "
            "pointed there?)" for d in districts if not (root / d.id).is_dir()]


def skip_claimed(engine, ctx: JobContext, jobs: list[str], district_id: str, other: str) -> list[JobRecord]:
    """Record every job of a district that another instance has claimed as skipped."""
    log.info("%s: claimed by %s, left to it", district_id, other)
    return [skip_job(engine, ctx, job, district_id, f"not run: {district_id} is claimed by {other}") for job in jobs]


def skip_job(engine, ctx: JobContext, job: str, district_id: str, message: str) -> JobRecord:
    result = JobResult(status=SKIPPED, message=message)
    record_run(engine, ctx, job, district_id, result, started=ctx.clock())
    return JobRecord(job, district_id, result, 0.0)


def run_job(engine, ctx: JobContext, job: str, district: District) -> JobRecord:
    """Run one job of one district and record it; a heavy one holds the fleet-wide lock.

    Never raises for a failing job (it is recorded as failed), only for Stopping."""
    if job not in HEAVY:
        return _run_job_now(engine, ctx, job, district)
    with exclusive(engine, job, wait_seconds=HEAVY_WAIT_SECONDS) as taken:
        if taken:  # its job_runs interval starts once the lock is held
            return _run_job_now(engine, ctx, job, district)
    result = JobResult(status=SKIPPED, message=f"another instance is running {job} "
                                               f"(waited {HEAVY_WAIT_SECONDS:.0f} s for its turn)")
    record_run(engine, ctx, job, district.id, result, started=ctx.clock())
    return JobRecord(job, district.id, result, 0.0)


def _run_job_now(engine, ctx: JobContext, job: str, district: District) -> JobRecord:
    started = ctx.clock()
    run_id = record_run(engine, ctx, job, district.id, JobResult(status=RUNNING), started=started, finished=False)
    clock = time.perf_counter()
    stopped = False
    try:
        result = JOBS[job](engine, district, ctx)
    except Stopping:
        stopped = True
    except Exception as exc:  # recorded, then the cycle goes on with other districts
        log.exception("%s %s: failed", job, district.id)
        result = JobResult(status=FAILED, message=f"{type(exc).__name__}: {exc}"[:2000])
    if stopped:
        # Recorded only once the interrupted job's frames are gone: a stop signal that lands
        # inside an SQLite statement leaves that statement's cursor alive in the traceback, and
        # until it is freed the closed connection keeps the database's write lock ("database
        # is locked" for every later write, the claim's release included).
        gc.collect()
        record_run(engine, ctx, job, district.id, JobResult(status=FAILED, message="interrupted by a stop signal; "
                                                         "its transaction was rolled back"), started=started, run_id=run_id)
        raise Stopping()
    seconds = time.perf_counter() - clock
    record_run(engine, ctx, job, district.id, result, started=started, run_id=run_id)
    log.info(
        "%s %s: %s in %.2fs; rows in %d, out %d, rejected %d%s",
        job, district.id, result.status, seconds, result.rows_in, result.rows_out, result.rows_rejected,
        f"; {result.message}" if result.message else "",
    )
    return JobRecord(job, district.id, result, seconds)


def record_run(engine, ctx: JobContext, job: str, district_id: str, result: JobResult, *,
            started: datetime, run_id: int | None = None, finished: bool = True) -> int | None:
    values = dict(
        status=result.status, rows_in=result.rows_in, rows_out=result.rows_out,
        rows_rejected=result.rows_rejected, message=result.message or None,
        finished_at=ctx.clock() if finished else None,
    )
    try:
        with engine.begin() as conn:
            if run_id is None:
                return conn.execute(job_runs.insert().values(
                    cycle_id=ctx.cycle_id, job=job, district_id=district_id, started_at=started,
                    host=socket.gethostname(), as_of=ctx.as_of, **values,
                ).returning(job_runs.c.run_id)).scalar_one()
            conn.execute(update(job_runs).where(job_runs.c.run_id == run_id).values(**values))
    except Exception:  # the run history must not turn a finished job into a crash
        log.exception("could not record %s %s in job_runs", job, district_id)
    return run_id
