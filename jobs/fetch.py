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

FETCHED, FAILED, LIMIT = "fetched", "failed", "limit"


class LimitReached(Exception):
    pass


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


def _retry(action, attempts: int, what: str):
    """`action()`, tried `attempts` times with a doubling wait between; the last error is raised."""
    wait = backoff_seconds()
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except LimitReached:
            raise
        except Exception as exc:  # network, credentials, a timeout: the remote's own exceptions vary
            if attempt == attempts:
                raise
            log.warning("%s: attempt %d of %d failed (%s); again in %.1f s", what, attempt, attempts,
                        redact(_reason(exc)), wait)
            time.sleep(wait)
            wait *= 2


def _reason(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return redact(f"{type(exc).__name__}: {text}"[:500])


class _Ledger:
    def __init__(self, engine, district: District, now: datetime):
        self.engine, self.district, self.now = engine, district, now

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
                local_path=local, fetched_at=datetime.now(timezone.utc), status=status,
                error=redact(error)[:2000] if error else None))

    def month_bytes(self) -> int:
        with self.engine.connect() as conn:
            return bytes_fetched(conn, self.district.id, month_start(self.now))


def run(engine, district: District, ctx: JobContext) -> JobResult:
    result = JobResult()
    ledger = _Ledger(engine, district, ctx.now)
    folder = Path(ctx.landing_dir) / district.id
    used = ledger.month_bytes()
    parts, failed = [], []
    for source in district.sources:
        attempts = int(source.option("retries", 3))
        try:
            if source.type == "sql":
                fetched, size, unchanged = _fetch_sql(source, ledger, folder, ctx, attempts, used, district)
            else:
                fetched, size, unchanged = _fetch_files(source, ledger, folder, ctx, attempts, used, district)
            used += size
            result.rows_out += fetched
            parts.append(f"{source.name}: {plural(fetched, 'file')} fetched ({size:,} bytes)"
                         + (f", {unchanged:,} unchanged" if unchanged else ""))
        except LimitReached as exc:
            parts.append(f"{source.name}: {exc}")
            result.status = COMPLETED_WITH_ERRORS
            log.warning("%s: %s: %s", district.id, source.name, exc)
            break
        except Exception as exc:  # the source failed: recorded, the others and ingest go on
            reason = _reason(exc)
            ledger.record(source.name, source.url if source.type != "sql" else source.option("table"), FAILED,
                          error=reason)
            failed.append(source.name)
            parts.append(f"{source.name}: failed: {reason}")
            result.status = COMPLETED_WITH_ERRORS
            log.warning("%s: %s: fetch failed: %s", district.id, source.name, reason)
    result.message = "; ".join(parts) or "no sources"
    result.details = {"failed_sources": failed, "bytes_this_month": used}
    return result


def _check_limit(district: District, used: int, size: int | None, ledger: _Ledger, source, remote_path: str) -> None:
    limit = district.fetch_monthly_bytes
    if limit is not None and used + (size or 0) > limit:
        message = (f"monthly limit reached: {used:,} of {limit:,} bytes fetched this month "
                   f"(fetch_monthly_bytes); {remote_path} ({size or 0:,} bytes) and the rest wait for next month")
        ledger.record(source.name, remote_path, LIMIT, size=0, error=message)
        raise LimitReached(message)


def _fetch_files(source, ledger: _Ledger, folder: Path, ctx: JobContext, attempts: int, used: int,
                 district: District) -> tuple[int, int, int]:
    fs, root = _retry(lambda: remote.filesystem(source), attempts, f"{district.id}: {source.name}")
    objects = _retry(lambda: remote.listing(fs, root, source), attempts, f"{district.id}: {source.name}: listing")
    known = {} if ctx.force else ledger.last_versions(source.name)
    fetched = size = unchanged = 0
    for obj in objects:
        if known.get(obj.path) == obj.version:
            unchanged += 1
            continue
        home = (folder / source.name).resolve()
        target = home / obj.relative.lstrip("/")
        if not target.resolve().is_relative_to(home):  # a key like "../../etc/x": never written outside
            ledger.record(source.name, obj.path, FAILED, error=f"{obj.relative!r} would land outside the source's "
                                                                "folder: not fetched")
            continue
        _check_limit(district, used + size, obj.size, ledger, source, obj.path)
        copied = _retry(lambda: remote.download(fs, obj, target), attempts, f"{district.id}: {source.name}: {obj.path}")
        local = "/".join(target.relative_to(Path(ctx.landing_dir).resolve()).parts)
        ledger.record(source.name, obj.path, FETCHED, version=obj.version, size=copied, local=local)
        log.info("%s: %s: fetched %s (%d bytes) -> %s", district.id, source.name, obj.path, copied, local)
        fetched += 1
        size += copied
    return fetched, size, unchanged


def _fetch_sql(source, ledger: _Ledger, folder: Path, ctx: JobContext, attempts: int, used: int,
               district: District) -> tuple[int, int, int]:
    table = source.option("table")
    after = None if ctx.force else ledger.last_versions(source.name).get(table)
    _check_limit(district, used, 0, ledger, source, table)
    stamp = ctx.now.strftime("%Y%m%dT%H%M%S")
    done = _retry(lambda: reporting.fetch_new_rows(source, after, folder / source.name, stamp), attempts,
                  f"{district.id}: {source.name}")
    if done.path is None:
        return 0, 0, 1
    local = "/".join(done.path.relative_to(ctx.landing_dir).parts)
    ledger.record(source.name, table, FETCHED, version=done.watermark, size=done.bytes, local=local)
    log.info("%s: %s: %d new rows (watermark %s) -> %s", district.id, source.name, done.rows, done.watermark, local)
    return 1, done.bytes, 0
