"""The dashboard (issue 21, in progress): server-rendered pages and a JSON API with the same
data, on Starlette with Jinja2 (autoescaped: every value renders as text), charts drawn on
the server as SVG by matplotlib, each with its table beside it. Nothing is loaded from
elsewhere: no script, font or stylesheet leaves the app.

Read-only by default; "run now" needs ANALYTICS_WEB_TOKEN and a POST carrying the page's
CSRF token (a signed value bound to the token), and starts a cycle through the same claims
and locks as any other instance.
"""
from __future__ import annotations

import hashlib
import hmac
import io
import os
import secrets
import threading
from datetime import date

import pandas as pd
from jinja2 import Environment, select_autoescape
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from analytics import dashboard
from analytics.printable import spreadsheet_cell
from config import Settings
from models import (app_effects, dataframe_table, district_app_summary, most_used_software, recommendations,
                    usage_weekly)
from service import status
from storage.ddl import existing_columns
from storage.frames import read_frame

_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}td,th{border:1px solid #ccc;
padding:2px 6px;text-align:left}figure{display:inline-block;vertical-align:top;margin:0 2em 1em 0}</style></head>
<body><h1>{{ title }}</h1><nav><a href="/">Operations</a>{% for d in districts %} · <a href="/district/{{ d }}">{{ d }}</a>{% endfor %}</nav>
{{ body }}</body></html>"""

_ICON = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" fill="#2a6"/>'
         '<rect x="3" y="8" width="2" height="5" fill="#fff"/><rect x="7" y="5" width="2" height="8" fill="#fff"/>'
         '<rect x="11" y="3" width="2" height="10" fill="#fff"/></svg>')
_ENV = Environment(autoescape=select_autoescape(default=True, default_for_string=True))


def _table(frame: pd.DataFrame, caption: str, csv: str | None = None, links: dict[str, str] | None = None) -> str:
    """An HTML table of a frame, every cell escaped; `csv`: the address of its CSV download;
    `links`: column -> the address a cell's value is appended to (the cell stays text)."""
    template = _ENV.from_string(
        "<table><caption>{{ caption }}{% if csv %} (<a href=\"{{ csv }}\">CSV</a>){% endif %}</caption><tr>"
        "{% for c in columns %}<th>{{ c }}</th>{% endfor %}</tr>{% for row in rows %}<tr>{% for c, v in row %}<td>"
        "{% if c in links and v != '' %}<a href=\"{{ links[c] }}{{ v | urlencode }}\">{{ v }}</a>{% else %}{{ v }}"
        "{% endif %}</td>{% endfor %}</tr>{% endfor %}</table>")
    columns = list(frame.columns)
    return template.render(caption=caption, csv=csv, columns=columns, links=links or {},
                           rows=[list(zip(columns, [_cell(v) for v in r])) for r in frame.itertuples(index=False)])


