"""fetch: bring each district's new data from its `sources:` into its landing folder, before
ingest (README, "fetch"); everything after it (exactly once, quarantine, decryption) is ingest's.

Per source: list what it holds; fetch an object when its version (ETag, checksum, or size and
modification time) is not the one the ledger (`fetch_ledger`) last fetched; write it to
LANDING_DIR/<district>/<source name>/<its path>, through a hidden temporary name renamed when
complete. A sql source writes the rows past its watermark as one landing file of its kind.
A source that fails (credentials, network, a timeout) is tried again with backoff, then
recorded as failed; the district's other sources, and its later jobs, still run on what is
there. A district's `fetch_monthly_bytes` stops fetching once the month's bytes would pass it.
"""
from __future__ import annotations

import logging
import os
import time
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import func, select

from config import District
from config.secrets import redact
from jobs.job import COMPLETED_WITH_ERRORS, JobContext, JobResult, plural
from models import fetch_ledger
from readers import remote, reporting

log = logging.getLogger(__name__)

FETCHED, CHECKED, FAILED, LIMIT = "fetched", "checked", "failed", "limit"
OK = (FETCHED, CHECKED)  # a source's run that ended well (CHECKED: it was listed or read, whatever it had)


class Budget:
    """The district's bytes this month and its monthly limit, shared by its sources."""

    def __init__(self, used: int, limit: int | None):
        self.used, self.limit = used, limit

    def room(self) -> int | None:
        return None if self.limit is None else max(0, self.limit - self.used)

    def fits(self, size: int | None) -> bool:
        return self.limit is None or self.used + (size or 0) <= self.limit


FAILURES_IN_A_ROW = 3  # consecutive object failures that fail the whole source


def backoff_seconds() -> float:
    """The first wait before a retry (doubling each time): ANALYTICS_FETCH_BACKOFF_SECONDS, default 2."""
    return float(os.environ.get("ANALYTICS_FETCH_BACKOFF_SECONDS", "2"))


def month_start(moment: datetime, months_back: int = 0) -> datetime:
    year, month = moment.year, moment.month - months_back
    while month < 1:
        year, month = year - 1, month + 12
    return datetime(year, month, 1, tzinfo=timezone.utc)


def bytes_fetched(conn, district_id: str, since: datetime, until: datetime | None = None,
                  source: str | None = None) -> int:
    query = select(func.coalesce(func.sum(fetch_ledger.c.bytes), 0)).where(
        fetch_ledger.c.district_id == district_id, fetch_ledger.c.status == FETCHED, fetch_ledger.c.fetched_at >= since)
    if until is not None:
        query = query.where(fetch_ledger.c.fetched_at < until)
    if source is not None:
        query = query.where(fetch_ledger.c.source == source)
    return int(conn.execute(query).scalar_one())


def _permanent(exc: Exception) -> bool:
    """A failure another attempt cannot mend: missing, refused, misconfigured."""
    if isinstance(exc, (FileNotFoundError, PermissionError, NotADirectoryError, IsADirectoryError,
                        remote.RemoteError)):  # not RemoteUnavailable: a cut download, a server down
        return True
    return type(exc).__name__ in ("AuthenticationException", "BadAuthenticationType", "NoSuchTableError")


def _retry(action, attempts: int, what: str):
    """`action()`, tried `attempts` times with a doubling wait between (not for a failure
    another attempt cannot mend); the last error is raised."""
    wait = backoff_seconds()
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except Exception as exc:  # network, credentials, a timeout: the remote's own exceptions vary
            if attempt == attempts or _permanent(exc):
                raise
            log.warning("%s: attempt %d of %d failed (%s); again in %.1f s", what, attempt, attempts,
                        redact(_reason(exc)), wait)
            time.sleep(wait)
            wait *= 2


