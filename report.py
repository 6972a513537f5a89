"""Text for people: the end-of-cycle summary and a district's report (demo, onboarding)."""
from __future__ import annotations

import pandas as pd
from sqlalchemy import func, select

from analytics.bands import BAND_ORDER
from config import District
from database import existing_columns, read_frame
from jobs.cycle import CycleResult
from models import dataframe_table, ingested_files

TYPE_NAMES = {1: "1 assessment", 2: "2 forecast", 3: "3 this year's average", 4: "4 older average"}


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    lines = [header, *rows]
    return "\n".join("  ".join(str(v).ljust(w) for v, w in zip(line, widths)).rstrip() for line in lines)


def cycle_summary(cycle: CycleResult) -> str:
    rows = [
        [r.job, r.district_id, r.result.status, f"{r.seconds:.2f}", f"{r.result.rows_in:,}",
         f"{r.result.rows_out:,}", f"{r.result.rows_rejected:,}"]
        for r in cycle.records
    ]
    out = [f"cycle {cycle.cycle_id}, as of {cycle.as_of}"]
    out.append(_table(rows, ["job", "district", "status", "seconds", "rows in", "rows out", "rejected"]))
    for r in cycle.records:
        if r.result.message:
            out.append(f"  {r.job} {r.district_id}: {r.result.message}")
    rejected = sum(r.result.rows_rejected for r in cycle.records)
    if rejected:
        out.append(f"{rejected:,} rows quarantined: see the rejected_rows table (file, line, reason).")
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
        files = conn.execute(
            select(ingested_files.c.status, func.count(), func.sum(ingested_files.c.rows_loaded),
                   func.sum(ingested_files.c.rows_rejected))
            .where(ingested_files.c.district_id == district.id)
            .group_by(ingested_files.c.status).order_by(ingested_files.c.status)
        ).all()
    out = [f"{district.name} ({district.id}): {len(frame):,} students"]
    crosstab = pd.crosstab(
        frame["type"].map(TYPE_NAMES).fillna("none"),
        frame["performance"].fillna("no band"),
    )
    crosstab = crosstab.reindex(columns=[b for b in (*BAND_ORDER, "no band") if b in crosstab.columns])
    out.append(_indent(crosstab.to_string()))
    minutes = frame[[c for c in frame.columns if c.startswith("app_")]].sum().sort_values(ascending=False)
    total = minutes.sum()
    top = [f"{app[4:]} {m / 60:,.0f} h ({m / total:.0%})" for app, m in minutes.head(5).items()] if total else []
    out.append("  top apps this school year: " + (", ".join(top) or "no usage"))
    for status, count, loaded, rejected in files:
        out.append(f"  files {status}: {count}, rows loaded {loaded or 0:,}, rows rejected {rejected or 0:,}")
    return "\n".join(out)


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())
