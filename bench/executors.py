"""The executors' bench: one cycle over many small districts, run here (1 worker), on a local
process pool and on a Dask LocalCluster of 1, 2 and 4 workers; wall time and speed-up.

    .venv/bin/python bench/executors.py                        # 12 districts of 400 students
    .venv/bin/python bench/executors.py --districts 16 --students 300 --workers 1,2,4

Needs PostgreSQL (BENCH_DATABASE_URL, else TEST_DATABASE_URL, else the local server) and the
Dask extra (requirements-dask.txt). Each run gets a fresh schema and the same landing folder.
The pool's start (spawning its processes) is inside the time, as it is in every cycle; the
LocalCluster is started before the clock, as a cluster outlives its cycles. One of its workers
offers `heavy`, as the README advises (recommendations run one at a time anyway: the fleet lock).
Every run has one OpenMP/BLAS thread per process (OMP_NUM_THREADS=1 unless set), as Dask's
workers and the pool's processes have.
"""
from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from datetime import date, datetime, timezone
from pathlib import Path
from urllib.parse import quote

import numpy as np
import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")  # as in the pool's processes and Dask's workers, for a fair baseline

import config  # noqa: E402
from storage import database  # noqa: E402
from lifecycle import demo  # noqa: E402
from analytics.school_year import school_year_containing  # noqa: E402
from jobs import JOBS  # noqa: E402
from runner.cycle import run_cycle  # noqa: E402
from runner.executors import Executor  # noqa: E402

AS_OF = date(2026, 11, 22)
NOW = datetime(2026, 11, 22, 2, tzinfo=timezone.utc)


def generate(landing: Path, districts: int, students: int) -> config.Settings:
    """`districts` districts like the demo's (8 apps, 3 schools), each of `students` students."""
    year = school_year_containing(AS_OF, (8, 1))
    ids = [f"d{i:03d}" for i in range(districts)]
    for number, district_id in enumerate(ids):
        spec = demo.DemoDistrict(district_id, district_id, students, ("north", "south", "east"), demo.APP_POOL[:8])
        demo._district_files(landing / district_id, spec, year, AS_OF, np.random.default_rng(1000 + number))
    return config.parse({"districts": [{"id": d, "apps": list(demo.APP_POOL[:8])} for d in ids]})


def one_cycle(url: str, settings: config.Settings, landing: Path, executor: Executor | None) -> tuple[float, dict]:
    """(wall seconds, seconds per job summed over the districts) of one cycle on a fresh database."""
    engine = database.connect(url)
    started = time.perf_counter()
    cycle = run_cycle(engine, settings, districts=list(settings.districts), jobs=list(JOBS), as_of=AS_OF,
                      landing_dir=landing, now=NOW, executor=executor)
    wall = time.perf_counter() - started
    engine.dispose()
    bad = [(r.job, r.district_id, r.result.status) for r in cycle.records if r.result.status == "failed"]
    if bad:
        raise RuntimeError(f"failed jobs: {bad}")
    per_job = {job: sum(r.seconds for r in cycle.records if r.job == job) for job in JOBS}
    return wall, per_job


@contextmanager
def cluster(workers: int):
    """A LocalCluster of `workers` one-thread workers, one of which offers `heavy` (README)."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=workers - 1, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR) as local:
        spec = local.new_spec
        local.worker_spec["heavy"] = {**spec, "options": {**spec["options"], "resources": {"heavy": 1}}}
        local.scale(len(local.worker_spec))
        with Client(local) as client:
            client.wait_for_workers(workers, timeout=120)
        yield local.scheduler_address


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--districts", type=int, default=12)
    p.add_argument("--students", type=int, default=400)
    p.add_argument("--workers", default="1,2,4", help="worker counts to try, e.g. 1,2,4")
    p.add_argument("--out", type=Path, help="also write the table (Markdown) to this file")
    args = p.parse_args(argv)
    counts = [int(n) for n in args.workers.split(",")]
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    base = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL") \
        or "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
    admin = sa.create_engine(base)
    schemas: list[str] = []

    def fresh_url() -> str:
        schema = f"bench_exec_{uuid.uuid4().hex[:8]}"
        with admin.begin() as conn:
            conn.execute(sa.schema.CreateSchema(schema))
        schemas.append(schema)
        return f"{base}{'&' if '?' in base else '?'}options={quote(f'-csearch_path={schema}')}"

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        landing = Path(tmp) / "landing"
        settings = generate(landing, args.districts, args.students)
        try:
            serial, per_job = one_cycle(fresh_url(), settings, landing, None)
            rows.append(("here, one district after another", 1, serial, per_job))
            print(f"serial: {serial:.1f} s", flush=True)
            for n in [n for n in counts if n > 1]:
                wall, per_job = one_cycle(fresh_url(), settings, landing, Executor("local", workers=n))
                rows.append(("process pool (--workers)", n, wall, per_job))
                print(f"pool {n}: {wall:.1f} s", flush=True)
            for n in counts:
                with cluster(n) as address:
                    wall, per_job = one_cycle(fresh_url(), settings, landing, Executor("dask", scheduler=address))
                rows.append(("Dask LocalCluster (--executor dask)", n, wall, per_job))
                print(f"dask {n}: {wall:.1f} s", flush=True)
        finally:
            with admin.begin() as conn:
                for schema in schemas:
                    conn.execute(sa.schema.DropSchema(schema, cascade=True))
            admin.dispose()

    lines = [
        f"{args.districts} districts x {args.students} students (demo generator, 8 apps), one full cycle, "
        f"PostgreSQL; {os.cpu_count()} cores, Python {platform.python_version()}.",
        f"Command: `.venv/bin/python bench/executors.py --districts {args.districts} --students {args.students} "
        f"--workers {args.workers}`",
        "",
        "| executor | workers | wall s | speed-up | job seconds: ingest / dailypull / most_used / recommendations |",
        "|---|---|---|---|---|",
    ]
    for what, n, wall, per_job in rows:
        jobs = " / ".join(f"{per_job[j]:.1f}" for j in JOBS)
        lines.append(f"| {what} | {n} | {wall:.1f} | {serial / wall:.2f}× | {jobs} |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
