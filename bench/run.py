"""The benchmark: our jobs side by side with the physical limit and the naive way, in one run.

    .venv/bin/python bench/run.py --scale small      # ~1M usage rows, 40 apps (minutes)
    .venv/bin/python bench/run.py --scale tiny --out /tmp/RESULTS.md   # the CI smoke run

One district (districts run independently; bench/executors.py measures many), sized by
`--scale` or `--students/--apps/--days`. Needs PostgreSQL (BENCH_DATABASE_URL, else
TEST_DATABASE_URL, else the local server) with its `psql` client, and the `sqlite3` shell for
the SQLite comparison; DuckDB is optional (bench/requirements.txt). Every job runs as a real
`trigger.py` subprocess under /usr/bin/time -v, so peak memory (RSS) is the job's own.
Results go to stdout and to bench/RESULTS.md (with the machine, versions and command).
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
SCALES = {  # students per district, apps, school days
    "tiny": dict(students=300, apps=8, days=40),
    "small": dict(students=5_000, apps=40, days=180),
    # a million students, sparse as real use is (2-4 apps each, each on 1 school day in 25):
    # about 21M usage rows; --growth repeats every job at 100k and 300k for the exponents
    "large": dict(students=1_000_000, apps=40, days=180, use=0.04),
}
GROWTH = [100_000, 300_000]
NIGHT_JOBS = ("ingest", "dailypull", "most_used", "recommendations")
AS_OF = date(2027, 6, 1)
NIGHTS = 3  # school days held out of the year, each then loaded as one night
GENERATE_SLICE = 50_000  # students generated at a time


@dataclass
class Row:
    what: str
    seconds: float  # ours: the job's own seconds; the limits: the psql process's wall time
    rows: int | None = None
    peak_mb: float | None = None
    note: str = ""
    wall: float | None = None  # ours: the whole trigger.py process


@dataclass
class JobRow:
    """One job's own figures: a full run on the year, or a night (one new school day)."""
    job: str
    kind: str  # "full" or "night"
    seconds: float
    rows: int | None
    peak_mb: float
    note: str = ""


def generate(folder: Path, district: str, students: int, apps: int, days: int, seed: int = 1,
             use: float = 0.4, assessed_share: float = 0.5, signal: bool = False) -> int:
    """Sparse school-year usage: each student uses 2-4 apps, each on a `use` share of school
    days (2 of 5 by default); an `assessed_share` of students has a spring assessment,
    random, or with `signal` rising with the student's minutes (so a model passes the gate
    and recommendations take their costlier, model-based path). Written in slices of
    students, so a million students need no more memory than a slice."""
    rng = np.random.default_rng(seed)
    app_ids = np.array([f"app{i:02d}" for i in range(apps)])
    school_days = pd.bdate_range(date(2026, 8, 17), periods=days)
    day_text = np.array(school_days.strftime("%Y-%m-%d"))
    held_out = list(day_text[-NIGHTS:])  # one file a night, for the nights (night_days)
    target = folder / district
    target.mkdir(parents=True, exist_ok=True)
    outputs = {"year": target / "usage_year.csv",
               **{night: folder.parent / f"usage_night_{night}.csv" for night in range(1, NIGHTS + 1)}}
    total, minutes_of = 0, np.zeros(students)
    for first in range(0, students, GENERATE_SLICE):
        count = min(GENERATE_SLICE, students - first)
        per = rng.integers(2, 5, count)
        student = np.repeat(np.arange(first, first + count), per)
        app = rng.integers(0, apps, student.size)
        pair, day = np.nonzero(rng.random((student.size, days)) < use)
        frame = pd.DataFrame({
            "student_id": np.char.add("s", student[pair].astype(str)),
            "app": app_ids[app[pair]],
            "date": day_text[day],
            "minutes": rng.integers(5, 60, pair.size),
        }).drop_duplicates(["student_id", "app", "date"])
        np.add.at(minutes_of, frame["student_id"].str[1:].astype(int).to_numpy(), frame["minutes"].to_numpy())
        total += len(frame)
        header = first == 0
        frame.loc[frame["date"] < held_out[0]].to_csv(outputs["year"], index=False, header=header,
                                                       mode="w" if header else "a")
        for night, day_name in enumerate(held_out, start=1):
            frame.loc[frame["date"] == day_name].to_csv(outputs[night], index=False, header=header,
                                                         mode="w" if header else "a")
    ids = np.char.add("s", np.arange(students).astype(str))
    assessed = rng.random(students) < assessed_share
    score = rng.uniform(30, 100, students)
    if signal:
        score = np.clip(40 + 40 * minutes_of / max(minutes_of.max(), 1) + rng.normal(0, 5, students), 0, 100)
        # 100 schools: the model basis needs schools (clustered intervals, folds by school)
        pd.DataFrame({"student_id": ids, "school_id": np.char.add("school", (np.arange(students) % 100).astype(str)),
                      "grade": "5"}).to_csv(target / "students.csv", index=False)
    spring = "2027-04-15" if "2027-04-15" < held_out[0] else day_text[int(days * 0.8)]  # before the year's as-of day
    pd.DataFrame({"student_id": ids[assessed], "assessment_id": "spring", "date": spring,
                  "score": score[assessed].round(1)}).to_csv(target / "assessments.csv", index=False)
    return total


