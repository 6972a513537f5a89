"""recommendations at district scale: N type 1 students (all assessed, with signal so a model
passes the gate) x 40 apps in one district, timed as a real `trigger.py --jobs
recommendations` process under /usr/bin/time -v (seconds, peak RSS).

    .venv/bin/python bench/recommend_scale.py --students 100000
    .venv/bin/python bench/recommend_scale.py --students 1000000 --night   # and a night after it

The data is bench/run.py's recommendations_100k shape (each student uses 2-4 of the apps, each
on a `--use` share of 180 school days; one spring assessment rising with the student's
minutes; 100 schools), written in chunks of students so 1M students never hold students x
days randoms at once. The prerequisites (ingest, dailypull, most_used) run first as
`trigger.py` too. With --night the last school day is held out and the first run's as-of day
is the day before it; the night loads that day (ingest, dailypull, most_used) and runs
recommendations for it, the as-of day one day later, as a real night is: the cost of a night
that re-scores (README, "recommendations"; its message says which rule decided and how many
students were re-scored). PostgreSQL from BENCH_DATABASE_URL, else
TEST_DATABASE_URL, in a fresh schema dropped afterwards. --repo times another checkout's
trigger.py on the same data (a before/after comparison).
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.run import in_job, scratch, timed  # noqa: E402

CHUNK = 50_000  # students generated at a time


def school_days(days: int = 180) -> pd.DatetimeIndex:
    return pd.bdate_range(date(2026, 8, 17), periods=days)


def generate(folder: Path, students: int, apps: int = 40, days: int = 180, use: float = 0.03, seed: int = 3,
             hold_out_last_day: bool = False) -> int:
    """Usage, students and assessments CSVs for district `bench` under folder/bench; returns
    the usage rows written (the held-out day, if any, goes to folder/usage_night.csv)."""
    rng = np.random.default_rng(seed)
    app_ids = np.array([f"app{i:02d}" for i in range(apps)])
    day_text = np.asarray(school_days(days).strftime("%Y-%m-%d"))
    target = folder / "bench"
    target.mkdir(parents=True, exist_ok=True)
    files = {name: target / f"{name}.csv" for name in ("usage_year", "students", "assessments")}
    night = folder / "usage_night.csv"
    rows = 0
    for first in range(0, students, CHUNK):
        ids = np.char.add("s", np.arange(first, min(first + CHUNK, students)).astype(str))
        per = rng.integers(2, 5, ids.size)
        student = np.repeat(np.arange(ids.size), per)
        app = rng.integers(0, apps, student.size)
        used = rng.random((student.size, days), dtype=np.float32) < use
        pair, day = np.nonzero(used)
        usage = pd.DataFrame({"student_id": ids[student[pair]], "app": app_ids[app[pair]], "date": day_text[day],
                              "minutes": rng.integers(5, 60, pair.size)}).drop_duplicates(["student_id", "app", "date"])
        minutes = usage.groupby("student_id")["minutes"].sum().reindex(ids).fillna(0).to_numpy()
        # ~ bench/run.py's signal: 40 + 40 x minutes / the district's most minutes (here a fixed scale)
        score = np.clip(40 + 40 * np.minimum(minutes / 600, 1) + rng.normal(0, 5, ids.size), 0, 100)
        header = first == 0
        last = usage["date"] == day_text[-1]
        if hold_out_last_day:
            usage.loc[last].to_csv(night, index=False, header=header, mode="w" if header else "a")
            usage = usage.loc[~last]
        usage.to_csv(files["usage_year"], index=False, header=header, mode="w" if header else "a")
        pd.DataFrame({"student_id": ids, "school_id": np.char.add("school", (np.arange(first, first + ids.size) % 100)
                                                                   .astype(str)), "grade": "5"}) \
            .to_csv(files["students"], index=False, header=header, mode="w" if header else "a")
        pd.DataFrame({"student_id": ids, "assessment_id": "spring", "date": "2027-04-15", "score": score.round(1)}) \
            .to_csv(files["assessments"], index=False, header=header, mode="w" if header else "a")
        rows += len(usage)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--students", type=int, default=100_000)
    p.add_argument("--apps", type=int, default=40)
    p.add_argument("--use", type=float, default=0.03, help="share of school days a student uses each of their apps")
    p.add_argument("--night", action="store_true", help="then load one more school day and run recommendations again")
    p.add_argument("--repo", type=Path, help="time this checkout's trigger.py instead (same data)")
    args = p.parse_args(argv)
    base_url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL") \
        or "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
    with scratch(base_url, args.apps) as place:
        trigger = list(place.trigger)
        if args.repo:
            trigger[1] = str(args.repo.resolve() / "trigger.py")
        landing = place.work / "landing"
        started = time.perf_counter()
        rows = generate(landing, args.students, args.apps, use=args.use, hold_out_last_day=args.night)
        print(f"generated {rows:,} usage rows for {args.students:,} students in {time.perf_counter() - started:.0f} s",
              flush=True)
        if args.night:  # the year up to the day before the held-out one; the night is that day's
            before, last = (day.date().isoformat() for day in school_days()[-2:])
            trigger[trigger.index("--as-of") + 1] = before
        wall, peak, out = timed([*trigger, "--jobs", "ingest,dailypull,most_used"], place.env, place.work)
        print(f"prerequisites (ingest, dailypull, most_used): {wall:.0f} s, peak RSS {peak:,.0f} MB", flush=True)
        runs = [("full run", [])]
        if args.night:
            runs.append(("night (one new school day)", ["night"]))
        for what, steps in runs:
            if steps:
                (landing / "bench" / "usage_night.csv").write_bytes((landing / "usage_night.csv").read_bytes())
                trigger[trigger.index("--as-of") + 1] = last
                wall, peak, _ = timed([*trigger, "--jobs", "ingest,dailypull,most_used"], place.env, place.work)
                print(f"  the night's ingest, dailypull, most_used: {wall:.0f} s, peak RSS {peak:,.0f} MB", flush=True)
            wall, peak, out = timed([*trigger, "--jobs", "recommendations"], place.env, place.work)
            line = next((ln for ln in out.splitlines() if ln.startswith("recommendations ")), "")
            said = next((ln.strip() for ln in out.splitlines() if ln.startswith("  recommendations ")), "")
            gate = re.search(r"(\w+) passed the gate", out)
            print(f"recommendations, {what}: job {in_job(out, 'recommendations'):.1f} s, process {wall:.1f} s, "
                  f"peak RSS {peak:,.0f} MB; gate: {gate[1] + ' passed' if gate else 'none passed'}\n  {line}\n  {said}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
