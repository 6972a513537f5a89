"""The benchmark: our jobs side by side with the physical limit and the naive way, in one run.

    .venv/bin/python bench/run.py --scale small      # ~1M usage rows, 40 apps (minutes)
    .venv/bin/python bench/run.py --scale tiny --out /tmp/RESULTS.md   # the CI smoke run

Needs PostgreSQL (BENCH_DATABASE_URL, else TEST_DATABASE_URL, else the local server) and
its `psql` client; DuckDB is optional (bench/requirements.txt). Every job runs as a real
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
from dataclasses import dataclass
from datetime import date, timedelta
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


@dataclass
class Row:
    what: str
    seconds: float
    rows: int | None = None
    peak_mb: float | None = None
    note: str = ""


def generate(folder: Path, district: str, students: int, apps: int, days: int, seed: int = 1) -> int:
    """Sparse school-year usage: each student uses 2-4 apps, on about 2 of 5 school days."""
    rng = np.random.default_rng(seed)
    app_ids = np.array([f"app{i:02d}" for i in range(apps)])
    school_days = pd.bdate_range(date(2026, 8, 17), periods=days)
    per = rng.integers(2, 5, students)
    student = np.repeat(np.arange(students), per)
    app = rng.integers(0, apps, student.size)
    used = rng.random((student.size, days)) < 0.4
    pair, day = np.nonzero(used)
    frame = pd.DataFrame({
        "student_id": np.char.add("s", student[pair].astype(str)),
        "app": app_ids[app[pair]],
        "date": school_days[day].strftime("%Y-%m-%d"),
        "minutes": rng.integers(5, 60, pair.size),
    }).drop_duplicates(["student_id", "app", "date"])
    target = folder / district
    target.mkdir(parents=True, exist_ok=True)
    last_day = school_days[-1].strftime("%Y-%m-%d")
    frame.loc[frame["date"] < last_day].to_csv(target / "usage_year.csv", index=False)
    frame.loc[frame["date"] == last_day].to_csv(folder.parent / "usage_last_day.csv", index=False)
    ids = np.char.add("s", np.arange(students).astype(str))
    assessed = rng.random(students) < 0.5
    pd.DataFrame({"student_id": ids[assessed], "assessment_id": "spring", "date": "2027-04-15",
                  "score": rng.uniform(30, 100, assessed.sum()).round(1)}).to_csv(target / "assessments.csv", index=False)
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


def in_job(stdout: str, job: str) -> str:
    """The job's own seconds from trigger.py's summary (wall time includes Python's start)."""
    seconds = [float(line.split()[3]) for line in stdout.splitlines() if line.startswith(f"{job} ")]
    return f"{sum(seconds):.2f} s inside the job" if seconds else ""


def psql_url(url: str) -> str:
    return sa.engine.make_url(url).set(drivername="postgresql", query={}).render_as_string(hide_password=False)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", choices=SCALES, default="small")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "RESULTS.md")
    args = p.parse_args(argv)
    scale = SCALES[args.scale]
    base_url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL") \
        or "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
    admin = sa.create_engine(base_url)
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with admin.begin() as conn:
        conn.execute(sa.schema.CreateSchema(schema))
    url = f"{base_url}{'&' if '?' in base_url else '?'}options=-csearch_path%3D{schema}"
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    results: list[Row] = []
    try:
        landing = work / "landing"
        rows = generate(landing, "bench", **scale)
        year_file = landing / "bench" / "usage_year.csv"
        year_rows = sum(1 for _ in open(year_file)) - 1
        (work / "districts.yaml").write_text(
            "districts:\n  - id: bench\n    apps: [" + ", ".join(f"app{i:02d}" for i in range(scale["apps"])) + "]\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANALYTICS_")}
        env.update(DATABASE_URL=url)
        trigger = [sys.executable, str(REPO / "trigger.py"), "--as-of", AS_OF.isoformat()]
        print(f"{rows:,} usage rows, {scale['students']:,} students, {scale['apps']} apps, "
              f"{scale['days']} school days; schema {schema}", flush=True)

        # 1. ingest vs psql \copy (the limit) vs pandas to_sql (the naive way)
        seconds, peak, out = timed([*trigger, "--jobs", "ingest"], env, work)
        results.append(Row("ingest (ours, COPY into staging + merge)", seconds, year_rows, peak, in_job(out, "ingest")))
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text("create table copy_limit (student_id text, app text, date date, minutes float)"))
        started = time.perf_counter()
        subprocess.run(["psql", psql_url(url), "-q", "-c", f"set search_path to {schema}",
                        "-c", f"\\copy copy_limit from '{year_file}' with (format csv, header true)"], check=True)
        results.append(Row("psql \\copy (the limit)", time.perf_counter() - started, year_rows))
        sample = pd.read_csv(year_file, nrows=min(year_rows, 100_000))
        started = time.perf_counter()
        sample.to_sql("to_sql_naive", engine, index=False)
        results.append(Row("pandas to_sql (the naive way, first 100k rows)", time.perf_counter() - started, len(sample)))

        # 2. dailypull (full rebuild) vs the database's own GROUP BY, and DuckDB in memory
        seconds, peak, out = timed([*trigger, "--jobs", "dailypull"], env, work)
        results.append(Row("dailypull, full rebuild (ours)", seconds, year_rows, peak, in_job(out, "dailypull")))
        group_by = ("select student_id, app, sum(minutes), count(distinct date) from usage "
                    "where district_id = 'bench' group by student_id, app")
        started = time.perf_counter()
        subprocess.run(["psql", psql_url(url), "-q", "-o", "/dev/null", "-c", f"set search_path to {schema}",
                        "-c", group_by], check=True)
        results.append(Row("psql GROUP BY of the same rows (the limit)", time.perf_counter() - started, year_rows))
        try:
            import duckdb

            started = time.perf_counter()
            duckdb.sql(f"pivot (select student_id, app, sum(minutes) m from read_csv_auto('{year_file}') "
                       "group by 1, 2) on app using sum(m)").fetchall()
            results.append(Row("DuckDB aggregate + pivot in memory (reference)", time.perf_counter() - started, year_rows))
        except ImportError:
            results.append(Row("DuckDB aggregate + pivot in memory (reference)", float("nan"), note="duckdb not installed"))

        # 3. an incremental night: one new day on top of the year
        shutil.copy(work / "usage_last_day.csv", landing / "bench" / "usage_last_day.csv")
        day_rows = sum(1 for _ in open(landing / "bench" / "usage_last_day.csv")) - 1
        seconds, peak, out = timed([*trigger, "--jobs", "ingest,dailypull"], env, work)
        results.append(Row("incremental night: ingest + dailypull of one new day", seconds, day_rows, peak,
                           in_job(out, "ingest") + " + " + in_job(out, "dailypull")))

        # 4. most used and recommendations
        for job in ("most_used", "recommendations"):
            seconds, peak, out = timed([*trigger, "--jobs", job], env, work)
            results.append(Row(job, seconds, None, peak, in_job(out, job)))
        engine.dispose()
    finally:
        with admin.begin() as conn:
            conn.execute(sa.schema.DropSchema(schema, cascade=True))
        admin.dispose()
        shutil.rmtree(work, ignore_errors=True)

    report = render(results, args, scale, rows)
    print(report)
    args.out.write_text(report)
    return 0


