"""Text for people: the end-of-cycle summary and a district's report (demo, onboarding)."""
from __future__ import annotations

import pandas as pd
from sqlalchemy import func, select

from analytics.bands import BAND_ORDER
from analytics.printable import printable
from config import District
from storage.ddl import existing_columns
from storage.frames import read_frame
from runner.cycle import CycleResult
from jobs.job import plural
from models import (
    app_effects, dataframe_table, district_app_summary, ingested_files, model_runs, recommendation_reasons,
    recommendations,
)

TYPE_NAMES = {1: "1 assessment", 2: "2 forecast", 3: "3 this year's average", 4: "4 older average"}


def text_table(rows: list[list[str]], header: list[str]) -> str:
    """Rows under a header, in aligned columns; every cell made printable (a file name with
    a newline or an ANSI escape stays in its cell, escaped)."""
    lines = [[printable(v) for v in line] for line in [header, *rows]]
    widths = [max(len(x) for x in column) for column in zip(*lines)]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() for line in lines)


def cycle_summary(cycle: CycleResult) -> str:
    """The end-of-cycle summary for a terminal or a cron log; every value from outside (file
    names, reasons, messages) is made printable, so each line is one line of the summary."""
    rows = [
        [r.job, r.district_id, r.result.status, f"{r.seconds:.2f}", f"{r.result.rows_in:,}",
         f"{r.result.rows_out:,}", f"{r.result.rows_rejected:,}"]
        for r in cycle.records
    ]
    out = [f"cycle {cycle.cycle_id}, as of {cycle.as_of}"]
    out.append(text_table(rows, ["job", "district", "status", "seconds", "rows in", "rows out", "rejected"]))
    for r in cycle.records:
        if r.result.message:
            out.append(f"  {r.job} {r.district_id}: {printable(r.result.message)}")
    failed_files = [(r.district_id, path, why) for r in cycle.records
                    for path, why in r.result.details.get("failed_files", [])]
    if failed_files:
        out.append("files that failed to load (listed every cycle until a version of the same path loads):")
        out += [f"  {district}: {printable(path)}: {printable(why)}" for district, path, why in failed_files]
    empty = [(r.district_id, path, note) for r in cycle.records
             for path, note in r.result.details.get("files_with_nothing_loaded", [])]
    if empty:
        out.append("files that loaded no row (every row rejected):")
        out += [f"  {district}: {printable(path)}: {printable(note)}" for district, path, note in empty]
    rejected = sum(r.result.rows_rejected for r in cycle.records)
    if rejected:
        out.append(f"{plural(rejected, 'row')} quarantined: see the rejected_rows table (file, line, reason).")
    for warning in cycle.warnings:
        out.append(f"WARNING: {printable(warning)}")
    if cycle.unconfigured:
        out.append("landing folders that are not configured districts (not read): "
                   + ", ".join(repr(n) for n in cycle.unconfigured))
    failed = [f"{r.job} {r.district_id}" for r in cycle.records if r.result.status == "failed"]
    out.append(f"FAILED: {', '.join(failed)}" if failed else "done.")
    return "\n".join(out)


