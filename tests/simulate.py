"""Simulated districts where the truth is known, for the recommendation tests.

A hidden ability drives both scores and (for some apps) how much a student uses an app;
schools differ in level and, for some apps, in how much they use them. The prior score is
the ability measured with error (reliability about 0.8). Each app's true effect is points
per hour in the 30 days before the assessment; `truth` says which apps matter.

district(...) returns the frames analytics.recommend.recommend reads: students,
assessments, usage; plus the true effects.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import pandas as pd

from analytics.bands import performance_band

AS_OF = date(2026, 11, 22)
ASSESSED = date(2026, 11, 2)  # the latest assessment
EARLIER = date(2026, 9, 25)  # the one before, when prior="assessment"
FIRST = date(2026, 8, 20)  # and the first, before any use
WINDOW = 30
BANDS = {"excellent": 88, "satisfactory": 69, "needs improvement": 55, "unsatisfactory": 0}


@dataclass
class App:
    effect: float = 0.0  # true points per hour in the window
    ability: float = 0.0  # how much stronger students use it (hours per ability sd)
    school_sd: float = 0.0  # how much schools differ in using it (hours)
    high_schools: float = 0.0  # extra hours in the schools whose level is above the median
    base: float = 1.5  # mean hours in the window
    share: float = 0.7  # share of students who use it at all
    saturating: bool = False  # effect * 2 * (1 - exp(-hours / 2)) instead of effect * hours


@dataclass
class Simulated:
    students: pd.DataFrame
    assessments: pd.DataFrame
    usage: pd.DataFrame
    apps: list[str]
    truth: dict[str, float]
    hours: pd.DataFrame = field(repr=False)  # true window hours per student (index) and app


def _population(rng, apps: dict[str, App], n: int, schools: int, school_level_sd: float):
    """Students, their schools, a hidden ability, grades, their true level and each app's
    hours (0 for non-users): the draws every simulated district starts from, in this order."""
    ids = np.array([f"s{i:05d}" for i in range(n)])
    school = rng.integers(0, schools, n)
    level = rng.normal(0, school_level_sd, schools)
    ability = rng.normal(0, 1, n)
    grade = rng.choice(["3", "4", "5"], n)
    true_level = 65 + 9 * ability + level[school]
    hours = {}
    for name, app in apps.items():
        school_use = rng.normal(0, app.school_sd, schools) + app.high_schools * (level > np.median(level))
        h = app.base + app.ability * ability + school_use[school] + rng.normal(0, 0.8, n)
        hours[name] = np.where(rng.random(n) < app.share, np.clip(h, 0.05, None), 0.0)
    return ids, school, level, ability, grade, true_level, hours


def district(seed: int, apps: dict[str, App], *, n: int = 400, schools: int = 10, prior: str = "year",
             usage_after: bool = False, noise: float = 4.0, school_level_sd: float = 4.0) -> Simulated:
    """prior: "year" (an earlier-year average), "assessment" (three assessments this year: the
    one before each is its prior, and the use before each counts), "both" (those and an
    earlier-year average), or "none". usage_after: every use falls
    after the latest assessment (the leaky shape)."""
    rng = np.random.default_rng(seed)
    ids, school, level, ability, grade, true_level, hours = _population(rng, apps, n, schools, school_level_sd)
    names = list(apps)
    hours = pd.DataFrame(hours, index=ids)

    def effect_of(frame: pd.DataFrame) -> np.ndarray:
        total = np.zeros(n)
        for name, app in apps.items():
            h = frame[name].to_numpy()
            total += app.effect * (2 * (1 - np.exp(-h / 2)) if app.saturating else h)
        return total

    habit = pd.DataFrame({name: np.where(hours[name] > 0, hours[name] * rng.uniform(0.5, 1.5, n), 0.0)
                          for name in names}, index=ids)  # hours on each of 4 earlier days / 4
    gain = np.zeros(n) if usage_after else effect_of(hours)
    score = np.clip(true_level + gain + rng.normal(0, noise, n), 0, 100)
    # The earlier assessment (when there is one) reflects the use in the 30 days before it:
    # 3 of the 4 earlier days, 15 minutes per habit hour each.
    before_earlier = 0.0 if (usage_after or prior not in ("assessment", "both")) else effect_of(habit * 0.75)
    prior_score = np.clip(true_level + before_earlier + rng.normal(0, noise, n), 0, 100)

    usage = []
    for name in names:  # window hours on 5 days before the assessment; habit earlier in the year
        h = hours[name].to_numpy()
        for k in range(5):
            day = ASSESSED + timedelta(days=1 + 4 * k) if usage_after else ASSESSED - timedelta(days=1 + 5 * k)
            usage.append(pd.DataFrame({"student_id": ids, "app": name, "date": day, "minutes": h * 12}))
        if not usage_after:
            for k in range(4):  # Oct 1, Sep 21, Sep 11, Sep 1
                day = ASSESSED - timedelta(days=WINDOW + 2 + 10 * k)
                usage.append(pd.DataFrame({"student_id": ids, "app": name, "date": day,
                                           "minutes": habit[name].to_numpy() * 15}))
    usage = pd.concat(usage, ignore_index=True)
    usage = usage.loc[usage["minutes"] > 0].reset_index(drop=True)

    assessments = [pd.DataFrame({"student_id": ids, "date": ASSESSED, "score": score})]
    prior_average = np.full(n, np.nan)
    if prior in ("assessment", "both"):
        assessments.append(pd.DataFrame({"student_id": ids, "date": EARLIER, "score": prior_score}))
        first = np.clip(true_level + rng.normal(0, noise, n), 0, 100)
        assessments.append(pd.DataFrame({"student_id": ids, "date": FIRST, "score": first}))
    if prior == "year":
        prior_average = prior_score
    elif prior == "both":  # last year's average too: a second, independent measure of the student
        prior_average = np.clip(true_level + rng.normal(0, noise, n), 0, 100)
    assessments = pd.concat(assessments, ignore_index=True)
    mean = assessments.groupby("student_id")["score"].mean().reindex(ids)
    students = pd.DataFrame({
        "student_id": ids, "school_id": [f"school{s:02d}" for s in school], "grade": grade, "type": 1,
        "score": mean.to_numpy(), "performance": performance_band(mean, BANDS).to_numpy(),
        "prior_average": prior_average,
    })
    return Simulated(students, assessments, usage, names, {k: a.effect for k, a in apps.items()}, hours)


STEADY = (date(2026, 9, 1), date(2026, 10, 2), ASSESSED)  # three assessments, use before each


def steady(seed: int, apps: dict[str, App], *, n: int = 600, schools: int = 10, noise: float = 4.0,
           school_level_sd: float = 4.0) -> Simulated:
    """A district in its steady state: three assessments this year (STEADY), each with its own
    30 days of use before it (a student's habit times a draw between 0.6 and 1.4), each score
    reflecting the use before it. The earlier assessments are the priors of the later ones:
    the history a time split needs. `hours` holds the window before the latest assessment."""
    rng = np.random.default_rng(seed)
    ids, school, level, ability, grade, true_level, habit = _population(rng, apps, n, schools, school_level_sd)
    usage, assessments, windows = [], [], []
    for day in STEADY:
        hours = pd.DataFrame({name: habit[name] * rng.uniform(0.6, 1.4, n) for name in apps}, index=ids)
        windows.append(hours)
        gain = np.zeros(n)
        for name, app in apps.items():
            h = hours[name].to_numpy()
            gain += app.effect * (2 * (1 - np.exp(-h / 2)) if app.saturating else h)
        score = np.clip(true_level + gain + rng.normal(0, noise, n), 0, 100)
        assessments.append(pd.DataFrame({"student_id": ids, "date": day, "score": score}))
        for name in apps:
            for k in range(5):  # 5 days in the 30 before the assessment
                usage.append(pd.DataFrame({"student_id": ids, "app": name, "date": day - timedelta(days=1 + 6 * k),
                                           "minutes": hours[name].to_numpy() * 12}))
    usage = pd.concat(usage, ignore_index=True)
    usage = usage.loc[usage["minutes"] > 0].reset_index(drop=True)
    assessments = pd.concat(assessments, ignore_index=True)
    mean = assessments.groupby("student_id")["score"].mean().reindex(ids)
    students = pd.DataFrame({
        "student_id": ids, "school_id": [f"school{s:02d}" for s in school], "grade": grade, "type": 1,
        "score": mean.to_numpy(), "performance": performance_band(mean, BANDS).to_numpy(),
        "prior_average": np.nan,
    })
    return Simulated(students, assessments, usage, list(apps), {k: a.effect for k, a in apps.items()}, windows[-1])
