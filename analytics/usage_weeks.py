"""usage_weekly's rows (README, "usage_weekly") from the usage rows of one file, folded chunk
by chunk as the rollups are: for the weeks in which the district had no usage before the
file, these rows are the rows a recompute over `usage` gives, without reading the rows again.

Per school, app and week starting Monday: `minutes` summed over every row (0 minutes too),
`students` the distinct students with minutes > 0. The minutes come from `week_sums` of each
chunk (added up); the students from the rollup totals' `weeks` bits
(`usage_rollup.rollup(..., weeks=True)`), one row per school year, student and app, so a
student counts once per week however many of the week's days, chunks or rows name them.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

KEY = ["school_id", "app", "week_start"]
_BITS = 64


def mondays(days: pd.Series) -> pd.Series:
    """The Monday on or before each day (datetime64[s])."""
    days = pd.to_datetime(days).astype("datetime64[s]")
    return days - pd.to_timedelta(days.dt.day_of_week, unit="D")


def school_codes(students: pd.Series, school_of: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(code of each student's school, the schools' names) from `school_of` (index
    student_id, values school_id, each student once; categorical values are looked up without
    being factorized again); a student without one has the school "" (as
    `coalesce(students.school_id, '')` in the recompute)."""
    if not len(school_of):
        return np.zeros(len(students), dtype="int64"), np.array([""], dtype=object)
    index = school_of.index
    found = index.get_indexer(students.astype(index.dtype))  # -1: not in the roster, or no school
    values = school_of.astype("category")
    code = values.cat.codes.to_numpy(dtype="int64")
    names = np.append(np.asarray(values.cat.categories, dtype=object), "")
    return np.where(found < 0, len(names) - 1, code[found]), names


def schools(students: pd.Series, school_of: pd.Series) -> pd.Series:
    """Each student's school, as `school_codes` finds it (aligned with `students`)."""
    code, names = school_codes(students, school_of)
    return pd.Series(names[code], index=students.index, dtype="string")


