"""School years: which one contains a day, its first and last day, and its label."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta


@dataclass(frozen=True)
class SchoolYear:
    start: date  # first day, inclusive
    end: date  # last day, inclusive: the day before the next year's start
    label: str  # "2025-26"


def label_for(start_year: int) -> str:
    """The label of the school year that starts in `start_year`: 2025 -> "2025-26"."""
    return f"{start_year}-{(start_year + 1) % 100:02d}"


def school_year_containing(day: date, start: tuple[int, int]) -> SchoolYear:
    """The school year that contains `day`, for years starting on (month, day) `start`."""
    month, first = start
    year = day.year if (day.month, day.day) >= (month, first) else day.year - 1
    begins = date(year, month, first)
    ends = date(year + 1, month, first) - timedelta(days=1)
    return SchoolYear(start=begins, end=ends, label=label_for(year))
