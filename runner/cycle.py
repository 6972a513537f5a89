"""One cycle: every selected job for every selected district, each recorded in `job_runs`.

A job that raises is recorded as failed and the district's later jobs are skipped; other
districts go on. By default the districts run here, one after another; `executor` runs
them in a pool of local processes or on a Dask cluster instead (runner/executors.py), through
the same job runner (`run_job`), so locks, records and publishing are the same.
"""
from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path

from config import District, Settings
from jobs import JOBS, jobs_for
from jobs.ingest import unconfigured_folders
from jobs.job import FAILED, JobContext
from runner.jobrun import (
    JobRecord,
    UsageError,
    claimed,
    run_job,
    skip_claimed,
    skip_job,
)
from runner.leases import holder_name

log = logging.getLogger(__name__)




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
    """Run `jobs` for `districts`; `executor` (runner.executors.Executor) says where: None, or
    local with 1 worker, runs them here one after another."""
    now = now or clock()
    cycle_id = f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
    ctx = JobContext(settings=settings, as_of=as_of, now=now, landing_dir=Path(landing_dir),
                     force=force, cycle_id=cycle_id, clock=clock, holder=holder_name())
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
        from runner import (
            executors,  # Dask, when asked for, is imported there and only then
        )

        cycle.records = executors.run(engine, ctx, districts, jobs, executor, heartbeat=heartbeat)
        return cycle
    for district in districts:
        with claimed(engine, ctx, district.id) as other:
            if other is not None:
                cycle.records += skip_claimed(engine, ctx, jobs_for(district, jobs), district.id, other)
                continue
            failed_job = None
            for job in jobs_for(district, jobs):
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
