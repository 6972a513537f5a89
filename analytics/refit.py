"""When the recommendations job refits its models and when it re-scores the students from the
stored fit (README, "recommendations"): the rule, pure. jobs/recommendations.py reads the
stored fit (recommend_state) and the current assessments, and acts on the answer.

A night (one new school day of usage) changes none of what a fit learns from: every feature
is cut at a student's latest assessment, which came before the night. What a fit does learn
from, the type 1 students and their assessments, is compared with the fit's counts; usage,
rosters and earlier-year averages are not compared, and the age limit bounds how long their
changes wait for the next fit.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import pandas as pd

REFIT_AFTER_DAYS = 7  # a fit this many days older than the as-of day is refitted
REFIT_SHARE = 0.05  # more than this share of the fit's students, or of its assessment rows, changed: refit


@dataclass(frozen=True)
class Fit:
    """What the district's last fit was made from (one recommend_state row)."""
    fitted_as_of: date
    settings: str  # digest of what the fit depends on besides the data (jobs.recommendations)
    students: int  # type 1 students
    assessments: int  # their assessment rows this school year up to fitted_as_of
    file_mark: int  # the highest ingested_files.file_id of the district when the fit read its inputs
    too_small: bool  # the fit found the district too small for the model basis


@dataclass(frozen=True)
class Changes:
    """How the type 1 students and their assessments differ from the fit's."""
    students: int  # type 1 students now
    added: int  # type 1 students now without an assessment row the fit read
    removed: int  # the fit's type 1 students that are not type 1 now
    assessments: int  # their assessment rows now
    assessments_changed: int  # rows the fit did not read: written by a file loaded since, or dated after its day


def before_reading(fit: Fit | None, *, as_of: date, settings: str, force: bool) -> str | None:
    """Why the job must refit, from the stored fit alone (no data read); None: the data decide."""
    if force:
        return "--force"
    if fit is None:
        return "no stored fit for the district"
    if fit.settings != settings:
        return (f"the settings the fit of {fit.fitted_as_of} depends on changed (apps, assessment window, "
                "minimum students, schools or users, or the school year)")
    if as_of < fit.fitted_as_of:
        return f"the as-of day is before the fit's ({fit.fitted_as_of})"
    age = (as_of - fit.fitted_as_of).days
    if age >= REFIT_AFTER_DAYS:
        return f"the fit of {fit.fitted_as_of} is {age} days older than the as-of day (refit at {REFIT_AFTER_DAYS})"
    return None


def changes_since(fit: Fit, student_ids: pd.Index, assessments: pd.DataFrame) -> Changes:
    """Compare the type 1 students and their assessment rows with the fit's: the rule's
    definition (jobs/recommendations.py counts the same in SQL, without reading the rows;
    tests/integration/test_recommend_rescore.py checks that both agree).

    Input `student_ids`: the type 1 students now. `assessments`: student_id, date (a day),
      file_id (the landing file that last wrote the row): the district's rows this school
      year up to the as-of day (rows of other students are ignored).
    A row the fit read has file_id <= fit.file_mark and a date on or before fit.fitted_as_of;
    any other row was added or rewritten since (a rewrite with the same values counts: the
    file was loaded again). A student the fit had keeps such a row unless every row of theirs
    was rewritten, when they count as both added and removed (more changes, never fewer).
    """
    ids = pd.Index(student_ids).astype(str)
    mine = assessments.loc[assessments["student_id"].astype(str).isin(ids)]
    seen = (mine["file_id"].to_numpy() <= fit.file_mark) & (
        pd.to_datetime(mine["date"]).to_numpy() <= pd.Timestamp(fit.fitted_as_of).to_datetime64())
    kept = mine.loc[seen, "student_id"].astype(str).nunique()  # type 1 now, and at the fit
    return Changes(students=len(ids), added=len(ids) - kept, removed=max(fit.students - kept, 0),
                   assessments=len(mine), assessments_changed=int((~seen).sum()))


def after_reading(fit: Fit, changes: Changes, *, too_small: bool) -> str | None:
    """Why the job must refit given what changed since the fit; None: re-score."""
    moved = changes.added + changes.removed
    if moved > REFIT_SHARE * fit.students:
        return (f"{moved:,} of the fit's {fit.students:,} type 1 students added or removed since {fit.fitted_as_of} "
                f"({_share(moved, fit.students)}, over {REFIT_SHARE:.0%})")
    if changes.assessments_changed > REFIT_SHARE * fit.assessments:
        return (f"{changes.assessments_changed:,} of the fit's {fit.assessments:,} assessment rows added or changed "
                f"since {fit.fitted_as_of} ({_share(changes.assessments_changed, fit.assessments)}, "
                f"over {REFIT_SHARE:.0%})")
    if too_small != fit.too_small:
        return ("the district is now " + ("too small" if too_small else "large enough")
                + f" for the model basis (the fit of {fit.fitted_as_of} found it "
                + ("large enough)" if too_small else "too small)"))
    return None


def rescore_reason(fit: Fit, changes: Changes, as_of: date) -> str:
    """The rule's words for a re-score: how old the fit is and how little changed."""
    age = (as_of - fit.fitted_as_of).days
    moved = changes.added + changes.removed
    return (f"{age} {'day' if age == 1 else 'days'} old, under {REFIT_AFTER_DAYS}; {moved:,} of {fit.students:,} "
            f"type 1 students added or removed and {changes.assessments_changed:,} of {fit.assessments:,} "
            f"assessment rows added or changed, within {REFIT_SHARE:.0%}; same settings")


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "all"
