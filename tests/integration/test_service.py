"""The service: catch-up with a controllable clock, failures that do not stop it, shards,
health, and notifications delivered to real servers on 127.0.0.1."""
from __future__ import annotations

import json
import threading
from datetime import date, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from sqlalchemy import func, select

import config
from service import notify
from service import serve as service
from jobs import JOBS, dailypull
from runner.cycle import in_shard, run_cycle
from models import job_runs

pytestmark = pytest.mark.slow

UTC = timezone.utc
CONFIG = "districts:\n  - id: alpha\n    apps: [ixl]\n  - id: beta\n    apps: [ixl]\n"


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def place(tmp_path):
    (tmp_path / "districts.yaml").write_text(CONFIG)
    for district in ("alpha", "beta"):
        (tmp_path / "landing" / district).mkdir(parents=True)
        (tmp_path / "landing" / district / "usage.csv").write_text(
            "student_id,app,date,minutes\ns1,ixl,2026-11-20,30\n")
    return tmp_path


def cycles(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count(job_runs.c.cycle_id.distinct()))).scalar_one()


def make(engine, place, clock, **kw):
    return service.Service(engine, place / "districts.yaml", place / "landing", clock=clock,
                           heartbeat=place / "beat", **kw)


def test_last_scheduled_time():
    assert service.last_scheduled(datetime(2026, 11, 22, 1, 59, tzinfo=UTC), "02:00") == datetime(2026, 11, 21, 2, tzinfo=UTC)
    assert service.last_scheduled(datetime(2026, 11, 22, 2, 0, tzinfo=UTC), "02:00") == datetime(2026, 11, 22, 2, tzinfo=UTC)


def test_catch_up_after_downtime_runs_exactly_once(engine, place):
    clock = Clock(datetime(2026, 11, 21, 2, 0, 5, tzinfo=UTC))
    svc = make(engine, place, clock)
    assert svc.catch_up() and cycles(engine) == 1  # first start: nothing succeeded yet
    clock.now = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)  # down for four scheduled cycles
    assert svc.catch_up() and cycles(engine) == 2
    clock.now += timedelta(hours=1)  # restarted again the same morning: nothing is due
    assert not svc.catch_up() and cycles(engine) == 2
    clock.now = datetime(2026, 11, 26, 2, 0, 30, tzinfo=UTC)  # the next scheduled time has passed
    assert svc.catch_up() and cycles(engine) == 3


def test_a_failing_job_leaves_the_other_districts_and_the_loop_running(engine, place, monkeypatch):
    real = dailypull.run

    def broken_for_alpha(engine_, district, ctx):
        if district.id == "alpha":
            raise RuntimeError("disk on fire")
        return real(engine_, district, ctx)

    monkeypatch.setitem(JOBS, "dailypull", broken_for_alpha)
    svc = make(engine, place, Clock(datetime(2026, 11, 22, 3, tzinfo=UTC)))
    cycle = svc.cycle()
    status = {(r.job, r.district_id): r.result.status for r in cycle.records}
    assert status[("dailypull", "alpha")] == "failed" and status[("most_used", "alpha")] == "skipped"
    assert all(status[(job, "beta")] == "succeeded" for job in ("ingest", "dailypull", "most_used"))

    def no_database(*args, **kwargs):
        raise ConnectionError("database gone")

    monkeypatch.setattr(service, "run_cycle", no_database)
    assert svc.cycle() is None  # logged; the loop goes on


def test_shards_split_districts_deterministically():
    ids = [f"district_{i}" for i in range(60)]
    shards = [[d for d in ids if in_shard(d, (i, 3))] for i in (1, 2, 3)]
    assert sorted(sum(shards, [])) == sorted(ids)  # every district in exactly one shard
    assert all(len(s) >= 10 for s in shards)
    assert shards[0] == [d for d in ids if in_shard(d, (1, 3))]  # the same split every time


def test_health(engine, place):
    heartbeat = place / "beat"
    healthy, why = service.health(engine, heartbeat)
    assert not healthy and "no cycle succeeded" in why and "no heartbeat file" in why
    svc = make(engine, place, Clock(datetime.now(UTC)))
    svc.cycle()
    assert service.health(engine, heartbeat)[0]
    later = datetime.now(UTC) + timedelta(hours=27)
    healthy, why = service.health(engine, heartbeat, now=later)
    assert not healthy and "no cycle succeeded within 26 hours" in why and "looks stuck" in why


