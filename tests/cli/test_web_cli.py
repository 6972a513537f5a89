"""The dashboard through the real CLI: `--web` after a cycle, and `--serve` with `web.port`
in districts.yaml serving it beside the schedule (issue 21)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

from tests.cli.test_trigger import REPO, run
from tests.servers import free_port

CONFIG = """{web}districts:
  - id: alpha
    apps: [ixl]
"""


def _wait_text(url: str, process) -> str:
    """The body at `url` once the server there answers (the server process must stay up)."""
    deadline = time.monotonic() + 120  # a hang guard
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return response.read().decode()
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} never answered")


def _wait_json(url: str, process) -> dict:
    return json.loads(_wait_text(url, process))


def _start(args, cwd, **env):
    environment = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "LANDING_DIR", "DISTRICTS_FILE")}
    environment.update(env)
    return subprocess.Popen([sys.executable, str(REPO / "trigger.py"), *args], cwd=cwd, env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_web_serves_the_pages_after_a_cycle(tmp_path, db_url):
    (tmp_path / "districts.yaml").write_text(CONFIG.format(web=""))
    (tmp_path / "landing/alpha").mkdir(parents=True)
    (tmp_path / "landing/alpha/usage.csv").write_text("student_id,app,date,minutes\ns1,ixl,2026-11-02,30\n")
    assert run(["--as-of", "2026-11-20"], tmp_path, DATABASE_URL=db_url).returncode == 0
    port = free_port()
    process = _start(["--web", "--port", str(port), "--as-of", "2026-11-20"], tmp_path, DATABASE_URL=db_url)
    try:
        data = _wait_json(f"http://127.0.0.1:{port}/api/district/alpha", process)
        assert [s["student_id"] for s in data["students"]] == ["s1"]
    finally:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=60)
    assert f"dashboard: http://127.0.0.1:{port}/" in out


def test_serve_with_web_port_serves_the_dashboard_beside_the_schedule(tmp_path, db_url):
    port = free_port()
    (tmp_path / "districts.yaml").write_text(CONFIG.format(web=f"web:\n  port: {port}\n"))
    (tmp_path / "landing/alpha").mkdir(parents=True)
    process = _start(["--serve", "--as-of", "2026-11-20"], tmp_path, DATABASE_URL=db_url)
    try:
        data = _wait_json(f"http://127.0.0.1:{port}/api/operations", process)
        assert data["as_of"] == "2026-11-20" and data["districts"][0]["district_id"] == "alpha"
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=120)
    assert process.returncode == 0