def night_days(days: int) -> list[str]:
    """The as-of days: the year's (the school day before the held-out ones), then each night's
    (its own school day), so a night moves the day on as a real one does."""
    return [day.date().isoformat() for day in pd.bdate_range(date(2026, 8, 17), periods=days)[-NIGHTS - 1:]]


def on(trigger: list[str], day: str) -> list[str]:
    """`trigger` with its --as-of day replaced."""
    at = trigger.index("--as-of") + 1
    return [*trigger[:at], day, *trigger[at + 1:]]


def timed(command: list[str], env: dict, cwd: Path) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MB, stdout) of a subprocess under /usr/bin/time -v."""
    started = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-v", *command], cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode not in (0,):
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    return seconds, (int(peak[1]) / 1024 if peak else float("nan")), done.stdout


def in_job(stdout: str, job: str) -> float:
    """The job's own seconds from trigger.py's summary (wall time also holds Python's start,
    about a second of imports that a service pays once per cycle, not once per job)."""
    seconds = [float(line.split()[3]) for line in stdout.splitlines() if line.startswith(f"{job} ")]
    return sum(seconds) if seconds else float("nan")


def median(values: list[float]) -> float:
    return float(np.median(values))


def psql_url(url: str) -> str:
    return sa.engine.make_url(url).set(drivername="postgresql", query={}).render_as_string(hide_password=False)


@dataclass
class Scratch:
    """A fresh PostgreSQL schema and working folder for one measured district."""
    work: Path
    url: str  # DATABASE_URL with the schema as search_path
    schema: str
    env: dict
    trigger: list[str]


@contextmanager
def scratch(base_url: str, apps: int):
    """Make a Scratch (districts.yaml of one district `bench` with `apps` apps); drop it after."""
    admin = sa.create_engine(base_url)
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with admin.begin() as conn:
        conn.execute(sa.schema.CreateSchema(schema))
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    try:
        (work / "districts.yaml").write_text(
            "districts:\n  - id: bench\n    apps: [" + ", ".join(f"app{i:02d}" for i in range(apps)) + "]\n")
        url = f"{base_url}{'&' if '?' in base_url else '?'}options=-csearch_path%3D{schema}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANALYTICS_")}
        env.update(DATABASE_URL=url)
        trigger = [sys.executable, str(REPO / "trigger.py"), "--as-of", AS_OF.isoformat()]
        yield Scratch(work, url, schema, env, trigger)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.schema.DropSchema(schema, cascade=True))
        admin.dispose()
        shutil.rmtree(work, ignore_errors=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", choices=SCALES, default="small")
    for name in ("students", "apps", "days"):
        p.add_argument(f"--{name}", type=int, help=f"override the scale's {name}")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "RESULTS.md")
    p.add_argument("--recommendations-100k", action="store_true",
                   help="also time recommendations for 100k type 1 students x 40 apps (a few minutes)")
    p.add_argument("--growth", type=lambda text: [int(n) for n in text.split(",") if n and text != "none"],
                   help="also run every job at these student counts (e.g. 100000,300000) and report each "
                        "job's growth exponent (the large scale's default; none: not)")
    args = p.parse_args(argv)
    shown = [a for a in (sys.argv[1:] if argv is None else argv)]
    if "--out" in shown:  # where the table went is not part of what was measured
        del shown[shown.index("--out"):shown.index("--out") + 2]
    args.command = " ".join([".venv/bin/python bench/run.py", *shown])
    scale = {**SCALES[args.scale], **{k: getattr(args, k) for k in ("students", "apps", "days") if getattr(args, k)}}
    large = args.scale == "large"
    growth = args.growth if args.growth is not None else (GROWTH if large else [])
    repeats = 1 if large else 3  # a large rebuild takes minutes: one of each, alternated as for small
    base_url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL") \
        or "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
    results: list[Row] = []
    jobs: list[JobRow] = []
    with scratch(base_url, scale["apps"]) as place:
        work, url, schema, env, trigger = place.work, place.url, place.schema, place.env, place.trigger
        as_of_days = night_days(scale["days"])
        trigger = on(trigger, as_of_days[0])  # the year's jobs; night k runs on as_of_days[k]
        landing = work / "landing"
        rows = generate(landing, "bench", **scale)
        year_file = landing / "bench" / "usage_year.csv"
        year_rows = sum(1 for _ in open(year_file)) - 1
        print(f"{rows:,} usage rows, {scale['students']:,} students, {scale['apps']} apps, "
              f"{scale['days']} school days; schema {schema}", flush=True)

        # 1. ingest vs psql \copy into a same-shaped table (the limit) vs pandas to_sql (the naive way)
        wall, peak, out = timed([*trigger, "--jobs", "ingest"], env, work)
        results.append(Row("ingest (ours)", in_job(out, "ingest"), year_rows, peak,
                           "Arrow CSV reader, COPY straight into usage, rollups folded in", wall))
        jobs.append(JobRow("ingest", "full", in_job(out, "ingest"), year_rows, peak))
        engine = sa.create_engine(url)
        with engine.begin() as conn:  # usage's columns, types and primary key
            conn.execute(sa.text("create table copy_limit (like usage including all)"))
            conn.execute(sa.text("alter table copy_limit alter district_id set default 'bench', "
                                 "alter file_id set default 1"))
            conn.execute(sa.text("create table copy_bare (student_id text, app text, date date, minutes float)"))
        for table, what in (("copy_limit", "psql \\copy into a same-shaped table (the limit)"),
                            ("copy_bare", "psql \\copy into a table without a key (reference)")):
            started = time.perf_counter()
            columns = "(student_id, app, date, minutes)"
            subprocess.run(["psql", psql_url(url), "-q", "-c", f"set search_path to {schema}",
                            "-c", f"\\copy {table} {columns} from '{year_file}' with (format csv, header true)"],
                           check=True)
            results.append(Row(what, time.perf_counter() - started, year_rows))
        with engine.begin() as conn:  # their gigabytes are not the jobs' business
            conn.execute(sa.text("drop table copy_limit, copy_bare"))
        sample = pd.read_csv(year_file, nrows=min(year_rows, 100_000))
        started = time.perf_counter()
        sample.to_sql("to_sql_naive", engine, index=False)
        results.append(Row("pandas to_sql (the naive way, first 100k rows)", time.perf_counter() - started, len(sample)))
        # The same call as SQLAlchemy 1.x ran it, one INSERT a row (reference: what "20x" assumed)
        row_by_row = sa.create_engine(url, use_insertmanyvalues=False)
        started = time.perf_counter()
        sample.head(20_000).to_sql("to_sql_row_by_row", row_by_row, index=False)
        results.append(Row("pandas to_sql one row per INSERT (SQLAlchemy 1.x's way, first 20k rows; reference)",
                           time.perf_counter() - started, min(len(sample), 20_000)))
        row_by_row.dispose()

        # 2. dailypull full rebuild (--force: from usage) vs the database's own GROUP BY, alternated,
        # medians of 3 (1 at the large scale): right after the load, as a cycle runs it, and after
        # VACUUM ANALYZE, as the table stands once autovacuum has been by (the next night's state).
        group_by = ("select student_id, app, sum(minutes), count(distinct date) from usage "
                    "where district_id = 'bench' group by student_id, app")
        for state in ("right after the load", "after VACUUM ANALYZE"):
            if state.startswith("after"):
                subprocess.run(["psql", psql_url(url), "-q", "-c", f"set search_path to {schema}",
                                "-c", "vacuum analyze"], check=True)
            ours, walls, peaks, limit = [], [], [], []
            for _ in range(repeats):
                started = time.perf_counter()
                subprocess.run(["psql", psql_url(url), "-q", "-o", "/dev/null", "-c", f"set search_path to {schema}",
                                "-c", group_by], check=True)
                limit.append(time.perf_counter() - started)
                wall, peak, out = timed([*trigger, "--jobs", "dailypull", "--force"], env, work)
                ours.append(in_job(out, "dailypull"))
                walls.append(wall)
                peaks.append(peak)
            note = f"median of {repeats}" if repeats > 1 else "one run"
            results.append(Row(f"dailypull, full rebuild from usage (ours, --force; {state})", median(ours),
                               year_rows, max(peaks), note, median(walls)))
            results.append(Row(f"psql GROUP BY of the same rows (the limit; {state})", median(limit), year_rows,
                               note=note))
        jobs.append(JobRow("dailypull", "full", median(ours), year_rows, max(peaks)))
        try:
            import duckdb

            started = time.perf_counter()
            duckdb.sql(f"pivot (select student_id, app, sum(minutes) m from read_csv_auto('{year_file}') "
                       "group by 1, 2) on app using sum(m)").fetchall()
            results.append(Row("DuckDB aggregate + pivot in memory (reference)", time.perf_counter() - started, year_rows))
        except ImportError:
            results.append(Row("DuckDB aggregate + pivot in memory (reference)", float("nan"), note="duckdb not installed"))

        # 3. most used and recommendations on the whole year (what a night is measured against)
        for job in ("most_used", "recommendations"):
            wall, peak, out = timed([*trigger, "--jobs", job], env, work)
            results.append(Row(job, in_job(out, job), None, peak, "", wall))
            jobs.append(JobRow(job, "full", in_job(out, job), None, peak))

        # 4. nights: one new day each on top of the year, every job; the median of NIGHTS nights
        nights, walls, peaks, day_rows, parts = [], [], [], [], []
        per_job: dict[str, list[tuple[float, float]]] = {job: [] for job in NIGHT_JOBS}
        for night in range(1, NIGHTS + 1):
            name = f"usage_night_{night}.csv"
            shutil.copy(work / name, landing / "bench" / name)
            day_rows.append(sum(1 for _ in open(landing / "bench" / name)) - 1)
            for job in NIGHT_JOBS:  # one process a job, so each job's peak memory is its own
                wall, peak, out = timed([*on(trigger, as_of_days[night]), "--jobs", job], env, work)
                per_job[job].append((in_job(out, job), peak))
                if job in ("ingest", "dailypull"):
                    walls.append(wall)
            nights.append(per_job["ingest"][-1][0] + per_job["dailypull"][-1][0])
            parts.append(f"{per_job['ingest'][-1][0]:.2f} + {per_job['dailypull'][-1][0]:.2f}")
            peaks.append(max(per_job["ingest"][-1][1], per_job["dailypull"][-1][1]))
        results.append(Row("incremental night: ingest + dailypull of one new day", median(nights),
                           int(median(day_rows)), max(peaks),
                           f"median of {NIGHTS} nights (ingest + dailypull from the rollups: {'; '.join(parts)} s)",
                           median(walls) / 2))
        for job in NIGHT_JOBS:
            jobs.append(JobRow(job, "night", median([s for s, _ in per_job[job]]),
                               int(median(day_rows)) if job == "ingest" else None,
                               max(p for _, p in per_job[job]), f"median of {NIGHTS} nights"))
        engine.dispose()

        # 5. SQLite, the embedded default: the same landing folder, and dailypull's full rebuild
        # against the sqlite3 shell's own GROUP BY of the same rows (alternated, medians of 3)
        if not large:
            results += sqlite_rows(work, env, trigger, group_by, repeats)

    if not large:  # the large scale is its own memory check: peak RSS per job at a million students
        results.append(memory_check(base_url, scale))
    if args.recommendations_100k:
        results.append(recommendations_100k(base_url))
    sizes = []
    for students in growth:
        print(f"growth: every job at {students:,} students", flush=True)
        sizes.append((students, pipeline(base_url, {**scale, "students": students})))
    if growth:
        sizes.append((scale["students"], {row.job: row for row in jobs if row.kind == "full"}))
    report = render(results, args, scale, rows, jobs, sizes)
    print(report)
    args.out.write_text(report + _kept(args.out))
    return 0


def sqlite_rows(work: Path, env: dict, trigger: list[str], group_by: str, repeats: int) -> list[Row]:
    out_rows = []
    sqlite_db = work / "bench.db"
    sqlite_env = {**env, "DATABASE_URL": f"sqlite:///{sqlite_db}"}
    wall, peak, out = timed([*trigger, "--jobs", "ingest"], sqlite_env, work)
    loaded = int(subprocess.run(["sqlite3", str(sqlite_db), "select count(*) from usage"], check=True,
                                capture_output=True, text=True).stdout)
    out_rows.append(Row("SQLite: ingest (ours)", in_job(out, "ingest"), loaded, peak,
                        "Arrow CSV reader, staging + merge (SQLite has no COPY)", wall))
    ours, walls, peaks, limit = [], [], [], []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(["sqlite3", str(sqlite_db), group_by], check=True, stdout=subprocess.DEVNULL)
        limit.append(time.perf_counter() - started)
        wall, peak, out = timed([*trigger, "--jobs", "dailypull", "--force"], sqlite_env, work)
        ours.append(in_job(out, "dailypull"))
        walls.append(wall)
        peaks.append(peak)
    out_rows.append(Row("SQLite: dailypull, full rebuild from usage (ours, --force)", median(ours), loaded,
                        max(peaks), f"median of {repeats}", median(walls)))
    out_rows.append(Row("SQLite: sqlite3 shell GROUP BY of the same rows (the limit)", median(limit), loaded,
                        note=f"median of {repeats}"))
    return out_rows


def pipeline(base_url: str, scale: dict) -> dict[str, JobRow]:
    """Every job once on a fresh district of this size (for the growth exponents)."""
    with scratch(base_url, scale["apps"]) as place:
        rows = generate(place.work / "landing", "bench", **scale)
        out_rows = {}
        for job, flags in (("ingest", []), ("dailypull", ["--force"]), ("most_used", []), ("recommendations", [])):
            wall, peak, out = timed([*place.trigger, "--jobs", job, *flags], place.env, place.work)
            out_rows[job] = JobRow(job, "full", in_job(out, job), rows if job == "ingest" else None, peak)
        return out_rows


def memory_check(base_url: str, scale: dict) -> Row:
    """Peak RSS of ingesting a usage file with 5x the students (5x the rows), in a fresh schema."""
    with scratch(base_url, scale["apps"]) as place:
        rows = generate(place.work / "landing", "bench", **{**scale, "students": scale["students"] * 5}, seed=2)
        (place.work / "landing" / "bench" / "assessments.csv").unlink()
        wall, peak, out = timed([*place.trigger, "--jobs", "ingest"], place.env, place.work)
        return Row("ingest, 5x the rows (memory check)", in_job(out, "ingest"), rows, peak, "", wall)


def recommendations_100k(base_url: str) -> Row:
    """recommendations for 100,000 type 1 students (every student assessed) x 40 apps."""
    with scratch(base_url, 40) as place:
        rows = generate(place.work / "landing", "bench", students=100_000, apps=40, days=180, seed=3, use=0.03,
                        assessed_share=1.0, signal=True)
        timed([*place.trigger, "--jobs", "ingest,dailypull,most_used"], place.env, place.work)
        wall, peak, out = timed([*place.trigger, "--jobs", "recommendations"], place.env, place.work)
        gate = re.search(r"(\w+) passed the gate", out)
        return Row("recommendations, 100k type 1 students x 40 apps", in_job(out, "recommendations"), None, peak,
                   f"{rows:,} usage rows; gate: {gate[1] + ' passed' if gate else 'none passed'}", wall)


def _rate(row: Row) -> float | None:
    return row.rows / row.seconds if row.rows and row.seconds == row.seconds and row.seconds > 0 else None


def render(results: list[Row], args, scale: dict, rows: int, jobs: list[JobRow] = (), sizes=()) -> str:
    by: dict[str, Row] = {}
    for r in results:  # the first row of each name (the 5x memory check is also "ingest")
        by.setdefault(r.what.split(" (")[0].split(",")[0], r)
    lines = ["# Benchmark results", "",
             f"Command: `{args.command}` ({rows:,} usage rows, "
             f"{scale['students']:,} students, {scale['apps']} apps, {scale['days']} school days).", "",
             f"Machine: {platform.node()}, {os.cpu_count()} cores, {_memory()}, {platform.platform()}; "
             f"Python {platform.python_version()}, pandas {pd.__version__}, SQLAlchemy {sa.__version__}, "
             f"PostgreSQL {_pg_version()}.", "",
             "Seconds: for our jobs, the job's own time as trigger.py reports it; the whole process "
             "(wall) adds Python's start, about a second of imports that a cycle pays once. For "
             "psql and pandas, the wall time of the command. Ratios use the seconds column.", "",
             "| what | seconds | wall | rows | rows/s | peak RSS (MB) | note |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for r in results:
        rate = _rate(r)
        rows_text = f"{r.rows:,}" if r.rows else ""
        rate_text = f"{rate:,.0f}" if rate else ""
        peak_text = f"{r.peak_mb:,.0f}" if r.peak_mb == r.peak_mb and r.peak_mb else ""
        wall_text = f"{r.wall:.2f}" if r.wall else ""
        lines.append(f"| {r.what} | {r.seconds:.2f} | {wall_text} | {rows_text} | {rate_text} | {peak_text} | {r.note} |")
    ingest, copy, naive = by.get("ingest"), by.get("psql \\copy into a same-shaped table"), by.get("pandas to_sql")
    def state(row: Row) -> str:  # "right after the load", "after VACUUM ANALYZE" or "SQLite"
        return "SQLite" if row.what.startswith("SQLite") else "PostgreSQL, " + row.what.rsplit("; ", 1)[-1].rstrip(")")

    pairs = [(r, next(g for g in results if g.what.startswith("psql GROUP BY") and state(g) == state(r)))
             for r in results if r.what.startswith("dailypull, full rebuild")]
    daily = by.get("dailypull")
    night = by.get("incremental night: ingest + dailypull of one new day")
    five = next((r for r in results if r.what.startswith("ingest, 5x")), None)
    lines += ["", "| ratio | measured | target |", "|---|---:|---:|"]
    if ingest and copy and naive:
        lines.append(f"| ingest rows/s ÷ psql \\copy rows/s (same-shaped table) | {_rate(ingest) / _rate(copy):.2f}× | ≥ 0.85× |")
        lines.append(f"| ingest rows/s ÷ pandas to_sql rows/s (reference; the 20× target is retired) | "
                     f"{_rate(ingest) / _rate(naive):.1f}× | |")
        old_way = by.get("pandas to_sql one row per INSERT")
        if old_way:
            lines.append(f"| ingest rows/s ÷ pandas to_sql rows/s, one row per INSERT (reference) | "
                         f"{_rate(ingest) / _rate(old_way):.1f}× | |")
    sqlite_ours = next((r for r in results if r.what.startswith("SQLite: dailypull")), None)
    sqlite_limit = next((r for r in results if r.what.startswith("SQLite: sqlite3 shell")), None)
    if sqlite_ours and sqlite_limit:
        pairs.append((sqlite_ours, sqlite_limit))
    for ours, limit in pairs:
        lines.append(f"| dailypull full rebuild ÷ the database's own GROUP BY (time), {state(ours)} | "
                     f"{ours.seconds / limit.seconds:.1f}× | ≤ 2× |")
    if daily and night and ingest:
        full = ingest.seconds + daily.seconds
        lines.append(f"| incremental night ÷ full rebuild (ingest + dailypull) | {night.seconds / full:.1%} | |")
    full_of = {row.job: row for row in jobs if row.kind == "full"}
    for row in jobs:
        if row.kind == "night" and row.job in full_of and full_of[row.job].seconds > 0:
            lines.append(f"| {row.job}: a night ÷ its full run on the year ({row.seconds:.2f} s vs "
                         f"{full_of[row.job].seconds:.2f} s) | {row.seconds / full_of[row.job].seconds:.1%} | ≤ 5% |")
    for row in jobs:
        if row.kind == "full" and row.peak_mb == row.peak_mb:
            lines.append(f"| {row.job}: peak RSS, full run | {row.peak_mb:,.0f} MB | < 4,096 MB |")
    if ingest and five and ingest.peak_mb and five.peak_mb:
        lines.append(f"| ingest peak RSS, 5x rows ÷ 1x rows | {five.peak_mb / ingest.peak_mb:.2f}× | ≤ 2× |")
    rec = next((r for r in results if r.what.startswith("recommendations, 100k")), None)
    if rec:
        lines.append(f"| recommendations, 100k type 1 students x 40 apps | {rec.seconds:.0f} s | ≤ 120 s |")
    else:
        lines.append("| recommendations, 100k type 1 students x 40 apps | not run (--recommendations-100k) | ≤ 120 s |")
    if jobs:
        lines += ["", "Each job's own figures (a full run on the year; a night: one new school day, median):", "",
                  "| job | run | seconds | rows | rows/s | peak RSS (MB) | note |", "|---|---|---:|---:|---:|---:|---|"]
        for row in jobs:
            rate = f"{row.rows / row.seconds:,.0f}" if row.rows and row.seconds > 0 else ""
            lines.append(f"| {row.job} | {row.kind} | {row.seconds:.2f} | {f'{row.rows:,}' if row.rows else ''} | "
                         f"{rate} | {row.peak_mb:,.0f} | {row.note} |")
    if len(sizes) > 1:
        sizes = sorted(sizes, key=lambda size: size[0])
        students = np.log([n for n, _ in sizes])
        lines += ["", "Growth: each job's full run by students (seconds / peak RSS MB); the exponent b of "
                      "seconds ∝ students^b, least squares over the sizes:", "",
                  "| job | " + " | ".join(f"{n:,} students" for n, _ in sizes) + " | exponent |",
                  "|---|" + "---:|" * (len(sizes) + 1)]
        for job in ("ingest", "dailypull", "most_used", "recommendations"):
            seconds = [size[job].seconds for _, size in sizes]
            slope = np.polyfit(students, np.log(seconds), 1)[0] if all(v > 0 for v in seconds) else float("nan")
            lines.append(f"| {job} | " + " | ".join(f"{size[job].seconds:.1f} s / {size[job].peak_mb:,.0f}"
                                                     for _, size in sizes) + f" | {slope:.2f} |")
    return "\n".join(lines) + "\n"


def _kept(out: Path) -> str:
    """Sections of `out` that other benches write (bench/small_files.py), kept as they are."""
    text = out.read_text() if out.exists() else ""
    begin, end = "<!-- bench/small_files.py: begin -->", "<!-- bench/small_files.py: end -->"
    if begin not in text or end not in text:
        return ""
    return "\n" + begin + text.split(begin, 1)[1].split(end, 1)[0] + end + "\n"


def _memory() -> str:
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())[1])
        return f"{kb / 1024 / 1024:.0f} GiB"
    except (OSError, TypeError):
        return "memory unknown"


def _pg_version() -> str:
    try:
        return subprocess.run(["psql", "--version"], capture_output=True, text=True).stdout.split()[-1]
    except OSError:
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
