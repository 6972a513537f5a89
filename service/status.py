"""`trigger.py --status`: what ran, what failed, which schools stopped syncing.

Like a device's sync page: the last cycles, each district's freshness, each school
folder's last file and volume this month and last month, and apps seen in usage that a
district does not list. `collect` returns plain data (for --json); `render` the text.
"""
from __future__ import annotations

from datetime import date, datetime, timezone

import pandas as pd
from sqlalchemy import func, select

from analytics import clix as clix_rules
from analytics.printable import printable
from config import Settings
from jobs import clix
from storage.frames import read_frame
from jobs.job import plural
from service.report import text_table
from models import ingested_files, job_runs, usage

SEVERITY = ["succeeded", "skipped", "running", "completed_with_errors", "failed"]  # worst last
CYCLES = 5


def _utc(value) -> datetime | None:
    if value is None or pd.isna(value):
        return None
    stamp = pd.Timestamp(value)
    return (stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")).to_pydatetime()


def _month_start(day: date, back: int = 0) -> date:
    year, month = day.year, day.month - back
    while month < 1:
        year, month = year - 1, month + 12
    return date(year, month, 1)


def collect(engine, settings: Settings, *, today: date, reminders: bool = False) -> dict:
    with engine.connect() as conn:
        runs = read_frame(conn, select(job_runs))
        files = read_frame(conn, select(ingested_files.c.file_id, ingested_files.c.district_id,
                                        ingested_files.c.path, ingested_files.c.school,
                                        ingested_files.c.bytes, ingested_files.c.arrived_at,
                                        ingested_files.c.status, ingested_files.c.error,
                                        ingested_files.c.started_at))
        newest = dict(conn.execute(select(usage.c.district_id, func.max(usage.c.date)).group_by(usage.c.district_id)).all())
        apps = conn.execute(select(usage.c.district_id, usage.c.app, func.count())
                            .group_by(usage.c.district_id, usage.c.app)).all()
    servers = _servers(engine, settings, today)
    sources = _sources(engine, settings, today)
    out = {
        "as_of": today.isoformat(),
        "cycles": _cycles(runs),
        "districts": _districts(settings, runs, newest, apps, files),
        "schools": _schools(settings, files, today),
        "failed_files": failed_files(files),
        "school_servers": servers,
        "sources": sources,
    }
    if reminders:
        out["reminders"] = _reminders(servers, today)
    return out


_ORDER = [clix_rules.SILENT, clix_rules.LATE, clix_rules.MISSED_FRIDAY, clix_rules.OK]


def _servers(engine, settings: Settings, today: date) -> list[dict]:
    """Each CLIx school server's sync health as of `today` (the school_sync rules)."""
    out = []
    for district in settings.districts:
        if district.source != "clix":
            continue
        with engine.connect() as conn:
            frame = clix.sync_frame(conn, district, today)
        for row in frame.to_dict("records"):
            out.append({"district_id": district.id, **{k: _plain(v) for k, v in row.items()}})
    return out


def _sources(engine, settings: Settings, today: date) -> list[dict]:
    """Each fetch source: its last fetch (and its status), bytes this month and last month,
    its last error since it last fetched, and the district's monthly limit."""
    from jobs import fetch
    from models import fetch_ledger

    out = []
    moment = datetime(today.year, today.month, today.day, tzinfo=timezone.utc)
    this_month, last_month = fetch.month_start(moment), fetch.month_start(moment, 1)
    with engine.connect() as conn:
        for district in settings.districts:
            for source in district.sources:
                def latest(*statuses):
                    return conn.execute(select(fetch_ledger.c.status, fetch_ledger.c.fetched_at, fetch_ledger.c.error)
                                        .where(fetch_ledger.c.district_id == district.id,
                                               fetch_ledger.c.source == source.name,
                                               fetch_ledger.c.status.in_(statuses))
                                        .order_by(fetch_ledger.c.id.desc()).limit(1)).first()

                ok = latest(fetch.FETCHED)
                last = latest(fetch.CHECKED, fetch.FAILED)  # each source run ends with one of these
                error = last if last is not None and last.error else None
                out.append({
                    "district_id": district.id, "source": source.name, "type": source.type,
                    "last_attempt_at": _plain(last.fetched_at) if last else None,
                    "last_status": last.status if last else None,
                    "last_fetched_at": _plain(ok.fetched_at) if ok else None,
                    "bytes_this_month": fetch.bytes_fetched(conn, district.id, this_month, source=source.name),
                    "bytes_last_month": fetch.bytes_fetched(conn, district.id, last_month, this_month,
                                                            source=source.name),
                    "monthly_limit": district.fetch_monthly_bytes,
                    "error": error.error if error else None,
                })
    return out


def _plain(value):
    if value is None or (not isinstance(value, (str, date)) and pd.isna(value)) or value is pd.NaT:
        return None
    if isinstance(value, (datetime, pd.Timestamp)):
        return _utc(value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value.item() if hasattr(value, "item") else value


def _reminders(servers: list[dict], today: date) -> dict:
    """The next 2nd or 4th Friday and every CLIx school to remind before it (the procedure
    reminds every school), the ones with a problem first, each with why."""
    friday = clix_rules.next_sync_friday(today)
    schools = sorted(servers, key=lambda s: (_ORDER.index(s["state"]), s["district_id"], s["school"]))
    return {"friday": friday.isoformat(), "days_until": (friday - today).days,
            "schools": [{"district_id": s["district_id"], "school": s["school"], "state": s["state"],
                         "why": _why(s)} for s in schools]}


def _why(s: dict) -> str:
    if s["state"] == clix_rules.SILENT:
        return "nothing received this month"
    if s["state"] == clix_rules.LATE:
        return (f"no file for {s['days_since_sync']} days" if s["days_since_sync"] is not None
                else "no file received yet")
    if s["state"] == clix_rules.MISSED_FRIDAY:
        missed = [s[f] for f, seen in (("second_friday", "seen_second_friday"), ("fourth_friday", "seen_fourth_friday"))
                  if s[seen] == 0]
        return "server not seen on " + " and ".join(missed)
    return "on track: a routine reminder"


def failed_files(files: pd.DataFrame) -> list[dict]:
    """Files whose latest version failed to load (bad header, wrong key, truncated archive):
    listed until a version of the same path loads (or is recorded as a duplicate)."""
    if files.empty:
        return []
    # the latest attempt at each path: a retried failure updates its row (and started_at) in place
    latest = files.assign(tried=files["started_at"].map(_utc)).sort_values(["tried", "file_id"]) \
        .drop_duplicates(["district_id", "path"], keep="last")
    failed = latest.loc[latest["status"] == "failed"].sort_values(["district_id", "path"])
    return [{"district_id": r.district_id, "path": r.path, "error": r.error,
             "since": _utc(r.arrived_at).isoformat() if _utc(r.arrived_at) else None}
            for r in failed.itertuples()]


def _cycles(runs: pd.DataFrame) -> list[dict]:
    if runs.empty:
        return []
    runs = runs.assign(started_at=runs["started_at"].map(_utc), finished_at=runs["finished_at"].map(_utc))
    out = []
    for cycle_id, jobs in runs.groupby("cycle_id"):
        started = min(jobs["started_at"])
        finished = None if jobs["finished_at"].isna().any() else max(jobs["finished_at"])
        worst = max(jobs["status"], key=lambda s: SEVERITY.index(s) if s in SEVERITY else 0)
        failed = jobs.loc[jobs["status"] == "failed"]
        out.append({
            "cycle_id": cycle_id,
            "started_at": started.isoformat(),
            "finished_at": finished.isoformat() if finished else None,
            "seconds": round((finished - started).total_seconds(), 1) if finished else None,
            "status": worst,
            "districts": int(jobs["district_id"].nunique()),
            "rows_in": int(jobs["rows_in"].fillna(0).sum()),
            "rows_out": int(jobs["rows_out"].fillna(0).sum()),
            "rows_rejected": int(jobs["rows_rejected"].fillna(0).sum()),
            "failed_jobs": [f"{r.job} {r.district_id}: {r.message}" for r in failed.itertuples()],
        })
    return sorted(out, key=lambda c: c["started_at"], reverse=True)[:CYCLES]


NO_DATA = "no data yet"


def _districts(settings: Settings, runs: pd.DataFrame, newest: dict, apps, files: pd.DataFrame) -> list[dict]:
    loaded = set(files.loc[files["status"] == "loaded", "district_id"]) if len(files) else set()
    out = []
    for district in settings.districts:
        done = runs.loc[(runs["district_id"] == district.id) & (runs["job"] == "dailypull")
                        & runs["status"].isin(["succeeded", "completed_with_errors"])] if len(runs) else runs
        last = max((_utc(v) for v in done["finished_at"]), default=None) if len(done) else None
        unlisted = {app: int(n) for d, app, n in apps if d == district.id and app not in district.apps}
        day = newest.get(district.id)
        out.append({
            "district_id": district.id,
            "enabled": district.enabled,
            # "no data yet" until a file of the district loads: a dailypull over nothing is no news
            "state": "receiving data" if district.id in loaded else NO_DATA,
            "last_successful_dailypull": last.isoformat() if last else None,
            "newest_data_day": pd.Timestamp(day).date().isoformat() if day is not None else None,
            "unlisted_apps": unlisted,
        })
    return out


def _schools(settings: Settings, files: pd.DataFrame, today: date) -> list[dict]:
    if files.empty:
        return []
    files = files.assign(arrived=pd.to_datetime(files["arrived_at"].map(_utc), utc=True),
                         school=files["school"].fillna("(district folder)"))
    this_month, last_month = pd.Timestamp(_month_start(today), tz="UTC"), pd.Timestamp(_month_start(today, 1), tz="UTC")
    out = []
    for district in settings.districts:
        mine = files.loc[files["district_id"] == district.id]
        for school, group in mine.groupby("school"):
            last = group["arrived"].max()
            now_part = group.loc[group["arrived"] >= this_month]
            before = group.loc[(group["arrived"] >= last_month) & (group["arrived"] < this_month)]
            age = (pd.Timestamp(today, tz="UTC") - last.normalize()).days
            out.append({
                "district_id": district.id,
                "school": school,
                "last_file_at": last.isoformat(),
                "files_this_month": len(now_part), "bytes_this_month": int(now_part["bytes"].sum()),
                "files_last_month": len(before), "bytes_last_month": int(before["bytes"].sum()),
                "days_since_last_file": int(age),
                "stale": bool(age >= district.stale_after_days),
            })
    return out


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _when(text: str | None) -> str:
    return text[:16].replace("T", " ") if text else "-"


def _friday(s: dict, which: str) -> str:
    seen = s[f"seen_{which}_friday"]
    return f"{s[f'{which}_friday'][5:]} " + ("to come" if seen is None else "seen" if seen else "NOT SEEN")


def render(data: dict) -> str:
    out = [f"Last cycles (as of {data['as_of']})"]
    rows = [[c["cycle_id"], _when(c["started_at"]), _when(c["finished_at"]),
             f"{c['seconds']:.0f} s" if c["seconds"] is not None else "running", c["status"], c["districts"],
             f"{c['rows_in']:,}", f"{c['rows_out']:,}", f"{c['rows_rejected']:,}", len(c["failed_jobs"])]
            for c in data["cycles"]]
    out.append(text_table(rows, ["cycle", "started (UTC)", "finished", "duration", "status", "districts",
                             "rows in", "rows out", "rows rejected", "failed jobs"])
               if rows else "  no cycle has run yet")
    for c in data["cycles"][:1]:
        out += [f"  {printable(e)}" for e in c["failed_jobs"]]
    out.append("\nDistricts")
    out.append(text_table([[d["district_id"], "yes" if d["enabled"] else "no", d["state"],
                        _when(d["last_successful_dailypull"]) if d["state"] != NO_DATA else "-",
                        d["newest_data_day"] or "-",
                        ", ".join(f"{a} ({plural(n, 'row')})" for a, n in d["unlisted_apps"].items()) or "-"]
                       for d in data["districts"]],
                      ["district", "enabled", "data", "last successful dailypull", "newest data day",
                       "apps in usage it does not list"]))
    if data["failed_files"]:
        out.append("\nFiles that failed to load (until a version of the same path loads)")
        out.append(text_table([[f["district_id"], f["path"], f["error"] or "-"] for f in data["failed_files"]],
                              ["district", "file", "why"]))
    if data.get("school_servers"):
        out.append(f"\nSchool servers (CLIx: on for 4 hours on the 2nd and 4th Fridays; 10-100 MB a month expected)")
        out.append(text_table([[s["district_id"], s["school"], s["state"], _when(s["last_heartbeat_at"]),
                                _when(s["last_sync_at"]), "-" if s["days_since_sync"] is None else s["days_since_sync"],
                                s["server_on_days"], _friday(s, "second"), _friday(s, "fourth"),
                                f"{_size(s['bytes_this_month'])} ({s['volume']})"]
                               for s in data["school_servers"]],
                              ["district", "school", "state", "last heartbeat (UTC)", "last sync (UTC)", "days since",
                               "days on this month", "2nd Friday", "4th Friday", "bytes this month"]))
    if data.get("sources"):
        out.append("\nSources (fetch)")
        out.append(text_table([[s["district_id"], s["source"], s["type"], _when(s["last_fetched_at"]),
                                s["last_status"] or "never tried", _size(s["bytes_this_month"]),
                                _size(s["bytes_last_month"]),
                                _size(s["monthly_limit"]) if s["monthly_limit"] else "none", s["error"] or "-"]
                               for s in data["sources"]],
                              ["district", "source", "type", "last fetch (UTC)", "last attempt", "bytes this month",
                               "last month", "monthly limit", "error"]))
    if "reminders" in data:
        r = data["reminders"]
        out.append(f"\nRemind before Friday {r['friday']} (in {r['days_until']} days)")
        out.append(text_table([[s["district_id"], s["school"], s["state"], s["why"]] for s in r["schools"]],
                              ["district", "school", "state", "why"]) if r["schools"] else "  no CLIx school")
    out.append("\nSchools")
    rows = [[s["district_id"], s["school"], _when(s["last_file_at"]), s["files_this_month"],
             _size(s["bytes_this_month"]), s["files_last_month"], _size(s["bytes_last_month"]),
             f"STALE ({s['days_since_last_file']} days)" if s["stale"] else ""]
            for s in data["schools"]]
    out.append(text_table(rows, ["district", "school", "last file", "files this month", "bytes",
                                 "files last month", "bytes", "stale"]) if rows else "  no file received yet")
    return "\n".join(out)
