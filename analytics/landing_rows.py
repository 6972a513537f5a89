"""Validation of landing-file rows: text cells in, typed good rows and quarantined rows out.

The columns of each kind follow CONTRACT.md, "Landing files". Readers hand over every cell
as text exactly as the file had it (undecodable bytes as lone surrogates), so that every
rule, and every message, lives here.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import pandas as pd

from analytics.identifiers import APP_ID, STUDENT_ID_MAX


@dataclass(frozen=True)
class Kind:
    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        return self.required + self.optional


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("usage", ("student_id", "app", "date", "minutes"), ("sessions",)),
        Kind("assessments", ("student_id", "assessment_id", "date", "score")),
        Kind("forecasts", ("student_id", "date", "score")),
        Kind("score_averages", ("student_id", "school_year", "as_of", "score")),
        Kind("students", ("student_id",), ("school_id", "grade")),
    )
}

_NOT_UTF8 = re.compile("[\udc80-\udcff]")
NUL_SHOWN = "\\x00"  # how a NUL character is written in stored text (PostgreSQL's text cannot hold NUL)
_SCHOOL_YEAR = re.compile(r"^(\d{4})-(\d{2})$")


class HeaderError(ValueError):
    """The header row does not fit the kind: the whole file is unreadable."""


def check_header(kind: Kind, header: list[str]) -> tuple[list[str], list[str]]:
    """Normalise a header row (trimmed, lower case) and check it against `kind`.

    Returns (normalised names, extra names that will be ignored); raises HeaderError naming
    what is missing or repeated.
    """
    names = [h.strip().lower() for h in header]
    # Counted once (linear in the header): names.count() for each name was quadratic, 127 s
    # for a header of 20,000 columns.
    repeated = sorted(n for n, times in Counter(names).items() if times > 1 and n)
    if repeated:
        raise HeaderError(f"header repeats column(s) {', '.join(repeated)}")
    present = set(names)
    missing = [c for c in kind.required if c not in present]
    if missing:
        raise HeaderError(
            f"missing required column(s) {', '.join(missing)} for a {kind.name} file; "
            f"header has {', '.join(names) or 'nothing'}; expected {', '.join(kind.required)}"
            + (f" (optional: {', '.join(kind.optional)})" if kind.optional else "")
        )
    extra = [n for n in names if n not in kind.columns]
    return names, extra


def _fold(reasons: list[pd.Series], index: pd.Index) -> pd.Series:
    """Join the non-missing reasons of each row with '; ' (a loop over checks, not rows)."""
    folded = pd.Series(pd.NA, index=index, dtype="string")
    for reason in reasons:
        if reason.isna().all():
            continue
        both = folded.notna() & reason.notna()
        folded = folded.mask(both, folded + "; " + reason).fillna(reason)
    return folded


def _flag(reason: pd.Series, mask: pd.Series, values: pd.Series, template: str) -> pd.Series:
    """Set `template` (with {} for the quoted cell) as the reason where `mask` holds.

    Messages are built only for the flagged rows: most rows are good.
    """
    mask = mask.fillna(False).astype(bool)
    if not mask.any():
        return reason
    before, _, after = template.partition("{}")
    quoted = "'" + values[mask].str.slice(0, 40) + "'" if "{}" in template else ""
    reason = reason.copy()
    reason[mask] = before + quoted + after
    return reason


def _each_distinct(values: pd.Series, convert) -> pd.Series:
    """`convert(values)`, an elementwise conversion, computed once per distinct value: a
    column of days, minutes or apps has few of them in a chunk of 100,000 rows, and parsing
    is the cost. Same values, same dtype, `values`' index."""
    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    if 2 * len(uniques) > len(values):  # mostly distinct: no gain
        return convert(values)
    converted = convert(pd.Series(uniques, dtype=values.dtype))
    return pd.Series(converted.array.take(codes), index=values.index, name=values.name)


def _none(index: pd.Index) -> pd.Series:
    return pd.Series(pd.NA, index=index, dtype="string")


def _identifier(cells: pd.Series, name: str, *, required: bool, max_len: int = STUDENT_ID_MAX):
    values = cells.str.strip()
    empty = values.eq("")
    reason = _none(cells.index)
    if required:
        reason = _flag(reason, empty, values, f"{name} is empty")
    reason = _flag(reason, values.str.len() > max_len, values, f"{name} is longer than {max_len} characters")
    return values.mask(empty, pd.NA), reason