def week_sums(rows: pd.DataFrame, school: pd.Series) -> pd.DataFrame:
    """Minutes per school, app and week of usage rows (app, date, minutes), with `school`
    (aligned with `rows`) each row's school_id.

    Output: school_id, app, week_start (Monday, datetime64[s]), minutes (sum, minutes),
    sorted by school_id, app, week_start."""
    # Grouped by integer codes (a chunk has few schools, apps and days), not by text.
    day_code, days = pd.factorize(pd.to_datetime(rows["date"]).astype("datetime64[s]"), use_na_sentinel=False)
    week_code, weeks = pd.factorize(mondays(pd.Series(days)), use_na_sentinel=False)
    app_code, apps = pd.factorize(rows["app"].astype("string"), use_na_sentinel=False)
    school_code, names = pd.factorize(school.astype("string"), use_na_sentinel=False)
    per_school, per_app = len(apps) * len(weeks), len(weeks)
    key_code, keys = pd.factorize(school_code.astype("int64") * per_school + app_code.astype("int64") * per_app
                                  + week_code[day_code])
    minutes = np.bincount(key_code, weights=rows["minutes"].to_numpy(dtype="float64"), minlength=len(keys))
    keys = np.asarray(keys, dtype="int64")
    return pd.DataFrame({
        "school_id": pd.Series(np.asarray(names, dtype=object)[keys // per_school], dtype="string"),
        "app": pd.Series(np.asarray(apps, dtype=object)[keys % per_school // per_app], dtype="string"),
        "week_start": pd.Series(np.asarray(weeks)[keys % per_app]).astype("datetime64[s]"),
        "minutes": minutes,
    }).sort_values(KEY, ignore_index=True)


def merge_week_sums(*frames: pd.DataFrame) -> pd.DataFrame:
    """`week_sums` frames added up by school, app and week."""
    present = [f for f in frames if len(f)]
    if not present:
        return frames[0]
    return pd.concat(present, ignore_index=True).groupby(KEY, as_index=False, sort=True)["minutes"].sum()


def weekly_rows(totals: pd.DataFrame, sums: pd.DataFrame, school_of: pd.Series) -> pd.DataFrame:
    """usage_weekly's rows of the usage that gave `totals` (year_start, student_id, app,
    weeks: the rollup's, each key once) and `sums` (`week_sums`, merged); `school_of` as in
    `schools`.

    Output: school_id, app, week_start (Monday, datetime64[s]), students (count of distinct
    students with minutes > 0 that week), minutes (sum, minutes); one row per group of `sums`,
    sorted by school_id, app, week_start."""
    counted = _students(totals, school_of)
    out = sums.merge(counted, how="left", on=KEY, validate="1:1")
    return out.assign(students=out["students"].fillna(0).astype("int64"))[[*KEY, "students", "minutes"]]


def _students(totals: pd.DataFrame, school_of: pd.Series) -> pd.DataFrame:
    """school_id, app, week_start, students: the rows of `totals` with each week's bit set."""
    used = totals.loc[totals["weeks"].to_numpy(dtype="uint64") != 0]
    empty = pd.DataFrame({"school_id": pd.Series([], dtype="string"), "app": pd.Series([], dtype="string"),
                          "week_start": pd.Series([], dtype="datetime64[s]"), "students": pd.Series([], dtype="int64")})
    if used.empty:
        return empty
    bits = used["weeks"].to_numpy(dtype="uint64")
    # Groups (school year, school, app) numbered by integer codes, not grouped as text; each
    # student's school looked up once (a student has a row per app).
    student, distinct = pd.factorize(used["student_id"].astype("string").array)
    school, names = school_codes(pd.Series(distinct, dtype="string"), school_of)
    school = school[student]
    year, years = pd.factorize(pd.to_datetime(used["year_start"]).astype("datetime64[s]").to_numpy())
    app, apps = pd.factorize(used["app"].astype("string").array)
    codes, present = pd.factorize((year.astype("int64") * len(names) + school) * len(apps) + app)
    present = np.asarray(present, dtype="int64")
    first_monday = mondays(pd.Series(np.asarray(years)[present // (len(names) * len(apps))])).to_numpy()
    school_of_group = names[present // len(apps) % len(names)]
    app_of_group = np.asarray(apps, dtype=object)[present % len(apps)]
    counts = _bit_counts(codes, len(present), bits)
    parts = []
    for week in np.flatnonzero(counts.any(axis=0)):
        some = counts[:, week] > 0
        parts.append(pd.DataFrame({"school_id": school_of_group[some], "app": app_of_group[some],
                                   "week_start": first_monday[some] + np.timedelta64(7 * int(week), "D"),
                                   "students": counts[some, week]}))
    parts += _counted_twice(used, bits, pd.Series(names[school], index=used.index))
    return (pd.concat(parts, ignore_index=True)
            .astype({"school_id": "string", "app": "string", "week_start": "datetime64[s]"})
            .groupby(KEY, as_index=False, sort=True)["students"].sum())


_NIBBLE_BITS = (np.arange(16)[:, None] >> np.arange(4)[None, :]) & 1  # value -> its 4 bits


def _bit_counts(codes: np.ndarray, groups: int, bits: np.ndarray) -> np.ndarray:
    """counts[g, i]: the rows of group g (`codes`) with bit i of `bits` set; four bits at a
    time (a histogram of each row's group and nibble), not a pass over the rows per bit."""
    counts = np.zeros((groups, _BITS), dtype="int64")
    for nibble in range(_BITS // 4):
        values = ((bits >> np.uint64(4 * nibble)) & np.uint64(15)).astype("int64")
        if not values.any():
            continue
        histogram = np.bincount(codes * 16 + values, minlength=groups * 16).reshape(groups, 16)
        counts[:, 4 * nibble:4 * nibble + 4] = histogram @ _NIBBLE_BITS
    return counts


def _counted_twice(used: pd.DataFrame, bits: np.ndarray, school: pd.Series) -> list[pd.DataFrame]:
    """Negative counts for the week two school years share (a year that starts after a
    Monday): a student who used an app in that week in both years was counted in each."""
    year = pd.to_datetime(used["year_start"]).astype("datetime64[s]")
    years = sorted(year.unique())
    out = []
    for earlier, later in zip(years, years[1:]):
        shared = mondays(pd.Series([later])).iloc[0]
        week = (shared - mondays(pd.Series([earlier])).iloc[0]).days // 7
        if shared == later or week >= _BITS:  # no week across the two years' boundary
            continue
        key = ["student_id", "app"]
        before = ((year == earlier).to_numpy() & ((bits >> np.uint64(week)) & np.uint64(1)).astype(bool))
        after = ((year == later).to_numpy() & (bits & np.uint64(1)).astype(bool))
        both = (used.loc[before, key].assign(school_id=school.loc[before].to_numpy())
                .merge(used.loc[after, key], on=key, validate="1:1"))
        if len(both):
            out.append(both.groupby(["school_id", "app"], as_index=False).size().rename(columns={"size": "students"})
                       .assign(week_start=shared, students=lambda f: -f["students"].astype("int64")))
    return out
