"""One job of one district, run and recorded in `job_runs`: the runner every executor shares
(here, a local process pool, a Dask worker), so locks, records and publishing are the same
wherever a job runs; and the two ways a run ends early (Stopping, UsageError).
"""
from __future__ import annotations

import gc
import logging
import os
import socket
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update

from config import District
from config.secrets import redact
from jobs import JOBS
from jobs.job import FAILED, RUNNING, SKIPPED, JobContext, JobResult
from models import job_runs
from runner.leases import exclusive

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


@dataclass
class JobRecord:
    job: str
    district_id: str
    result: JobResult
    seconds: float
    worker: str = ""  # where it ran when not in this process (a Dask worker's address)


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
        rows_rejected=result.rows_rejected, message=redact(result.message) if result.message else None,
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