def _app(cells: pd.Series):
    values = cells.str.strip()
    bad = ~_each_distinct(values, lambda v: v.str.fullmatch(APP_ID.pattern).fillna(False).astype(bool))
    return values, _flag(_none(cells.index), bad, values, f"app {{}} does not match {APP_ID.pattern}")


# A day written the US way (09/21/2025) or day first (21/09/2025): rejected like any other
# day that is not YYYY-MM-DD, with a reason saying what it looks like. A day valid both ways
# (01/09/2026) is called US-style: each row is judged on its own, so that every reader,
# whatever its chunks, gives the same reasons.
US_STYLE = "looks US-style MM/DD/YYYY"
DAY_FIRST = "looks DD/MM/YYYY"
_SLASHED = re.compile(r"^\d{1,2}/\d{1,2}/\d{4}$")
_STYLED = re.compile(
    r"'(\d{1,2}/\d{1,2}/\d{4})' is not a date YYYY-MM-DD \((" + re.escape(US_STYLE) + "|" + re.escape(DAY_FIRST) + r")\)"
)


def _day(cells: pd.Series, name: str):
    values = cells.str.strip()
    parsed = _each_distinct(values, lambda v: pd.to_datetime(v, format="%Y-%m-%d", errors="coerce"))
    wrong = parsed.isna() | values.str.len().ne(10)
    reason = _flag(_none(cells.index), wrong, values, f"{name} {{}} is not a date YYYY-MM-DD")
    slashed = wrong & _each_distinct(values, lambda v: v.str.fullmatch(_SLASHED.pattern).fillna(False).astype(bool))
    if slashed.any():
        month_first = pd.to_datetime(values.where(slashed), format="%m/%d/%Y", errors="coerce").notna()
        day_first = pd.to_datetime(values.where(slashed), format="%d/%m/%Y", errors="coerce").notna()
        reason = _flag(reason, slashed & day_first & ~month_first, values,
                       f"{name} {{}} is not a date YYYY-MM-DD ({DAY_FIRST})")
        reason = _flag(reason, slashed & month_first, values, f"{name} {{}} is not a date YYYY-MM-DD ({US_STYLE})")
    reason = _flag(reason, values.eq(""), values, f"{name} is empty")
    return parsed.astype("datetime64[s]"), reason


def _number(cells: pd.Series, name: str, low: float, high: float, *, required: bool = True):
    values = cells.str.strip()
    parsed = _each_distinct(values, lambda v: pd.to_numeric(v.mask(v.eq(""), None), errors="coerce").astype("float64"))
    reason = _flag(_none(cells.index), parsed.notna() & ~parsed.between(low, high), values,
                   f"{name} {{}} is outside {low:g}..{high:g}")
    reason = _flag(reason, parsed.isna() & values.ne(""), values, f"{name} {{}} is not a number")
    if required:
        reason = _flag(reason, values.eq(""), values, f"{name} is empty")
    return parsed, reason


def _school_year(cells: pd.Series):
    values = cells.str.strip()
    parts = values.str.extract(_SCHOOL_YEAR.pattern)
    first = pd.to_numeric(parts[0], errors="coerce")
    second = pd.to_numeric(parts[1], errors="coerce")
    good = ((first + 1) % 100 == second).fillna(False).astype(bool)
    return values, _flag(_none(cells.index), ~good, values, "school_year {} is not a school year like 2025-26")


def _text(cells: pd.Series) -> pd.Series:
    """Cells as text with "" for missing; Arrow-backed text stays as it is (no copy)."""
    if isinstance(cells.dtype, pd.StringDtype):
        return cells.fillna("")
    return cells.astype(object).fillna("").astype(object)


def _decoded(values: pd.Series) -> pd.Series:
    """Lone surrogates (undecodable bytes) shown as U+FFFD, as a database can store them."""
    values = values.astype(object).fillna("")
    return values.str.encode("utf-8", "surrogateescape").str.decode("utf-8", "replace")


def slashed_day_examples(reasons: pd.Series) -> dict[str, str]:
    """{US_STYLE or DAY_FIRST: the first day so written} among rejected rows' reasons."""
    found = reasons.astype("string").str.extract(_STYLED.pattern).dropna()
    return {style: day for day, style in found.drop_duplicates(subset=1).itertuples(index=False)}