def _rate(row: Row) -> float | None:
    return row.rows / row.seconds if row.rows and row.seconds == row.seconds and row.seconds > 0 else None


def render(results: list[Row], args, scale: dict, rows: int) -> str:
    by = {r.what.split(" (")[0].split(",")[0]: r for r in results}
    lines = ["# Benchmark results", "",
             f"Command: `.venv/bin/python bench/run.py --scale {args.scale}` ({rows:,} usage rows, "
             f"{scale['students']:,} students, {scale['apps']} apps, {scale['days']} school days).", "",
             f"Machine: {platform.node()}, {os.cpu_count()} cores, {_memory()}, {platform.platform()}; "
             f"Python {platform.python_version()}, pandas {pd.__version__}, SQLAlchemy {sa.__version__}, "
             f"PostgreSQL {_pg_version()}.", "",
             "| what | seconds | rows | rows/s | peak RSS (MB) | note |", "|---|---:|---:|---:|---:|---|"]
    for r in results:
        rate = _rate(r)
        rows_text = f"{r.rows:,}" if r.rows else ""
        rate_text = f"{rate:,.0f}" if rate else ""
        peak_text = f"{r.peak_mb:,.0f}" if r.peak_mb == r.peak_mb and r.peak_mb else ""
        lines.append(f"| {r.what} | {r.seconds:.2f} | {rows_text} | {rate_text} | {peak_text} | {r.note} |")
    ingest, copy, naive = by.get("ingest"), by.get("psql \\copy"), by.get("pandas to_sql")
    daily, group, night = by.get("dailypull"), by.get("psql GROUP BY of the same rows"), by.get("incremental night: ingest + dailypull of one new day")
    lines += ["", "| ratio | measured | target |", "|---|---:|---:|"]
    if ingest and copy and naive:
        lines.append(f"| ingest rows/s ÷ psql \\copy rows/s | {_rate(ingest) / _rate(copy):.2f}× | ≥ 0.5× |")
        lines.append(f"| ingest rows/s ÷ pandas to_sql rows/s | {_rate(ingest) / _rate(naive):.1f}× | ≥ 20× |")
    if daily and group:
        lines.append(f"| dailypull ÷ psql GROUP BY (time) | {daily.seconds / group.seconds:.1f}× | ≤ 2× |")
    if daily and night and ingest:
        full = ingest.seconds + daily.seconds
        lines.append(f"| incremental night ÷ full rebuild (ingest + dailypull) | {night.seconds / full:.0%} | ≤ 10% |")
    rec = next((r for r in results if r.what == "recommendations"), None)
    if rec:
        lines.append(f"| recommendations | {rec.seconds:.0f} s | ≤ 120 s at 100k type 1 students |")
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
