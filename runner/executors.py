"""Where a cycle's jobs run: here, one after another (the default); in a pool of local
processes (`--workers N`); or on a Dask cluster (`--executor dask --scheduler URL`).

Every job, wherever it runs, goes through the cycle's own runner (`runner.jobrun.run_job`):
the same fleet-wide lock for heavy jobs, the same `job_runs` records, the same atomic
publishing. The process that runs the cycle (the coordinator) claims each district while
its jobs are in flight and renews the claim itself, so a worker that dies never leaves a
district claimed; the districts in flight are kept to a window, so the claims held (and
their renewal threads) stay few however many districts there are.

Failures:
- A job that raises is recorded as `failed` by the runner on the worker, and the district's
  later jobs are skipped, exactly as in a local run. It is not retried: the same data and
  code fail the same way, and a retry would only add failed rows and time.
- A task that raises outside a job (the worker cannot reach the database, say) is retried
  up to ANALYTICS_TASK_RETRIES times (default 2).
- A worker that dies mid-task (killed, out of memory): the task runs again on another
  worker; the attempt's `running` row is marked `failed` ("the worker running it died")
  by the next attempt. Dask retries it until the scheduler's
  `distributed.scheduler.allowed-failures` (default 3) is exhausted; the process pool
  ANALYTICS_TASK_RETRIES times (its every in-flight task is lost with a dead process).
- When the retries are exhausted the coordinator records the job as `failed`, naming the
  error, and skips the district's later jobs; the other districts go on.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import re
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from logging.handlers import QueueHandler, QueueListener

from sqlalchemy import or_, select, update

from storage import database

from runner import leases
from config import District
from runner.jobrun import (
    HEAVY,
    JobRecord,
    Stopping,
    UsageError,
    claimed,
    record_run,
    run_job,
    skip_claimed,
    skip_job,
)
from jobs import jobs_for
from jobs.job import FAILED, RUNNING, JobContext, JobResult
from models import job_runs

log = logging.getLogger(__name__)

EXECUTORS = ("local", "dask")
TASK_RETRIES = int(os.environ.get("ANALYTICS_TASK_RETRIES", "2"))
# How long to wait for a Dask scheduler to answer and for its workers to show up.
DASK_WAIT_SECONDS = float(os.environ.get("ANALYTICS_DASK_WAIT_SECONDS", "30"))
HEARTBEAT_SECONDS = 5.0  # the coordinator beats at least this often while it waits
SCHEDULER_ADDRESS = re.compile(r"^(?:(tcp|tls|ws|wss)://)?(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.\-]+):(\d{1,5})$")
INSTALL_DASK = ".venv/bin/pip install -r requirements-dask.txt"
DIED = "the worker running it died or lost its connection"
RAN_AGAIN = f"{DIED}; the job was run again"


class ExecutorUnavailable(Exception):
    """The executor asked for cannot run here (exit code `code`: 2 usage, 1 unreachable)."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Executor:
    kind: str = "local"          # local | dask
    workers: int = 1             # local: processes (1: here, one district after another)
    scheduler: str | None = None  # dask: the scheduler's address, tcp://HOST:PORT

    @property
    def parallel(self) -> bool:
        return self.kind == "dask" or self.workers > 1


def choose(kind: str | None = None, workers: int | None = None, scheduler: str | None = None,
           environ=os.environ) -> Executor:
    """The executor from the flags, else ANALYTICS_EXECUTOR / _WORKERS / _SCHEDULER, else local."""
    kind = kind or environ.get("ANALYTICS_EXECUTOR") or "local"
    if kind not in EXECUTORS:
        raise UsageError(f"--executor (or ANALYTICS_EXECUTOR) must be one of {', '.join(EXECUTORS)}; got {kind!r}")
    if kind == "dask":
        if workers is not None:
            raise UsageError("--workers goes with --executor local; a Dask cluster has the workers started for it")
        scheduler = scheduler or environ.get("ANALYTICS_SCHEDULER")
        if not scheduler:
            raise UsageError("--executor dask needs --scheduler tcp://HOST:PORT (or ANALYTICS_SCHEDULER): "
                             "the address `dask scheduler` prints")
        if not SCHEDULER_ADDRESS.match(scheduler) or int(SCHEDULER_ADDRESS.match(scheduler)[3]) > 65535:
            raise UsageError(f"--scheduler (or ANALYTICS_SCHEDULER) must be an address like tcp://HOST:PORT; "
                             f"got {scheduler!r}")
        return Executor("dask", scheduler=scheduler)
    if scheduler is not None:
        raise UsageError("--scheduler goes with --executor dask")
    if workers is None:
        text = environ.get("ANALYTICS_WORKERS") or "1"
        workers = int(text) if text.isdigit() else 0
    if workers < 1:
        raise UsageError(f"--workers (or ANALYTICS_WORKERS) must be a whole number >= 1; "
                         f"got {environ.get('ANALYTICS_WORKERS') if workers == 0 else workers!r}")
    return Executor("local", workers=workers)