def district_report(engine, district: District) -> str:
    """Students per type and band, the top apps by minutes, rows rejected at ingest."""
    table = dataframe_table(district.id, district.apps)
    with engine.connect() as conn:
        if existing_columns(conn, table.name) is None:
            return f"{district.id}: no table yet (run dailypull)"
        frame = read_frame(conn, select(table))
        summary = read_frame(conn, select(
            district_app_summary.c.window, district_app_summary.c.performance, district_app_summary.c.app,
            district_app_summary.c.students, district_app_summary.c.minutes, district_app_summary.c.share,
        ).where(district_app_summary.c.district_id == district.id))
        recs = read_frame(conn, select(recommendations).where(recommendations.c.district_id == district.id)
                          .order_by(recommendations.c.student_id, recommendations.c.rank))
        runs = read_frame(conn, select(model_runs).where(model_runs.c.district_id == district.id))
        effects = read_frame(conn, select(app_effects).where(app_effects.c.district_id == district.id)
                             .order_by(app_effects.c.effect.desc()))
        reasons = read_frame(conn, select(recommendation_reasons)
                             .where(recommendation_reasons.c.district_id == district.id))
        files = conn.execute(
            select(ingested_files.c.status, func.count(), func.sum(ingested_files.c.rows_loaded),
                   func.sum(ingested_files.c.rows_rejected))
            .where(ingested_files.c.district_id == district.id)
            .group_by(ingested_files.c.status).order_by(ingested_files.c.status)
        ).all()
    out = [f"{printable(district.name)} ({district.id}): {plural(len(frame), 'student')}"]
    crosstab = pd.crosstab(
        frame["type"].map(TYPE_NAMES).fillna("none"),
        frame["performance"].fillna("no band"),
    )
    crosstab = crosstab.reindex(columns=[b for b in (*BAND_ORDER, "no band") if b in crosstab.columns])
    out.append(_indent(crosstab.to_string()))
    for band in ("all", *BAND_ORDER):
        top = _top_apps(summary, "year_to_date", band)
        label = "all students" if band == "all" else f"{band} students"
        if band == "all" or top:
            out.append(f"  top apps this school year, {label}: {top or 'no usage (run most_used)'}")
    out.extend(_recommendation_lines(recs, runs, effects, reasons))
    for status, count, loaded, rejected in files:
        out.append(f"  files {status}: {count}, rows loaded {loaded or 0:,}, rows rejected {rejected or 0:,}")
    return "\n".join(out)


def _top_apps(summary: pd.DataFrame, window: str, band: str, n: int = 4) -> str:
    rows = summary.loc[(summary["window"] == window) & (summary["performance"] == band)]
    rows = rows.sort_values(["minutes", "app"], ascending=[False, True]).head(n)
    return ", ".join(f"{r.app} {_hours(r.minutes)} ({r.share:.0%}, {plural(int(r.students), 'student')})"
                     for r in rows.itertuples())


def _hours(minutes: float) -> str:
    return f"{minutes / 60:,.0f} h" if minutes >= 600 else f"{minutes / 60:.1f} h"


def _recommendation_lines(recs: pd.DataFrame, runs: pd.DataFrame, effects: pd.DataFrame,
                          reasons: pd.DataFrame) -> list[str]:
    if recs.empty and runs.empty:
        return ["  recommendations: none yet (run recommendations)"]
    runs = runs.loc[runs["as_of"] == runs["as_of"].max()] if len(runs) else runs
    gate = runs.loc[runs["basis"].isin(["model", "none"])]
    if gate.empty:
        gate = runs.loc[runs["basis"] == "unused"].sort_values("cv_mae").head(1)
    students = recs["student_id"].nunique()
    lines = [f"  recommendations: {plural(students, 'student')}, {plural(len(reasons), 'student')} without"
             + "".join(f"; {r.algorithm}: {r.verdict}" for r in gate.itertuples())]
    if len(recs):
        first = recs.iloc[0]
        lines.append(f"    evidence {first['evidence']}: {first['caveat']}; for {first['period_start']} to "
                     f"{first['period_end']}")
    for student, picks in list(recs.groupby("student_id", sort=True))[:3]:
        items = ", ".join(
            f"{p.app} {p.current_minutes:.0f} -> {p.suggested_minutes:.0f} min "
            f"(associated {p.expected_gain:+.1f} points, interval {p.gain_low:+.1f} to {p.gain_high:+.1f})"
            for p in picks.itertuples()
        )
        lines.append(f"    {printable(student)} ({picks['evidence'].iloc[0]} evidence): {items}")
    if len(reasons):
        counts = reasons["reason"].value_counts()
        lines.append("    without a recommendation: " + ", ".join(f"{n} {printable(why)}" for why, n in counts.items()))
    if len(effects):
        ranked = effects.assign(order=effects["status"].str.startswith("resolved").map({True: 0, False: 1}))
        top = ranked.sort_values(["order", "effect"], ascending=[True, False]).head(3)
        lines.append("  app effects (points per extra hour in the window before the assessment, adjusted; interval "
                     "corrected for the apps tested, clustered by school; evidence promising: associations, not "
                     "causes): " + ", ".join(
                         f"{e.app} {e.effect:+.2f} [{e.ci_low:+.2f}, {e.ci_high:+.2f}] {e.status}"
                         for e in top.itertuples()))
    return lines


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())