def reason_category(reasons: pd.Series) -> pd.Series:
    """Each single problem of each reason, without the quoted value: for counting.

    "minutes '-1' is outside 0..1440; date '2025-02-30' is not a date" ->
    ["minutes is outside 0..1440", "date is not a date"].
    """
    return (
        reasons.astype("string").str.split("; ").explode()
        .str.replace(r" '[^']*'", "", regex=True)
    )


def validate(kind: Kind, cells: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split rows of one kind into typed good rows and rejected rows.

    Input: `cells` has one text column per header name (missing cells as ""; Python text
    with undecodable bytes as lone surrogates, or Arrow-backed text), plus `line` (the row's
    line number in its file, Int64) and optionally `raw` (the row as text; without it, a
    rejected row's raw text is its cells joined with ",", as a CSV line has them).
    Output: (good, rejected).
      good: `line` and the kind's columns, typed: ids as string (trimmed), days as
        datetime64, minutes and score as float64 (minutes 0..1440, score 0..100), sessions
        as Int64, optional text as string with <NA> for empty.
      rejected: line, reason (every problem of the row, '; '-separated), raw (undecodable
        bytes shown as U+FFFD, NUL as the four characters \\x00).
    """
    cell_columns = [c for c in cells.columns if c not in ("line", "raw")]
    text = {c: _text(cells[c]) for c in cell_columns}
    # Every cell is checked, and `raw` too when given: for JSON lines, `raw` holds "\u0000" as
    # six characters while the cell holds the NUL itself.
    raw = _text(cells["raw"]) if "raw" in cells else None  # else built below, for rejected rows only
    checked = {**text, **({"raw": raw} if raw is not None else {})}
    undecodable = pd.Series(False, index=cells.index)
    nul = pd.Series(False, index=cells.index)
    for values in checked.values():
        if values.dtype == object:  # decoded by Python (lone surrogates); Arrow text is valid UTF-8
            undecodable |= values.str.contains(_NOT_UTF8.pattern, regex=True).astype(bool)
        nul |= values.str.contains("\x00", regex=False).fillna(False).astype(bool)
    text = {c: (_decoded(v) if undecodable.any() else v).astype("string")
            for c, v in text.items() if c in kind.columns}
    typed: dict[str, pd.Series] = {}
    reasons: list[pd.Series] = []
    for column, values in text.items():
        if column in ("student_id", "assessment_id"):
            typed[column], reason = _identifier(values, column, required=True)
        elif column in ("school_id", "grade"):
            typed[column], reason = _identifier(
                values, column, required=False, max_len=STUDENT_ID_MAX if column == "school_id" else 16
            )
        elif column == "app":
            typed[column], reason = _app(values)
        elif column in ("date", "as_of"):
            typed[column], reason = _day(values, column)
        elif column == "minutes":
            typed[column], reason = _number(values, column, 0, 1440)
        elif column == "score":
            typed[column], reason = _number(values, column, 0, 100)
        elif column == "sessions":
            number, reason = _number(values, column, 0, 1_000_000, required=False)
            whole = number.isna() | (number == number.round())
            reason = _flag(reason, ~whole, values, "sessions {} is not a whole number")
            typed[column] = number.where(whole).round().astype("Int64")
        elif column == "school_year":
            typed[column], reason = _school_year(values)
        else:  # pragma: no cover - KINDS and this dispatch are written together
            raise AssertionError(column)
        reasons.append(reason)
    reasons.insert(0, _flag(_none(cells.index), nul, _none(cells.index), "contains a NUL character"))
    reasons.insert(0, _flag(_none(cells.index), undecodable, _none(cells.index), "bytes are not valid UTF-8"))
    reason = _fold(reasons, cells.index)
    bad = reason.notna()
    good = pd.DataFrame({"line": cells["line"].astype("Int64"), **typed}).loc[~bad]
    good = good.astype({c: "string" for c in good.columns if good[c].dtype == object})
    if raw is None:
        rows = cells.loc[bad, cell_columns].astype(object).fillna("")
        raw = pd.Series([",".join(r) for r in rows.itertuples(index=False)], index=rows.index, dtype=object)
    raw = _decoded(raw.loc[bad]).astype("string").str.replace("\x00", NUL_SHOWN, regex=False)
    rejected = pd.DataFrame({"line": cells["line"].astype("Int64").loc[bad], "reason": reason.loc[bad], "raw": raw})
    return good.reset_index(drop=True), rejected.reset_index(drop=True)
