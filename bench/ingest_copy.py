"""Ingest of one large usage file beside `psql \\copy` of the same file, alternated, medians.

    .venv/bin/python bench/ingest_copy.py --rows 5000000            # ~5M rows, 3 rounds
    .venv/bin/python bench/ingest_copy.py --rows 20000000 --rounds 1
    .venv/bin/python bench/ingest_copy.py --repo /tmp/base          # another checkout's trigger.py
    .venv/bin/python bench/ingest_copy.py --rows 5000000 --use 0.04 # --scale large's density (~21 rows a student)

The limit is measured as bench/run.py's step 1 measures it: `psql \\copy` of the file into
`create table copy_limit (like usage including all)` with district_id and file_id defaults.
Each round runs in a fresh PostgreSQL schema (dropped after): `trigger.py --jobs ingest`
under /usr/bin/time -v (the job's own seconds, as trigger.py reports them), then the
`\\copy`. The generated file is kept in `--data` between runs (same rows, same bytes).
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.run import NIGHTS, generate, in_job, median, psql_url, scratch, timed  # noqa: E402

SMALL_USE, LARGE_USE = 0.4, 0.04  # generate()'s share of school days a student uses an app: --scale small, large


def rows_per_student(use: float) -> int:
    """generate(): 2-4 apps (3 on average), each on a `use` share of 180 school days, less the held-out nights,
    rounded up (213 at the small scale's 0.4, 22 at the large scale's 0.04: 21.2 in its year file)."""
    return math.ceil(3 * (180 - NIGHTS) * use)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=5_000_000, help="about this many usage rows")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1],
                   help="the checkout whose trigger.py is measured")
    p.add_argument("--data", type=Path, default=Path("/tmp/ingest_copy_data"),
                   help="where the generated file is kept between runs")
    p.add_argument("--use", type=float, default=SMALL_USE,
                   help=f"share of school days a student uses each app: {SMALL_USE} (bench/run.py's small scale, "
                        f"~213 rows a student) or {LARGE_USE} (its large scale, ~21 rows a student)")
    args = p.parse_args(argv)
    base_url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL") \
        or "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
    students = max(args.rows // rows_per_student(args.use), 1)
    folder = f"{students}" if args.use == SMALL_USE else f"{students}-use{args.use:g}"
    source = args.data / folder / "bench" / "usage_year.csv"
    if not source.exists():
        generate(source.parents[1], "bench", students=students, apps=40, days=180, use=args.use)
    rows = sum(1 for _ in open(source, "rb")) - 1
    print(f"{rows:,} rows ({source.stat().st_size / 1e6:,.0f} MB), {students:,} students (use {args.use:g}); "
          f"repo {args.repo}",
          flush=True)
    ours, limit, peaks = [], [], []
    for round_ in range(1, args.rounds + 1):
        with scratch(base_url, 40) as place:
            (place.work / "landing" / "bench").mkdir(parents=True)
            os.link(source, place.work / "landing" / "bench" / "usage_year.csv")
            trigger = [sys.executable, str(args.repo / "trigger.py"), *place.trigger[2:]]
            _, peak, out = timed([*trigger, "--jobs", "ingest"], place.env, place.work)
            ours.append(in_job(out, "ingest"))
            peaks.append(peak)
            engine = sa.create_engine(place.url)
            with engine.begin() as conn:
                conn.execute(sa.text("create table copy_limit (like usage including all)"))
                conn.execute(sa.text("alter table copy_limit alter district_id set default 'bench', "
                                     "alter file_id set default 1"))
                loaded = conn.execute(sa.text("select count(*) from usage")).scalar_one()
            engine.dispose()
            assert loaded == rows, (loaded, rows)
            started = time.perf_counter()
            subprocess.run(["psql", psql_url(place.url), "-q", "-c", f"set search_path to {place.schema}",
                            "-c", f"\\copy copy_limit (student_id, app, date, minutes) from '{source}' "
                                  "with (format csv, header true)"], check=True)
            limit.append(time.perf_counter() - started)
            shutil.rmtree(place.work / "landing", ignore_errors=True)
        print(f"round {round_}: ingest {ours[-1]:.2f} s ({peaks[-1]:,.0f} MB), \\copy {limit[-1]:.2f} s, "
              f"ratio {limit[-1] / ours[-1]:.3f}", flush=True)
    print(f"median: ingest {median(ours):.2f} s ({rows / median(ours):,.0f} rows/s), \\copy {median(limit):.2f} s "
          f"({rows / median(limit):,.0f} rows/s); ingest rows/s / \\copy rows/s = {median(limit) / median(ours):.3f} "
          f"(per round: {', '.join(f'{l / o:.3f}' for o, l in zip(ours, limit))}); peak RSS {max(peaks):,.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
