"""Usage rolled up per school year: what dailypull needs, small enough to read every night.

Per (school year, student, app) the sum of minutes; per (school year, student) the days
with minutes > 0 as a bitmap (bit i, little-endian, is the year's start + i days). Both
merge by addition / OR, so rows new to the database are folded in without reading the
year again.
"""
from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from analytics.usage_weeks import merge_week_sums

YEAR_BYTES = 46  # 368 bits: a school year has at most 366 days
KEY = ["year_start", "student_id"]


def year_starts(days: pd.Series, start: tuple[int, int]) -> pd.Series:
    """The first day of the school year containing each day (years begin on (month, day) `start`)."""
    days = pd.to_datetime(days)
    month, first = start
    before = (days.dt.month < month) | ((days.dt.month == month) & (days.dt.day < first))
    year = days.dt.year - before.astype(int)
    return pd.to_datetime(pd.DataFrame({"year": year, "month": month, "day": first})).astype("datetime64[s]")


def rollup(rows: pd.DataFrame, start: tuple[int, int], *, weeks: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(totals, activity) of usage rows (student_id, app, date, minutes).

    totals: year_start, student_id, app, minutes (sum; every row counts, 0 minutes too);
    with `weeks`, also weeks (uint64): bit i set when the student used the app (minutes > 0)
    in the i-th week (Monday to Sunday) from the Monday on or before year_start (at most 54).
    activity: year_start, student_id, days (YEAR_BYTES bytes; students with a day > 0 only).
    """
    # What follows from the day (school year, day of the year, week) is worked out once per
    # distinct day: a chunk of 100,000 rows has a few hundred days at most.
    codes, days = pd.factorize(pd.to_datetime(rows["date"]).astype("datetime64[s]"), use_na_sentinel=False)
    days = pd.Series(days).astype("datetime64[s]")
    years = year_starts(days, start)
    year = pd.Series(years.to_numpy()[codes], index=rows.index)
    grouped = pd.DataFrame({"year_start": year, "student_id": rows["student_id"].astype("string"),
                            "app": rows["app"].astype("string"), "minutes": rows["minutes"].astype("float64")}
                           ).groupby(["year_start", "student_id", "app"], as_index=False, sort=True)
    totals = grouped["minutes"].sum()
    active = (rows["minutes"] > 0).to_numpy()
    if weeks:
        first_monday = years - pd.to_timedelta(years.dt.day_of_week, unit="D")
        week = ((days - first_monday).dt.days // 7).to_numpy(dtype="uint64")[codes]
        bits = np.where(active, np.left_shift(np.uint64(1), week), np.uint64(0))
        totals["weeks"] = _or_by_group(grouped.ngroup().to_numpy(), bits)
    day = (days - years).dt.days.to_numpy(dtype="int64")[codes]
    pairs = pd.DataFrame({"year_start": year[active], "student_id": rows["student_id"].astype("string")[active],
                          "day": day[active]})
    return totals, _bitmaps(pairs)


def _or_by_group(codes: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """Bitwise OR of `bits` per group, for groups numbered 0..n-1 (each with a row), in order."""
    if not len(codes):
        return np.zeros(0, dtype="uint64")
    order = np.argsort(codes, kind="stable")
    ordered = codes[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    return np.bitwise_or.reduceat(bits[order], starts)


def _bitmaps(pairs: pd.DataFrame) -> pd.DataFrame:
    """Bitmap per (year_start, student_id) from (year_start, student_id, day) pairs."""
    if pairs.empty:
        return pd.DataFrame({"year_start": pd.Series([], dtype="datetime64[s]"),
                             "student_id": pd.Series([], dtype="string"), "days": pd.Series([], dtype=object)})
    grouped = pairs.groupby(KEY, sort=True)
    codes = grouped.ngroup().to_numpy()
    frame = grouped.size().index.to_frame(index=False)
    bits = np.zeros((len(frame), YEAR_BYTES * 8), dtype=bool)
    bits[codes, pairs["day"].to_numpy()] = True
    packed = np.packbits(bits, axis=1, bitorder="little")
    frame["days"] = [row.tobytes() for row in packed]
    return frame


def merge_totals(*frames: pd.DataFrame) -> pd.DataFrame:
    """Totals added up by (year_start, student_id, app) (their weeks, if they have them, OR-ed)."""
    both = pd.concat([f for f in frames if len(f)], ignore_index=True) if any(len(f) for f in frames) else frames[0]
    grouped = both.groupby(["year_start", "student_id", "app"], as_index=False, sort=True)
    out = grouped["minutes"].sum()
    if "weeks" in both.columns:
        out["weeks"] = _or_by_group(grouped.ngroup().to_numpy(), both["weeks"].to_numpy(dtype="uint64"))
    return out


def merge_activity(*frames: pd.DataFrame) -> pd.DataFrame:
    """Bitmaps OR-ed by (year_start, student_id)."""
    present = [f for f in frames if len(f)]
    if not present:
        return frames[0]
    both = pd.concat(present, ignore_index=True).sort_values(KEY, kind="stable", ignore_index=True)
    matrix = np.frombuffer(b"".join(both["days"]), dtype=np.uint8).reshape(len(both), YEAR_BYTES)
    first = ~both.duplicated(KEY).to_numpy()
    starts = np.flatnonzero(first)
    merged = np.bitwise_or.reduceat(matrix, starts, axis=0)
    out = both.loc[first, KEY].reset_index(drop=True)
    out["days"] = [row.tobytes() for row in merged]
    return out


class Folded:
    """Rollups of a file's chunks, merged in bulk rather than into a running total per chunk
    (which cost the rollup's size for every chunk: rows x students). Partials are held until
    they outweigh what is merged so far (at least `pending_rows` rows), then merged with it in
    one pass: every row is merged a bounded number of times on average, and memory stays
    within about twice the file's rollup plus one chunk's partials.

    add(totals, activity[, sums]): one chunk's `rollup()` (and its `usage_weeks.week_sums`);
    result(): (totals, activity) as `merge_totals`/`merge_activity` of all of them would give;
    week_sums(): the sums as `usage_weeks.merge_week_sums` of all of them would give.
    """

    def __init__(self, pending_rows: int = 1_000_000):
        self.pending_rows = pending_rows
        self._totals: list[pd.DataFrame] = []  # [merged so far, partials ...]
        self._activity: list[pd.DataFrame] = []
        self._sums: list[pd.DataFrame] = []
        self._merged = 0  # rows in the merged frames (the first of each list)
        self._pending = 0  # rows in the partials since

    def add(self, totals: pd.DataFrame, activity: pd.DataFrame, sums: pd.DataFrame | None = None) -> None:
        self._totals.append(totals)
        self._activity.append(activity)
        self._pending += len(totals) + len(activity)
        if sums is not None:
            self._sums.append(sums)
            self._pending += len(sums)
        if self._pending >= max(self._merged, self.pending_rows):
            self._compact()

    def _compact(self) -> None:
        self._totals = [merge_totals(*self._totals)]
        self._activity = [merge_activity(*self._activity)]
        self._merged = len(self._totals[0]) + len(self._activity[0])
        if self._sums:
            self._sums = [merge_week_sums(*self._sums)]
            self._merged += len(self._sums[0])
        self._pending = 0

    def result(self) -> tuple[pd.DataFrame, pd.DataFrame] | None:
        """The merged (totals, activity), or None when nothing was added."""
        if not self._totals:
            return None
        if len(self._totals) > 1:
            self._compact()
        return self._totals[0], self._activity[0]

    def week_sums(self) -> pd.DataFrame | None:
        """The merged week sums, or None when none were added."""
        if not self._sums:
            return None
        if len(self._sums) > 1:
            self._compact()
        return self._sums[0]


def activity_summary(activity: pd.DataFrame, year_start: date, as_of: date) -> pd.DataFrame:
    """student_id, active_days, first_active, last_active over [year_start, as_of], from
    one school year's bitmaps; students without an active day in it are left out."""
    columns = ["student_id", "active_days", "first_active", "last_active"]
    if activity.empty:
        return pd.DataFrame(columns=columns)
    width = min((as_of - year_start).days + 1, YEAR_BYTES * 8)
    matrix = np.frombuffer(b"".join(activity["days"]), dtype=np.uint8).reshape(len(activity), YEAR_BYTES)
    bits = np.unpackbits(matrix, axis=1, bitorder="little")[:, :max(width, 0)].astype(bool)
    count = bits.sum(axis=1)
    keep = count > 0
    bits, count = bits[keep], count[keep]
    first = bits.argmax(axis=1)
    last = bits.shape[1] - 1 - bits[:, ::-1].argmax(axis=1)
    origin = np.datetime64(year_start, "D")
    return pd.DataFrame({
        "student_id": activity["student_id"].to_numpy()[keep],
        "active_days": count.astype("int64"),
        "first_active": origin + first.astype("timedelta64[D]"),
        "last_active": origin + last.astype("timedelta64[D]"),
    })[columns]


def last_active_day(activity: pd.DataFrame, year_start: date) -> date | None:
    """The latest day with minutes > 0 in one school year's bitmaps (None if there is none)."""
    if activity.empty:
        return None
    matrix = np.frombuffer(b"".join(activity["days"]), dtype=np.uint8).reshape(len(activity), YEAR_BYTES)
    any_day = np.unpackbits(matrix, axis=1, bitorder="little").any(axis=0)
    if not any_day.any():
        return None
    return (pd.Timestamp(year_start) + pd.Timedelta(days=int(np.flatnonzero(any_day)[-1]))).date()
