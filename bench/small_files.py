"""Ingest of many small landing files: files per second, a first night and the nights after.

    .venv/bin/python bench/small_files.py --files 5000                  # PostgreSQL, this tree
    .venv/bin/python bench/small_files.py --files 50000 --rounds 1      # the first night of issue 23 (3.7 h before)
    .venv/bin/python bench/small_files.py --files 5000 --sqlite         # the embedded database
    .venv/bin/python bench/small_files.py --files 5000 --repo /tmp/base # another checkout's trigger.py
    .venv/bin/python bench/small_files.py --files 5000 --profile /tmp/small.prof   # and a cProfile of the job
    .venv/bin/python bench/small_files.py --files 5000 --out bench/RESULTS.md      # and its section there

A district of --files usage files of --rows rows each (new keys: a student a file, one day),
spread over 50 school folders with a year and a month folder each, as school servers sync
them. Each round, in a fresh PostgreSQL schema (dropped after) or SQLite file: `trigger.py
--jobs ingest` (the first night: every file new), again (a night with nothing new: every
file skipped by its size and time), and again after --new more files land (a night with a
few new files beside the manifest of all the others). Reported: the job's own seconds (as
trigger.py reports them) and files per second; medians over --rounds. With --out, the
figures replace this bench's section of that file (bench/run.py keeps the section when it
rewrites the file), one row per checkout measured.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import uuid
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.run import _memory, _pg_version, in_job, median, scratch, timed  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SCHOOLS = 50
BEGIN, END = "<!-- bench/small_files.py: begin -->", "<!-- bench/small_files.py: end -->"
COLUMNS = ("| files | rows each | database | code | first night (s) | files/s | a night with nothing new (s) "
           "| a night with N new files (s) | command |", "|---:|---:|---|---|---:|---:|---:|---:|---|")


def _code(repo: Path) -> str:
    """The checkout measured: its commit (and whether it has changes)."""
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return head + (" + changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return repo.name


def write_section(out: Path, row: str) -> None:
    """This bench's section of `out`: its rows so far, this one replacing a row of the same
    files, database and code."""
    text = out.read_text() if out.exists() else "# Benchmark results\n"
    rows = []
    if BEGIN in text:
        before, rest = text.split(BEGIN, 1)
        section, after = rest.split(END, 1)
        rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith(COLUMNS[0][:8])]
        text = before.rstrip("\n") + "\n" + after.lstrip("\n")
    key = row.split(" | ")[:4]
    rows = [r for r in rows if r.split(" | ")[:4] != key] + [row]
    section = "\n".join([
        BEGIN, "## Many small files (bench/small_files.py)", "",
        "Usage files of a few rows each, new keys, in 50 school folders; `trigger.py --jobs ingest` on them (the "
        "first night), again (nothing new: every file skipped by its size and time), and again after N more "
        "land. Seconds are the job's own, as trigger.py reports them; medians of the rounds.", "",
        f"Machine: {platform.node()}, {os.cpu_count()} cores, {_memory()}; PostgreSQL {_pg_version().rstrip(')')}.", "",
        *COLUMNS, *rows, END])
    out.write_text(text.rstrip("\n") + "\n\n" + section + "\n")


def write_files(landing: Path, district: str, count: int, rows: int, start: int = 0) -> None:
    """`count` usage files of `rows` rows, files start..start+count-1, a student each (new keys)."""
    first = date(2026, 8, 20)
    for n in range(start, start + count):
        day = first + timedelta(days=n % 90)
        folder = landing / district / f"school_{n % SCHOOLS:02d}" / f"{day.year}" / f"{day.month:02d}"
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
    p.add_argument("--out", type=Path, help="put the figures in this file's section for this bench")
    p.add_argument("--code", help="how --out names the code measured (default: the checkout's commit)")
    args = p.parse_args(argv)
    base_url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL") \
        or "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
    data = Path(tempfile.mkdtemp(prefix="small-files-"))
    # A district id of its own: ingest's advisory lock is database-wide, and another run on
    # the same server (bench/run.py's district is `bench`) would take turns with this one.
    district = f"small_{uuid.uuid4().hex[:8]}"
    try:
        write_files(data / "landing", district, args.files, args.rows)
        print(f"{args.files:,} files of {args.rows} rows; {'SQLite' if args.sqlite else 'PostgreSQL'}; "
              f"repo {args.repo}", flush=True)
        first, idle, night = [], [], []
        for round_ in range(1, args.rounds + 1):
            with scratch(base_url, 40) as place:
                (place.work / "districts.yaml").write_text(
                    f"districts:\n  - id: {district}\n    apps: [" + ", ".join(f"app{i:02d}" for i in range(40)) + "]\n")
                env = dict(place.env)
                if args.sqlite:
                    env["DATABASE_URL"] = f"sqlite:///{place.work / 'analytics.db'}"
                shutil.copytree(data / "landing", place.work / "landing", copy_function=os.link)
                trigger = [sys.executable, str(args.repo / "trigger.py"), *place.trigger[2:]]
                seconds, wall, peak = ingest(trigger, env, place.work, args.profile if round_ == 1 else None)
                first.append(seconds)
                idle.append(ingest(trigger, env, place.work)[0])
                write_files(place.work / "landing", district, args.new, args.rows, start=args.files)
                night.append(ingest(trigger, env, place.work)[0])
            print(f"round {round_}: first night {first[-1]:.1f} s ({args.files / first[-1]:,.1f} files/s, wall "
                  f"{wall:.1f} s, {peak:,.0f} MB); nothing new {idle[-1]:.2f} s; {args.new} new files "
                  f"{night[-1]:.2f} s", flush=True)
        print(f"median: first night {median(first):.1f} s, {args.files / median(first):,.1f} files/s; a night with "
              f"nothing new {median(idle):.2f} s; a night with {args.new} new files beside {args.files:,} loaded "
              f"{median(night):.2f} s ({args.new / median(night):,.1f} files/s)")
        if args.out:
            shown = " ".join(a for a in sys.argv[1:] if a not in ("--out", str(args.out), "--code", args.code))
            write_section(args.out, f"| {args.files:,} | {args.rows} | {'SQLite' if args.sqlite else 'PostgreSQL'} | "
                                    f"{args.code or _code(args.repo)} | {median(first):.1f} | {args.files / median(first):,.1f} | "
                                    f"{median(idle):.2f} | {median(night):.2f} (N = {args.new}) | "
                                    f"`bench/small_files.py {shown}` |")
    finally:
        shutil.rmtree(data, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
