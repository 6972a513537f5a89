from datetime import date

import pytest

from analytics.school_year import SchoolYear, label_for, school_year_containing


def test_label():
    assert label_for(2025) == "2025-26"
    assert label_for(2099) == "2099-00"


@pytest.mark.parametrize(
    "day, expected",
    [
        (date(2026, 8, 1), SchoolYear(date(2026, 8, 1), date(2027, 7, 31), "2026-27")),  # the start day
        (date(2026, 7, 31), SchoolYear(date(2025, 8, 1), date(2026, 7, 31), "2025-26")),  # the day before
        (date(2026, 11, 22), SchoolYear(date(2026, 8, 1), date(2027, 7, 31), "2026-27")),
        (date(2027, 1, 1), SchoolYear(date(2026, 8, 1), date(2027, 7, 31), "2026-27")),
    ],
)
def test_year_containing_a_day(day, expected):
    assert school_year_containing(day, (8, 1)) == expected


def test_year_starting_in_january_is_the_calendar_year():
    year = school_year_containing(date(2028, 2, 29), (1, 1))
    assert (year.start, year.end, year.label) == (date(2028, 1, 1), date(2028, 12, 31), "2028-29")
