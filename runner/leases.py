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
from datetime import datetime, timedelta, timezone

from sqlalchemy import Column, Engine, Table, delete, func, select, update

from storage.database import is_postgres, lock_key

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


@contextmanager
def _holding(engine: Engine, table: Table, mine, lease_seconds: float, name: str) -> Iterator[None]:
    """While the block runs, push the lease rows `mine` forward every third of the lease from a
    thread (a holder that dies stops renewing); delete them when it ends."""
    stop = threading.Event()

    def renew():
        while not stop.wait(lease_seconds / 3):
            try:
                with engine.begin() as conn:
                    conn.execute(update(table).where(mine).values(
                        expires_at=datetime.now(timezone.utc) + timedelta(seconds=lease_seconds)))
            except Exception:  # a missed renewal only shortens the lease
                log.warning("could not renew %s", name, exc_info=True)

    thread = threading.Thread(target=renew, name=name, daemon=True)
    thread.start()
    release = True
    try:
        yield
    except LeftToExpire:  # work under it may still be running elsewhere: stop renewing, keep the row
        release = False
        raise
    finally:
        stop.set()
        thread.join()
        if release:
            with engine.begin() as conn:
                conn.execute(delete(table).where(mine))


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

    other = _take_lease(engine, job_claims, job_claims.c.district_id, district_id, holder, lease_seconds,
                        claimed_at=datetime.now(timezone.utc))
    if other is not None:
        yield other
        return
    mine = (job_claims.c.district_id == district_id) & (job_claims.c.holder == holder)
    with _holding(engine, job_claims, mine, lease_seconds, f"claim-{district_id}"):
        yield None


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


@contextmanager
def exclusive(engine: Engine, *names: str, wait_seconds: float = 0.0,
              lease_seconds: float | None = None) -> Iterator[bool]:
    """Hold the database-wide lock `names` while the block runs; yields whether it was taken.

    PostgreSQL: a session advisory lock on a connection of its own, released when the block
    ends or the process dies. SQLite: a lease row in service_locks, renewed while the block
    runs and deleted when it ends; a holder that died loses it when the lease expires.
    Waits up to `wait_seconds` for it.
    """
    if engine.dialect.name == "postgresql":
        key = lock_key(*names)
        with engine.connect() as conn:

            def attempt() -> bool:
                taken = conn.execute(select(func.pg_try_advisory_lock(key))).scalar_one()
                conn.commit()
                return bool(taken)

            taken = _retry(attempt, wait_seconds)
            try:
                yield taken
            finally:
                if taken:
                    conn.execute(select(func.pg_advisory_unlock(key)))
                    conn.commit()
        return
    from models import service_locks

    lease = lease_seconds or float(os.environ.get("ANALYTICS_LEASE_SECONDS", "600"))
    name, holder = "/".join(names), f"{holder_name()}:{uuid.uuid4().hex[:8]}"
    taken = _retry(lambda: _take_lease(engine, service_locks, service_locks.c.name, name, holder, lease) is None,
                   wait_seconds)
    if not taken:
        yield False
        return
    mine = (service_locks.c.name == name) & (service_locks.c.holder == holder)
    with _holding(engine, service_locks, mine, lease, f"lock-{name}"):
        yield True