def run(engine, ctx: JobContext, districts: list[District], jobs: list[str], executor: Executor, *,
        heartbeat: Callable[[], None] = lambda: None) -> list[JobRecord]:
    """Run the cycle's jobs on `executor`; the records, in district then job order."""
    ctx = replace(ctx, landing_dir=ctx.landing_dir.resolve())  # workers may start elsewhere
    url = worker_url(engine)
    if executor.kind == "dask":
        runner = _Dask(engine, ctx, url, executor.scheduler, heartbeat)
    else:
        runner = _Pool(engine, ctx, url, executor.workers, heartbeat)
    with runner:
        return runner.run(districts, jobs)


def worker_url(engine) -> str:
    """The engine's URL as other processes can use it (an SQLite file by its absolute path)."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            raise UsageError("--workers and --executor dask need a database file or server that every worker "
                             "can open, not an in-memory SQLite database")
        url = url.set(database=os.path.abspath(url.database))
    return url.render_as_string(hide_password=False)


# --- On the worker: one job of one district --------------------------------------------------

_engines: dict[str, object] = {}


def _engine(url: str):
    """One engine per worker process and database, made on first use."""
    if url not in _engines:
        _engines[url] = database.connect(url)
    return _engines[url]


def close_abandoned(engine, ctx: JobContext, job: str, district_id: str, message: str) -> int:
    """Mark this cycle's `running` rows of the job as failed: attempts whose process died.

    Only attempts of this very task can be running under the cycle's id, since the
    coordinator holds the district's claim."""
    with engine.begin() as conn:
        return conn.execute(update(job_runs).where(
            job_runs.c.cycle_id == ctx.cycle_id, job_runs.c.job == job, job_runs.c.district_id == district_id,
            job_runs.c.status == RUNNING,
        ).values(status=FAILED, message=message[:2000], finished_at=ctx.clock())).rowcount


def recorded(engine, ctx: JobContext, district_id: str) -> dict[str, JobRecord]:
    """The district's jobs that ended in this cycle, as job_runs has them (not the attempts
    closed because their worker died)."""
    with engine.connect() as conn:
        rows = conn.execute(select(job_runs).where(
            job_runs.c.cycle_id == ctx.cycle_id, job_runs.c.district_id == district_id,
            job_runs.c.status != RUNNING, or_(job_runs.c.message.is_(None), job_runs.c.message != RAN_AGAIN),
        ).order_by(job_runs.c.run_id)).all()
    return {row.job: JobRecord(row.job, district_id, JobResult(
        status=row.status, rows_in=row.rows_in or 0, rows_out=row.rows_out or 0,
        rows_rejected=row.rows_rejected or 0, message=row.message or ""),
        (row.finished_at - row.started_at).total_seconds() if row.finished_at else 0.0) for row in rows}


def run_job_task(url: str, ctx: JobContext, job: str, district: District) -> JobRecord:
    """A task: run one job of one district through the cycle's runner (a module-level function,
    so process pools and Dask can send it).

    Idempotent within a cycle: a job that already ended in this cycle is not run again (Dask
    recomputes a finished task whose result was lost with its worker; a process can die after
    its job ended, before its result came back); its recorded result is returned."""
    engine = _engine(url)
    ended = recorded(engine, ctx, district.id).get(job)
    if ended is not None:
        log.info("%s %s: already %s in this cycle; not run again", job, district.id, ended.result.status)
        return ended
    if close_abandoned(engine, ctx, job, district.id, RAN_AGAIN):
        log.warning("%s %s: a previous attempt's worker died; running it again", job, district.id)
    return run_job(engine, ctx, job, district)


@dataclass
class Step:
    """What a Dask task hands to the next job of its district: the district's records so far."""
    records: list[JobRecord]
    failed_job: str | None  # the job of the district that failed, if one did


