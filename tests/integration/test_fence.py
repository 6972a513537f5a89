"""The commit fence (runner.leases.guarded) against the real database: a job's commit goes
through only while its district's claim still names its holder, at READ COMMITTED and inside
a REPEATABLE READ snapshot that began before the claim was renewed or taken over."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from models import job_claims
from runner import leases
from storage.database import is_postgres

SCRATCH = sa.Table("fence_scratch", sa.MetaData(), sa.Column("a", sa.Integer))


@pytest.fixture
def scratch(engine):
    with engine.begin() as conn:
        SCRATCH.create(conn)
    return engine


def rows(engine) -> list[int]:
    with engine.connect() as conn:
        return sorted(conn.execute(sa.select(SCRATCH.c.a)).scalars())


def elsewhere(function, *args) -> None:
    """Run `function` in another thread, as another instance (or the renewing thread) would:
    outside the job's guard."""
    thread = threading.Thread(target=function, args=args)
    thread.start()
    thread.join()


def take_over(engine, district: str, holder: str) -> None:
    """What another instance's takeover leaves: the row names it (the old one deleted)."""
    now = datetime.now(timezone.utc)
    with engine.begin() as conn:
        conn.execute(sa.delete(job_claims).where(job_claims.c.district_id == district))
        conn.execute(job_claims.insert().values(district_id=district, holder=holder, claimed_at=now,
                                                expires_at=now + timedelta(seconds=600)))


def renew(engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.update(job_claims).values(expires_at=datetime.now(timezone.utc) + timedelta(seconds=60)))


def snapshot_transaction(engine):
    """A connection whose transaction is a REPEATABLE READ snapshot on PostgreSQL (its first
    read takes it), as most_used's publish is."""
    conn = engine.connect()
    if is_postgres(conn):
        conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    conn.execute(sa.select(sa.func.count()).select_from(SCRATCH)).scalar()
    return conn


def test_a_commit_goes_through_while_the_claim_is_ours_and_renews_it(scratch):
    with leases.claim(scratch, "alpha", "me:1", 30) as other:
        assert other is None
        lease = leases.claim_lease("alpha", "me:1", 30)
        with scratch.connect() as conn:
            before = conn.execute(sa.select(job_claims.c.expires_at)).scalar_one()
        with leases.guarded(scratch, lease), scratch.begin() as conn:
            conn.execute(SCRATCH.insert().values(a=1))
        with scratch.connect() as conn:
            after = conn.execute(sa.select(job_claims.c.expires_at)).scalar_one()
        assert rows(scratch) == [1] and after > before  # renewed by the commit itself


def test_a_commit_after_a_takeover_rolls_back_with_claim_lost(scratch):
    with leases.claim(scratch, "alpha", "me:1", 30):
        lease = leases.claim_lease("alpha", "me:1", 30)
        take_over(scratch, "alpha", "them:2")
        with pytest.raises(leases.Lost, match="claim lost: alpha is no longer claimed by me:1"):
            with leases.guarded(scratch, lease), scratch.begin() as conn:
                conn.execute(SCRATCH.insert().values(a=1))
    assert rows(scratch) == []
    with scratch.connect() as conn:  # the other instance's claim is untouched
        assert conn.execute(sa.select(job_claims.c.holder)).scalars().all() == ["them:2"]
    with scratch.begin() as conn:  # the pooled connection is not left inside the refused transaction
        conn.execute(SCRATCH.insert().values(a=9))
    assert rows(scratch) == [9]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite: the write lock keeps takers out
def test_a_snapshot_transaction_sees_a_takeover_made_after_it_began(scratch):
    """The snapshot began while the claim was ours; the takeover commits after; its commit
    must still be refused (a read inside the snapshot would see the old holder)."""
    with leases.claim(scratch, "alpha", "me:1", 30):
        lease = leases.claim_lease("alpha", "me:1", 30)
        with leases.guarded(scratch, lease):
            conn = snapshot_transaction(scratch)
            conn.execute(SCRATCH.insert().values(a=2))
            elsewhere(take_over, scratch, "alpha", "them:2")
            with pytest.raises(leases.Lost):
                conn.commit()
            conn.close()
    assert rows(scratch) == []


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite: the write lock keeps renewals out
def test_a_snapshot_transaction_commits_when_the_claim_was_only_renewed_since(scratch):
    """The renewing thread pushed the lease forward after the snapshot began: not a takeover,
    so the commit goes through (no serialization failure on the renewed row)."""
    with leases.claim(scratch, "alpha", "me:1", 30):
        lease = leases.claim_lease("alpha", "me:1", 30)
        with leases.guarded(scratch, lease):
            conn = snapshot_transaction(scratch)
            conn.execute(SCRATCH.insert().values(a=3))
            elsewhere(renew, scratch)
            conn.commit()
            conn.close()
    assert rows(scratch) == [3]