def _cell(value):
    """A cell as shown: nothing for a missing value, numbers with at most 2 decimals."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    if isinstance(value, float):
        return f"{value:,.2f}".rstrip("0").rstrip(".") if value != int(value) else f"{int(value):,}"
    return value


def csv_text(frame: pd.DataFrame) -> str:
    """A frame as CSV for a spreadsheet: a text cell starting with =, +, -, @, TAB or CR (a
    formula) gets a leading apostrophe so it is shown, never run, and control characters
    (an ANSI escape, a newline) are written escaped (analytics.printable)."""
    out = frame.astype(object).where(frame.notna(), "")
    out = out.map(spreadsheet_cell)
    out.columns = [spreadsheet_cell(str(c)) for c in out.columns]
    return out.to_csv(index=False)


def _svg(draw) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text: readable, and checkable against the table
    figure, axes = plt.subplots(figsize=(6, 3.2))
    try:
        draw(axes)
        figure.tight_layout()
        out = io.StringIO()
        figure.savefig(out, format="svg")
        return out.getvalue()
    finally:
        plt.close(figure)


def csrf_token(token: str, nonce: str) -> str:
    return nonce + "." + hmac.new(token.encode(), nonce.encode(), hashlib.sha256).hexdigest()


def csrf_ok(token: str, value: str) -> bool:
    nonce, _, _ = value.partition(".")
    return bool(nonce) and hmac.compare_digest(csrf_token(token, nonce), value)


def create_app(engine, settings: Settings, *, today: date, start_cycle=None) -> Starlette:
    """The app, reading through `engine` (on PostgreSQL, the read-only dashboard role's:
    deploy/dashboard_role.sql). `start_cycle(force)` starts a cycle (in the background, with
    the service's own connection); None: no run buttons work."""
    names = [d.id for d in settings.districts]
    token = os.environ.get("ANALYTICS_WEB_TOKEN") or None

    def page(title: str, body: str) -> HTMLResponse:
        from markupsafe import Markup

        return HTMLResponse(_ENV.from_string(_PAGE).render(title=title, districts=names, body=Markup(body)))

    def operations(request: Request):
        data = status.collect(engine, settings, today=today)
        if request.url.path.startswith("/api/"):
            return JSONResponse(_plain(data))
        cycles = pd.DataFrame(data["cycles"], columns=["cycle_id", "started_at", "finished_at", "seconds", "status",
                                                       "rows_in", "rows_out", "rows_rejected"])
        freshness = pd.DataFrame(data["districts"], columns=["district_id", "enabled", "state", "newest_data_day",
                                                             "last_successful_dailypull"])
        failed = pd.DataFrame(data["failed_files"], columns=["district_id", "path", "error"])
        sources = pd.DataFrame(data["sources"], columns=["district_id", "source", "type", "last_fetched_at",
                                                         "last_status", "bytes_this_month", "monthly_limit", "error"])
        sync, volume = _sync_and_volume(engine, today)
        parts = [f"<p>Next scheduled run: {_ENV.from_string('{{ v }}').render(v=next_run(settings, today))} "
                 "(schedule.daily_at, UTC)</p>",
                 _table(cycles, "Last cycles", links={"cycle_id": "/cycle/"}), _table(freshness, "Districts"),
                 _table(failed, "Files that failed"), _table(sources, "Sources (fetch)")]
        if len(sync):
            def heat(axes):
                grid = sync.pivot(index="school", columns="day", values="seen").astype(float)
                axes.imshow(grid.to_numpy(), aspect="auto", cmap="Greens", vmin=0, vmax=1)
                axes.set_yticks(range(len(grid.index)), grid.index)
                axes.set_xticks(range(0, grid.shape[1], 5), [str(d) for d in grid.columns[::5]])
                axes.set_xlabel(f"day of {today:%B %Y} (UTC): a file or a heartbeat")

            parts += [f"<figure>{_svg(heat)}<figcaption>Each school's sync days this month</figcaption></figure>",
                      _table(sync.loc[sync["seen"]].groupby("school").size().rename("days seen").reset_index(),
                             "Days with a file or heartbeat this month")]
        if len(volume):
            limits = {d.id: d.fetch_monthly_bytes for d in settings.districts}
            shown = volume.assign(limit=volume["district_id"].map(limits))
            parts.append(_table(shown, "Data received per month and district (limit: fetch_monthly_bytes)"))
        body = "".join(parts)
        if token:
            nonce = secrets.token_hex(8)
            body += _ENV.from_string(
                '<form method="post" action="/run"><input type="hidden" name="csrf" value="{{ csrf }}">'
                '<input type="password" name="token" placeholder="token"><button name="force" value="0">Run now'
                '</button><button name="force" value="1">Run now, force</button></form>').render(
                csrf=csrf_token(token, nonce))
        return page("Operations", body)

    def cycle_page(request: Request):
        from models import job_runs

        cycle_id = request.path_params["cycle_id"]
        with engine.connect() as conn:
            jobs = read_frame(conn, select(job_runs.c.job, job_runs.c.district_id, job_runs.c.status,
                                           job_runs.c.started_at, job_runs.c.finished_at, job_runs.c.rows_in,
                                           job_runs.c.rows_out, job_runs.c.rows_rejected, job_runs.c.message)
                              .where(job_runs.c.cycle_id == cycle_id).order_by(job_runs.c.run_id))
        if jobs.empty:
            return PlainTextResponse("no such cycle", status_code=404)
        if request.url.path.startswith("/api/"):
            return JSONResponse(_plain(jobs.to_dict("records")))
        return page(f"Cycle {cycle_id}", _table(jobs, "Jobs and messages"))

    def district_csv(request: Request):
        found = district_data(request.path_params["district_id"])
        name = request.path_params["table"]
        if found is None or name not in ("students", "bands", "weekly", "effects", "recommendations", "most_used"):
            return PlainTextResponse("no such table", status_code=404)
        return Response(csv_text(found[name]), media_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})

    def district_data(district_id: str):
        district = next((d for d in settings.districts if d.id == district_id), None)
        if district is None:
            return None
        table = dataframe_table(district.id, district.apps)
        with engine.connect() as conn:
            students = (read_frame(conn, select(table.c.student_id, table.c.type, table.c.performance,
                                                table.c.total_minutes).order_by(table.c.student_id))
                        if existing_columns(conn, table.name) is not None else
                        pd.DataFrame(columns=["student_id", "type", "performance", "total_minutes"]))
            used = read_frame(conn, select(district_app_summary.c.window, district_app_summary.c.performance,
                                           district_app_summary.c.app, district_app_summary.c.students,
                                           district_app_summary.c.minutes, district_app_summary.c.share).where(
                district_app_summary.c.district_id == district.id).order_by(
                district_app_summary.c.window, district_app_summary.c.performance, district_app_summary.c.minutes.desc()))
            top = read_frame(conn, select(most_used_software.c.student_id, most_used_software.c.rank,
                                          most_used_software.c.app).where(
                most_used_software.c.district_id == district.id, most_used_software.c.window == "year_to_date")
                .order_by(most_used_software.c.student_id, most_used_software.c.rank))
            recs = read_frame(conn, select(recommendations.c.student_id, recommendations.c.rank, recommendations.c.app,
                                           recommendations.c.expected_gain, recommendations.c.gain_low,
                                           recommendations.c.gain_high, recommendations.c.basis).where(
                recommendations.c.district_id == district.id).order_by(recommendations.c.student_id,
                                                                       recommendations.c.rank))
            weekly = read_frame(conn, select(usage_weekly.c.week_start, usage_weekly.c.app, usage_weekly.c.students,
                                             usage_weekly.c.minutes).where(usage_weekly.c.district_id == district.id))
            effects = read_frame(conn, select(app_effects).where(app_effects.c.district_id == district.id))
        bands = list(district.bands)
        if len(top):
            apps = top.groupby("student_id")["app"].agg(", ".join).rename("top_apps")
            students = students.merge(apps, left_on="student_id", right_index=True, how="left")
        return {"district": district, "students": students, "recommendations": recs, "most_used": used,
                "bands": dashboard.students_by_type_and_band(students, bands),
                "weekly": dashboard.weekly_by_app(weekly),
                "effects": dashboard.forest(effects) if len(effects) else effects}

    def district_page(request: Request):
        found = district_data(request.path_params["district_id"])
        if found is None:
            return PlainTextResponse("no such district", status_code=404)
        if request.url.path.startswith("/api/"):
            return JSONResponse({k: _plain(v.to_dict("records")) for k, v in found.items() if k != "district"})
        bands = found["bands"]

        def bars(axes):
            pivot = bands.pivot_table(index="type", columns="performance", values="students", aggfunc="sum",
                                      fill_value=0)
            pivot.plot.bar(ax=axes, stacked=True, rot=0)
            for x, total in enumerate(pivot.sum(axis=1)):  # each bar's total, the same as its rows in the table
                axes.text(x, total, f"{int(total)}", ha="center", va="bottom", fontsize="small", gid=f"total-{x}")
            axes.set_ylabel("students")
            axes.set_xlabel("")
            axes.set_xticks(range(len(pivot.index)), [t.replace(" ", "\n", 1) for t in pivot.index])  # no overlap
            axes.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1))

        weekly, effects = found["weekly"], found["effects"]

        def lines(axes):
            for app, rows in weekly.groupby("app"):
                axes.plot(pd.to_datetime(rows["week_start"]), rows["minutes"], marker="o", label=app)
            axes.set_ylabel("minutes a week")
            axes.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1))
            axes.tick_params(axis="x", labelrotation=30, labelsize="small")

        def forest_plot(axes):
            shown = effects.loc[effects["estimated"]]
            y = range(len(shown))
            axes.errorbar(shown["effect"], list(y), xerr=[shown["effect"] - shown["ci_low"],
                                                          shown["ci_high"] - shown["effect"]], fmt="o")
            axes.set_yticks(list(y), shown["app"])
            axes.axvline(0, color="grey", linewidth=0.8)
            axes.set_xlabel("points per extra hour (corrected interval)")
            axes.set_title("associations, not causes", fontsize="small")

        query = request.query_params.get("q", "")
        students = found["students"]
        if query:
            students = students.loc[students["student_id"].astype(str).str.contains(query, regex=False)]
        here = f"/district/{found['district'].id}"
        parts = [f'<figure>{_svg(bars) if len(bands) else ""}<figcaption>Students by type and band</figcaption>'
                 f'</figure>', _table(bands, "Students by type and band", csv=f"{here}/bands.csv")]
        used = found["most_used"]
        if len(used):
            overall = used.loc[(used["performance"] == "all") & (used["window"] == "year_to_date")].head(10)

            def most(axes):
                axes.barh(list(overall["app"])[::-1], list(overall["minutes"])[::-1])
                axes.set_xlabel("minutes, year to date")

            if len(overall):
                parts.append(f"<figure>{_svg(most)}<figcaption>Most used software, year to date</figcaption></figure>")
            parts.append(_table(used, "Most used software overall (all) and per band, year to date and per window",
                                csv=f"{here}/most_used.csv"))
        if len(weekly):
            parts += [f"<figure>{_svg(lines)}<figcaption>Use over time by app (weekly)</figcaption></figure>",
                      _table(weekly, "Use over time by app (weekly)", csv=f"{here}/weekly.csv")]
        if len(effects) and effects["estimated"].any():
            parts += [f"<figure>{_svg(forest_plot)}<figcaption>App effects: associations, not causes</figcaption>"
                      "</figure>", _table(effects[["app", "effect", "ci_low", "ci_high", "students", "status"]],
                                          "App effects (associations, not causes)", csv=f"{here}/effects.csv")]
        parts.append(_ENV.from_string('<form method="get"><input name="q" value="{{ q }}" placeholder="student id">'
                                      '<button>Search</button></form>').render(q=query))
        parts.append(_table(students.head(500), f"Students ({len(students):,}; the first 500 shown)",
                            csv=f"{here}/students.csv"))
        parts.append(_table(found["recommendations"].loc[found["recommendations"]["student_id"].isin(
            students["student_id"].head(500))], "Recommendations (expected gain: an associated difference)"))
        return page(found["district"].name, "".join(parts))

    async def run(request: Request):
        if not token:
            return PlainTextResponse("run now is off: set ANALYTICS_WEB_TOKEN", status_code=403)
        form = await request.form()
        if not hmac.compare_digest(str(form.get("token", "")), token) or not csrf_ok(token, str(form.get("csrf", ""))):
            return PlainTextResponse("refused: a wrong token or CSRF value", status_code=403)
        if start_cycle is None:
            return PlainTextResponse("no cycle runner here", status_code=503)
        threading.Thread(target=start_cycle, args=(form.get("force") == "1",), daemon=True).start()
        return RedirectResponse("/", status_code=303)

    return Starlette(routes=[
        Route("/", operations), Route("/api/operations", operations),
        Route("/district/{district_id}", district_page), Route("/api/district/{district_id}", district_page),
        Route("/run", run, methods=["POST"]),
        Route("/cycle/{cycle_id}", cycle_page), Route("/api/cycle/{cycle_id}", cycle_page),
        Route("/district/{district_id}/{table}.csv", district_csv),
        Route("/favicon.ico", lambda request: svg_response(_ICON)),  # served here: the browser asks for it
    ])