def dask_job_task(url: str, ctx: JobContext, job: str, district: District, previous: Step | None) -> Step:
    """A Dask task: one job, after the district's previous one (skipped if a job failed)."""
    from distributed import get_worker

    failed = previous.failed_job if previous else None
    if failed:
        ended = recorded(_engine(url), ctx, district.id).get(job)
        record = ended or skip_job(_engine(url), ctx, job, district.id, f"not run: {failed} failed")
    else:
        record = run_job_task(url, ctx, job, district)
    record.worker = get_worker().address
    return Step([*(previous.records if previous else []), record],
                failed or (job if record.result.status == FAILED else None))


# --- On the coordinator ---------------------------------------------------------------------


@dataclass
class _Chain:
    """A district's progress through its jobs, on the coordinator."""
    district: District
    jobs: list[str]
    claim: ExitStack
    records: list[JobRecord] = field(default_factory=list)
    attempts: int = 0  # of the job in flight


class _Coordinator:
    def __init__(self, engine, ctx: JobContext, url: str, heartbeat: Callable[[], None]):
        self.engine, self.ctx, self.url, self.heartbeat = engine, ctx, url, heartbeat
        self.claims = ExitStack()  # every claim still held, released however the run ends

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.claims.close()

    def start(self, district: District, jobs: list[str]) -> _Chain | list[JobRecord]:
        """Claim the district: its chain, or its skipped records when another instance has it."""
        jobs = jobs_for(district, jobs)
        if not jobs:  # `--jobs fetch` and a district without sources: nothing to run
            return []
        stack = ExitStack()
        other = stack.enter_context(claimed(self.engine, self.ctx, district.id))
        if other is not None:
            stack.close()
            return skip_claimed(self.engine, self.ctx, jobs, district.id, other)
        self.claims.callback(stack.close)
        return _Chain(district, list(jobs), stack)

    def give_up(self, chain: _Chain, job: str, error: str, attempts: int | None) -> None:
        """Retries exhausted: record the job failed (naming the error), skip the district's rest."""
        message = (error if attempts is None else f"{error}; gave up after {attempts} attempts")[:2000]
        log.error("%s %s: failed on the workers: %s", job, chain.district.id, message)
        result = JobResult(status=FAILED, message=message)
        if not close_abandoned(self.engine, self.ctx, job, chain.district.id, message):
            record_run(self.engine, self.ctx, job, chain.district.id, result, started=self.ctx.clock())
        chain.records.append(JobRecord(job, chain.district.id, result, 0.0))
        later = chain.jobs[chain.jobs.index(job) + 1:]
        chain.records += [skip_job(self.engine, self.ctx, j, chain.district.id, f"not run: {job} failed")
                          for j in later]

    def finish(self, chain: _Chain) -> None:
        chain.claim.close()


