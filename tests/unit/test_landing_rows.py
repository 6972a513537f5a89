"""Row validation of landing files: typed good rows, and every problem of a bad row named."""
import time

import pandas as pd
import pytest

from analytics.landing_rows import (
    DAY_FIRST, KINDS, US_STYLE, HeaderError, check_header, reason_category, slashed_day_examples, validate,
)


def cells(kind, rows):
    """Text cells as a reader hands them over: object dtype, plus line and raw."""
    names = KINDS[kind].columns[: len(rows[0])]
    frame = pd.DataFrame({n: pd.Series([r[i] for r in rows], dtype=object) for i, n in enumerate(names)})
    frame["line"] = pd.Series(range(2, len(rows) + 2), dtype="Int64")
    frame["raw"] = pd.Series([",".join(r) for r in rows], dtype=object)
    return frame


def reasons(kind, rows):
    good, bad = validate(KINDS[kind], cells(kind, rows))
    return dict(zip(bad["line"], bad["reason"]))


def test_good_usage_rows_are_typed_and_trimmed():
    good, bad = validate(KINDS["usage"], cells("usage", [[" s1 ", "ixl", "2026-09-01", "12.5", "2"],
                                                           ["s2", "lexia", "2026-09-02", "0", ""]]))
    expected = pd.DataFrame({
        "line": pd.Series([2, 3], dtype="Int64"),
        "student_id": pd.Series(["s1", "s2"], dtype="string"),
        "app": pd.Series(["ixl", "lexia"], dtype="string"),
        "date": pd.to_datetime(["2026-09-01", "2026-09-02"]).astype("datetime64[s]"),
        "minutes": [12.5, 0.0],
        "sessions": pd.Series([2, pd.NA], dtype="Int64"),
    })
    pd.testing.assert_frame_equal(good, expected)
    assert bad.empty


@pytest.mark.parametrize(
    "row, reason",
    [
        (["s1", "ixl", "2026-09-01", "-1", "1"], "minutes '-1' is outside 0..1440"),
        (["s1", "ixl", "2026-09-01", "1440.5", "1"], "minutes '1440.5' is outside 0..1440"),
        (["s1", "ixl", "2026-09-01", "ten", "1"], "minutes 'ten' is not a number"),
        (["s1", "ixl", "2026-09-01", "", "1"], "minutes is empty"),
        (["s1", "ixl", "2026-02-30", "5", "1"], "date '2026-02-30' is not a date YYYY-MM-DD"),
        (["s1", "ixl", "01/09/2026", "5", "1"], "date '01/09/2026' is not a date YYYY-MM-DD (looks US-style MM/DD/YYYY)"),
        (["s1", "ixl", "09/21/2025", "5", "1"], "date '09/21/2025' is not a date YYYY-MM-DD (looks US-style MM/DD/YYYY)"),
        (["s1", "ixl", "21/09/2025", "5", "1"], "date '21/09/2025' is not a date YYYY-MM-DD (looks DD/MM/YYYY)"),
        (["s1", "ixl", "13/31/2025", "5", "1"], "date '13/31/2025' is not a date YYYY-MM-DD"),
        (["s1", "ixl", "09/21/25", "5", "1"], "date '09/21/25' is not a date YYYY-MM-DD"),
        (["", "ixl", "2026-09-01", "5", "1"], "student_id is empty"),
        (["x" * 65, "ixl", "2026-09-01", "5", "1"], "student_id is longer than 64 characters"),
        (["s1", "IXL", "2026-09-01", "5", "1"], "app 'IXL' does not match ^[a-z][a-z0-9_]{0,40}$"),
        (["s1", "ixl", "2026-09-01", "5", "1.5"], "sessions '1.5' is not a whole number"),
        (["s1\udce9", "ixl", "2026-09-01", "5", "1"], "bytes are not valid UTF-8"),
    ],
)
def test_each_bad_usage_cell_is_named(row, reason):
    assert reasons("usage", [["ok", "ixl", "2026-09-01", "1", "1"], row]) == {3: reason}


def test_every_problem_of_a_row_is_listed():
    assert reasons("usage", [["", "ixl", "2026-13-01", "-3", "1"]]) == {
        2: "student_id is empty; date '2026-13-01' is not a date YYYY-MM-DD; minutes '-3' is outside 0..1440"
    }


@pytest.mark.parametrize(
    "score, reason",
    [("100.5", "score '100.5' is outside 0..100"), ("-1", "score '-1' is outside 0..100"),
     ("NaN", "score 'NaN' is not a number"), ("n/a", "score 'n/a' is not a number")],
)
def test_scores_outside_0_to_100_or_not_numbers(score, reason):
    assert reasons("forecasts", [["s1", "2026-09-01", score]]) == {2: reason}


def test_school_year_must_be_consecutive_years():
    found = reasons("score_averages", [["s1", "2025-26", "2026-06-15", "70"], ["s1", "2025-27", "2026-06-15", "70"],
                                        ["s1", "2025", "2026-06-15", "70"], ["s1", "2099-00", "2100-06-15", "70"]])
    assert found == {3: "school_year '2025-27' is not a school year like 2025-26",
                     4: "school_year '2025' is not a school year like 2025-26"}


def test_roster_optional_columns_empty_become_missing():
    good, bad = validate(KINDS["students"], cells("students", [["s1", "", "K"], ["s2", "sch", ""]]))
    assert bad.empty
    assert good["school_id"].isna().tolist() == [True, False] and good["grade"].isna().tolist() == [False, True]


