"""most_used ranks in the database: on a random district (ties in minutes, app ids whose
order differs under a language collation, students of every type), its rows equal what the
pandas reference in analytics/most_used.py computes from the same published table, usage
and assessments, on SQLite and PostgreSQL. (This server's collation is C.UTF-8, so the
`COLLATE "C"` of the ranking is not what makes them agree here; under en_US it would be.)"""
from datetime import date, timedelta

import numpy as np
import pandas as pd
from sqlalchemy import select

from analytics.most_used import app_summary, student_windows, top_apps, window_minutes
from analytics.school_year import school_year_containing
from storage.frames import read_frame
from models import assessments, dataframe_table, district_app_summary, most_used_software, usage
from tests.integration.test_cycle import AS_OF, cycle, settings_for, write

APPS = ("zeta", "alpha_b", "alphab", "beta", "b_eta", "gamma")  # '_' sorts before letters by code point


def random_district(landing, seed=7):
    rng = np.random.default_rng(seed)
    days = [date(2026, 8, 3) + timedelta(days=int(d)) for d in range(0, 110)]
    rows = []
    for s in range(60):
        for app in rng.choice(APPS + ("unlisted",), size=rng.integers(1, 5), replace=False):
            for day in rng.choice(days, size=rng.integers(1, 12), replace=False):
                rows.append((f"s{s:02d}", app, day.isoformat(), int(rng.choice([0, 10, 10, 20, 35]))))
    usage_csv = "student_id,app,date,minutes\n" + "".join(f"{a},{b},{c},{d}\n" for a, b, c, d in rows)
    assessed = "student_id,assessment_id,date,score\n" + "".join(
        f"s{s:02d},a{k},{(date(2026, 9, 1) + timedelta(days=int(rng.integers(0, 80)))).isoformat()},"
        f"{rng.uniform(20, 100):.1f}\n" for s in range(0, 60, 2) for k in range(rng.integers(1, 3)))
    forecasts = "student_id,date,score\n" + "".join(f"s{s:02d},2026-10-01,{60 + s % 30}\n" for s in range(1, 60, 4))
    write(landing, {"alpha/usage.csv": usage_csv, "alpha/assessments.csv": assessed,
                    "alpha/forecasts.csv": forecasts})


def reference(engine, settings, as_of=AS_OF):
    district = settings.districts[0]
    year = school_year_containing(as_of, settings.school_year_start)
    table = dataframe_table("alpha", district.apps)
    with engine.connect() as conn:
        students = read_frame(conn, select(table.c.student_id, table.c.type, table.c.performance, table.c.last_active))
        latest = read_frame(conn, select(assessments.c.student_id, assessments.c.date.label("latest_assessment")))
        daily = read_frame(conn, select(usage.c.student_id, usage.c.app, usage.c.date, usage.c.minutes)
                           .where(usage.c.date.between(year.start, as_of)))
    latest = latest.groupby("student_id", as_index=False)["latest_assessment"].max()
    students = students.merge(latest, on="student_id", how="left").astype({"type": "Int64"})
    windows = student_windows(students, year_start=year.start, as_of=as_of,
                              assessment_days=district.assessment_window_days,
                              latest_days=district.latest_window_days)
    minutes = window_minutes(daily, windows, district.apps)
    return top_apps(minutes, district.most_used_top_n), app_summary(minutes)