class _Pool(_Coordinator):
    """A pool of local processes, each job a task. The coordinator submits a district's next
    job when its previous one is done, and holds heavy jobs back while one runs (the fleet
    lock would make a second one wait, holding a process)."""

    def __init__(self, engine, ctx, url, workers: int, heartbeat):
        super().__init__(engine, ctx, url, heartbeat)
        self.workers = workers
        # spawn, not fork: a forked child would share the coordinator's database connections.
        self.spawn = multiprocessing.get_context("spawn")
        self.logs = self.spawn.Queue()  # the processes' log records, handled here as if logged here
        self.relay = QueueListener(self.logs, _Relay())
        self.relay.start()
        self.pool = self._new_pool()

    def __exit__(self, *exc) -> None:
        try:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.relay.stop()
        finally:
            super().__exit__(*exc)

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.workers, mp_context=self.spawn, initializer=_start_process,
                                   initargs=(self.logs, logging.getLogger().getEffectiveLevel()))

    def run(self, districts: list[District], jobs: list[str]) -> list[JobRecord]:
        self.done: dict[str, list[JobRecord]] = {}
        self.active: dict[str, _Chain] = {}
        self.in_flight: dict = {}  # future -> (chain, job, the pool it went to)
        self.heavy_queue: deque[tuple[_Chain, str]] = deque()
        waiting = deque(districts)
        try:
            while waiting or self.active:
                while waiting and len(self.active) < 2 * self.workers:
                    district = waiting.popleft()
                    chain = self.start(district, jobs)
                    if isinstance(chain, list):
                        self.done[district.id] = chain
                        continue
                    self.active[district.id] = chain
                    self._next(chain, None)
                if self.heavy_queue and not self._heavy_running():
                    self._launch(*self.heavy_queue.popleft())
                if not self.in_flight:
                    continue
                finished, _ = wait(self.in_flight, timeout=HEARTBEAT_SECONDS, return_when=FIRST_COMPLETED)
                self.heartbeat()
                for future in finished:
                    self._finished(future)
        except Stopping:
            self._stop()
            raise
        return [r for d in districts for r in self.done[d.id]]

    def _heavy_running(self) -> bool:
        return any(job in HEAVY for _, job, _ in self.in_flight.values())

    def _launch(self, chain: _Chain, job: str) -> None:
        future = self.pool.submit(run_job_task, self.url, self.ctx, job, chain.district)
        self.in_flight[future] = (chain, job, self.pool)

    def _submit(self, chain: _Chain, job: str) -> None:
        if job in HEAVY and (self.heavy_queue or self._heavy_running()):
            self.heavy_queue.append((chain, job))
        else:
            self._launch(chain, job)

    def _next(self, chain: _Chain, after: str | None) -> None:
        """Submit the district's job after `after` (its first when None), or finish the district."""
        later = chain.jobs if after is None else chain.jobs[chain.jobs.index(after) + 1:]
        if later:
            chain.attempts = 0
            self._submit(chain, later[0])
            return
        self.finish(chain)
        self.done[chain.district.id] = chain.records
        del self.active[chain.district.id]

    def _finished(self, future) -> None:
        chain, job, pool = self.in_flight.pop(future)
        try:
            record = future.result()
        except Exception as exc:  # the process died, or the task failed outside the job
            chain.attempts += 1
            if isinstance(exc, BrokenProcessPool) and pool is self.pool:
                log.warning("a worker process died; starting a new pool")
                self.pool.shutdown(wait=False, cancel_futures=True)
                self.pool = self._new_pool()
            error = DIED if isinstance(exc, BrokenProcessPool) else f"{type(exc).__name__}: {exc}"
            if chain.attempts <= TASK_RETRIES:
                log.warning("%s %s: %s; trying again (%d of %d)", job, chain.district.id, error,
                            chain.attempts, TASK_RETRIES)
                self._submit(chain, job)
                return
            self.give_up(chain, job, error, chain.attempts)
            self._next(chain, chain.jobs[-1])
            return
        chain.records.append(record)
        if record.result.status != FAILED:
            self._next(chain, job)
            return
        chain.records += [skip_job(self.engine, self.ctx, j, chain.district.id, f"not run: {job} failed")
                          for j in chain.jobs[chain.jobs.index(job) + 1:]]
        self._next(chain, chain.jobs[-1])

    def _stop(self) -> None:
        """SIGTERM/SIGINT: end the processes (their transactions roll back, as a killed process's
        do) and record their jobs as interrupted, as a local run does."""
        for process in list((getattr(self.pool, "_processes", None) or {}).values()):
            process.terminate()
        for chain, job, _ in self.in_flight.values():
            close_abandoned(self.engine, self.ctx, job, chain.district.id,
                            "interrupted by a stop signal; its transaction was rolled back")


ONE_THREAD = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _start_process(queue, level: int) -> None:
    """A pool process: one thread per native library unless the environment says otherwise,
    as Dask's workers do (N processes on N cores; the models' OpenMP threads otherwise fight
    each other, ten times slower on a busy 2-core machine); its log records go to the
    coordinator (logging's own recipe for several processes), which handles them with its
    handlers: one log, one format."""
    for name in ONE_THREAD:
        os.environ.setdefault(name, "1")
    root = logging.getLogger()
    root.handlers[:] = [QueueHandler(queue)]
    root.setLevel(level)


class _Relay(logging.Handler):
    """On the coordinator: a pool process's record, handled by the logger that made it."""

    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger(record.name).handle(record)


