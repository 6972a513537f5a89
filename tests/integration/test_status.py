"""--status on a known history, on SQLite and PostgreSQL."""
import json
from datetime import date, datetime, timezone

from sqlalchemy import insert

import config
from service import status
from models import ingested_files, job_runs, usage

UTC = timezone.utc


def history(engine):
    t = lambda d, h, m=0: datetime(2026, 11, d, h, m, tzinfo=UTC)  # noqa: E731
    runs = [
        ("c1", "ingest", "alpha", "succeeded", t(20, 2), t(20, 2, 1), 100, 98, 2, None),
        ("c1", "dailypull", "alpha", "succeeded", t(20, 2, 1), t(20, 2, 3), 10, 10, 0, None),
        ("c2", "ingest", "alpha", "completed_with_errors", t(21, 2), t(21, 2, 1), 50, 45, 5, "files: 1 failed"),
        ("c2", "dailypull", "alpha", "failed", t(21, 2, 1), t(21, 2, 2), 0, 0, 0, "OperationalError: gone"),
    ]
    files = [  # school, bytes, arrived
        ("north", 1000, datetime(2026, 10, 5, tzinfo=UTC)), ("north", 3000, datetime(2026, 11, 18, tzinfo=UTC)),
        ("south", 500, datetime(2026, 10, 30, tzinfo=UTC)), (None, 20, datetime(2026, 11, 1, tzinfo=UTC)),
    ]
    with engine.begin() as conn:
        conn.execute(insert(job_runs), [dict(cycle_id=c, job=j, district_id=d, status=s, started_at=a, finished_at=b,
                                             rows_in=i, rows_out=o, rows_rejected=r, message=m, host="h")
                                        for c, j, d, s, a, b, i, o, r, m in runs])
        conn.execute(insert(ingested_files), [dict(district_id="alpha", path=f"alpha/{n}.csv", school=s, sha256=str(n),
                                                   bytes=b, kind="usage", format=".csv", status="loaded",
                                                   rows_loaded=1, rows_rejected=0, arrived_at=a, started_at=a)
                                              for n, (s, b, a) in enumerate(files)])
        failed = [  # path, sha256, status, error: fixed.csv failed and then loaded; bad.csv still fails
            ("alpha/fixed.csv", "f1", "failed", "header has 'student;app'"), ("alpha/fixed.csv", "f2", "loaded", None),
            ("alpha/bad.csv", "b1", "failed", "truncated gzip"), ("alpha/bad.csv", "b2", "failed", "wrong key"),
        ]
        conn.execute(insert(ingested_files), [dict(district_id="alpha", path=p, school="east", sha256=h, bytes=1,
                                                   kind="usage", format=".csv", status=st, error=e, rows_loaded=0,
                                                   rows_rejected=0, arrived_at=t(20, 1), started_at=t(20, 2))
                                              for p, h, st, e in failed])
        conn.execute(insert(usage), [dict(district_id="alpha", student_id="s1", app=a, date=date(2026, 11, d),
                                          minutes=5, file_id=1) for a, d in (("ixl", 17), ("khan", 18), ("khan", 19))])


def test_status_on_a_known_history(engine):
    history(engine)
    settings = config.parse({"districts": [{"id": "alpha", "apps": ["ixl"], "stale_after_days": 10},
                                           {"id": "beta", "apps": ["ixl"], "enabled": False}]})
    data = status.collect(engine, settings, today=date(2026, 11, 22))
    c2, c1 = data["cycles"]
    assert (c2["cycle_id"], c2["status"], c2["rows_in"], c2["rows_rejected"], c2["seconds"]) == ("c2", "failed", 50, 5, 120.0)
    assert c2["failed_jobs"] == ["dailypull alpha: OperationalError: gone"]
    assert (c1["status"], c1["rows_out"], c1["districts"]) == ("succeeded", 108, 1)
    alpha, beta = data["districts"]
    assert alpha["last_successful_dailypull"].startswith("2026-11-20T02:03")  # c2's dailypull failed
    assert (alpha["newest_data_day"], alpha["unlisted_apps"]) == ("2026-11-19", {"khan": 2})
    assert (beta["enabled"], beta["last_successful_dailypull"], beta["newest_data_day"]) == (False, None, None)
    assert (alpha["state"], beta["state"]) == ("receiving data", "no data yet")
    assert data["failed_files"] == [{"district_id": "alpha", "path": "alpha/bad.csv", "error": "wrong key",
                                     "since": "2026-11-20T01:00:00+00:00"}]
    schools = {s["school"]: s for s in data["schools"]}
    north, south = schools["north"], schools["south"]
    assert (north["files_this_month"], north["bytes_this_month"], north["files_last_month"],
            north["bytes_last_month"], north["days_since_last_file"], north["stale"]) == (1, 3000, 1, 1000, 4, False)
    assert (south["files_this_month"], south["files_last_month"], south["days_since_last_file"], south["stale"]) == \
        (0, 1, 23, True)
    assert schools["(district folder)"]["bytes_this_month"] == 20
    json.dumps(data)  # machine-readable as it is

    text = status.render(data)
    assert "c2 " in text and "failed" in text and "dailypull alpha: OperationalError: gone" in text
    assert "khan (2 rows)" in text and "STALE (23 days)" in text
    assert "alpha/bad.csv  wrong key" in text and "fixed.csv" not in text
    assert "rows rejected" in text and "failed jobs" in text and "no data yet" in text