def next_run(settings: Settings, today: date) -> str:
    """The next daily_at (UTC) after now, or on `today` when the service's day is pinned."""
    from datetime import datetime, timedelta, timezone

    hours, minutes = (int(x) for x in settings.daily_at.split(":"))
    now = datetime.now(timezone.utc)
    at = datetime(today.year, today.month, today.day, hours, minutes, tzinfo=timezone.utc)
    while at <= now and today >= now.date():
        at += timedelta(days=1)
    return at.strftime("%Y-%m-%d %H:%M")


def _sync_and_volume(engine, today: date) -> tuple[pd.DataFrame, pd.DataFrame]:
    import calendar

    from models import ingested_files, school_heartbeats

    start = today.replace(day=1)
    with engine.connect() as conn:
        files = read_frame(conn, select(ingested_files.c.district_id, ingested_files.c.school,
                                        ingested_files.c.arrived_at, ingested_files.c.bytes))
        beats = read_frame(conn, select(school_heartbeats.c.school_id.label("school"), school_heartbeats.c.seen_at))
    known = files.dropna(subset=["school"])
    sync = dashboard.sync_days(known[["school", "arrived_at"]], beats, start, calendar.monthrange(today.year,
                                                                                                   today.month)[1])
    return sync, dashboard.monthly_volume(files[["district_id", "arrived_at", "bytes"]])


def _plain(value):
    """JSON-ready: dates and timestamps as ISO text, NaN as null."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value != value:
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    return value


def svg_response(svg: str) -> Response:
    return Response(svg, media_type="image/svg+xml")
