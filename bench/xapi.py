"""Ingest of one large xAPI export: seconds, statements a second and peak memory.

Writes N synthetic statements (a JSON array, 50 statements a student over 60 school days,
three apps, one in five with a stated duration) into a scratch landing folder and runs
`trigger.py --jobs ingest` on it as a subprocess, on DATABASE_URL (default: an SQLite file
in the scratch folder). Run:

    .venv/bin/python bench/xapi.py 1000000 [--database-url postgresql://...]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APPS = ["https://www.dreambox.com/l/", "https://www.ixl.com/m/", "https://www.lexialearning.com/c/"]


def write(path: Path, n: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    start = datetime(2026, 9, 1, 14, tzinfo=timezone.utc)
    students = max(1, n // 50)
    with path.open("w") as out:
        out.write("[\n")
        for i in range(n):
            when = start + timedelta(days=rng.randrange(60), minutes=rng.randrange(300))
            statement = {"id": str(uuid.UUID(int=rng.getrandbits(128))),
                         "actor": {"account": {"homePage": "https://lms.example.org", "name": f"s{rng.randrange(students)}"}},
                         "verb": {"id": "http://adlnet.gov/expapi/verbs/experienced"},
                         "object": {"id": rng.choice(APPS) + str(rng.randrange(40))}, "timestamp": when.isoformat()}
            if i % 5 == 0:
                statement["result"] = {"duration": f"PT{rng.randrange(1, 20)}M"}
            out.write(("," if i else "") + json.dumps(statement) + "\n")
        out.write("]\n")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("statements", type=int)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        (folder / "landing/bench").mkdir(parents=True)
        (folder / "districts.yaml").write_text("districts:\n  - id: bench\n    apps: [dreambox, lexia, ixl]\n")
        data = folder / "landing/bench/xapi-bench.json"
        write(data, args.statements)
        env = {**os.environ, "DISTRICTS_FILE": str(folder / "districts.yaml"), "LANDING_DIR": str(folder / "landing"),
               "DATABASE_URL": args.database_url or f"sqlite:///{folder / 'bench.db'}"}
        clock = time.perf_counter()
        done = subprocess.run([sys.executable, str(ROOT / "trigger.py"), "--jobs", "ingest", "--as-of", "2026-11-20"],
                              env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - clock
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        if done.returncode not in (0,):
            print(done.stdout[-2000:], done.stderr[-2000:])
            return done.returncode
        line = next(l for l in done.stdout.splitlines() if l.startswith("ingest "))
        print(f"{args.statements:,} statements ({data.stat().st_size / 1e6:.0f} MB) on "
              f"{env['DATABASE_URL'].split(':')[0]}: {seconds:.1f} s, {args.statements / seconds:,.0f} statements/s, "
              f"peak RSS {peak:,.0f} MB\n  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
