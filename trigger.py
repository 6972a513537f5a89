"""Command line of the district analytics service (CONTRACT.md, "Command line").

Exit codes: 0 done (rows may have been quarantined: the summary says so), 1 a job failed
or the database (or the Dask scheduler) cannot be reached, 2 bad usage or configuration.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from datetime import date, datetime, timezone
from pathlib import Path

from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

import config
from config.secrets import redact
from lifecycle import onboarding
from runner import executors
from runner.cycle import as_of_day, run_cycle, select_districts, select_jobs
from runner.jobrun import Stopping, UsageError
from service import notify, report, serve, status
from service.logs import LogFormatter
from storage import database

log = logging.getLogger("trigger")


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a day as YYYY-MM-DD; got {text!r}") from None


def _names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected names separated by commas; got {text!r}")
    return names


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1; got {text!r}")
    return int(text)


def _shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        index = count = 0
    if not 1 <= index <= count:
        raise argparse.ArgumentTypeError(f"expected I/N with 1 <= I <= N, e.g. 1/2; got {text!r}")
    return index, count


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="trigger.py", description="Run the nightly district analytics cycle.")
    p.add_argument("--district", action="append", metavar="ID", help="only this district (repeatable)")
    p.add_argument("--jobs", type=_names, metavar="JOB,JOB", help="only these jobs, e.g. ingest,dailypull")
    p.add_argument("--as-of", type=_day, metavar="YYYY-MM-DD", help="compute as of this day (default: today, UTC)")
    p.add_argument("--force", action="store_true", help="reload every landing file and rebuild every table")
    p.add_argument("--demo", action="store_true",
                   help="make a demo landing folder in ./demo and run a cycle on an SQLite database there")
    p.add_argument("--onboard", metavar="ID", help="add a district: validate, add to districts.yaml, create "
                   "its tables, run its first cycle (needs --apps)")
    p.add_argument("--apps", type=_names, metavar="A,B,C", help="with --onboard: the district's app ids")
    p.add_argument("--name", metavar="TEXT", help="with --onboard: the district's name")
    p.add_argument("--check", action="store_true", help="with --onboard: a dry run that scans the landing folder "
                   "and writes nothing")
    p.add_argument("--offboard", metavar="ID", help="disable a district (enabled: false); its data stay")
    p.add_argument("--drop", action="store_true", help="with --offboard: also delete its tables and rows")
    p.add_argument("--yes", action="store_true", help="with --drop: do not ask for confirmation")
    p.add_argument("--serve", action="store_true", help="long-running: a cycle daily at schedule.daily_at UTC "
                   "(and one at start if a scheduled cycle was missed)")
    p.add_argument("--health", action="store_true", help="exit 1 unless a cycle succeeded within 26 hours and the "
                   "--serve loop is beating")
    p.add_argument("--shard", type=_shard, metavar="I/N", help="run only the districts of shard I of N (1..N)")
    p.add_argument("--executor", choices=executors.EXECUTORS, help="where the jobs run: local (default; in "
                   "--workers processes) or dask (on the cluster of --scheduler); env ANALYTICS_EXECUTOR")
    p.add_argument("--workers", type=_count, metavar="N", help="with --executor local: run districts in N processes "
                   "(default 1: one after another, here); env ANALYTICS_WORKERS")
    p.add_argument("--scheduler", metavar="URL", help="with --executor dask: the Dask scheduler's address, "
                   "tcp://HOST:PORT; env ANALYTICS_SCHEDULER")
    p.add_argument("--web", action="store_true", help="serve the dashboard (operations and district pages, "
                   "their JSON); read-only unless ANALYTICS_WEB_TOKEN is set")
    p.add_argument("--host", default="127.0.0.1", help="with --web: the address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="with --web: the port (default 8080)")
    p.add_argument("--status", action="store_true", help="the last cycles, each district's freshness, each "
                   "school's syncs (stale ones flagged), apps in usage a district does not list")
    p.add_argument("--json", action="store_true", help="with --status: as JSON, for machines")
    p.add_argument("--reminders", action="store_true", help="with --status: the CLIx schools to remind before "
                                                            "the next 2nd or 4th Friday, and why")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for handler in logging.getLogger().handlers:  # one record one line, no secret, whatever a file quotes
        handler.setFormatter(LogFormatter(handler.formatter or logging.Formatter()))
    as_of = args.as_of or as_of_day(datetime.now(timezone.utc))
    if args.demo:
        from lifecycle import demo

        return demo.main(Path("demo"), as_of=as_of)

    settings_path = Path(os.environ.get("DISTRICTS_FILE", "districts.yaml"))
    landing_dir = Path(os.environ.get("LANDING_DIR", "landing"))
    url = os.environ.get("DATABASE_URL", database.DEFAULT_URL)
    try:
        if args.onboard:
            return _onboard(args, settings_path, landing_dir, url, as_of)
        if args.offboard:
            return _offboard(args, settings_path, url)
        if args.apps or args.name or args.check or args.drop or args.yes or ((args.json or args.reminders) and not args.status):
            raise UsageError("--apps, --name and --check go with --onboard; --drop and --yes with --offboard; "
                             "--json and --reminders with --status")
        settings = config.load(settings_path)
        if args.status:
            return _status(settings, url, as_of, as_json=args.json, reminders=args.reminders)
        if args.web:
            return _web(settings, url, landing_dir, as_of, args.host, args.port)
        executor = None if args.health else executors.choose(args.executor, args.workers, args.scheduler)
        if args.health or args.serve:
            return _service(args, settings_path, landing_dir, url, executor)
        districts = select_districts(settings, args.district, args.shard)
        jobs = select_jobs(args.jobs)
    except (config.ConfigError, UsageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    try:
        engine = _engine(url)
    except DatabaseUnusable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    stopping = []

    def stop(signum, _frame):  # the running job rolls back and is recorded; pool processes end
        if stopping:  # a second Ctrl-C must not break the recording of the first
            log.warning("%s received again: already stopping", signal.Signals(signum).name)
            return
        stopping.append(signum)
        log.warning("%s received: stopping", signal.Signals(signum).name)
        raise Stopping()

    handlers = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        cycle = run_cycle(engine, settings, districts=districts, jobs=jobs, as_of=as_of, force=args.force,
                          landing_dir=landing_dir, executor=executor)
    except (executors.ExecutorUnavailable, UsageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return getattr(exc, "code", 2)
    except Stopping:
        print("stopped by a signal: the running job's transaction was rolled back and it is recorded as "
              "interrupted", file=sys.stderr)
        return 1
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    print(redact(report.cycle_summary(cycle)))
    notify.notify(cycle)
    return 1 if cycle.failed else 0


def _service(args, settings_path: Path, landing_dir: Path, url: str, executor) -> int:
    heartbeat = Path(os.environ.get("ANALYTICS_HEARTBEAT_FILE", ".analytics-heartbeat"))
    try:
        engine = _engine(url)
    except DatabaseUnusable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1 if args.health else exc.code
    if args.health:
        healthy, why = serve.health(engine, heartbeat)
        print(why)
        return 0 if healthy else 1
    return serve.Service(engine, settings_path, landing_dir, shard=args.shard, heartbeat=heartbeat,
                           after_cycle=_report_and_notify, executor=executor,
                           as_of=args.as_of).serve()


def _web(settings, url: str, landing_dir: Path, as_of, host: str, port: int) -> int:
    import uvicorn

    from jobs import JOBS
    from service import web

    try:
        engine = _engine(url)
        reader = _engine(os.environ["ANALYTICS_WEB_DATABASE_URL"]) if os.environ.get("ANALYTICS_WEB_DATABASE_URL") \
            else engine  # the pages read through the read-only dashboard role where one is given
    except DatabaseUnusable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code

    def start_cycle(force: bool) -> None:  # "run now": the same claims and locks as any instance
        cycle = run_cycle(engine, settings, districts=select_districts(settings, None), jobs=list(JOBS), as_of=as_of,
                          force=force, landing_dir=landing_dir)
        _report_and_notify(cycle)

    print(f"dashboard: http://{host}:{port}/", flush=True)
    uvicorn.run(web.create_app(reader, settings, today=as_of, start_cycle=start_cycle), host=host, port=port,
                log_level="warning")
    return 0


def _report_and_notify(cycle) -> None:
    print(redact(report.cycle_summary(cycle)), flush=True)
    notify.notify(cycle)


class DatabaseUnusable(Exception):
    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def _engine(url: str):
    """Connect, retrying with backoff (1 s, 2 s, 4 s ... at most 30 s apart) for up to
    ANALYTICS_DB_WAIT_SECONDS (default 60): a database restarting at night is waited for."""
    wait = float(os.environ.get("ANALYTICS_DB_WAIT_SECONDS", "60"))
    started, attempts, pause = time.monotonic(), 0, 1.0
    while True:
        attempts += 1
        try:
            return database.connect(url)
        except database.UnusableURL as exc:
            raise DatabaseUnusable(str(exc), 2) from None
        except (ArgumentError, NoSuchModuleError, ImportError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DatabaseUnusable(f"DATABASE_URL is not a usable database URL ({database.describe(url)}): {first}; "
                                   f"expected {database.URL_FORMS}", 2) from None
        except OperationalError as exc:
            waited = time.monotonic() - started
            if waited + pause > wait:
                raise DatabaseUnusable(
                    f"cannot reach the database {database.describe(url)} after {attempts} attempts over "
                    f"{waited:.0f} s: {str(exc.orig).strip().splitlines()[0]}", 1)
            log.warning("cannot reach the database (attempt %d): %s; retrying in %.0f s",
                        attempts, str(exc.orig).strip().splitlines()[0], pause)
            time.sleep(pause)
            pause = min(pause * 2, 30.0)


def _status(settings, url: str, as_of: date, *, as_json: bool, reminders: bool = False) -> int:
    try:
        engine = _engine(url)
    except DatabaseUnusable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    data = status.collect(engine, settings, today=as_of, reminders=reminders)
    print(json.dumps(data, indent=2, default=str) if as_json else status.render(data))
    return 0


def _onboard(args, settings_path: Path, landing_dir: Path, url: str, as_of: date) -> int:
    onboarding.check_new_district(args.onboard, args.apps or [])
    if args.check:
        options, where = onboarding.standards_options(settings_path, args.onboard)
        found = onboarding.scan(landing_dir, args.onboard, options)
        print(onboarding.check_report(found, landing_dir, args.onboard, args.apps, options, where))
        return 0
    try:
        cycle, summary = onboarding.onboard(settings_path, lambda: _engine(url), landing_dir, args.onboard,
                                           args.apps, args.name, as_of)
    except DatabaseUnusable as exc:
        print(f"error: {exc} (the district was added to {settings_path}; run the cycle once it is reachable)",
              file=sys.stderr)
        return exc.code
    print(report.cycle_summary(cycle))
    print()
    print(summary)
    return 1 if cycle.failed else 0


def _offboard(args, settings_path: Path, url: str) -> int:
    settings = onboarding.offboard(settings_path, args.offboard)
    print(f"{args.offboard}: disabled in {settings_path} (enabled: false); nightly jobs skip it")
    if not args.drop:
        print("its tables and rows stay; --offboard ID --drop deletes them")
        return 0
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError("--drop deletes data: confirm with --yes when not at a terminal")
        answer = input(f"Delete every row of {args.offboard!r} and its table? Type the district id to confirm: ")
        if answer.strip() != args.offboard:
            print("not confirmed: nothing was deleted", file=sys.stderr)
            return 2
    try:
        deleted = onboarding.drop_district(_engine(url), settings.district(args.offboard))
    except DatabaseUnusable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    print(f"{args.offboard}: deleted " + (", ".join(f"{n:,} rows of {t}" for t, n in deleted.items()) or "nothing")
          + "; the landing folder is untouched")
    return 0


if __name__ == "__main__":
    sys.exit(main())