class _Dask(_Coordinator):
    """A Dask cluster: each district's jobs are submitted as tasks, each depending on the
    district's previous one; heavy ones need a worker offering the `heavy` resource."""

    def __init__(self, engine, ctx, url, scheduler: str, heartbeat):
        super().__init__(engine, ctx, url, heartbeat)
        self.distributed = _import_distributed()
        self.scheduler = scheduler
        try:
            self.client = self.distributed.Client(scheduler, timeout=DASK_WAIT_SECONDS, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise ExecutorUnavailable(f"cannot reach the Dask scheduler at {scheduler} within "
                                      f"{DASK_WAIT_SECONDS:.0f} s ({type(exc).__name__}: {exc}); start one with "
                                      f"`dask scheduler` or fix --scheduler / ANALYTICS_SCHEDULER", 1) from None

    def __exit__(self, *exc) -> None:
        try:
            self.client.close()
        finally:
            super().__exit__(*exc)

    def _slots(self, jobs: list[str]) -> int:
        """Wait for the cluster's workers (a heavy one too when a heavy job is asked for); their threads."""
        deadline = time.monotonic() + DASK_WAIT_SECONDS
        while True:
            workers = self.client.scheduler_info(n_workers=-1)["workers"].values()
            heavy = [w for w in workers if w.get("resources", {}).get("heavy", 0) >= 1]
            if workers and (heavy or not HEAVY & set(jobs)):
                return sum(w["nthreads"] for w in workers)
            if time.monotonic() >= deadline:
                missing = "no workers" if not workers else "no worker offering the 'heavy' resource"
                raise ExecutorUnavailable(
                    f"the Dask scheduler at {self.scheduler} has {missing} after {DASK_WAIT_SECONDS:.0f} s; start "
                    f"one with `dask worker {self.scheduler} --resources heavy=1` (recommendations run only "
                    f"on workers with --resources heavy=1)", 1)
            time.sleep(0.5)

    def _submit(self, chain: _Chain):
        """Submit the district's jobs, each depending on the one before; the last one's future.

        Only that future is kept: the scheduler forgets each task's result once the next has
        used it, so a worker that dies later loses nothing that must be computed again."""
        previous = None
        for job in chain.jobs:
            previous = self.client.submit(
                dask_job_task, self.url, self.ctx, job, chain.district, previous,
                key=f"{job}-{chain.district.id}-{self.ctx.cycle_id}", retries=TASK_RETRIES,
                resources={"heavy": 1} if job in HEAVY else None,
            )
        return previous

    def run(self, districts: list[District], jobs: list[str]) -> list[JobRecord]:
        window = max(4, 2 * self._slots(jobs))
        done: dict[str, list[JobRecord]] = {}
        waiting = deque(districts)
        chains: dict = {}  # the district's last future -> its chain
        try:
            while waiting or chains:
                while waiting and len(chains) < window:
                    district = waiting.popleft()
                    chain = self.start(district, jobs)
                    if isinstance(chain, list):
                        done[district.id] = chain
                        continue
                    chains[self._submit(chain)] = chain
                try:
                    with self.client.as_current():
                        finished = self.distributed.wait(list(chains), timeout=HEARTBEAT_SECONDS,
                                                         return_when="FIRST_COMPLETED").done
                except TimeoutError:
                    finished = ()
                self.heartbeat()
                for last in finished:
                    chain = chains.pop(last)
                    self._collect(chain, last)
                    self.finish(chain)
                    done[chain.district.id] = chain.records
        except BaseException:  # Stopping, or the client lost: nothing more is started
            self.client.cancel(list(chains))
            # A task already running on a worker cannot be stopped from here: its district's
            # claim is not released but left to expire, so no instance runs it meanwhile.
            for chain in chains.values():
                chain.claim.__exit__(leases.LeftToExpire, leases.LeftToExpire(), None)
            raise
        return [r for d in districts for r in done[d.id]]

    def _collect(self, chain: _Chain, last) -> None:
        """The records of a district whose last task is done. When a task erred (its retries
        spent), the jobs that ended are read from job_runs, and the first that did not is
        recorded as failed, naming the error, with the district's later jobs skipped."""
        if last.status == "finished":
            chain.records = last.result().records
            for record in chain.records:
                r = record.result
                log.info("%s %s: %s on %s in %.2fs; rows in %d, out %d, rejected %d%s", record.job,
                         chain.district.id, r.status, record.worker, record.seconds, r.rows_in, r.rows_out,
                         r.rows_rejected, f"; {r.message}" if r.message else "")
        else:
            exc = last.exception() if last.status == "error" else None
            if isinstance(exc, self.distributed.KilledWorker):  # says how many workers died running it
                error, attempts = f"{DIED} every time it ran (KilledWorker: {exc})", None
            elif exc is not None:
                error, attempts = f"{type(exc).__name__}: {exc}", TASK_RETRIES + 1
            else:
                error, attempts = f"its task was {last.status} (the scheduler lost it)", None
            ended = recorded(self.engine, self.ctx, chain.district.id)
            for job in chain.jobs:
                if job not in ended:
                    self.give_up(chain, job, error, attempts)
                    break
                chain.records.append(ended[job])
        last.release()


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise ExecutorUnavailable(f"--executor dask needs Dask, an optional extra: {INSTALL_DASK}", 2) from None
    return distributed
