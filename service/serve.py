"""The long-running service (`--serve`) and its health check (`--health`).

`schedule` starts a cycle daily at `schedule.daily_at` UTC. On start, if the last
successful cycle began before the most recent scheduled time, one catch-up cycle runs at
once: exactly one, however long the service was down. A failing job never stops the loop.
SIGTERM/SIGINT while idle end the loop at once; during a cycle they interrupt it: the
running transaction rolls back (every publish is one transaction), the job is recorded as
interrupted, and the process exits 0.
"""
from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import schedule
from sqlalchemy import func, select

import config
from jobs import JOBS
from runner.cycle import CycleResult, as_of_day, run_cycle, select_districts
from runner.jobrun import Stopping
from models import job_runs

log = logging.getLogger(__name__)

HEALTHY_WITHIN = timedelta(hours=26)
STUCK_AFTER = timedelta(seconds=float(os.environ.get("ANALYTICS_STUCK_AFTER_SECONDS", str(3 * 3600))))


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def last_scheduled(now: datetime, daily_at: str) -> datetime:
    """The most recent moment at or before `now` when a daily cycle was due (UTC)."""
    hour, minute = map(int, daily_at.split(":"))
    today = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return today if today <= now else today - timedelta(days=1)


def last_successful_cycle(engine) -> datetime | None:
    """When the most recent cycle without a failed (or still running) job started."""
    with engine.connect() as conn:
        rows = conn.execute(select(job_runs.c.cycle_id, func.min(job_runs.c.started_at), job_runs.c.status)
                            .group_by(job_runs.c.cycle_id, job_runs.c.status)).all()
    cycles: dict[str, tuple[datetime, bool]] = {}
    for cycle_id, started, status in rows:
        started = started if started.tzinfo else started.replace(tzinfo=timezone.utc)
        first, ok = cycles.get(cycle_id, (started, True))
        cycles[cycle_id] = (min(first, started), ok and status not in ("failed", "running"))
    good = [started for started, ok in cycles.values() if ok]
    return max(good) if good else None


class Service:
    def __init__(self, engine, settings_path: Path, landing_dir: Path, *, shard=None,
                 clock: Callable[[], datetime] = utc_now, heartbeat: Path | None = None,
                 after_cycle: Callable[[CycleResult], None] = lambda cycle: None, executor=None,
                 as_of: date | None = None):
        self.engine = engine
        self.settings_path = settings_path
        self.landing_dir = landing_dir
        self.shard = shard
        self.clock = clock
        self.heartbeat = heartbeat
        self.after_cycle = after_cycle
        self.executor = executor  # runner.executors.Executor; None: here, one district after another
        self.as_of = as_of  # --as-of: every cycle computes as of this day (replays, tests); else the clock's UTC day
        self.busy = False
        self.stopping = False

    def beat(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.touch()

    def cycle(self) -> CycleResult | None:
        """One cycle for every enabled district of this shard; never raises but Stopping."""
        self.beat()
        try:
            settings = config.load(self.settings_path)  # edits take effect at the next cycle
        except config.ConfigError as exc:
            log.error("cycle not started: %s", exc)
            return None
        self.busy = True
        try:
            cycle = run_cycle(self.engine, settings, districts=select_districts(settings, None, self.shard),
                              jobs=list(JOBS), as_of=self.as_of or as_of_day(self.clock()), landing_dir=self.landing_dir,
                              heartbeat=self.beat, clock=self.clock, executor=self.executor)
        except Stopping:
            raise
        except Exception:  # a broken cycle (the database or the Dask scheduler gone) never ends the service
            log.exception("the cycle failed; the service goes on")
            return None
        finally:
            self.busy = False
            self.beat()
        self.after_cycle(cycle)
        return cycle

    def catch_up(self) -> bool:
        """Run one cycle now if the last successful one began before the last scheduled time."""
        daily_at = config.load(self.settings_path).daily_at
        due = last_scheduled(self.clock(), daily_at)
        last = last_successful_cycle(self.engine)
        if last is not None and last >= due:
            log.info("last successful cycle %s is after the last scheduled time %s: no catch-up", last, due)
            return False
        log.info("catch-up: last successful cycle %s, scheduled %s", last, due)
        self.cycle()
        return True

    def _signal(self, signum, _frame) -> None:
        log.warning("%s received: stopping", signal.Signals(signum).name)
        self.stopping = True
        if self.busy:
            raise Stopping()

    def _serve_web(self, settings) -> None:
        _start_web(self, settings)

    def serve(self, *, poll_seconds: float = 1.0) -> int:
        signal.signal(signal.SIGTERM, self._signal)
        signal.signal(signal.SIGINT, self._signal)
        settings = config.load(self.settings_path)
        daily_at = settings.daily_at
        if settings.web_port:
            self._serve_web(settings)
        scheduler = schedule.Scheduler()
        scheduler.every().day.at(daily_at, "UTC").do(self.cycle)
        log.info("serving: a cycle daily at %s UTC", daily_at)
        try:
            self.catch_up()
            while not self.stopping:
                self.beat()
                scheduler.run_pending()
                time.sleep(poll_seconds)
        except Stopping:
            log.warning("stopped during a cycle: its running transaction was rolled back")
        log.info("stopped")
        return 0


def _start_web(service: "Service", settings) -> None:
    """The dashboard inside --serve (web.port in districts.yaml), on a thread; its "run now"
    runs a cycle as the schedule does (the same claims and locks)."""
    import threading

    import uvicorn

    from service import web

    app = web.create_app(service.engine, settings, today=service.as_of or as_of_day(service.clock()),
                         start_cycle=lambda force: service.cycle())
    server = uvicorn.Server(uvicorn.Config(app, host=settings.web_host, port=settings.web_port, log_level="warning"))
    server.install_signal_handlers = lambda: None  # the service's own handlers stay
    threading.Thread(target=server.run, name="dashboard", daemon=True).start()
    log.info("dashboard: http://%s:%d/", settings.web_host, settings.web_port)


def health(engine, heartbeat: Path, *, now: datetime | None = None) -> tuple[bool, str]:
    """(healthy, why): a cycle succeeded within 26 hours and the loop beat recently."""
    now = now or utc_now()
    problems = []
    last = last_successful_cycle(engine)
    if last is None or now - last > HEALTHY_WITHIN:
        problems.append(f"no cycle succeeded within {HEALTHY_WITHIN.total_seconds() / 3600:.0f} hours "
                        f"(last: {last.isoformat() if last else 'never'})")
    try:
        beat = datetime.fromtimestamp(heartbeat.stat().st_mtime, tz=timezone.utc)
        if now - beat > STUCK_AFTER:
            problems.append(f"the service loop looks stuck: no heartbeat since {beat.isoformat()}")
    except FileNotFoundError:
        problems.append(f"no heartbeat file {heartbeat}: is trigger.py --serve running here?")
    return (not problems, "; ".join(problems) or f"healthy: last successful cycle {last.isoformat()}")
