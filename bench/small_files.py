"""Ingest of many small landing files: files per second, a first night and the nights after.

    .venv/bin/python bench/small_files.py --files 5000                  # PostgreSQL, this tree
    .venv/bin/python bench/small_files.py --files 50000 --rounds 1      # the first night of issue 23 (3.7 h before)
    .venv/bin/python bench/small_files.py --files 5000 --sqlite         # the embedded database
    .venv/bin/python bench/small_files.py --files 5000 --repo /tmp/base # another checkout's trigger.py
    .venv/bin/python bench/small_files.py --files 5000 --profile /tmp/small.prof   # and a cProfile of the job

A district of --files usage files of --rows rows each (new keys: a student a file, one day),
spread over 50 school folders with a year and a month folder each, as school servers sync
them. Each round, in a fresh PostgreSQL schema (dropped after) or SQLite file: `trigger.py
--jobs ingest` (the first night: every file new), again (a night with nothing new: every
file skipped by its size and time), and again after --new more files land (a night with a
few new files beside the manifest of all the others). Reported: the job's own seconds (as
trigger.py reports them) and files per second; medians over --rounds.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.run import in_job, median, scratch, timed  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SCHOOLS = 50


def write_files(landing: Path, count: int, rows: int, start: int = 0) -> None:
    """`count` usage files of `rows` rows, files start..start+count-1, a student each (new keys)."""
    first = date(2026, 8, 20)
    for n in range(start, start + count):
        day = first + timedelta(days=n % 90)
        folder = landing / "bench" / f"school_{n % SCHOOLS:02d}" / f"{day.year}" / f"{day.month:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        lines = "".join(f"s{n:06d},app{k % 40:02d},{day.isoformat()},{5 + k}\n" for k in range(rows))
        (folder / f"usage_{day.isoformat()}_{n:06d}.csv").write_text("student_id,app,date,minutes\n" + lines)


def ingest(trigger: list[str], env: dict, work: Path, profile: Path | None = None) -> tuple[float, float, float]:
    """(the job's own seconds, wall seconds, peak RSS MB) of one `trigger.py --jobs ingest`."""
    command = [*trigger, "--jobs", "ingest"]
    if profile is not None:
        command = [command[0], "-m", "cProfile", "-o", str(profile), *command[1:]]
    wall, peak, out = timed(command, env, work)
    return in_job(out, "ingest"), wall, peak


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=5_000)
    p.add_argument("--rows", type=int, default=3, help="rows per file")
    p.add_argument("--new", type=int, default=100, help="files landing on the third night")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--sqlite", action="store_true", help="the embedded database instead of PostgreSQL")
    p.add_argument("--repo", type=Path, default=REPO, help="the checkout whose trigger.py is measured")
    p.add_argument("--profile", type=Path, help="write a cProfile of the first night's job here (first round)")
    args = p.parse_args(argv)
    base_url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL") \
        or "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
    data = Path(tempfile.mkdtemp(prefix="small-files-"))
    try:
        write_files(data / "landing", args.files, args.rows)
        print(f"{args.files:,} files of {args.rows} rows; {'SQLite' if args.sqlite else 'PostgreSQL'}; "
              f"repo {args.repo}", flush=True)
        first, idle, night = [], [], []
        for round_ in range(1, args.rounds + 1):
            with scratch(base_url, 40) as place:
                env = dict(place.env)
                if args.sqlite:
                    env["DATABASE_URL"] = f"sqlite:///{place.work / 'analytics.db'}"
                shutil.copytree(data / "landing", place.work / "landing", copy_function=os.link)
                trigger = [sys.executable, str(args.repo / "trigger.py"), *place.trigger[2:]]
                seconds, wall, peak = ingest(trigger, env, place.work, args.profile if round_ == 1 else None)
                first.append(seconds)
                idle.append(ingest(trigger, env, place.work)[0])
                write_files(place.work / "landing", args.new, args.rows, start=args.files)
                night.append(ingest(trigger, env, place.work)[0])
            print(f"round {round_}: first night {first[-1]:.1f} s ({args.files / first[-1]:,.1f} files/s, wall "
                  f"{wall:.1f} s, {peak:,.0f} MB); nothing new {idle[-1]:.2f} s; {args.new} new files "
                  f"{night[-1]:.2f} s", flush=True)
        print(f"median: first night {median(first):.1f} s, {args.files / median(first):,.1f} files/s; a night with "
              f"nothing new {median(idle):.2f} s; a night with {args.new} new files beside {args.files:,} loaded "
              f"{median(night):.2f} s ({args.new / median(night):,.1f} files/s)")
    finally:
        shutil.rmtree(data, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
