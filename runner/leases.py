"""Claims and locks shared by every instance on one database: a district claimed for one
instance at a time (`job_claims`), and database-wide locks for heavy jobs (a PostgreSQL
advisory lock; on SQLite a lease row in `service_locks`)."""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timedelta, timezone

from sqlalchemy import Column, Connection, Engine, Table, delete, event, func, select, update

from storage.database import is_postgres, lock_key, read_only

log = logging.getLogger(__name__)


def _take_lease(engine: Engine, table: Table, key: Column, value: str, holder: str, lease_seconds: float,
                **columns) -> str | None:
    """Take the lease row `key == value` for `holder` unless another holder's has not expired.

    Returns None when taken, else the holder that has it. One transaction: on PostgreSQL the
    takers of one row take turns on an advisory lock; on SQLite BEGIN IMMEDIATE does it.
    """
    now = datetime.now(timezone.utc)
    with engine.begin() as conn:
        if is_postgres(conn):
            conn.execute(select(func.pg_advisory_xact_lock(lock_key(table.name, value))))
        conn.execute(delete(table).where(key == value, table.c.expires_at < now))
        other = conn.execute(select(table.c.holder).where(key == value)).scalar()
        if other is not None and holder_is_gone(other):
            log.info("%s %r: its holder %s is no longer running on this host: taken over", table.name, value, other)
            conn.execute(delete(table).where(key == value, table.c.holder == other))
            other = None
        if other is None:
            conn.execute(table.insert().values({key.name: value, "holder": holder,
                                                "expires_at": now + timedelta(seconds=lease_seconds), **columns}))
    return other


class Lost(BaseException):
    """A job's claim on its district, or the fleet lock of a heavy job, is no longer its own
    (its lease ran out and another instance took it, its row was released, the lock's
    connection died): nothing the job still writes may commit. A BaseException, as Stopping
    is, so that no job's `except Exception` (a file's error, a batch retried one file at a
    time) takes it for a failure of its own and goes on: it ends the job at once."""


class Lease:
    """A lease row (`mine` in `table`, keyed `value`) that a running job must still hold
    whenever it commits.

    `fence(conn)`, run as the job's transaction commits, pushes the lease forward if the row
    still names this holder and raises Lost if it does not. While the row names the holder,
    no other instance has taken it over, however late the job is, so what it commits is not
    stale; and no takeover can slip in before the commit:
    - PostgreSQL, at READ COMMITTED: the UPDATE inside the committing transaction sees the
      row as it is now and keeps it locked until the commit (a takeover's DELETE waits).
      In a REPEATABLE READ transaction (which neither sees nor may update a row renewed
      since it began): the transaction takes the advisory lock every taker takes first
      (`_take_lease`), so a takeover waits for this commit, and the row is read and renewed
      on a connection of its own, as it is now.
    - SQLite: the committing transaction holds the database's write lock (BEGIN IMMEDIATE)
      and reads the latest rows: the UPDATE runs inside it.
    `lost` is set by the renewing thread once a renewal finds the row gone, so the job can
    stop at its next step (`check`).
    """

    def __init__(self, table: Table, key: Column, value: str, holder: str, lease_seconds: float, label: str):
        self.table, self.lease_seconds, self.label = table, lease_seconds, label
        self.mine = (key == value) & (table.c.holder == holder)
        self.lock = lock_key(table.name, value)
        self.lost = threading.Event()

    def renew(self, conn: Connection, *only_if) -> bool:
        until = datetime.now(timezone.utc) + timedelta(seconds=self.lease_seconds)
        return conn.execute(update(self.table).where(self.mine, *only_if).values(expires_at=until)).rowcount == 1

    def fence(self, conn: Connection) -> None:
        if self.lost.is_set():
            raise Lost(self.message())
        if is_postgres(conn):
            # At READ COMMITTED (nearly every commit) the UPDATE sees the row as it is now and
            # locks it until the commit: one round trip. Otherwise, or when the row is not
            # this holder's, look again outside the transaction's snapshot.
            held = self.renew(conn, func.current_setting("transaction_isolation") == "read committed")
            if not held:
                conn.execute(select(func.pg_advisory_xact_lock(self.lock)))  # takers wait for this commit
                with conn.engine.connect().execution_options(unfenced=True) as now:
                    held = self.renew(now)
                    now.commit()
        else:
            held = self.renew(conn)
        if not held:
            self.lost.set()
            raise Lost(self.message())

    def message(self) -> str:
        return (f"{self.label} (its lease ran out and another instance took it over, or it was released): "
                "the job's last transaction was rolled back")

    def check(self) -> None:
        if self.lost.is_set():
            raise Lost(self.message())


