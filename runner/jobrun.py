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
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.exc import OperationalError

from config import District
from config.secrets import redact
from jobs import JOBS
from jobs.job import FAILED, RUNNING, SKIPPED, JobContext, JobResult, between_steps
from models import job_runs
from runner import leases
from storage import database
from runner.leases import claim, exclusive

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


@contextmanager
def claimed(engine, ctx: JobContext, district_id: str) -> Iterator[str | None]:
    """Claim the district for the cycle's instance (`ctx.holder`) while the block runs; yields
    None when it is ours (its rows left `running` by a dead process closed first), else who
    has it, or a message saying the database could not be reached for it."""
    stack = ExitStack()
    try:
        other = stack.enter_context(claim(engine, district_id, ctx.holder, LEASE_SECONDS))
        if other is None:
            close_left_running(engine, ctx, district_id)
    except OperationalError as exc:
        stack.close()
        first = str(exc.orig).strip().splitlines()[0][:300] if exc.orig else str(exc)[:300]
        if "database is locked" in first:  # SQLite: another instance's write holds the one write lock
            log.warning("%s: not claimed: the database stayed locked by another instance's write for %.0f s",
                        district_id, database.sqlite_busy_seconds())
            yield Busy(f"the database was locked by another instance's write for more than "
                       f"{database.sqlite_busy_seconds():.0f} s (ANALYTICS_SQLITE_BUSY_SECONDS): left to it")
            return
        log.error("%s: could not claim it: the database could not be reached (%s)", district_id, first)
        yield DatabaseAway(f"the database could not be reached to claim {district_id}: {first}")
        return
    with stack:
        yield other


class DatabaseAway(str):
    """What `claimed` yields when the claim could not be taken for an outage: the district's
    jobs are recorded failed."""


class Busy(str):
    """What `claimed` yields when SQLite's write lock stayed taken: the district's jobs are
    recorded skipped, with the reason."""


def skip_claimed(engine, ctx: JobContext, jobs: list[str], district_id: str, other: str) -> list[JobRecord]:
    """Record every job of a district that another instance has claimed as skipped (failed, when
    the claim could not be taken because the database was away)."""
    if isinstance(other, DatabaseAway):
        result = JobResult(status=FAILED, message=f"not run: {other}")
        for job in jobs:
            record_run(engine, ctx, job, district_id, result, started=ctx.clock())
        return [JobRecord(job, district_id, result, 0.0) for job in jobs]
    if isinstance(other, Busy):
        return [skip_job(engine, ctx, job, district_id, f"not run: {other}") for job in jobs]
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
    with exclusive(engine, job, wait_seconds=HEAVY_WAIT_SECONDS) as lock:
        if lock is not None:  # its job_runs interval starts once the lock is held
            return _run_job_now(engine, ctx, job, district, lock)
    result = JobResult(status=SKIPPED, message=f"another instance is running {job} "
                                               f"(waited {HEAVY_WAIT_SECONDS:.0f} s for its turn)")
    record_run(engine, ctx, job, district.id, result, started=ctx.clock())
    return JobRecord(job, district.id, result, 0.0)


def _run_job_now(engine, ctx: JobContext, job: str, district: District, lock=None) -> JobRecord:
    """Run the job with its commits fenced: each must find the district still claimed by the
    cycle's instance (`ctx.holder`) and, for a heavy job, its fleet lock still held, or it
    rolls back and the job is recorded failed with the reason (leases.Lost)."""
    started = ctx.clock()
    run_id = record_run(engine, ctx, job, district.id, JobResult(status=RUNNING), started=started, finished=False)
    clock = time.perf_counter()
    stopped = False
    claim = leases.claim_lease(district.id, ctx.holder, LEASE_SECONDS) if ctx.holder else None
    steps = between_steps.set(leases.check)
    try:
        with leases.guarded(engine, claim, lock):
            result = JOBS[job](engine, district, ctx)
    except Stopping:
        stopped = True
    except leases.Lost as exc:  # another instance has (or may have) done this work since: nothing stale commits
        log.error("%s %s: %s", job, district.id, exc)
        result = JobResult(status=FAILED, message=str(exc))
    except Exception as exc:  # recorded, then the cycle goes on with other districts
        log.exception("%s %s: failed", job, district.id)
        result = JobResult(status=FAILED, message=f"{type(exc).__name__}: {exc}"[:2000])
    finally:
        between_steps.reset(steps)
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
    """Insert (or, given `run_id`, update) the job's row in job_runs. A database that cannot
    be reached is retried with backoff (1, 2, 4 ... s) for up to ANALYTICS_DB_WAIT_SECONDS
    (60), so a job that failed in an outage is still recorded as failed once the database is
    back; after that the run is logged and left, and the next run that claims the district
    closes a row left `running` (close_left_running)."""
    values = dict(
        status=result.status, rows_in=result.rows_in, rows_out=result.rows_out,
        rows_rejected=result.rows_rejected, message=redact(result.message) if result.message else None,
        finished_at=ctx.clock() if finished else None,
    )
    deadline = time.monotonic() + float(os.environ.get("ANALYTICS_DB_WAIT_SECONDS", "60"))
    pause = 1.0
    while True:
        try:
            with engine.begin() as conn:
                if run_id is None:
                    return conn.execute(job_runs.insert().values(
                        cycle_id=ctx.cycle_id, job=job, district_id=district_id, started_at=started,
                        host=socket.gethostname(), as_of=ctx.as_of, **values,
                    ).returning(job_runs.c.run_id)).scalar_one()
                conn.execute(update(job_runs).where(job_runs.c.run_id == run_id).values(**values))
            return run_id
        except OperationalError as exc:  # the database is away: wait for it, within bounds
            if time.monotonic() + pause > deadline:
                log.error("could not record %s %s in job_runs (%s): the database stayed away", job, district_id,
                          str(exc.orig).strip().splitlines()[0][:200] if exc.orig else exc)
                return run_id
            log.warning("could not record %s %s in job_runs (%s); retrying in %.0f s", job, district_id,
                        str(exc.orig).strip().splitlines()[0][:200] if exc.orig else exc, pause)
            time.sleep(pause)
            pause = min(pause * 2, 30.0)
        except Exception:  # the run history must not turn a finished job into a crash
            log.exception("could not record %s %s in job_runs", job, district_id)
            return run_id


def close_left_running(engine, ctx: JobContext, district_id: str) -> int:
    """Mark the district's rows left `running` by earlier cycles as failed: their process was
    killed (SIGKILL, the machine lost) or lost its claim before it could record an end. Run
    by the instance that has just claimed the district, so no such run is still going on
    (one that was only paused has lost its claim, and its commits are fenced)."""
    with engine.begin() as conn:
        closed = conn.execute(update(job_runs).where(
            job_runs.c.district_id == district_id, job_runs.c.status == RUNNING,
            job_runs.c.cycle_id != ctx.cycle_id,
        ).values(status=FAILED, finished_at=ctx.clock(),
                 message=f"abandoned: its process ended without recording an end (killed, or its claim was lost); "
                         f"closed by cycle {ctx.cycle_id}")).rowcount
    if closed:
        log.warning("%s: %d run(s) left running by an earlier process closed as failed (abandoned)",
                    district_id, closed)
    return closed
