"""Invariants for any input (hypothesis): bands, type codes, and row validation."""
from datetime import date

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics.bands import BAND_ORDER, performance_band
from analytics.landing_rows import KINDS, validate
from analytics.school_year import school_year_containing
from analytics.student_types import student_types

bounds = st.lists(st.integers(1, 99), min_size=3, max_size=3, unique=True).map(
    lambda xs: dict(zip(BAND_ORDER, [*sorted(xs, reverse=True), 0]))
)
scores = st.floats(allow_nan=True, allow_infinity=True, width=64)


@settings(derandomize=True)
@given(st.lists(scores, max_size=50), bounds)
def test_bands_are_exactly_the_bound_intervals(values, limits):
    banded = performance_band(pd.Series(values, dtype="float64"), limits)
    for value, band in zip(values, banded):
        if not (0 <= value <= 100):  # NaN, infinities and out-of-range: never banded
            assert band is pd.NA
            continue
        expected = next(name for name in BAND_ORDER if value >= limits[name])
        assert band == expected


@settings(derandomize=True)
@given(st.floats(0, 100), st.floats(0, 100), bounds)
def test_a_higher_score_never_gets_a_lower_band(a, b, limits):
    low, high = sorted([a, b])
    rank = {name: i for i, name in enumerate(reversed(BAND_ORDER))}
    bands = performance_band(pd.Series([low, high]), limits)
    assert rank[bands.iloc[0]] <= rank[bands.iloc[1]]


days = st.dates(date(2024, 1, 1), date(2027, 12, 31))
labels = st.integers(2022, 2027).map(lambda y: f"{y}-{(y + 1) % 100:02d}")


@settings(max_examples=150, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.sampled_from("abcd"), days, st.floats(0, 100)), max_size=8),
    st.lists(st.tuples(st.sampled_from("abcd"), days, st.floats(0, 100)), max_size=8),
    st.lists(st.tuples(st.sampled_from("abcd"), labels, days, st.floats(0, 100)), max_size=8),
    days,
)
def test_type_codes_follow_the_priority_for_any_history(assessed, forecast, averaged, as_of):
    year = school_year_containing(as_of, (8, 1))
    frames = (pd.DataFrame(assessed, columns=["student_id", "date", "score"]),
              pd.DataFrame(forecast, columns=["student_id", "date", "score"]),
              pd.DataFrame(averaged, columns=["student_id", "school_year", "as_of", "score"]))
    out = student_types(*frames, year=year, as_of=as_of).set_index("student_id")
    in_year = lambda d: year.start <= d <= as_of  # noqa: E731
    for student in "abcd":
        a = [s for i, d, s in assessed if i == student and in_year(d)]
        f = sorted((d, s) for i, d, s in forecast if i == student and in_year(d))
        known = [(y, d, s) for i, y, d, s in averaged if i == student and d <= as_of]
        this = [s for y, d, s in known if y == year.label]
        older = sorted((y, d, s) for y, d, s in known if y < year.label)
        if a:
            expected = (1, round(float(np.mean(a)), 6))
        elif f:
            expected = (2, round(f[-1][1], 6))
        elif this:
            expected = (3, round(this[-1], 6))
        elif older:
            expected = (4, round(older[-1][2], 6))
        else:
            assert student not in out.index
            continue
        assert (out.loc[student, "type"], round(float(out.loc[student, "score"]), 6)) == expected


cell = st.one_of(st.text(max_size=12), st.sampled_from(["", " ", "ixl", "2026-09-01", "12", "-1", "1e3", "nan"]))


@settings(max_examples=200, derandomize=True)
@given(st.lists(st.tuples(cell, cell, cell, cell), min_size=1, max_size=20))
def test_validation_never_crashes_and_never_loses_a_valid_row(rows):
    frame = pd.DataFrame({name: pd.Series([r[i] for r in rows], dtype=object)
                          for i, name in enumerate(["student_id", "app", "date", "minutes"])})
    frame["line"] = pd.Series(range(2, len(rows) + 2), dtype="Int64")
    frame["raw"] = pd.Series([",".join(r) for r in rows], dtype=object)
    good, bad = validate(KINDS["usage"], frame)
    assert len(good) + len(bad) == len(rows)  # every row is kept or quarantined, none vanishes
    assert set(good["line"]).isdisjoint(set(bad["line"]))
    for row, line in zip(rows, frame["line"]):
        student, app, day, minutes = (c.strip() for c in row)
        valid = (0 < len(student) <= 64 and re_app(app) and is_day(day) and is_minutes(minutes)
                 and "\x00" not in ",".join(row) and not any(0xDC80 <= ord(ch) <= 0xDCFF for ch in ",".join(row)))
        assert (line in set(good["line"])) == valid, (row, bad.loc[bad["line"] == line, "reason"].tolist())


def re_app(text):
    import re

    return re.fullmatch(r"[a-z][a-z0-9_]{0,40}", text) is not None


def is_day(text):
    try:
        return len(text) == 10 and date.fromisoformat(text) is not None
    except ValueError:
        return False


def is_minutes(text):
    import re

    if not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", text):  # plain ASCII decimals only
        return False
    return 0 <= float(text) <= 1440