def _held_by_another(engine: Engine, table: Table, key: Column, value: str, holder: str) -> str | None:
    """The live holder of an unexpired lease row `key == value` other than `holder`, read
    without taking SQLite's write lock: a district another instance is working on is left
    to it at once, even while that instance holds the lock for a long file."""
    with read_only(engine) as conn:
        other = conn.execute(select(table.c.holder).where(
            key == value, table.c.holder != holder, table.c.expires_at >= datetime.now(timezone.utc))).scalar()
    return None if other is None or holder_is_gone(other) else other


@contextmanager
def _holding(engine: Engine, lease: Lease, name: str) -> Iterator[Lease]:
    """While the block runs, push the lease forward every third of its length from a thread
    (a holder that dies stops renewing); delete its row when the block ends. A renewal
    that cannot reach the database (or, on SQLite, waits on a long write, which itself
    keeps every other instance out) is retried after a few seconds; one that finds the row
    gone marks the lease lost."""
    stop = threading.Event()

    def renew():
        wait, failures = lease.lease_seconds / 3, 0
        while not stop.wait(wait):
            try:
                with engine.begin() as conn:
                    held = lease.renew(conn)
            except Exception as exc:  # a missed renewal only shortens the lease; the next commit renews it too
                failures += 1
                (log.warning if failures == 1 else log.debug)(
                    "could not renew %s (%s); retrying", name, str(exc).strip().splitlines()[0][:200])
                wait = min(lease.lease_seconds / 3, 2.0)
                continue
            if failures:
                log.info("%s renewed again after %d failed attempts", name, failures)
            wait, failures = lease.lease_seconds / 3, 0
            if not held:
                log.warning("%s is no longer this instance's: its work stops at the next commit", name)
                lease.lost.set()
                return

    thread = threading.Thread(target=renew, name=name, daemon=True)
    thread.start()
    release = True
    try:
        yield lease
    except LeftToExpire:  # work under it may still be running elsewhere: stop renewing, keep the row
        release = False
        raise
    finally:
        stop.set()
        thread.join()
        if release:
            try:
                with engine.begin() as conn:
                    conn.execute(delete(lease.table).where(lease.mine))
            except Exception as exc:  # the database is away: the row expires with its lease
                log.warning("could not release %s (%s): it expires by itself within %.0f s", name,
                            str(exc).strip().splitlines()[0][:200], lease.lease_seconds)


class LeftToExpire(Exception):
    """Thrown into a held lease (a claim) to stop renewing it without releasing it: whatever
    runs under it elsewhere keeps it until the lease expires."""


def _retry(attempt, wait_seconds: float):
    """Call `attempt` until it returns something true or `wait_seconds` have passed."""
    deadline = time.monotonic() + wait_seconds
    while True:
        result = attempt()
        if result or time.monotonic() >= deadline:
            return result
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


@contextmanager
def claim(engine: Engine, district_id: str, holder: str, lease_seconds: float) -> Iterator[str | None]:
    """Claim a district for this instance while the block runs.

    Yields None when the claim is ours, else the holder that has it. The lease is renewed
    while the block runs; a holder that dies stops renewing, and the district is free again
    once its lease has expired.
    """
    from models import job_claims

    other = _held_by_another(engine, job_claims, job_claims.c.district_id, district_id, holder)
    if other is None:
        other = _take_lease(engine, job_claims, job_claims.c.district_id, district_id, holder, lease_seconds,
                            claimed_at=datetime.now(timezone.utc))
    if other is not None:
        yield other
        return
    with _holding(engine, claim_lease(district_id, holder, lease_seconds), f"claim-{district_id}"):
        yield None


def claim_lease(district_id: str, holder: str, lease_seconds: float) -> Lease:
    """The district's claim as `holder` holds it: what a job of the district fences its commits
    with, wherever it runs (the claim itself is taken and renewed by the cycle's process)."""
    from models import job_claims

    return Lease(job_claims, job_claims.c.district_id, district_id, holder, lease_seconds,
                 f"claim lost: {district_id} is no longer claimed by {holder}")


def holder_name() -> str:
    """This process, as claims and locks name it: HOST:PID."""
    return f"{socket.gethostname()}:{os.getpid()}"


def holder_is_gone(holder: str) -> bool:
    """Whether `holder` (HOST:PID, or HOST:PID:TAG) names a process of this host that no
    longer exists: its lease need not be waited out. A holder on another host, or one whose
    process id is alive (even if reused by another program), keeps its lease until it ends."""
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


