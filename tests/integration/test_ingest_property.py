"""Ingest of random rows never crashes and never loses a valid row (hypothesis, real files,
a real database)."""
import csv
import tempfile
from datetime import date
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

import config
from storage import database
from runner.cycle import run_cycle
from models import rejected_rows, usage

cell = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=10),
    st.sampled_from(["s1", "s2", " s3 ", "ixl", "lexia", "IXL", "2026-09-01", "2026-02-30", "15", "-3", "2000", ""]),
)
row = st.tuples(st.sampled_from(["s1", "s2", "", "x" * 70]) | cell, st.sampled_from(["ixl", "lexia", "Bad App"]) | cell,
                st.sampled_from(["2026-09-01", "2026-09-02", "2026-13-01"]) | cell, st.sampled_from(["5", "30.5", "-1"]) | cell)


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(row, min_size=1, max_size=15))
def test_random_rows_load_or_are_quarantined_and_nothing_else(rows):
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "landing" / "alpha").mkdir(parents=True)
        with open(root / "landing" / "alpha" / "usage.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["student_id", "app", "date", "minutes"])
            writer.writerows(rows)
        engine = database.connect(f"sqlite:///{root / 'a.db'}")
        s = config.parse({"districts": [{"id": "alpha", "apps": ["ixl"]}]})
        result = run_cycle(engine, s, districts=list(s.districts), jobs=["ingest"], as_of=date(2026, 11, 22),
                           landing_dir=root / "landing").records[0].result
        with engine.connect() as conn:
            loaded = {(r.student_id, r.app, r.date.isoformat()): r.minutes for r in conn.execute(select(usage))}
            quarantined = conn.execute(select(rejected_rows.c.line)).scalars().all()
        engine.dispose()
    assert result.status in ("succeeded", "completed_with_errors")  # never a crash
    expected: dict = {}
    for student, app, day, minutes in rows:
        student, app, day, minutes = student.strip(), app.strip(), day.strip(), minutes.strip()
        if valid(student, app, day, minutes):
            key = (student, app, day)
            expected[key] = expected.get(key, 0.0) + float(minutes)  # same key in one file: summed
    assert set(loaded) == set(expected)  # every valid row is in, nothing else
    for key, minutes in expected.items():
        assert abs(loaded[key] - minutes) < 1e-9
    assert result.rows_out + result.rows_rejected == len(rows)
    assert len(quarantined) == result.rows_rejected


NUMBER = r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?"


def valid(student, app, day, minutes):
    import re

    if not re.fullmatch(NUMBER, minutes):  # plain ASCII decimals only: no "1_000", no full-width digits
        return False
    try:
        good_day = len(day) == 10 and re.fullmatch(r"\d{4}-\d{2}-\d{2}", day) and date.fromisoformat(day)
        value = float(minutes)
    except ValueError:
        return False
    return bool(0 < len(student) <= 64 and re.fullmatch(r"[a-z][a-z0-9_]{0,40}", app) and good_day
                and 0 <= value <= 1440 and "\x00" not in student + app + day + minutes)