def _reason(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return redact(f"{type(exc).__name__}: {text}"[:500])


class _Ledger:
    def __init__(self, engine, district: District, ctx: JobContext):
        self.engine, self.district, self.ctx = engine, district, ctx

    def last_versions(self, source: str) -> dict[str, str]:
        """remote path -> the version last fetched."""
        latest = (select(func.max(fetch_ledger.c.id)).where(
            fetch_ledger.c.district_id == self.district.id, fetch_ledger.c.source == source,
            fetch_ledger.c.status == FETCHED).group_by(fetch_ledger.c.remote_path))
        with self.engine.connect() as conn:
            return dict(conn.execute(select(fetch_ledger.c.remote_path, fetch_ledger.c.version)
                                     .where(fetch_ledger.c.id.in_(latest))).all())

    def record(self, source: str, remote_path: str, status: str, *, version=None, size=0, local=None, error=None):
        with self.engine.begin() as conn:
            conn.execute(fetch_ledger.insert().values(
                district_id=self.district.id, source=source, remote_path=remote_path, version=version, bytes=size,
                local_path=local, fetched_at=self.ctx.clock(), status=status,
                error=redact(error)[:2000] if error else None))

    def month_bytes(self) -> int:
        with self.engine.connect() as conn:
            return bytes_fetched(conn, self.district.id, month_start(self.ctx.now))


def run(engine, district: District, ctx: JobContext) -> JobResult:
    result = JobResult()
    ledger = _Ledger(engine, district, ctx)
    folder = Path(ctx.landing_dir) / district.id
    budget = Budget(ledger.month_bytes(), district.fetch_monthly_bytes)
    parts, failed = [], []
    for source in district.sources:
        attempts = int(source.option("retries", 3))
        tally = _Tally()
        try:
            if source.type == "sql":
                _fetch_sql(source, ledger, folder, ctx, attempts, budget, district, tally)
            else:
                _fetch_files(source, ledger, folder, ctx, attempts, budget, district, tally)
            ledger.record(source.name, _root(source), CHECKED, error="; ".join(tally.problems) or None)
        except Exception as exc:  # the source failed: recorded, the others and ingest go on
            reason = _reason(exc)
            ledger.record(source.name, _root(source), FAILED, error=reason)
            tally.problems.insert(0, f"failed: {reason}")
            failed.append(source.name)
            log.warning("%s: %s: fetch failed: %s", district.id, source.name, reason)
        result.rows_out += tally.fetched
        parts.append(tally.say(source.name))
        if tally.problems:
            result.status = COMPLETED_WITH_ERRORS
    result.message = "; ".join(parts) or "no sources"
    result.details = {"failed_sources": failed, "bytes_this_month": budget.used}
    return result


def _root(source) -> str:
    return source.option("table") if source.type == "sql" else source.url


class _Tally:
    """What one source's run did, for the job's message."""

    def __init__(self):
        self.fetched = self.size = self.unchanged = self.waiting = 0
        self.problems: list[str] = []

    def say(self, name: str) -> str:
        text = f"{name}: {plural(self.fetched, 'file')} fetched ({self.size:,} bytes)"
        if self.unchanged:
            text += f", {self.unchanged:,} unchanged"
        if self.waiting > 1:
            text += f", {self.waiting:,} waiting for the monthly limit"
        return text + "".join(f"; {name}: {p}" for p in self.problems)


def _over_limit(district: District, budget: Budget, size: int | None, ledger: _Ledger, source, path: str,
                tally: _Tally) -> bool:
    """Whether the object must wait for next month (recorded and said, once a source)."""
    if budget.fits(size):
        return False
    alone = district.fetch_monthly_bytes is not None and (size or 0) > district.fetch_monthly_bytes
    message = (f"monthly limit reached: {budget.used:,} of {district.fetch_monthly_bytes:,} bytes fetched this month "
               f"(fetch_monthly_bytes); {path} ({size or 0:,} bytes) "
               + ("is larger than the whole limit: raise fetch_monthly_bytes to fetch it" if alone
                  else "waits for next month or a higher limit"))
    tally.waiting += 1
    if tally.waiting == 1:  # one limit row and one message a source run; the rest are counted
        ledger.record(source.name, path, LIMIT, error=message)
        tally.problems.append(message)
        log.warning("%s: %s: %s", district.id, source.name, message)
    return True


def _fetch_files(source, ledger: _Ledger, folder: Path, ctx: JobContext, attempts: int, budget: Budget,
                 district: District, tally: _Tally) -> None:
    fs, root = _retry(lambda: remote.filesystem(source), attempts, f"{district.id}: {source.name}")
    try:
        objects = _retry(lambda: remote.listing(fs, root, source), attempts, f"{district.id}: {source.name}: listing")
        known = {} if ctx.force else ledger.last_versions(source.name)
        home = (folder / source.name).resolve()
        in_a_row = 0  # objects failing one after another: the server, not the objects
        for obj in objects:
            if obj.version and known.get(obj.path) == obj.version:
                tally.unchanged += 1
                continue
            target = home / obj.relative.lstrip("/")
            if not target.resolve().is_relative_to(home):  # a key like "../../etc/x": never written outside
                why = f"{obj.relative!r} would land outside the source's folder: not fetched"
                ledger.record(source.name, obj.path, FAILED, error=why)
                tally.problems.append(why)
                continue
            if _over_limit(district, budget, obj.size, ledger, source, obj.path, tally):
                continue  # a smaller object may still fit
            try:
                copied = _retry(lambda: remote.download(fs, obj, target), attempts,
                                f"{district.id}: {source.name}: {obj.path}")
            except Exception as exc:  # this object failed: recorded; the others are still fetched
                reason = _reason(exc)
                ledger.record(source.name, obj.path, FAILED, error=reason)
                tally.problems.append(f"{obj.relative}: failed: {reason}")
                log.warning("%s: %s: %s: %s", district.id, source.name, obj.path, reason)
                in_a_row += 1
                if in_a_row >= FAILURES_IN_A_ROW:  # a dead or hung server: the source fails, not object by object
                    raise remote.RemoteUnavailable(f"{in_a_row} objects in a row failed, the last: {reason}") from None
                continue
            in_a_row = 0
            local = "/".join(target.relative_to(Path(ctx.landing_dir).resolve()).parts)
            ledger.record(source.name, obj.path, FETCHED, version=obj.version, size=copied, local=local)
            log.info("%s: %s: fetched %s (%d bytes) -> %s", district.id, source.name, obj.path, copied, local)
            budget.used += copied
            tally.fetched += 1
            tally.size += copied
    finally:
        remote.close(fs)


def _fetch_sql(source, ledger: _Ledger, folder: Path, ctx: JobContext, attempts: int, budget: Budget,
               district: District, tally: _Tally) -> None:
    table = source.option("table")
    after = None if ctx.force else ledger.last_versions(source.name).get(table)
    if _over_limit(district, budget, 1, ledger, source, table, tally) if budget.room() == 0 else False:
        return
    stamp = ctx.now.strftime("%Y%m%dT%H%M%S")
    done = _retry(lambda: reporting.fetch_new_rows(source, after, folder / source.name, stamp, budget.room()),
                  attempts, f"{district.id}: {source.name}")
    if done.without_watermark:
        tally.problems.append(f"{plural(done.without_watermark, 'row')} without a watermark ({source.option('watermark')} "
                              "is NULL): not read")
    if done.path is None:
        tally.unchanged += 1
        return
    local = "/".join(done.path.relative_to(ctx.landing_dir).parts)
    ledger.record(source.name, table, FETCHED, version=done.watermark, size=done.bytes, local=local)
    log.info("%s: %s: %d new rows (watermark %s) -> %s", district.id, source.name, done.rows, done.watermark, local)
    budget.used += done.bytes
    tally.fetched += 1
    tally.size += done.bytes
    if done.cut:
        tally.problems.append(f"monthly limit reached: the rows stop at the limit ({budget.used:,} bytes this "
                              "month, fetch_monthly_bytes); the rest follow next month or with a higher limit")