class AdvisoryLock:
    """A PostgreSQL session advisory lock held on a connection of its own, for a heavy job.

    The lock lives as long as that connection: if the connection dies (the server restarts,
    `pg_terminate_backend`), the lock is gone and another instance may take it. A thread
    looks at the connection every ANALYTICS_LOCK_CHECK_SECONDS (10) and marks the lock lost;
    `fence` looks once more at every commit of the job, so a job whose lock is gone stops at
    its next checkpoint and commits nothing after it."""

    def __init__(self, conn: Connection, key: int, name: str):
        self.conn, self.key, self.name = conn, key, name
        self.lost = threading.Event()
        self.using = threading.Lock()  # the connection is used by the job's thread and the watcher

    def alive(self) -> bool:
        with self.using:
            if self.lost.is_set():
                return False
            try:
                self.conn.execute(select(1)).scalar_one()
                self.conn.commit()
                return True
            except Exception as exc:
                log.warning("the lock %s is gone with its connection (%s)", self.name,
                            str(exc).strip().splitlines()[0][:200])
                self.lost.set()
                return False

    def message(self) -> str:
        return (f"fleet lock lost: the database connection holding the lock {self.name} ended, so another instance "
                "may be running it: the job's last transaction was rolled back")

    def fence(self, conn: Connection) -> None:
        if not self.alive():
            raise Lost(self.message())

    def check(self) -> None:
        if self.lost.is_set():
            raise Lost(self.message())

    def release(self) -> None:
        with self.using:
            if self.lost.is_set():
                return
            try:
                self.conn.execute(select(func.pg_advisory_unlock(self.key)))
                self.conn.commit()
            except Exception as exc:  # the connection is gone, and the lock with it
                log.warning("could not release the lock %s (%s): it went with its connection", self.name,
                            str(exc).strip().splitlines()[0][:200])


@contextmanager
def _watching(lock: AdvisoryLock) -> Iterator[AdvisoryLock]:
    stop = threading.Event()
    every = float(os.environ.get("ANALYTICS_LOCK_CHECK_SECONDS", "10"))

    def watch():
        while not stop.wait(every) and lock.alive():
            pass

    thread = threading.Thread(target=watch, name=f"lock-{lock.name}", daemon=True)
    thread.start()
    try:
        yield lock
    finally:
        stop.set()
        thread.join()
        lock.release()


@contextmanager
def exclusive(engine: Engine, *names: str, wait_seconds: float = 0.0,
              lease_seconds: float | None = None) -> Iterator[AdvisoryLock | Lease | None]:
    """Hold the database-wide lock `names` while the block runs; yields the lock (to fence
    the job's commits with), or None when it was not taken.

    PostgreSQL: a session advisory lock on a connection of its own, released when the block
    ends or the process dies (see AdvisoryLock). SQLite: a lease row in service_locks,
    renewed while the block runs and deleted when it ends; a holder that died loses it when
    the lease expires. Waits up to `wait_seconds` for it.
    """
    name = "/".join(names)
    if engine.dialect.name == "postgresql":
        key = lock_key(*names)
        with engine.connect().execution_options(unfenced=True) as conn:  # the lock's own: never fenced

            def attempt() -> bool:
                taken = conn.execute(select(func.pg_try_advisory_lock(key))).scalar_one()
                conn.commit()
                return bool(taken)

            if not _retry(attempt, wait_seconds):
                yield None
                return
            with _watching(AdvisoryLock(conn, key, name)) as lock:
                yield lock
        return
    from models import service_locks

    lease = lease_seconds or float(os.environ.get("ANALYTICS_LEASE_SECONDS", "600"))
    holder = f"{holder_name()}:{uuid.uuid4().hex[:8]}"
    taken = _retry(lambda: _take_lease(engine, service_locks, service_locks.c.name, name, holder, lease) is None,
                   wait_seconds)
    if not taken:
        yield None
        return
    with _holding(engine, Lease(service_locks, service_locks.c.name, name, holder, lease,
                                f"fleet lock lost: {name} is no longer held by {holder}"), f"lock-{name}") as held:
        yield held


# --- Fencing a job's commits ------------------------------------------------------------------

_guard: ContextVar[tuple | None] = ContextVar("analytics_guard", default=None)


def _on_commit(conn: Connection) -> None:
    """Before any commit of a guarded job (in its thread): every lease it runs under must still
    be its own, checked and renewed inside the committing transaction; else Lost, and the
    transaction rolls back."""
    held = _guard.get()
    if held and not conn.get_execution_options().get("unfenced"):
        try:
            for lease in held:
                lease.fence(conn)
        except BaseException:
            # SQLAlchemy counts a commit that raised as ended and hands the connection back to
            # the pool without a rollback: roll the transaction back here, or the next user
            # of the connection would carry on inside it (and could commit it).
            conn.connection.dbapi_connection.rollback()
            raise


@contextmanager
def guarded(engine: Engine, *held) -> Iterator[None]:
    """Fence every commit made through `engine` in this thread while the block runs with the
    leases `held` (a district's claim, a heavy job's lock): a job that lost one commits
    nothing more. `check()` lets a job stop between steps once one is known lost."""
    held = tuple(h for h in held if h is not None)
    if not event.contains(engine, "commit", _on_commit):
        event.listen(engine, "commit", _on_commit)
    token = _guard.set(held)
    try:
        yield
    finally:
        _guard.reset(token)


def check() -> None:
    """Raise Lost if a lease the running job holds is known lost (a checkpoint calls it)."""
    for lease in _guard.get() or ():
        lease.check()