def test_undecodable_raw_text_is_stored_with_replacement_characters():
    _, bad = validate(KINDS["forecasts"], cells("forecasts", [["s\udce9", "2026-09-01", "50"]]))
    assert bad["raw"].tolist() == ["s\ufffd,2026-09-01,50"]


def test_input_is_not_mutated():
    frame = cells("usage", [["s1", "ixl", "2026-09-01", "-1", "1"]])
    before = frame.copy()
    validate(KINDS["usage"], frame)
    pd.testing.assert_frame_equal(frame, before)


def test_header_is_normalised_and_extra_columns_reported():
    names, extra = check_header(KINDS["usage"], [" Student_ID", "APP", "date", "minutes", "device"])
    assert names == ["student_id", "app", "date", "minutes", "device"] and extra == ["device"]


def test_header_missing_a_required_column_names_it():
    with pytest.raises(HeaderError, match="missing required column\\(s\\) minutes for a usage file"):
        check_header(KINDS["usage"], ["student_id", "app", "date"])


def test_header_with_a_repeated_column():
    with pytest.raises(HeaderError, match="header repeats column\\(s\\) date"):
        check_header(KINDS["forecasts"], ["student_id", "date", "date", "score"])


def test_reason_categories_drop_the_values():
    found = reason_category(pd.Series(["minutes '-1' is outside 0..1440; date '2026-02-30' is not a date YYYY-MM-DD"]))
    assert found.tolist() == ["minutes is outside 0..1440", "date is not a date YYYY-MM-DD"]


def test_a_us_style_day_in_any_day_column_says_so_and_keeps_its_own_category():
    found = reasons("score_averages", [["s1", "2025-26", " 06/15/2026 ", "70"], ["s2", "2025-26", "2026-06-15", "70"]])
    assert found == {2: "as_of '06/15/2026' is not a date YYYY-MM-DD (looks US-style MM/DD/YYYY)"}
    mixed = pd.Series(["date '09/21/2025' is not a date YYYY-MM-DD (looks US-style MM/DD/YYYY); minutes 'x' is not a number",
                       "date '21/09/2025' is not a date YYYY-MM-DD (looks DD/MM/YYYY)"])
    assert reason_category(mixed).tolist() == ["date is not a date YYYY-MM-DD (looks US-style MM/DD/YYYY)",
                                               "minutes is not a number", "date is not a date YYYY-MM-DD (looks DD/MM/YYYY)"]


def test_the_first_day_of_each_slashed_style_is_found_for_the_files_note():
    _, bad = validate(KINDS["usage"], cells("usage", [["s'1", "ixl", "09/21/2025", "5", "1"],
                                                      ["s2", "ixl", "10/22/2025", "x", "1"],
                                                      ["s3", "ixl", "2025-13-01", "5", "1"],
                                                      ["s4", "ixl", "22/10/2025", "5", "1"]]))
    assert slashed_day_examples(bad["reason"]) == {US_STYLE: "09/21/2025", DAY_FIRST: "22/10/2025"}
    assert slashed_day_examples(bad["reason"].iloc[2:3]) == {}


def _cpu_seconds_to_check(columns: int, rounds: int) -> float:
    header = ["student_id", "app", "date", "minutes", *(f"Column_{i} " for i in range(columns - 4))]
    started = time.process_time()
    for _ in range(rounds):
        names, extra = check_header(KINDS["usage"], header)
    assert len(names) == columns and len(extra) == columns - 4
    return time.process_time() - started


def test_the_header_check_is_linear_in_its_columns():
    """CPU seconds (not wall-clock) for 10k and 40k columns: about 4 times, not 16 (it was
    quadratic: 20,000 columns 127 s, 40,000 298 s). Generous: under 8 times."""
    small = _cpu_seconds_to_check(10_000, 10)
    large = _cpu_seconds_to_check(40_000, 10)
    assert large < 8 * max(small, 0.01), (small, large)


def test_a_chunk_of_repeated_values_validates_as_its_rows_one_by_one():
    """Days, minutes and apps are parsed once per distinct value in a chunk: the rows and
    reasons are those of each row validated on its own (where every value is distinct)."""
    pool = [["s1", "ixl", "2026-09-01", "12.5"], ["s2", "IXL", "2026-9-01", "1e3"], ["s3", "ixl ", "09/21/2026", "nan"],
            ["s4", "lexia", "2026-02-30", " 7 "], ["s5", "lexia", "", "-1"], ["s6", "ixl", "21/09/2026", "1441"],
            ["s7", "ixl", "2026-09-01", ""], ["s8", "9x", "2026-09-02", "0x10"], ["s9", "ixl ", " 2026-09-03", "30"], ["s10", "ixl", "2026-09-04", "inf"]]
    rows = [pool[i % len(pool)] for i in range(10 * len(pool))]
    good, bad = validate(KINDS["usage"], cells("usage", rows))
    one_by_one = [validate(KINDS["usage"], cells("usage", [row])) for row in rows]
    expected_good = pd.concat([g.assign(line=g["line"] + i) for i, (g, _) in enumerate(one_by_one)], ignore_index=True)
    expected_bad = pd.concat([b.assign(line=b["line"] + i) for i, (_, b) in enumerate(one_by_one)], ignore_index=True)
    assert len(good) == 20 and len(bad) == 80
    pd.testing.assert_frame_equal(good, expected_good)
    pd.testing.assert_frame_equal(bad, expected_bad)
