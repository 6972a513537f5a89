"""Command line of the district analytics service (CONTRACT.md, "Command line").

Exit codes: 0 done (rows may have been quarantined: the summary says so), 1 a job failed
or the database cannot be reached, 2 bad usage or configuration.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import date, datetime, timezone
from pathlib import Path

from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

import config
import database
import report
from jobs.cycle import UsageError, run_cycle, select_districts, select_jobs

log = logging.getLogger("trigger")


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a day as YYYY-MM-DD; got {text!r}") from None


def _names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected job names separated by commas; got {text!r}")
    return names


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="trigger.py", description="Run the nightly district analytics cycle.")
    p.add_argument("--district", action="append", metavar="ID", help="only this district (repeatable)")
    p.add_argument("--jobs", type=_names, metavar="JOB,JOB", help="only these jobs, e.g. ingest,dailypull")
    p.add_argument("--as-of", type=_day, metavar="YYYY-MM-DD", help="compute as of this day (default: today, UTC)")
    p.add_argument("--force", action="store_true", help="reload every landing file and rebuild every table")
    p.add_argument("--demo", action="store_true",
                   help="make a demo landing folder in ./demo and run a cycle on an SQLite database there")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    as_of = args.as_of or datetime.now(timezone.utc).date()
    if args.demo:
        import demo

        return demo.main(Path("demo"), as_of=as_of)

    try:
        settings = config.load(os.environ.get("DISTRICTS_FILE", "districts.yaml"))
        districts = select_districts(settings, args.district)
        jobs = select_jobs(args.jobs)
    except (config.ConfigError, UsageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    url = os.environ.get("DATABASE_URL", database.DEFAULT_URL)
    try:
        engine = database.connect(url)
    except (ArgumentError, NoSuchModuleError) as exc:
        print(f"error: DATABASE_URL is not a usable database URL ({database.describe(url)}): {exc}", file=sys.stderr)
        return 2
    except OperationalError as exc:
        print(f"error: cannot reach the database {database.describe(url)}: {exc.orig}", file=sys.stderr)
        return 1
    cycle = run_cycle(
        engine, settings, districts=districts, jobs=jobs, as_of=as_of, force=args.force,
        landing_dir=Path(os.environ.get("LANDING_DIR", "landing")),
    )
    print(report.cycle_summary(cycle))
    return 1 if cycle.failed else 0


if __name__ == "__main__":
    sys.exit(main())