# --- notifications ----------------------------------------------------------------------

def failed_cycle(engine, place, monkeypatch):
    monkeypatch.setitem(JOBS, "dailypull", lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))
    s = config.load(place / "districts.yaml")
    return run_cycle(engine, s, districts=list(s.districts)[:1], jobs=["ingest", "dailypull"],
                     as_of=date(2026, 11, 22), landing_dir=place / "landing")


@pytest.fixture
def webhook():
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()


@pytest.fixture
def smtp_server():
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Sink

    messages = []

    class Keep(Sink):
        async def handle_DATA(self, server, session, envelope):
            messages.append(envelope)
            return "250 OK"

    import socket

    with socket.socket() as probe:  # aiosmtpd checks readiness on the port it was given
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Keep(), hostname="127.0.0.1", port=port)
    controller.start()
    yield f"smtp://127.0.0.1:{port}", messages
    controller.stop()


def test_a_failed_cycle_is_posted_and_mailed(engine, place, monkeypatch, webhook, smtp_server):
    url, received = webhook
    smtp_url, messages = smtp_server
    cycle = failed_cycle(engine, place, monkeypatch)
    sent = notify.notify(cycle, env={"ANALYTICS_WEBHOOK_URL": url, "ANALYTICS_SMTP_URL": smtp_url,
                                     "ANALYTICS_NOTIFY_TO": "ops@district.example, data@district.example"})
    assert sent == ["webhook: sent", "email: sent"]
    [payload] = received
    assert payload["status"] == "failed" and payload["cycle_id"] == cycle.cycle_id
    assert {(j["job"], j["status"]) for j in payload["jobs"]} == {("ingest", "succeeded"), ("dailypull", "failed")}
    [mail] = messages
    assert sorted(mail.rcpt_tos) == ["data@district.example", "ops@district.example"]
    assert f"cycle {cycle.cycle_id} failed" in mail.content.decode()


def test_a_successful_cycle_notifies_only_when_asked(engine, place, webhook):
    url, received = webhook
    s = config.load(place / "districts.yaml")
    cycle = run_cycle(engine, s, districts=list(s.districts), jobs=["ingest"], as_of=date(2026, 11, 22),
                      landing_dir=place / "landing")
    assert notify.notify(cycle, env={"ANALYTICS_WEBHOOK_URL": url}) == []
    assert notify.notify(cycle, env={"ANALYTICS_WEBHOOK_URL": url, "ANALYTICS_NOTIFY": "always"}) == ["webhook: sent"]
    assert received[0]["status"] == "succeeded"


def test_an_undeliverable_notification_never_fails_the_cycle(engine, place, monkeypatch, caplog):
    cycle = failed_cycle(engine, place, monkeypatch)
    sent = notify.notify(cycle, env={"ANALYTICS_WEBHOOK_URL": "http://127.0.0.1:9/hook",
                                     "ANALYTICS_SMTP_URL": "smtp://mailer:s3cret-pw@127.0.0.1:9",
                                     "ANALYTICS_NOTIFY_TO": "ops@district.example"})
    assert sent == ["webhook: failed (URLError)", "email: failed (ConnectionRefusedError)"]
    assert "s3cret-pw" not in caplog.text and "mailer:***@127.0.0.1:9" in caplog.text


def test_serve_and_a_plain_cycle_take_the_same_as_of_day_for_the_same_moment(engine, place):
    late = datetime(2026, 11, 22, 23, 59, 30, tzinfo=UTC)  # an hour that is 'tomorrow' east of UTC
    from datetime import date, timedelta
    from runner.cycle import as_of_day

    assert as_of_day(late) == as_of_day(late.astimezone(timezone(timedelta(hours=9)))) == date(2026, 11, 22)
    served = make(engine, place, Clock(late)).cycle()
    assert served.as_of == as_of_day(late)


def test_serve_with_as_of_computes_every_cycle_as_of_that_day(engine, place):
    from datetime import date

    served = make(engine, place, Clock(datetime(2026, 12, 1, 2, tzinfo=UTC)), as_of=date(2026, 11, 22)).cycle()
    assert served.as_of == date(2026, 11, 22)
    with engine.connect() as conn:
        assert set(conn.execute(select(job_runs.c.as_of)).scalars()) == {date(2026, 11, 22)}
