"""`trigger.py --demo`: a realistic landing folder, its districts.yaml, and one cycle on SQLite.

Everything goes under one folder (./demo): landing/, districts.yaml and analytics.db. The
data are generated from a fixed seed relative to the as-of day, so running the demo again
the same day finds every file already loaded.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

import config
from storage import database
from service import report
from analytics.school_year import label_for, school_year_containing
from jobs import JOBS
from runner.cycle import run_cycle

log = logging.getLogger(__name__)

APP_POOL = (
    "dreambox", "lexia", "ixl", "zearn", "khan_academy", "newsela", "prodigy", "raz_kids",
    "brainpop", "typing_club", "seesaw", "duolingo",
)


@dataclass(frozen=True)
class DemoDistrict:
    id: str
    name: str
    students: int
    schools: tuple[str, ...]
    apps: tuple[str, ...]
    bands: dict | None = None


DISTRICTS = (
    DemoDistrict("springfield", "Springfield Unified", 1100,
                 ("evergreen_elem", "lincoln_elem", "maple_elem", "cedar_elem", "oak_middle", "pine_middle",
                  "riverside_k8", "hillside_k8"), APP_POOL[:10],
                 bands={"excellent": 90, "satisfactory": 70, "needs improvement": 60, "unsatisfactory": 0}),
    DemoDistrict("shelbyville", "Shelbyville School District", 600,
                 ("north_elem", "south_elem", "shelby_middle"), APP_POOL[2:10]),
    DemoDistrict("ogdenville", "Ogdenville County Schools", 300, ("ogden_k8",), APP_POOL),
)


def _config_text(districts) -> str:
    lines = [
        "# Written by trigger.py --demo.",
        'school_year_start: "08-01"',
        "schedule:",
        '  daily_at: "02:00"',
        "districts:",
    ]
    for d in districts:
        lines += [f"  - id: {d.id}", f"    name: {d.name}", f"    apps: [{', '.join(d.apps)}]"]
        if d.bands:
            lines.append("    bands: {" + ", ".join(f"{k}: {v}" for k, v in d.bands.items()) + "}")
    return "\n".join(lines) + "\n"


def generate(root: Path, as_of: date, seed: int = 20260801) -> Path:
    """Write root/landing/** and root/districts.yaml; return the districts.yaml path."""
    root.mkdir(parents=True, exist_ok=True)
    landing = root / "landing"
    year = school_year_containing(as_of, (8, 1))
    for number, district in enumerate(DISTRICTS):
        rng = np.random.default_rng(seed + number)
        _district_files(landing / district.id, district, year, as_of, rng)
    path = root / "districts.yaml"
    path.write_text(_config_text(DISTRICTS))
    return path


def _write(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = frame.to_csv(index=False, lineterminator="\n")
    if not path.exists() or path.read_text() != text:  # same bytes: leave the file (and its mtime)
        path.write_text(text)


def _district_files(folder: Path, d: DemoDistrict, year, as_of: date, rng: np.random.Generator) -> None:
    n = d.students
    prefix = d.id[:3].upper()
    ids = np.array([f"{prefix}-{i:05d}" for i in range(1, n + 1)])
    school = rng.choice(d.schools, size=n)
    grade = rng.choice(["K", "1", "2", "3", "4", "5", "6", "7", "8"], size=n)
    ability = np.clip(rng.normal(70, 16, size=n), 5, 99)
    engagement = rng.beta(2, 3, size=n)

    # Usage: each student uses 2 to 4 apps, mostly on school days.
    popularity = rng.dirichlet(np.ones(len(d.apps)) * 1.5)
    per_student = rng.integers(2, 5, size=n)
    pairs = pd.DataFrame({
        "student": np.repeat(np.arange(n), per_student),
    })
    pairs["app"] = [
        d.apps[i] for k in per_student for i in rng.choice(len(d.apps), size=k, replace=False, p=popularity)
    ]
    first_day = min(year.start + timedelta(days=14), as_of)  # school starts two weeks in
    days = pd.date_range(first_day, as_of, freq="D")
    weekday = days.dayofweek < 5
    p_day = np.where(weekday, 0.55, 0.06)[None, :] * (0.3 + engagement[pairs["student"].to_numpy()])[:, None]
    used = rng.random((len(pairs), len(days))) < p_day
    pair_index, day_index = np.nonzero(used)
    usage = pd.DataFrame({
        "student_id": ids[pairs["student"].to_numpy()[pair_index]],
        "app": pairs["app"].to_numpy()[pair_index],
        "date": days[day_index].strftime("%Y-%m-%d"),
        "minutes": np.round(rng.lognormal(3.0, 0.5, size=len(pair_index)), 1).clip(1, 180),
        "sessions": rng.integers(1, 4, size=len(pair_index)),
    })
    usage["school"] = school[pairs["student"].to_numpy()[pair_index]]
    usage["month"] = days[day_index].strftime("%Y-%m")

    # Each hour in the first app in the 30 days before an assessment goes with 5 points more
    # on it: something for the recommendations to find (use after the assessment does nothing).
    first = usage.loc[usage["app"] == d.apps[0]]
    first_day_of_use = pd.to_datetime(first["date"])

    def bonus_on(day: date) -> np.ndarray:
        before = (first_day_of_use < pd.Timestamp(day)) & (first_day_of_use >= pd.Timestamp(day - timedelta(days=30)))
        hours = first.loc[before].groupby("student_id")["minutes"].sum() / 60
        return 5.0 * pd.Series(ids).map(hours).fillna(0).to_numpy()

    # Who has what: assessments (type 1), forecasts (2), this year's average (3), older (4).
    draw = rng.random(n)
    has_assessment = draw < 0.45
    has_forecast = (draw >= 0.45) & (draw < 0.65)
    has_year_average = (draw >= 0.65) & (draw < 0.80)
    has_older_average = (draw >= 0.80) & (draw < 0.97)  # the last 3%: nothing at all

    assessments = []
    for k in range(3):
        take = has_assessment & (rng.random(n) < (1.0 if k == 0 else 0.6))
        day = first_day + timedelta(days=int(20 + 25 * k))
        if day > as_of:
            continue
        bonus = bonus_on(day)
        assessments.append(pd.DataFrame({
            "student_id": ids[take], "assessment_id": f"{year.label}-unit{k + 1}",
            "date": day.isoformat(),
            "score": np.clip(ability[take] + bonus[take] + rng.normal(0, 6, take.sum()), 0, 100).round(1),
        }))
    older_assessments = pd.DataFrame({  # last year's: present in the data, never type 1
        "student_id": ids[has_older_average], "assessment_id": f"{label_for(year.start.year - 1)}-final",
        "date": (year.start - timedelta(days=60)).isoformat(),
        "score": np.clip(ability[has_older_average] + rng.normal(0, 6, has_older_average.sum()), 0, 100).round(1),
    })
    forecasts = pd.concat([
        pd.DataFrame({
            "student_id": ids[has_forecast],
            "date": (first_day + timedelta(days=30 * k)).isoformat(),
            "score": np.clip(ability[has_forecast] + rng.normal(0, 4, has_forecast.sum()), 0, 100).round(1),
        })
        for k in range(2) if first_day + timedelta(days=30 * k) <= as_of
    ])
    # Last years' averages: everyone of type 4, and most other students too.
    had_last_year = has_older_average | ((rng.random(n) < 0.8) & (draw < 0.80))
    averages = pd.concat([
        pd.DataFrame({
            "student_id": ids[has_year_average], "school_year": year.label, "as_of": as_of.isoformat(),
            "score": np.clip(ability[has_year_average] + rng.normal(0, 3, has_year_average.sum()), 0, 100).round(1),
        }),
        *(
            pd.DataFrame({
                "student_id": ids[had_last_year],
                "school_year": label_for(year.start.year - back),
                "as_of": date(year.start.year - back + 1, 6, 15).isoformat(),
                "score": np.clip(ability[had_last_year] + rng.normal(0, 5, had_last_year.sum()), 0, 100).round(1),
            })
            for back in (1, 2)
        ),
    ])
    roster = pd.DataFrame({"student_id": ids, "school_id": school, "grade": grade})

    # A handful of bad rows, as real syncs deliver them, and usage of an unlisted app.
    bad_usage = pd.DataFrame({
        "student_id": [ids[0], ids[1], "", ids[3], ids[4]],
        "app": [d.apps[0], d.apps[1], d.apps[0], "Lexia Core", "minecraft_edu"],
        "date": [first_day.isoformat(), "2026-02-30", first_day.isoformat(), first_day.isoformat(), first_day.isoformat()],
        "minutes": [-5, 30, 20, 15, 25],
        "sessions": [1, 1, 1, 1, 1],
    })
    bad_scores = pd.DataFrame({
        "student_id": [ids[5], ids[6]], "assessment_id": ["retake", "retake"],
        "date": [first_day.isoformat()] * 2, "score": ["105", "n/a"],
    })

    columns = ["student_id", "app", "date", "minutes", "sessions"]
    for (school_name, month), part in usage.groupby(["school", "month"], sort=True):
        _write(part[columns], folder / school_name / "usage" / f"usage_{month}.csv")
    _write(bad_usage, folder / d.schools[0] / "usage" / "usage_late_sync.csv")
    _write(pd.concat([*assessments, bad_scores]), folder / "district" / f"assessments_{year.label}.csv")
    _write(older_assessments, folder / "district" / f"assessments_{label_for(year.start.year - 1)}.csv")
    _write(forecasts, folder / "district" / f"forecasts_{year.label}.csv")
    _write(averages, folder / "district" / "score_averages.csv")
    _write(roster, folder / "district" / "students.csv")
    _write(roster, folder / "district" / "resent" / "students_copy.csv")  # the same bytes, re-sent


def main(root: Path, *, as_of: date) -> int:
    settings_path = generate(root, as_of)
    settings = config.load(settings_path)
    engine = database.connect(f"sqlite:///{root / 'analytics.db'}")
    cycle = run_cycle(
        engine, settings, districts=list(settings.districts), jobs=list(JOBS), as_of=as_of,
        landing_dir=root / "landing",
    )
    print(report.cycle_summary(cycle))
    print()
    for district in settings.districts:
        print(report.district_report(engine, district))
        print()
    print(f"Demo data: {root / 'landing'}; configuration: {settings_path}; database: {root / 'analytics.db'}")
    print(f"Dashboard: DATABASE_URL=sqlite:///{root / 'analytics.db'} DISTRICTS_FILE={settings_path} "
          f"python trigger.py --web --as-of {as_of}, then open http://127.0.0.1:8080/")
    return 1 if cycle.failed else 0
