"""The dashboard over real HTTP on loopback (uvicorn), after a cycle: every JSON endpoint, the
pages, hostile student ids rendered as text, run now refused without the token (issue 21, in
progress: the browser tests with Debian's chromium come next)."""
import json
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import date

import pytest

import config
from runner.cycle import run_cycle

pytestmark = pytest.mark.slow


@pytest.fixture
def site(engine, tmp_path, monkeypatch):
    import uvicorn

    from service import web

    monkeypatch.setenv("ANALYTICS_WEB_TOKEN", "web-token-7c1d")
    folder = tmp_path / "landing" / "alpha"
    folder.mkdir(parents=True)
    (folder / "usage.csv").write_text("student_id,app,date,minutes\n<script>alert(1)</script>,ixl,2026-11-02,30\n"
                                      "=cmd|' /C calc'!A0,ixl,2026-11-03,5\n")
    (folder / "assessments.csv").write_text("student_id,assessment_id,date,score\n<script>alert(1)</script>,a1,2026-11-04,91\n")
    chosen = config.parse({"districts": [{"id": "alpha", "apps": ["ixl"]}]})
    run_cycle(engine, chosen, districts=list(chosen.districts), jobs=["ingest", "dailypull", "most_used"],
              as_of=date(2026, 11, 20), landing_dir=tmp_path / "landing")
    started = []

    def start_cycle(force):  # "run now": a real cycle, recorded in job_runs like any other
        run_cycle(engine, chosen, districts=list(chosen.districts), jobs=["dailypull"], as_of=date(2026, 11, 20),
                  landing_dir=tmp_path / "landing", force=force)
        started.append(force)

    app = web.create_app(engine, chosen, today=date(2026, 11, 20), start_cycle=start_cycle)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60  # a hang guard
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", started
    server.should_exit = True
    thread.join(timeout=60)


def get(url):
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.status, response.headers.get("content-type"), response.read().decode()


def test_every_json_endpoint_and_page(site):
    base, _ = site
    status, kind, body = get(f"{base}/api/operations")
    assert status == 200 and kind.startswith("application/json")
    data = json.loads(body)
    assert data["districts"][0]["district_id"] == "alpha" and data["cycles"]
    district = json.loads(get(f"{base}/api/district/alpha")[2])
    assert {r["student_id"] for r in district["students"]} == {"<script>alert(1)</script>", "=cmd|' /C calc'!A0"}
    assert district["bands"] == [{"type": "1 assessment", "performance": "excellent", "students": 1},
                                 {"type": "none", "performance": "no band", "students": 1}]
    assert [(w["app"], w["minutes"]) for w in district["weekly"]] == [("ixl", 35.0)]
    assert {(m["window"], m["performance"], m["app"]) for m in district["most_used"]} >= {("year_to_date", "all", "ixl")}
    assert {s["student_id"]: s["top_apps"] for s in district["students"]}["=cmd|' /C calc'!A0"] == "ixl"
    for path in ("/", "/district/alpha"):
        status, kind, page = get(base + path)
        assert status == 200 and kind.startswith("text/html") and "http" not in page.split("<body>")[0]
    with pytest.raises(urllib.error.HTTPError) as missing:
        get(f"{base}/api/district/nowhere")
    assert missing.value.code == 404


def test_hostile_ids_render_as_text(site):
    base, _ = site
    page = get(f"{base}/district/alpha")[2]
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    found = get(f"{base}/district/alpha?q=" + urllib.parse.quote("<script>"))[2]
    assert "Students (1;" in found and 'value="&lt;script&gt;"' in found


def test_run_now_needs_the_token_and_the_csrf_value(site):
    base, started = site
    page = get(base + "/")[2]
    csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]

    def post(fields):
        request = urllib.request.Request(f"{base}/run", data=urllib.parse.urlencode(fields).encode(), method="POST")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    assert post({"token": "wrong", "csrf": csrf, "force": "0"}) == 403
    assert post({"token": "web-token-7c1d", "csrf": "forged.value", "force": "0"}) == 403
    assert started == []
    assert post({"token": "web-token-7c1d", "csrf": csrf, "force": "1"}) == 200  # 303 followed to the page
    deadline = time.monotonic() + 60
    while not started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert started == [True]


def test_a_cycles_page_and_csv_downloads_that_cannot_run_formulas(site):
    base, _ = site
    cycle_id = json.loads(get(f"{base}/api/operations")[2])["cycles"][0]["cycle_id"]
    assert f'href="/cycle/{cycle_id}"' in get(base + "/")[2]
    jobs = json.loads(get(f"{base}/api/cycle/{cycle_id}")[2])
    assert [(j["job"], j["status"]) for j in jobs] == [("ingest", "succeeded"), ("dailypull", "succeeded"),
                                                      ("most_used", "succeeded")]
    assert "Jobs and messages" in get(f"{base}/cycle/{cycle_id}")[2]
    status, kind, text = get(f"{base}/district/alpha/students.csv")
    assert kind.startswith("text/csv") and "\"'=cmd|' /C calc'!A0\"" in text or "'=cmd|" in text
    assert "\n=cmd" not in text


def test_the_pages_read_through_the_read_only_dashboard_role(pg_url, tmp_path):
    """On PostgreSQL the pages read with deploy/dashboard_role.sql's role, which can write nothing."""
    import subprocess
    import uuid
    from pathlib import Path
    from urllib.parse import unquote

    import sqlalchemy as sa

    from service import web
    from storage import database

    schema = unquote(pg_url.split("search_path%3D")[1])
    role = f"dash_{uuid.uuid4().hex[:8]}"
    owner = database.connect(pg_url)
    folder = tmp_path / "landing" / "alpha"
    folder.mkdir(parents=True)
    (folder / "usage.csv").write_text("student_id,app,date,minutes\ns1,ixl,2026-11-02,30\n")
    chosen = config.parse({"districts": [{"id": "alpha", "apps": ["ixl"]}]})
    run_cycle(owner, chosen, districts=list(chosen.districts), jobs=["ingest", "dailypull"], as_of=date(2026, 11, 20),
              landing_dir=tmp_path / "landing")
    url = owner.url.set(drivername="postgresql", query={}).render_as_string(hide_password=False)
    done = subprocess.run(["psql", url, "-q", "-v", f"dashboard={role}", "-v", "password=dash-pw", "-v",
                           f"schema={schema}", "-f", str(Path(__file__).resolve().parents[2] / "deploy/dashboard_role.sql")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    reader = sa.create_engine(pg_url + f"%20-crole%3D{role}")
    try:
        app = web.create_app(reader, chosen, today=date(2026, 11, 20))
        with reader.connect() as conn:
            assert conn.execute(sa.text("select current_user")).scalar() == role
        import asyncio

        async def fetch(path):
            scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(), "query_string": b"",
                     "headers": [], "root_path": "", "scheme": "http", "server": ("test", 80), "client": ("t", 1)}
            sent = []

            async def receive():
                return {"type": "http.request", "body": b"", "more_body": False}

            async def send(message):
                sent.append(message)

            await app(scope, receive, send)
            return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])

        for path in ("/api/operations", "/api/district/alpha", "/", "/district/alpha"):
            status_code, body = asyncio.run(fetch(path))
            assert status_code == 200, (path, body[:300])
    finally:
        reader.dispose()
        with owner.begin() as conn:
            conn.execute(sa.text(f'DROP OWNED BY "{role}"'))
            conn.execute(sa.text(f'DROP ROLE "{role}"'))
        owner.dispose()
