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
    "large": dict(students=25_000, apps=40, days=180),
}
AS_OF = date(2027, 6, 1)
NIGHTS = 3  # school days held out of the year, each then loaded as one night


@dataclass
class Row:
    what: str
    seconds: float  # ours: the job's own seconds; the limits: the psql process's wall time
    rows: int | None = None
    peak_mb: float | None = None
    note: str = ""
    wall: float | None = None  # ours: the whole trigger.py process


def generate(folder: Path, district: str, students: int, apps: int, days: int, seed: int = 1,
             use: float = 0.4, assessed_share: float = 0.5, signal: bool = False) -> int:
    """Sparse school-year usage: each student uses 2-4 apps, each on a `use` share of school
    days (2 of 5 by default); an `assessed_share` of students has a spring assessment,
    random, or with `signal` rising with the student's minutes (so a model passes the gate
    and recommendations take their costlier, model-based path)."""
    rng = np.random.default_rng(seed)
    app_ids = np.array([f"app{i:02d}" for i in range(apps)])
    school_days = pd.bdate_range(date(2026, 8, 17), periods=days)
    per = rng.integers(2, 5, students)
    student = np.repeat(np.arange(students), per)
    app = rng.integers(0, apps, student.size)
    used = rng.random((student.size, days)) < use
    pair, day = np.nonzero(used)
    frame = pd.DataFrame({
        "student_id": np.char.add("s", student[pair].astype(str)),
        "app": app_ids[app[pair]],
        "date": school_days[day].strftime("%Y-%m-%d"),
        "minutes": rng.integers(5, 60, pair.size),
    }).drop_duplicates(["student_id", "app", "date"])
    target = folder / district
    target.mkdir(parents=True, exist_ok=True)
    held_out = [d.strftime("%Y-%m-%d") for d in school_days[-NIGHTS:]]  # one file a night, for the nights
    frame.loc[frame["date"] < held_out[0]].to_csv(target / "usage_year.csv", index=False)
    for night, day in enumerate(held_out, start=1):
        frame.loc[frame["date"] == day].to_csv(folder.parent / f"usage_night_{night}.csv", index=False)
    ids = np.char.add("s", np.arange(students).astype(str))
    assessed = rng.random(students) < assessed_share
    score = rng.uniform(30, 100, students)
    if signal:
        minutes = frame.groupby("student_id")["minutes"].sum().reindex(ids).fillna(0).to_numpy()
        score = np.clip(40 + 40 * minutes / max(minutes.max(), 1) + rng.normal(0, 5, students), 0, 100)
        # 100 schools: the model basis needs schools (clustered intervals, folds by school)
        pd.DataFrame({"student_id": ids, "school_id": np.char.add("school", (np.arange(students) % 100).astype(str)),
                      "grade": "5"}).to_csv(target / "students.csv", index=False)
    pd.DataFrame({"student_id": ids[assessed], "assessment_id": "spring", "date": "2027-04-15",
                  "score": score[assessed].round(1)}).to_csv(target / "assessments.csv", index=False)
    (REPO / "bench").mkdir(exist_ok=True)
    return len(frame)


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
    args = p.parse_args(argv)
    shown = [a for a in (sys.argv[1:] if argv is None else argv)]
    if "--out" in shown:  # where the table went is not part of what was measured
        del shown[shown.index("--out"):shown.index("--out") + 2]
    args.command = " ".join([".venv/bin/python bench/run.py", *shown])
    scale = {**SCALES[args.scale], **{k: getattr(args, k) for k in ("students", "apps", "days") if getattr(args, k)}}
    base_url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL") \
        or "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
    results: list[Row] = []
    with scratch(base_url, scale["apps"]) as place:
        work, url, schema, env, trigger = place.work, place.url, place.schema, place.env, place.trigger
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
        # medians of 3: right after the load, as a cycle runs it, and after VACUUM ANALYZE, as the
        # table stands once autovacuum has been by (the next night's state).
        group_by = ("select student_id, app, sum(minutes), count(distinct date) from usage "
                    "where district_id = 'bench' group by student_id, app")
        for state in ("right after the load", "after VACUUM ANALYZE"):
            if state.startswith("after"):
                subprocess.run(["psql", psql_url(url), "-q", "-c", f"set search_path to {schema}",
                                "-c", "vacuum analyze"], check=True)
            ours, walls, peaks, limit = [], [], [], []
            for _ in range(3):
                started = time.perf_counter()
                subprocess.run(["psql", psql_url(url), "-q", "-o", "/dev/null", "-c", f"set search_path to {schema}",
                                "-c", group_by], check=True)
                limit.append(time.perf_counter() - started)
                wall, peak, out = timed([*trigger, "--jobs", "dailypull", "--force"], env, work)
                ours.append(in_job(out, "dailypull"))
                walls.append(wall)
                peaks.append(peak)
            results.append(Row(f"dailypull, full rebuild from usage (ours, --force; {state})", median(ours),
                               year_rows, max(peaks), "median of 3", median(walls)))
            results.append(Row(f"psql GROUP BY of the same rows (the limit; {state})", median(limit), year_rows,
                               note="median of 3"))
        try:
            import duckdb

            started = time.perf_counter()
            duckdb.sql(f"pivot (select student_id, app, sum(minutes) m from read_csv_auto('{year_file}') "
                       "group by 1, 2) on app using sum(m)").fetchall()
            results.append(Row("DuckDB aggregate + pivot in memory (reference)", time.perf_counter() - started, year_rows))
        except ImportError:
            results.append(Row("DuckDB aggregate + pivot in memory (reference)", float("nan"), note="duckdb not installed"))

        # 3. incremental nights: one new day each on top of the year; the median of NIGHTS nights
        nights, walls, peaks, day_rows, parts = [], [], [], [], []
        for night in range(1, NIGHTS + 1):
            name = f"usage_night_{night}.csv"
            shutil.copy(work / name, landing / "bench" / name)
            day_rows.append(sum(1 for _ in open(landing / "bench" / name)) - 1)
            wall, peak, out = timed([*trigger, "--jobs", "ingest,dailypull"], env, work)
            nights.append(in_job(out, "ingest") + in_job(out, "dailypull"))
            parts.append(f"{in_job(out, 'ingest'):.2f} + {in_job(out, 'dailypull'):.2f}")
            walls.append(wall)
            peaks.append(peak)
        results.append(Row("incremental night: ingest + dailypull of one new day", median(nights),
                           int(median(day_rows)), max(peaks),
                           f"median of {NIGHTS} nights (ingest + dailypull from the rollups: {'; '.join(parts)} s)",
                           median(walls)))

        # 4. most used and recommendations
        for job in ("most_used", "recommendations"):
            wall, peak, out = timed([*trigger, "--jobs", job], env, work)
            results.append(Row(job, in_job(out, job), None, peak, "", wall))
        engine.dispose()

        # 5. SQLite, the embedded default: the same landing folder, and dailypull's full rebuild
        # against the sqlite3 shell's own GROUP BY of the same rows (alternated, medians of 3)
        sqlite_db = work / "bench.db"
        sqlite_env = {**env, "DATABASE_URL": f"sqlite:///{sqlite_db}"}
        wall, peak, out = timed([*trigger, "--jobs", "ingest"], sqlite_env, work)
        loaded = int(subprocess.run(["sqlite3", str(sqlite_db), "select count(*) from usage"], check=True,
                                    capture_output=True, text=True).stdout)
        results.append(Row("SQLite: ingest (ours)", in_job(out, "ingest"), loaded, peak,
                           "Arrow CSV reader, staging + merge (SQLite has no COPY)", wall))
        ours, walls, peaks, limit = [], [], [], []
        for _ in range(3):
            started = time.perf_counter()
            subprocess.run(["sqlite3", str(sqlite_db), group_by], check=True, stdout=subprocess.DEVNULL)
            limit.append(time.perf_counter() - started)
            wall, peak, out = timed([*trigger, "--jobs", "dailypull", "--force"], sqlite_env, work)
            ours.append(in_job(out, "dailypull"))
            walls.append(wall)
            peaks.append(peak)
        results.append(Row("SQLite: dailypull, full rebuild from usage (ours, --force)", median(ours), loaded,
                           max(peaks), "median of 3", median(walls)))
        results.append(Row("SQLite: sqlite3 shell GROUP BY of the same rows (the limit)", median(limit), loaded,
                           note="median of 3"))

    results.append(memory_check(base_url, scale))
    if args.recommendations_100k:
        results.append(recommendations_100k(base_url))
    report = render(results, args, scale, rows)
    print(report)
    args.out.write_text(report)
    return 0


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


def render(results: list[Row], args, scale: dict, rows: int) -> str:
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
        lines.append(f"| ingest rows/s ÷ psql \\copy rows/s (same-shaped table) | {_rate(ingest) / _rate(copy):.2f}× | ≥ 0.5× |")
        lines.append(f"| ingest rows/s ÷ pandas to_sql rows/s | {_rate(ingest) / _rate(naive):.1f}× | ≥ 20× |")
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
        lines.append(f"| incremental night ÷ full rebuild (ingest + dailypull) | {night.seconds / full:.1%} | ≤ 10% |")
    if ingest and five and ingest.peak_mb and five.peak_mb:
        lines.append(f"| ingest peak RSS, 5x rows ÷ 1x rows | {five.peak_mb / ingest.peak_mb:.2f}× | ≤ 2× |")
    rec = next((r for r in results if r.what.startswith("recommendations, 100k")), None)
    if rec:
        lines.append(f"| recommendations, 100k type 1 students x 40 apps | {rec.seconds:.0f} s | ≤ 120 s |")
    else:
        lines.append("| recommendations, 100k type 1 students x 40 apps | not run (--recommendations-100k) | ≤ 120 s |")
    return "\n".join(lines) + "\n"


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