def assert_as_the_reference(engine, top, summary):
    with engine.connect() as conn:
        ours = read_frame(conn, select(most_used_software))
        ours_summary = read_frame(conn, select(district_app_summary))
    key = ["student_id", "window", "rank"]
    ours = ours.sort_values(key, ignore_index=True)
    top = top.sort_values(key, ignore_index=True)
    for column in ("student_id", "window", "app"):
        assert ours[column].astype(str).tolist() == top[column].astype(str).tolist(), column
    assert ours["rank"].astype(int).tolist() == top["rank"].tolist()
    assert ours["type"].astype("Int64").tolist() == top["type"].tolist()
    np.testing.assert_allclose(ours["minutes"].astype(float), top["minutes"].astype(float))
    np.testing.assert_allclose(ours["share"].astype(float), top["share"].astype(float))
    for column in ("window_start", "window_end"):
        assert (pd.to_datetime(ours[column]) == pd.to_datetime(top[column])).all(), column

    skey = ["window", "performance", "app"]
    ours_summary = ours_summary.sort_values(skey, ignore_index=True)
    summary = summary.sort_values(skey, ignore_index=True)
    assert ours_summary[skey].astype(str).values.tolist() == summary[skey].astype(str).values.tolist()
    assert ours_summary["students"].astype(int).tolist() == summary["students"].tolist()
    np.testing.assert_allclose(ours_summary["share"].astype(float), summary["share"].astype(float))


def test_the_database_ranks_as_the_pandas_reference_does(engine, tmp_path):
    landing = tmp_path / "landing"
    random_district(landing)
    settings = settings_for(apps=APPS, most_used_top_n=2, assessment_window_days=20, latest_window_days=15)
    result = cycle(engine, landing, settings, jobs=("ingest", "dailypull", "most_used"))
    assert [r.result.status for r in result.records] == ["succeeded"] * 3, [r.result.message for r in result.records]
    top, summary = reference(engine, settings)
    assert len(top) > 100 and set(top["window"]) == {"year_to_date", "assessment", "latest"}
    assert_as_the_reference(engine, top, summary)
    assert int(result.records[2].result.rows_out) == len(top) + len(summary)

    again = cycle(engine, landing, settings, jobs=("most_used",))
    assert again.records[0].result.message.endswith("; unchanged: nothing written")


def test_nights_re_rank_only_the_students_with_new_data_as_a_full_run_would(engine, tmp_path):
    from datetime import datetime, timezone

    from runner.cycle import run_cycle

    landing = tmp_path / "landing"
    random_district(landing)
    settings = settings_for(apps=APPS, most_used_top_n=2, assessment_window_days=20, latest_window_days=15)

    def night(day, *, jobs=("ingest", "dailypull", "most_used"), force=False):
        now = datetime(day.year, day.month, day.day, 2, tzinfo=timezone.utc)
        done = run_cycle(engine, settings, districts=list(settings.districts), jobs=list(jobs), as_of=day,
                         landing_dir=landing, force=force, now=now, clock=lambda: now)
        assert all(r.result.status == "succeeded" for r in done.records), [r.result.message for r in done.records]
        return done.records[-1].result

    day = date(2026, 11, 22)
    assert "students ranked" in night(day).message
    # new days for three students (one new), a replaced key, and an assessment dated tomorrow
    write(landing, {
        "alpha/usage_n1.csv": "student_id,app,date,minutes\ns01,beta,2026-11-23,500\n"
                              "s02,zeta,2026-11-23,5\ns77,gamma,2026-11-23,9\n",
        "alpha/usage_fix.csv": "student_id,app,date,minutes\n" + next(
            f"{line.split(',')[0]},{line.split(',')[1]},{line.split(',')[2]},999\n"
            for line in (landing / "alpha/usage.csv").read_text().splitlines()[1:] if line.split(",")[1] in APPS),
    })
    result = night(day + timedelta(days=1))
    assert "with new data re-ranked" in result.message, result.message
    assert 4 <= result.details["night"] <= 10, result.details  # s01, s02, s77, the fixed one (and rows dailypull rewrote)
    again = night(day + timedelta(days=1), jobs=("most_used",), force=True)  # the full run finds nothing to change
    assert again.message.endswith("; unchanged: nothing written"), again.message
    assert_as_the_reference(engine, *reference(engine, settings, as_of=day + timedelta(days=1)))

    quiet = night(day + timedelta(days=2))  # nothing new: nobody re-ranked, nothing written
    assert quiet.details == {"night": 0} and quiet.message.endswith("unchanged: nothing written"), quiet.message
